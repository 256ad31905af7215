//! `note_fork`: every primitive starts fresh in a forked child, and what was in flight in the
//! parent cannot disturb the child's state.
//!
//! This is its own test binary (its own process) because `note_fork` is process-wide: it would
//! renew the objects of tests running in parallel. One test function, for the same reason.

use riprap_core::bulkhead::{Claim, Ending, Entry, Rejection, Request};
use riprap_core::{
    AdaptiveBackoff, Admission, BackoffConfig, Breaker, BreakerConfig, Bulkhead, BulkheadConfig,
    Decision, Key, KeyedRateLimiter, Outcome, Quota, RateLimiter, Reservation, RetryBudget, State,
    note_fork,
};

const S: u64 = 1_000_000_000;

#[test]
#[allow(clippy::too_many_lines)] // one function: `note_fork` is process-wide (see above)
fn every_primitive_starts_fresh_after_note_fork() {
    // --- used in the "parent" ---
    let breaker = Breaker::new(BreakerConfig {
        failure_threshold: 2,
        ..BreakerConfig::default()
    })
    .unwrap();
    let Admission::Admit { permit: before, .. } = breaker.acquire(0) else {
        panic!("a new breaker admits")
    };
    for _ in 0..2 {
        let Admission::Admit { permit, .. } = breaker.acquire(0) else {
            panic!()
        };
        breaker.record(0, permit, Outcome::Failure);
    }
    assert_eq!(breaker.stats(0).0.state, State::Open);

    let limiter = RateLimiter::new(Quota::new(1.0, Some(1.0)).unwrap(), 0);
    assert_eq!(limiter.try_acquire(1, 0).unwrap(), Decision::Admit);
    let Reservation::Queued {
        ticket: parent_ticket,
        ..
    } = limiter.reserve(1, 0, None).unwrap()
    else {
        panic!("the bucket is empty, so this queues")
    };

    let keyed = KeyedRateLimiter::new(Quota::new(1.0, Some(1.0)).unwrap(), 100, None, 0).unwrap();
    assert_eq!(
        keyed.try_acquire(Key::Int(1), 1, 0).unwrap(),
        Decision::Admit
    );
    let Reservation::Queued {
        ticket: keyed_ticket,
        ..
    } = keyed.reserve(Key::Int(1), 1, 0, None).unwrap()
    else {
        panic!()
    };

    let budget = RetryBudget::new(0.0, 0.0, 10.0).unwrap();
    budget.deposit(0);
    assert!(!budget.try_withdraw(0));

    let adaptive = AdaptiveBackoff::new(BackoffConfig::default(), Some(1)).unwrap();
    adaptive.record("op", false);

    let bulkhead = Bulkhead::new(BulkheadConfig {
        max_concurrent_calls: 1,
        ..BulkheadConfig::default()
    })
    .unwrap();
    let held_across_fork = bulkhead.try_acquire(|| 0).unwrap();
    let Entry::Queued {
        ticket: bulkhead_ticket,
        ..
    } = bulkhead.acquire(0, Request::default()).0
    else {
        panic!("the only slot is taken, so this queues")
    };

    // --- the "child" ---
    note_fork();

    // The breaker is closed, with nothing counted; a call admitted before the fork moves
    // nothing when it ends in the child (it is counted in the lifetime totals only).
    let (stats, _) = breaker.stats(0);
    assert_eq!(stats.state, State::Closed);
    assert_eq!(stats.totals.failures, 0);
    assert_eq!(breaker.record(0, before, Outcome::Failure), None);
    assert_eq!(breaker.stats(0).0.consecutive_failures, 0);
    assert_eq!(breaker.stats(0).0.totals.failures, 1);
    for _ in 0..2 {
        let Admission::Admit { permit, .. } = breaker.acquire(0) else {
            panic!("closed in the child")
        };
        breaker.record(0, permit, Outcome::Failure);
    }
    assert_eq!(breaker.stats(0).0.state, State::Open);

    // The bucket is full again, with no counts and no ledger; the parent's ticket is unknown
    // here and new tickets never reuse its number.
    assert_eq!(limiter.stats().admitted, 0);
    assert_eq!(limiter.queued(), 0);
    assert_eq!(limiter.remaining(parent_ticket, 0), 0);
    assert_eq!(limiter.try_acquire(1, 0).unwrap(), Decision::Admit);
    let Reservation::Queued { ticket, wait } = limiter.reserve(1, 0, None).unwrap() else {
        panic!()
    };
    assert!(ticket > parent_ticket);
    assert_eq!(wait, S);
    limiter.complete(parent_ticket);
    assert_eq!(limiter.stats().waited, 0);

    assert_eq!(keyed.len(), 0);
    assert_eq!(keyed.stats().limiter.admitted, 0);
    assert_eq!(
        keyed.try_acquire(Key::Int(1), 1, 0).unwrap(),
        Decision::Admit
    );
    let Reservation::Queued { ticket, .. } = keyed.reserve(Key::Int(1), 1, 0, None).unwrap() else {
        panic!()
    };
    assert!(ticket > keyed_ticket);

    assert_eq!(budget.stats(0).total_deposits, 0);
    assert_eq!(adaptive.operations(), 0);

    // The bulkhead is empty: the slot held across the fork gives nothing back here (it was
    // never taken in this process), the parent's waiter is unknown, new tickets go on.
    let (stats, _) = bulkhead.stats(0);
    assert_eq!((stats.active, stats.queued, stats.admitted), (0, 0, 0));
    let mine = bulkhead.try_acquire(|| 0).unwrap();
    assert!(
        bulkhead
            .release(held_across_fork, 0, Ending::Success)
            .is_empty()
    );
    assert_eq!(bulkhead.active(), 1);
    assert_eq!(
        bulkhead.claim(bulkhead_ticket, 0).0,
        Claim::Rejected(Rejection::Gone)
    );
    let Entry::Queued { ticket, .. } = bulkhead.acquire(0, Request::default()).0 else {
        panic!()
    };
    assert!(ticket > bulkhead_ticket);
    assert_eq!(bulkhead.release(mine, 0, Ending::Success), vec![ticket]);

    // A second fork renews again (a grandchild), and objects made after a fork are left alone.
    let made_in_child = RateLimiter::new(Quota::new(1.0, Some(1.0)).unwrap(), 0);
    assert_eq!(made_in_child.try_acquire(1, 0).unwrap(), Decision::Admit);
    assert!(matches!(
        made_in_child.try_acquire(1, 0).unwrap(),
        Decision::NotUntil { .. }
    ));
    note_fork();
    assert_eq!(breaker.stats(0).0.state, State::Closed);
    assert_eq!(made_in_child.try_acquire(1, 0).unwrap(), Decision::Admit);
    assert_eq!(keyed.len(), 0);
}
