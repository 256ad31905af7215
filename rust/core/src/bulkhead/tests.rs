#![allow(clippy::many_single_char_names)] // a, b, c... are waiters in line

use super::*;

const S: u64 = 1_000_000_000;

fn bulkhead(max: u64, queue: u64, isolation: Isolation, max_wait: Option<f64>) -> Bulkhead {
    Bulkhead::new(BulkheadConfig {
        max_concurrent_calls: max,
        max_queue_size: queue,
        isolation_level: isolation,
        max_wait,
        ..BulkheadConfig::default()
    })
    .unwrap()
}

fn queue_one(b: &Bulkhead, now: u64) -> u64 {
    match b.acquire(now, Request::default()).0 {
        Entry::Queued { ticket, .. } => ticket,
        e => panic!("expected to queue, got {e:?}"),
    }
}

fn admit(b: &Bulkhead, now: u64) -> Slot {
    match b.acquire(now, Request::default()).0 {
        Entry::Admit(slot) => slot,
        e => panic!("expected a slot, got {e:?}"),
    }
}

fn granted(b: &Bulkhead, ticket: u64, now: u64) -> Slot {
    match b.claim(ticket, now).0 {
        Claim::Granted(slot) => slot,
        c => panic!("expected a grant, got {c:?}"),
    }
}

#[test]
fn strict_admits_up_to_the_limit_then_queues_then_rejects() {
    let b = bulkhead(2, 1, Isolation::Strict, None);
    let first = b
        .try_acquire(|| unreachable!("room to spare: no clock read"))
        .unwrap();
    assert_eq!(first.start(), None);
    let second = b.try_acquire(|| 7).unwrap();
    assert_eq!(
        second.start(),
        Some(7),
        "the call that fills the bulkhead is measured"
    );
    assert!(b.try_acquire(|| 0).is_none());
    let ticket = queue_one(&b, 0);
    assert_eq!(
        b.acquire(0, Request::default()).0,
        Entry::Reject(Rejection::QueueFull)
    );
    // The lock-free release refuses while someone waits; the slow one hands the slot over.
    let Err(first) = b.try_release(first) else {
        panic!("a waiter is queued: the slot goes to it")
    };
    assert_eq!(b.release(first, 10, Ending::Success), vec![ticket]);
    let third = granted(&b, ticket, 10);
    assert_eq!(third.start(), Some(10));
    let (stats, _) = b.stats(10);
    assert_eq!((stats.active, stats.queued, stats.granted), (2, 0, 0));
    assert_eq!(stats.admitted, 3);
    assert_eq!(stats.waited, 1);
    assert_eq!(stats.rejected.queue_full, 1);
    assert_eq!(stats.total_calls(), 4);
    assert!(b.release(second, 13, Ending::Success).is_empty());
    assert_eq!(b.stats(13).0.average_duration, Some(6));
    assert!(b.release(third, 20, Ending::Success).is_empty());
    assert_eq!(b.active(), 0);
    // Room again: lock-free, unmeasured.
    let s = b.try_acquire(|| unreachable!()).unwrap();
    assert_eq!(b.try_release(s), Ok(()));
}

#[test]
fn shared_admits_a_fifth_more() {
    let b = bulkhead(10, 0, Isolation::Shared, None);
    let slots: Vec<Slot> = (0..12).map(|_| b.try_acquire(|| 0).unwrap()).collect();
    assert!(b.try_acquire(|| 0).is_none());
    assert_eq!(
        b.acquire(0, Request::default()).0,
        Entry::Reject(Rejection::QueueFull)
    );
    assert_eq!(b.current_limit(), 12);
    for s in slots {
        let _ = b.release(s, 0, Ending::Success);
    }
    assert_eq!(b.active(), 0);
}

