//! The backoff fields of a retry policy, as the core's `BackoffConfig` (shared by `RetrySchedule`
//! and `AdaptiveBackoff`).

use pyo3::prelude::*;
use riprap_core::{BackoffConfig, Strategy};

use crate::errors::config_error;

#[allow(clippy::fn_params_excessive_bools)]
/// Validates the backoff fields into a core `BackoffConfig`.
pub(crate) fn backoff_config(
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
