//! `RetryEngine` (a compiled retry policy with its clock and hooks) and `RetryCall` (the native
//! wrapper `riprap.retry` puts around a sync function).
//!
//! Why native: a Python closure `wrapper(*args, **kwargs)` costs ~165 ns by itself, more than the
//! whole budget for retry's success path, and a Python retry loop costs ~1 µs per failure beyond
//! the exception itself. `RetryCall` calls the function through `tp_call` with the
//! caller's own argument tuple and dict; on failure the engine classifies the exception, asks the
//! core schedule for the next delay, checks the budget, logs, calls `on_retry`, waits on the clock
//! (never for a zero delay) and calls again, all without a Python frame of its own. Async
//! functions and `policy.attempts()` loops run in Python and call `decide()` once per failure, so
//! every form of retry shares this one decision.
//!
//! Control-flow exceptions (`KeyboardInterrupt`, `SystemExit`, `GeneratorExit`, `CancelledError`)
//! are not `Exception`s: they pass straight through, uncounted, even if `BaseException` is listed
//! as retryable. When retries run out the caller's own last exception is re-raised.

use pyo3::exceptions::PyException;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, intern};
use riprap_core::{Clock, Failed, RetryCounters, RetryDecision, RetrySchedule, nanos_to_secs};

mod call;
mod classify;
mod counters;

pub(crate) use call::{PyRetryAsyncCall, PyRetryCall, RetryGuard};
pub(crate) use counters::PyRetryCounters;

use classify::Classifier;

use crate::attr::{self, handling};
use crate::backoff::backoff_config;
use crate::budget::PyRetryBudget;
use crate::convert::{attempt, clock};
use crate::deadline;
use crate::errors::config_error;

const DEBUG: i32 = 10;
const WARNING: i32 = 30;
const ERROR: i32 = 40;

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static IS_ENABLED_FOR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    Ok(LOGGER
        .get_or_try_init(py, || -> PyResult<_> {
            Ok(py
                .import("logging")?
                .call_method1("getLogger", ("riprap",))?
                .unbind())
        })?
        .bind(py))
}

fn log_enabled(py: Python<'_>, level: i32) -> PyResult<bool> {
    let check = IS_ENABLED_FOR.get_or_try_init(py, || -> PyResult<_> {
        Ok(logger(py)?.getattr("isEnabledFor")?.unbind())
    })?;
    check.bind(py).call1((level,))?.is_truthy()
}

fn describe(exc: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
    Ok(match exc {
        None => "result rejected by retry_on_result".to_owned(),
        Some(e) => format!("{}: {}", e.get_type().name()?, e.str()?),
    })
}

/// A validated retry schedule: backoff, attempt limit, deadline and jitter stream.
#[pyclass(name = "RetrySchedule", module = "riprap", frozen)]
pub struct PyRetrySchedule {
    inner: RetrySchedule,
}

impl PyRetrySchedule {
    pub(crate) fn inner(&self) -> &RetrySchedule {
        &self.inner
    }
}

#[pymethods]
impl PyRetrySchedule {
    #[new]
    #[pyo3(signature = (*, strategy, base_delay, max_delay, exponential_base, jitter, jitter_range,
                        max_attempts, deadline, seed))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        strategy: &str,
        base_delay: f64,
        max_delay: f64,
        exponential_base: f64,
        jitter: bool,
        jitter_range: f64,
        max_attempts: u64,
        deadline: Option<f64>,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let cfg = backoff_config(
            strategy,
            base_delay,
            max_delay,
            exponential_base,
            jitter,
            jitter_range,
        )?;
        let inner = RetrySchedule::new(cfg, max_attempts, deadline, seed).map_err(config_error)?;
        Ok(Self { inner })
    }

    /// The delay after failed attempt `attempt` (1-based).
    #[pyo3(signature = (attempt, previous = None))]
    fn compute_delay(&self, attempt: &Bound<'_, PyAny>, previous: Option<f64>) -> PyResult<f64> {
        Ok(self
            .inner
            .backoff()
            .delay(self::attempt(attempt)?, previous))
    }

    /// The delay before the next attempt, or `None` to give up now.
    #[pyo3(signature = (failed_attempt, elapsed, previous = None, retry_after = None))]
    fn next_delay(
        &self,
        failed_attempt: u64,
        elapsed: f64,
        previous: Option<f64>,
        retry_after: Option<f64>,
    ) -> Option<f64> {
        self.inner
            .next_delay(failed_attempt, elapsed, previous, retry_after)
    }

    #[getter]
    fn max_attempts(&self) -> u64 {
        self.inner.max_attempts()
    }

    #[getter]
    fn deadline(&self) -> Option<f64> {
        self.inner.deadline()
    }
}

