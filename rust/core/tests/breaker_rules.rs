//! The breaker's rules, one test each, through the public API on explicit nanosecond times:
//! opening on consecutive failures, on the failure rate (strict, after `minimum_calls`) and on
//! the slow-call rate (reached); the half-open gate; late and lost outcomes; reset and
//! force_open; validation messages.

use riprap_core::{
    Admission, Breaker, BreakerConfig, Counts, Outcome, Permit, State, Totals, Transition,
};

const S: u64 = 1_000_000_000;

fn breaker(f: impl FnOnce(&mut BreakerConfig)) -> Breaker {
    let mut c = BreakerConfig::default();
    f(&mut c);
    Breaker::new(c).unwrap()
}

fn admit(b: &Breaker, now: u64) -> Permit {
    match b.acquire(now) {
        Admission::Admit { permit, .. } => permit,
        Admission::Reject { .. } => panic!("rejected at {now}"),
    }
}

fn call(b: &Breaker, now: u64, outcome: Outcome) -> Option<Transition> {
    let p = admit(b, now);
    b.record(now, p, outcome)
}

const OPENED: Option<Transition> = Some(Transition {
    from: State::Closed,
    to: State::Open,
});

#[test]
fn consecutive_failures_open_and_a_success_resets_them() {
    let b = breaker(|c| c.failure_threshold = 3);
    assert_eq!(call(&b, 0, Outcome::Failure), None);
    assert_eq!(call(&b, 0, Outcome::Failure), None);
    assert_eq!(call(&b, 0, Outcome::Success), None);
    assert_eq!(call(&b, 0, Outcome::Failure), None);
    assert_eq!(call(&b, 0, Outcome::Ignored), None); // neither: the run goes on
    assert_eq!(call(&b, 0, Outcome::Failure), None);
    assert_eq!(call(&b, 0, Outcome::Failure), OPENED);
    assert_eq!(
        b.acquire(S),
        Admission::Reject {
            retry_after: 59 * S
        }
    );
}

#[test]
fn failure_rate_needs_minimum_calls_and_is_strict() {
    let b = breaker(|c| {
        c.failure_threshold = 100;
        c.minimum_calls = 4;
    });
    // 2 of 4 = 0.5 does not exceed 0.5.
    for o in [Outcome::Failure, Outcome::Success, Outcome::Failure] {
        assert_eq!(call(&b, 0, o), None); // 2 of 3 > 0.5, but fewer than 4 calls
    }
    assert_eq!(call(&b, 0, Outcome::Success), None);
    assert_eq!(call(&b, 0, Outcome::Failure), OPENED); // 3 of 5
}

#[test]
fn a_success_can_trip_the_rate_once_minimum_calls_is_reached() {
    let b = breaker(|c| {
        c.failure_threshold = 100;
        c.minimum_calls = 3;
    });
    assert_eq!(call(&b, 0, Outcome::Failure), None);
    assert_eq!(call(&b, 0, Outcome::Failure), None);
    assert_eq!(call(&b, 0, Outcome::Success), OPENED); // 2 of 3 > 0.5
}

#[test]
fn slow_call_rate_reaches_its_threshold() {
    let b = breaker(|c| {
        c.minimum_calls = 2;
        c.slow_call_duration = Some(1.0);
        c.slow_call_rate_threshold = 0.5;
    });
    assert!(b.measures_duration());
    let p = admit(&b, 0);
    assert_eq!(b.record(S - 1, p, Outcome::Success), None); // not slow
    let p = admit(&b, 10 * S);
    assert_eq!(b.record(11 * S, p, Outcome::Success), OPENED); // slow: 1 of 2 = 0.5
}

