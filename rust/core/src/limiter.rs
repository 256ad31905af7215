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
//! Representation (documented, because L15 says rounding must never be silent): time is integer
//! nanoseconds since the limiter was made (`now − origin`, saturating at 0, so a clock that steps
//! back before it only looks like "no time passed"). `T` is `1e9/rate` rounded *up* to a whole
//! nanosecond and `τ` is `burst × T` rounded *down*, both computed exactly from the floats' bits,
//! so the real rate and burst are never above the configured ones and the SPEC's bound holds for
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{ConfigError, check_float, py_float};
use crate::fork::ForkLocal;

const NANOS: u128 = 1_000_000_000;

/// `x = mantissa × 2^exponent` exactly, for a finite `x > 0`.
fn decompose(x: f64) -> (u128, i32) {
    let bits = x.to_bits();
    let field = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    if field == 0 {
        (u128::from(fraction), -1074)
    } else {
        (u128::from(fraction | (1 << 52)), field - 1075)
    }
}

fn too_slow(rate: f64) -> ConfigError {
    ConfigError::Inconsistent {
        message: format!(
            "rate {} is too small: the interval between tokens, 1/rate, must be at most \
             2**64 - 1 ns (about 584 years)",
            py_float(rate)
        ),
    }
}

/// `ceil(1e9 / rate)`, exactly, refused when it does not fit or costs more than 0.1 % of the rate.
fn interval_ns(rate: f64) -> Result<u64, ConfigError> {
    let (m, e) = decompose(rate);
    let t: u128 = if e >= 0 {
        if e > 64 { 1 } else { NANOS.div_ceil(m << e) }
    } else {
        let shift = e.unsigned_abs();
        if shift > 90 {
            // rate < 2**-37: 1/rate is far beyond u64 nanoseconds.
            return Err(too_slow(rate));
        }
        (NANOS << shift).div_ceil(m)
    };
    let t = u64::try_from(t).map_err(|_| too_slow(rate))?;
    // The real rate 1e9/t is within 0.1 % of `rate` iff 1e12 >= 999 × t × rate.
    let lhs = 999 * u128::from(t) * m; // < 2**127
    let accurate = if e >= 0 {
        e <= 64 && lhs <= (1000 * NANOS) >> e
    } else {
        let shift = e.unsigned_abs();
        shift >= 88 || lhs <= (1000 * NANOS) << shift
    };
    if accurate {
        Ok(t)
    } else {
        Err(ConfigError::Inconsistent {
            message: format!(
                "rate {} is not representable: tokens are spaced a whole number of nanoseconds \
                 apart and 1/rate rounds up to {t} ns, more than 0.1 % slower than requested \
                 (every rate up to 1e6/s works; above that, 1e9/rate must be within 0.1 % of a \
                 whole number)",
                py_float(rate)
            ),
        })
    }
}

/// `floor(burst × interval)`, exactly, refused when it does not fit or costs more than 0.1 %.
fn tolerance_ns(rate: f64, burst: f64, interval: u64) -> Result<u64, ConfigError> {
    let too_long = || ConfigError::Inconsistent {
        message: format!(
            "burst {} at rate {} is not representable: burst / rate must be at most \
             2**64 - 1 ns (about 584 years)",
            py_float(burst),
            py_float(rate)
        ),
    };
    let (m, e) = decompose(burst);
    let product = m * u128::from(interval); // < 2**117
    let tau = if e >= 0 {
        let e = e.unsigned_abs();
        if e >= 64 || product > u128::from(u64::MAX) >> e {
            return Err(too_long());
        }
        product << e
    } else {
        let shift = e.unsigned_abs();
        let tau = if shift >= 128 { 0 } else { product >> shift };
        // floor(burst × T) is within 0.1 % iff 999 × burst × T <= 1000 × tau.
        if shift < 128 && 999 * product > (1000 * tau) << shift {
            return Err(ConfigError::Inconsistent {
                message: format!(
                    "burst {} is not representable at rate {}: burst / rate rounds down to {tau} \
                     ns, more than 0.1 % below the requested tolerance (use a whole-number burst)",
                    py_float(burst),
                    py_float(rate)
                ),
            });
        }
        tau
    };
    u64::try_from(tau).map_err(|_| too_long())
}

/// A validated rate and burst, with their exact integer representation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    rate: f64,
    burst: f64,
    interval: u64,
    tolerance: u64,
    max_n: u64,
}

impl Quota {
    /// `rate` tokens per second with a bucket of `burst` tokens (default `max(1, rate)`).
    ///
    /// # Errors
    /// [`ConfigError`] when `rate` is not a finite number above 0, `burst` is not a finite number
    /// `>= 1`, or the pair cannot be represented within 0.1 % (see the module docs).
    pub fn new(rate: f64, burst: Option<f64>) -> Result<Self, ConfigError> {
        check_float("rate", rate, 0.0, false)?;
        let burst = match burst {
            Some(b) => check_float("burst", b, 1.0, true)?,
            None => rate.max(1.0),
        };
        let interval = interval_ns(rate)?;
        let tolerance = tolerance_ns(rate, burst, interval)?;
        Ok(Self {
            rate,
            burst,
            interval,
            tolerance,
            // burst × interval fits in u64 and interval >= 1, so floor(burst) does too.
            max_n: burst.floor() as u64,
        })
    }

