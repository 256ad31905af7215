//! Token-bucket rate limiting as GCRA (the generic cell rate algorithm) on one atomic word.
//!
//! Why GCRA: a token bucket needs a token count and a refill time, updated together, and a naive
//! version keeps a timer or a log of admitted calls. GCRA stores one number per bucket, the
//! *theoretical arrival time* (TAT): the time at which the bucket would be full again if nothing
//! more were taken. With an emission interval `T = 1/rate` and a tolerance `τ = burst × T` (the
//! bucket starts full), a request for `n` tokens at `now` is admitted iff
//! `max(tat, now) + n·T − τ ≤ now`, and then `tat' = max(tat, now) + n·T` is committed with one
//! compare-and-swap. Otherwise it may proceed after exactly `max(tat, now) + n·T − τ − now`. Over
//! any window of length `w` this admits at most `burst + rate × w` tokens, and under saturation it
//! admits exactly `rate`. Nothing is stored per admitted call, nothing runs in the background.
//!
//! Representation (documented, because rounding must never be silent: governor turned a sub-ns
//! interval into 0 and panicked, boinkor-net/governor#203): time is integer nanoseconds since
//! the limiter was made (`now − origin`, saturating at 0, so a clock that steps back before it
//! only looks like "no time passed"). `T` is `1e9/rate` rounded *up* to a whole
//! nanosecond and `τ` is `burst × T` rounded *down*, both computed exactly from the floats' bits,
//! so the real rate and burst are never above the configured ones and the bound above holds for
//! the configured values. A rate or burst whose rounding would cost more than 0.1 % is refused
//! with a `ConfigError` that says why: every rate up to 1e6/s works; above that, only rates whose
//! interval is (within 0.1 %) a whole number of nanoseconds, up to 1e9/s. `1/rate` and
//! `burst/rate` must fit in `u64` nanoseconds (584 years).
//!
//! A clock stepping back can only make the limiter stricter (the TAT never moves back). All
//! arithmetic is checked: a request whose TAT would pass the end of `u64` time is refused, so not
//! even an absurd clock grants capacity.
//!
//! Waiting callers *reserve*: [`RateLimiter::reserve`] moves the TAT forward at once and returns a
//! ticket with the wait; the caller sleeps until its slot ([`RateLimiter::remaining`]) and then
//! reports [`RateLimiter::complete`]. Because the slot is taken up front, waiters are served in
//! arrival order and `try_acquire` can never take capacity a queued waiter holds. A waiter that is
//! cancelled calls [`RateLimiter::cancel`]: its reservation is given back and every later waiter
//! moves up (see [`Waiters`] for when that is safe, and why it is exact).
//!
//! ```
//! use riprap_core::{Decision, Quota, RateLimiter};
//! let quota = Quota::new(2.0, Some(2.0)).unwrap(); // 2 tokens per second, bucket of 2
//! let limiter = RateLimiter::new(quota, 0);
//! assert_eq!(limiter.try_acquire(1, 0).unwrap(), Decision::Admit);
//! assert_eq!(limiter.try_acquire(1, 0).unwrap(), Decision::Admit);
//! assert_eq!(limiter.try_acquire(1, 0).unwrap(), Decision::NotUntil { wait: 500_000_000 });
//! assert_eq!(limiter.try_acquire(1, 500_000_000).unwrap(), Decision::Admit);
//! ```

mod quota;
mod waiters;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::ConfigError;
use crate::fork::ForkLocal;
pub use quota::Quota;
pub use waiters::Waiters;

/// The outcome of [`RateLimiter::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The tokens were taken.
    Admit,
    /// Refused; the same request would be admitted `wait` ns from now (`u64::MAX`: never).
    NotUntil {
        /// Nanoseconds until the request could be admitted.
        wait: u64,
    },
}

