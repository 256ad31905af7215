//! Configuration errors.
//!
//! Every constructor in this crate validates its input and returns `Result<_, ConfigError>`
//! instead of panicking. The messages name the field and the bad value, and the pure-Python
//! reference backend produces the same text, so users see the same error on both backends.

use std::fmt;

/// A configuration value that a constructor refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// A float field was NaN or infinite.
    NotFinite {
        /// The field name, as the Python API spells it.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A float field was below its minimum (`min_inclusive` says whether the minimum itself is allowed).
    TooSmall {
        /// The field name.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The smallest allowed value.
        min: f64,
        /// Whether `min` itself is allowed.
        min_inclusive: bool,
    },
    /// A float field was above its maximum.
    TooLarge {
        /// The field name.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The largest allowed value.
        max: f64,
    },
    /// An integer field was below its minimum.
    IntTooSmall {
        /// The field name.
        field: &'static str,
        /// The value given.
        value: i128,
        /// The smallest allowed value.
        min: i128,
    },
    /// An integer field was above its maximum.
    IntTooLarge {
        /// The field name.
        field: &'static str,
        /// The value given.
        value: i128,
        /// The largest allowed value.
        max: i128,
    },
    /// A string field named something that does not exist.
    Unknown {
        /// The field name.
        field: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: &'static [&'static str],
    },
    /// Two fields that are each valid but do not fit together.
    Inconsistent {
        /// A sentence naming both fields and their values.
        message: String,
    },
}

/// Formats a float exactly as Python's `repr` does (`nan`, `inf`, `60.0`, `1.5e-07`, `1e+16`),
/// so the reference backend can produce the same message text.
pub(crate) fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let fixed = format!("{v}");
        if fixed.contains('.') {
            fixed
        } else {
            format!("{fixed}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFinite { field, value } => {
                write!(
                    f,
                    "{field} must be a finite number, got {}",
                    py_float(*value)
                )
            }
            Self::TooSmall {
                field,
                value,
                min,
                min_inclusive,
            } => {
                let op = if *min_inclusive { ">=" } else { ">" };
                write!(
                    f,
                    "{field} must be {op} {}, got {}",
                    py_float(*min),
                    py_float(*value)
                )
            }
            Self::TooLarge { field, value, max } => {
                write!(
                    f,
                    "{field} must be <= {}, got {}",
                    py_float(*max),
                    py_float(*value)
                )
            }
            Self::IntTooSmall { field, value, min } => {
                write!(f, "{field} must be >= {min}, got {value}")
            }
            Self::IntTooLarge { field, value, max } => {
                write!(f, "{field} must be <= {max}, got {value}")
            }
            Self::Unknown {
                field,
                value,
                expected,
            } => {
                let list: Vec<String> = expected.iter().map(|e| format!("'{e}'")).collect();
                write!(
                    f,
                    "{field} must be one of {}, got '{value}'",
                    list.join(", ")
                )
            }
            Self::Inconsistent { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Checks that `value` is finite and `>= min` (or `> min` when `min_inclusive` is false).
///
/// # Errors
/// [`ConfigError::NotFinite`] or [`ConfigError::TooSmall`].
pub fn check_float(
    field: &'static str,
    value: f64,
    min: f64,
    min_inclusive: bool,
) -> Result<f64, ConfigError> {
    if !value.is_finite() {
        return Err(ConfigError::NotFinite { field, value });
    }
    let ok = if min_inclusive {
        value >= min
    } else {
        value > min
    };
    if ok {
        Ok(value)
    } else {
        Err(ConfigError::TooSmall {
            field,
            value,
            min,
            min_inclusive,
        })
    }
}

/// Checks that an integer is `>= min`.
///
/// # Errors
/// [`ConfigError::IntTooSmall`].
pub fn check_int(field: &'static str, value: i128, min: i128) -> Result<i128, ConfigError> {
    if value < min {
        Err(ConfigError::IntTooSmall { field, value, min })
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_value() {
        let e = check_float("base_delay", f64::NAN, 0.0, true).unwrap_err();
        assert_eq!(e.to_string(), "base_delay must be a finite number, got nan");
        let e = check_float("rate", 0.0, 0.0, false).unwrap_err();
        assert_eq!(e.to_string(), "rate must be > 0.0, got 0.0");
        let e = check_int("max_attempts", 0, 1).unwrap_err();
        assert_eq!(e.to_string(), "max_attempts must be >= 1, got 0");
        for (v, py) in [
            (-1.5, "-1.5"),
            (f64::NEG_INFINITY, "-inf"),
            (60.0, "60.0"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.234_567_890_123_456_8e17, "1.2345678901234568e+17"),
        ] {
            assert_eq!(py_float(v), py);
        }
    }
}
