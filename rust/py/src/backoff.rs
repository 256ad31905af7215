//! `RetrySchedule` (a compiled `RetryPolicy`) and `AdaptiveBackoff`.

use pyo3::prelude::*;
use riprap_core::{AdaptiveBackoff, BackoffConfig, RetrySchedule, Strategy};

use crate::convert::attempt;
use crate::errors::config_error;

#[allow(clippy::fn_params_excessive_bools)]
fn backoff_config(
    strategy: &str,
    base_delay: f64,
    max_delay: f64,
    exponential_base: f64,
    jitter: bool,
    jitter_range: f64,
) -> PyResult<BackoffConfig> {
    let strategy = Strategy::parse(strategy).map_err(config_error)?;
    Ok(BackoffConfig {
        strategy,
        base_delay,
        max_delay,
        exponential_base,
        jitter,
        jitter_range,
    })
}

/// A validated retry schedule: backoff, attempt limit, deadline and jitter stream.
#[pyclass(name = "RetrySchedule", module = "riprap", frozen)]
pub struct PyRetrySchedule {
    inner: RetrySchedule,
}

impl PyRetrySchedule {
    pub(crate) fn inner(&self) -> &RetrySchedule {
        &self.inner
    }
}

#[pymethods]
impl PyRetrySchedule {
    #[new]
    #[pyo3(signature = (*, strategy, base_delay, max_delay, exponential_base, jitter, jitter_range,
                        max_attempts, deadline, seed))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        strategy: &str,
        base_delay: f64,
        max_delay: f64,
        exponential_base: f64,
        jitter: bool,
        jitter_range: f64,
        max_attempts: u64,
        deadline: Option<f64>,
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
        let inner = RetrySchedule::new(cfg, max_attempts, deadline, seed).map_err(config_error)?;
        Ok(Self { inner })
    }

    /// The delay after failed attempt `attempt` (1-based).
    #[pyo3(signature = (attempt, previous = None))]
    fn compute_delay(&self, attempt: &Bound<'_, PyAny>, previous: Option<f64>) -> PyResult<f64> {
        Ok(self
            .inner
            .backoff()
            .delay(self::attempt(attempt)?, previous))
    }

    /// The delay before the next attempt, or `None` to give up now.
    #[pyo3(signature = (failed_attempt, elapsed, previous = None, retry_after = None))]
    fn next_delay(
        &self,
        failed_attempt: u64,
        elapsed: f64,
        previous: Option<f64>,
        retry_after: Option<f64>,
    ) -> Option<f64> {
        self.inner
            .next_delay(failed_attempt, elapsed, previous, retry_after)
    }

    #[getter]
    fn max_attempts(&self) -> u64 {
        self.inner.max_attempts()
    }

    #[getter]
    fn deadline(&self) -> Option<f64> {
        self.inner.deadline()
    }
}

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
    fn delay(&self, operation_id: &str, attempt: &Bound<'_, PyAny>) -> PyResult<f64> {
        Ok(self.inner.delay(operation_id, self::attempt(attempt)?))
    }

    /// Records one result of `operation_id`.
    fn record(&self, operation_id: &str, success: bool) {
        self.inner.record(operation_id, success);
    }

    /// The success rate of `operation_id` over its last 100 results (0.8 with none).
    fn success_rate(&self, operation_id: &str) -> f64 {
        self.inner.success_rate(operation_id)
    }

    /// Operation ids tracked (at most 10,000).
    fn __len__(&self) -> usize {
        self.inner.operations()
    }
}
