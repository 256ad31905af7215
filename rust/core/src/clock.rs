//! Injected time.
//!
//! Every primitive reads time through a [`Clock`] and every decision takes "now" as a value, so
//! the state machines never touch a real clock in tests. Time is `u64` nanoseconds since an
//! arbitrary origin: the process's first clock read for [`Clock::Monotonic`], or whatever the
//! test set for a [`ManualClock`]. Wall time is never used (it jumps).
//!
//! ```
//! use riprap_core::{Clock, ManualClock};
//! let manual = ManualClock::new(0);
//! let clock = Clock::Manual(manual.clone());
//! manual.advance(1_500);
//! assert_eq!(clock.now(), 1_500);
//! ```

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Nanoseconds per second, as a float, for conversions.
pub const NANOS_PER_SEC: f64 = 1e9;

/// Converts seconds to nanoseconds: round half up, saturating at `0` and `u64::MAX`.
///
/// The Python reference computes `floor(s * 1e9 + 0.5)` with the same IEEE operations, so both
/// backends agree to the nanosecond. NaN maps to 0 (callers validate before converting).
pub fn secs_to_nanos(seconds: f64) -> u64 {
    // `as` saturates for out-of-range floats and maps NaN to 0.
    (seconds * NANOS_PER_SEC + 0.5).floor() as u64
}

/// Converts nanoseconds to seconds.
pub fn nanos_to_secs(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_SEC
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// A manually driven clock. Clones share one time, so one clock can drive many primitives.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that starts at `start` nanoseconds.
    pub fn new(start: u64) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(start)),
        }
    }

    /// The current time in nanoseconds.
    pub fn now(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }

    /// Moves time forward by `nanos`, saturating at `u64::MAX` (a clock advanced by 585 years
    /// stops at the end of time instead of wrapping).
    pub fn advance(&self, nanos: u64) {
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(nanos))
            });
    }

    /// Sets the time, forwards or backwards (tests use this to model a clock that steps back).
    pub fn set(&self, nanos: u64) {
        self.nanos.store(nanos, Ordering::Release);
    }

    /// Whether two handles share one time.
    pub fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.nanos, &other.nanos)
    }
}

/// Where a primitive reads the time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The monotonic clock (`std::time::Instant`), as nanoseconds since the first read.
    #[default]
    Monotonic,
    /// A shared manual clock (tests, simulations).
    Manual(ManualClock),
}

impl Clock {
    /// The current time in nanoseconds.
    #[inline]
    pub fn now(&self) -> u64 {
        match self {
            Self::Monotonic => {
                let d = Instant::now().saturating_duration_since(origin());
                // u64 nanoseconds last 584 years; saturate rather than wrap after that.
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
            }
            Self::Manual(m) => m.now(),
        }
    }

    /// The current time in seconds.
    pub fn now_secs(&self) -> f64 {
        nanos_to_secs(self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clones_share_time_and_saturate() {
        let a = ManualClock::new(5);
        let b = a.clone();
        b.advance(10);
        assert_eq!(a.now(), 15);
        a.advance(u64::MAX);
        assert_eq!(b.now(), u64::MAX);
        assert!(a.same_as(&b));
        assert!(!a.same_as(&ManualClock::new(0)));
    }

    #[test]
    fn monotonic_never_goes_back() {
        let c = Clock::Monotonic;
        let mut last = c.now();
        for _ in 0..1000 {
            let t = c.now();
            assert!(t >= last);
            last = t;
        }
    }

    #[test]
    fn seconds_round_trip() {
        assert_eq!(secs_to_nanos(0.3), 300_000_000);
        assert_eq!(secs_to_nanos(1e-9), 1);
        assert_eq!(secs_to_nanos(0.4e-9), 0);
        assert_eq!(secs_to_nanos(1e300), u64::MAX);
        assert_eq!(secs_to_nanos(f64::NAN), 0);
        assert!((nanos_to_secs(1_500_000_000) - 1.5).abs() < f64::EPSILON);
    }
}
