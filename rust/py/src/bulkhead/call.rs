//! `BulkheadCall` and `BulkheadAsyncCall`: the native wrappers `@bulkhead` puts around a sync
//! function and a coroutine function.
//!
//! While a slot is free and nobody waits, a call is one compare-and-swap, a thread-local marker
//! (so a re-entrant call that would have to wait is rejected instead of deadlocking), the call
//! itself with its arguments forwarded untouched, and one compare-and-swap to give the slot
//! back: no clock read, no lock, no Python frame. Everything else (waiting, a rejection, a slot
//! to hand to a waiter, a measured or adaptive call) continues on the slow path.

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{ffi, intern};
use riprap_core::bulkhead::Slot;
use riprap_core::{Clock, nanos_to_secs, secs_to_nanos};

use super::waiting::{hold, unhold};
use super::{PyBulkheadEngine, PyBulkheadPermit};
use crate::attr;
use crate::awaitable::{Driver, Guard, Step, close_quietly, guarded_call, guarded_call_tp};
use crate::call::{AsyncCallEngine, CallEngine, native_async_call, native_call};
use crate::vectorcall::{Args, Fast};

native_call!(
    /// A sync function guarded by a bulkhead (see `Bulkhead.__call__`).
    PyBulkheadCall as "BulkheadCall", PyBulkheadEngine, bulkhead_engine
);

/// Where the fast path stopped.
pub(crate) enum Pending<'py> {
    /// No free slot (or callers wait): acquire on the slow path, then call.
    Acquire,
    /// The function returned; its slot needs the slow release.
    Returned(Bound<'py, PyAny>, Slot),
    /// The function raised (the exception is still set); its slot needs the slow release.
    Raised(Slot),
}

impl CallEngine for PyBulkheadEngine {
    type Pending<'py> = Pending<'py>;

    fn fast<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
    ) -> Fast<'py, Pending<'py>> {
        let engine = slf.get();
        let bulkhead = &engine.inner;
        let Some(slot) = bulkhead.try_acquire(|| engine.clock.now()) else {
            return Fast::Slow(Pending::Acquire);
        };
        let id = bulkhead.id();
        hold(id, None);
        let result = args.call(func);
        unhold(id);
        match (result, bulkhead.try_release(slot)) {
            (Some(value), Ok(())) => Fast::Done(value),
            (None, Ok(())) => Fast::Raised,
            (Some(value), Err(slot)) => Fast::Slow(Pending::Returned(value, slot)),
            (None, Err(slot)) => Fast::Slow(Pending::Raised(slot)),
        }
    }

    fn slow<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
        pending: Pending<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let engine = slf.get();
        match pending {
            Pending::Returned(value, slot) => Self::finish(slf, slot, Ok(value)),
            Pending::Raised(slot) => Self::finish(slf, slot, Err(PyErr::fetch(py))),
            Pending::Acquire => {
                let slot = engine.enter_slow(py)?;
                let id = engine.inner.id();
                hold(id, None);
                let result = args.call(func).ok_or_else(|| PyErr::fetch(py));
                unhold(id);
                Self::finish(slf, slot, result)
            }
        }
    }

    fn call<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run(slf, func, args, kwargs)
    }
}

native_async_call!(
    /// A coroutine function guarded by a bulkhead (see `Bulkhead.__call__`).
    PyBulkheadAsyncCall as "BulkheadAsyncCall", PyBulkheadEngine, bulkhead_engine
);

/// A bulkhead's part in one awaited call.
///
/// While a slot is free, the call takes it, runs its first step with the thread and the task
/// marked as holding it, and, when that step finishes the call (the common case: nothing to
/// wait for), hands the slot back, all without Python. Everything else is handed over to the
/// Python continuation (`riprap._bulkhead_async.continuation`): a call that must wait for a
/// slot, one that suspends (it is then watched for its timeout), one that overran its timeout
/// on a manual clock.
pub(crate) struct BulkheadGuard {
    engine: Py<PyBulkheadEngine>,
    slow: Py<PyAny>,
}

