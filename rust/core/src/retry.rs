//! The retry decision: given the attempt that just failed and the time spent, retry after a delay
//! or give up.
//!
//! The core never sleeps; it answers with a value and the caller waits with `time.sleep` or
//! `asyncio.sleep` (or a manual clock). The deadline rule is strict: when the next sleep would end
//! after the deadline, retrying stops at once (no sleep towards the deadline and no extra attempt;
//! litl/backoff#186 and jd/tenacity#423 are the bugs this prevents).
//!
//! [`RetrySchedule::decide`] is the whole give-up decision: attempts, the policy's deadline, an
//! enclosing deadline, and a retry budget (asked last, so a retry that would not be made anyway
//! spends nothing), with the reason when it gives up.
//!
//! ```
//! use riprap_core::{BackoffConfig, Failed, GiveUp, RetryDecision, RetrySchedule};
//! let s = RetrySchedule::new(
//!     BackoffConfig { jitter: false, ..BackoffConfig::default() }, 3, Some(2.5), None,
//! ).unwrap();
//! let failed = |attempt, elapsed| Failed { attempt, elapsed, ..Failed::default() };
//! assert_eq!(s.decide(&failed(1, 0.0), || true), RetryDecision::Retry(1.0));
//! // 1.0 + 2.0 > 2.5: give up now, without sleeping towards the deadline.
//! assert_eq!(s.decide(&failed(2, 1.0), || true), RetryDecision::GiveUp(GiveUp::Deadline));
//! assert_eq!(s.decide(&failed(3, 0.0), || true), RetryDecision::GiveUp(GiveUp::Attempts));
//! // The budget refuses: no retry.
//! assert_eq!(s.decide(&failed(1, 0.0), || false), RetryDecision::GiveUp(GiveUp::Budget));
//! ```

use crate::backoff::{Backoff, BackoffConfig};
use crate::error::{ConfigError, check_float, check_int};

mod counters;

pub use counters::{ATTEMPT_SLOTS, DURATION_BOUNDS, RetryCounters, RetrySnapshot, duration_bucket};

/// What the caller knows about the attempt that just failed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Failed {
    /// The number of the attempt that failed (1-based).
    pub attempt: u64,
    /// Seconds since the first attempt started (0.0 when there is no deadline to measure).
    pub elapsed: f64,
    /// The previous delay ("decorrelated" grows from it).
    pub previous: Option<f64>,
    /// A delay the failure asked for (Retry-After), in seconds.
    pub retry_after: Option<f64>,
    /// Seconds left before an enclosing deadline (not the policy's own), if there is one.
    pub time_left: Option<f64>,
}

/// Why retrying stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The attempt that failed was the last one allowed.
    Attempts,
    /// The next wait would end after the policy's deadline or an enclosing one.
    Deadline,
    /// The retry budget refused the retry.
    Budget,
}

impl GiveUp {
    /// The reason as log lines print it.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Attempts => "attempts exhausted",
            Self::Deadline => "the next wait would cross the deadline",
            Self::Budget => "the retry budget is spent",
        }
    }
}

/// What [`RetrySchedule::decide`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryDecision {
    /// Wait this many seconds, then make the next attempt.
    Retry(f64),
    /// Stop now.
    GiveUp(GiveUp),
}

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

    /// The whole decision after a failed attempt: the next delay, or why to give up.
    ///
    /// The attempt limit comes first, then the delay ([`next_delay`](Self::next_delay)), then
    /// the policy's deadline and `failed.time_left` (a wait that would end after either is not
    /// started), and last `withdraw`, the retry budget: it is only asked for a retry that would
    /// otherwise be made, so a refused retry never spends budget.
    pub fn decide(&self, failed: &Failed, withdraw: impl FnOnce() -> bool) -> RetryDecision {
        if failed.attempt >= self.max_attempts {
            return RetryDecision::GiveUp(GiveUp::Attempts);
        }
        let Some(delay) = self.next_delay(
            failed.attempt,
            failed.elapsed,
            failed.previous,
            failed.retry_after,
        ) else {
            return RetryDecision::GiveUp(GiveUp::Deadline);
        };
        if failed.time_left.is_some_and(|left| delay > left) {
            return RetryDecision::GiveUp(GiveUp::Deadline);
        }
        if !withdraw() {
            return RetryDecision::GiveUp(GiveUp::Budget);
        }
        RetryDecision::Retry(delay)
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
    fn decide_gives_the_reason_and_asks_the_budget_last() {
        let s = sched(3, Some(10.0));
        let failed = |attempt, elapsed, time_left| Failed {
            attempt,
            elapsed,
            time_left,
            ..Failed::default()
        };
        let asked = std::cell::Cell::new(0);
        let budget = |answer: bool| {
            let asked = &asked;
            move || {
                asked.set(asked.get() + 1);
                answer
            }
        };
        assert_eq!(
            s.decide(&failed(1, 0.0, None), budget(true)),
            RetryDecision::Retry(1.0)
        );
        assert_eq!(
            s.decide(&failed(3, 0.0, None), budget(true)),
            RetryDecision::GiveUp(GiveUp::Attempts)
        );
        assert_eq!(
            s.decide(&failed(2, 9.0, None), budget(true)),
            RetryDecision::GiveUp(GiveUp::Deadline)
        );
        // An enclosing deadline: 2.0 s of wait do not fit in 1.5 s; 2.0 fit in 2.0.
        assert_eq!(
            s.decide(&failed(2, 0.0, Some(1.5)), budget(true)),
            RetryDecision::GiveUp(GiveUp::Deadline)
        );
        assert_eq!(
            s.decide(&failed(2, 0.0, Some(2.0)), budget(true)),
            RetryDecision::Retry(2.0)
        );
        assert_eq!(
            asked.get(),
            2,
            "the budget is asked only for retries that would be made"
        );
        assert_eq!(
            s.decide(&failed(1, 0.0, None), budget(false)),
            RetryDecision::GiveUp(GiveUp::Budget)
        );
        assert_eq!(GiveUp::Budget.reason(), "the retry budget is spent");
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
