//! The rate and burst of a bucket, as exact integer nanoseconds (see the [module docs](super)).

use crate::error::{ConfigError, check_float, py_float};

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

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

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
}
