//! `BreakerConfig`, `BreakerEngine` (a core circuit breaker with its clock, exception
//! classification and transition hook), `BreakerPermit`, and `BreakerCall` (the native wrapper
//! `@breaker` puts around a sync function).
//!
//! Why native: the closed success path has a budget of ~120 ns added per call and a
//! Python closure alone costs more. `BreakerCall` is called through vectorcall; while the breaker
//! is CLOSED its fast path is one atomic load, the call (arguments forwarded untouched), one clock
//! read and one short lock to record the success. Everything else (a failure to classify, an
//! OPEN or HALF_OPEN breaker, a transition to report) continues on the slow path. No lock is
//! held while the function runs, so threads through one breaker run in parallel.
//!
//! Classification: an exception that is not an `Exception` (`CancelledError`,
//! `KeyboardInterrupt`, `SystemExit`, `GeneratorExit`) releases the permit and counts nothing;
//! one outside `expected_exception` or inside `excluded_exceptions` is ignored (neither success
//! nor failure; a trial slot comes back); any other is a failure. Transitions are reported to
//! `on_transition(old, new)` (state value strings) after the core's lock is released; the Python
//! layer turns that into listener calls.

use std::sync::{Mutex, PoisonError};

use pyo3::PyTraverseError;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use riprap_core::{
    Admission, Breaker, BreakerConfig, Clock, Outcome, Permit, Transition, nanos_to_secs,
};

mod call;

pub(crate) use call::{BreakerGuard, PyBreakerAsyncCall, PyBreakerCall};

use crate::attr::handling;
use crate::convert::{clock, int_at_least, number};
use crate::errors::{circuit_open, config_error, rejections};

/// A validated breaker configuration (the numeric fields of `CircuitBreakerConfig`).
#[pyclass(name = "BreakerConfig", module = "riprap", frozen)]
pub struct PyBreakerConfig {
    inner: BreakerConfig,
}

#[pymethods]
impl PyBreakerConfig {
    #[new]
    #[pyo3(signature = (*, failure_threshold, timeout, success_threshold, monitoring_window,
                        failure_rate_threshold, minimum_calls, half_open_max_calls,
                        slow_call_duration, slow_call_rate_threshold))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        failure_threshold: &Bound<'_, PyAny>,
        timeout: &Bound<'_, PyAny>,
        success_threshold: &Bound<'_, PyAny>,
        monitoring_window: &Bound<'_, PyAny>,
        failure_rate_threshold: &Bound<'_, PyAny>,
        minimum_calls: &Bound<'_, PyAny>,
        half_open_max_calls: &Bound<'_, PyAny>,
        slow_call_duration: Option<&Bound<'_, PyAny>>,
        slow_call_rate_threshold: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        // Types (and the integer ranges) first, in declaration order, then the values of the
        // float fields in declaration order: the reference checks in the same order, so both
        // backends name the same field first.
        let c = BreakerConfig {
            failure_threshold: int_at_least("failure_threshold", failure_threshold, 1)?,
            timeout: number("timeout", timeout)?,
            success_threshold: int_at_least("success_threshold", success_threshold, 1)?,
            monitoring_window: number("monitoring_window", monitoring_window)?,
            failure_rate_threshold: number("failure_rate_threshold", failure_rate_threshold)?,
            minimum_calls: int_at_least("minimum_calls", minimum_calls, 1)?,
            half_open_max_calls: int_at_least("half_open_max_calls", half_open_max_calls, 1)?,
            slow_call_duration: match slow_call_duration {
                Some(v) if !v.is_none() => Some(number("slow_call_duration", v)?),
                _ => None,
            },
            slow_call_rate_threshold: number("slow_call_rate_threshold", slow_call_rate_threshold)?,
        };
        c.validate().map_err(config_error)?;
        Ok(Self { inner: c })
    }

    /// The width of one window bucket in seconds (the window's far edge moves in these steps).
    #[getter]
    fn bucket_width(&self) -> f64 {
        nanos_to_secs(self.inner.bucket_width())
    }
}

/// Permission for one call through a breaker; hand it back once with `record` or `release`.
#[pyclass(name = "BreakerPermit", module = "riprap", frozen)]
pub struct PyBreakerPermit {
    permit: Mutex<Option<Permit>>,
    trial: bool,
}

impl PyBreakerPermit {
    fn new(permit: Permit) -> Self {
        Self {
            trial: permit.is_trial(),
            permit: Mutex::new(Some(permit)),
        }
    }

