//! The bulkhead: a concurrency limit with a bounded FIFO waiting room and an adaptive mode.
//!
//! Why this shape: a bulkhead sits on every call to a dependency, so the uncontended path must
//! cost nanoseconds, and it hands out *slots*, which are exactly what peers leak: a permit kept by
//! a waiter cancelled in the same tick it was granted (aio-libs/aiohttp#2937, google/duet#68), a
//! release skipped by a timeout or a dropped future (failsafe-go/failsafe-go#393,
//! resilience4j/resilience4j#332). So:
//!
//! - Decisions are values. [`Bulkhead::try_acquire`] admits lock-free with one compare-and-swap
//!   while nobody waits; [`Bulkhead::acquire`] admits, queues (an [`Entry::Queued`] ticket) or
//!   rejects with a [`Rejection`] reason. The core never sleeps: the caller waits however it
//!   waits (a parked thread, an asyncio future), and collects its ticket's decision with
//!   [`Bulkhead::claim`] when woken.
//! - Every slot is owned by a [`Slot`] value, moved into [`Bulkhead::release`] (or
//!   [`Bulkhead::try_release`]), so it comes back exactly once. A slot that frees while callers
//!   wait is handed to the first live waiter directly (the active count does not change): the
//!   release returns that waiter's ticket, and the caller wakes exactly that waiter. A waiter
//!   that gives up calls [`Bulkhead::cancel`]; if a slot had already been handed to it, the slot
//!   goes on to the next live waiter, so a grant racing a cancellation never leaks.
//! - Waiters are served in arrival order, and a new arrival never takes a slot while live
//!   waiters are queued: the lock-free path only admits while the queue is empty.
//! - `max_wait` is measured on the bulkhead's clock; expired waiters are taken out at the next
//!   operation that reads the clock (and their tickets returned so they can be woken).
//! - Deadline-aware queueing: a caller that states the time left before its own deadline is
//!   rejected at once when its queue position's expected wait is longer (the mean slot-holding
//!   time, times its position, divided by the limit). The mean is measured only while it
//!   matters: for calls admitted into a full bulkhead or out of the queue, and in adaptive mode;
//!   a call admitted with room to spare reads no clock at all.
//! - "adaptive": the limit moves between 1 and `max_concurrent_calls` (see the AIMD notes in
//!   `bulkhead/aimd.rs`): halved on a failure, a timeout ([`Bulkhead::record_timeout`]) or a
//!   slow success, once per congestion episode; raised by one per round of successful calls made
//!   while at least half of the limit was in use. Rejected, cancelled and ignored calls are not
//!   samples.
//!
//! Shared state: one atomic word holds `active` (low 32 bits) and `queued` (high 32 bits), so the
//! lock-free paths see both at once; a short mutex orders the queue, the handovers and the
//! adaptive state, and is never held while user code runs. A forked child starts empty.
//!
//! ```
//! use riprap_core::{Bulkhead, BulkheadConfig};
//! use riprap_core::bulkhead::{Claim, Ending, Entry, Request};
//! let b = Bulkhead::new(BulkheadConfig { max_concurrent_calls: 1, ..BulkheadConfig::default() })
//!     .unwrap();
//! let first = b.try_acquire(|| 0).unwrap();
//! assert!(b.try_acquire(|| 0).is_none()); // full: the slow path decides
//! let (Entry::Queued { ticket, .. }, _) = b.acquire(0, Request::default()) else { panic!() };
//! assert_eq!(b.release(first, 5, Ending::Success), vec![ticket]); // handed over: wake it
//! let (Claim::Granted(second), _) = b.claim(ticket, 5) else { panic!() };
//! assert!(b.try_release(second).is_err()); // measured (it came from the queue): slow release
//! ```

mod aimd;
mod config;
mod queue;
mod values;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::clock::secs_to_nanos;
use crate::error::ConfigError;
use crate::fork::ForkLocal;
use aimd::{Aimd, Change, ewma};
pub use config::{BulkheadConfig, Isolation, MAX_COUNT};
use queue::{Decided, Queue, Waiter};
pub use values::{
    BulkheadStats, Claim, Ending, Entry, Rejection, Rejections, Request, Slot, Woken,
};

/// Source of bulkhead ids (each slot names its bulkhead).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

const ACTIVE_MASK: u64 = 0xFFFF_FFFF;
const ONE_QUEUED: u64 = 1 << 32;

