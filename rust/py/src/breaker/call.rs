//! How a decorated function runs through a breaker: `BreakerCall` (sync, through vectorcall)
//! and `BreakerAsyncCall` (a coroutine function: each call is a riprap `Coroutine` that takes
//! its permit when first resumed and records the outcome when the user's coroutine ends).
//!
//! While the breaker is CLOSED the sync fast path is one atomic load, the call (arguments
//! forwarded untouched), one clock read and one short lock to record the success. Everything
//! else (a failure to classify, an OPEN or HALF_OPEN breaker, a transition to report) continues
//! on the slow path.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use riprap_core::{Admission, Outcome, Permit, Transition};

use super::PyBreakerEngine;
use crate::awaitable::{Driver, Guard, Step, close_quietly, guarded_call, guarded_call_tp};
use crate::call::{AsyncCallEngine, CallEngine, native_async_call, native_call};
use crate::errors::{circuit_open, raise_circuit_open};
use crate::vectorcall::{Args, Fast};

native_call!(
    /// A sync function guarded by a circuit breaker (see `CircuitBreaker.__call__`).
    PyBreakerCall as "BreakerCall", PyBreakerEngine, breaker_engine
);

/// Where the fast path stopped.
pub(crate) enum Pending<'py> {
    /// Admitted while not CLOSED (a trial call, or the call that made a transition): report the
    /// transition, then run the call on the slow path.
    Admitted(Permit, Option<Transition>),
    /// The function raised; the exception is still set in the interpreter.
    Raised(Permit),
    /// The function returned and its success caused a transition to report.
    Transition(Bound<'py, PyAny>, Transition),
}

impl CallEngine for PyBreakerEngine {
    type Pending<'py> = Pending<'py>;

    fn fast<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
    ) -> Fast<'py, Pending<'py>> {
        let this = slf.get();
        let py = func.py();
        let breaker = &this.inner;
        let start = if breaker.measures_duration() {
            this.clock.now()
        } else {
            0
        };
        let Some(permit) = breaker.try_acquire_closed(start) else {
            // Not CLOSED: reject right here, or admit a call that needs the slow path.
            return match breaker.acquire(this.clock.now()) {
                Admission::Reject { retry_after } => {
                    raise_circuit_open(py, this.name.bind(py), retry_after);
                    Fast::Raised
                }
                Admission::Admit { permit, transition } => {
                    Fast::Slow(Pending::Admitted(permit, transition))
                }
            };
        };
        match args.call(func) {
            Some(result) => match breaker.record(this.clock.now(), permit, Outcome::Success) {
                None => Fast::Done(result),
                Some(t) => Fast::Slow(Pending::Transition(result, t)),
            },
            None => Fast::Slow(Pending::Raised(permit)),
        }
    }

    fn slow<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
        pending: Pending<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = func.py();
        match pending {
            Pending::Transition(result, t) => {
                this.fire(py, Some(t))?;
                Ok(result)
            }
            Pending::Raised(permit) => this.finish(py, permit, Err(PyErr::fetch(py))),
            Pending::Admitted(permit, transition) => {
                if let Err(e) = this.fire(py, transition) {
                    this.inner.release(permit);
                    return Err(e);
                }
                let result = args.call(func).ok_or_else(|| PyErr::fetch(py));
                this.finish(py, permit, result)
            }
        }
    }

    fn call<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        this.run(func, args, kwargs)
    }
}

native_async_call!(
    /// A coroutine function guarded by a circuit breaker (see `CircuitBreaker.__call__`).
    PyBreakerAsyncCall as "BreakerAsyncCall", PyBreakerEngine, breaker_engine
);

/// A breaker's part in one awaited call: a permit taken when the coroutine is first resumed,
/// handed back with the outcome when it ends (or released if it is dropped half-way).
pub(crate) struct BreakerGuard {
    engine: Py<PyBreakerEngine>,
    permit: Option<Permit>,
}

impl BreakerGuard {
    fn driver(engine: &Bound<'_, PyBreakerEngine>) -> Driver {
        Driver::Breaker(Self {
            engine: engine.clone().unbind(),
            permit: None,
        })
    }

    pub(crate) fn traverse(
        &self,
        visit: &pyo3::gc::PyVisit<'_>,
    ) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.engine)
    }

    fn settle<'py>(&mut self, exc: Option<&Bound<'py, PyAny>>, py: Python<'py>) -> PyResult<()> {
        match self.permit.take() {
            Some(permit) => self.engine.get().settle(py, permit, exc),
            None => Ok(()),
        }
    }
}

impl Guard for BreakerGuard {
    fn start<'py>(&mut self, py: Python<'py>, inner: Bound<'py, PyAny>) -> Step<'py> {
        match self.admit(py) {
            Ok(permit) => {
                self.permit = Some(permit);
                Step::Drive(inner)
            }
            Err(e) => {
                close_quietly(&inner);
                Step::Raise(e)
            }
        }
    }

    fn returned<'py>(&mut self, value: Bound<'py, PyAny>) -> Step<'py> {
        match self.settle(None, value.py()) {
            Ok(()) => Step::Return(value),
            Err(e) => Step::Raise(e),
        }
    }

    fn raised<'py>(&mut self, exc: Bound<'py, PyAny>) -> Step<'py> {
        match self.settle(Some(&exc), exc.py()) {
            Ok(()) => Step::Raise(PyErr::from_value(exc)),
            Err(e) => Step::Raise(e),
        }
    }
}

impl BreakerGuard {
    /// A permit, on the closed fast path when it can (one atomic load), or a fresh
    /// `CircuitOpenError`.
    fn admit(&self, py: Python<'_>) -> PyResult<Permit> {
        let engine = self.engine.get();
        let breaker = &engine.inner;
        let start = if breaker.measures_duration() {
            engine.clock.now()
        } else {
            0
        };
        if let Some(permit) = breaker.try_acquire_closed(start) {
            return Ok(permit);
        }
        match breaker.acquire(engine.clock.now()) {
            Admission::Reject { retry_after } => Err(circuit_open(py, &engine.name, retry_after)),
            Admission::Admit { permit, transition } => {
                if let Err(e) = engine.fire(py, transition) {
                    breaker.release(permit);
                    return Err(e);
                }
                Ok(permit)
            }
        }
    }
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        // Dropped half-way (never resumed to the end): the permit comes back, uncounted.
        if let Some(permit) = self.permit.take() {
            self.engine.get().inner.release(permit);
        }
    }
}

impl AsyncCallEngine for PyBreakerEngine {
    fn call_async<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        _slow: Option<&Bound<'py, PyAny>>,
        args: &Args<'py>,
    ) -> Fast<'py, ()> {
        guarded_call(func, args, Ok(BreakerGuard::driver(slf)))
    }

    fn call_async_tp<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        _slow: Option<&Bound<'py, PyAny>>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        guarded_call_tp(func, args, kwargs, Ok(BreakerGuard::driver(slf)))
    }
}