    /// The configured rate, tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The configured bucket size, tokens.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// The emission interval `T`: nanoseconds per token (`1e9/rate` rounded up).
    pub fn interval_ns(&self) -> u64 {
        self.interval
    }

    /// The tolerance `τ`: `burst × T` nanoseconds, rounded down.
    pub fn tolerance_ns(&self) -> u64 {
        self.tolerance
    }

    /// The cost in nanoseconds of `n` tokens.
    ///
    /// # Errors
    /// [`ConfigError`] when `n` is 0 or more than `burst` (such a request could never be
    /// admitted, so it is refused at once instead of waiting forever: alisaifee/limits#151).
    pub fn cost(&self, n: u64) -> Result<u64, ConfigError> {
        if n == 0 {
            return Err(ConfigError::IntTooSmall {
                field: "n",
                value: 0,
                min: 1,
            });
        }
        if n > self.max_n {
            return Err(ConfigError::Inconsistent {
                message: format!("n must be <= burst ({}), got {n}", py_float(self.burst)),
            });
        }
        Ok(n * self.interval)
    }

    /// One GCRA step: for a bucket with theoretical arrival time `tat`, a request costing `cost`
    /// at `now` gives `(new_tat, wait)`: it may proceed after `wait` ns (0: at once), and taking it
    /// moves the TAT to `new_tat`. `None` when `new_tat` would pass the end of `u64` time.
    #[inline]
    pub fn schedule(&self, tat: u64, now: u64, cost: u64) -> Option<(u64, u64)> {
        let end = tat.max(now).checked_add(cost)?;
        Some((end, end.saturating_sub(self.tolerance).saturating_sub(now)))
    }
}

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
/// cancelled after its slot came, once a later request went through, counts as spent (SPEC §18:
/// a token taken is spent).
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
            end.saturating_sub(self.quota.tolerance).saturating_sub(now)
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
    fn default_burst_is_max_one_rate() {
        let q = Quota::new(0.5, None).unwrap();
        assert_eq!(
            (q.burst(), q.interval_ns(), q.tolerance_ns()),
            (1.0, 2 * S, 2 * S)
        );
        let q = Quota::new(2.5, None).unwrap();
        assert_eq!(q.burst(), 2.5);
        assert_eq!(q.tolerance_ns(), S); // 2.5 × 0.4 s
        assert!(q.cost(2).is_ok());
        assert_eq!(
            q.cost(3).unwrap_err().to_string(),
            "n must be <= burst (2.5), got 3"
        );
        assert_eq!(q.cost(0).unwrap_err().to_string(), "n must be >= 1, got 0");
    }

    #[test]
    fn representation_is_exact_or_refused() {
        for (rate, t) in [
            // The float 1e-9 is a little above 1e-9, and the interval is exact for that float.
            (1e-9, 999_999_999_999_999_938),
            (1.0, S),
            (1e6, 1000),
            (999_999.0, 1001),
            (2e6, 500),
            (1e9, 1),
        ] {
            assert_eq!(
                Quota::new(rate, Some(1.0)).unwrap().interval_ns(),
                t,
                "{rate}"
            );
        }
        for rate in [3e6, 7e8, 1e12, 1e300] {
            let e = Quota::new(rate, None).unwrap_err().to_string();
            assert!(e.contains("not representable"), "{e}");
        }
        let e = Quota::new(1e-11, None).unwrap_err().to_string();
        assert!(e.starts_with("rate 1e-11 is too small"), "{e}");
        assert_eq!(
            Quota::new(0.0, None).unwrap_err().to_string(),
            "rate must be > 0.0, got 0.0"
        );
        assert_eq!(
            Quota::new(f64::NAN, None).unwrap_err().to_string(),
            "rate must be a finite number, got nan"
        );
        assert_eq!(
            Quota::new(1.0, Some(0.5)).unwrap_err().to_string(),
            "burst must be >= 1.0, got 0.5"
        );
        let e = Quota::new(1e-6, Some(1e9)).unwrap_err().to_string();
        assert!(e.contains("burst / rate must be at most"), "{e}");
        let e = Quota::new(1e9, Some(1.5)).unwrap_err().to_string();
        assert!(e.contains("rounds down to 1 ns"), "{e}");
        // A fractional burst is fine when the interval is long enough.
        assert_eq!(
            Quota::new(1e3, Some(1.5)).unwrap().tolerance_ns(),
            1_500_000
        );
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
        // L2: at a's slot, try_acquire cannot take what b holds.
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
        // L1: the waiter's slot has come, nobody after it went through: it is given back.
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
