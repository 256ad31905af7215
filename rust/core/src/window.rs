//! A sliding time window of call outcomes, as a fixed ring of time buckets.
//!
//! Why buckets: the seed design kept every call in a list and re-filtered it on every call, which
//! costs O(n) time and memory in the traffic (4.5 ms per call at 100k calls in a 300 s window).
//! A ring of `n` buckets, each covering `width` nanoseconds, holds counts instead of calls: a
//! record is O(1), moving the window forward is O(1) per bucket that expires (at most `n` steps
//! however long the clock jumped), and memory is fixed at construction whatever the traffic.
//! Running totals are kept incrementally, so reading the window is O(1) too.
//!
//! What "the last `span`" means exactly: time is cut into buckets `[k·width, (k+1)·width)`. At
//! time `now` (bucket `h = now / width`) the window holds the buckets `h-n+1 ..= h`. So a call is
//! never counted once it is `n·width <= span` old, and is always counted while it is less than
//! `(n-1)·width` old: the window's far edge moves in steps of one bucket. A clock that steps
//! backwards records into the newest bucket and never revives an expired one.
//!
//! ```
//! use riprap_core::Window;
//! let mut w = Window::new(10_000, 10).unwrap(); // 10 µs in ten 1 µs buckets
//! w.record(0, false, false);
//! w.record(500, true, true);
//! assert_eq!(w.counts(9_999).calls(), 2);
//! assert_eq!(w.counts(10_000).calls(), 0); // bucket 0 left the window
//! ```

use crate::error::ConfigError;

/// Outcome counts of a bucket or of the whole window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls (successful or failed) that were slow.
    pub slow: u64,
}

impl Counts {
    /// Successes plus failures.
    pub fn calls(&self) -> u64 {
        self.successes.saturating_add(self.failures)
    }

    /// `failures / calls`, or 0.0 for an empty window; always in `[0, 1]`.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls())
    }

    /// `slow / calls`, or 0.0 for an empty window; always in `[0, 1]`.
    pub fn slow_rate(&self) -> f64 {
        ratio(self.slow, self.calls())
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The bucket index (`time / width`) these counts belong to.
    epoch: u64,
    counts: Counts,
}

/// A ring of time buckets with running totals (see the module docs).
#[derive(Debug, Clone)]
pub struct Window {
    buckets: Box<[Bucket]>,
    width: u64,
    /// Epoch of the newest bucket.
    head: u64,
    /// Its slot, and the first nanosecond after it (saturating): a record before that lands in
    /// the newest bucket without dividing.
    head_slot: usize,
    head_end: u64,
    totals: Counts,
}

impl Window {
    /// The largest number of buckets a window may have.
    pub const MAX_BUCKETS: usize = 4096;

    /// A window over the last `span` nanoseconds cut into `buckets` buckets of `span / buckets`
    /// nanoseconds (at least 1 ns; with fewer nanoseconds than buckets, one bucket per ns).
    ///
    /// # Errors
    /// [`ConfigError`] when `span` is 0 or `buckets` is not in `1..=MAX_BUCKETS`.
    pub fn new(span: u64, buckets: usize) -> Result<Self, ConfigError> {
        if span == 0 {
            return Err(ConfigError::IntTooSmall {
                field: "span",
                value: 0,
                min: 1,
            });
        }
        if buckets == 0 {
            return Err(ConfigError::IntTooSmall {
                field: "buckets",
                value: 0,
                min: 1,
            });
        }
        if buckets > Self::MAX_BUCKETS {
            return Err(ConfigError::IntTooLarge {
                field: "buckets",
                value: buckets as i128,
                max: Self::MAX_BUCKETS as i128,
            });
        }
        let n = (buckets as u64).min(span);
        let width = span / n;
        Ok(Self {
            buckets: vec![Bucket::default(); n as usize].into_boxed_slice(),
            width,
            head: 0,
            head_slot: 0,
            head_end: width,
            totals: Counts::default(),
        })
    }

    /// The number of buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Always false: a window has at least one bucket.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The width of one bucket in nanoseconds.
    pub fn width(&self) -> u64 {
        self.width
    }