/// The outcome of [`RateLimiter::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Admitted at once, nothing to wait for.
    Admitted,
    /// The slot is reserved; proceed after `wait` ns, then call `complete(ticket)` (or
    /// `cancel(ticket)` if the caller gives up).
    Queued {
        /// Identifies the reservation.
        ticket: u64,
        /// Nanoseconds until the slot.
        wait: u64,
    },
    /// The wait would exceed the caller's limit; nothing was reserved.
    Refused {
        /// Nanoseconds until the request could be admitted (`u64::MAX`: never).
        wait: u64,
    },
}

/// Counters of a limiter since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimiterStats {
    /// Requests admitted (at once, or after waiting for their slot).
    pub admitted: u64,
    /// Requests refused (`try_acquire` said no, or the wait exceeded the caller's limit).
    pub rejected: u64,
    /// Admitted requests that waited for their slot first.
    pub waited: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    admitted: AtomicU64,
    rejected: AtomicU64,
    waited: AtomicU64,
}

impl Counters {
    #[inline]
    pub(crate) fn admit(&self) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the outcome of a no-wait request and turns it into the caller's decision.
    pub(crate) fn decide(&self, taken: Result<(), u64>) -> Decision {
        match taken {
            Ok(()) => {
                self.admit();
                Decision::Admit
            }
            Err(wait) => {
                self.reject();
                Decision::NotUntil { wait }
            }
        }
    }

