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
//!   fewer than 8192 keys allowed use one shard. A forked child starts with no keys
//!   ([`crate::fork`]).
//! - **Bounded by exactly `max_keys`.** One count of keys spans the shards, and a new key claims
//!   its place in it (compare-and-swap, below `max_keys`) before it goes in, so the table holds
//!   `max_keys` keys before it forgets any, and racing inserts never take it past `max_keys`.
//!   A new key that finds the count at `max_keys` first forgets every *idle* key, one whose
//!   bucket is full again (`tat <= now`): forgetting it changes nothing, since a new key starts
//!   full. If fewer than a batch of `max(1, max_keys/64)` were idle, it also forgets the keys
//!   closest to full (smallest TAT; ties broken by key order, so the choice is deterministic)
//!   until a batch has gone. That is what LRU approximates, and it gives away the least
//!   capacity: a forgotten key that comes back starts with a full bucket, and the keys closest
//!   to full are the next to go idle anyway. Keys with waiters are never forgotten: when every
//!   key has waiters, the new key goes in over the cap (so the table holds at most
//!   `max(max_keys, keys with waiters + 1)`). Every forgotten key is counted (`evicted`).
//! - **Eviction sees the whole table.** The inserting caller locks every shard (in index order,
//!   after letting go of its own, so two of them never deadlock) and picks victims over all of
//!   them, exactly as one table would: the choice does not depend on which shard a key hashes
//!   to, and the reference twin (one dict) makes the same decisions at every size. Evicting from
//!   the inserting shard alone would forget a busy key of that shard while other shards hold idle
//!   ones, and would find nothing to forget in a shard that is empty or whose keys all have
//!   waiters. The price is one pass over all keys per eviction, under every lock, which is why
//!   an eviction always frees a whole batch: at most 64 keys read per new key, whatever the
//!   traffic (freeing only the one or two keys that went idle since the last insert would read
//!   the whole table for every new key). Checks of existing keys and inserts below the cap lock
//!   one shard only.
//! - **`idle_ttl`.** With a TTL, the table also forgets keys whose bucket has been full for at
//!   least `idle_ttl`, every shard at once, at most once per `idle_ttl`, on its next insert or
//!   check: memory shrinks back after a burst of clients without a sweeper thread. A key whose
//!   bucket is not full is never forgotten by age, since that would hand it fresh capacity.
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
use shard::{Part, Shard, Tats, make_room, with_table};

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
    /// Keys forgotten at once when none is idle: `max(1, max_keys/64)`.
    batch: usize,
    hasher: RandomState,
    /// Keyed multiply for spreading `int` keys over shards (the tables hash them with SipHash).
    spread: u64,
    store: ForkLocal<Store>,
}

/// The keys, their buckets and the counters: what a forked child starts afresh.
#[derive(Debug)]
struct Store {
    shards: Box<[Mutex<Shard>]>,
    /// When the next `idle_ttl` sweep is due (limiter nanoseconds; `u64::MAX`: never).
    next_sweep: AtomicU64,
    /// Keys in all shards. Changed only with the key's shard locked, so it is exact whenever
    /// every shard is locked.
    keys: AtomicU64,
    evicted: AtomicU64,
    /// The last ticket handed out; a forked child goes on from its parent's.
    next_ticket: AtomicU64,
    counters: Counters,
}

impl Store {
    fn new(shards: usize, hasher: &RandomState, idle_ttl: Option<u64>, next_ticket: u64) -> Self {
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(Shard::new(hasher)))
                .collect(),
            next_sweep: AtomicU64::new(idle_ttl.unwrap_or(u64::MAX)),
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

    /// Counts one more key if that keeps the count below `max_keys`.
    #[inline]
    fn claim(&self, max_keys: u64) -> bool {
        self.keys
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    #[inline]
    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // Nothing panics while a shard is locked; recover from poisoning anyway.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every shard, locked in index order (the one order, so two callers never deadlock).
    fn lock_all(&self) -> Vec<MutexGuard<'_, Shard>> {
        (0..self.shards.len()).map(|i| self.lock(i)).collect()
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
        Ok(Self::with_shards(
            quota,
            max_keys,
            idle_ttl,
            now,
            Self::shard_count(max_keys),
        ))
    }