    fn n(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn slot(&self, epoch: u64) -> usize {
        (epoch % self.n()) as usize
    }

    /// Moves the window to `now`: buckets that left it are subtracted from the totals and
    /// emptied. O(1) per expired bucket and never more than `len()` steps.
    #[inline]
    fn rotate(&mut self, now: u64) {
        if now < self.head_end {
            return; // the newest bucket, or a clock that stepped back
        }
        self.advance(now);
    }

    fn advance(&mut self, now: u64) {
        let epoch = now / self.width;
        if epoch <= self.head {
            return; // same bucket, or a clock that stepped back
        }
        let steps = (epoch - self.head).min(self.n());
        for k in 1..=steps {
            let e = epoch - steps + k;
            let slot = self.slot(e);
            let old = self.buckets[slot].counts;
            self.totals.successes -= old.successes;
            self.totals.failures -= old.failures;
            self.totals.slow -= old.slow;
            self.buckets[slot] = Bucket {
                epoch: e,
                counts: Counts::default(),
            };
        }
        self.head = epoch;
        self.head_slot = self.slot(epoch);
        self.head_end = epoch.saturating_add(1).saturating_mul(self.width);
    }

    /// Records one call that ended at `now`.
    pub fn record(&mut self, now: u64, failure: bool, slow: bool) {
        self.rotate(now);
        let bucket = &mut self.buckets[self.head_slot];
        debug_assert_eq!(bucket.epoch, self.head);
        let (b, t) = (&mut bucket.counts, &mut self.totals);
        if failure {
            b.failures = b.failures.saturating_add(1);
            t.failures = t.failures.saturating_add(1);
        } else {
            b.successes = b.successes.saturating_add(1);
            t.successes = t.successes.saturating_add(1);
        }
        if slow {
            b.slow = b.slow.saturating_add(1);
            t.slow = t.slow.saturating_add(1);
        }
    }

    /// The counts of the window as of `now` (expired buckets are dropped first).
    pub fn counts(&mut self, now: u64) -> Counts {
        self.rotate(now);
        self.totals
    }

    /// The counts as they stand, without moving the window.
    pub fn peek(&self) -> Counts {
        self.totals
    }

    /// Empties the window.
    pub fn clear(&mut self) {
        for b in &mut *self.buckets {
            b.counts = Counts::default();
        }
        self.totals = Counts::default();
    }

    /// Checks the internal invariants (used by tests): the totals equal the sum of the buckets,
    /// and every non-empty bucket belongs to the window's current epochs.
    ///
    /// # Errors
    /// A description of the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut sum = Counts::default();
        for b in &*self.buckets {
            if b.counts != Counts::default() {
                let lo = self.head.saturating_sub(self.n() - 1);
                if b.epoch < lo || b.epoch > self.head {
                    return Err(format!(
                        "bucket of epoch {} holds {:?} outside epochs {lo}..={}",
                        b.epoch, b.counts, self.head
                    ));
                }
            }
            sum.successes += b.counts.successes;
            sum.failures += b.counts.failures;
            sum.slow += b.counts.slow;
        }
        if sum != self.totals {
            return Err(format!("totals {:?} != sum {sum:?}", self.totals));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: a call ending at `t` is in the window at `now` when its bucket is one of
    /// the last `n` (clock steps back record into the newest bucket seen so far).
    struct Model {
        width: u64,
        n: u64,
        head: u64,
        events: Vec<(u64, bool, bool)>, // (epoch, failure, slow)
    }

    impl Model {
        fn record(&mut self, now: u64, failure: bool, slow: bool) {
            self.head = self.head.max(now / self.width);
            self.events.push((self.head, failure, slow));
        }
        fn counts(&mut self, now: u64) -> Counts {
            self.head = self.head.max(now / self.width);
            let lo = self.head.saturating_sub(self.n - 1);
            self.events.retain(|e| e.0 >= lo);
            let mut c = Counts::default();
            for &(_, f, s) in &self.events {
                if f {
                    c.failures += 1;
                } else {
                    c.successes += 1;
                }
                c.slow += u64::from(s);
            }
            c
        }
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    // resilience4j/resilience4j#2379, #2334: a one-bucket window crashed. One bucket, two
    // buckets and the largest size survive 1e5 ticks and agree with the definition.
    #[test]
    fn one_two_and_max_buckets_survive_1e5_ticks() {
        for &n in &[1usize, 2, Window::MAX_BUCKETS] {
            let span = 1_000_000u64;
            let mut window = Window::new(span, n).unwrap();
            let mut model = Model {
                width: window.width(),
                n: window.len() as u64,
                head: 0,
                events: Vec::new(),
            };
            let mut now = 0u64;
            let mut seed = n as u64;
            for tick in 0..100_000u32 {
                let r = lcg(&mut seed);
                match r % 10 {
                    0 => now = now.saturating_add(lcg(&mut seed) % (3 * span)),
                    1 => now = now.saturating_sub(lcg(&mut seed) % span), // steps back
                    2 if tick % 5_000 == 0 => now = u64::MAX - (r % 3),   // the end of time
                    2 => window.clear_and(&mut model),
                    _ => {
                        now = now.saturating_add(r % (span / 50));
                        let (f, s) = (r & 1 == 1, r & 2 == 2);
                        window.record(now, f, s);
                        model.record(now, f, s);
                    }
                }
                if tick % 7 == 0 {
                    assert_eq!(window.counts(now), model.counts(now), "n={n} tick={tick}");
                    window.check_invariants().unwrap();
                }
            }
        }
    }

    impl Window {
        fn clear_and(&mut self, m: &mut Model) {
            self.clear();
            m.events.clear();
        }
    }

    #[test]
    fn nothing_older_than_the_span_is_counted() {
        let mut w = Window::new(300, 60).unwrap(); // 5 ns buckets
        w.record(7, true, false);
        assert_eq!(w.counts(7 + 299).failures, 0); // bucket 1 expires at 305 < 306
        let mut w = Window::new(300, 60).unwrap();
        w.record(5, true, false);
        assert_eq!(w.counts(304).failures, 1);
        assert_eq!(w.counts(299 + 5).failures, 1);
        assert_eq!(w.counts(305).failures, 0);
    }

    #[test]
    fn tiny_spans_use_one_ns_buckets_and_bad_sizes_are_refused() {
        let w = Window::new(3, 60).unwrap();
        assert_eq!((w.len(), w.width()), (3, 1));
        let w = Window::new(u64::MAX, 60).unwrap();
        assert_eq!(w.width(), u64::MAX / 60);
        assert!(Window::new(0, 1).is_err());
        assert!(Window::new(10, 0).is_err());
        assert_eq!(
            Window::new(10, Window::MAX_BUCKETS + 1)
                .unwrap_err()
                .to_string(),
            "buckets must be <= 4096, got 4097"
        );
    }

    #[test]
    fn rates_stay_in_unit_interval() {
        let mut w = Window::new(1_000, 10).unwrap();
        assert_eq!(w.counts(0).failure_rate(), 0.0);
        w.record(1, true, true);
        w.record(1, false, false);
        let c = w.counts(1);
        assert_eq!((c.failure_rate(), c.slow_rate()), (0.5, 0.5));
    }
}