#[test]
fn waiters_are_served_first_come_first_served_and_new_arrivals_queue_behind_them() {
    let b = bulkhead(1, 10, Isolation::Strict, None);
    let held = admit(&b, 0);
    let tickets: Vec<u64> = (0..3).map(|_| queue_one(&b, 0)).collect();
    assert_eq!(b.waiting_tickets(), tickets);
    assert_eq!(b.release(held, 1, Ending::Success), vec![tickets[0]]);
    // The slot belongs to the first waiter even before it collects it: a newcomer queues.
    assert!(b.try_acquire(|| 0).is_none());
    let late = queue_one(&b, 1);
    let s0 = granted(&b, tickets[0], 1);
    assert_eq!(b.release(s0, 2, Ending::Failure), vec![tickets[1]]);
    let s1 = granted(&b, tickets[1], 2);
    assert_eq!(b.release(s1, 3, Ending::Success), vec![tickets[2]]);
    let s2 = granted(&b, tickets[2], 3);
    assert_eq!(b.release(s2, 4, Ending::Success), vec![late]);
    let s3 = granted(&b, late, 4);
    assert!(b.release(s3, 5, Ending::Success).is_empty());
    let (stats, _) = b.stats(5);
    assert_eq!((stats.active, stats.queued, stats.waited), (0, 0, 4));
}

#[test]
fn a_waiter_cancelled_after_its_grant_passes_the_slot_on() {
    let b = bulkhead(1, 10, Isolation::Strict, None);
    let held = admit(&b, 0);
    let a = queue_one(&b, 0);
    let c = queue_one(&b, 0);
    let d = queue_one(&b, 0);
    // c gives up while waiting: simply leaves the queue.
    assert!(b.cancel(c, 0).is_empty());
    assert_eq!(b.waiting_tickets(), vec![a, d]);
    // a is granted, then cancelled in the same tick before collecting: d gets the slot.
    assert_eq!(b.release(held, 1, Ending::Success), vec![a]);
    assert_eq!(b.cancel(a, 1), vec![d]);
    assert_eq!(b.claim(a, 1).0, Claim::Rejected(Rejection::Gone));
    let sd = granted(&b, d, 1);
    // A second cancel, or a cancel of a collected ticket, changes nothing.
    assert!(b.cancel(a, 1).is_empty());
    assert!(b.cancel(d, 1).is_empty());
    assert_eq!(b.active(), 1);
    assert!(b.release(sd, 2, Ending::Success).is_empty());
    let (stats, _) = b.stats(2);
    assert_eq!((stats.active, stats.queued, stats.granted), (0, 0, 0));
    assert_eq!(stats.cancelled_waits, 2);
    assert_eq!(stats.total_calls(), 4);
    // The last grant cancelled with nobody behind: the slot is freed.
    let held = admit(&b, 3);
    let e = queue_one(&b, 3);
    assert_eq!(b.release(held, 4, Ending::Success), vec![e]);
    assert!(b.cancel(e, 4).is_empty());
    assert_eq!(b.active(), 0);
    assert!(b.try_acquire(|| 0).is_some());
}

#[test]
fn max_wait_rejects_on_the_bulkheads_clock() {
    let b = bulkhead(1, 10, Isolation::Strict, Some(2.0));
    let held = admit(&b, 0);
    let a = queue_one(&b, 0);
    let c = queue_one(&b, S);
    assert!(matches!(
        b.claim(a, 2 * S - 1).0,
        Claim::Waiting { position: 1, expires_at: Some(t) } if t == 2 * S
    ));
    // At 2 s, a's wait ran out; claiming c finds it and asks to wake a.
    assert_eq!(
        b.claim(c, 2 * S),
        (
            Claim::Waiting {
                position: 1,
                expires_at: Some(3 * S)
            },
            vec![a]
        )
    );
    assert_eq!(b.claim(a, 2 * S).0, Claim::Rejected(Rejection::MaxWait));
    // A slot freed after c's expiry skips it.
    assert_eq!(b.release(held, 3 * S, Ending::Success), vec![c]);
    assert_eq!(b.claim(c, 3 * S).0, Claim::Rejected(Rejection::MaxWait));
    let (stats, _) = b.stats(3 * S);
    assert_eq!(stats.rejected.max_wait, 2);
    assert_eq!((stats.active, stats.queued), (0, 0));
    // max_wait = 0: whoever must wait is rejected at the next look.
    let z = bulkhead(1, 10, Isolation::Strict, Some(0.0));
    let _held = admit(&z, 0);
    let t = queue_one(&z, 0);
    assert_eq!(z.claim(t, 0).0, Claim::Rejected(Rejection::MaxWait));
}