    /// Takes the permit out (`None` if it was returned already); a permit of another breaker
    /// is a `ValueError` and stays where it is.
    fn take(&self, breaker: &Breaker) -> PyResult<Option<Permit>> {
        let mut slot = self.permit.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|p| !breaker.owns(p)) {
            return Err(PyValueError::new_err(
                "this permit belongs to another circuit breaker",
            ));
        }
        Ok(slot.take())
    }
}

#[pymethods]
impl PyBreakerPermit {
    /// Whether this permit is a half-open trial call.
    #[getter]
    fn is_trial(&self) -> bool {
        self.trial
    }

    /// Whether the permit was handed back already.
    #[getter]
    fn returned(&self) -> bool {
        self.permit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }
}

/// A circuit breaker: the core state machine plus its clock, classification and hook.
#[pyclass(name = "BreakerEngine", module = "riprap", frozen)]
pub struct PyBreakerEngine {
    pub(crate) inner: Breaker,
    pub(crate) clock: Clock,
    pub(crate) name: Py<PyString>,
    expected: Py<PyTuple>,
    excluded: Py<PyTuple>,
    on_transition: Option<Py<PyAny>>,
}

impl PyBreakerEngine {
    pub(crate) fn fire(&self, py: Python<'_>, t: Option<Transition>) -> PyResult<()> {
        if let (Some(t), Some(hook)) = (t, &self.on_transition) {
            hook.bind(py).call1((t.from.as_str(), t.to.as_str()))?;
        }
        Ok(())
    }

    /// What the breaker makes of `exc`: `None` for a control-flow exception.
    ///
    /// riprap's own rejections (an inner limiter's, bulkhead's or breaker's) are ignored: they
    /// say nothing about the dependency this breaker guards.
    fn outcome(&self, exc: &Bound<'_, PyAny>) -> PyResult<Option<Outcome>> {
        if !exc.is_instance_of::<PyException>() {
            return Ok(None);
        }
        let py = exc.py();
        if exc.is_instance(rejections(py)?)? {
            return Ok(Some(Outcome::Ignored));
        }
        let excluded = self.excluded.bind(py);
        let counted = exc.is_instance(self.expected.bind(py))?
            && (excluded.is_empty() || !exc.is_instance(excluded)?);
        Ok(Some(if counted {
            Outcome::Failure
        } else {
            Outcome::Ignored
        }))
    }

    /// Admit a call or raise a fresh `CircuitOpenError`.
    pub(crate) fn admit(&self, py: Python<'_>) -> PyResult<Permit> {
        match self.inner.acquire(self.clock.now()) {
            Admission::Admit { permit, transition } => match self.fire(py, transition) {
                Ok(()) => Ok(permit),
                Err(e) => {
                    self.inner.release(permit);
                    Err(e)
                }
            },
            Admission::Reject { retry_after } => Err(circuit_open(py, &self.name, retry_after)),
        }
    }

    /// Hands back `permit` for a call that ended with `exc` (`None`: success).
    pub(crate) fn settle(
        &self,
        py: Python<'_>,
        permit: Permit,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let outcome = match exc {
            None => Outcome::Success,
            // Classified with `e` as the exception being handled: an error raised by a user's
            // `__instancecheck__` carries `e` as its context.
            Some(e) => match handling(e, || self.outcome(e)) {
                Ok(Some(o)) => o,
                Ok(None) => {
                    self.inner.release(permit);
                    return Ok(());
                }
                Err(err) => {
                    // A classification that raised (a failing __instancecheck__): keep the
                    // permits balanced and surface the error (resilience4j/resilience4j#2324).
                    self.inner.release(permit);
                    return Err(err);
                }
            },
        };
        let t = self.inner.record(self.clock.now(), permit, outcome);
        self.fire(py, t)
    }

    /// The rest of a guarded call once its function returned or raised.
    pub(crate) fn finish<'py>(
        &self,
        py: Python<'py>,
        permit: Permit,
        result: PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match result {
            Ok(value) => {
                self.settle(py, permit, None)?;
                Ok(value)
            }
            Err(err) => {
                let exc = err.value(py).clone().into_any();
                self.settle(py, permit, Some(&exc))?;
                Err(err)
            }
        }
    }

    pub(crate) fn run<'py>(
        &self,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = func.py();
        let permit = self.admit(py)?;
        self.finish(py, permit, func.call(args, kwargs))
    }

    fn secs(ns: Option<u64>) -> Option<f64> {
        ns.map(nanos_to_secs)
    }
}

