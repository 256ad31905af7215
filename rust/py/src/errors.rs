//! Error mapping: core configuration errors become `ValueError`s with the core's message.

use pyo3::PyErr;
use pyo3::exceptions::PyValueError;
use riprap_core::ConfigError;

/// A `ValueError` carrying the core's message (which names the field and the bad value).
pub(crate) fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.to_string())
}
