//! A retry budget shared by every policy that holds it (Envoy, Finagle and the SRE book's answer to
//! retry storms).
//!
//! Why a budget rather than a bigger `max_attempts`: per-call attempt limits multiply under load
//! (three layers of three attempts is 27 calls per request) exactly when the dependency is
//! weakest. A budget caps retries as a fraction of real traffic: over the last `window` seconds,
//! retries are allowed while `retries + 1 <= ratio × first_attempts + min_per_second × window`.
//! The floor (`min_per_second`) keeps low-traffic callers able to retry at all.
//!
//! The window is a ring of ten time buckets, so memory is fixed and each operation is O(1); the
//! window's edge therefore moves in steps of `window / 10`.
//!
//! ```
//! use riprap_core::RetryBudget;
//! let b = RetryBudget::new(0.5, 0.0, 10.0).unwrap();
//! for _ in 0..4 { b.deposit(0); }
//! assert!(b.try_withdraw(0) && b.try_withdraw(0));
//! assert!(!b.try_withdraw(0)); // 3 > 0.5 × 4
//! ```

use std::sync::{Mutex, PoisonError};

use crate::clock::secs_to_nanos;
use crate::error::{ConfigError, check_float};
use crate::fork::ForkLocal;

const BUCKETS: usize = 10;

#[derive(Debug, Default)]
struct State {
    deposits: [u64; BUCKETS],
    withdrawals: [u64; BUCKETS],
    head: u64,
    total_deposits: u64,
    total_withdrawals: u64,
    total_refused: u64,
}

impl State {
    fn rotate(&mut self, index: u64) {
        // A clock that steps back keeps counting into the newest bucket; it never frees budget.
        if index <= self.head {
            return;
        }
        let steps = (index - self.head).min(BUCKETS as u64);
        for k in 1..=steps {
            let slot = ((self.head + k) % BUCKETS as u64) as usize;
            self.deposits[slot] = 0;
            self.withdrawals[slot] = 0;
        }
        self.head = index;
    }

    fn slot(&self) -> usize {
        (self.head % BUCKETS as u64) as usize
    }
}

/// Snapshot of a budget's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetStats {
    /// First attempts seen in the window.
    pub deposits: u64,
    /// Retries allowed in the window.
    pub withdrawals: u64,
    /// Retries still allowed right now (may be fractional).
    pub available: f64,
    /// First attempts seen since creation.
    pub total_deposits: u64,
    /// Retries allowed since creation.
    pub total_withdrawals: u64,
    /// Retries refused since creation.
    pub total_refused: u64,
}

/// A thread-safe retry budget over a sliding window of time buckets.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: f64,
    window: f64,
    bucket_ns: u64,
    /// What a forked child starts afresh (an empty window).
    state: ForkLocal<Mutex<State>>,
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per first attempt plus `min_per_second` retries per
    /// second, over the last `window` seconds.
    ///
    /// # Errors
    /// [`ConfigError`] when `ratio` or `min_per_second` is negative or not finite, or `window`
    /// is not a finite number above zero.
    pub fn new(ratio: f64, min_per_second: f64, window: f64) -> Result<Self, ConfigError> {
        check_float("ratio", ratio, 0.0, true)?;
        check_float("min_per_second", min_per_second, 0.0, true)?;
        check_float("window", window, 0.0, false)?;
        let bucket_ns = (secs_to_nanos(window) / BUCKETS as u64).max(1);
        Ok(Self {
            ratio,
            min_per_second,
            window,
            bucket_ns,
            state: ForkLocal::new(Mutex::new(State::default())),
        })
    }

    /// The configured `(ratio, min_per_second, window)`.
    pub fn params(&self) -> (f64, f64, f64) {
        (self.ratio, self.min_per_second, self.window)
    }

    fn locked(&self, now: u64) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while the lock is held, so poisoning cannot happen; recover anyway.
        let mut s = self
            .state
            .get(|_| Mutex::default())
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.rotate(now / self.bucket_ns);
        s
    }

    fn allowance(&self, deposits: u64) -> f64 {
        self.ratio * deposits as f64 + self.min_per_second * self.window
    }

    /// Records a first attempt.
    pub fn deposit(&self, now: u64) {
        let mut s = self.locked(now);
        let i = s.slot();
        s.deposits[i] += 1;
        s.total_deposits += 1;
    }

    /// Takes one retry from the budget; `false` means the retry must not be made.
    pub fn try_withdraw(&self, now: u64) -> bool {
        let mut s = self.locked(now);
        let d: u64 = s.deposits.iter().sum();
        let w: u64 = s.withdrawals.iter().sum();
        if (w + 1) as f64 <= self.allowance(d) {
            let i = s.slot();
            s.withdrawals[i] += 1;
            s.total_withdrawals += 1;
            true
        } else {
            s.total_refused += 1;
            false
        }
    }

    /// The counters as of `now`.
    pub fn stats(&self, now: u64) -> BudgetStats {
        let s = self.locked(now);
        let deposits: u64 = s.deposits.iter().sum();
        let withdrawals: u64 = s.withdrawals.iter().sum();
        BudgetStats {
            deposits,
            withdrawals,
            available: (self.allowance(deposits) - withdrawals as f64).max(0.0),
            total_deposits: s.total_deposits,
            total_withdrawals: s.total_withdrawals,
            total_refused: s.total_refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_allows_retries_without_traffic() {
        let b = RetryBudget::new(0.2, 1.0, 3.0).unwrap();
        assert!(b.try_withdraw(0) && b.try_withdraw(0) && b.try_withdraw(0));
        assert!(!b.try_withdraw(0));
        assert_eq!(b.stats(0).total_refused, 1);
    }

    #[test]
    fn window_forgets_old_traffic() {
        let b = RetryBudget::new(1.0, 0.0, 10.0).unwrap();
        b.deposit(0);
        assert!(b.try_withdraw(0));
        assert!(!b.try_withdraw(0));
        // Ten seconds later both the deposit and the withdrawal have left the window.
        let later = secs_to_nanos(10.0);
        assert!(!b.try_withdraw(later));
        b.deposit(later);
        assert!(b.try_withdraw(later));
    }

    #[test]
    fn clock_stepping_back_frees_nothing() {
        let b = RetryBudget::new(0.0, 0.1, 10.0).unwrap();
        let t = secs_to_nanos(100.0);
        assert!(b.try_withdraw(t));
        assert!(!b.try_withdraw(t));
        assert!(!b.try_withdraw(0));
    }

    #[test]
    fn validation() {
        assert!(
            RetryBudget::new(-1.0, 0.0, 1.0)
                .unwrap_err()
                .to_string()
                .starts_with("ratio")
        );
        assert!(
            RetryBudget::new(0.1, f64::NAN, 1.0)
                .unwrap_err()
                .to_string()
                .starts_with("min_per_second")
        );
        assert!(
            RetryBudget::new(0.1, 1.0, 0.0)
                .unwrap_err()
                .to_string()
                .starts_with("window")
        );
    }
}