#[test]
fn half_open_gate_closes_after_successes_and_reopens_on_failure() {
    let b = breaker(|c| {
        c.failure_threshold = 1;
        c.half_open_max_calls = 2;
        c.success_threshold = 2;
        c.timeout = 10.0;
    });
    assert_eq!(call(&b, 0, Outcome::Failure), OPENED);
    assert_eq!(b.acquire(10 * S - 1), Admission::Reject { retry_after: 1 });
    let Admission::Admit {
        permit: p1,
        transition,
    } = b.acquire(10 * S)
    else {
        panic!()
    };
    assert_eq!(
        transition,
        Some(Transition {
            from: State::Open,
            to: State::HalfOpen
        })
    );
    let p2 = admit(&b, 10 * S);
    assert_eq!(b.acquire(10 * S), Admission::Reject { retry_after: 0 });
    assert_eq!(b.record(11 * S, p1, Outcome::Success), None);
    let p3 = admit(&b, 11 * S); // the slot came back
    assert_eq!(
        b.record(11 * S, p2, Outcome::Success),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Closed
        })
    );
    assert_eq!(b.stats(11 * S).0.window, Counts::default()); // cleared on close
    // p3 belongs to the half-open generation: its late failure moves nothing.
    assert_eq!(b.record(12 * S, p3, Outcome::Failure), None);
    assert_eq!(b.state(12 * S).0, State::Closed);
    assert_eq!(b.stats(12 * S).0.totals.failures, 2);
}

#[test]
fn ignored_and_released_trials_give_their_slot_back() {
    // No outcome leaves HALF_OPEN without a free slot (resilience4j/resilience4j#544,
    // resilience4j/resilience4j#935, App-vNext/Polly#1979).
    let b = breaker(|c| {
        c.failure_threshold = 1;
        c.half_open_max_calls = 1;
    });
    call(&b, 0, Outcome::Failure);
    let p = admit(&b, 60 * S);
    assert!(p.is_trial());
    b.record(60 * S, p, Outcome::Ignored);
    let p = admit(&b, 60 * S);
    b.release(p);
    let p = admit(&b, 60 * S);
    assert_eq!(
        b.record(60 * S, p, Outcome::Failure).map(|t| t.to),
        Some(State::Open)
    );
    let st = b.stats(60 * S).0;
    assert_eq!((st.totals.ignored, st.totals.cancelled), (1, 1));
    assert_eq!(st.opened_at, Some(60 * S));
    assert_eq!(st.open_since, Some(0));
}

#[test]
fn lost_trials_are_reclaimed_after_a_timeout() {
    // A trial call that never reports cannot pin HALF_OPEN (resilience4j/resilience4j#935,
    // EtaCassiopeia/zio-openfeature#263).
    let b = breaker(|c| {
        c.failure_threshold = 1;
        c.half_open_max_calls = 2;
        c.timeout = 5.0;
    });
    call(&b, 0, Outcome::Failure);
    let lost1 = admit(&b, 5 * S);
    let lost2 = admit(&b, 6 * S);
    assert_eq!(b.acquire(11 * S - 1), Admission::Reject { retry_after: 0 });
    let fresh = admit(&b, 11 * S);
    assert_eq!(b.stats(11 * S).0.totals.lost_trials, 2);
    assert_eq!(b.stats(11 * S).0.half_open_in_flight, 1);
    // The lost calls report late: counted, but they move nothing.
    assert_eq!(b.record(12 * S, lost1, Outcome::Failure), None);
    b.release(lost2);
    assert_eq!(b.stats(12 * S).0.half_open_in_flight, 1);
    assert_eq!(b.state(12 * S).0, State::HalfOpen);
    b.release(fresh);
    assert_eq!(b.stats(12 * S).0.half_open_in_flight, 0);
}

#[test]
fn late_failures_from_before_the_trip_move_nothing() {
    // App-vNext/Polly#216: a late failure of an earlier call must not re-open or re-fire.
    let b = breaker(|c| c.failure_threshold = 1);
    let early = admit(&b, 0);
    assert_eq!(call(&b, 0, Outcome::Failure), OPENED);
    assert_eq!(b.record(1, early, Outcome::Failure), None);
    let st = b.stats(1).0;
    assert_eq!(st.window.failures, 1); // the window as it stood when it opened
    assert_eq!(st.totals.failures, 2);
    assert_eq!(st.last_failure, Some(1));
}

