//! The table of `int` keys: open addressing with the key and its TAT side by side.
//!
//! Why not `HashMap<i64, u64>`: std's table (hashbrown) keeps its control bytes and its entries
//! in two places, so a lookup in a table larger than the caches pays two memory misses. With a
//! million keys spread at random that is most of the cost of a keyed check (measured: ~320 of
//! ~400 ns in the hashbrown version). Here a slot is 16 bytes (key, TAT) in a 16-byte-aligned
//! array, four to a cache line, probed linearly: an existing key is found with one miss.
//!
//! Keys are hashed with the limiter's randomly keyed SipHash (keys come from clients; a fixed
//! hash under linear probing invites HashDoS). The load stays at most 3/4, so a lookup probes ~2.5
//! slots on average (often in the same line). `i64::MIN` marks an empty slot; the key `i64::MIN`
//! itself lives beside the array. Removal shifts the following run back (no tombstones), so the
//! table never degrades however many keys come and go.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::shard::Tats;

/// The key of an empty slot.
const EMPTY: i64 = i64::MIN;
/// Capacity of a table's first array.
const MIN_CAPACITY: usize = 16;

#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
struct Slot {
    key: i64,
    tat: u64,
}

const VACANT: Slot = Slot { key: EMPTY, tat: 0 };

/// `i64` key → TAT, with the operations the keyed limiter needs.
#[derive(Debug)]
pub(super) struct IntTable {
    /// Empty, or a power of two long with at least a quarter of it empty.
    slots: Box<[Slot]>,
    /// Keys in `slots` (not counting `min`).
    used: usize,
    /// The TAT of the key `i64::MIN`, which cannot live in `slots`.
    min: Option<u64>,
    hasher: RandomState,
}

/// Where a key is, or where it would go.
enum Probe {
    Found(usize),
    Vacant(usize),
}

/// `int` keys that fit in `i64`.
impl Tats for IntTable {
    type Key = i64;

    fn new(hasher: &RandomState) -> Self {
        Self {
            slots: Box::new([]),
            used: 0,
            min: None,
            hasher: hasher.clone(),
        }
    }

    fn len(&self) -> usize {
        self.used + usize::from(self.min.is_some())
    }

    fn get(&self, &key: &i64) -> Option<u64> {
        if key == EMPTY {
            return self.min;
        }
        match self.probe(key)? {
            Probe::Found(i) => Some(self.slots[i].tat),
            Probe::Vacant(_) => None,
        }
    }

    fn get_mut(&mut self, &key: &i64) -> Option<&mut u64> {
        if key == EMPTY {
            return self.min.as_mut();
        }
        match self.probe(key)? {
            Probe::Found(i) => Some(&mut self.slots[i].tat),
            Probe::Vacant(_) => None,
        }
    }

    fn insert(&mut self, &key: &i64, tat: u64) {
        if key == EMPTY {
            self.min = Some(tat);
            return;
        }
        if (self.used + 1) * 4 > self.slots.len() * 3 {
            self.resize((self.slots.len() * 2).max(MIN_CAPACITY));
        }
        match self.probe(key) {
            Some(Probe::Found(i)) => self.slots[i].tat = tat,
            Some(Probe::Vacant(i)) => {
                self.slots[i] = Slot { key, tat };
                self.used += 1;
            }
            None => unreachable!("resized above"),
        }
    }

    fn remove(&mut self, &key: &i64) {
        if key == EMPTY {
            self.min = None;
            return;
        }
        let Some(Probe::Found(mut gap)) = self.probe(key) else {
            return;
        };
        // Shift back every later key of the run whose home is not between the gap and it
        // (cyclically), so each key stays reachable from its home without gaps.
        let mask = self.slots.len() - 1;
        let mut j = gap;
        loop {
            j = (j + 1) & mask;
            let slot = self.slots[j];
            if slot.key == EMPTY {
                break;
            }
            let home = self.home(slot.key);
            let stays = if gap <= j {
                gap < home && home <= j
            } else {
                gap < home || home <= j
            };
            if !stays {
                self.slots[gap] = slot;
                gap = j;
            }
        }
        self.slots[gap] = VACANT;
        self.used -= 1;
    }

    /// The array shrinks when it is less than a quarter full, so memory goes back down after a
    /// burst of keys.
    fn retain(&mut self, mut keep: impl FnMut(&i64, u64) -> bool) {
        // Eviction asks every shard's tables; most often there is nothing to forget in one, and
        // a scan costs far less than the rebuild below.
        if self.min.is_none_or(|tat| keep(&EMPTY, tat))
            && self
                .slots
                .iter()
                .all(|s| s.key == EMPTY || keep(&s.key, s.tat))
        {
            return;
        }
        if let Some(tat) = self.min
            && !keep(&EMPTY, tat)
        {
            self.min = None;
        }
        let old = std::mem::take(&mut self.slots);
        let kept: Vec<Slot> = old
            .iter()
            .filter(|s| s.key != EMPTY && keep(&s.key, s.tat))
            .copied()
            .collect();
        let mut capacity = old.len();
        while capacity > MIN_CAPACITY && kept.len() * 4 < capacity {
            capacity /= 2;
        }
        drop(old);
        self.used = 0;
        self.slots = if kept.is_empty() {
            Box::new([])
        } else {
            vec![VACANT; capacity].into_boxed_slice()
        };
        for slot in kept {
            self.place(slot);
        }
    }

