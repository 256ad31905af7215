//! A keyed rate limiter: one GCRA bucket per key (an IP, a user id, an API key), with bounded
//! memory and no background threads.
//!
//! Why this shape: keyed limiters in Python store an object (or a list of timestamps) per key and
//! either grow without bound or run a timer thread to expire keys. Here a key costs its own bytes
//! plus one `u64` (the bucket's theoretical arrival time, see [`crate::limiter`]) in a hash table,
//! so a million integer keys fit in a few tens of megabytes.
//!
//! - **Sharded.** Keys are spread over up to 64 shards, each a `Mutex` around hash tables (one per
//!   key type: `int`, `str`, `bytes`, and `int`s outside `i64`), held for one lookup. Tables use
//!   std's randomly keyed SipHash (`RandomState`), because keys come from clients and a fixed fast
//!   hash invites HashDoS. `int` keys live in an open-addressing table with each key next to its
//!   TAT, so finding one costs one memory miss rather than std's two (`keyed/int_table.rs`).
//!   Looking up an existing `str`/`bytes` key borrows its bytes: no allocation. Tables with
//!   fewer than 8192 keys allowed use one shard, so eviction is exactly the policy below; larger
//!   ones split `max_keys` evenly, so eviction can start a little (about 1-3 %) before
//!   `max_keys` keys are tracked in total. A forked child starts with no keys
//!   ([`crate::fork`]).
//! - **Bounded by `max_keys`.** Inserting a new key into a full shard first forgets every *idle*
//!   key, one whose bucket is full again (`tat <= now`): forgetting it changes nothing, since a new
//!   key starts full. Only if none is idle does it forget the `max(1, cap/64)` keys closest to
//!   full (smallest TAT; ties broken by key order, so the choice is deterministic). That is what
//!   LRU approximates, and it gives away the least capacity: a forgotten key that comes back
//!   starts with a full bucket. Keys with waiters are never forgotten. Every forgotten key is
//!   counted (`evicted`).
//! - **`idle_ttl`.** With a TTL, a shard also forgets keys whose bucket has been full for at least
//!   `idle_ttl`, at most once per `idle_ttl`, on its next operation: memory shrinks back after a
//!   burst of clients without a sweeper thread. A key whose bucket is not full is never forgotten
//!   by age, since that would hand it fresh capacity.
//!
//! ```
//! use riprap_core::{Decision, KeyedRateLimiter, Key, Quota};
//! let limiter = KeyedRateLimiter::new(Quota::new(1.0, Some(1.0)).unwrap(), 10, None, 0).unwrap();
//! assert_eq!(limiter.try_acquire(Key::Str(b"alice"), 1, 0).unwrap(), Decision::Admit);
//! assert_eq!(limiter.try_acquire(Key::Int(7), 1, 0).unwrap(), Decision::Admit);
//! assert!(matches!(limiter.try_acquire(Key::Str(b"alice"), 1, 0).unwrap(), Decision::NotUntil { .. }));
//! assert_eq!(limiter.len(), 2);
//! ```

mod int_table;
mod shard;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{ConfigError, check_float, check_int};
use crate::fork::ForkLocal;
use crate::limiter::{Counters, Decision, LimiterStats, Quota, Reservation, Waiters};
use shard::{Part, Shard, Tats, with_table};

