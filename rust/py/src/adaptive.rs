//! `AdaptiveBackoff`: backoff stretched or shrunk by each operation's recent success rate.

use pyo3::prelude::*;
use riprap_core::AdaptiveBackoff;

use crate::backoff::backoff_config;
use crate::convert::{attempt, text};
use crate::errors::config_error;

/// Backoff stretched or shrunk by each operation's recent success rate.
#[pyclass(name = "AdaptiveBackoff", module = "riprap", frozen)]
pub struct PyAdaptiveBackoff {
    inner: AdaptiveBackoff,
}

#[pymethods]
impl PyAdaptiveBackoff {
    #[new]
    #[pyo3(signature = (*, strategy, base_delay, max_delay, exponential_base, jitter, jitter_range, seed))]
    fn new(
        strategy: &str,
        base_delay: f64,
        max_delay: f64,
        exponential_base: f64,
        jitter: bool,
        jitter_range: f64,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let cfg = backoff_config(
            strategy,
            base_delay,
            max_delay,
            exponential_base,
            jitter,
            jitter_range,
        )?;
        Ok(Self {
            inner: AdaptiveBackoff::new(cfg, seed).map_err(config_error)?,
        })
    }

    /// The delay after failed attempt `attempt` of `operation_id`.
    fn delay(&self, operation_id: &Bound<'_, PyAny>, attempt: &Bound<'_, PyAny>) -> PyResult<f64> {
        let id = text("operation_id", operation_id)?;
        Ok(self.inner.delay(id, self::attempt(attempt)?))
    }

    /// Records one result of `operation_id`.
    fn record(&self, operation_id: &Bound<'_, PyAny>, success: bool) -> PyResult<()> {
        self.inner
            .record(text("operation_id", operation_id)?, success);
        Ok(())
    }

    /// The success rate of `operation_id` over its last 100 results (0.8 with none).
    fn success_rate(&self, operation_id: &Bound<'_, PyAny>) -> PyResult<f64> {
        Ok(self.inner.success_rate(text("operation_id", operation_id)?))
    }

    /// Operation ids tracked (at most 10,000).
    fn __len__(&self) -> usize {
        self.inner.operations()
    }
}
