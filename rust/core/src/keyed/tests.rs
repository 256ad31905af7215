//! Unit tests of the keyed limiter: key types, the eviction order, `idle_ttl`, waiters, and
//! the `max_keys` bound over sharded tables (exact, and under threads racing to insert).

use super::*;

const S: u64 = 1_000_000_000;

fn keyed(rate: f64, burst: f64, max_keys: u64, ttl: Option<u64>) -> KeyedRateLimiter {
    KeyedRateLimiter::new(Quota::new(rate, Some(burst)).unwrap(), max_keys, ttl, 0).unwrap()
}

#[test]
fn key_types_are_separate_namespaces() {
    let l = keyed(1.0, 1.0, 100, None);
    for key in [
        Key::Int(1),
        Key::Str(b"1"),
        Key::Bytes(b"1"),
        Key::BigInt(b"1"),
    ] {
        assert_eq!(l.try_acquire(key, 1, 0).unwrap(), Decision::Admit);
        assert!(matches!(
            l.try_acquire(key, 1, 0).unwrap(),
            Decision::NotUntil { wait: S }
        ));
    }
    assert_eq!(l.len(), 4);
}

#[test]
fn idle_keys_are_evicted_first_and_nothing_changes() {
    let l = keyed(1.0, 1.0, 3, None);
    for k in 0..3 {
        assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
    }
    // At 1 s all three are full again; key 0 takes a token, then key 3 finds the shard full
    // and forgets the two idle keys (1 and 2), not the busy one.
    assert_eq!(l.try_acquire(Key::Int(0), 1, S).unwrap(), Decision::Admit);
    assert_eq!(l.try_acquire(Key::Int(3), 1, S).unwrap(), Decision::Admit);
    assert_eq!(l.len(), 2);
    assert_eq!(l.stats().evicted, 2);
    assert!(matches!(
        l.try_acquire(Key::Int(0), 1, S).unwrap(),
        Decision::NotUntil { .. }
    ));
}

#[test]
fn busy_keys_evicted_closest_to_full_first() {
    let l = keyed(1.0, 2.0, 2, None);
    assert_eq!(l.try_acquire(Key::Int(1), 2, 0).unwrap(), Decision::Admit); // tat 2 s
    assert_eq!(l.try_acquire(Key::Int(2), 1, 0).unwrap(), Decision::Admit); // tat 1 s
    assert_eq!(l.try_acquire(Key::Int(3), 1, 0).unwrap(), Decision::Admit);
    assert_eq!(l.stats().evicted, 1);
    // Key 2 (closest to full) went; key 1 is still empty.
    assert!(matches!(
        l.try_acquire(Key::Int(1), 1, 0).unwrap(),
        Decision::NotUntil { .. }
    ));
    assert_eq!(l.try_acquire(Key::Int(2), 2, 0).unwrap(), Decision::Admit);
}

#[test]
fn idle_ttl_forgets_full_buckets_only() {
    let l = keyed(1.0, 1.0, 100, Some(10 * S));
    assert_eq!(
        l.try_acquire(Key::Str(b"a"), 1, 0).unwrap(),
        Decision::Admit
    );
    assert_eq!(
        l.try_acquire(Key::Str(b"b"), 1, 9 * S).unwrap(),
        Decision::Admit
    );
    assert_eq!(l.len(), 2);
    // At 12 s: "a" has been full since 1 s (11 s >= 10 s); "b" since 10 s.
    assert_eq!(
        l.try_acquire(Key::Str(b"c"), 1, 12 * S).unwrap(),
        Decision::Admit
    );
    assert_eq!(l.len(), 2);
    assert_eq!(l.stats().evicted, 1);
}

#[test]
fn ties_are_broken_by_key_order() {
    let l = keyed(1.0, 1.0, 3, None);
    for key in [Key::BigInt(b"9"), Key::Str(b"b"), Key::Int(5)] {
        assert_eq!(l.try_acquire(key, 1, 0).unwrap(), Decision::Admit);
    }
    // All three share one TAT; the int sorts first, so it is the one forgotten: it is
    // admitted again (fresh), which in turn forgets "a", the smallest of "a" < "b" < big 9.
    assert_eq!(
        l.try_acquire(Key::Str(b"a"), 1, 0).unwrap(),
        Decision::Admit
    );
    assert_eq!(l.try_acquire(Key::Int(5), 1, 0).unwrap(), Decision::Admit);
    assert_eq!(l.stats().evicted, 2);
    for key in [Key::Str(b"b"), Key::BigInt(b"9"), Key::Int(5)] {
        assert!(matches!(
            l.try_acquire(key, 1, 0).unwrap(),
            Decision::NotUntil { .. }
        ));
    }
}