#[pymethods]
impl PyBreakerEngine {
    #[new]
    #[pyo3(signature = (name, config, *, expected_exception, excluded_exceptions, clock,
                        on_transition))]
    fn new(
        name: Py<PyString>,
        config: &Bound<'_, PyBreakerConfig>,
        expected_exception: Py<PyTuple>,
        excluded_exceptions: Py<PyTuple>,
        clock: Option<&Bound<'_, PyAny>>,
        on_transition: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: Breaker::new(config.get().inner.clone()).map_err(config_error)?,
            clock: self::clock(clock)?,
            name,
            expected: expected_exception,
            excluded: excluded_exceptions,
            on_transition,
        })
    }

    /// The breaker's name.
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyString> {
        self.name.clone_ref(py)
    }

    /// Admit a call (a permit to hand back once) or raise a fresh `CircuitOpenError`.
    fn acquire(&self, py: Python<'_>) -> PyResult<PyBreakerPermit> {
        Ok(PyBreakerPermit::new(self.admit(py)?))
    }

    /// Hands back a permit: `exc=None` is a success; an exception is classified (failure,
    /// ignored, or a control-flow exception that only releases). A second return is a no-op;
    /// another breaker's permit is a `ValueError`.
    #[pyo3(signature = (permit, exc = None))]
    fn record(
        &self,
        py: Python<'_>,
        permit: &Bound<'_, PyBreakerPermit>,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        match permit.get().take(&self.inner)? {
            Some(p) => self.settle(py, p, exc.filter(|e| !e.is_none())),
            None => Ok(()),
        }
    }

    /// Gives a permit back without an outcome (the call did not finish).
    fn release(&self, permit: &Bound<'_, PyBreakerPermit>) -> PyResult<()> {
        if let Some(p) = permit.get().take(&self.inner)? {
            self.inner.release(p);
        }
        Ok(())
    }

    /// Runs `func(*args, **kwargs)` through the breaker (what a decorated sync function does).
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn call<'py>(
        &self,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.run(func, args, kwargs)
    }

    /// The state's value string (a due OPEN → HALF_OPEN happens here).
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<&'static str> {
        let (state, t) = self.inner.state(self.clock.now());
        self.fire(py, t)?;
        Ok(state.as_str())
    }

    /// A snapshot (a due OPEN → HALF_OPEN happens here); see `CircuitBreaker.get_stats`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (s, t) = self.inner.stats(self.clock.now());
        self.fire(py, t)?;
        let w = s.window;
        let d = PyDict::new(py);
        d.set_item("name", self.name.bind(py))?;
        d.set_item("state", s.state.as_str())?;
        d.set_item("failure_count", w.failures)?;
        d.set_item("success_count", w.successes)?;
        d.set_item("failure_rate", w.failure_rate())?;
        d.set_item("last_failure_time", Self::secs(s.last_failure))?;
        d.set_item(
            "time_since_last_failure",
            Self::secs(s.time_since_last_failure()),
        )?;
        d.set_item("total_calls", s.totals.calls())?;
        d.set_item("consecutive_failures", s.consecutive_failures)?;
        d.set_item("window_calls", w.calls())?;
        d.set_item("slow_call_count", w.slow)?;
        d.set_item("slow_call_rate", w.slow_rate())?;
        d.set_item("half_open_calls", s.half_open_in_flight)?;
        d.set_item("half_open_successes", s.half_open_successes)?;
        d.set_item("opened_at", Self::secs(s.opened_at))?;
        d.set_item("open_duration", nanos_to_secs(s.open_duration()))?;
        d.set_item("retry_after", nanos_to_secs(s.retry_after))?;
        d.set_item("total_successes", s.totals.successes)?;
        d.set_item("total_failures", s.totals.failures)?;
        d.set_item("total_ignored", s.totals.ignored)?;
        d.set_item("total_cancelled", s.totals.cancelled)?;
        d.set_item("total_rejected", s.totals.rejected)?;
        d.set_item("total_lost_trials", s.totals.lost_trials)?;
        Ok(d)
    }

    /// Back to CLOSED with an empty window (lifetime totals are kept).
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        let t = self.inner.reset();
        self.fire(py, t)
    }

    /// Opens the breaker now, as if it had tripped (it half-opens after `timeout`).
    fn force_open(&self, py: Python<'_>) -> PyResult<()> {
        let t = self.inner.force_open(self.clock.now());
        self.fire(py, t)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        // Through `state`, so a due OPEN -> HALF_OPEN it performs is reported like any other.
        let state = self.state(py)?;
        Ok(format!(
            "<riprap.BreakerEngine {} {state}>",
            self.name.bind(py).repr()?,
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.name)?;
        visit.call(&self.expected)?;
        visit.call(&self.excluded)?;
        visit.call(&self.on_transition)?;
        Ok(())
    }
}
