//! Properties of the bulkhead: under random
//! sequences of arrivals, releases, cancellations (including of granted, uncollected waiters),
//! timeouts and clock advances, the counts stay in bounds, waiters are served first come first
//! served, nothing leaks, and the adaptive limit stays in `[1, max]`. Plus a thread stress test
//! that proves the lock-free paths and the handovers never over-admit.

use std::collections::VecDeque;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use riprap_core::bulkhead::{Claim, Ending, Entry, Rejection, Request, Slot};
use riprap_core::{Bulkhead, BulkheadConfig, Isolation};

const MS: u64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
    /// A new caller (lock-free first, then the slow path).
    Arrive {
        reentrant: bool,
        deadline: Option<u64>,
    },
    /// A running call ends.
    End {
        index: usize,
        ending: Ending,
        dt: u64,
    },
    /// A running call times out (the slot stays until it ends).
    Timeout { index: usize },
    /// A waiter looks at its ticket (it may have been granted or expired).
    Claim { index: usize },
    /// A waiter gives up (even if it was granted and has not collected yet).
    Cancel { index: usize },
    /// Time passes.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let ending = prop_oneof![
        4 => Just(Ending::Success),
        2 => Just(Ending::Failure),
        1 => Just(Ending::Ignored),
        1 => Just(Ending::Cancelled),
    ];
    prop_oneof![
        5 => (any::<bool>(), prop::option::of(0..500 * MS))
            .prop_map(|(r, deadline)| Op::Arrive { reentrant: r && deadline.is_none(), deadline }),
        5 => (any::<usize>(), ending, 0..300 * MS)
            .prop_map(|(index, ending, dt)| Op::End { index, ending, dt }),
        1 => any::<usize>().prop_map(|index| Op::Timeout { index }),
        3 => any::<usize>().prop_map(|index| Op::Claim { index }),
        2 => any::<usize>().prop_map(|index| Op::Cancel { index }),
        2 => (0..400 * MS).prop_map(Op::Advance),
    ]
}

fn config() -> impl Strategy<Value = BulkheadConfig> {
    (
        1u64..6,
        0u64..6,
        prop_oneof![
            Just(Isolation::Strict),
            Just(Isolation::Shared),
            Just(Isolation::Adaptive)
        ],
        prop::option::of(0u64..5),
    )
        .prop_map(|(max, queue, isolation, wait)| BulkheadConfig {
            max_concurrent_calls: max,
            max_queue_size: queue,
            isolation_level: isolation,
            timeout: 1.0,
            max_wait: wait.map(|w| w as f64 * 0.1),
            slow_call_duration: None,
        })
}

/// The caller side: running calls, and waiting tickets in arrival order (some of them may have
/// been granted or expired already: a waiter only learns it when it claims).
#[derive(Default)]
struct World {
    now: u64,
    running: Vec<Slot>,
    waiting: VecDeque<u64>,
    /// Every ticket the bulkhead asked to wake, in order.
    woken: Vec<u64>,
}

impl World {
    fn woke(&mut self, woken: &[u64]) {
        self.woken.extend_from_slice(woken);
    }

    /// The 1-based position of `ticket` among the waiters not woken yet.
    fn position(&self, ticket: u64) -> u64 {
        let live = self.waiting.iter().filter(|t| !self.woken.contains(t));
        live.take_while(|&&t| t != ticket).count() as u64 + 1
    }
}