#[test]
fn reentrant_callers_are_admitted_with_room_and_rejected_instead_of_queued() {
    let b = bulkhead(1, 10, Isolation::Strict, None);
    let reentrant = Request {
        reentrant: true,
        deadline_left: None,
    };
    let Entry::Admit(_held) = b.acquire(0, reentrant).0 else {
        panic!("a free slot admits")
    };
    assert_eq!(
        b.acquire(0, reentrant).0,
        Entry::Reject(Rejection::Reentrant)
    );
    let (stats, _) = b.stats(0);
    assert_eq!((stats.rejected.reentrant, stats.queued), (1, 0));
}

#[test]
fn a_caller_whose_deadline_comes_before_its_turn_is_rejected_at_once() {
    let b = bulkhead(2, 10, Isolation::Strict, None);
    let with = |left| Request {
        reentrant: false,
        deadline_left: Some(left),
    };
    let _s1 = b.try_acquire(|| 0).unwrap();
    let s2 = b.try_acquire(|| 0).unwrap();
    // No estimate yet: only a deadline already passed is refused.
    assert_eq!(
        b.acquire(0, with(0)).0,
        Entry::Reject(Rejection::Deadline {
            left: 0,
            expected_wait: None
        })
    );
    let t = queue_one(&b, 0);
    assert!(b.cancel(t, 0).is_empty());
    // s2 filled the bulkhead, so it is measured: it held its slot 4 s.
    let _ = b.release(s2, 4 * S, Ending::Success);
    let _s2 = b.try_acquire(|| 4 * S).unwrap();
    assert_eq!(b.stats(4 * S).0.average_duration, Some(4 * S));
    // Position 1 of 2 slots: expected 2 s; position 2: 4 s.
    assert!(matches!(
        b.acquire(4 * S, with(2 * S)).0,
        Entry::Queued { position: 1, .. }
    ));
    assert_eq!(
        b.acquire(4 * S, with(4 * S - 1)).0,
        Entry::Reject(Rejection::Deadline {
            left: 4 * S - 1,
            expected_wait: Some(4 * S)
        })
    );
    assert!(matches!(
        b.acquire(4 * S, with(4 * S)).0,
        Entry::Queued { position: 2, .. }
    ));
    assert_eq!(b.stats(4 * S).0.rejected.deadline, 2);
}

