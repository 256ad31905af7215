//! Error mapping, in one place: core configuration errors become `ValueError`s, and riprap's
//! own exceptions (defined in Python, in `riprap._errors`) are looked up one way, with
//! `import_exception!`. Every rejection is a fresh exception object: a reused one would grow its
//! traceback with every raise (purgatory's bug).

use pyo3::PyTypeInfo;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use riprap_core::{ConfigError, nanos_to_secs};

use crate::vectorcall::raise_now;

pyo3::import_exception!(riprap._errors, CircuitOpenError);
pyo3::import_exception!(riprap._errors, RateLimitExceeded);
pyo3::import_exception!(riprap._errors, BulkheadRejectedError);
pyo3::import_exception!(riprap._errors, ResilienceError);

static REJECTIONS: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();

/// `ResilienceError`, the base of every riprap exception.
pub(crate) fn resilience_error(py: Python<'_>) -> Bound<'_, PyType> {
    ResilienceError::type_object(py)
}

/// riprap's own rejections, `riprap._errors.REJECTIONS` (one tuple for both backends). They
/// mean "riprap refused" (load shedding), not "the dependency failed": a retry policy does not
/// retry them unless it names them, and a breaker never counts them as failures.
pub(crate) fn rejections(py: Python<'_>) -> PyResult<&Bound<'_, PyTuple>> {
    Ok(REJECTIONS
        .get_or_try_init(py, || -> PyResult<_> {
            Ok(py
                .import("riprap._errors")?
                .getattr("REJECTIONS")?
                .cast_into::<PyTuple>()?
                .unbind())
        })?
        .bind(py))
}

/// A `ValueError` carrying the core's message (which names the field and the bad value).
pub(crate) fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A fresh `RateLimitExceeded(name, retry_after)`; `wait` is in nanoseconds.
pub(crate) fn rate_limited(py: Python<'_>, name: Option<&Py<PyString>>, wait: u64) -> PyErr {
    RateLimitExceeded::new_err((name.map(|n| n.clone_ref(py)), nanos_to_secs(wait)))
}

/// A fresh `BulkheadRejectedError(name, message)`.
pub(crate) fn bulkhead_rejected(py: Python<'_>, name: &Py<PyString>, message: String) -> PyErr {
    BulkheadRejectedError::new_err((name.clone_ref(py), message))
}

/// A fresh `CircuitOpenError(name, retry_after)`; `retry_after` is in nanoseconds.
pub(crate) fn circuit_open(py: Python<'_>, name: &Py<PyString>, retry_after: u64) -> PyErr {
    CircuitOpenError::new_err((name.clone_ref(py), nanos_to_secs(retry_after)))
}

/// Raises a fresh `CircuitOpenError(name, retry_after)` without a `PyErr`, for the vectorcall
/// fast path (which must not drop a `PyErr`).
pub(crate) fn raise_circuit_open(py: Python<'_>, name: &Bound<'_, PyString>, retry_after: u64) {
    match (name, nanos_to_secs(retry_after)).into_pyobject(py) {
        Ok(args) => raise_now(CircuitOpenError::type_object(py).as_any(), &args),
        // Only an allocation failure; restoring moves the error into the interpreter without
        // dropping a `Py`.
        Err(err) => err.restore(py),
    }
}
