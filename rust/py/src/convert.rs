//! Argument extraction with errors that name the field: the binding's one place for checks.
//!
//! The core validates values (ranges, NaN, inf) and names the field in its `ConfigError`; this
//! module checks Python types first, so `True` is refused where a number is meant and a string
//! gets a `TypeError` instead of a confusing cast. `riprap._validate` is the Python twin: every
//! message here reads the same there, so a bad argument gets the same error on both backends.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};
use riprap_core::{Clock, ConfigError, Quota, check_float, check_int, secs_to_nanos};

use crate::clock::PyManualClock;
use crate::errors::config_error;

/// The name of `v`'s type, for messages.
pub(crate) fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |n| n.to_string())
}

/// Whether an optional argument was given (neither left out nor `None`).
fn given<'a, 'py>(v: Option<&'a Bound<'py, PyAny>>) -> Option<&'a Bound<'py, PyAny>> {
    v.filter(|v| !v.is_none())
}

/// A number of seconds (or any real number): `int` or `float`, never `bool`.
pub(crate) fn number(field: &str, v: &Bound<'_, PyAny>) -> PyResult<f64> {
    if v.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{field} must be a number, got bool"
        )));
    }
    match v.extract::<f64>() {
        Ok(x) => Ok(x),
        Err(e) if e.is_instance_of::<PyOverflowError>(v.py()) => Err(PyValueError::new_err(
            format!("{field} must be a finite number, got {v}"),
        )),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{field} must be a number, got {}",
            type_name(v)
        ))),
    }
}

/// `None` (or left out) or a number.
pub(crate) fn optional_number(field: &str, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    given(v).map(|v| number(field, v)).transpose()
}

/// Seconds as whole nanoseconds: finite and `>= 0` (`> 0` unless `zero_ok`).
pub(crate) fn nanos(field: &'static str, v: &Bound<'_, PyAny>, zero_ok: bool) -> PyResult<u64> {
    let s = check_float(field, number(field, v)?, 0.0, zero_ok).map_err(config_error)?;
    Ok(secs_to_nanos(s))
}

/// A whole count in `min..=max`: an `int`, never `bool`.
pub(crate) fn int_in(
    field: &'static str,
    v: &Bound<'_, PyAny>,
    min: i128,
    max: u64,
) -> PyResult<u64> {
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{field} must be an int, got {}",
            type_name(v)
        )));
    }
    match v.extract::<i128>() {
        Ok(n) => {
            check_int(field, n, min).map_err(config_error)?;
            if n > i128::from(max) {
                return Err(config_error(ConfigError::IntTooLarge {
                    field,
                    value: n,
                    max: i128::from(max),
                }));
            }
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        }
        Err(_) if v.lt(0)? => Err(PyValueError::new_err(format!(
            "{field} must be >= {min}, got {v}"
        ))),
        Err(_) => Err(PyValueError::new_err(format!(
            "{field} must be <= {max}, got {v}"
        ))),
    }
}

/// A whole count `>= min`: an `int`, never `bool`; above `u64::MAX` saturates (as good as
/// unbounded).
pub(crate) fn int_at_least(field: &'static str, v: &Bound<'_, PyAny>, min: i128) -> PyResult<u64> {
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{field} must be an int, got {}",
            type_name(v)
        )));
    }
    match v.extract::<i128>() {
        Ok(n) => {
            check_int(field, n, min).map_err(config_error)?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        }
        Err(_) if v.lt(0)? => Err(PyValueError::new_err(format!(
            "{field} must be >= {min}, got {v}"
        ))),
        Err(_) => Ok(u64::MAX),
    }
}

/// An attempt number: an `int >= 1`, saturating above `u64::MAX`.
pub(crate) fn attempt(v: &Bound<'_, PyAny>) -> PyResult<u64> {
    int_at_least("attempt", v, 1)
}

/// `clock=`: `None` (monotonic) or a `riprap.testing.ManualClock`.
pub(crate) fn clock(v: Option<&Bound<'_, PyAny>>) -> PyResult<Clock> {
    match given(v) {
        None => Ok(Clock::Monotonic),
        Some(obj) => match obj.cast::<PyManualClock>() {
            Ok(c) => Ok(Clock::Manual(c.get().inner.clone())),
            Err(_) => Err(PyTypeError::new_err(format!(
                "clock must be a riprap.testing.ManualClock or None, got {}",
                type_name(obj)
            ))),
        },
    }
}

