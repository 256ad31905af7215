//! Fork awareness: state that starts over in a forked child.
//!
//! A process that forks while another of its threads holds a lock leaves the child a lock that
//! nobody will ever release: a child that then touches the same limiter or breaker hangs
//! (daboross/fern#59, RustPython/RustPython#7178). And a child that inherits its parent's counters,
//! token buckets and breaker windows reports and decides on traffic it never saw.
//!
//! So the Python layer calls [`note_fork`] in every forked child (`os.register_at_fork`), and each
//! primitive keeps its mutable state in a [`ForkLocal`]: on first use after a fork, the child gets
//! a fresh state and never touches the inherited one, locked or not. Nothing here needs the
//! parent's cooperation, and a process that never forks pays two atomic loads per access.
//! Configuration (rates, thresholds, clocks) is not state: it is kept.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Set in [`ForkLocal`]'s generation while one thread builds the fresh state.
const RENEWING: u64 = 1 << 63;

/// Tells every fork-aware object that this process is a forked child: each starts fresh (and
/// each unseeded generator reseeds) on its next use. Call it in the child, once per fork.
pub fn note_fork() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// How many forks [`note_fork`] has been told about.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

struct Link<T> {
    value: T,
    next: OnceLock<Box<Link<T>>>,
}

impl<T> Link<T> {
    fn new(value: T) -> Self {
        Self {
            value,
            next: OnceLock::new(),
        }
    }
}

/// A value that is replaced by a fresh one in a forked child, without touching the old one.
///
/// The old value stays allocated (its memory is shared with the parent until written, and it
/// may hold a lock forever); the fresh one is linked after it. A chain grows by one link per
/// fork that the object lives through.
pub struct ForkLocal<T> {
    /// The fork generation of the current link (with [`RENEWING`] while one is being added).
    born: AtomicU64,
    /// How many links to follow from `head` to the current one.
    depth: AtomicUsize,
    head: Link<T>,
}

impl<T> ForkLocal<T> {
    /// Holds `value` for the current process.
    pub fn new(value: T) -> Self {
        Self {
            born: AtomicU64::new(generation()),
            depth: AtomicUsize::new(0),
            head: Link::new(value),
        }
    }

    /// The value for this process; in a forked child, first `fresh(&inherited)` replaces it.
    /// `fresh` may read the inherited value's atomics but must not lock it.
    #[inline]
    pub fn get(&self, fresh: impl FnOnce(&T) -> T) -> &T {
        self.get_at(generation(), fresh)
    }

    #[inline]
    fn get_at(&self, generation: u64, fresh: impl FnOnce(&T) -> T) -> &T {
        // The common case, a process that never forked this object: the head, two loads.
        if self.born.load(Ordering::Acquire) == generation
            && self.depth.load(Ordering::Relaxed) == 0
        {
            return &self.head.value;
        }
        self.get_slow(generation, fresh)
    }

    #[cold]
    #[inline(never)]
    fn get_slow(&self, generation: u64, fresh: impl FnOnce(&T) -> T) -> &T {
        if self.born.load(Ordering::Acquire) != generation {
            self.renew(generation, fresh);
        }
        &self.link(self.depth.load(Ordering::Acquire)).value
    }

    /// The link `depth` steps from the head.
    fn link(&self, depth: usize) -> &Link<T> {
        let mut link = &self.head;
        for _ in 0..depth {
            match link.next.get() {
                Some(next) => link = next,
                None => break, // not reachable: `depth` grows only after the link is set
            }
        }
        link
    }

    fn renew(&self, generation: u64, fresh: impl FnOnce(&T) -> T) {
        let mut fresh = Some(fresh);
        loop {
            let born = self.born.load(Ordering::Acquire);
            if born == generation {
                return;
            }
            if born == generation | RENEWING {
                // Another thread of this process is building it.
                std::thread::yield_now();
                continue;
            }
            // An older generation, or a renewal the parent was in the middle of when it forked.
            if self
                .born
                .compare_exchange(
                    born,
                    generation | RENEWING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                continue;
            }
            let depth = self.depth.load(Ordering::Acquire);
            let tail = self.link(depth);
            if let Some(fresh) = fresh.take() {
                let old = &tail.value;
                // Set unless a parent set it and forked before it moved `depth` on: then that
                // link is fresh as well (nobody has used it).
                tail.next.get_or_init(|| Box::new(Link::new(fresh(old))));
            }
            self.depth.store(depth + 1, Ordering::Release);
            self.born.store(generation, Ordering::Release);
            return;
        }
    }
}

impl<T: Default> Default for ForkLocal<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for ForkLocal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForkLocal")
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .field(
                "value",
                &self.link(self.depth.load(Ordering::Relaxed)).value,
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    // These tests pass generations explicitly: bumping the process-wide one would renew the
    // objects of tests running in parallel (`tests/fork.rs` covers `note_fork` itself).

    #[test]
    fn same_generation_keeps_the_value() {
        let g = generation();
        let v = ForkLocal::new(Mutex::new(5));
        *v.get_at(g, |_| unreachable!()).lock().unwrap() += 1;
        assert_eq!(*v.get_at(g, |_| unreachable!()).lock().unwrap(), 6);
    }

    #[test]
    fn a_child_gets_a_fresh_value_even_if_the_old_one_is_locked_forever() {
        let g = generation();
        let v = ForkLocal::new(Mutex::new(7));
        let held = v.get_at(g, |_| unreachable!()).lock().unwrap();
        // The fresh value may read the inherited one's atomics (here: a peek that does not lock).
        let fresh = v.get_at(g + 1, |old| Mutex::new(i32::from(old.try_lock().is_err())));
        assert_eq!(*fresh.lock().unwrap(), 1);
        drop(held);
        // A grandchild renews again; the chain is walked from the head every time.
        *v.get_at(g + 1, |_| unreachable!()).lock().unwrap() += 10;
        assert_eq!(*v.get_at(g + 1, |_| unreachable!()).lock().unwrap(), 11);
        assert_eq!(*v.get_at(g + 3, |_| Mutex::new(2)).lock().unwrap(), 2);
        assert_eq!(v.depth.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn one_thread_renews_while_the_others_wait_for_it() {
        let g = generation();
        let v = ForkLocal::new(AtomicU64::new(0));
        let built = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        v.get_at(g + 1, |_| {
                            built.fetch_add(1, Ordering::Relaxed);
                            AtomicU64::new(0)
                        })
                        .fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(built.load(Ordering::Relaxed), 1);
        assert_eq!(
            v.get_at(g + 1, |_| unreachable!()).load(Ordering::Relaxed),
            8000
        );
    }

    #[test]
    fn a_renewal_interrupted_by_a_fork_is_finished_in_the_child() {
        let g = generation();
        let v = ForkLocal::new(AtomicU64::new(1));
        // The parent (generation g + 1) was building a link when it forked.
        v.born.store((g + 1) | RENEWING, Ordering::Release);
        assert_eq!(
            v.get_at(g + 2, |_| AtomicU64::new(9))
                .load(Ordering::Relaxed),
            9
        );
    }
}
