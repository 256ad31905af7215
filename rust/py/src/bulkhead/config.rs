//! `BulkheadConfig`: the validated numbers of `riprap.BulkheadConfig`.

use pyo3::prelude::*;
use riprap_core::bulkhead::MAX_COUNT;
use riprap_core::{BulkheadConfig, Isolation};

use crate::convert::{choice, int_in, number, optional_number};
use crate::errors::config_error;

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
        let max_concurrent_calls =
            int_in("max_concurrent_calls", max_concurrent_calls, 1, MAX_COUNT)?;
        let max_queue_size = int_in("max_queue_size", max_queue_size, 0, MAX_COUNT)?;
        let timeout = number("timeout", timeout)?;
        let level = choice("isolation_level", isolation_level, Isolation::NAMES)?;
        let isolation_level = Isolation::parse(level).map_err(config_error)?;
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