#[test]
fn keyed_waiters_queue_and_give_back() {
    let l = keyed(1.0, 1.0, 100, None);
    let k = Key::Bytes(b"client");
    assert_eq!(l.reserve(k, 1, 0, None).unwrap(), Reservation::Admitted);
    let Reservation::Queued { ticket: a, wait } = l.reserve(k, 1, 0, None).unwrap() else {
        panic!()
    };
    assert_eq!(wait, S);
    let Reservation::Queued { ticket: b, .. } = l.reserve(k, 1, 0, None).unwrap() else {
        panic!()
    };
    assert!(l.cancel(k, a));
    assert_eq!(l.remaining(k, b, 0), S);
    l.complete(k, b);
    assert_eq!(l.stats().limiter.waited, 1);
    // Other keys are untouched by all this.
    assert_eq!(l.try_acquire(Key::Int(5), 1, 0).unwrap(), Decision::Admit);
}

#[test]
fn keys_with_waiters_are_never_evicted() {
    let l = keyed(1.0, 1.0, 1, None);
    assert_eq!(l.try_acquire(Key::Int(1), 1, 0).unwrap(), Decision::Admit);
    let Reservation::Queued { ticket, .. } = l.reserve(Key::Int(1), 1, 0, None).unwrap() else {
        panic!()
    };
    assert_eq!(l.try_acquire(Key::Int(2), 1, 0).unwrap(), Decision::Admit);
    assert_eq!(l.len(), 2); // over the cap rather than drop the reservation
    assert_eq!(l.remaining(Key::Int(1), ticket, 0), S);
}

#[test]
fn shard_counts() {
    assert_eq!(KeyedRateLimiter::shard_count(1), 1);
    assert_eq!(KeyedRateLimiter::shard_count(8191), 1);
    assert_eq!(KeyedRateLimiter::shard_count(8192), 2);
    assert_eq!(KeyedRateLimiter::shard_count(100_000), 16);
    assert_eq!(KeyedRateLimiter::shard_count(1_000_000), 64);
    assert_eq!(KeyedRateLimiter::shard_count(u64::MAX), 64);
}

#[test]
fn many_keys_stay_bounded() {
    let l = keyed(1.0, 1.0, 100_000, None);
    for k in 0..300_000 {
        assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
        assert!(l.len() <= 100_000);
    }
    let s = l.stats();
    assert_eq!(s.keys + s.evicted, 300_000);
    assert_eq!(l.counted(), l.len());
}

/// Every key busy (one token of one taken, nothing refills at rate 1e-3/s and time 0).
fn busy(max_keys: u64, shards: usize) -> KeyedRateLimiter {
    KeyedRateLimiter::with_shards(
        Quota::new(1e-3, Some(1.0)).unwrap(),
        max_keys,
        None,
        0,
        shards,
    )
}

#[test]
fn a_sharded_table_holds_exactly_max_keys_then_forgets_one_batch() {
    let l = keyed(1e-3, 1.0, 100_000, None);
    assert_eq!(KeyedRateLimiter::shard_count(100_000), 16);
    for k in 0..100_000 {
        assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
    }
    assert_eq!((l.len(), l.stats().evicted), (100_000, 0));
    // The 100,001st key: nothing is idle, so the 100_000/64 = 1562 keys closest to full go.
    // Every TAT is the same, so those are the 1562 smallest keys, 0..=1561, wherever they live.
    assert_eq!(
        l.try_acquire(Key::Int(100_000), 1, 0).unwrap(),
        Decision::Admit
    );
    assert_eq!(l.stats().evicted, 1562);
    assert_eq!(l.len(), 100_000 - 1562 + 1);
    for k in 1562..=100_000 {
        assert!(matches!(
            l.try_acquire(Key::Int(k), 1, 0).unwrap(),
            Decision::NotUntil { .. }
        ));
    }
    assert_eq!(l.try_acquire(Key::Int(0), 1, 0).unwrap(), Decision::Admit); // fresh again
    assert_eq!(l.counted(), l.len());
}