#[inline]
fn active(word: u64) -> u64 {
    word & ACTIVE_MASK
}

#[inline]
fn queued(word: u64) -> u64 {
    word >> 32
}

#[derive(Debug, Default)]
struct Inner {
    queue: Queue,
    aimd: Aimd,
    average: Option<u64>,
    granted: u64,
    waited: u64,
    rejected: Rejections,
    cancelled_waits: u64,
    timed_out: u64,
    running_after_timeout: u64,
}

/// The state a forked child starts afresh.
#[derive(Debug)]
struct Shared {
    /// `active | queued << 32`.
    word: AtomicU64,
    /// Calls admitted (next to `word`: the same cache line is written anyway).
    admitted: AtomicU64,
    /// The admission limit (moves only in adaptive mode).
    limit: AtomicU64,
    /// Adaptive epoch: bumped by every decrease (written under the lock).
    epoch: AtomicU64,
    /// The last ticket handed out (written under the lock).
    next_ticket: AtomicU64,
    /// Slots from another generation (before a fork) are ignored.
    generation: u64,
    inner: Mutex<Inner>,
}

impl Shared {
    fn new(limit: u64, generation: u64, next_ticket: u64) -> Self {
        Self {
            word: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
            epoch: AtomicU64::new(0),
            next_ticket: AtomicU64::new(next_ticket),
            generation,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while the lock is held; recover from poisoning anyway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A thread-safe bulkhead (see the module docs). All methods take `&self`.
#[derive(Debug)]
pub struct Bulkhead {
    id: u64,
    config: BulkheadConfig,
    capacity: u64,
    adaptive: bool,
    max_wait: Option<u64>,
    slow: u64,
    shared: ForkLocal<Shared>,
}

impl Bulkhead {
    /// An empty bulkhead at its full limit.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field (see [`BulkheadConfig::validate`]).
    pub fn new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let capacity = config.capacity();
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            adaptive: config.isolation_level == Isolation::Adaptive,
            max_wait: config.max_wait.map(secs_to_nanos),
            slow: config.slow_ns(),
            capacity,
            config,
            shared: ForkLocal::new(Shared::new(capacity, 0, 0)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    /// The most calls ever admitted at once (`max_concurrent_calls`, or 20 % more for
    /// "shared"); the adaptive limit never goes above it.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the limit adapts.
    pub fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// The state of this process. A forked child starts empty, in a generation after every
    /// slot its parent handed out, with tickets that go on from the parent's.
    #[inline]
    fn shared(&self) -> &Shared {
        self.shared.get(|inherited| {
            Shared::new(
                self.capacity,
                inherited.generation.wrapping_add(1),
                inherited.next_ticket.load(Ordering::Relaxed),
            )
        })
    }

    /// The bulkhead's id (unique in the process; every slot carries its bulkhead's).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether `slot` was handed out by this bulkhead.
    pub fn owns(&self, slot: &Slot) -> bool {
        slot.owner == self.id
    }

    /// The admission limit now.
    pub fn current_limit(&self) -> u64 {
        self.shared().limit.load(Ordering::Acquire)
    }

    /// Slots held now.
    pub fn active(&self) -> u64 {
        active(self.shared().word.load(Ordering::Acquire))
    }

    /// Callers waiting now.
    pub fn queued(&self) -> u64 {
        queued(self.shared().word.load(Ordering::Acquire))
    }

    fn slot(&self, sh: &Shared, start: Option<u64>, in_flight: u64) -> Slot {
        Slot {
            owner: self.id,
            generation: sh.generation,
            start,
            in_flight,
            epoch: if self.adaptive {
                sh.epoch.load(Ordering::Acquire)
            } else {
                0
            },
            timed_out: false,
        }
    }

    /// Takes a free slot when nobody waits, with one compare-and-swap. `now` is called only
    /// when the call's duration will be measured (adaptive mode, or this call fills the last
    /// free slot). `None`: no free slot, or callers are waiting; [`acquire`](Self::acquire)
    /// decides.
    #[inline]
    pub fn try_acquire(&self, now: impl FnOnce() -> u64) -> Option<Slot> {
        let sh = self.shared();
        let limit = sh.limit.load(Ordering::Acquire);
        let mut word = sh.word.load(Ordering::Acquire);
        loop {
            if queued(word) != 0 || active(word) >= limit {
                return None;
            }
            match sh
                .word
                .compare_exchange_weak(word, word + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => word = actual,
            }
        }
        sh.admitted.fetch_add(1, Ordering::Relaxed);
        let in_flight = active(word) + 1;
        let start = (self.adaptive || in_flight >= limit).then(now);
        Some(self.slot(sh, start, in_flight))
    }

    /// Admits, queues or rejects a call at `now`. Also returns the tickets of waiters whose
    /// `max_wait` ran out (wake them).
    pub fn acquire(&self, now: u64, request: Request) -> (Entry, Woken) {
        let sh = self.shared();
        let mut inner = sh.lock();
        let mut woken = Woken::new();
        Self::expire(sh, &mut inner, now, &mut woken);
        let limit = sh.limit.load(Ordering::Acquire);
        let mut word = sh.word.load(Ordering::Acquire);
        loop {
            if queued(word) == 0 && active(word) < limit {
                // A slot is free and nobody waits.
                if let Err(actual) =
                    sh.word
                        .compare_exchange(word, word + 1, Ordering::AcqRel, Ordering::Acquire)
                {
                    word = actual;
                    continue;
                }
                sh.admitted.fetch_add(1, Ordering::Relaxed);
                let in_flight = active(word) + 1;
                let start = (self.adaptive || in_flight >= limit).then_some(now);
                return (Entry::Admit(self.slot(sh, start, in_flight)), woken);
            }
            if let Some(rejection) = self.refuse(&inner, request, limit) {
                let r = &mut inner.rejected;
                match rejection {
                    Rejection::QueueFull => r.queue_full += 1,
                    Rejection::Reentrant => r.reentrant += 1,
                    Rejection::Deadline { .. } => r.deadline += 1,
                    Rejection::MaxWait | Rejection::Gone => {}
                }
                return (Entry::Reject(rejection), woken);
            }
            // Queue. Only lock-free releases race with this (while nobody waits they may
            // free a slot): then the swap fails and the loop admits instead.
            if let Err(actual) = sh.word.compare_exchange(
                word,
                word + ONE_QUEUED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                word = actual;
                continue;
            }
            let ticket = sh.next_ticket.load(Ordering::Relaxed) + 1;
            sh.next_ticket.store(ticket, Ordering::Relaxed);
            let expires_at = self.max_wait.map(|w| now.saturating_add(w));
            inner.queue.push(Waiter { ticket, expires_at });
            let position = inner.queue.len() as u64;
            return (
                Entry::Queued {
                    ticket,
                    position,
                    expires_at,
                },
                woken,
            );
        }
    }

    /// Why a caller that would have to wait may not (checked under the lock).
    fn refuse(&self, inner: &Inner, request: Request, limit: u64) -> Option<Rejection> {
        if request.reentrant {
            return Some(Rejection::Reentrant);
        }
        let position = inner.queue.len() as u64 + 1;
        if position > self.config.max_queue_size {
            return Some(Rejection::QueueFull);
        }
        let left = request.deadline_left?;
        let expected_wait = Self::expected_wait(inner.average, position, limit);
        (left == 0 || expected_wait.is_some_and(|e| left < e)).then_some(Rejection::Deadline {
            left,
            expected_wait,
        })
    }

    /// The expected wait at queue `position`: slots free at about `limit` per mean
    /// slot-holding time, so the `position`-th waiter's turn comes after `position` of them.
    fn expected_wait(average: Option<u64>, position: u64, limit: u64) -> Option<u64> {
        average.map(|d| {
            let wait = u128::from(d) * u128::from(position) / u128::from(limit.max(1));
            u64::try_from(wait).unwrap_or(u64::MAX)
        })
    }

    /// What became of `ticket` by `now`: a slot (collected: the caller owns it now), still
    /// waiting, or rejected. Also returns other expired waiters' tickets (wake them).
    pub fn claim(&self, ticket: u64, now: u64) -> (Claim, Woken) {
        let sh = self.shared();
        let mut inner = sh.lock();
        let mut woken = Woken::new();
        Self::expire(sh, &mut inner, now, &mut woken);
        woken.retain(|&t| t != ticket);
        let claim = match inner.queue.take_decided(ticket) {
            Some(Decided::Granted(slot)) => {
                inner.granted -= 1;
                inner.waited += 1;
                sh.admitted.fetch_add(1, Ordering::Relaxed);
                Claim::Granted(slot)
            }
            Some(Decided::Expired) => Claim::Rejected(Rejection::MaxWait),
            None => match inner.queue.find(ticket) {
                Some((position, expires_at)) => Claim::Waiting {
                    position: position as u64,
                    expires_at,
                },
                None => Claim::Rejected(Rejection::Gone),
            },
        };
        (claim, woken)
    }

    /// The waiter holding `ticket` gave up at `now`. If a slot had been handed to it, the slot
    /// goes on to the next live waiter (or is freed). Returns the tickets to wake.
    pub fn cancel(&self, ticket: u64, now: u64) -> Woken {
        let sh = self.shared();
        let mut inner = sh.lock();
        let mut woken = Woken::new();
        if inner.queue.remove(ticket) {
            sh.word.fetch_sub(ONE_QUEUED, Ordering::AcqRel);
            inner.cancelled_waits += 1;
        } else {
            match inner.queue.take_decided(ticket) {
                Some(Decided::Granted(_slot)) => {
                    // Granted in the same tick it was cancelled: pass the slot on.
                    inner.granted -= 1;
                    inner.cancelled_waits += 1;
                    Self::expire(sh, &mut inner, now, &mut woken);
                    self.free_slot(sh, &mut inner, now, &mut woken);
                }
                Some(Decided::Expired) | None => {}
            }
        }
        woken
    }

    /// The lock-free release: succeeds when the slot needs no bookkeeping (its duration is not
    /// measured, the limit is not adaptive) and nobody waits. `Err` gives the slot back for
    /// [`release`](Self::release).
    ///
    /// # Errors
    /// The slot, when the lock-free path cannot release it.
    #[inline]
    pub fn try_release(&self, slot: Slot) -> Result<(), Slot> {
        if slot.start.is_some() || slot.timed_out || slot.owner != self.id {
            return Err(slot);
        }
        let sh = self.shared();
        if slot.generation != sh.generation {
            return Ok(()); // from before a fork: this process's state never counted it
        }
        let mut word = sh.word.load(Ordering::Acquire);
        loop {
            if queued(word) != 0 {
                return Err(slot);
            }
            debug_assert!(active(word) > 0);
            match sh
                .word
                .compare_exchange_weak(word, word - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => word = actual,
            }
        }
    }

    /// Gives a slot back at `now` after a call that ended as `ending`: its duration feeds the
    /// mean, the adaptive limit takes the sample, and the slot goes to the first live waiter
    /// (or is freed). Returns the tickets to wake.
    pub fn release(&self, slot: Slot, now: u64, ending: Ending) -> Woken {
        let mut woken = Woken::new();
        if slot.owner != self.id {
            return woken; // another bulkhead's slot: nothing to give back here
        }
        let sh = self.shared();
        if slot.generation != sh.generation {
            return woken;
        }
        let mut inner = sh.lock();
        if slot.timed_out {
            inner.running_after_timeout = inner.running_after_timeout.saturating_sub(1);
        }
        let duration = slot.start.map(|s| now.saturating_sub(s));
        if let Some(d) = duration {
            inner.average = Some(ewma(inner.average, d));
        }
        if self.adaptive && !slot.timed_out {
            match ending {
                Ending::Success => {
                    let too_slow = duration.is_some_and(|d| d >= self.slow);
                    self.adapt(sh, &mut inner, &slot, too_slow);
                }
                Ending::Failure => self.adapt(sh, &mut inner, &slot, true),
                Ending::Ignored | Ending::Cancelled => {}
            }
        }
        Self::expire(sh, &mut inner, now, &mut woken);
        self.free_slot(sh, &mut inner, now, &mut woken);
        self.grant_free(sh, &mut inner, now, &mut woken);
        woken
    }

    /// Records that the call holding `slot` timed out: counted, and in adaptive mode a drop.
    /// The slot stays taken until it is released (sync work that cannot be interrupted keeps it
    /// until it really ends).
    pub fn record_timeout(&self, slot: &mut Slot) {
        if slot.owner != self.id || slot.timed_out {
            return;
        }
        let sh = self.shared();
        if slot.generation != sh.generation {
            return;
        }
        let mut inner = sh.lock();
        slot.timed_out = true;
        inner.timed_out += 1;
        inner.running_after_timeout += 1;
        if self.adaptive {
            self.adapt(sh, &mut inner, slot, true);
        }
    }

    /// Applies one adaptive sample.
    fn adapt(&self, sh: &Shared, inner: &mut Inner, slot: &Slot, dropped: bool) {
        let limit = sh.limit.load(Ordering::Acquire);
        let epoch = sh.epoch.load(Ordering::Acquire);
        match inner.aimd.sample(
            limit,
            self.capacity,
            epoch,
            slot.epoch,
            slot.in_flight,
            dropped,
        ) {
            Change::None => {}
            Change::Up(l) => sh.limit.store(l, Ordering::Release),
            Change::Down(l) => {
                sh.limit.store(l, Ordering::Release);
                sh.epoch.store(epoch.wrapping_add(1), Ordering::Release);
            }
        }
    }

    /// Takes out the waiters whose `max_wait` ran out by `now`.
    fn expire(sh: &Shared, inner: &mut Inner, now: u64, woken: &mut Woken) {
        while let Some(w) = inner.queue.pop_expired(now) {
            sh.word.fetch_sub(ONE_QUEUED, Ordering::AcqRel);
            inner.queue.decide(w.ticket, Decided::Expired);
            inner.rejected.max_wait += 1;
            woken.push(w.ticket);
        }
    }

    /// A slot came free (under the lock): hand it to the first live waiter if the limit allows
    /// (the active count stays), else free it.
    fn free_slot(&self, sh: &Shared, inner: &mut Inner, now: u64, woken: &mut Woken) {
        let word = sh.word.load(Ordering::Acquire);
        let limit = sh.limit.load(Ordering::Acquire);
        // `active` includes the slot being freed; after a decrease it may exceed the limit.
        if active(word) <= limit
            && let Some(w) = inner.queue.pop_front()
        {
            sh.word.fetch_sub(ONE_QUEUED, Ordering::AcqRel);
            self.hand_over(sh, inner, w, active(word), now, woken);
            return;
        }
        sh.word.fetch_sub(1, Ordering::AcqRel);
    }

    /// After the limit rose: grant waiters while slots are free (under the lock).
    fn grant_free(&self, sh: &Shared, inner: &mut Inner, now: u64, woken: &mut Woken) {
        loop {
            let word = sh.word.load(Ordering::Acquire);
            if active(word) >= sh.limit.load(Ordering::Acquire) || queued(word) == 0 {
                return;
            }
            let Some(w) = inner.queue.pop_front() else {
                return;
            };
            // queued > 0, so no lock-free path changes the word meanwhile.
            sh.word.fetch_sub(ONE_QUEUED - 1, Ordering::AcqRel);
            self.hand_over(sh, inner, w, active(word) + 1, now, woken);
        }
    }

    fn hand_over(
        &self,
        sh: &Shared,
        inner: &mut Inner,
        waiter: Waiter,
        in_flight: u64,
        now: u64,
        woken: &mut Woken,
    ) {
        // A waiter's call runs in a saturated bulkhead: measure it.
        let slot = self.slot(sh, Some(now), in_flight);
        inner.queue.decide(waiter.ticket, Decided::Granted(slot));
        inner.granted += 1;
        woken.push(waiter.ticket);
    }

    /// A snapshot at `now` (waiters whose `max_wait` ran out are taken out first; their tickets
    /// are returned to wake).
    pub fn stats(&self, now: u64) -> (BulkheadStats, Woken) {
        let sh = self.shared();
        let mut inner = sh.lock();
        let mut woken = Woken::new();
        Self::expire(sh, &mut inner, now, &mut woken);
        let word = sh.word.load(Ordering::Acquire);
        debug_assert_eq!(queued(word), inner.queue.len() as u64);
        debug_assert!(inner.granted <= inner.queue.uncollected() as u64);
        let stats = BulkheadStats {
            active: active(word),
            queued: queued(word),
            granted: inner.granted,
            limit: sh.limit.load(Ordering::Acquire),
            admitted: sh.admitted.load(Ordering::Relaxed),
            waited: inner.waited,
            rejected: inner.rejected,
            cancelled_waits: inner.cancelled_waits,
            timed_out: inner.timed_out,
            running_after_timeout: inner.running_after_timeout,
            average_duration: inner.average,
        };
        (stats, woken)
    }

    /// The live waiters' tickets, first in line first (for tests of FIFO order).
    pub fn waiting_tickets(&self) -> Vec<u64> {
        self.shared().lock().queue.tickets()
    }
}

#[cfg(test)]
mod tests;
