//! The caller's deadline, as the Python layer keeps it (`riprap._deadlines`).
//!
//! `riprap.deadline` and `riprap.timeout` keep the deadlines in force in a context variable;
//! a primitive about to wait asks for the time left (and, when a wait reaches it, for the error
//! to raise). Only waits ask, so the uncontended paths never pay for the lookup, and a wait with
//! no deadline in force reads the context variable directly, without calling into Python.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;
use riprap_core::secs_to_nanos;

static DEADLINES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static STACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    DEADLINES
        .get_or_try_init(py, || Ok(py.import("riprap._deadlines")?.unbind()))
        .map(|m| m.bind(py))
}

/// Whether any deadline is in force: reads the context variable itself, so the common case (no
/// deadline) costs no Python call.
fn any_in_force(py: Python<'_>) -> PyResult<bool> {
    let var = STACK.get_or_try_init(py, || {
        Ok::<_, PyErr>(module(py)?.getattr(intern!(py, "DEADLINES"))?.unbind())
    })?;
    let mut value: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: `var` is a live ContextVar (checked by the call, which fails otherwise); on
    // success `value` is a new reference (the variable has a default), owned by `Bound`.
    let stack = unsafe {
        if pyo3::ffi::PyContextVar_Get(var.as_ptr(), std::ptr::null_mut(), &raw mut value) < 0 {
            return Err(PyErr::fetch(py));
        }
        Bound::from_owned_ptr_or_err(py, value)?
    };
    stack.is_truthy()
}

/// Nanoseconds left before the earliest deadline in force for the caller (`None`: none).
pub(crate) fn remaining(py: Python<'_>) -> PyResult<Option<u64>> {
    if !any_in_force(py)? {
        return Ok(None);
    }
    let left = module(py)?.call_method0(intern!(py, "remaining"))?;
    if left.is_none() {
        return Ok(None);
    }
    Ok(Some(secs_to_nanos(left.extract::<f64>()?.max(0.0))))
}

/// A fresh `TimeoutExceededError` for the earliest deadline (a wait reached it).
pub(crate) fn exceeded(py: Python<'_>) -> PyErr {
    match module(py).and_then(|m| m.call_method0(intern!(py, "exceeded"))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}
