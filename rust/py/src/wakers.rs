//! Wake-up callbacks of async waiters, shared by both limiters.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::PyTraverseError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use riprap_core::ForkLocal;

/// Callbacks that wake async waiters whose slot moved (a waiter ahead of them was cancelled).
/// A forked child starts with none (its limiter starts fresh too). Callbacks are dropped
/// outside the lock: dropping one can run Python code.
#[derive(Default)]
pub(crate) struct Wakers(ForkLocal<Mutex<Watchers>>);

/// `(ticket, callback)` of each async waiter that asked to be woken.
type Watchers = Vec<(u64, Py<PyAny>)>;

impl Wakers {
    fn list(&self) -> &Mutex<Watchers> {
        self.0.get(|_| Mutex::default())
    }

    fn lock(&self) -> MutexGuard<'_, Watchers> {
        // Nothing panics while the lock is held; recover from poisoning anyway.
        self.list().lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn watch(&self, ticket: u64, callback: Py<PyAny>) {
        self.lock().push((ticket, callback));
    }

    pub(crate) fn unwatch(&self, ticket: u64) {
        // In place; the removed callbacks are dropped once the guard is gone.
        let mut gone: Watchers = Vec::new();
        {
            let mut list = self.lock();
            while let Some(i) = list.iter().position(|(t, _)| *t == ticket) {
                gone.push(list.remove(i));
            }
        }
        drop(gone);
    }

    /// Calls the callback of every waiter behind `ticket` (outside the lock). A callback that
    /// fails (its event loop is closed, say) is skipped: that waiter re-checks on its own.
    pub(crate) fn wake_after(&self, py: Python<'_>, ticket: u64) {
        let callbacks: Vec<Py<PyAny>> = self
            .lock()
            .iter()
            .filter(|(t, _)| *t > ticket)
            .map(|(_, c)| c.clone_ref(py))
            .collect();
        for callback in callbacks {
            let _ = callback.call0(py);
        }
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The GC must not block: if a waiter holds the lock right now, skip this round.
        if let Ok(list) = self.list().try_lock() {
            for (_, callback) in list.iter() {
                visit.call(callback)?;
            }
        }
        Ok(())
    }

    pub(crate) fn clear(&self) {
        let gone = self
            .list()
            .try_lock()
            .map(|mut list| std::mem::take(&mut *list));
        drop(gone);
    }
}
