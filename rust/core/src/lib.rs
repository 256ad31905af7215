//! riprap-core: the state machines behind riprap, in plain Rust.
//!
//! Everything here is pure Rust with no Python: backoff and jitter math, retry decisions, retry
//! budgets, adaptive backoff, the circuit breaker with its bucketed time window, GCRA token
//! buckets and the keyed limiter, and the bulkhead's admission counters, waiting room and
//! adaptive limit. Time is injected
//! through [`Clock`] and every decision is returned as a value, so the
//! caller decides how to wait: `time.sleep`, `asyncio.sleep`, or advancing a [`ManualClock`] in a
//! test. All types are `Send + Sync` and take `&self`.
//!
//! ```
//! use riprap_core::{BackoffConfig, RetrySchedule, Strategy};
//! let cfg = BackoffConfig { strategy: Strategy::Linear, jitter: false, ..BackoffConfig::default() };
//! let schedule = RetrySchedule::new(cfg, 4, None, Some(7)).unwrap();
//! assert_eq!(schedule.next_delay(2, 0.0, None, None), Some(2.0));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod adaptive;
pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod clock;
pub mod error;
pub mod fork;
pub mod keyed;
pub mod limiter;
pub mod retry;
pub mod rng;
pub mod window;

pub use adaptive::{AdaptiveBackoff, SuccessHistory, adaptive_factor};
pub use backoff::{Backoff, BackoffConfig, Strategy, pow_saturating};
pub use breaker::{
    Admission, Breaker, BreakerConfig, BreakerStats, Outcome, Permit, State, Totals, Transition,
};
pub use budget::{BudgetStats, RetryBudget};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadStats, Isolation};
pub use clock::{Clock, ManualClock, nanos_to_secs, secs_to_nanos};
pub use error::{ConfigError, check_float, check_int};
pub use fork::{ForkLocal, note_fork};
pub use keyed::{Key, KeyedRateLimiter, KeyedStats};
pub use limiter::{Decision, LimiterStats, Quota, RateLimiter, Reservation, Waiters};
pub use retry::{
    ATTEMPT_SLOTS, DURATION_BOUNDS, Failed, GiveUp, RetryCounters, RetryDecision, RetrySchedule,
    RetrySnapshot,
};
pub use rng::Rng;
pub use window::{Counts, Window};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<super::Clock>();
        assert_send_sync::<super::ManualClock>();
        assert_send_sync::<super::Rng>();
        assert_send_sync::<super::Backoff>();
        assert_send_sync::<super::RetrySchedule>();
        assert_send_sync::<super::RetryCounters>();
        assert_send_sync::<super::RetryBudget>();
        assert_send_sync::<super::AdaptiveBackoff>();
        assert_send_sync::<super::Breaker>();
        assert_send_sync::<super::Window>();
        assert_send_sync::<super::Permit>();
        assert_send_sync::<super::Quota>();
        assert_send_sync::<super::RateLimiter>();
        assert_send_sync::<super::KeyedRateLimiter>();
        assert_send_sync::<super::Bulkhead>();
        assert_send_sync::<super::bulkhead::Slot>();
    }
}
