//! Property and stress tests for the circuit breaker: the invariants hold after every operation
//! of a random sequence, trial calls never exceed the half-open limit (also under real threads),
//! and the breaker cannot get stuck in HALF_OPEN.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use riprap_core::{
    Admission, Breaker, BreakerConfig, BreakerStats, Outcome, Permit, State, Transition,
};

const S: u64 = 1_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Begin,
    End(usize, Outcome),
    Release(usize),
    Advance(u64),
    ForceOpen,
    Reset,
    Stats,
}

fn op() -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Failure),
        Just(Outcome::Ignored)
    ];
    prop_oneof![
        6 => Just(Op::Begin),
        6 => (any::<usize>(), outcome).prop_map(|(i, o)| Op::End(i, o)),
        1 => any::<usize>().prop_map(Op::Release),
        3 => prop_oneof![0..2 * S, 0..200 * S, Just(u64::MAX / 4)].prop_map(Op::Advance),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Reset),
        2 => Just(Op::Stats),
    ]
}

prop_compose! {
    fn config()(
        failure_threshold in 1..6u64,
        timeout in prop_oneof![Just(1e-9), 0.5..100.0f64],
        success_threshold in 1..4u64,
        monitoring_window in prop_oneof![Just(1e-9), 1.0..600.0f64],
        failure_rate_threshold in 0.0..=1.0f64,
        minimum_calls in 1..8u64,
        half_open_max_calls in 1..4u64,
        slow_call_duration in prop_oneof![Just(None), (0.1..5.0f64).prop_map(Some)],
        slow_call_rate_threshold in 0.01..=1.0f64,
    ) -> BreakerConfig {
        BreakerConfig {
            failure_threshold, timeout, success_threshold, monitoring_window,
            failure_rate_threshold, minimum_calls, half_open_max_calls, slow_call_duration,
            slow_call_rate_threshold,
        }
    }
}

fn check(b: &Breaker, st: &BreakerStats, open_permits: usize) {
    let c = b.config();
    assert!(st.half_open_in_flight <= c.half_open_max_calls);
    assert!(st.half_open_in_flight <= open_permits as u64);
    let rate = st.window.failure_rate();
    assert!((0.0..=1.0).contains(&rate));
    assert!((0.0..=1.0).contains(&st.window.slow_rate()));
    assert!(st.window.slow <= st.window.calls());
    // OPEN implies opened_at; only OPEN has one (ahawkins/breaker#7: OPEN with none never
    // half-opened).
    assert_eq!(st.state == State::Open, st.opened_at.is_some());
    assert_eq!(st.state == State::Closed, st.open_since.is_none());
    if st.state != State::HalfOpen {
        assert_eq!((st.half_open_in_flight, st.half_open_successes), (0, 0));
    }
    assert!(st.retry_after <= secs(c.timeout));
}

