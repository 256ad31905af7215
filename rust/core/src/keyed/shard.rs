//! One shard of the keyed limiter: a table of TATs per key type and the keys' waiters; and the
//! eviction policy, which picks its victims over every shard at once (see the
//! [module docs](super)).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::Hash;
use std::ops::DerefMut;

use super::Key;
use super::int_table::IntTable;
use crate::limiter::Waiters;
use std::fmt::Debug;

/// A key the limiter owns (to forget it after choosing it).
#[derive(Debug)]
pub(super) enum OwnedKey {
    Int(i64),
    Str(Box<[u8]>),
    Bytes(Box<[u8]>),
    BigInt(Box<[u8]>),
}

impl OwnedKey {
    fn of(key: Key<'_>) -> Self {
        match key {
            Key::Int(v) => Self::Int(v),
            Key::Str(s) => Self::Str(s.into()),
            Key::Bytes(s) => Self::Bytes(s.into()),
            Key::BigInt(s) => Self::BigInt(s.into()),
        }
    }

    fn as_key(&self) -> Key<'_> {
        match self {
            Self::Int(v) => Key::Int(*v),
            Self::Str(s) => Key::Str(s),
            Self::Bytes(s) => Key::Bytes(s),
            Self::BigInt(s) => Key::BigInt(s),
        }
    }
}

/// A borrowed key part and the owned form a table stores.
pub(super) trait Part: Hash + Eq {
    type Owned: Hash + Eq + Borrow<Self> + Debug;
    fn own(&self) -> Self::Owned;
}

impl Part for i64 {
    type Owned = i64;
    fn own(&self) -> i64 {
        *self
    }
}

impl Part for [u8] {
    type Owned = Box<[u8]>;
    fn own(&self) -> Box<[u8]> {
        self.into()
    }
}

/// Key → TAT: the operations a shard needs from its tables.
pub(super) trait Tats {
    type Key: Part + ?Sized;
    fn new(hasher: &RandomState) -> Self;
    fn len(&self) -> usize;
    fn get(&self, key: &Self::Key) -> Option<u64>;
    fn get_mut(&mut self, key: &Self::Key) -> Option<&mut u64>;
    /// Sets `key`'s TAT, adding the key if it is new.
    fn insert(&mut self, key: &Self::Key, tat: u64);
    fn remove(&mut self, key: &Self::Key);
    /// Keeps the keys `keep` says yes to, giving memory back when few are left. `keep` must
    /// answer by key and TAT alone: it may be asked more than once about a key.
    fn retain(&mut self, keep: impl FnMut(&Self::Key, u64) -> bool);
    fn for_each<'a>(&'a self, f: impl FnMut(&'a Self::Key, u64));
}

/// The table of byte-string keys (`str`, `bytes`, big ints): std's. Looking up an existing key
/// borrows its bytes.
#[derive(Debug)]
pub(super) struct ByteTable(HashMap<Box<[u8]>, u64, RandomState>);

impl Tats for ByteTable {
    type Key = [u8];

    fn new(hasher: &RandomState) -> Self {
        Self(HashMap::with_hasher(hasher.clone()))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, key: &[u8]) -> Option<u64> {
        self.0.get(key).copied()
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut u64> {
        self.0.get_mut(key)
    }

    fn insert(&mut self, key: &[u8], tat: u64) {
        match self.0.get_mut(key) {
            Some(slot) => *slot = tat,
            None => {
                self.0.insert(key.own(), tat);
            }
        }
    }

    fn remove(&mut self, key: &[u8]) {
        self.0.remove(key);
    }

    fn retain(&mut self, mut keep: impl FnMut(&[u8], u64) -> bool) {
        self.0.retain(|k, tat| keep(k.borrow(), *tat));
        if self.0.len() < self.0.capacity() / 4 {
            self.0.shrink_to_fit();
        }
    }

    fn for_each<'a>(&'a self, mut f: impl FnMut(&'a [u8], u64)) {
        for (k, &tat) in &self.0 {
            f(k.borrow(), tat);
        }
    }
}

type Owned<M> = <<M as Tats>::Key as Part>::Owned;

/// The buckets of one key type in one shard, and the waiters of the keys that have some.
#[derive(Debug)]
pub(super) struct Table<M: Tats> {
    pub(super) tats: M,
    pub(super) waiters: HashMap<Owned<M>, Waiters, RandomState>,
}

impl<M: Tats> Table<M> {
    fn new(hasher: &RandomState) -> Self {
        Self {
            tats: M::new(hasher),
            waiters: HashMap::with_hasher(hasher.clone()),
        }
    }

    /// Forgets the keys `forget` picks by TAT, except keys with waiters; returns how many.
    fn forget(&mut self, forget: impl Fn(u64) -> bool) -> usize {
        let before = self.tats.len();
        let waiters = &self.waiters;
        self.tats
            .retain(|k, tat| !forget(tat) || (!waiters.is_empty() && waiters.contains_key(k)));
        before - self.tats.len()
    }

