//! What a user sets on a bulkhead, and its validation.

use crate::clock::secs_to_nanos;
use crate::error::{ConfigError, check_float, check_int};

/// The largest `max_concurrent_calls` and `max_queue_size` accepted (the counts live in 32-bit
/// halves of one atomic word, and "shared" admits 20 % more than `max_concurrent_calls`).
pub const MAX_COUNT: u64 = 1_000_000_000;

/// How a bulkhead sets its admission limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// At most `max_concurrent_calls` run at once.
    Strict,
    /// At most `int(1.2 × max_concurrent_calls)` run at once.
    Shared,
    /// The limit moves between 1 and `max_concurrent_calls` (AIMD, see [`super::Bulkhead`]).
    Adaptive,
}

impl Isolation {
    /// The accepted names, as `isolation_level` spells them.
    pub const NAMES: &'static [&'static str] = &["strict", "shared", "adaptive"];

    /// The value string: `"strict"`, `"shared"` or `"adaptive"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Shared => "shared",
            Self::Adaptive => "adaptive",
        }
    }

    /// Parses `isolation_level`.
    ///
    /// # Errors
    /// [`ConfigError::Unknown`] for any other string.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        match value {
            "strict" => Ok(Self::Strict),
            "shared" => Ok(Self::Shared),
            "adaptive" => Ok(Self::Adaptive),
            other => Err(ConfigError::Unknown {
                field: "isolation_level",
                value: other.to_owned(),
                expected: Self::NAMES,
            }),
        }
    }
}

/// A bulkhead's configuration. Durations are seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkheadConfig {
    /// Calls allowed to run at once (1 ..= [`MAX_COUNT`]); "shared" admits 20 % more, and for
    /// "adaptive" it is the ceiling of the moving limit.
    pub max_concurrent_calls: u64,
    /// Callers allowed to wait for a slot (0 ..= [`MAX_COUNT`]); beyond that, rejected at once.
    pub max_queue_size: u64,
    /// Seconds a call may run before it times out (> 0). The core does not run calls: it
    /// records timeouts the caller reports, and derives the default slow-call threshold.
    pub timeout: f64,
    /// How the admission limit is set.
    pub isolation_level: Isolation,
    /// Seconds a caller may wait in the queue before it is rejected (`None`: no limit).
    pub max_wait: Option<f64>,
    /// "adaptive" only: a successful call that lasted at least this long counts against the
    /// limit like a failure (`None`: half of `timeout`).
    pub slow_call_duration: Option<f64>,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 10,
            max_queue_size: 100,
            timeout: 30.0,
            isolation_level: Isolation::Strict,
            max_wait: None,
            slow_call_duration: None,
        }
    }
}

fn check_count(field: &'static str, value: u64, min: i128) -> Result<u64, ConfigError> {
    check_int(field, i128::from(value), min)?;
    if value > MAX_COUNT {
        return Err(ConfigError::IntTooLarge {
            field,
            value: i128::from(value),
            max: i128::from(MAX_COUNT),
        });
    }
    Ok(value)
}

impl BulkheadConfig {
    /// Checks every field, in declaration order.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_count("max_concurrent_calls", self.max_concurrent_calls, 1)?;
        check_count("max_queue_size", self.max_queue_size, 0)?;
        check_float("timeout", self.timeout, 0.0, false)?;
        if let Some(w) = self.max_wait {
            check_float("max_wait", w, 0.0, true)?;
        }
        if let Some(d) = self.slow_call_duration {
            check_float("slow_call_duration", d, 0.0, false)?;
        }
        Ok(())
    }

    /// The most calls admitted at once: `max_concurrent_calls`, or `int(1.2 ×
    /// max_concurrent_calls)` for "shared" (computed exactly, as `n × 6 / 5`).
    pub fn capacity(&self) -> u64 {
        match self.isolation_level {
            Isolation::Shared => self.max_concurrent_calls.saturating_mul(6) / 5,
            Isolation::Strict | Isolation::Adaptive => self.max_concurrent_calls,
        }
    }

    /// The slow-call threshold in nanoseconds (at least 1): `slow_call_duration`, or half of
    /// `timeout`.
    pub fn slow_ns(&self) -> u64 {
        let secs = self.slow_call_duration.unwrap_or(self.timeout / 2.0);
        secs_to_nanos(secs).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let bad = |c: BulkheadConfig| c.validate().unwrap_err().to_string();
        let d = BulkheadConfig::default();
        assert_eq!(
            bad(BulkheadConfig {
                max_concurrent_calls: 0,
                ..d.clone()
            }),
            "max_concurrent_calls must be >= 1, got 0"
        );
        assert_eq!(
            bad(BulkheadConfig {
                max_queue_size: MAX_COUNT + 1,
                ..d.clone()
            }),
            "max_queue_size must be <= 1000000000, got 1000000001"
        );
        assert_eq!(
            bad(BulkheadConfig {
                timeout: f64::NAN,
                ..d.clone()
            }),
            "timeout must be a finite number, got nan"
        );
        assert_eq!(
            bad(BulkheadConfig {
                max_wait: Some(-1.0),
                ..d.clone()
            }),
            "max_wait must be >= 0.0, got -1.0"
        );
        assert_eq!(
            bad(BulkheadConfig {
                slow_call_duration: Some(0.0),
                ..d
            }),
            "slow_call_duration must be > 0.0, got 0.0"
        );
        assert_eq!(
            Isolation::parse("loose").unwrap_err().to_string(),
            "isolation_level must be one of 'strict', 'shared', 'adaptive', got 'loose'"
        );
    }

    #[test]
    fn shared_admits_a_fifth_more_rounded_down() {
        let shared = |n| BulkheadConfig {
            max_concurrent_calls: n,
            isolation_level: Isolation::Shared,
            ..BulkheadConfig::default()
        };
        for n in [1u64, 4, 5, 9, 10, 25, 35, 999, MAX_COUNT] {
            #[allow(clippy::cast_precision_loss)]
            let float = (1.2 * n as f64) as u64;
            assert_eq!(shared(n).capacity(), float, "{n}");
        }
        assert_eq!(BulkheadConfig::default().capacity(), 10);
        assert_eq!(BulkheadConfig::default().slow_ns(), 15_000_000_000);
    }
}