/// An id that names something in logs and statistics (`operation_id`): a `str` that is valid
/// as UTF-8 (a lone surrogate is refused rather than replaced, so two ids never merge).
pub(crate) fn text<'a>(field: &str, v: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    let Ok(s) = v.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "{field} must be a str, got {}",
            type_name(v)
        )));
    };
    s.to_str().map_err(|_| {
        let shown = v
            .repr()
            .map_or_else(|_| String::from("?"), |r| r.to_string());
        PyValueError::new_err(format!(
            "{field} must be valid Unicode (no lone surrogates), got {shown}"
        ))
    })
}

/// `name=`: a `str` or `None`.
pub(crate) fn name(v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Py<PyString>>> {
    match given(v) {
        None => Ok(None),
        Some(v) => match v.cast::<PyString>() {
            Ok(s) => Ok(Some(s.clone().unbind())),
            Err(_) => Err(PyTypeError::new_err(format!(
                "name must be a str or None, got {}",
                type_name(v)
            ))),
        },
    }
}

/// A `str` that must be one of `expected` (the core's `ConfigError::Unknown` message).
pub(crate) fn choice(
    field: &'static str,
    v: &Bound<'_, PyAny>,
    expected: &'static [&'static str],
) -> PyResult<&'static str> {
    let Ok(s) = v.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "{field} must be a str, got {}",
            type_name(v)
        )));
    };
    let s = s.to_cow()?;
    expected.iter().copied().find(|e| *e == s).ok_or_else(|| {
        config_error(ConfigError::Unknown {
            field,
            value: s.into_owned(),
            expected,
        })
    })
}

/// `on_limit=`: "wait" (the default: false) or "raise" (true).
pub(crate) fn raises(v: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
    match v {
        None => Ok(false),
        Some(v) => Ok(choice("on_limit", v, &["wait", "raise"])? == "raise"),
    }
}

/// `storage=` and `on_storage_error=` ("local", "fail_open" or "fail_closed"). The mode is
/// validated; `storage` is refused: the core keeps in-process state only, and shared (Redis)
/// state is the public class's job (`riprap.RateLimiter(..., storage=...)` builds a subclass
/// whose native part is its local fallback).
pub(crate) fn no_storage(
    what: &str,
    storage: Option<&Bound<'_, PyAny>>,
    on_storage_error: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    if let Some(mode) = given(on_storage_error) {
        choice(
            "on_storage_error",
            mode,
            &["local", "fail_open", "fail_closed"],
        )?;
    }
    match given(storage) {
        Some(_) => Err(pyo3::exceptions::PyNotImplementedError::new_err(format!(
            "the core {what} keeps in-process state only: use riprap.{what}(..., storage=...)"
        ))),
        None => Ok(()),
    }
}

/// `rate=` and `burst=` as a validated quota.
pub(crate) fn quota(rate: &Bound<'_, PyAny>, burst: Option<&Bound<'_, PyAny>>) -> PyResult<Quota> {
    let rate = number("rate", rate)?;
    Quota::new(rate, optional_number("burst", burst)?).map_err(config_error)
}

/// `n=`: a whole number of tokens, `1 <= n <= burst`, as its cost in nanoseconds. Floats (NaN
/// included) are a `ValueError`; other types a `TypeError`.
pub(crate) fn cost(quota: &Quota, n: Option<&Bound<'_, PyAny>>) -> PyResult<u64> {
    let Some(n) = n else {
        return Ok(quota.interval_ns());
    };
    if n.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err("n must be an int, got bool"));
    }
    if n.is_instance_of::<PyInt>() {
        return match n.extract::<u64>() {
            Ok(v) => quota.cost(v).map_err(config_error),
            Err(_) if n.lt(1)? => Err(PyValueError::new_err(format!("n must be >= 1, got {n}"))),
            Err(_) => Err(PyValueError::new_err(format!(
                "n must be <= burst ({}), got {n}",
                PyFloat::new(n.py(), quota.burst()).repr()?
            ))),
        };
    }
    if n.is_instance_of::<PyFloat>() {
        return Err(PyValueError::new_err(format!(
            "n must be a whole number of tokens (an int), got {}",
            n.repr()?
        )));
    }
    Err(PyTypeError::new_err(format!(
        "n must be an int, got {}",
        type_name(n)
    )))
}

/// A wait bound such as `timeout=`: `None` (wait as long as it takes) or seconds `>= 0`, as
/// nanoseconds.
pub(crate) fn max_wait(field: &'static str, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    given(v).map(|v| nanos(field, v, true)).transpose()
}