impl BulkheadGuard {
    /// The guard of one call (the continuation is required).
    fn driver(
        engine: &Bound<'_, PyBulkheadEngine>,
        slow: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Driver> {
        let slow = slow.ok_or_else(|| {
            PyRuntimeError::new_err(
                "BulkheadAsyncCall needs its continuation (riprap._bulkhead_async.continuation)",
            )
        })?;
        Ok(Driver::Bulkhead(Self {
            engine: engine.clone().unbind(),
            slow: slow.clone().unbind(),
        }))
    }

    pub(crate) fn traverse(
        &self,
        visit: &pyo3::gc::PyVisit<'_>,
    ) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.engine)?;
        visit.call(&self.slow)
    }

    /// Hands the rest over to the coroutine the continuation returns for `args`.
    fn hand_over<'py>(&self, py: Python<'py>, args: impl pyo3::call::PyCallArgs<'py>) -> Step<'py> {
        match self.slow.bind(py).call1(args) {
            Ok(next) => Step::Handover(next),
            Err(e) => Step::Raise(e),
        }
    }

    /// The call ended (`Ok`: it returned, `Err`: it raised this exception) in `slot`, which it
    /// took at `start`.
    fn ended<'py>(
        &self,
        py: Python<'py>,
        slot: Slot,
        start: u64,
        outcome: Result<Bound<'py, PyAny>, Bound<'py, PyAny>>,
    ) -> Step<'py> {
        let this = self.engine.bind(py);
        let engine = this.get();
        let overran = matches!(engine.clock, Clock::Manual(_))
            && outcome
                .as_ref()
                .err()
                .is_none_or(PyAnyMethods::is_instance_of::<PyException>)
            && engine.clock.now().saturating_sub(start)
                >= secs_to_nanos(engine.inner.config().timeout);
        if overran {
            let permit = match Py::new(py, PyBulkheadPermit::new(slot)) {
                Ok(p) => p,
                Err(e) => return Step::Raise(e),
            };
            let (value, exc) = match outcome {
                Ok(v) => (v, py.None().into_bound(py)),
                Err(e) => (py.None().into_bound(py), e),
            };
            let args = (
                intern!(py, "ended"),
                permit,
                nanos_to_secs(start),
                value,
                exc,
            );
            return match self.slow.bind(py).call1(args) {
                Ok(v) => Step::Return(v),
                Err(e) => Step::Raise(e),
            };
        }
        let slot = engine.inner.try_release(slot).err();
        match outcome {
            Ok(value) => match slot.map(|s| PyBulkheadEngine::settle(this, s, None)) {
                Some(Err(e)) => Step::Raise(e),
                _ => Step::Return(value),
            },
            Err(exc) => match slot.map(|s| PyBulkheadEngine::settle(this, s, Some(&exc))) {
                Some(Err(e)) => Step::Raise(e),
                _ => Step::Raise(PyErr::from_value(exc)),
            },
        }
    }
}

impl Guard for BulkheadGuard {
    fn start<'py>(&mut self, py: Python<'py>, inner: Bound<'py, PyAny>) -> Step<'py> {
        let engine = self.engine.get();
        let Some(slot) = engine.inner.try_acquire(|| engine.clock.now()) else {
            return self.hand_over(py, (intern!(py, "acquire"), inner));
        };
        let start = engine.clock.now();
        let token = match engine.mark_task(py) {
            Ok(token) => token,
            Err(e) => {
                close_quietly(&inner);
                return self.ended(
                    py,
                    slot,
                    start,
                    Err(e.into_value(py).into_bound(py).into_any()),
                );
            }
        };
        let id = engine.inner.id();
        hold(id, None);
        let mut out: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: both are valid references while the GIL is held; PyIter_Send leaves a new
        // reference in `out` on PYGEN_RETURN and PYGEN_NEXT, and sets an exception on error.
        let sent = unsafe { ffi::PyIter_Send(inner.as_ptr(), py.None().as_ptr(), &raw mut out) };
        unhold(id);
        let outcome = match sent {
            // SAFETY: `out` holds a new reference.
            ffi::PySendResult::PYGEN_RETURN => Ok(unsafe { Bound::from_owned_ptr(py, out) }),
            ffi::PySendResult::PYGEN_NEXT => {
                // SAFETY: as above.
                let yielded = unsafe { Bound::from_owned_ptr(py, out) };
                let permit = match Py::new(py, PyBulkheadPermit::new(slot)) {
                    Ok(p) => p,
                    Err(e) => return Step::Raise(e),
                };
                let args = (
                    intern!(py, "suspended"),
                    inner,
                    yielded,
                    permit,
                    nanos_to_secs(start),
                    token,
                );
                return self.hand_over(py, args);
            }
            ffi::PySendResult::PYGEN_ERROR => Err(attr::raised(py)),
        };
        let outcome = match engine.unmark_task(py, token.as_ref()) {
            Ok(()) => outcome,
            Err(e) => Err(e.into_value(py).into_bound(py).into_any()),
        };
        self.ended(py, slot, start, outcome)
    }

    fn returned<'py>(&mut self, value: Bound<'py, PyAny>) -> Step<'py> {
        // Never asked: `start` ends the call or hands it over.
        Step::Return(value)
    }

    fn raised<'py>(&mut self, exc: Bound<'py, PyAny>) -> Step<'py> {
        Step::Raise(PyErr::from_value(exc))
    }
}

impl AsyncCallEngine for PyBulkheadEngine {
    fn call_async<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        slow: Option<&Bound<'py, PyAny>>,
        args: &Args<'py>,
    ) -> Fast<'py, ()> {
        guarded_call(func, args, BulkheadGuard::driver(slf, slow))
    }

    fn call_async_tp<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        slow: Option<&Bound<'py, PyAny>>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        guarded_call_tp(func, args, kwargs, BulkheadGuard::driver(slf, slow))
    }
}