fn check(b: &Bulkhead, w: &mut World, max_queue: u64) -> Result<(), TestCaseError> {
    let (stats, woken) = b.stats(w.now);
    w.woke(&woken);
    prop_assert!(
        stats.active <= b.capacity(),
        "active {} > {}",
        stats.active,
        b.capacity()
    );
    prop_assert!(stats.queued <= max_queue);
    prop_assert!((1..=b.capacity()).contains(&stats.limit));
    if !b.is_adaptive() {
        prop_assert_eq!(stats.limit, b.capacity());
    }
    prop_assert_eq!(stats.active, w.running.len() as u64 + stats.granted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn counts_stay_in_bounds_fifo_holds_and_nothing_leaks(
        cfg in config(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let max_queue = cfg.max_queue_size;
        let b = Bulkhead::new(cfg).unwrap();
        let mut w = World::default();
        for op in ops {
            match op {
                Op::Arrive { reentrant, deadline } => {
                    if !reentrant && deadline.is_none()
                        && let Some(slot) = b.try_acquire(|| w.now)
                    {
                        w.running.push(slot);
                        continue;
                    }
                    let request = Request { reentrant, deadline_left: deadline };
                    let (entry, woken) = b.acquire(w.now, request);
                    w.woke(&woken);
                    match entry {
                        Entry::Admit(slot) => w.running.push(slot),
                        Entry::Queued { ticket, position, .. } => {
                            prop_assert!(!reentrant);
                            w.waiting.push_back(ticket);
                            prop_assert_eq!(position, w.position(ticket));
                        }
                        Entry::Reject(_) => {}
                    }
                }
                Op::End { index, ending, dt } => {
                    if w.running.is_empty() { continue; }
                    w.now += dt;
                    let slot = w.running.swap_remove(index % w.running.len());
                    let woken = match b.try_release(slot) {
                        Ok(()) => Vec::new(),
                        Err(slot) => b.release(slot, w.now, ending),
                    };
                    w.woke(&woken);
                }
                Op::Timeout { index } => {
                    if w.running.is_empty() { continue; }
                    let i = index % w.running.len();
                    b.record_timeout(&mut w.running[i]);
                }
                Op::Claim { index } => {
                    if w.waiting.is_empty() { continue; }
                    let t = w.waiting[index % w.waiting.len()];
                    let (claim, woken) = b.claim(t, w.now);
                    w.woke(&woken);
                    match claim {
                        Claim::Waiting { position, .. } => {
                            prop_assert!(!w.woken.contains(&t));
                            prop_assert_eq!(position, w.position(t));
                        }
                        Claim::Granted(slot) => {
                            prop_assert!(w.woken.contains(&t), "granted without a wake-up");
                            w.waiting.retain(|&x| x != t);
                            w.running.push(slot);
                        }
                        Claim::Rejected(r) => {
                            prop_assert_eq!(r, Rejection::MaxWait);
                            w.waiting.retain(|&x| x != t);
                        }
                    }
                }
                Op::Cancel { index } => {
                    if w.waiting.is_empty() { continue; }
                    let t = w.waiting.remove(index % w.waiting.len()).unwrap();
                    let woken = b.cancel(t, w.now);
                    w.woke(&woken);
                }
                Op::Advance(dt) => w.now += dt,
            }
            check(&b, &mut w, max_queue)?;
            // Nobody waits while a slot is free.
            let (stats, woken) = b.stats(w.now);
            w.woke(&woken);
            if stats.queued > 0 {
                prop_assert!(stats.active >= stats.limit, "{stats:?}");
            }
        }
        // FIFO: grants and expiries both take the first live waiter, so wake-ups go out in
        // arrival (ticket) order.
        prop_assert!(w.woken.windows(2).all(|p| p[0] < p[1]), "{:?}", w.woken);
        // Drain: every waiter gives up (a granted one passes its slot on), every call ends.
        while let Some(t) = w.waiting.pop_front() {
            let woken = b.cancel(t, w.now);
            w.woke(&woken);
        }
        while let Some(slot) = w.running.pop() {
            let woken = b.release(slot, w.now, Ending::Success);
            prop_assert!(woken.is_empty());
        }
        let (stats, _) = b.stats(w.now);
        prop_assert_eq!((stats.active, stats.queued, stats.granted), (0, 0, 0));
        prop_assert_eq!(
            stats.total_calls(),
            stats.admitted + stats.rejected.total() + stats.cancelled_waits
        );
    }

    #[test]
    fn the_adaptive_limit_never_leaves_its_range_and_only_falls_on_trouble(
        max in 1u64..20,
        endings in prop::collection::vec((0u8..6, 1usize..25), 1..200),
    ) {
        let b = Bulkhead::new(BulkheadConfig {
            max_concurrent_calls: max,
            isolation_level: Isolation::Adaptive,
            timeout: 1.0,
            ..BulkheadConfig::default()
        }).unwrap();
        let mut now = 0;
        for (kind, width) in endings {
            let before = b.current_limit();
            let slots: Vec<Slot> = (0..width).filter_map(|_| b.try_acquire(|| now)).collect();
            prop_assert!(slots.len() as u64 <= before);
            let mut troubled = false;
            for mut slot in slots {
                let (ending, dt) = match kind {
                    0 => (Ending::Failure, MS),
                    1 => { b.record_timeout(&mut slot); troubled = true; (Ending::Success, MS) }
                    2 => (Ending::Success, 600 * MS), // slow: >= timeout / 2
                    3 => (Ending::Cancelled, MS),
                    4 => (Ending::Ignored, MS),
                    _ => (Ending::Success, MS),
                };
                troubled |= matches!(kind, 0 | 2);
                now += dt;
                let _ = b.release(slot, now, ending);
                let limit = b.current_limit();
                prop_assert!((1..=max).contains(&limit));
            }
            let after = b.current_limit();
            if troubled || kind == 3 || kind == 4 {
                prop_assert!(after <= before, "{kind}: {before} -> {after}");
            }
            if !troubled {
                prop_assert!(after >= before, "{kind}: {before} -> {after}");
            }
        }
    }
}

/// 8 threads × 10,000 calls through a bulkhead of 3 with a queue of 4: waiters spin on their
/// ticket. The observed concurrency never exceeds 3, every call is admitted or rejected, and at
/// the end no slot is held and nobody waits.
#[test]
fn threads_never_over_admit_and_everything_comes_back() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 10_000;
    let b = Bulkhead::new(BulkheadConfig {
        max_concurrent_calls: 3,
        max_queue_size: 4,
        ..BulkheadConfig::default()
    })
    .unwrap();
    let running = AtomicU64::new(0);
    let peak = AtomicU64::new(0);
    let (done, rejected, waited) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let now = AtomicU64::new(0);
    let barrier = Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..CALLS {
                    let t = now.fetch_add(1, Ordering::Relaxed);
                    let slot = match b.try_acquire(|| t) {
                        Some(slot) => slot,
                        None => match b.acquire(t, Request::default()).0 {
                            Entry::Admit(slot) => slot,
                            Entry::Reject(_) => {
                                rejected.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Entry::Queued { ticket, .. } => loop {
                                if let Claim::Granted(slot) = b.claim(ticket, t).0 {
                                    waited.fetch_add(1, Ordering::Relaxed);
                                    break slot;
                                }
                                std::thread::yield_now();
                            },
                        },
                    };
                    let inside = running.fetch_add(1, Ordering::AcqRel) + 1;
                    peak.fetch_max(inside, Ordering::AcqRel);
                    // Hold the slot across a yield, so the other threads find the bulkhead full.
                    std::thread::yield_now();
                    running.fetch_sub(1, Ordering::AcqRel);
                    if let Err(slot) = b.try_release(slot) {
                        let _ = b.release(slot, now.load(Ordering::Relaxed), Ending::Success);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert!(peak.load(Ordering::Relaxed) <= 3);
    assert_eq!(
        done.load(Ordering::Relaxed) + rejected.load(Ordering::Relaxed),
        THREADS * CALLS
    );
    let (stats, _) = b.stats(0);
    assert_eq!((stats.active, stats.queued, stats.granted), (0, 0, 0));
    assert_eq!(stats.admitted, done.load(Ordering::Relaxed));
    assert_eq!(stats.rejected.total(), rejected.load(Ordering::Relaxed));
    // Contention really happened: callers queued and were handed slots.
    assert!(waited.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.waited, waited.load(Ordering::Relaxed));
}