    /// [`KeyedRateLimiter::new`] with `shards` shards (a power of two), arguments checked.
    fn with_shards(
        quota: Quota,
        max_keys: u64,
        idle_ttl: Option<u64>,
        now: u64,
        shards: usize,
    ) -> Self {
        debug_assert!(shards.is_power_of_two() && shards <= 64);
        let hasher = RandomState::new();
        let spread = hasher.hash_one(0x5eed_u64) | 1;
        Self {
            quota,
            origin: now,
            max_keys,
            idle_ttl,
            shard_bits: shards.trailing_zeros(),
            batch: usize::try_from(max_keys / 64).unwrap_or(usize::MAX).max(1),
            store: ForkLocal::new(Store::new(shards, &hasher, idle_ttl, 0)),
            hasher,
            spread,
        }
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

    /// The shard `key` lives in.
    #[inline]
    fn shard_index(&self, key: Key<'_>) -> usize {
        if self.shard_bits == 0 {
            return 0;
        }
        let h = match key {
            Key::Int(v) => (v as u64).wrapping_mul(self.spread),
            Key::Str(s) => self.hasher.hash_one((0u8, s)),
            Key::Bytes(s) => self.hasher.hash_one((1u8, s)),
            Key::BigInt(s) => self.hasher.hash_one((2u8, s)),
        };
        (h >> (64 - self.shard_bits)) as usize
    }

    /// Whether an `idle_ttl` sweep is due.
    #[inline]
    fn sweep_due(&self, store: &Store, now: u64) -> bool {
        self.idle_ttl.is_some() && now >= store.next_sweep.load(Ordering::Relaxed)
    }

    /// Takes `cost` from an existing key's bucket; `None` when the key is not tracked.
    // Always inlined: left to itself the compiler makes it a call (it has two callers), and the
    // hot path (`take` on an existing key) then runs ~18 more instructions per check, measured
    // with callgrind.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn take_existing(
        &self,
        shard: &mut Shard,
        key: Key<'_>,
        cost: u64,
        now: u64,
    ) -> Option<Result<(), u64>> {
        with_table!(shard, key, |t, k| t.tats.get_mut(k).map(|slot| {
            match self.quota.schedule(*slot, now, cost) {
                Some((end, 0)) => {
                    *slot = end;
                    Ok(())
                }
                Some((_, wait)) => Err(wait),
                None => Err(u64::MAX),
            }
        }))
    }

    /// Takes `cost` for `key` if available, inserting a new key (making room first);
    /// `Err(wait)` when not. Returns the key's shard, still locked.
    #[inline]
    fn take<'s>(
        &self,
        store: &'s Store,
        key: Key<'_>,
        cost: u64,
        now: u64,
    ) -> (MutexGuard<'s, Shard>, Result<(), u64>) {
        let index = self.shard_index(key);
        let mut shard = store.lock(index);
        if !self.sweep_due(store, now) {
            // One probe for the common case, an existing key.
            if let Some(taken) = self.take_existing(&mut shard, key, cost, now) {
                return (shard, taken);
            }
            // A new key starts full, so `cost <= burst` tokens are always there.
            let Some((end, 0)) = self.quota.schedule(0, now, cost) else {
                return (shard, Err(u64::MAX));
            };
            if store.claim(self.max_keys) {
                with_table!(shard, key, |t, k| t.tats.insert(k, end));
                return (shard, Ok(()));
            }
        }
        // A sweep is due, or the table is full: act on the whole table.
        drop(shard);
        let mut all = store.lock_all();
        let taken = self.take_whole(store, &mut all, index, key, cost, now);
        (all.swap_remove(index), taken)
    }

    /// [`KeyedRateLimiter::take`] with every shard locked (`all`), the table seen as one: the
    /// `idle_ttl` sweep if due, then the key, making room for it if it is new and the table full.
    #[cold]
    fn take_whole(
        &self,
        store: &Store,
        all: &mut [MutexGuard<'_, Shard>],
        index: usize,
        key: Key<'_>,
        cost: u64,
        now: u64,
    ) -> Result<(), u64> {
        if let Some(ttl) = self.idle_ttl
            && now >= store.next_sweep.load(Ordering::Relaxed)
        {
            let n = all
                .iter_mut()
                .map(|shard| shard.forget(|tat| now.saturating_sub(tat) >= ttl))
                .sum();
            store.forgot(n);
            store
                .next_sweep
                .store(now.saturating_add(ttl), Ordering::Relaxed);
        }
        if let Some(taken) = self.take_existing(&mut all[index], key, cost, now) {
            return taken;
        }
        let Some((end, 0)) = self.quota.schedule(0, now, cost) else {
            return Err(u64::MAX);
        };
        // With every shard locked, the count is exact and nobody else changes it.
        if store.keys.load(Ordering::Relaxed) >= self.max_keys {
            store.forgot(make_room(all, now, self.batch));
        }
        store.keys.fetch_add(1, Ordering::Relaxed);
        let shard = &mut *all[index];
        with_table!(shard, key, |t, k| t.tats.insert(k, end));
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
        let (shard, taken) = self.take(store, key, cost, now);
        drop(shard);
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
        let (mut shard, taken) = self.take(store, key, cost, now);
        let wait = match taken {
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
        let mut shard = store.lock(self.shard_index(key));
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
        let mut shard = store.lock(self.shard_index(key));
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
        let mut shard = store.lock(self.shard_index(key));
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

    /// Keys really in the shards (the count `len` reports should equal it when idle).
    #[cfg(test)]
    fn counted(&self) -> usize {
        self.store()
            .lock_all()
            .iter()
            .map(|shard| shard.len())
            .sum()
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
mod tests;