    /// Every key without waiters whose TAT is at most `bound`, as `(tat, key, shard)`.
    fn forgettable<'a>(
        &'a self,
        key: impl Fn(&'a M::Key) -> Key<'a>,
        shard: usize,
        bound: u64,
        out: &mut Vec<Candidate<'a>>,
    ) {
        self.tats.for_each(|k, tat| {
            if tat <= bound && (self.waiters.is_empty() || !self.waiters.contains_key(k)) {
                out.push((tat, key(k), shard));
            }
        });
    }
}

/// A key that may be forgotten: its TAT, the key, and the index of its shard. `(tat, key)` pairs
/// are distinct (a key lives in one shard), so they alone order candidates.
type Candidate<'a> = (u64, Key<'a>, usize);

#[derive(Debug)]
pub(super) struct Shard {
    pub(super) ints: Table<IntTable>,
    pub(super) strs: Table<ByteTable>,
    pub(super) bytes: Table<ByteTable>,
    pub(super) bigs: Table<ByteTable>,
}

/// Runs `$body` with `$t` bound to the table of `$key`'s type and `$k` to its borrowed part.
macro_rules! with_table {
    ($shard:expr, $key:expr, |$t:ident, $k:ident| $body:expr) => {
        match $key {
            Key::Int(v) => {
                let $t = &mut $shard.ints;
                let $k: &i64 = &v;
                $body
            }
            Key::Str(s) => {
                let $t = &mut $shard.strs;
                let $k: &[u8] = s;
                $body
            }
            Key::Bytes(s) => {
                let $t = &mut $shard.bytes;
                let $k: &[u8] = s;
                $body
            }
            Key::BigInt(s) => {
                let $t = &mut $shard.bigs;
                let $k: &[u8] = s;
                $body
            }
        }
    };
}
pub(super) use with_table;

impl Shard {
    pub(super) fn new(hasher: &RandomState) -> Self {
        Self {
            ints: Table::new(hasher),
            strs: Table::new(hasher),
            bytes: Table::new(hasher),
            bigs: Table::new(hasher),
        }
    }

    /// Keys in this shard (the tests check the shared count against it).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ints.tats.len() + self.strs.tats.len() + self.bytes.tats.len() + self.bigs.tats.len()
    }

    /// Forgets the keys `forget` picks by TAT, except keys with waiters; returns how many.
    pub(super) fn forget(&mut self, forget: impl Fn(u64) -> bool + Copy) -> usize {
        self.ints.forget(forget)
            + self.strs.forget(forget)
            + self.bytes.forget(forget)
            + self.bigs.forget(forget)
    }

    /// Appends every key without waiters whose TAT is at most `bound` to `out`.
    fn forgettable<'a>(&'a self, index: usize, bound: u64, out: &mut Vec<Candidate<'a>>) {
        self.ints.forgettable(|k| Key::Int(*k), index, bound, out);
        self.strs.forgettable(Key::Str, index, bound, out);
        self.bytes.forgettable(Key::Bytes, index, bound, out);
        self.bigs.forgettable(Key::BigInt, index, bound, out);
    }
}

/// Makes room for one more key in a full table, `shards` being all of it (every shard locked):
/// forgets every idle key (`tat <= now`), and if that is fewer than `batch`, as many of the keys
/// closest to full (smallest `(tat, key)`) as make up `batch`. Keys with waiters are never
/// forgotten. Returns how many went.
///
/// Each call reads every key, so each frees a whole batch (or all it can): with a few keys going
/// idle between two inserts, freeing just those would read the table once per new key.
pub(super) fn make_room<S: DerefMut<Target = Shard>>(
    shards: &mut [S],
    now: u64,
    batch: usize,
) -> usize {
    let idle: usize = shards.iter_mut().map(|s| s.forget(|tat| tat <= now)).sum();
    if idle >= batch {
        return idle;
    }
    let batch = batch - idle; // at least 1
    let victims: Vec<(OwnedKey, usize)> = {
        // The `batch` smallest so far, plus the shard being added: memory stays near one shard's
        // worth of keys (two batches at most) however many shards there are. Once `batch` are
        // kept, a key whose TAT is above the largest kept cannot be among the smallest: it is
        // not even collected (most keys, after the first shards).
        let mut best: Vec<Candidate<'_>> = Vec::new();
        let mut bound = u64::MAX;
        for (index, shard) in shards.iter().enumerate() {
            shard.forgettable(index, bound, &mut best);
            if best.len() >= batch.saturating_mul(2) {
                best.select_nth_unstable(batch - 1);
                best.truncate(batch);
                bound = best[batch - 1].0;
            }
        }
        if best.is_empty() {
            // Every key left has waiters: if none was idle either, the new key goes in over the
            // cap rather than drop a reservation.
            return idle;
        }
        let k = batch.min(best.len());
        // (tat, key) pairs are distinct, so the k smallest are one well-defined set.
        best.select_nth_unstable(k - 1);
        best[..k]
            .iter()
            .map(|&(_, key, index)| (OwnedKey::of(key), index))
            .collect()
    };
    for (victim, index) in &victims {
        let shard = &mut *shards[*index];
        with_table!(shard, victim.as_key(), |t, k| t.tats.remove(k));
    }
    idle + victims.len()
}
