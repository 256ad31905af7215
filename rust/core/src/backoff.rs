//! Backoff delays: exponential, linear, fixed, and AWS's "full jitter" and "decorrelated jitter".
//!
//! Why closed form with a clamp: peers compute `base ** n` first and clamp afterwards, so attempt
//! 1025 overflows (jd/tenacity#710, hynek/stamina#104) or builds ever-growing big integers
//! (jd/tenacity#526). Here the power is computed by square-and-multiply over at most 64 bits of the
//! exponent, in floats that saturate to infinity, and the cap is applied before anything else can
//! go wrong: any attempt up to `u64::MAX` costs the same and gives `max_delay` once past the cap.
//!
//! Why jitter after the cap: clamping after jittering makes every client at the cap sleep exactly
//! `max_delay` and retry in lock-step. Proportional jitter (`±jitter_range × delay`) is applied to
//! the capped value, so it keeps its spread at the cap.
//!
//! ```
//! use riprap_core::{Backoff, BackoffConfig, Strategy};
//! let cfg = BackoffConfig { jitter: false, ..BackoffConfig::default() };
//! let b = Backoff::new(cfg, None).unwrap();
//! assert_eq!(b.delay(1, None), 1.0);
//! assert_eq!(b.delay(3, None), 4.0);
//! assert_eq!(b.delay(u64::MAX, None), 60.0);
//! ```

use crate::error::{ConfigError, check_float};
use crate::rng::Rng;

/// How the delay grows with the attempt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `base × exponential_base^(n-1)`.
    Exponential,
    /// `base × n`.
    Linear,
    /// `base`.
    Fixed,
    /// AWS decorrelated jitter: `uniform(base, previous × 3)`, capped.
    Decorrelated,
    /// AWS full jitter: `uniform(0, min(cap, base × exponential_base^(n-1)))`.
    FullJitter,
}

impl Strategy {
    /// The accepted names, in the order error messages list them.
    pub const NAMES: &'static [&'static str] = &[
        "exponential",
        "linear",
        "fixed",
        "decorrelated",
        "full_jitter",
    ];

    /// Parses a strategy name.
    ///
    /// # Errors
    /// [`ConfigError::Unknown`] naming `backoff_strategy`.
    pub fn parse(name: &str) -> Result<Self, ConfigError> {
        Ok(match name {
            "exponential" => Self::Exponential,
            "linear" => Self::Linear,
            "fixed" => Self::Fixed,
            "decorrelated" => Self::Decorrelated,
            "full_jitter" => Self::FullJitter,
            other => {
                return Err(ConfigError::Unknown {
                    field: "backoff_strategy",
                    value: other.to_owned(),
                    expected: Self::NAMES,
                });
            }
        })
    }

    /// The strategy's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exponential => "exponential",
            Self::Linear => "linear",
            Self::Fixed => "fixed",
            Self::Decorrelated => "decorrelated",
            Self::FullJitter => "full_jitter",
        }
    }
}

/// Backoff settings (the seed's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// How the delay grows.
    pub strategy: Strategy,
    /// The first delay, in seconds.
    pub base_delay: f64,
    /// The cap on the computed delay, in seconds.
    pub max_delay: f64,
    /// Growth factor for exponential (and full-jitter) backoff; `>= 1`.
    pub exponential_base: f64,
    /// Whether to apply proportional jitter (exponential, linear, fixed).
    pub jitter: bool,
    /// Proportional jitter: the delay moves uniformly within `±jitter_range × delay`; in `[0, 1]`.
    pub jitter_range: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Exponential,
            base_delay: 1.0,
            max_delay: 60.0,
            exponential_base: 2.0,
            jitter: true,
            jitter_range: 0.1,
        }
    }
}

impl BackoffConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first bad field: non-finite or negative delays, a base below
    /// 1, a jitter range outside `[0, 1]`, or `base_delay > max_delay`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_float("base_delay", self.base_delay, 0.0, true)?;
        check_float("max_delay", self.max_delay, 0.0, true)?;
        check_float("exponential_base", self.exponential_base, 1.0, true)?;
        check_float("jitter_range", self.jitter_range, 0.0, true)?;
        if self.jitter_range > 1.0 {
            return Err(ConfigError::TooLarge {
                field: "jitter_range",
                value: self.jitter_range,
                max: 1.0,
            });
        }
        if self.base_delay > self.max_delay {
            return Err(ConfigError::Inconsistent {
                message: format!(
                    "base_delay ({}) must be <= max_delay ({})",
                    crate::error::py_float(self.base_delay),
                    crate::error::py_float(self.max_delay)
                ),
            });
        }
        Ok(())
    }
}

/// `b^e` by square-and-multiply: at most 64 rounds, saturating to infinity, never a big integer.
///
/// The Python reference runs the same loop, so both backends produce bit-identical results.
pub fn pow_saturating(mut b: f64, mut e: u64) -> f64 {
    let mut acc = 1.0_f64;
    while e > 0 {
        if e & 1 == 1 {
            acc *= b;
        }
        e >>= 1;
        if e > 0 {
            b *= b;
        }
    }
    acc
}

/// A validated backoff with its own jitter stream.
#[derive(Debug)]
pub struct Backoff {
    cfg: BackoffConfig,
    rng: Rng,
}

