//! What a user sets on a breaker, and its validation.

use super::WINDOW_BUCKETS;
use crate::clock::secs_to_nanos;
use crate::error::{ConfigError, check_float, check_int};

/// A breaker's configuration (the public field names and defaults). Durations are seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (>= 1).
    pub failure_threshold: u64,
    /// Seconds the breaker stays open before a trial call may go (> 0).
    pub timeout: f64,
    /// Trial successes that close a half-open breaker (>= 1).
    pub success_threshold: u64,
    /// Seconds of calls the failure and slow-call rates are computed over (> 0).
    pub monitoring_window: f64,
    /// Failure rate (in `[0, 1]`) that opens the breaker when exceeded.
    pub failure_rate_threshold: f64,
    /// Calls the window must hold before either rate counts (>= 1).
    pub minimum_calls: u64,
    /// Trial calls admitted at once while half-open (>= 1).
    pub half_open_max_calls: u64,
    /// A call lasting at least this many seconds is slow (`None`: no slow-call tracking).
    pub slow_call_duration: Option<f64>,
    /// Slow-call rate (in `(0, 1]`) that opens the breaker when reached.
    pub slow_call_rate_threshold: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            timeout: 60.0,
            success_threshold: 3,
            monitoring_window: 300.0,
            failure_rate_threshold: 0.5,
            minimum_calls: 10,
            half_open_max_calls: 3,
            slow_call_duration: None,
            slow_call_rate_threshold: 1.0,
        }
    }
}

fn check_at_most(field: &'static str, value: f64, max: f64) -> Result<f64, ConfigError> {
    if value > max {
        Err(ConfigError::TooLarge { field, value, max })
    } else {
        Ok(value)
    }
}

impl BreakerConfig {
    /// The width of one window bucket in nanoseconds: `monitoring_window / 60` (at least 1 ns;
    /// with a window shorter than 60 ns, one bucket per nanosecond).
    pub fn bucket_width(&self) -> u64 {
        let span = secs_to_nanos(self.monitoring_window).max(1);
        span / (WINDOW_BUCKETS as u64).min(span)
    }

    /// Checks every field, in declaration order.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_int("failure_threshold", i128::from(self.failure_threshold), 1)?;
        check_float("timeout", self.timeout, 0.0, false)?;
        check_int("success_threshold", i128::from(self.success_threshold), 1)?;
        check_float("monitoring_window", self.monitoring_window, 0.0, false)?;
        check_float(
            "failure_rate_threshold",
            self.failure_rate_threshold,
            0.0,
            true,
        )?;
        check_at_most("failure_rate_threshold", self.failure_rate_threshold, 1.0)?;
        check_int("minimum_calls", i128::from(self.minimum_calls), 1)?;
        check_int(
            "half_open_max_calls",
            i128::from(self.half_open_max_calls),
            1,
        )?;
        if let Some(d) = self.slow_call_duration {
            check_float("slow_call_duration", d, 0.0, false)?;
        }
        check_float(
            "slow_call_rate_threshold",
            self.slow_call_rate_threshold,
            0.0,
            false,
        )?;
        check_at_most(
            "slow_call_rate_threshold",
            self.slow_call_rate_threshold,
            1.0,
        )?;
        Ok(())
    }
}
