//! Property tests for backoff: never overflows, never negative or NaN, stays within its bounds,
//! and proportional jitter keeps its spread at the cap.

use proptest::prelude::*;
use riprap_core::{Backoff, BackoffConfig, RetrySchedule, Strategy as Kind};

fn strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Exponential),
        Just(Kind::Linear),
        Just(Kind::Fixed),
        Just(Kind::Decorrelated),
        Just(Kind::FullJitter),
    ]
}

prop_compose! {
    fn config()(
        strategy in strategy(),
        base in prop_oneof![Just(0.0), 0.0..10.0f64, 1e-9..1e-3f64],
        extra in prop_oneof![Just(0.0), 0.0..1000.0f64, 1e6..1e12f64],
        exponential_base in prop_oneof![Just(1.0), 1.0..10.0f64, 1e3..1e300f64],
        jitter in any::<bool>(),
        jitter_range in prop_oneof![Just(0.0), Just(1.0), 0.0..=1.0f64],
    ) -> BackoffConfig {
        BackoffConfig { strategy, base_delay: base, max_delay: base + extra, exponential_base, jitter, jitter_range }
    }
}

fn attempt() -> impl Strategy<Value = u64> {
    prop_oneof![
        1..64u64,
        Just(1023),
        Just(1024),
        Just(1025),
        Just(1 << 53),
        Just((1 << 63) - 1),
        Just(1 << 63),
        1..(1u64 << 63),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn delay_is_finite_non_negative_and_bounded(cfg in config(), n in attempt(), seed in any::<u64>(),
                                                prev in prop_oneof![Just(None), (0.0..1e9f64).prop_map(Some)]) {
        let b = Backoff::new(cfg.clone(), Some(seed)).unwrap();
        let d = b.delay(n, prev);
        prop_assert!(d.is_finite(), "{d}");
        prop_assert!(d >= 0.0, "{d}");
        match cfg.strategy {
            Kind::FullJitter => prop_assert!(d <= cfg.max_delay),
            Kind::Decorrelated => prop_assert!(d >= cfg.base_delay && d <= cfg.max_delay),
            _ if cfg.jitter => prop_assert!(d <= cfg.max_delay * (1.0 + cfg.jitter_range)),
            _ => prop_assert!(d <= cfg.max_delay),
        }
    }

    #[test]
    fn without_jitter_delays_never_decrease(cfg in config(), n in 1..(1u64 << 62),
                                            kind in prop_oneof![Just(Kind::Exponential), Just(Kind::Linear), Just(Kind::Fixed)]) {
        let b = Backoff::new(BackoffConfig { jitter: false, strategy: kind, ..cfg }, None).unwrap();
        prop_assert!(b.delay(n, None) <= b.delay(n + 1, None));
        prop_assert!(b.delay(n, None) <= b.delay(n.saturating_mul(2), None));
    }

    #[test]
    fn same_seed_same_delays(cfg in config(), seed in any::<u64>()) {
        let a = Backoff::new(cfg.clone(), Some(seed)).unwrap();
        let b = Backoff::new(cfg, Some(seed)).unwrap();
        for n in 1..20 {
            prop_assert_eq!(a.delay(n, None).to_bits(), b.delay(n, None).to_bits());
        }
    }

    #[test]
    fn next_delay_never_crosses_the_deadline(cfg in config(), n in attempt(), deadline in 1e-3..1e3f64,
                                             elapsed in 0.0..2e3f64, retry_after in prop_oneof![Just(None), (0.0..1e4f64).prop_map(Some)]) {
        let s = RetrySchedule::new(cfg, u64::MAX, Some(deadline), Some(1)).unwrap();
        if let Some(d) = s.next_delay(n, elapsed, None, retry_after) {
            prop_assert!(elapsed + d <= deadline);
        }
    }
}

#[test]
fn jitter_at_the_cap_keeps_its_spread() {
    // Every client at the cap must not sleep exactly max_delay: the draws spread over the whole
    // ±10 % band around it.
    let b = Backoff::new(BackoffConfig::default(), Some(11)).unwrap();
    let draws: Vec<f64> = (0..10_000).map(|_| b.delay(1_000_000, None)).collect();
    let lo = draws.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = draws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!((54.0..54.1).contains(&lo), "{lo}");
    assert!(hi <= 66.0 && hi > 65.9, "{hi}");
    let mut distinct = draws.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert!(distinct.len() > 9_900);
    let below = draws.iter().filter(|&&d| d < 60.0).count();
    assert!((4_500..5_500).contains(&below), "{below}");
}

#[test]
fn full_jitter_spreads_over_zero_to_cap() {
    let cfg = BackoffConfig {
        strategy: Kind::FullJitter,
        ..BackoffConfig::default()
    };
    let b = Backoff::new(cfg, Some(5)).unwrap();
    let draws: Vec<f64> = (0..10_000).map(|_| b.delay(1 << 40, None)).collect();
    assert!(draws.iter().all(|&d| (0.0..=60.0).contains(&d)));
    assert!(draws.iter().any(|&d| d < 1.0) && draws.iter().any(|&d| d > 59.0));
}

#[test]
fn huge_attempt_is_constant_time() {
    let b = Backoff::new(BackoffConfig::default(), Some(1)).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..10_000 {
        std::hint::black_box(b.delay(std::hint::black_box(10_000_000), None));
    }
    // 10k calls in well under a millisecond each; a big-integer implementation would take seconds.
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
}