impl Backoff {
    /// Validates `cfg` and seeds the jitter stream (`None`: from process entropy).
    ///
    /// # Errors
    /// See [`BackoffConfig::validate`].
    pub fn new(cfg: BackoffConfig, seed: Option<u64>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            rng: Rng::new(seed),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BackoffConfig {
        &self.cfg
    }

    /// The deterministic part of the delay before the cap (may be `inf`, never NaN).
    fn raw(&self, attempt: u64) -> f64 {
        let c = &self.cfg;
        let n = attempt.max(1);
        match c.strategy {
            Strategy::Exponential | Strategy::FullJitter => {
                if c.base_delay == 0.0 {
                    0.0
                } else {
                    c.base_delay * pow_saturating(c.exponential_base, n - 1)
                }
            }
            Strategy::Linear => c.base_delay * n as f64,
            Strategy::Fixed | Strategy::Decorrelated => c.base_delay,
        }
    }

    /// The delay after failed attempt `attempt` (1-based), for decorrelated jitter given the
    /// previous delay (`None`: `base_delay`). Always finite and in
    /// `[0, max_delay × (1 + jitter_range)]`.
    pub fn delay(&self, attempt: u64, previous: Option<f64>) -> f64 {
        self.delay_scaled(attempt, previous, 1.0)
    }

    /// Like [`Backoff::delay`] with the deterministic part multiplied by `factor` (finite,
    /// `>= 0`) before the cap; the adaptive strategy uses this.
    pub fn delay_scaled(&self, attempt: u64, previous: Option<f64>, factor: f64) -> f64 {
        let c = &self.cfg;
        match c.strategy {
            Strategy::Decorrelated => {
                // Clamp the previous delay into [base, max] first, so `prev × 3` stays finite.
                let prev = match previous {
                    Some(p) if p.is_finite() => p.min(c.max_delay).max(c.base_delay),
                    _ => c.base_delay,
                };
                let hi = (prev * 3.0).max(c.base_delay);
                let d = c.base_delay + (hi - c.base_delay) * self.rng.next_f64();
                (d * factor).min(c.max_delay)
            }
            Strategy::FullJitter => {
                let capped = (self.raw(attempt) * factor).min(c.max_delay);
                capped * self.rng.next_f64()
            }
            _ => {
                let capped = (self.raw(attempt) * factor).min(c.max_delay);
                if c.jitter {
                    let u = self.rng.next_f64();
                    (capped + capped * c.jitter_range * (2.0 * u - 1.0)).max(0.0)
                } else {
                    capped
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(strategy: Strategy, jitter: bool) -> BackoffConfig {
        BackoffConfig {
            strategy,
            jitter,
            ..BackoffConfig::default()
        }
    }

    #[test]
    fn formulas() {
        let e = Backoff::new(cfg(Strategy::Exponential, false), None).unwrap();
        assert_eq!(
            [e.delay(1, None), e.delay(2, None), e.delay(7, None)],
            [1.0, 2.0, 60.0]
        );
        let l = Backoff::new(cfg(Strategy::Linear, false), None).unwrap();
        assert_eq!(
            [l.delay(1, None), l.delay(5, None), l.delay(1000, None)],
            [1.0, 5.0, 60.0]
        );
        let f = Backoff::new(cfg(Strategy::Fixed, false), None).unwrap();
        assert_eq!(f.delay(99, None), 1.0);
    }

    #[test]
    fn huge_attempts_saturate_to_the_cap() {
        let e = Backoff::new(cfg(Strategy::Exponential, false), None).unwrap();
        for n in [1025, 1_000_000, 1 << 53, 1 << 63, u64::MAX] {
            assert_eq!(e.delay(n, None), 60.0);
        }
        let zero = Backoff::new(
            BackoffConfig {
                base_delay: 0.0,
                jitter: false,
                ..BackoffConfig::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(zero.delay(u64::MAX, None), 0.0);
    }

    #[test]
    fn pow_matches_powi_for_small_exponents() {
        for e in 0..60 {
            let p = pow_saturating(1.5, e);
            let q = 1.5_f64.powi(i32::try_from(e).unwrap());
            assert!((p - q).abs() <= q * 1e-12, "{e}: {p} vs {q}");
        }
        assert_eq!(pow_saturating(2.0, u64::MAX), f64::INFINITY);
        assert_eq!(pow_saturating(1.0, u64::MAX), 1.0);
    }

    #[test]
    fn validation_names_fields() {
        let bad = |c: BackoffConfig| Backoff::new(c, None).unwrap_err().to_string();
        let d = BackoffConfig::default();
        assert!(
            bad(BackoffConfig {
                base_delay: f64::NAN,
                ..d.clone()
            })
            .starts_with("base_delay")
        );
        assert!(
            bad(BackoffConfig {
                max_delay: -1.0,
                ..d.clone()
            })
            .starts_with("max_delay")
        );
        assert!(
            bad(BackoffConfig {
                exponential_base: 0.5,
                ..d.clone()
            })
            .starts_with("exponential_base")
        );
        assert!(
            bad(BackoffConfig {
                jitter_range: 1.5,
                ..d.clone()
            })
            .starts_with("jitter_range")
        );
        assert!(
            bad(BackoffConfig {
                base_delay: 100.0,
                ..d.clone()
            })
            .contains("max_delay")
        );
        assert!(
            Strategy::parse("bogus")
                .unwrap_err()
                .to_string()
                .contains("backoff_strategy")
        );
    }

    #[test]
    fn decorrelated_uses_previous() {
        let b = Backoff::new(cfg(Strategy::Decorrelated, true), Some(3)).unwrap();
        let mut prev = None;
        for n in 1..200 {
            let d = b.delay(n, prev);
            assert!((1.0..=60.0).contains(&d));
            if let Some(p) = prev {
                assert!(d <= (p * 3.0_f64).max(1.0));
            }
            prev = Some(d);
        }
        // Absurd `previous` values cannot produce inf or NaN.
        assert!(b.delay(1, Some(f64::MAX)).is_finite());
        assert!(b.delay(1, Some(f64::NAN)).is_finite());
    }
}