    pub(crate) fn admit_waited(&self) {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        self.waited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LimiterStats {
        LimiterStats {
            admitted: self.admitted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            waited: self.waited.load(Ordering::Relaxed),
        }
    }
}

/// The mutable state of a [`RateLimiter`]: what a forked child starts afresh.
#[derive(Debug, Default)]
struct Bucket {
    tat: AtomicU64,
    waiters: Mutex<Waiters>,
    /// The last ticket handed out (written under the `waiters` lock).
    next_ticket: AtomicU64,
    counters: Counters,
    cas_retries: AtomicU64,
}

impl Bucket {
    /// A full bucket for a forked child. Tickets go on from the parent's, so a reservation
    /// made before the fork is never mistaken for one made after it.
    fn after_fork(inherited: &Self) -> Self {
        Self {
            next_ticket: AtomicU64::new(inherited.next_ticket.load(Ordering::Relaxed)),
            ..Self::default()
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // Nothing panics while the lock is held; recover from poisoning anyway.
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A thread-safe GCRA token bucket.
#[derive(Debug)]
pub struct RateLimiter {
    quota: Quota,
    origin: u64,
    bucket: ForkLocal<Bucket>,
}

impl RateLimiter {
    /// A full bucket; `now` (clock nanoseconds) becomes the limiter's origin.
    pub fn new(quota: Quota, now: u64) -> Self {
        Self {
            quota,
            origin: now,
            bucket: ForkLocal::new(Bucket::default()),
        }
    }

    /// The rate and burst.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    #[inline]
    fn since_origin(&self, now: u64) -> u64 {
        now.saturating_sub(self.origin)
    }

    #[inline]
    fn bucket(&self) -> &Bucket {
        self.bucket.get(Bucket::after_fork)
    }

    /// Takes `cost` ns of tokens if they are available now (lock-free); else the wait.
    #[inline]
    fn take(&self, b: &Bucket, cost: u64, now: u64) -> Result<(), u64> {
        let mut tat = b.tat.load(Ordering::Acquire);
        loop {
            match self.quota.schedule(tat, now, cost) {
                Some((end, 0)) => {
                    match b
                        .tat
                        .compare_exchange_weak(tat, end, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return Ok(()),
                        Err(actual) => {
                            b.cas_retries.fetch_add(1, Ordering::Relaxed);
                            tat = actual;
                        }
                    }
                }
                Some((_, wait)) => return Err(wait),
                None => return Err(u64::MAX),
            }
        }
    }

    /// Takes `n` tokens if they are available at `now`.
    ///
    /// # Errors
    /// [`ConfigError`] when `n` is 0 or more than `burst`.
    pub fn try_acquire(&self, n: u64, now: u64) -> Result<Decision, ConfigError> {
        let cost = self.quota.cost(n)?;
        Ok(self.try_acquire_cost(cost, now))
    }

    /// [`RateLimiter::try_acquire`] for a cost already validated with [`Quota::cost`].
    #[inline]
    pub fn try_acquire_cost(&self, cost: u64, now: u64) -> Decision {
        let b = self.bucket();
        b.counters
            .decide(self.take(b, cost, self.since_origin(now)))
    }

    /// Takes `cost` ns of tokens if they are there now (lock-free), counting the admission;
    /// `false` changes nothing and counts nothing. For a caller that, when refused, goes on to
    /// [`RateLimiter::reserve_cost`] (which then counts what happens): the async decorator
    /// admits at call time this way and defers everything else to its waiting path.
    #[inline]
    pub fn admit_now_cost(&self, cost: u64, now: u64) -> bool {
        let b = self.bucket();
        let admitted = self.take(b, cost, self.since_origin(now)).is_ok();
        if admitted {
            b.counters.admit();
        }
        admitted
    }

    /// Reserves `n` tokens: admitted now, or queued for a slot at most `max_wait` ns away
    /// (`None`: any wait), or refused without reserving anything.
    ///
    /// # Errors
    /// [`ConfigError`] when `n` is 0 or more than `burst`.
    pub fn reserve(
        &self,
        n: u64,
        now: u64,
        max_wait: Option<u64>,
    ) -> Result<Reservation, ConfigError> {
        let cost = self.quota.cost(n)?;
        Ok(self.reserve_cost(cost, now, max_wait))
    }

    /// [`RateLimiter::reserve`] for a cost already validated with [`Quota::cost`].
    pub fn reserve_cost(&self, cost: u64, now: u64, max_wait: Option<u64>) -> Reservation {
        let now = self.since_origin(now);
        let b = self.bucket();
        // Fast path, lock-free: the tokens are there.
        let wait = match self.take(b, cost, now) {
            Ok(()) => {
                b.counters.admit();
                return Reservation::Admitted;
            }
            Err(wait) => wait,
        };
        if wait == u64::MAX || max_wait.is_some_and(|m| wait > m) {
            b.counters.reject();
            return Reservation::Refused { wait };
        }
        // Slow path: queue under the lock, so reservations enter the ledger in slot order.
        let mut waiters = b.waiters();
        let mut tat = b.tat.load(Ordering::Acquire);
        loop {
            let Some((end, wait)) = self.quota.schedule(tat, now, cost) else {
                b.counters.reject();
                return Reservation::Refused { wait: u64::MAX };
            };
            if wait > 0 && max_wait.is_some_and(|m| wait > m) {
                b.counters.reject();
                return Reservation::Refused { wait };
            }
            match b
                .tat
                .compare_exchange(tat, end, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if wait == 0 => {
                    b.counters.admit();
                    return Reservation::Admitted;
                }
                Ok(_) => {
                    let ticket = b.next_ticket.load(Ordering::Relaxed) + 1;
                    b.next_ticket.store(ticket, Ordering::Relaxed);
                    waiters.push(ticket, now, tat, end, cost);
                    return Reservation::Queued { ticket, wait };
                }
                Err(actual) => {
                    b.cas_retries.fetch_add(1, Ordering::Relaxed);
                    tat = actual;
                }
            }
        }
    }

    /// Nanoseconds until the slot of `ticket` (0: due now, or not a pending ticket).
    pub fn remaining(&self, ticket: u64, now: u64) -> u64 {
        let now = self.since_origin(now);
        self.bucket().waiters().end_of(ticket).map_or(0, |end| {
            end.saturating_sub(self.quota.tolerance_ns())
                .saturating_sub(now)
        })
    }

    /// The waiter holding `ticket` proceeded.
    pub fn complete(&self, ticket: u64) {
        let b = self.bucket();
        if b.waiters().complete(ticket) {
            b.counters.admit_waited();
        }
    }

    /// The waiter holding `ticket` gave up: give its reservation back if that is sound (see
    /// [`Waiters`]). Returns `true` when later waiters' slots moved earlier (wake them).
    pub fn cancel(&self, ticket: u64) -> bool {
        let b = self.bucket();
        let mut waiters = b.waiters();
        let tat = b.tat.load(Ordering::Acquire);
        if let Some(plan) = waiters.plan(ticket, tat) {
            // Only a lock-free admission can move the TAT under us; it means a later request
            // went through, so the reservation can no longer be given back.
            if b.tat
                .compare_exchange(tat, plan.new_tat, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return waiters.apply(&plan);
            }
        }
        waiters.spend(ticket);
        false
    }

    /// Reservations held in the ledger (pending waiters, plus finished ones behind them).
    pub fn queued(&self) -> usize {
        self.bucket().waiters().len()
    }

    /// The counters.
    pub fn stats(&self) -> LimiterStats {
        self.bucket().counters.snapshot()
    }

    /// How many compare-and-swap attempts lost a race (tests use it to prove contention).
    pub fn cas_retries(&self) -> u64 {
        self.bucket().cas_retries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn admit_now_counts_only_admissions() {
        let q = Quota::new(1.0, Some(1.0)).unwrap();
        let l = RateLimiter::new(q, 0);
        assert!(l.admit_now_cost(q.interval_ns(), 0));
        assert!(!l.admit_now_cost(q.interval_ns(), 0));
        let s = l.stats();
        assert_eq!((s.admitted, s.rejected, s.waited), (1, 0, 0));
        // A refusal reserved nothing: the next token is due exactly one interval later.
        assert!(!l.admit_now_cost(q.interval_ns(), q.interval_ns() - 1));
        assert!(l.admit_now_cost(q.interval_ns(), q.interval_ns()));
    }

    use super::*;

    const S: u64 = 1_000_000_000;

    fn limiter(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter::new(Quota::new(rate, Some(burst)).unwrap(), 0)
    }

    #[test]
    fn starts_full_then_refills_at_the_rate() {
        let l = limiter(10.0, 3.0);
        for _ in 0..3 {
            assert_eq!(l.try_acquire(1, 0).unwrap(), Decision::Admit);
        }
        assert_eq!(
            l.try_acquire(1, 0).unwrap(),
            Decision::NotUntil { wait: S / 10 }
        );
        assert_eq!(
            l.try_acquire(2, S / 10).unwrap(),
            Decision::NotUntil { wait: S / 10 }
        );
        assert_eq!(l.try_acquire(2, S / 5).unwrap(), Decision::Admit);
        assert_eq!(
            l.stats(),
            LimiterStats {
                admitted: 4,
                rejected: 2,
                waited: 0
            }
        );
    }

    #[test]
    fn retry_after_is_exact_to_the_nanosecond() {
        let l = limiter(3.0, 1.0); // T = 333_333_334 ns (rounded up)
        assert_eq!(l.quota().interval_ns(), 333_333_334);
        assert_eq!(l.try_acquire(1, 7).unwrap(), Decision::Admit);
        let Decision::NotUntil { wait } = l.try_acquire(1, 7).unwrap() else {
            panic!()
        };
        assert_eq!(wait, 333_333_334);
        assert!(matches!(
            l.try_acquire(1, 7 + wait - 1).unwrap(),
            Decision::NotUntil { wait: 1 }
        ));
        assert_eq!(l.try_acquire(1, 7 + wait).unwrap(), Decision::Admit);
    }

    #[test]
    fn clock_stepping_back_is_only_stricter_and_time_saturates() {
        let l = RateLimiter::new(Quota::new(1.0, Some(2.0)).unwrap(), 10 * S);
        assert_eq!(l.try_acquire(2, 20 * S).unwrap(), Decision::Admit);
        // Back to before the origin: no time passed since the last admission, as far as it knows.
        assert!(matches!(
            l.try_acquire(1, 0).unwrap(),
            Decision::NotUntil { .. }
        ));
        assert_eq!(l.try_acquire(1, 21 * S).unwrap(), Decision::Admit);
        // The end of time never panics and never grants unbounded capacity.
        let end = RateLimiter::new(Quota::new(1.0, Some(1.0)).unwrap(), 0);
        assert_eq!(
            end.try_acquire(1, u64::MAX - 1).unwrap(),
            Decision::NotUntil { wait: u64::MAX }
        );
    }

    #[test]
    fn reservations_queue_in_order_and_block_try_acquire() {
        let l = limiter(1.0, 1.0);
        assert_eq!(l.reserve(1, 0, None).unwrap(), Reservation::Admitted);
        let Reservation::Queued { ticket: a, wait } = l.reserve(1, 0, None).unwrap() else {
            panic!()
        };
        assert_eq!(wait, S);
        let Reservation::Queued { ticket: b, wait } = l.reserve(1, 0, None).unwrap() else {
            panic!()
        };
        assert_eq!(wait, 2 * S);
        assert_eq!(
            l.reserve(1, 0, Some(2 * S)).unwrap(),
            Reservation::Refused { wait: 3 * S }
        );
        // agronholm/anyio#1170: at a's slot, try_acquire cannot take what b holds.
        assert_eq!(l.remaining(a, S), 0);
        assert!(matches!(
            l.try_acquire(1, S).unwrap(),
            Decision::NotUntil { .. }
        ));
        l.complete(a);
        assert_eq!(l.remaining(b, S), S);
        l.complete(b);
        assert_eq!(l.queued(), 0);
        assert_eq!(
            l.stats(),
            LimiterStats {
                admitted: 3,
                rejected: 2,
                waited: 2
            }
        );
    }

    #[test]
    fn cancelling_a_queued_waiter_moves_the_others_up() {
        let l = limiter(1.0, 1.0);
        assert_eq!(l.reserve(1, 0, None).unwrap(), Reservation::Admitted);
        let tickets: Vec<u64> = (0..4)
            .map(|_| match l.reserve(1, 0, None).unwrap() {
                Reservation::Queued { ticket, .. } => ticket,
                r => panic!("{r:?}"),
            })
            .collect();
        assert!(l.cancel(tickets[1]));
        assert_eq!(l.remaining(tickets[0], 0), S);
        assert_eq!(l.remaining(tickets[2], 0), 2 * S);
        assert_eq!(l.remaining(tickets[3], 0), 3 * S);
        // The tail gives back too, with nobody to move.
        assert!(!l.cancel(tickets[3]));
        // Exactly as if only two waiters had queued: the next newcomer gets slot 3.
        assert!(matches!(
            l.reserve(1, 0, None).unwrap(),
            Reservation::Queued { wait, .. } if wait == 3 * S
        ));
    }

    #[test]
    fn a_late_cancel_after_a_later_admission_is_spent() {
        let l = limiter(1.0, 1.0);
        assert_eq!(l.try_acquire(1, 0).unwrap(), Decision::Admit);
        let Reservation::Queued { ticket, .. } = l.reserve(1, 0, None).unwrap() else {
            panic!()
        };
        // Its slot (1 s) came and went; at 2 s another request is admitted lock-free.
        assert_eq!(l.try_acquire(1, 2 * S).unwrap(), Decision::Admit);
        assert!(!l.cancel(ticket));
        // Giving it back now would allow a second token at 2 s: it must stay spent.
        assert!(matches!(
            l.try_acquire(1, 2 * S).unwrap(),
            Decision::NotUntil { .. }
        ));
        assert_eq!(l.queued(), 0);
    }

    #[test]
    fn a_cancel_in_the_same_tick_as_the_grant_gives_back() {
        // agronholm/anyio#947: the waiter's slot has come, nobody after it went through: it is
        // given back.
        let l = limiter(1.0, 1.0);
        assert_eq!(l.try_acquire(1, 0).unwrap(), Decision::Admit);
        let Reservation::Queued { ticket, .. } = l.reserve(1, 0, None).unwrap() else {
            panic!()
        };
        assert_eq!(l.remaining(ticket, S), 0);
        l.cancel(ticket);
        assert_eq!(l.try_acquire(1, S).unwrap(), Decision::Admit);
    }
}
