//! Argument extraction with errors that name the field.
//!
//! The core validates values (ranges, NaN, inf); this module checks Python types, so `True` is
//! refused where a number is meant and a string gets a `TypeError` instead of a confusing cast.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};
use riprap_core::Clock;

use crate::clock::PyManualClock;

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |n| n.to_string())
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
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(v.py()) => Err(
            PyValueError::new_err(format!("{field} must be a finite number, got {v}")),
        ),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{field} must be a number, got {}",
            type_name(v)
        ))),
    }
}

/// A whole count: `int`, never `bool`; negative values are refused.
pub(crate) fn count(field: &str, v: &Bound<'_, PyAny>) -> PyResult<u64> {
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{field} must be an int, got {}",
            type_name(v)
        )));
    }
    match v.extract::<u64>() {
        Ok(n) => Ok(n),
        Err(_) if v.lt(0)? => Err(PyValueError::new_err(format!(
            "{field} must be >= 0, got {v}"
        ))),
        // Larger than u64::MAX: saturate (an attempt number of 2**70 behaves like 2**64 - 1).
        Err(_) => Ok(u64::MAX),
    }
}

/// An attempt number: an `int >= 1`, saturating above `u64::MAX`.
pub(crate) fn attempt(v: &Bound<'_, PyAny>) -> PyResult<u64> {
    let n = count("attempt", v)?;
    if n == 0 {
        return Err(PyValueError::new_err("attempt must be >= 1, got 0"));
    }
    Ok(n)
}

/// `clock=`: `None` (monotonic) or a `riprap.testing.ManualClock`.
pub(crate) fn clock(v: Option<&Bound<'_, PyAny>>) -> PyResult<Clock> {
    match v {
        None => Ok(Clock::Monotonic),
        Some(obj) if obj.is_none() => Ok(Clock::Monotonic),
        Some(obj) => match obj.cast::<PyManualClock>() {
            Ok(c) => Ok(Clock::Manual(c.get().inner.clone())),
            Err(_) => Err(PyTypeError::new_err(format!(
                "clock must be a riprap.testing.ManualClock or None, got {}",
                type_name(obj)
            ))),
        },
    }
}