/// A compiled retry policy: classification, schedule, budget, clock, hook, log name and the
/// operation's counters.
#[pyclass(name = "RetryEngine", module = "riprap", frozen)]
pub struct PyRetryEngine {
    schedule: Py<PyRetrySchedule>,
    classifier: Classifier,
    pub(crate) predicate: Option<Py<PyAny>>,
    budget: Option<Py<PyRetryBudget>>,
    clock: Clock,
    on_retry: Option<Py<PyAny>>,
    name: String,
    counters: Option<Py<PyRetryCounters>>,
}

impl PyRetryEngine {
    fn schedule(&self) -> &RetrySchedule {
        self.schedule.get().inner()
    }

    fn timed(&self) -> bool {
        self.schedule().deadline().is_some()
    }

    fn counts(&self) -> Option<&RetryCounters> {
        self.counters.as_ref().map(|c| &c.get().inner)
    }

    /// Whether this call's duration goes into the histogram (one relaxed load).
    fn timing(&self) -> bool {
        self.counts().is_some_and(RetryCounters::timing)
    }

    /// The first attempt is starting: take a budget deposit, and the start time if a deadline
    /// or the duration histogram needs it.
    pub(crate) fn begin(&self) -> Option<f64> {
        if let Some(b) = &self.budget {
            b.get().deposit_now();
        }
        (self.timed() || self.timing()).then(|| self.clock.now_secs())
    }

    /// The call's duration so far, if the histogram wants it.
    fn duration(&self, counters: &RetryCounters, start: Option<f64>) -> Option<f64> {
        match start {
            Some(s) if counters.timing() => Some(self.clock.now_secs() - s),
            _ => None,
        }
    }

    /// The call that started at `start` succeeded at attempt `attempt`: count it.
    #[inline]
    pub(crate) fn count_success(&self, attempt: u64, start: Option<f64>) {
        let Some(c) = self.counts() else {
            return;
        };
        if attempt <= 1 && start.is_none() {
            c.first_success(); // the success path: one relaxed add
        } else {
            c.succeeded(attempt, self.duration(c, start));
        }
    }

    pub(crate) fn wants_retry(&self, result: &Bound<'_, PyAny>) -> PyResult<bool> {
        match &self.predicate {
            Some(p) => p.bind(result.py()).call1((result,))?.is_truthy(),
            None => Ok(false),
        }
    }

    /// After attempt `attempt` failed with `exc` (or returned a result to retry, `exc = None`):
    /// the delay before the next attempt, or `None` to stop. The decision itself is the core's
    /// (`RetrySchedule::decide`); this reads the exception, logs and calls the hook. All of that
    /// runs with `exc` as the exception being handled, so an error it raises carries the user's
    /// exception as `__context__`, as the same code in an `except` block would.
    ///
    /// Every form of retry calls this once per failed attempt, so the operation's counters are
    /// kept here: the failed attempt, and, unless the answer is a retry, the call's failure.
    pub(crate) fn decide_inner(
        &self,
        py: Python<'_>,
        attempt: u64,
        exc: Option<&Bound<'_, PyAny>>,
        start: Option<f64>,
        previous: Option<f64>,
    ) -> PyResult<Option<f64>> {
        let counters = self.counts();
        if let Some(c) = counters {
            c.failed_attempt(attempt);
        }
        let decided = match exc {
            Some(e) => handling(e, || {
                self.decide_failure(py, attempt, Some(e), start, previous)
            }),
            None => self.decide_failure(py, attempt, None, start, previous),
        };
        if let Some(c) = counters
            && !matches!(decided, Ok(Some(_)))
        {
            c.gave_up(self.duration(c, start));
        }
        decided
    }

