//! `BulkheadCall`: the native wrapper `@bulkhead` puts around a sync function.
//!
//! While a slot is free and nobody waits, a call is one compare-and-swap, a thread-local marker
//! (so a re-entrant call that would have to wait is rejected instead of deadlocking), the call
//! itself with its arguments forwarded untouched, and one compare-and-swap to give the slot
//! back: no clock read, no lock, no Python frame. Everything else (waiting, a rejection, a slot
//! to hand to a waiter, a measured or adaptive call) continues on the slow path.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use riprap_core::bulkhead::Slot;

use super::PyBulkheadEngine;
use super::waiting::{hold, unhold};
use crate::call::{CallEngine, native_call};
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