fn secs(s: f64) -> u64 {
    riprap_core::secs_to_nanos(s).max(1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn invariants_hold_after_every_operation(cfg in config(), ops in prop::collection::vec(op(), 1..200)) {
        let b = Breaker::new(cfg).unwrap();
        let mut now = 1_000 * S;
        let mut permits: Vec<Permit> = Vec::new();
        let mut last = State::Closed;
        for op in ops {
            let transition: Option<Transition> = match op {
                Op::Begin => match b.acquire(now) {
                    Admission::Admit { permit, transition } => {
                        permits.push(permit);
                        transition
                    }
                    Admission::Reject { .. } => None,
                },
                Op::End(i, o) if !permits.is_empty() => {
                    let p = permits.swap_remove(i % permits.len());
                    b.record(now, p, o)
                }
                Op::Release(i) if !permits.is_empty() => {
                    b.release(permits.swap_remove(i % permits.len()));
                    None
                }
                Op::Advance(dt) => {
                    now = now.saturating_add(dt);
                    None
                }
                Op::ForceOpen => b.force_open(now),
                Op::Reset => b.reset(),
                Op::Stats | Op::End(..) | Op::Release(_) => b.stats(now).1,
            };
            // Transitions chain: each starts where the previous one ended.
            if let Some(t) = transition {
                prop_assert_eq!(t.from, last);
                prop_assert_ne!(t.from, t.to);
                last = t.to;
            }
            let (st, t) = b.stats(now);
            if let Some(t) = t {
                prop_assert_eq!(t.from, last);
                last = t.to;
            }
            prop_assert_eq!(st.state, last);
            check(&b, &st, permits.len());
        }
        // Liveness (resilience4j/resilience4j#935, App-vNext/Polly#1979): once every permit is
        // back, a half-open breaker admits a trial call.
        for p in permits.drain(..) {
            b.release(p);
        }
        if b.state(now).0 == State::HalfOpen {
            let admitted = matches!(b.acquire(now), Admission::Admit { .. });
            prop_assert!(admitted);
        }
    }

    #[test]
    fn nothing_older_than_the_window_is_counted(
        window in 1.0..100.0f64,
        steps in prop::collection::vec((0..10 * S, any::<bool>()), 1..300),
    ) {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: u64::MAX,
            minimum_calls: u64::MAX,
            monitoring_window: window,
            ..BreakerConfig::default()
        }).unwrap();
        let span = secs(window);
        let width = b.bucket_width();
        let mut now = 0u64;
        let mut ends: Vec<u64> = Vec::new();
        for (dt, fail) in steps {
            now += dt;
            let Admission::Admit { permit, .. } = b.acquire(now) else { unreachable!() };
            b.record(now, permit, if fail { Outcome::Failure } else { Outcome::Success });
            ends.push(now);
            let calls = b.stats(now).0.window.calls();
            let younger_than_span = ends.iter().filter(|&&t| now - t < span).count() as u64;
            let surely_in = ends.iter().filter(|&&t| now - t < span - width).count() as u64;
            prop_assert!(calls <= younger_than_span, "{} > {}", calls, younger_than_span);
            prop_assert!(calls >= surely_in, "{} < {}", calls, surely_in);
        }
    }
}

/// resilience4j/resilience4j#1432 and App-vNext/Polly#216 in Rust: 16 threads race for the
/// half-open slots at the same instant; at most `half_open_max_calls` trial calls run at once,
/// and OPEN → HALF_OPEN happens exactly once.
#[test]
fn threads_racing_at_the_half_open_instant_respect_the_gate() {
    for _ in 0..50 {
        let b = Arc::new(
            Breaker::new(BreakerConfig {
                half_open_max_calls: 3,
                success_threshold: 1_000,
                ..BreakerConfig::default()
            })
            .unwrap(),
        );
        b.force_open(0);
        let running = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let half_opens = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (b, running, peak, half_opens, barrier) = (
                    Arc::clone(&b),
                    Arc::clone(&running),
                    Arc::clone(&peak),
                    Arc::clone(&half_opens),
                    Arc::clone(&barrier),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..200 {
                        if let Admission::Admit { permit, transition } = b.acquire(60 * S) {
                            if transition.is_some() {
                                half_opens.fetch_add(1, Ordering::SeqCst);
                            }
                            let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            for _ in 0..2_000 {
                                std::hint::spin_loop();
                            }
                            std::thread::yield_now();
                            running.fetch_sub(1, Ordering::SeqCst);
                            b.record(60 * S, permit, Outcome::Success);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(half_opens.load(Ordering::SeqCst), 1);
        assert_eq!(b.stats(60 * S).0.half_open_in_flight, 0);
    }
}

/// Counters stay exact under contention on the closed fast path.
#[test]
fn closed_path_counts_exactly_under_threads() {
    let b = Arc::new(
        Breaker::new(BreakerConfig {
            failure_threshold: u64::MAX,
            minimum_calls: u64::MAX,
            ..BreakerConfig::default()
        })
        .unwrap(),
    );
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                for k in 0..20_000u64 {
                    let p = b.try_acquire_closed(0).unwrap();
                    let o = if (i + k) % 4 == 0 {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    b.record(k, p, o);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = b.stats(20_000).0;
    assert_eq!(st.totals.calls(), 160_000);
    assert_eq!(st.totals.failures, 40_000);
    assert_eq!(st.window.calls(), 160_000);
}