    fn decide_failure(
        &self,
        py: Python<'_>,
        attempt: u64,
        exc: Option<&Bound<'_, PyAny>>,
        start: Option<f64>,
        previous: Option<f64>,
    ) -> PyResult<Option<f64>> {
        let mut retry_after = None;
        if let Some(e) = exc {
            if !self.classifier.retryable(e)? {
                if log_enabled(py, DEBUG)? {
                    let msg = format!("{}: {} is not retryable", self.name, e.repr()?);
                    logger(py)?.call_method1(intern!(py, "debug"), (msg,))?;
                }
                return Ok(None);
            }
            retry_after = self.classifier.retry_after(e)?;
        }
        let failed = Failed {
            attempt,
            elapsed: start.map_or(0.0, |s| self.clock.now_secs() - s),
            previous,
            retry_after,
            // An enclosing `riprap.deadline` / `riprap.timeout`: no sleep may cross it either.
            time_left: deadline::remaining(py)?.map(nanos_to_secs),
        };
        let budget = || {
            self.budget
                .as_ref()
                .is_none_or(|b| b.get().try_withdraw_now())
        };
        let max_attempts = self.schedule().max_attempts();
        let delay = match self.schedule().decide(&failed, budget) {
            RetryDecision::Retry(delay) => delay,
            RetryDecision::GiveUp(why) => {
                if log_enabled(py, ERROR)? {
                    logger(py)?.call_method1(
                        intern!(py, "error"),
                        (
                            "%s: attempt %d of %d failed (%s); giving up: %s",
                            &self.name,
                            attempt,
                            max_attempts,
                            describe(exc)?,
                            why.reason(),
                        ),
                    )?;
                }
                return Ok(None);
            }
        };
        if log_enabled(py, WARNING)? {
            logger(py)?.call_method1(
                intern!(py, "warning"),
                (
                    "%s: attempt %d of %d failed (%s); retrying in %.3fs",
                    &self.name,
                    attempt,
                    max_attempts,
                    describe(exc)?,
                    delay,
                ),
            )?;
        }
        if let Some(hook) = &self.on_retry {
            hook.bind(py).call1((attempt, exc, delay))?;
        }
        Ok(Some(delay))
    }

    /// The rest of a sync call after its first attempt failed (or returned a result to retry).
    fn finish<'py>(
        &self,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
        mut exc: Option<Bound<'py, PyAny>>,
        mut result: Option<Bound<'py, PyAny>>,
        start: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = func.py();
        let mut attempt = 1;
        let mut previous = None;
        loop {
            let Some(delay) = self.decide_inner(py, attempt, exc.as_ref(), start, previous)? else {
                return match (exc, result) {
                    (Some(e), _) => Err(PyErr::from_value(e)),
                    (None, Some(r)) => Ok(r),
                    (None, None) => Ok(py.None().into_bound(py)),
                };
            };
            if delay > 0.0 {
                crate::clock::sleep(py, &self.clock, delay)?;
            }
            previous = Some(delay);
            attempt += 1;
            match attr::call(func, args, kwargs) {
                Ok(r) => {
                    if !self.wants_retry(&r)? {
                        self.count_success(attempt, start);
                        return Ok(r);
                    }
                    exc = None;
                    result = Some(r);
                }
                Err(e) if e.is_instance_of::<PyException>() => {
                    exc = Some(e);
                    result = None;
                }
                Err(e) => return Err(PyErr::from_value(e)),
            }
        }
    }
}