/// A key, borrowed from the caller. The order (type, then value) breaks eviction ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key<'a> {
    /// An `int` that fits in `i64`.
    Int(i64),
    /// A `str`, as UTF-8.
    Str(&'a [u8]),
    /// A `bytes` object.
    Bytes(&'a [u8]),
    /// An `int` outside `i64`, as its decimal digits (a separate namespace from `str`).
    BigInt(&'a [u8]),
}

/// Counters and size of a keyed limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyedStats {
    /// Requests admitted, refused and admitted after waiting, over all keys.
    pub limiter: LimiterStats,
    /// Keys tracked now.
    pub keys: u64,
    /// Keys forgotten to bound memory (idle, `idle_ttl`, or pressure) since creation.
    pub evicted: u64,
}

/// One GCRA bucket per key, bounded by `max_keys`.
#[derive(Debug)]
pub struct KeyedRateLimiter {
    quota: Quota,
    origin: u64,
    max_keys: u64,
    idle_ttl: Option<u64>,
    shard_bits: u32,
    shard_cap: usize,
    hasher: RandomState,
    /// Keyed multiply for spreading `int` keys over shards (the tables hash them with SipHash).
    spread: u64,
    store: ForkLocal<Store>,
}

/// The keys, their buckets and the counters: what a forked child starts afresh.
#[derive(Debug)]
struct Store {
    shards: Box<[Mutex<Shard>]>,
    keys: AtomicU64,
    evicted: AtomicU64,
    /// The last ticket handed out; a forked child goes on from its parent's.
    next_ticket: AtomicU64,
    counters: Counters,
}

impl Store {
    fn new(shards: usize, hasher: &RandomState, idle_ttl: Option<u64>, next_ticket: u64) -> Self {
        let first_sweep = idle_ttl.unwrap_or(u64::MAX);
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(Shard::new(hasher, first_sweep)))
                .collect(),
            keys: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            next_ticket: AtomicU64::new(next_ticket),
            counters: Counters::default(),
        }
    }

    fn forgot(&self, n: usize) {
        if n > 0 {
            self.keys.fetch_sub(n as u64, Ordering::Relaxed);
            self.evicted.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl KeyedRateLimiter {
    /// Shards for a table of `max_keys` keys: one below 8192, else about one per 4096 keys, at
    /// most 64 (always a power of two).
    pub fn shard_count(max_keys: u64) -> usize {
        if max_keys < 8192 {
            1
        } else {
            let per = (max_keys / 4096).min(64);
            // The largest power of two <= per.
            1 << per.ilog2()
        }
    }

    /// An empty limiter; `now` (clock nanoseconds) becomes its origin. `idle_ttl` is in
    /// nanoseconds.
    ///
    /// # Errors
    /// [`ConfigError`] when `max_keys` is 0 or `idle_ttl` is 0.
    pub fn new(
        quota: Quota,
        max_keys: u64,
        idle_ttl: Option<u64>,
        now: u64,
    ) -> Result<Self, ConfigError> {
        check_int("max_keys", i128::from(max_keys), 1)?;
        if let Some(ttl) = idle_ttl {
            check_float("idle_ttl", ttl as f64, 0.0, false)?;
        }
        let shards = Self::shard_count(max_keys);
        let hasher = RandomState::new();
        let spread = hasher.hash_one(0x5eed_u64) | 1;
        Ok(Self {
            quota,
            origin: now,
            max_keys,
            idle_ttl,
            shard_bits: shards.trailing_zeros(),
            shard_cap: usize::try_from(max_keys.div_ceil(shards as u64)).unwrap_or(usize::MAX),
            store: ForkLocal::new(Store::new(shards, &hasher, idle_ttl, 0)),
            hasher,
            spread,
        })
    }

    /// The rate and burst (the same for every key).
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// The most keys tracked at once.
    pub fn max_keys(&self) -> u64 {
        self.max_keys
    }

    /// The idle TTL in nanoseconds, if any.
    pub fn idle_ttl(&self) -> Option<u64> {
        self.idle_ttl
    }

    #[inline]
    fn since_origin(&self, now: u64) -> u64 {
        now.saturating_sub(self.origin)
    }

    /// The keys of this process (a forked child starts with none).
    #[inline]
    fn store(&self) -> &Store {
        self.store.get(|inherited| {
            Store::new(
                1 << self.shard_bits,
                &self.hasher,
                self.idle_ttl,
                inherited.next_ticket.load(Ordering::Relaxed),
            )
        })
    }

    #[inline]
    fn shard<'a>(&self, store: &'a Store, key: Key<'_>) -> MutexGuard<'a, Shard> {
        let index = if self.shard_bits == 0 {
            0
        } else {
            let h = match key {
                Key::Int(v) => (v as u64).wrapping_mul(self.spread),
                Key::Str(s) => self.hasher.hash_one((0u8, s)),
                Key::Bytes(s) => self.hasher.hash_one((1u8, s)),
                Key::BigInt(s) => self.hasher.hash_one((2u8, s)),
            };
            (h >> (64 - self.shard_bits)) as usize
        };
        // Nothing panics while a shard is locked; recover from poisoning anyway.
        store.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The `idle_ttl` sweep, when one is due for this shard.
    fn sweep(&self, store: &Store, shard: &mut Shard, now: u64) {
        if let Some(ttl) = self.idle_ttl
            && now >= shard.next_sweep
        {
            let n = shard.forget(|tat| now.saturating_sub(tat) >= ttl);
            store.forgot(n);
            shard.next_sweep = now.saturating_add(ttl);
        }
    }

    /// Takes `cost` for `key` if available; inserts a new key (making room first). `Err(wait)`.
    fn take(
        &self,
        store: &Store,
        shard: &mut Shard,
        key: Key<'_>,
        cost: u64,
        now: u64,
    ) -> Result<(), u64> {
        self.sweep(store, shard, now);
        // One probe for the common case, an existing key.
        let existing = with_table!(shard, key, |t, k| t.tats.get_mut(k).map(|slot| {
            match self.quota.schedule(*slot, now, cost) {
                Some((end, 0)) => {
                    *slot = end;
                    Ok(())
                }
                Some((_, wait)) => Err(wait),
                None => Err(u64::MAX),
            }
        }));
        if let Some(taken) = existing {
            return taken;
        }
        // A new key starts full, so `cost <= burst` tokens are always there.
        let Some((end, 0)) = self.quota.schedule(0, now, cost) else {
            return Err(u64::MAX);
        };
        let freed = shard.make_room(now, self.shard_cap);
        store.forgot(freed);
        with_table!(shard, key, |t, k| t.tats.insert(k, end));
        store.keys.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Takes `n` tokens from `key`'s bucket if they are available at `now`.
    ///
    /// # Errors
    /// [`ConfigError`] when `n` is 0 or more than `burst`.
    pub fn try_acquire(&self, key: Key<'_>, n: u64, now: u64) -> Result<Decision, ConfigError> {
        let cost = self.quota.cost(n)?;
        Ok(self.try_acquire_cost(key, cost, now))
    }

    /// [`KeyedRateLimiter::try_acquire`] for a cost already validated with [`Quota::cost`].
    pub fn try_acquire_cost(&self, key: Key<'_>, cost: u64, now: u64) -> Decision {
        let now = self.since_origin(now);
        let store = self.store();
        let taken = self.take(store, &mut self.shard(store, key), key, cost, now);
        store.counters.decide(taken)
    }

    /// Reserves `n` tokens of `key`: admitted now, queued for a slot at most `max_wait` ns away
    /// (`None`: any wait), or refused without reserving anything.
    ///
    /// # Errors
    /// [`ConfigError`] when `n` is 0 or more than `burst`.
    pub fn reserve(
        &self,
        key: Key<'_>,
        n: u64,
        now: u64,
        max_wait: Option<u64>,
    ) -> Result<Reservation, ConfigError> {
        let cost = self.quota.cost(n)?;
        Ok(self.reserve_cost(key, cost, now, max_wait))
    }

    /// [`KeyedRateLimiter::reserve`] for a cost already validated with [`Quota::cost`].
    pub fn reserve_cost(
        &self,
        key: Key<'_>,
        cost: u64,
        now: u64,
        max_wait: Option<u64>,
    ) -> Reservation {
        let now = self.since_origin(now);
        let store = self.store();
        let mut shard = self.shard(store, key);
        let wait = match self.take(store, &mut shard, key, cost, now) {
            Ok(()) => {
                store.counters.admit();
                return Reservation::Admitted;
            }
            Err(wait) => wait,
        };
        if wait == u64::MAX || max_wait.is_some_and(|m| wait > m) {
            store.counters.reject();
            return Reservation::Refused { wait };
        }
        // `take` refused, so the key exists: queue behind its TAT.
        let ticket = store.next_ticket.fetch_add(1, Ordering::Relaxed) + 1;
        with_table!(shard, key, |t, k| {
            let tat = t.tats.get(k).unwrap_or(0);
            let Some((end, wait)) = self.quota.schedule(tat, now, cost) else {
                store.counters.reject();
                return Reservation::Refused { wait: u64::MAX };
            };
            t.tats.insert(k, end);
            if let Some(w) = t.waiters.get_mut(k) {
                w.push(ticket, now, tat, end, cost);
            } else {
                let mut w = Waiters::default();
                w.push(ticket, now, tat, end, cost);
                t.waiters.insert(k.own(), w);
            }
            Reservation::Queued { ticket, wait }
        })
    }

    /// Nanoseconds until the slot of `ticket` on `key` (0: due now, or not pending).
    pub fn remaining(&self, key: Key<'_>, ticket: u64, now: u64) -> u64 {
        let now = self.since_origin(now);
        let store = self.store();
        let mut shard = self.shard(store, key);
        let end = with_table!(shard, key, |t, k| t
            .waiters
            .get(k)
            .and_then(|w| w.end_of(ticket)));
        end.map_or(0, |end| {
            end.saturating_sub(self.quota.tolerance_ns())
                .saturating_sub(now)
        })
    }

    /// The waiter holding `ticket` on `key` proceeded.
    pub fn complete(&self, key: Key<'_>, ticket: u64) {
        let store = self.store();
        let mut shard = self.shard(store, key);
        let done = with_table!(shard, key, |t, k| {
            let Some(w) = t.waiters.get_mut(k) else {
                return;
            };
            let done = w.complete(ticket);
            if w.is_empty() {
                t.waiters.remove(k);
            }
            done
        });
        if done {
            store.counters.admit_waited();
        }
    }

    /// The waiter holding `ticket` on `key` gave up: give its reservation back if that is sound
    /// (see [`Waiters`]). Returns `true` when later waiters' slots moved earlier.
    pub fn cancel(&self, key: Key<'_>, ticket: u64) -> bool {
        let store = self.store();
        let mut shard = self.shard(store, key);
        with_table!(shard, key, |t, k| {
            let tat = t.tats.get(k);
            let Some(w) = t.waiters.get_mut(k) else {
                return false;
            };
            let mut shifted = false;
            match tat.and_then(|tat| w.plan(ticket, tat)) {
                Some(plan) => {
                    shifted = w.apply(&plan);
                    if let Some(slot) = t.tats.get_mut(k) {
                        *slot = plan.new_tat;
                    }
                }
                None => w.spend(ticket),
            }
            if w.is_empty() {
                t.waiters.remove(k);
            }
            shifted
        })
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        usize::try_from(self.store().keys.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters and size.
    pub fn stats(&self) -> KeyedStats {
        let store = self.store();
        KeyedStats {
            limiter: store.counters.snapshot(),
            keys: store.keys.load(Ordering::Relaxed),
            evicted: store.evicted.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn keyed(rate: f64, burst: f64, max_keys: u64, ttl: Option<u64>) -> KeyedRateLimiter {
        KeyedRateLimiter::new(Quota::new(rate, Some(burst)).unwrap(), max_keys, ttl, 0).unwrap()
    }

    #[test]
    fn key_types_are_separate_namespaces() {
        let l = keyed(1.0, 1.0, 100, None);
        for key in [
            Key::Int(1),
            Key::Str(b"1"),
            Key::Bytes(b"1"),
            Key::BigInt(b"1"),
        ] {
            assert_eq!(l.try_acquire(key, 1, 0).unwrap(), Decision::Admit);
            assert!(matches!(
                l.try_acquire(key, 1, 0).unwrap(),
                Decision::NotUntil { wait: S }
            ));
        }
        assert_eq!(l.len(), 4);
    }

    #[test]
    fn idle_keys_are_evicted_first_and_nothing_changes() {
        let l = keyed(1.0, 1.0, 3, None);
        for k in 0..3 {
            assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
        }
        // At 1 s all three are full again; key 0 takes a token, then key 3 finds the shard full
        // and forgets the two idle keys (1 and 2), not the busy one.
        assert_eq!(l.try_acquire(Key::Int(0), 1, S).unwrap(), Decision::Admit);
        assert_eq!(l.try_acquire(Key::Int(3), 1, S).unwrap(), Decision::Admit);
        assert_eq!(l.len(), 2);
        assert_eq!(l.stats().evicted, 2);
        assert!(matches!(
            l.try_acquire(Key::Int(0), 1, S).unwrap(),
            Decision::NotUntil { .. }
        ));
    }

    #[test]
    fn busy_keys_evicted_closest_to_full_first() {
        let l = keyed(1.0, 2.0, 2, None);
        assert_eq!(l.try_acquire(Key::Int(1), 2, 0).unwrap(), Decision::Admit); // tat 2 s
        assert_eq!(l.try_acquire(Key::Int(2), 1, 0).unwrap(), Decision::Admit); // tat 1 s
        assert_eq!(l.try_acquire(Key::Int(3), 1, 0).unwrap(), Decision::Admit);
        assert_eq!(l.stats().evicted, 1);
        // Key 2 (closest to full) went; key 1 is still empty.
        assert!(matches!(
            l.try_acquire(Key::Int(1), 1, 0).unwrap(),
            Decision::NotUntil { .. }
        ));
        assert_eq!(l.try_acquire(Key::Int(2), 2, 0).unwrap(), Decision::Admit);
    }

    #[test]
    fn idle_ttl_forgets_full_buckets_only() {
        let l = keyed(1.0, 1.0, 100, Some(10 * S));
        assert_eq!(
            l.try_acquire(Key::Str(b"a"), 1, 0).unwrap(),
            Decision::Admit
        );
        assert_eq!(
            l.try_acquire(Key::Str(b"b"), 1, 9 * S).unwrap(),
            Decision::Admit
        );
        assert_eq!(l.len(), 2);
        // At 12 s: "a" has been full since 1 s (11 s >= 10 s); "b" since 10 s.
        assert_eq!(
            l.try_acquire(Key::Str(b"c"), 1, 12 * S).unwrap(),
            Decision::Admit
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l.stats().evicted, 1);
    }

    #[test]
    fn ties_are_broken_by_key_order() {
        let l = keyed(1.0, 1.0, 3, None);
        for key in [Key::BigInt(b"9"), Key::Str(b"b"), Key::Int(5)] {
            assert_eq!(l.try_acquire(key, 1, 0).unwrap(), Decision::Admit);
        }
        // All three share one TAT; the int sorts first, so it is the one forgotten: it is
        // admitted again (fresh), which in turn forgets "a", the smallest of "a" < "b" < big 9.
        assert_eq!(
            l.try_acquire(Key::Str(b"a"), 1, 0).unwrap(),
            Decision::Admit
        );
        assert_eq!(l.try_acquire(Key::Int(5), 1, 0).unwrap(), Decision::Admit);
        assert_eq!(l.stats().evicted, 2);
        for key in [Key::Str(b"b"), Key::BigInt(b"9"), Key::Int(5)] {
            assert!(matches!(
                l.try_acquire(key, 1, 0).unwrap(),
                Decision::NotUntil { .. }
            ));
        }
    }

    #[test]
    fn keyed_waiters_queue_and_give_back() {
        let l = keyed(1.0, 1.0, 100, None);
        let k = Key::Bytes(b"client");
        assert_eq!(l.reserve(k, 1, 0, None).unwrap(), Reservation::Admitted);
        let Reservation::Queued { ticket: a, wait } = l.reserve(k, 1, 0, None).unwrap() else {
            panic!()
        };
        assert_eq!(wait, S);
        let Reservation::Queued { ticket: b, .. } = l.reserve(k, 1, 0, None).unwrap() else {
            panic!()
        };
        assert!(l.cancel(k, a));
        assert_eq!(l.remaining(k, b, 0), S);
        l.complete(k, b);
        assert_eq!(l.stats().limiter.waited, 1);
        // Other keys are untouched by all this.
        assert_eq!(l.try_acquire(Key::Int(5), 1, 0).unwrap(), Decision::Admit);
    }

    #[test]
    fn keys_with_waiters_are_never_evicted() {
        let l = keyed(1.0, 1.0, 1, None);
        assert_eq!(l.try_acquire(Key::Int(1), 1, 0).unwrap(), Decision::Admit);
        let Reservation::Queued { ticket, .. } = l.reserve(Key::Int(1), 1, 0, None).unwrap() else {
            panic!()
        };
        assert_eq!(l.try_acquire(Key::Int(2), 1, 0).unwrap(), Decision::Admit);
        assert_eq!(l.len(), 2); // over the cap rather than drop the reservation
        assert_eq!(l.remaining(Key::Int(1), ticket, 0), S);
    }

    #[test]
    fn shard_counts() {
        assert_eq!(KeyedRateLimiter::shard_count(1), 1);
        assert_eq!(KeyedRateLimiter::shard_count(8191), 1);
        assert_eq!(KeyedRateLimiter::shard_count(8192), 2);
        assert_eq!(KeyedRateLimiter::shard_count(100_000), 16);
        assert_eq!(KeyedRateLimiter::shard_count(1_000_000), 64);
        assert_eq!(KeyedRateLimiter::shard_count(u64::MAX), 64);
    }

    #[test]
    fn many_keys_stay_bounded() {
        let l = keyed(1.0, 1.0, 100_000, None);
        for k in 0..300_000 {
            assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
        }
        assert!(l.len() <= 100_000);
        assert!(l.len() > 90_000);
        let s = l.stats();
        assert_eq!(s.keys + s.evicted, 300_000);
    }
}
