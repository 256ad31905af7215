//! The ledger of reservations that wait for their slot (see [`Waiters`]).

use std::collections::VecDeque;

/// A reservation that has not proceeded yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    ticket: u64,
    /// When the reservation was made.
    arrival: u64,
    /// The TAT the reservation saw.
    before: u64,
    /// The TAT it left: the waiter proceeds at `end − τ`.
    end: u64,
    cost: u64,
    /// Proceeded (or cancelled too late to give back): immovable.
    done: bool,
}

/// The reservations of one bucket that have not proceeded yet, in slot order.
///
/// Giving a reservation back is exact: the bucket's state becomes what it would have been had
/// the request never been made, and the waiters behind it move up. That is only sound while
/// nothing reserved after it has already gone through; otherwise rewriting the history could
/// admit more than `burst + rate × w` in some window. So a cancel gives back iff every later
/// reservation is still pending, each one's slot directly follows the previous one (no immediate
/// admission slipped in between) and the TAT is still the last slot's end. A reservation
/// cancelled before its slot always qualifies (nothing after it can have been admitted yet); one
/// cancelled after its slot came, once a later request went through, counts as spent (a token
/// taken is spent).
#[derive(Debug, Default)]
pub struct Waiters {
    entries: VecDeque<Pending>,
}

/// What giving back a reservation changes.
#[derive(Debug)]
pub(crate) struct GiveBack {
    index: usize,
    /// The new `(before, end)` of every reservation after it.
    moved: Vec<(u64, u64)>,
    /// The bucket's TAT afterwards.
    pub(crate) new_tat: u64,
}

impl Waiters {
    /// Whether no reservation is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many reservations are held (pending, or finished behind a pending one).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn push(&mut self, ticket: u64, arrival: u64, before: u64, end: u64, cost: u64) {
        debug_assert!(self.entries.back().is_none_or(|p| p.ticket < ticket));
        self.entries.push_back(Pending {
            ticket,
            arrival,
            before,
            end,
            cost,
            done: false,
        });
    }

    fn index(&self, ticket: u64) -> Option<usize> {
        self.entries
            .binary_search_by_key(&ticket, |p| p.ticket)
            .ok()
            .filter(|&i| !self.entries[i].done)
    }

    /// The TAT a pending reservation left (its slot is `end − τ`).
    pub(crate) fn end_of(&self, ticket: u64) -> Option<u64> {
        self.index(ticket).map(|i| self.entries[i].end)
    }

    fn trim(&mut self) {
        while self.entries.front().is_some_and(|p| p.done) {
            self.entries.pop_front();
        }
    }

    /// Marks `ticket` as proceeded; `false` if it was not pending.
    pub(crate) fn complete(&mut self, ticket: u64) -> bool {
        let Some(i) = self.index(ticket) else {
            return false;
        };
        self.entries[i].done = true;
        self.trim();
        true
    }

    /// The plan for giving back `ticket` while the bucket's TAT is `tat`, if that is sound.
    pub(crate) fn plan(&self, ticket: u64, tat: u64) -> Option<GiveBack> {
        let index = self.index(ticket)?;
        let mut chain_end = self.entries[index].end;
        for p in self.entries.range(index + 1..) {
            if p.done || p.before != chain_end {
                return None;
            }
            chain_end = p.end;
        }
        if tat != chain_end {
            return None;
        }
        // Replay the later reservations as if this one had never been made.
        let mut prev = self.entries[index].before;
        let mut moved = Vec::with_capacity(self.entries.len() - index - 1);
        for p in self.entries.range(index + 1..) {
            // start <= the old start, so this cannot overflow.
            let end = prev.max(p.arrival) + p.cost;
            moved.push((prev, end));
            prev = end;
        }
        Some(GiveBack {
            index,
            moved,
            new_tat: prev,
        })
    }

    /// Applies a plan from [`Waiters::plan`]; `true` if any later slot moved.
    pub(crate) fn apply(&mut self, plan: &GiveBack) -> bool {
        let mut shifted = false;
        self.entries.remove(plan.index);
        for (p, &(before, end)) in self.entries.range_mut(plan.index..).zip(&plan.moved) {
            shifted |= p.end != end;
            p.before = before;
            p.end = end;
        }
        self.trim();
        shifted
    }

    /// Gives up on `ticket` without giving its tokens back (they are spent).
    pub(crate) fn spend(&mut self, ticket: u64) {
        if let Some(i) = self.index(ticket) {
            self.entries[i].done = true;
            self.trim();
        }
    }
}