#[test]
fn idle_keys_in_every_shard_go_before_a_busy_one() {
    // 8192 keys over 2 shards, all idle at 1 s but key 0, which takes its token again: a new
    // key forgets the 8191 idle ones in both shards, not a busy key of its own shard.
    let l = keyed(1.0, 1.0, 8192, None);
    for k in 0..8192 {
        assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
    }
    assert_eq!(l.try_acquire(Key::Int(0), 1, S).unwrap(), Decision::Admit);
    assert_eq!(l.try_acquire(Key::Int(-1), 1, S).unwrap(), Decision::Admit);
    assert_eq!((l.len(), l.stats().evicted), (2, 8191));
    assert!(matches!(
        l.try_acquire(Key::Int(0), 1, S).unwrap(),
        Decision::NotUntil { .. }
    ));
}

#[test]
fn a_few_idle_keys_are_topped_up_to_a_batch_with_the_closest_to_full() {
    // 8192 keys (batch 128): keys 0..10 idle at 1 s, keys 10.. busy, key k until 2 s + k µs.
    let l = keyed(1.0, 2.0, 8192, None);
    for k in 0..10 {
        assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
    }
    for k in 10..8192i64 {
        let at = k.unsigned_abs() * 1000;
        assert_eq!(l.try_acquire(Key::Int(k), 2, at).unwrap(), Decision::Admit);
    }
    // A new key forgets the 10 idle keys and the 118 busy keys closest to full (10..128).
    let now = S + 8192 * 1000;
    assert_eq!(
        l.try_acquire(Key::Int(-1), 1, now).unwrap(),
        Decision::Admit
    );
    assert_eq!((l.len(), l.stats().evicted), (8192 - 128 + 1, 128));
    for k in 128..8192 {
        assert!(matches!(
            l.try_acquire(Key::Int(k), 2, now).unwrap(),
            Decision::NotUntil { .. }
        ));
    }
    // So the forgotten keys are exactly 0..128, and they start afresh (127 of them fill the
    // table up again).
    for k in 0..127 {
        assert_eq!(l.try_acquire(Key::Int(k), 2, now).unwrap(), Decision::Admit);
    }
    assert_eq!((l.len(), l.stats().evicted), (8192, 128));
}

#[test]
fn idle_ttl_sweeps_every_shard_at_once() {
    let l = keyed(1.0, 1.0, 1 << 20, Some(10 * S));
    assert_eq!(KeyedRateLimiter::shard_count(1 << 20), 64);
    for k in 0..1000 {
        assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
    }
    // At 12 s every bucket has been full since 1 s: one check forgets all of them.
    assert!(matches!(
        l.try_acquire(Key::Str(b"x"), 1, 12 * S).unwrap(),
        Decision::Admit
    ));
    assert_eq!((l.len(), l.stats().evicted), (1, 1000));
    assert_eq!(l.counted(), 1);
}

#[test]
fn a_full_table_of_waiters_goes_over_by_one_key_at_a_time() {
    // Every key has a waiter: the new key goes in over the cap; the next new key forgets it
    // (the only key without waiters), so the table stays at max_keys + 1.
    for shards in [1, 64] {
        let l = busy(64, shards);
        for k in 0..64 {
            assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
            assert!(matches!(
                l.reserve(Key::Int(k), 1, 0, None).unwrap(),
                Reservation::Queued { .. }
            ));
        }
        assert_eq!(l.try_acquire(Key::Int(100), 1, 0).unwrap(), Decision::Admit);
        assert_eq!((l.len(), l.stats().evicted), (65, 0));
        assert_eq!(l.try_acquire(Key::Int(101), 1, 0).unwrap(), Decision::Admit);
        assert_eq!((l.len(), l.stats().evicted), (65, 1));
        assert!(matches!(
            l.try_acquire(Key::Int(101), 1, 0).unwrap(),
            Decision::NotUntil { .. }
        ));
        assert_eq!(l.try_acquire(Key::Int(100), 1, 0).unwrap(), Decision::Admit);
        assert_eq!(l.counted(), l.len());
    }
}

#[test]
fn racing_inserts_fill_the_table_exactly() {
    // 4 threads insert 250 distinct keys each into a table 1000 short of full: it ends full,
    // nothing forgotten, and the shared count is the number of keys really in the shards.
    let l = busy(10_000, 64);
    for k in 0..9_000 {
        assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
    }
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let l = &l;
            s.spawn(move || {
                for k in 0..250 {
                    let key = Key::Int(1_000_000 * (t + 1) + k);
                    assert_eq!(l.try_acquire(key, 1, 0).unwrap(), Decision::Admit);
                    assert!(l.len() <= 10_000);
                }
            });
        }
    });
    assert_eq!((l.len(), l.stats().evicted), (10_000, 0));
    assert_eq!(l.counted(), 10_000);
}

