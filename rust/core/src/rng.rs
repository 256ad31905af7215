//! A small seedable PRNG for jitter (wyrand).
//!
//! Jitter needs speed and reproducibility, not cryptographic strength. wyrand's state update is a
//! single addition, so the state lives in one `AtomicU64` advanced with `fetch_add`: lock-free and
//! safe to share between threads. The pure-Python reference implements the same function with
//! masked integers, so `seed=` gives the same delays on both backends.
//!
//! Unseeded generators take their seed from process entropy and reseed themselves after
//! [`note_fork`](crate::note_fork) (which the Python layer calls from `os.register_at_fork`), so a forked child never
//! replays its parent's stream. A seeded generator is deterministic by request and is not reseeded.
//!
//! ```
//! use riprap_core::Rng;
//! let a = Rng::seeded(42);
//! let b = Rng::seeded(42);
//! assert_eq!(a.next_u64(), b.next_u64());
//! let u = a.next_f64();
//! assert!((0.0..1.0).contains(&u));
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fork;

const WY_INC: u64 = 0xa076_1d64_78bd_642f;
const WY_XOR: u64 = 0xe703_7ed1_a0b4_28db;

static ENTROPY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh seed from the process id, the time, a counter and std's per-process hash keys.
pub fn entropy_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.write_u64(ENTROPY_COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u64(crate::Clock::Monotonic.now());
    h.finish()
}

/// The wyrand output function for a state that has already been advanced.
#[inline]
fn mix(state: u64) -> u64 {
    let t = u128::from(state) * u128::from(state ^ WY_XOR);
    ((t >> 64) as u64) ^ (t as u64)
}

/// A thread-safe wyrand generator.
#[derive(Debug)]
pub struct Rng {
    state: AtomicU64,
    seeded: bool,
    generation: AtomicU64,
}

impl Rng {
    /// A generator with a fixed seed: the same seed always gives the same stream.
    pub fn seeded(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
            seeded: true,
            generation: AtomicU64::new(0),
        }
    }

    /// A generator seeded from process entropy, reseeded after a fork.
    pub fn from_entropy() -> Self {
        Self {
            state: AtomicU64::new(entropy_seed()),
            seeded: false,
            generation: AtomicU64::new(fork::generation()),
        }
    }

    /// `seeded(seed)` when a seed is given, else `from_entropy()`.
    pub fn new(seed: Option<u64>) -> Self {
        seed.map_or_else(Self::from_entropy, Self::seeded)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&self) -> u64 {
        self.next_u64_at(fork::generation())
    }

    /// [`Rng::next_u64`] in fork generation `g`.
    #[inline]
    fn next_u64_at(&self, g: u64) -> u64 {
        if !self.seeded && self.generation.load(Ordering::Relaxed) != g {
            self.state.store(entropy_seed(), Ordering::Relaxed);
            self.generation.store(g, Ordering::Relaxed);
        }
        let s = self
            .state
            .fetch_add(WY_INC, Ordering::Relaxed)
            .wrapping_add(WY_INC);
        mix(s)
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_match_the_python_reference() {
        // The same numbers are asserted in tests/test_rng.py against riprap._reference.
        let r = Rng::seeded(0);
        assert_eq!(r.next_u64(), 0x111c_b3a7_8f59_a58e);
        assert_eq!(r.next_u64(), 0xceab_d938_ff4e_856d);
        assert_eq!(r.next_u64(), 0x61fb_5131_8f47_d2a4);
    }

    #[test]
    fn floats_are_in_unit_interval() {
        let r = Rng::seeded(7);
        for _ in 0..10_000 {
            let u = r.next_f64();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn unseeded_reseeds_after_fork_notice() {
        let r = Rng::from_entropy();
        let before = r.state.load(Ordering::Relaxed);
        let _ = r.next_u64_at(fork::generation() + 1);
        let after = r.state.load(Ordering::Relaxed);
        assert_ne!(after, before.wrapping_add(WY_INC));
    }

    #[test]
    fn seeded_is_not_reseeded() {
        let a = Rng::seeded(9);
        let b = Rng::seeded(9);
        assert_eq!(a.next_u64_at(fork::generation() + 1), b.next_u64());
    }
}