#[pymethods]
impl PyRetryEngine {
    #[new]
    #[pyo3(signature = (schedule, *, retryable_exceptions, status_codes, patterns, retry_on_result,
                        respect_retry_after, budget, clock, on_retry, name, counters = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        schedule: Py<PyRetrySchedule>,
        retryable_exceptions: Py<PyTuple>,
        status_codes: Vec<i64>,
        patterns: Vec<String>,
        retry_on_result: Option<Py<PyAny>>,
        respect_retry_after: bool,
        budget: Option<Py<PyRetryBudget>>,
        clock: Option<&Bound<'_, PyAny>>,
        on_retry: Option<Py<PyAny>>,
        name: String,
        counters: Option<Py<PyRetryCounters>>,
    ) -> PyResult<Self> {
        Ok(Self {
            schedule,
            classifier: Classifier::new(
                py,
                retryable_exceptions,
                status_codes,
                patterns,
                respect_retry_after,
            )?,
            predicate: retry_on_result,
            budget,
            clock: self::clock(clock)?,
            on_retry,
            name,
            counters,
        })
    }

    /// Starts a retried call: takes a budget deposit and returns the start time (or `None`
    /// when neither a deadline nor the duration histogram needs it).
    fn start(&self) -> Option<f64> {
        self.begin()
    }

    /// Whether `start()` does anything now (a budget, a deadline, or timing is on).
    #[getter]
    fn needs_start(&self) -> bool {
        self.budget.is_some() || self.timed() || self.timing()
    }

    /// The call that started at `start` (what `start()` returned) succeeded at attempt
    /// `attempt`: counts it (Python retry loops call this; native ones count by themselves).
    fn succeeded(&self, attempt: u64, start: Option<f64>) {
        self.count_success(attempt, start);
    }

    /// The operation's counters (None: this engine counts nothing).
    #[getter]
    fn counters(&self, py: Python<'_>) -> Option<Py<PyRetryCounters>> {
        self.counters.as_ref().map(|c| c.clone_ref(py))
    }

    /// The delay before the next attempt after attempt `attempt` failed, or `None` to stop.
    #[pyo3(signature = (attempt, exc, start, previous))]
    fn decide(
        &self,
        py: Python<'_>,
        attempt: u64,
        exc: Option<&Bound<'_, PyAny>>,
        start: Option<f64>,
        previous: Option<f64>,
    ) -> PyResult<Option<f64>> {
        self.decide_inner(py, attempt, exc, start, previous)
    }

    /// Whether the policy retries `exc` (by type, status code or message).
    fn is_retryable(&self, exc: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.classifier.retryable(exc)
    }

    /// Whether `retry_on_result` asks to retry this result.
    fn retry_result(&self, result: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.wants_retry(result)
    }

    /// Blocks for `seconds` on the engine's clock (GIL released, Ctrl-C honoured).
    fn sleep(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        crate::clock::sleep(py, &self.clock, seconds)
    }

    /// Runs `func(*args, **kwargs)` with retries (what a decorated sync function does).
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn call<'py>(
        &self,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.run(func, args, kwargs)
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.schedule)?;
        self.classifier.traverse(&visit)?;
        visit.call(&self.predicate)?;
        visit.call(&self.budget)?;
        visit.call(&self.on_retry)?;
        visit.call(&self.counters)?;
        Ok(())
    }
}

impl PyRetryEngine {
    pub(crate) fn run<'py>(
        &self,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let start = self.begin();
        let first = attr::call(func, args, kwargs);
        self.after_first(func, first, start, || Ok((args.clone(), kwargs.cloned())))
    }

    /// Handles the outcome of the first attempt: return it, or run the retry loop with the
    /// arguments that `args` builds (only on the slow path).
    pub(crate) fn after_first<'py>(
        &self,
        func: &Bound<'py, PyAny>,
        first: Result<Bound<'py, PyAny>, Bound<'py, PyAny>>,
        start: Option<f64>,
        args: impl FnOnce() -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match first {
            Ok(result) => {
                if self.predicate.is_some() && self.wants_retry(&result)? {
                    let (a, k) = args()?;
                    return self.finish(func, &a, k.as_ref(), None, Some(result), start);
                }
                self.count_success(1, start);
                Ok(result)
            }
            Err(exc) if exc.is_instance_of::<PyException>() => {
                let (a, k) = args()?;
                self.finish(func, &a, k.as_ref(), Some(exc), None, start)
            }
            // A control-flow exception: straight back to the caller, untouched.
            Err(exc) => Err(PyErr::from_value(exc)),
        }
    }
}
