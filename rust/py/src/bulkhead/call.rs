//! `BulkheadCall`: the native wrapper `@bulkhead` puts around a sync function.
//!
//! While a slot is free and nobody waits, a call is one compare-and-swap, a thread-local marker
//! (so a re-entrant call that would have to wait is rejected instead of deadlocking), the call
//! itself with its arguments forwarded untouched, and one compare-and-swap to give the slot
//! back: no clock read, no lock, no Python frame. Everything else (waiting, a rejection, a slot
//! to hand to a waiter, a measured or adaptive call) continues on the slow path.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{PyTraverseError, ffi};
use riprap_core::bulkhead::Slot;
use riprap_core::{BulkheadConfig, Clock};

use super::PyBulkheadEngine;
use super::waiting::{hold, unhold};
use crate::vectorcall::{self, Args, Fast, VectorCall};

/// A sync function guarded by a bulkhead (see `Bulkhead.__call__`).
#[pyclass(name = "BulkheadCall", module = "riprap", frozen, dict, weakref)]
pub struct PyBulkheadCall {
    vectorcall: ffi::vectorcallfunc,
    func: Py<PyAny>,
    engine: Py<PyBulkheadEngine>,
}

/// Where the fast path stopped.
pub(crate) enum Pending<'py> {
    /// No free slot (or callers wait): acquire on the slow path, then call.
    Acquire,
    /// The function returned; its slot needs the slow release.
    Returned(Bound<'py, PyAny>, Slot),
    /// The function raised (the exception is still set); its slot needs the slow release.
    Raised(Slot),
}

impl VectorCall for PyBulkheadCall {
    type Pending<'py> = Pending<'py>;

    fn fast<'py>(slf: &Bound<'py, Self>, args: &Args<'py>) -> Fast<'py, Pending<'py>> {
        let this = slf.get();
        let engine = this.engine.get();
        let bulkhead = &engine.inner;
        let Some(slot) = bulkhead.try_acquire(|| engine.clock.now()) else {
            return Fast::Slow(Pending::Acquire);
        };
        let id = bulkhead.id();
        hold(id, None);
        let result = args.call(this.func.bind(slf.py()));
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
        args: &Args<'py>,
        pending: Pending<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let bound = this.engine.bind(py);
        let engine = bound.get();
        match pending {
            Pending::Returned(value, slot) => PyBulkheadEngine::finish(bound, slot, Ok(value)),
            Pending::Raised(slot) => PyBulkheadEngine::finish(bound, slot, Err(PyErr::fetch(py))),
            Pending::Acquire => {
                let slot = engine.enter_slow(py)?;
                let id = engine.inner.id();
                hold(id, None);
                let result = args
                    .call(this.func.bind(py))
                    .ok_or_else(|| PyErr::fetch(py));
                unhold(id);
                PyBulkheadEngine::finish(bound, slot, result)
            }
        }
    }
}

impl PyBulkheadCall {
    /// Turns on the vectorcall fast path for the type (called once at module init).
    pub(crate) fn enable_vectorcall(py: Python<'_>) -> PyResult<()> {
        let engine = PyBulkheadEngine::build(
            py,
            PyString::new(py, "").unbind(),
            BulkheadConfig::default(),
            None,
            None,
            None,
        )?;
        debug_assert!(matches!(engine.clock, Clock::Monotonic));
        let inert = Bound::new(py, Self::new(py.None(), Py::new(py, engine)?))?;
        vectorcall::enable(&inert, &raw const inert.get().vectorcall);
        Ok(())
    }
}

#[pymethods]
impl PyBulkheadCall {
    #[new]
    fn new(func: Py<PyAny>, engine: Py<PyBulkheadEngine>) -> Self {
        Self {
            vectorcall: vectorcall::trampoline::<Self>,
            func,
            engine,
        }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        PyBulkheadEngine::run(self.engine.bind(py), self.func.bind(py), args, kwargs)
    }

    /// Binds like a function, so a decorated method gets `self`.
    fn __get__<'py>(
        slf: Bound<'py, Self>,
        instance: Option<&Bound<'py, PyAny>>,
        _owner: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        vectorcall::bind_method(slf, instance)
    }

    /// The bulkhead this function runs under.
    #[getter]
    fn bulkhead_engine(&self, py: Python<'_>) -> Py<PyBulkheadEngine> {
        self.engine.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        vectorcall::wrapper_repr("BulkheadCall", self.func.bind(py))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.func)?;
        visit.call(&self.engine)?;
        Ok(())
    }
}
