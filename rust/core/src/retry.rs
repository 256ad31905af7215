//! The retry decision: given the attempt that just failed and the time spent, retry after a delay
//! or give up.
//!
//! The core never sleeps; it answers with a value and the caller waits with `time.sleep` or
//! `asyncio.sleep` (or a manual clock). The deadline rule is strict: when the next sleep would end
//! after the deadline, retrying stops at once (no sleep towards the deadline and no extra attempt;
//! litl/backoff#186 and jd/tenacity#423 are the bugs this prevents).
//!
//! ```
//! use riprap_core::{BackoffConfig, RetrySchedule};
//! let s = RetrySchedule::new(
//!     BackoffConfig { jitter: false, ..BackoffConfig::default() }, 3, Some(2.5), None,
//! ).unwrap();
//! assert_eq!(s.next_delay(1, 0.0, None, None), Some(1.0));
//! assert_eq!(s.next_delay(2, 1.0, None, None), None); // 1.0 + 2.0 > 2.5: give up now
//! assert_eq!(s.next_delay(3, 0.0, None, None), None); // attempts exhausted
//! ```

use crate::backoff::{Backoff, BackoffConfig};
use crate::error::{ConfigError, check_float, check_int};

/// A compiled retry policy: backoff, attempt limit and deadline.
#[derive(Debug)]
pub struct RetrySchedule {
    backoff: Backoff,
    max_attempts: u64,
    deadline: Option<f64>,
}

impl RetrySchedule {
    /// Validates and compiles a schedule.
    ///
    /// # Errors
    /// A [`ConfigError`] for a bad backoff, `max_attempts < 1` or a deadline that is not a finite
    /// number above zero.
    pub fn new(
        backoff: BackoffConfig,
        max_attempts: u64,
        deadline: Option<f64>,
        seed: Option<u64>,
    ) -> Result<Self, ConfigError> {
        check_int("max_attempts", i128::from(max_attempts), 1)?;
        if let Some(d) = deadline {
            check_float("deadline", d, 0.0, false)?;
        }
        Ok(Self {
            backoff: Backoff::new(backoff, seed)?,
            max_attempts,
            deadline,
        })
    }

    /// The backoff.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Total attempts allowed.
    pub fn max_attempts(&self) -> u64 {
        self.max_attempts
    }

    /// The deadline in seconds, if any.
    pub fn deadline(&self) -> Option<f64> {
        self.deadline
    }

    /// The delay before the next attempt after attempt `failed_attempt` failed, `elapsed` seconds
    /// after the first attempt started; `None` means give up now.
    ///
    /// `retry_after` (seconds, from the failed call) replaces the computed delay exactly, clamped
    /// to `[0, max_delay]`; a NaN is ignored.
    pub fn next_delay(
        &self,
        failed_attempt: u64,
        elapsed: f64,
        previous: Option<f64>,
        retry_after: Option<f64>,
    ) -> Option<f64> {
        if failed_attempt >= self.max_attempts {
            return None;
        }
        let delay = match retry_after {
            Some(r) if !r.is_nan() => r.clamp(0.0, self.backoff.config().max_delay),
            _ => self.backoff.delay(failed_attempt, previous),
        };
        if let Some(deadline) = self.deadline
            && elapsed + delay > deadline
        {
            return None;
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(max: u64, deadline: Option<f64>) -> RetrySchedule {
        RetrySchedule::new(
            BackoffConfig {
                jitter: false,
                ..BackoffConfig::default()
            },
            max,
            deadline,
            None,
        )
        .unwrap()
    }

    #[test]
    fn attempts_run_out() {
        let s = sched(3, None);
        assert_eq!(s.next_delay(1, 0.0, None, None), Some(1.0));
        assert_eq!(s.next_delay(2, 0.0, None, None), Some(2.0));
        assert_eq!(s.next_delay(3, 0.0, None, None), None);
    }

    #[test]
    fn retry_after_is_exact_and_clamped() {
        let s = sched(5, None);
        assert_eq!(s.next_delay(1, 0.0, None, Some(7.25)), Some(7.25));
        assert_eq!(s.next_delay(1, 0.0, None, Some(1e9)), Some(60.0));
        assert_eq!(s.next_delay(1, 0.0, None, Some(-3.0)), Some(0.0));
        assert_eq!(s.next_delay(1, 0.0, None, Some(f64::NAN)), Some(1.0));
    }

    #[test]
    fn deadline_is_never_crossed() {
        let s = sched(10, Some(5.0));
        assert_eq!(s.next_delay(1, 0.0, None, None), Some(1.0));
        assert_eq!(s.next_delay(3, 1.0, None, None), Some(4.0)); // ends exactly at 5.0
        assert_eq!(s.next_delay(3, 1.5, None, None), None);
        assert_eq!(s.next_delay(1, 0.0, None, Some(30.0)), None);
    }

    #[test]
    fn validation() {
        let b = BackoffConfig::default();
        assert!(
            RetrySchedule::new(b.clone(), 0, None, None)
                .unwrap_err()
                .to_string()
                .contains("max_attempts")
        );
        assert!(
            RetrySchedule::new(b.clone(), 1, Some(0.0), None)
                .unwrap_err()
                .to_string()
                .contains("deadline")
        );
        assert!(
            RetrySchedule::new(b, 1, Some(f64::INFINITY), None)
                .unwrap_err()
                .to_string()
                .contains("deadline")
        );
    }
}