#[test]
fn the_fast_path_admits_only_while_closed() {
    let b = breaker(|c| c.failure_threshold = 1);
    let p = b.try_acquire_closed(0).unwrap();
    assert_eq!(b.record(0, p, Outcome::Failure), OPENED);
    assert!(b.try_acquire_closed(0).is_none());
    assert_eq!(b.state(60 * S).0, State::HalfOpen);
    assert!(b.try_acquire_closed(0).is_none());
    assert_eq!(
        b.reset(),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Closed
        })
    );
    assert!(b.try_acquire_closed(0).is_some());
    assert_eq!(b.reset(), None);
}

#[test]
fn another_breakers_permit_moves_nothing() {
    let (a, b) = (breaker(|_| {}), breaker(|_| {}));
    b.force_open(0);
    let p = admit(&b, 60 * S); // a trial permit of b
    assert_eq!(a.record(0, p, Outcome::Failure), None);
    a.release(admit(&b, 60 * S));
    assert_eq!(a.stats(0).0.totals, Totals::default());
    assert_eq!(b.stats(60 * S).0.half_open_in_flight, 2);
}

#[test]
fn force_open_behaves_like_a_trip() {
    let b = breaker(|_| {});
    assert_eq!(b.force_open(5), OPENED);
    assert_eq!(b.force_open(7), None); // already open: the timer restarts
    assert_eq!(
        b.acquire(8),
        Admission::Reject {
            retry_after: 60 * S - 1
        }
    );
    assert_eq!(b.state(60 * S + 7).0, State::HalfOpen);
    let st = b.stats(60 * S + 7).0;
    assert_eq!((st.opened_at, st.open_since), (None, Some(5)));
}

#[test]
fn the_window_forgets_and_open_reports_it_as_it_stood() {
    let b = breaker(|c| {
        c.failure_threshold = 3;
        c.monitoring_window = 60.0;
        c.timeout = 1000.0;
    });
    call(&b, 0, Outcome::Failure);
    call(&b, 0, Outcome::Failure);
    assert_eq!(b.stats(59 * S).0.window.failures, 2);
    assert_eq!(b.stats(60 * S).0.window.failures, 0);
    call(&b, 61 * S, Outcome::Success);
    call(&b, 61 * S, Outcome::Failure);
    call(&b, 61 * S, Outcome::Failure);
    assert_eq!(call(&b, 62 * S, Outcome::Failure), OPENED);
    let w = b.stats(100 * S).0.window;
    assert_eq!((w.failures, w.successes), (3, 1));
    assert_eq!(b.stats(121 * S).0.window.calls(), 1); // t=61 aged out, t=62 not yet
}

#[test]
fn validation_names_the_field() {
    type Mutate = fn(&mut BreakerConfig);
    let cases: Vec<(Mutate, &str)> = vec![
        (
            |c| c.failure_threshold = 0,
            "failure_threshold must be >= 1, got 0",
        ),
        (|c| c.timeout = 0.0, "timeout must be > 0.0, got 0.0"),
        (
            |c| c.timeout = f64::NAN,
            "timeout must be a finite number, got nan",
        ),
        (
            |c| c.success_threshold = 0,
            "success_threshold must be >= 1, got 0",
        ),
        (
            |c| c.monitoring_window = -1.0,
            "monitoring_window must be > 0.0, got -1.0",
        ),
        (
            |c| c.failure_rate_threshold = 1.5,
            "failure_rate_threshold must be <= 1.0, got 1.5",
        ),
        (|c| c.minimum_calls = 0, "minimum_calls must be >= 1, got 0"),
        (
            |c| c.half_open_max_calls = 0,
            "half_open_max_calls must be >= 1, got 0",
        ),
        (
            |c| c.slow_call_duration = Some(f64::INFINITY),
            "slow_call_duration must be a finite number, got inf",
        ),
        (
            |c| c.slow_call_rate_threshold = 0.0,
            "slow_call_rate_threshold must be > 0.0, got 0.0",
        ),
    ];
    for (mutate, message) in cases {
        let mut c = BreakerConfig::default();
        mutate(&mut c);
        assert_eq!(Breaker::new(c).unwrap_err().to_string(), message);
    }
}