#[test]
fn racing_inserts_into_a_nearly_full_table_never_pass_max_keys() {
    // 4 threads insert 2000 distinct keys each (ints and strings) into a table 100 short of
    // full: inserts past the cap evict batches under every shard's lock while other threads
    // insert below it, and the count never goes over nor drifts from the keys really held.
    let l = busy(8192, 64);
    for k in 0..8092 {
        assert_eq!(l.try_acquire(Key::Int(k), 1, 0).unwrap(), Decision::Admit);
    }
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let l = &l;
            s.spawn(move || {
                for k in 0..2000 {
                    let text = format!("{t}-{k}");
                    let key = if k % 2 == 0 {
                        Key::Int(1_000_000 * (t + 1) + k)
                    } else {
                        Key::Str(text.as_bytes())
                    };
                    assert_eq!(l.try_acquire(key, 1, 0).unwrap(), Decision::Admit);
                    assert!(l.len() <= 8192);
                }
            });
        }
    });
    let stats = l.stats();
    assert_eq!(stats.keys + stats.evicted, 8092 + 8000);
    assert_eq!(l.counted(), l.len());
    assert!(stats.evicted >= 8000 - 100);
}

/// One limiter step of the sharding property test.
#[derive(Debug, Clone)]
enum Step {
    Try(usize, u64),
    Reserve(usize, u64, Option<u64>),
    Cancel(usize),
    Complete(usize),
    Advance(u64),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0usize..48, 1u64..3).prop_map(|(k, n)| Step::Try(k, n)),
        2 => (0usize..48, 1u64..3, prop::option::of(0..3 * S))
            .prop_map(|(k, n, w)| Step::Reserve(k, n, w)),
        1 => any::<usize>().prop_map(Step::Cancel),
        1 => any::<usize>().prop_map(Step::Complete),
        2 => (0..2 * S).prop_map(Step::Advance),
    ]
}

proptest::proptest! {
    /// Sharding is invisible: one shard and 64 shards with the same `max_keys` make the same
    /// decisions, hold the same number of keys and forget the same number, step by step.
    #[test]
    fn sixty_four_shards_decide_as_one(
        max_keys in 1u64..40,
        ttl in proptest::option::of(1..5 * S),
        steps in proptest::collection::vec(step(), 1..300),
    ) {
        let quota = Quota::new(2.0, Some(2.0)).unwrap();
        let texts: Vec<String> = (0..16).map(|i| format!("k{i}")).collect();
        let key = |i: usize| match i % 3 {
            0 => Key::Int(i64::try_from(i).unwrap() - 20),
            1 => Key::Str(texts[i / 3].as_bytes()),
            _ => Key::Bytes(texts[i / 3].as_bytes()),
        };
        let pair = [
            KeyedRateLimiter::with_shards(quota, max_keys, ttl, 0, 1),
            KeyedRateLimiter::with_shards(quota, max_keys, ttl, 0, 64),
        ];
        let mut now = 0;
        let mut tickets: Vec<(usize, u64)> = Vec::new();
        for step in steps {
            match step {
                Step::Try(k, n) => {
                    let [a, b] = pair.each_ref().map(|l| l.try_acquire(key(k), n, now).unwrap());
                    proptest::prop_assert_eq!(a, b);
                }
                Step::Reserve(k, n, wait) => {
                    let [a, b] = pair.each_ref().map(|l| l.reserve(key(k), n, now, wait).unwrap());
                    proptest::prop_assert_eq!(a, b);
                    if let Reservation::Queued { ticket, .. } = a {
                        tickets.push((k, ticket));
                    }
                }
                Step::Cancel(i) | Step::Complete(i) if !tickets.is_empty() => {
                    let (k, ticket) = tickets.swap_remove(i % tickets.len());
                    if matches!(step, Step::Cancel(_)) {
                        let [a, b] = pair.each_ref().map(|l| l.cancel(key(k), ticket));
                        proptest::prop_assert_eq!(a, b);
                    } else {
                        for l in &pair {
                            l.complete(key(k), ticket);
                        }
                    }
                }
                Step::Cancel(_) | Step::Complete(_) => {}
                Step::Advance(dt) => now += dt,
            }
            proptest::prop_assert_eq!(pair[0].stats(), pair[1].stats());
            proptest::prop_assert_eq!(pair[1].counted(), pair[1].len());
            for (k, ticket) in &tickets {
                let [a, b] = pair.each_ref().map(|l| l.remaining(key(*k), *ticket, now));
                proptest::prop_assert_eq!(a, b);
            }
        }
    }
}
