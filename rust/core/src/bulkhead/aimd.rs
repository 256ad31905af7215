//! The adaptive limit (AIMD) and the running estimate of how long a call holds its slot.

/// Additive increase, multiplicative decrease of the adaptive limit.
///
/// - A *drop* (a failure, a timeout, or a success slower than the slow-call threshold) halves
///   the limit, at least to 1, and starts a new *epoch*. A drop from a call admitted in an
///   earlier epoch changes nothing: the calls that were already running when the dependency
///   started to suffer all report at about the same time, and one congestion episode must cost
///   one halving, not one per call in flight (TCP reacts once per window for the same reason).
/// - A fast success counts one credit, but only while the limit is really in use: when the
///   call found at least half of the limit in flight (its own slot included). Unused headroom
///   proves nothing about the dependency, so an idle bulkhead never grows (Netflix's AIMD has
///   the same rule). `limit` credits raise the limit by one, up to the maximum: one step per
///   "round" of calls, the classic congestion-avoidance pace.
/// - Only calls of the current epoch count. Rejected calls never ran, and cancelled calls or
///   calls ended by another layer's rejection say nothing about the dependency: they are not
///   samples at all (Netflix/concurrency-limits#176 counted them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Aimd {
    /// Qualifying successes since the last change.
    credit: u64,
}

/// What a sample did to the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing.
    None,
    /// The limit went up to this value.
    Up(u64),
    /// The limit went down to this value (a new epoch starts).
    Down(u64),
}

impl Aimd {
    /// One sample of a call admitted in `slot_epoch` with `in_flight` calls running at its
    /// admission, when the limit is `limit` (in `1..=max`) and the epoch `epoch`.
    pub(crate) fn sample(
        &mut self,
        limit: u64,
        max: u64,
        epoch: u64,
        slot_epoch: u64,
        in_flight: u64,
        dropped: bool,
    ) -> Change {
        if slot_epoch != epoch {
            return Change::None;
        }
        if dropped {
            self.credit = 0;
            return Change::Down((limit / 2).max(1));
        }
        if in_flight.saturating_mul(2) < limit || limit >= max {
            return Change::None;
        }
        self.credit += 1;
        if self.credit < limit {
            return Change::None;
        }
        self.credit = 0;
        Change::Up(limit + 1)
    }
}

/// The running mean of slot-holding times: an exponentially weighted average with weight 1/8
/// for the newest sample (the smoothing TCP uses for round-trip times), in whole nanoseconds,
/// rounded down.
pub(crate) fn ewma(average: Option<u64>, sample: u64) -> u64 {
    match average {
        None => sample,
        Some(avg) => ((u128::from(avg) * 7 + u128::from(sample)) / 8) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_once_per_epoch_and_climbs_one_per_round() {
        let mut a = Aimd::default();
        assert_eq!(a.sample(10, 10, 0, 0, 10, true), Change::Down(5));
        // A drop from the old epoch is the same episode.
        assert_eq!(a.sample(5, 10, 1, 0, 10, true), Change::None);
        assert_eq!(a.sample(1, 10, 1, 1, 1, true), Change::Down(1));
        // Climbing from 4 needs 4 qualifying successes.
        for _ in 0..3 {
            assert_eq!(a.sample(4, 10, 2, 2, 2, false), Change::None);
        }
        assert_eq!(a.sample(4, 10, 2, 2, 2, false), Change::Up(5));
        // Unused headroom (1 in flight of 5) earns nothing; neither does a full limit.
        for _ in 0..100 {
            assert_eq!(a.sample(5, 10, 2, 2, 2, false), Change::None);
            assert_eq!(a.sample(10, 10, 2, 2, 10, false), Change::None);
        }
        assert_eq!(ewma(None, 80), 80);
        assert_eq!(ewma(Some(80), 0), 70);
        assert_eq!(ewma(Some(u64::MAX), u64::MAX), u64::MAX);
    }
}
