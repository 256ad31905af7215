//! What a retried operation did, counted for monitors and metrics: attempts by number, calls
//! that finally succeeded or failed, and (when switched on) a histogram of call durations.
//!
//! Why these are native: a Prometheus counter incremented from Python costs 200–900 ns per call,
//! more than the whole retry decision. Here the success path of a call that worked at once costs
//! one relaxed atomic add; everything else is counted on the failure path, which already pays
//! for an exception. The duration histogram needs a clock read at the start and at the end of
//! every call, so it is off until someone asks for it ([`RetryCounters::set_timing`]): off, it
//! costs one relaxed load.
//!
//! The counts are read at scrape time ([`RetryCounters::snapshot`]); nothing is pushed anywhere.
//! A forked child starts from zero (it has not made the parent's calls).
//!
//! ```
//! use riprap_core::RetryCounters;
//! let c = RetryCounters::new();
//! c.first_success();             // a call that worked at once
//! c.failed_attempt(1);           // a call whose first attempt failed ...
//! c.succeeded(2, None);          // ... and whose second worked
//! let s = c.snapshot();
//! assert_eq!((s.attempts[0], s.attempts[1]), (2, 1));
//! assert_eq!((s.successes, s.failures), (2, 0));
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::clock::secs_to_nanos;
use crate::fork::ForkLocal;

/// Attempt numbers counted apart: 1 to `ATTEMPT_SLOTS - 1`, and the last slot for every attempt
/// from `ATTEMPT_SLOTS` on (so a policy with a thousand attempts still makes ten series).
pub const ATTEMPT_SLOTS: usize = 10;

/// Upper bounds (inclusive, seconds) of the duration histogram's buckets: Prometheus's default
/// buckets. A last, unbounded bucket follows them.
pub const DURATION_BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

const BUCKETS: usize = DURATION_BOUNDS.len() + 1;

/// [`DURATION_BOUNDS`] in nanoseconds (a test checks they agree), compared with no float work.
const BOUND_NANOS: [u64; BUCKETS - 1] = [
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    75_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    750_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    7_500_000_000,
    10_000_000_000,
];

#[derive(Debug, Default)]
struct Counts {
    /// Calls that succeeded at their first attempt (the one write of the success path).
    first_successes: AtomicU64,
    /// Other finished attempts, by number (slot 0: first attempts that failed).
    attempts: [AtomicU64; ATTEMPT_SLOTS],
    /// Calls that succeeded after at least one retry.
    retried_successes: AtomicU64,
    /// Calls that ended without an accepted result.
    failures: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

/// A snapshot of [`RetryCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetrySnapshot {
    /// Finished attempts by number: `attempts[0]` are first attempts, ...; the last slot counts
    /// every attempt from [`ATTEMPT_SLOTS`] on.
    pub attempts: [u64; ATTEMPT_SLOTS],
    /// Calls that finally succeeded (at once or after retries).
    pub successes: u64,
    /// Calls that ended without an accepted result: retries ran out or were refused, the error
    /// was not retryable, or a hook raised.
    pub failures: u64,
    /// Timed calls per duration bucket (not cumulative): `buckets[i]` took at most
    /// `DURATION_BOUNDS[i]` seconds and more than the bound before it; the last is unbounded.
    pub buckets: [u64; BUCKETS],
    /// Total duration of the timed calls, in nanoseconds (saturating).
    pub sum_nanos: u64,
}

impl RetrySnapshot {
    /// Calls timed by the histogram (the sum of its buckets, so the two always agree).
    pub fn timed_calls(&self) -> u64 {
        self.buckets.iter().fold(0, |a, b| a.saturating_add(*b))
    }
}

/// The counters of one retried operation (shared by every engine that runs it).
#[derive(Debug)]
pub struct RetryCounters {
    timing: AtomicBool,
    counts: ForkLocal<Counts>,
}

impl Default for RetryCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// The slot of attempt number `attempt` (1-based).
fn slot(attempt: u64) -> usize {
    let last = ATTEMPT_SLOTS - 1;
    usize::try_from(attempt.saturating_sub(1)).map_or(last, |i| i.min(last))
}

/// The histogram bucket of a duration.
pub fn duration_bucket(seconds: f64) -> usize {
    bucket_of(secs_to_nanos(seconds.max(0.0)))
}

fn bucket_of(nanos: u64) -> usize {
    BOUND_NANOS
        .iter()
        .position(|b| nanos <= *b)
        .unwrap_or(BUCKETS - 1)
}

impl RetryCounters {
    /// Zeroed counters, with timing off.
    pub fn new() -> Self {
        Self {
            timing: AtomicBool::new(false),
            counts: ForkLocal::new(Counts::default()),
        }
    }

