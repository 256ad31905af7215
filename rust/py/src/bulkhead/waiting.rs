//! How a bulkhead's waiters are woken, and which threads hold one of its slots.
//!
//! Waking: a release that hands a slot over (or an expiry) returns the tickets to wake, and
//! exactly those waiters are woken: a parked thread is unparked, an async waiter's callback is
//! called (it schedules the wake-up on the waiter's own event loop). No thundering herd, and
//! no waiter sleeps out a polling slice after its slot came.
//!
//! Holding: a sync caller that already holds a slot of a bulkhead and would have to wait for
//! another is rejected instead of deadlocking. The holders are kept in a thread-local list of
//! `(bulkhead id, slot)`: the decorator pushes a marker around the call (a few nanoseconds, no
//! lock, no clock), `with` keeps its slot there until `__exit__`, and the list is only searched
//! when a caller is about to wait.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::Thread;

use pyo3::PyTraverseError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use riprap_core::ForkLocal;
use riprap_core::bulkhead::Slot;

/// How to wake one waiter.
pub(crate) enum Waker {
    /// A thread parked in a sync wait.
    Thread(Thread),
    /// An async waiter's callback (thread-safe: it schedules the wake-up on its loop).
    Call(Py<PyAny>),
}

/// The waiters that asked to be woken, by ticket. A forked child starts with none.
#[derive(Default)]
pub(crate) struct Wakers(ForkLocal<Mutex<HashMap<u64, Waker>>>);

impl Wakers {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Waker>> {
        // Nothing panics while the lock is held; recover from poisoning anyway.
        self.0
            .get(|_| Mutex::default())
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn watch(&self, ticket: u64, waker: Waker) {
        let old = self.lock().insert(ticket, waker);
        drop(old); // outside the lock: dropping a callback can run Python code
    }

    pub(crate) fn unwatch(&self, ticket: u64) {
        let old = self.lock().remove(&ticket);
        drop(old);
    }

    /// Wakes the waiters of `tickets` (outside the lock). A callback that fails (its event
    /// loop is closed) is skipped: that waiter is gone, and its ticket is cancelled by the
    /// waiter's own cleanup.
    pub(crate) fn wake(&self, py: Python<'_>, tickets: &[u64]) {
        if tickets.is_empty() {
            return;
        }
        let wakers: Vec<Waker> = {
            let map = self.lock();
            tickets
                .iter()
                .filter_map(|t| match map.get(t) {
                    Some(Waker::Thread(thread)) => Some(Waker::Thread(thread.clone())),
                    Some(Waker::Call(call)) => Some(Waker::Call(call.clone_ref(py))),
                    None => None,
                })
                .collect()
        };
        for waker in wakers {
            match waker {
                Waker::Thread(thread) => thread.unpark(),
                Waker::Call(call) => {
                    let _ = call.call0(py);
                }
            }
        }
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The GC must not block: if a waiter holds the lock right now, skip this round.
        if let Ok(map) = self.0.get(|_| Mutex::default()).try_lock() {
            for waker in map.values() {
                if let Waker::Call(call) = waker {
                    visit.call(call)?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn clear(&self) {
        let gone = self
            .0
            .get(|_| Mutex::default())
            .try_lock()
            .map(|mut map| std::mem::take(&mut *map));
        drop(gone);
    }
}

thread_local! {
    /// `(bulkhead id, slot)` of every slot this thread holds: `None` for a decorated call in
    /// progress (the slot is on the Rust stack), `Some` for a `with` block.
    static HELD: RefCell<Vec<(u64, Option<Slot>)>> = const { RefCell::new(Vec::new()) };
}

/// Marks this thread as a holder of bulkhead `id` (`slot`: a `with` block's slot, kept here
/// until [`take_slot`]).
#[inline]
pub(crate) fn hold(id: u64, slot: Option<Slot>) {
    HELD.with(|h| h.borrow_mut().push((id, slot)));
}

/// Removes the last marker [`hold`] pushed for bulkhead `id` without a slot.
#[inline]
pub(crate) fn unhold(id: u64) {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if let Some(i) = h.iter().rposition(|(b, s)| *b == id && s.is_none()) {
            h.remove(i);
        }
    });
}

/// Takes the slot of the innermost `with` block of bulkhead `id` on this thread.
pub(crate) fn take_slot(id: u64) -> Option<Slot> {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let i = h.iter().rposition(|(b, s)| *b == id && s.is_some())?;
        h.remove(i).1
    })
}

/// Whether this thread holds a slot of bulkhead `id`.
pub(crate) fn holds(id: u64) -> bool {
    HELD.with(|h| h.borrow().iter().any(|(b, _)| *b == id))
}
