//! One shard of the keyed limiter: a table of TATs per key type, the keys' waiters, and the
//! eviction policy that bounds the shard (see the [module docs](super)).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::Hash;

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
    /// Keeps the keys `keep` says yes to, giving memory back when few are left.
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

    /// Every key without waiters, as `(tat, key)`.
    fn forgettable<'a>(
        &'a self,
        key: impl Fn(&'a M::Key) -> Key<'a>,
        out: &mut Vec<(u64, Key<'a>)>,
    ) {
        self.tats.for_each(|k, tat| {
            if self.waiters.is_empty() || !self.waiters.contains_key(k) {
                out.push((tat, key(k)));
            }
        });
    }
}

#[derive(Debug)]
pub(super) struct Shard {
    pub(super) ints: Table<IntTable>,
    pub(super) strs: Table<ByteTable>,
    pub(super) bytes: Table<ByteTable>,
    pub(super) bigs: Table<ByteTable>,
    pub(super) next_sweep: u64,
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
    pub(super) fn new(hasher: &RandomState, next_sweep: u64) -> Self {
        Self {
            ints: Table::new(hasher),
            strs: Table::new(hasher),
            bytes: Table::new(hasher),
            bigs: Table::new(hasher),
            next_sweep,
        }
    }

    fn len(&self) -> usize {
        self.ints.tats.len() + self.strs.tats.len() + self.bytes.tats.len() + self.bigs.tats.len()
    }

    pub(super) fn forget(&mut self, forget: impl Fn(u64) -> bool + Copy) -> usize {
        self.ints.forget(forget)
            + self.strs.forget(forget)
            + self.bytes.forget(forget)
            + self.bigs.forget(forget)
    }

    /// Makes room for one more key in a full shard; returns how many keys were forgotten.
    pub(super) fn make_room(&mut self, now: u64, cap: usize) -> usize {
        if self.len() < cap {
            return 0;
        }
        let idle = self.forget(|tat| tat <= now);
        if idle > 0 {
            return idle;
        }
        let victims: Vec<OwnedKey> = {
            let mut all = Vec::with_capacity(self.len());
            self.ints.forgettable(|k| Key::Int(*k), &mut all);
            self.strs.forgettable(Key::Str, &mut all);
            self.bytes.forgettable(Key::Bytes, &mut all);
            self.bigs.forgettable(Key::BigInt, &mut all);
            if all.is_empty() {
                return 0; // every key has waiters: go over the cap rather than drop a reservation
            }
            let k = (cap / 64).clamp(1, all.len());
            // (tat, key) pairs are distinct, so the k smallest are one well-defined set.
            all.select_nth_unstable(k - 1);
            all[..k].iter().map(|&(_, key)| OwnedKey::of(key)).collect()
        };
        for victim in &victims {
            with_table!(self, victim.as_key(), |t, k| t.tats.remove(k));
        }
        victims.len()
    }
}