    #[inline]
    fn counts(&self) -> &Counts {
        self.counts.get(|_| Counts::default())
    }

    /// Whether call durations are measured (engines read it once per call).
    #[inline]
    pub fn timing(&self) -> bool {
        self.timing.load(Ordering::Relaxed)
    }

    /// Turns the duration histogram on or off.
    pub fn set_timing(&self, on: bool) {
        self.timing.store(on, Ordering::Relaxed);
    }

    /// A call succeeded at its first attempt, untimed: the whole cost of the success path.
    #[inline]
    pub fn first_success(&self) {
        // A u64 incremented by one cannot wrap in practice (585 years at 1 per ns).
        self.counts()
            .first_successes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Attempt number `attempt` failed (it may be retried or not).
    pub fn failed_attempt(&self, attempt: u64) {
        self.counts().attempts[slot(attempt)].fetch_add(1, Ordering::Relaxed);
    }

    /// The call succeeded at attempt number `attempt`, after `seconds` if it was timed.
    pub fn succeeded(&self, attempt: u64, seconds: Option<f64>) {
        let c = self.counts();
        if attempt <= 1 {
            c.first_successes.fetch_add(1, Ordering::Relaxed);
        } else {
            c.attempts[slot(attempt)].fetch_add(1, Ordering::Relaxed);
            c.retried_successes.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(s) = seconds {
            self.observe(s);
        }
    }

    /// The call ended without an accepted result, after `seconds` if it was timed.
    pub fn gave_up(&self, seconds: Option<f64>) {
        self.counts().failures.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = seconds {
            self.observe(s);
        }
    }

    /// Adds one call of `seconds` to the duration histogram (negative counts as zero).
    pub fn observe(&self, seconds: f64) {
        let c = self.counts();
        let nanos = secs_to_nanos(seconds.max(0.0));
        c.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
        // Saturating: the sum must never wrap to a small number.
        let _ = c
            .sum_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(nanos))
            });
    }

    /// The counts now. Each counter is read once; the histogram's count is the sum of its
    /// buckets, so a snapshot is always a valid histogram.
    pub fn snapshot(&self) -> RetrySnapshot {
        let c = self.counts();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let first = load(&c.first_successes);
        let retried = load(&c.retried_successes);
        let mut attempts = c.attempts.each_ref().map(load);
        attempts[0] = attempts[0].saturating_add(first);
        RetrySnapshot {
            attempts,
            successes: first.saturating_add(retried),
            failures: load(&c.failures),
            buckets: c.buckets.each_ref().map(load),
            sum_nanos: load(&c.sum_nanos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_past_the_last_slot_share_it() {
        let c = RetryCounters::new();
        c.failed_attempt(9);
        c.failed_attempt(10);
        c.failed_attempt(u64::MAX);
        c.failed_attempt(0); // never passed, but not a panic: slot 0
        let s = c.snapshot();
        assert_eq!(s.attempts[8], 1);
        assert_eq!(s.attempts[9], 2);
        assert_eq!(s.attempts[0], 1);
    }

    #[test]
    fn outcomes_and_histogram() {
        let c = RetryCounters::new();
        c.first_success();
        c.succeeded(1, Some(0.005)); // on the bound: the first bucket
        c.failed_attempt(1);
        c.succeeded(2, Some(0.0051));
        c.failed_attempt(1);
        c.failed_attempt(2);
        c.gave_up(Some(100.0));
        c.gave_up(None);
        let s = c.snapshot();
        assert_eq!(s.attempts[..3], [4, 2, 0]);
        assert_eq!((s.successes, s.failures), (3, 2));
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[BUCKETS - 1], 1);
        assert_eq!(s.timed_calls(), 3);
        assert_eq!(s.sum_nanos, 5_000_000 + 5_100_000 + 100_000_000_000);
    }

    #[test]
    fn buckets_and_clamping() {
        assert_eq!(duration_bucket(-1.0), 0);
        assert_eq!(duration_bucket(f64::NAN), 0);
        assert_eq!(duration_bucket(10.0), BUCKETS - 2);
        assert_eq!(duration_bucket(10.000_000_001), BUCKETS - 1);
        assert_eq!(duration_bucket(f64::INFINITY), BUCKETS - 1);
        let c = RetryCounters::new();
        c.observe(f64::INFINITY);
        c.observe(f64::INFINITY);
        assert_eq!(c.snapshot().sum_nanos, u64::MAX);
    }

    #[test]
    fn bound_nanos_are_the_bounds() {
        assert_eq!(BOUND_NANOS, DURATION_BOUNDS.map(secs_to_nanos));
    }

    #[test]
    fn timing_switch() {
        let c = RetryCounters::new();
        assert!(!c.timing());
        c.set_timing(true);
        assert!(c.timing());
    }
}
