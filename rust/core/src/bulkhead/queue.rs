//! The bulkhead's waiting room: live waiters in arrival order, and the tickets that were decided
//! (granted a slot, or out of time) but not yet collected by their waiter.

use std::collections::{HashMap, VecDeque};

use super::Slot;

/// A caller waiting for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) ticket: u64,
    /// When `max_wait` runs out for it (`None`: never).
    pub(crate) expires_at: Option<u64>,
}

/// A decision waiting for its waiter to collect it.
#[derive(Debug)]
pub(crate) enum Decided {
    /// A slot was handed over: the waiter owns it from that moment.
    Granted(Slot),
    /// `max_wait` ran out before a slot came.
    Expired,
}

/// Live waiters (FIFO) plus decided tickets.
///
/// Every waiter of one bulkhead waits at most the same `max_wait`, so expiry times grow with
/// arrival order and the expired waiters are always at the front of the queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    live: VecDeque<Waiter>,
    decided: HashMap<u64, Decided>,
}

impl Queue {
    /// Live waiters.
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    pub(crate) fn push(&mut self, waiter: Waiter) {
        debug_assert!(self.live.back().is_none_or(|w| w.ticket < waiter.ticket));
        self.live.push_back(waiter);
    }

    /// The first live waiter, removed.
    pub(crate) fn pop_front(&mut self) -> Option<Waiter> {
        self.live.pop_front()
    }

    /// The first live waiter if its `max_wait` has run out at `now`, removed.
    pub(crate) fn pop_expired(&mut self, now: u64) -> Option<Waiter> {
        if self
            .live
            .front()
            .is_some_and(|w| w.expires_at.is_some_and(|at| at <= now))
        {
            return self.live.pop_front();
        }
        None
    }

    /// A live waiter's 1-based position and expiry.
    pub(crate) fn find(&self, ticket: u64) -> Option<(usize, Option<u64>)> {
        self.index(ticket).map(|i| (i + 1, self.live[i].expires_at))
    }

    fn index(&self, ticket: u64) -> Option<usize> {
        // Tickets grow with arrival order, so the queue is sorted by ticket.
        self.live.binary_search_by_key(&ticket, |w| w.ticket).ok()
    }

    /// Removes a live waiter; `false` if `ticket` is not waiting.
    pub(crate) fn remove(&mut self, ticket: u64) -> bool {
        match self.index(ticket) {
            Some(i) => {
                self.live.remove(i);
                true
            }
            None => false,
        }
    }

    pub(crate) fn decide(&mut self, ticket: u64, decided: Decided) {
        self.decided.insert(ticket, decided);
    }

    /// The decision for `ticket`, removed.
    pub(crate) fn take_decided(&mut self, ticket: u64) -> Option<Decided> {
        self.decided.remove(&ticket)
    }

    /// Decided tickets not collected yet.
    pub(crate) fn uncollected(&self) -> usize {
        self.decided.len()
    }

    /// The live tickets, front first (tests use it to check FIFO order).
    pub(crate) fn tickets(&self) -> Vec<u64> {
        self.live.iter().map(|w| w.ticket).collect()
    }
}