    fn for_each<'a>(&'a self, mut f: impl FnMut(&'a i64, u64)) {
        for slot in self.slots.iter().filter(|s| s.key != EMPTY) {
            f(&slot.key, slot.tat);
        }
        if let Some(tat) = self.min {
            f(&EMPTY, tat);
        }
    }
}

impl IntTable {
    #[inline]
    fn home(&self, key: i64) -> usize {
        // Truncating the hash is fine: the low bits are as good as any.
        (self.hasher.hash_one(key) as usize) & (self.slots.len() - 1)
    }

    /// Probes for `key` (not `EMPTY`); `None` while the array is empty.
    #[inline]
    fn probe(&self, key: i64) -> Option<Probe> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = self.slots[i];
            if slot.key == key {
                return Some(Probe::Found(i));
            }
            if slot.key == EMPTY {
                return Some(Probe::Vacant(i));
            }
            i = (i + 1) & mask;
        }
    }

    fn resize(&mut self, capacity: usize) {
        let old = std::mem::replace(&mut self.slots, vec![VACANT; capacity].into_boxed_slice());
        self.used = 0;
        for &slot in old.iter().filter(|s| s.key != EMPTY) {
            self.place(slot);
        }
    }

    /// Puts a key known to be absent into an array with room for it.
    fn place(&mut self, slot: Slot) {
        if let Some(Probe::Vacant(i)) = self.probe(slot.key) {
            self.slots[i] = slot;
            self.used += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::rng::Rng;

    #[test]
    fn behaves_like_a_hash_map_under_random_operations() {
        let hasher = RandomState::new();
        for seed in 0..20 {
            let rng = Rng::new(Some(seed));
            let mut table = IntTable::new(&hasher);
            let mut model: HashMap<i64, u64> = HashMap::new();
            // Few distinct keys, so inserts, updates and removals all hit; the extremes included.
            let key = |r: u64| match r % 50 {
                0 => i64::MIN,
                1 => i64::MAX,
                2 => -1,
                n => i64::try_from(n).unwrap() * 7919,
            };
            for step in 0..5_000u64 {
                let k = key(rng.next_u64());
                match rng.next_u64() % 8 {
                    0..=3 => {
                        table.insert(&k, step);
                        model.insert(k, step);
                    }
                    4 | 5 => {
                        assert_eq!(table.get(&k), model.remove(&k));
                        table.remove(&k);
                    }
                    6 => {
                        if let Some(t) = table.get_mut(&k) {
                            *t += 1;
                        }
                        if let Some(t) = model.get_mut(&k) {
                            *t += 1;
                        }
                    }
                    _ => {
                        let cut = rng.next_u64() % 5_000;
                        table.retain(|_, tat| tat >= cut);
                        model.retain(|_, tat| *tat >= cut);
                    }
                }
                assert_eq!(table.len(), model.len());
                assert_eq!(table.get(&k), model.get(&k).copied());
            }
            let mut all = Vec::new();
            table.for_each(|&k, t| all.push((k, t)));
            all.sort_unstable();
            let mut expected: Vec<_> = model.into_iter().collect();
            expected.sort_unstable();
            assert_eq!(all, expected);
        }
    }

    #[test]
    fn removal_keeps_every_key_of_a_long_run_reachable() {
        let mut table = IntTable::new(&RandomState::new());
        for k in 0..10_000 {
            table.insert(&k, k as u64);
        }
        for k in (0..10_000).step_by(3) {
            table.remove(&k);
        }
        for k in 0..10_000 {
            assert_eq!(table.get(&k), (k % 3 != 0).then_some(k as u64));
        }
        assert!(table.slots.len() * 3 >= table.used * 4);
    }

    #[test]
    fn retain_shrinks_the_array_after_a_burst() {
        let mut table = IntTable::new(&RandomState::new());
        for k in 0..100_000 {
            table.insert(&k, 1);
        }
        let big = table.slots.len();
        table.insert(&-5, 2);
        table.retain(|_, tat| tat == 2);
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(&-5), Some(2));
        assert_eq!(table.slots.len(), MIN_CAPACITY);
        assert!(big >= 131_072);
        table.retain(|_, _| false);
        assert_eq!(table.len(), 0);
        assert!(table.slots.is_empty());
        assert_eq!(table.get(&-5), None);
    }
}