#[test]
fn adaptive_halves_on_trouble_and_climbs_back_only_while_used() {
    let b = Bulkhead::new(BulkheadConfig {
        max_concurrent_calls: 8,
        isolation_level: Isolation::Adaptive,
        timeout: 2.0, // slow: >= 1 s
        ..BulkheadConfig::default()
    })
    .unwrap();
    assert_eq!(b.current_limit(), 8);
    // Four calls in flight fail together: one episode, one halving.
    let slots: Vec<Slot> = (0..4).map(|_| b.try_acquire(|| 0).unwrap()).collect();
    for s in slots {
        let _ = b.release(s, 10, Ending::Failure);
    }
    assert_eq!(b.current_limit(), 4);
    // A slow success is a drop; a timeout is a drop; neither ever raises the limit.
    let s = b.try_acquire(|| 0).unwrap();
    let _ = b.release(s, S, Ending::Success);
    assert_eq!(b.current_limit(), 2);
    let mut s = b.try_acquire(|| S).unwrap();
    b.record_timeout(&mut s);
    assert_eq!(b.current_limit(), 1);
    let _ = b.release(s, 100 * S, Ending::Success);
    assert_eq!(b.current_limit(), 1);
    assert_eq!(b.stats(100 * S).0.timed_out, 1);
    // Cancelled and ignored calls are not samples.
    for ending in [Ending::Cancelled, Ending::Ignored] {
        let s = b.try_acquire(|| 0).unwrap();
        let _ = b.release(s, 10 * S, ending);
        assert_eq!(b.current_limit(), 1);
    }
    // Fast successes with the limit in use climb one step per round.
    let mut limit = 1;
    while limit < 8 {
        for _ in 0..limit {
            let slots: Vec<Slot> = (0..limit).map(|_| b.try_acquire(|| 0).unwrap()).collect();
            for s in slots {
                let _ = b.release(s, 1, Ending::Success);
            }
        }
        assert!(b.current_limit() > limit);
        limit = b.current_limit();
    }
    assert_eq!(limit, 8);
    // One call at a time never uses half of 8: no growth beyond, and none needed.
    for _ in 0..100 {
        let s = b.try_acquire(|| 0).unwrap();
        let _ = b.release(s, 1, Ending::Success);
    }
    assert_eq!(b.current_limit(), 8);
}

#[test]
fn a_limit_that_rises_grants_waiters_and_one_that_falls_holds_them() {
    let b = Bulkhead::new(BulkheadConfig {
        max_concurrent_calls: 4,
        isolation_level: Isolation::Adaptive,
        ..BulkheadConfig::default()
    })
    .unwrap();
    let slots: Vec<Slot> = (0..4).map(|_| b.try_acquire(|| 0).unwrap()).collect();
    let mut slots = slots.into_iter();
    let _ = b.release(slots.next().unwrap(), 0, Ending::Failure); // limit 2, active 3
    let t = queue_one(&b, 0);
    // active 3 > limit 2: freeing one does not grant.
    assert!(
        b.release(slots.next().unwrap(), 0, Ending::Cancelled)
            .is_empty()
    );
    assert_eq!(
        b.claim(t, 0).0,
        Claim::Waiting {
            position: 1,
            expires_at: None
        }
    );
    // active 2 == limit: freeing one now grants.
    assert_eq!(
        b.release(slots.next().unwrap(), 0, Ending::Cancelled),
        vec![t]
    );
    let st = granted(&b, t, 0);
    // Two successes with both slots in use: the limit rises to 3, and a waiter is granted.
    let u = queue_one(&b, 0);
    let v = queue_one(&b, 0);
    assert_eq!(b.release(st, 0, Ending::Success), vec![u]);
    assert_eq!(b.current_limit(), 2);
    let su = granted(&b, u, 0);
    let woken = b.release(su, 0, Ending::Success);
    assert_eq!(b.current_limit(), 3);
    assert_eq!(woken, vec![v]);
    let sv = granted(&b, v, 0);
    // The last of the first four was admitted before the decrease: its success is no sample.
    for s in [sv, slots.next().unwrap()] {
        let _ = b.release(s, 0, Ending::Success);
    }
    assert_eq!(b.current_limit(), 3);
    let (stats, _) = b.stats(0);
    assert_eq!((stats.active, stats.queued, stats.granted), (0, 0, 0));
}

#[test]
fn slots_of_another_bulkhead_are_ignored() {
    let a = bulkhead(1, 0, Isolation::Strict, None);
    let b = bulkhead(1, 0, Isolation::Strict, None);
    let sa = a.try_acquire(|| 0).unwrap();
    assert!(!b.owns(&sa));
    let Err(sa) = b.try_release(sa) else { panic!() };
    assert!(b.release(sa, 0, Ending::Success).is_empty());
    assert_eq!(a.active(), 1);
}
