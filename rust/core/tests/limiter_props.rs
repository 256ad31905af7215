//! Properties of the GCRA limiter and the keyed limiter: the window bound over every window,
//! throughput under saturation (tower-rs/tower#438), the exact wait
//! (antifuchs/ratelimit_meter#36), and exact give-back of cancelled reservations
//! (agronholm/anyio#947). Time is injected, so "60 seconds" take microseconds.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;
use riprap_core::{
    Clock, Decision, Key, KeyedRateLimiter, Quota, RateLimiter, Reservation, secs_to_nanos,
};

const S: u64 = 1_000_000_000;

/// A representable quota: rates from one per 10 minutes to 10^6/s, bursts 1..100 (some
/// fractional), plus exact high rates.
fn quota() -> impl Strategy<Value = Quota> {
    let rate = prop_oneof![
        (-3.0..6.0f64).prop_map(|e| 10f64.powf(e)),
        (1u32..2000).prop_map(f64::from),
        Just(1e7),
        Just(5e8),
    ];
    let burst = prop_oneof![
        Just(None),
        (1u32..100).prop_map(|b| Some(f64::from(b))),
        (1.0..50.0f64).prop_map(Some),
    ];
    (rate, burst).prop_filter_map("unrepresentable", |(r, b)| Quota::new(r, b).ok())
}

/// Rates up to 1000/s, so 60 simulated seconds stay a cheap loop.
fn slow_quota() -> impl Strategy<Value = Quota> {
    let rate = prop_oneof![
        (-3.0..3.0f64).prop_map(|e| 10f64.powf(e)),
        (1u32..1000).prop_map(f64::from)
    ];
    let burst = prop_oneof![
        Just(None),
        (1u32..50).prop_map(|b| Some(f64::from(b))),
        (1.0..20.0f64).prop_map(Some)
    ];
    (rate, burst).prop_filter_map("unrepresentable", |(r, b)| Quota::new(r, b).ok())
}

