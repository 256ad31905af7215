//! Error mapping, in one place: core configuration errors become `ValueError`s, and riprap's
//! own exceptions (defined in Python, in `riprap._errors`) are looked up one way, with
//! `import_exception!`. Every rejection is a fresh exception object: a reused one would grow its
//! traceback with every raise (purgatory's bug).

use pyo3::PyTypeInfo;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;
use riprap_core::{ConfigError, nanos_to_secs};

use crate::vectorcall::raise_now;

pyo3::import_exception!(riprap._errors, CircuitOpenError);
pyo3::import_exception!(riprap._errors, RateLimitExceeded);

/// A `ValueError` carrying the core's message (which names the field and the bad value).
pub(crate) fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A fresh `RateLimitExceeded(name, retry_after)`; `wait` is in nanoseconds.
pub(crate) fn rate_limited(py: Python<'_>, name: Option<&Py<PyString>>, wait: u64) -> PyErr {
    RateLimitExceeded::new_err((name.map(|n| n.clone_ref(py)), nanos_to_secs(wait)))
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
