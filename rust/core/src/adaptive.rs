//! Adaptive backoff: stretch or shrink the delay by how well an operation has been going.
//!
//! The seed's rule, kept: over the last 100 results of an operation (0.8 assumed with none), a
//! success rate above 0.9 multiplies the delay by 0.7, above 0.7 by 1.0, above 0.5 by 1.5, and
//! anything lower by 2.0. The factor scales the deterministic delay *before* the cap, and jitter is
//! applied after it (see [`crate::backoff`]).
//!
//! Memory is bounded: at most [`MAX_OPERATIONS`] operation ids are tracked, and the oldest id is
//! forgotten first (the Python reference evicts in the same order).
//!
//! ```
//! use riprap_core::{AdaptiveBackoff, BackoffConfig};
//! let a = AdaptiveBackoff::new(BackoffConfig { jitter: false, ..BackoffConfig::default() }, None).unwrap();
//! for _ in 0..10 { a.record("db", true); }
//! assert_eq!(a.delay("db", 2), 2.0 * 0.7);
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::backoff::{Backoff, BackoffConfig};
use crate::error::ConfigError;
use crate::fork::ForkLocal;

/// Results remembered per operation.
pub const HISTORY: u8 = 100;
/// Operation ids remembered at most.
pub const MAX_OPERATIONS: usize = 10_000;
/// The success rate assumed for an operation with no history.
pub const DEFAULT_SUCCESS_RATE: f64 = 0.8;

/// The delay factor for a success rate (the seed's table; "above" is strict).
pub fn adaptive_factor(success_rate: f64) -> f64 {
    if success_rate > 0.9 {
        0.7
    } else if success_rate > 0.7 {
        1.0
    } else if success_rate > 0.5 {
        1.5
    } else {
        2.0
    }
}

/// The last [`HISTORY`] results of one operation, as a bit ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SuccessHistory {
    bits: u128,
    len: u8,
    pos: u8,
}

impl SuccessHistory {
    /// Records one result, forgetting the oldest once 100 are held.
    pub fn record(&mut self, success: bool) {
        let mask = 1u128 << self.pos;
        if success {
            self.bits |= mask;
        } else {
            self.bits &= !mask;
        }
        if self.len < HISTORY {
            self.len += 1;
        }
        self.pos = (self.pos + 1) % HISTORY;
    }

    /// The success rate, or [`DEFAULT_SUCCESS_RATE`] with no results.
    pub fn rate(&self) -> f64 {
        if self.len == 0 {
            DEFAULT_SUCCESS_RATE
        } else {
            f64::from(self.bits.count_ones()) / f64::from(self.len)
        }
    }

    /// Results held.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no result is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Default)]
struct Operations {
    map: HashMap<String, SuccessHistory>,
    order: VecDeque<String>,
}

/// Adaptive backoff over per-operation success histories.
#[derive(Debug)]
pub struct AdaptiveBackoff {
    backoff: Backoff,
    /// What a forked child starts afresh (no history).
    ops: ForkLocal<Mutex<Operations>>,
}

impl AdaptiveBackoff {
    /// Validates the backoff and seeds its jitter stream.
    ///
    /// # Errors
    /// See [`BackoffConfig::validate`].
    pub fn new(cfg: BackoffConfig, seed: Option<u64>) -> Result<Self, ConfigError> {
        Ok(Self {
            backoff: Backoff::new(cfg, seed)?,
            ops: ForkLocal::new(Mutex::default()),
        })
    }

    /// The underlying backoff.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    fn ops(&self) -> MutexGuard<'_, Operations> {
        // Nothing panics while the lock is held; recover from poisoning anyway.
        self.ops
            .get(|_| Mutex::default())
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The success rate of `operation` over its last 100 results.
    pub fn success_rate(&self, operation: &str) -> f64 {
        let ops = self.ops();
        ops.map
            .get(operation)
            .map_or(DEFAULT_SUCCESS_RATE, SuccessHistory::rate)
    }

    /// Records a result for `operation`.
    pub fn record(&self, operation: &str, success: bool) {
        let mut ops = self.ops();
        if let Some(h) = ops.map.get_mut(operation) {
            h.record(success);
            return;
        }
        if ops.map.len() >= MAX_OPERATIONS
            && let Some(oldest) = ops.order.pop_front()
        {
            ops.map.remove(&oldest);
        }
        let mut h = SuccessHistory::default();
        h.record(success);
        ops.map.insert(operation.to_owned(), h);
        ops.order.push_back(operation.to_owned());
    }

    /// Operation ids tracked.
    pub fn operations(&self) -> usize {
        self.ops().map.len()
    }

    /// The delay after failed attempt `attempt` of `operation`.
    pub fn delay(&self, operation: &str, attempt: u64) -> f64 {
        let factor = adaptive_factor(self.success_rate(operation));
        self.backoff.delay_scaled(attempt, None, factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_table() {
        assert_eq!(adaptive_factor(1.0), 0.7);
        assert_eq!(adaptive_factor(0.9), 1.0);
        assert_eq!(adaptive_factor(0.7), 1.5);
        assert_eq!(adaptive_factor(0.5), 2.0);
    }

    #[test]
    fn history_keeps_last_hundred() {
        let mut h = SuccessHistory::default();
        assert_eq!(h.rate(), DEFAULT_SUCCESS_RATE);
        for _ in 0..100 {
            h.record(false);
        }
        for _ in 0..50 {
            h.record(true);
        }
        assert_eq!(h.len(), 100);
        assert_eq!(h.rate(), 0.5);
    }

    #[test]
    fn operations_are_bounded() {
        let a = AdaptiveBackoff::new(BackoffConfig::default(), Some(1)).unwrap();
        for i in 0..(MAX_OPERATIONS + 5) {
            a.record(&i.to_string(), false);
        }
        assert_eq!(a.operations(), MAX_OPERATIONS);
        assert_eq!(a.success_rate("0"), DEFAULT_SUCCESS_RATE);
        assert_eq!(a.success_rate(&(MAX_OPERATIONS + 4).to_string()), 0.0);
    }
}