/// Checks that every window `[t_i, t_j]` of the admitted `(time, tokens)` holds at most
/// `burst + rate × (t_j − t_i)` tokens, with the effective integers (`n·T <= τ + w`, which is
/// stronger) and with the configured floats. O(n) after sorting: with `C` the running token
/// count, the worst window ending at j starts where `C_{i-1}·T − t_i` is smallest.
fn check_windows(quota: &Quota, admitted: &mut [(u64, u64)]) -> Result<(), TestCaseError> {
    admitted.sort_unstable();
    let t = i128::from(quota.interval_ns());
    let tau = i128::from(quota.tolerance_ns());
    let mut before = 0i128; // tokens admitted before index j
    let mut best_start = i128::MAX; // min over i <= j of C_{i-1}·T − t_i
    let mut best_start_f = f64::INFINITY;
    for &(time, n) in admitted.iter() {
        let time_i = i128::from(time);
        best_start = best_start.min(before * t - time_i);
        best_start_f = best_start_f.min(before as f64 - quota.rate() * time as f64 / 1e9);
        before += i128::from(n);
        let worst = before * t - time_i - best_start;
        prop_assert!(worst <= tau, "window over the bound: {worst} > {tau}");
        let scale = before as f64 + quota.rate() * time as f64 / 1e9;
        let worst_f = before as f64 - quota.rate() * time as f64 / 1e9 - best_start_f;
        prop_assert!(
            worst_f <= quota.burst() + 1e-9 * scale + 1e-9,
            "{worst_f} > {}",
            quota.burst()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn every_window_holds_the_bound(
        quota in quota(),
        steps in prop::collection::vec((0u64..3 * S, 1u64..4, 0u8..10), 1..300),
        origin in prop_oneof![Just(0u64), any::<u64>().prop_map(|t| t >> 2)],
    ) {
        let l = RateLimiter::new(quota, origin);
        let mut now = origin;
        let mut admitted = Vec::new();
        for (dt, n, how) in steps {
            // Mostly small steps (bursts of arrivals), sometimes long gaps, sometimes clock back.
            now = match how {
                0 => now.saturating_sub(dt / 2),
                1..=6 => now.saturating_add(dt / 1000),
                _ => now.saturating_add(dt),
            };
            let n = n.min(quota.burst().floor() as u64);
            if l.try_acquire(n, now).unwrap() == Decision::Admit {
                admitted.push((now.saturating_sub(origin), n));
            }
        }
        check_windows(&quota, &mut admitted)?;
    }

    #[test]
    fn saturation_admits_at_least_99_percent_of_the_rate(
        quota in slow_quota(),
        n in 1u64..4,
    ) {
        // tower-rs/tower#438: a caller that always retries exactly at retry_after, for 60 s, gets
        // the full rate.
        let n = n.min(quota.burst().floor() as u64);
        let l = RateLimiter::new(quota, 0);
        let (mut now, mut tokens) = (0u64, 0u64);
        while now <= 60 * S {
            match l.try_acquire(n, now).unwrap() {
                Decision::Admit => tokens += n,
                Decision::NotUntil { wait } => now += wait,
            }
        }
        let expected = quota.rate() * 60.0;
        prop_assert!(tokens as f64 >= 0.99 * expected, "{tokens} < 0.99 × {expected}");
        prop_assert!(tokens as f64 <= expected + quota.burst() + n as f64);
    }

    #[test]
    fn wait_is_exact_to_the_nanosecond(
        quota in quota(),
        warmup in prop::collection::vec((0u64..S, 1u64..4), 0..20),
        n in 1u64..4,
        fractions in prop::collection::vec(0.0..1.0f64, 1..8),
    ) {
        // antifuchs/ratelimit_meter#36: after a denial, not admitted at any fraction of the wait,
        // admitted exactly at it.
        let l = RateLimiter::new(quota, 0);
        let cap = quota.burst().floor() as u64;
        let mut now = 0;
        for (dt, k) in warmup {
            now += dt / 100;
            let _ = l.try_acquire(k.min(cap), now);
        }
        let n = n.min(cap);
        // Empty the bucket so the next request must wait (in halving chunks: bursts go to 1e9).
        let mut chunk = cap;
        while chunk > 0 {
            while l.try_acquire(chunk, now).unwrap() == Decision::Admit {}
            chunk /= 2;
        }
        let Decision::NotUntil { wait } = l.try_acquire(n, now).unwrap() else {
            unreachable!()
        };
        prop_assert!(wait > 0);
        let mut probes: Vec<u64> = fractions
            .iter()
            .map(|f| ((f * wait as f64) as u64).min(wait - 1))
            .collect();
        probes.push(wait - 1);
        probes.sort_unstable();
        for p in probes {
            prop_assert_eq!(
                l.try_acquire(n, now + p).unwrap(),
                Decision::NotUntil { wait: wait - p }
            );
        }
        prop_assert_eq!(l.try_acquire(n, now + wait).unwrap(), Decision::Admit);
    }

    #[test]
    fn cancelled_reservations_are_given_back_exactly(
        quota in quota(),
        arrivals in prop::collection::vec((0u64..S, 1u64..4, any::<bool>()), 1..60),
        order in any::<u64>(),
        later in 0u64..10 * S,
    ) {
        // agronholm/anyio#947: cancelling waiters whose slot has not come (in any order) leaves
        // the limiter in exactly the state of one that never saw those requests.
        let cap = quota.burst().floor() as u64;
        let with = RateLimiter::new(quota, 0);
        let mut now = 0;
        let mut made = Vec::new();
        for &(dt, n, _) in &arrivals {
            now += dt / 50;
            made.push((now, n.min(cap), with.reserve(n.min(cap), now, None).unwrap()));
        }
        let mut cancel: Vec<usize> = (0..made.len())
            .filter(|&i| arrivals[i].2 && matches!(made[i].2, Reservation::Queued { ticket, .. } if with.remaining(ticket, now) > 0))
            .collect();
        // Cancel in a scrambled order: each give-back must compose with the others.
        let len = cancel.len();
        if len > 1 {
            for i in 0..len {
                cancel.swap(i, (order.rotate_left(i as u32 * 7) as usize) % len);
            }
        }
        for &i in &cancel {
            let Reservation::Queued { ticket, .. } = made[i].2 else { unreachable!() };
            with.cancel(ticket);
        }
        let without = RateLimiter::new(quota, 0);
        for (i, &(at, n, r)) in made.iter().enumerate() {
            if cancel.contains(&i) {
                continue;
            }
            let control = without.reserve(n, at, None).unwrap();
            for t in [now, now + later] {
                let expected = match control { Reservation::Queued { ticket, .. } => without.remaining(ticket, t), _ => 0 };
                let got = match r { Reservation::Queued { ticket, .. } => with.remaining(ticket, t), _ => 0 };
                prop_assert_eq!(got, expected);
            }
        }
        let end = now + later;
        prop_assert_eq!(with.try_acquire(1, end).unwrap(), without.try_acquire(1, end).unwrap());
    }

    #[test]
    fn keys_behave_as_independent_limiters(
        quota in quota(),
        steps in prop::collection::vec((0u64..S, 0usize..4, 1u64..3), 1..200),
    ) {
        let keys = [Key::Int(-3), Key::Str("ключ".as_bytes()), Key::Bytes(b"k"), Key::BigInt(b"18446744073709551616")];
        let keyed = KeyedRateLimiter::new(quota, 1000, None, 5).unwrap();
        let singles: Vec<RateLimiter> = keys.iter().map(|_| RateLimiter::new(quota, 5)).collect();
        let cap = quota.burst().floor() as u64;
        let mut now = 5;
        for (dt, k, n) in steps {
            now += dt / 20;
            let n = n.min(cap);
            prop_assert_eq!(
                keyed.try_acquire(keys[k], n, now).unwrap(),
                singles[k].try_acquire(n, now).unwrap()
            );
        }
    }
}

#[test]
fn sixteen_threads_on_real_time_never_exceed_the_bound() {
    // A real-time audit: 16 threads hammer one limiter on the monotonic clock for 2 s. Each
    // decision's `now` is recorded; the bound must hold over every window of those times.
    let quota = Quota::new(20_000.0, Some(100.0)).unwrap();
    let clock = Clock::Monotonic;
    let limiter = RateLimiter::new(quota, clock.now());
    let origin = clock.now();
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(16);
    let deadline = origin + secs_to_nanos(2.0);
    let mut admitted: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let now = clock.now();
                        if now > deadline {
                            stop.store(true, Ordering::Relaxed);
                        }
                        if limiter.try_acquire(1, now).unwrap() == Decision::Admit {
                            mine.push((now - origin, 1));
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(admitted.len() > 1000, "{}", admitted.len());
    check_windows(&quota, &mut admitted).unwrap();
    // The race path ran: some compare-and-swaps lost to another thread.
    assert!(limiter.cas_retries() > 0);
    assert_eq!(limiter.stats().admitted, admitted.len() as u64);
}
