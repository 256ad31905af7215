//! `BulkheadConfig`: the validated numbers of `riprap.BulkheadConfig`.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};
use riprap_core::{BulkheadConfig, ConfigError, Isolation, check_int};

use crate::convert::number;
use crate::errors::config_error;

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |n| n.to_string())
}

/// A whole count in `min..=MAX_COUNT` (an `int`, never `bool`).
fn count_field(field: &'static str, v: &Bound<'_, PyAny>, min: i128) -> PyResult<u64> {
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{field} must be an int, got {}",
            type_name(v)
        )));
    }
    let max = riprap_core::bulkhead::MAX_COUNT;
    match v.extract::<i128>() {
        Ok(n) => {
            check_int(field, n, min).map_err(config_error)?;
            if n > i128::from(max) {
                return Err(config_error(ConfigError::IntTooLarge {
                    field,
                    value: n,
                    max: i128::from(max),
                }));
            }
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        }
        Err(_) if v.lt(0)? => Err(PyValueError::new_err(format!(
            "{field} must be >= {min}, got {v}"
        ))),
        Err(_) => Err(PyValueError::new_err(format!(
            "{field} must be <= {max}, got {v}"
        ))),
    }
}

fn optional_number(field: &str, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    match v {
        Some(v) if !v.is_none() => Ok(Some(number(field, v)?)),
        _ => Ok(None),
    }
}

/// A validated bulkhead configuration (the fields of `riprap.BulkheadConfig`).
#[pyclass(name = "BulkheadConfig", module = "riprap", frozen)]
pub struct PyBulkheadConfig {
    pub(crate) inner: BulkheadConfig,
}

#[pymethods]
impl PyBulkheadConfig {
    #[new]
    #[pyo3(signature = (*, max_concurrent_calls, max_queue_size, timeout, isolation_level,
                        max_wait, slow_call_duration))]
    fn new(
        max_concurrent_calls: &Bound<'_, PyAny>,
        max_queue_size: &Bound<'_, PyAny>,
        timeout: &Bound<'_, PyAny>,
        isolation_level: &Bound<'_, PyAny>,
        max_wait: Option<&Bound<'_, PyAny>>,
        slow_call_duration: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        // Types (with the integer ranges and the level's name) in declaration order, then the
        // float values in declaration order: the reference checks in the same order.
        let max_concurrent_calls = count_field("max_concurrent_calls", max_concurrent_calls, 1)?;
        let max_queue_size = count_field("max_queue_size", max_queue_size, 0)?;
        let timeout = number("timeout", timeout)?;
        let Ok(level) = isolation_level.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "isolation_level must be a str, got {}",
                type_name(isolation_level)
            )));
        };
        let isolation_level = Isolation::parse(&level.to_cow()?).map_err(config_error)?;
        let c = BulkheadConfig {
            max_concurrent_calls,
            max_queue_size,
            timeout,
            isolation_level,
            max_wait: optional_number("max_wait", max_wait)?,
            slow_call_duration: optional_number("slow_call_duration", slow_call_duration)?,
        };
        c.validate().map_err(config_error)?;
        Ok(Self { inner: c })
    }

    /// The most calls admitted at once: `max_concurrent_calls`, or `int(1.2 ×` it) for
    /// "shared".
    #[getter]
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
}
