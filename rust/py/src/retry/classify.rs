//! What a retry policy reads from a failure: whether it is retryable, and the delay it asks for
//! (Retry-After).
//!
//! Retryable means, in order: an `Exception` (control-flow exceptions never are); not one of
//! riprap's own rejections (`RateLimitExceeded`, `BulkheadRejectedError`, `CircuitOpenError`:
//! load shedding must not turn into waiting) unless the policy names that rejection's class (or
//! a riprap base class of it) in `retryable_exceptions`; then an instance of a retryable class,
//! an exception whose `status_code` (or `status`) is a retryable `int`, or one whose message
//! contains a retryable pattern (case-insensitive). Rejections are never retried by status code
//! or message.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, intern};

use crate::attr::lookup;
use crate::errors::{rejections, resilience_error};

static PARSE_RETRY_AFTER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The classification part of a retry policy.
pub(crate) struct Classifier {
    retryable: Py<PyTuple>,
    /// The retryable classes that are riprap's own (they make its rejections retryable).
    named_rejections: Py<PyTuple>,
    status_codes: Vec<i64>,
    patterns: Vec<String>,
    respect_retry_after: bool,
}

impl Classifier {
    pub(crate) fn new(
        py: Python<'_>,
        retryable: Py<PyTuple>,
        status_codes: Vec<i64>,
        patterns: Vec<String>,
        respect_retry_after: bool,
    ) -> PyResult<Self> {
        let base = resilience_error(py);
        let mut named = Vec::new();
        for t in retryable.bind(py) {
            if let Ok(t) = t.cast::<PyType>()
                && t.is_subclass(&base)?
            {
                named.push(t.clone());
            }
        }
        Ok(Self {
            named_rejections: PyTuple::new(py, named)?.unbind(),
            retryable,
            status_codes,
            patterns,
            respect_retry_after,
        })
    }

    /// Whether the policy retries `exc` (see the module docs).
    pub(crate) fn retryable(&self, exc: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = exc.py();
        if !exc.is_instance_of::<PyException>() {
            return Ok(false);
        }
        if exc.is_instance(rejections(py)?)? {
            let named = self.named_rejections.bind(py);
            return Ok(!named.is_empty() && exc.is_instance(named)?);
        }
        if exc.is_instance(self.retryable.bind(py))? {
            return Ok(true);
        }
        if !self.status_codes.is_empty() {
            let mut status = lookup(exc, intern!(py, "status_code"))?;
            if status.as_ref().is_none_or(PyAnyMethods::is_none) {
                status = lookup(exc, intern!(py, "status"))?;
            }
            if let Some(s) = status
                && s.is_instance_of::<PyInt>()
                && let Ok(code) = s.extract::<i64>()
                && self.status_codes.contains(&code)
            {
                return Ok(true);
            }
        }
        if !self.patterns.is_empty() {
            let lowered = exc.str()?.call_method0(intern!(py, "lower"))?;
            let message = lowered.cast::<PyString>()?.to_cow()?;
            return Ok(self.patterns.iter().any(|p| message.contains(p.as_str())));
        }
        Ok(false)
    }

    /// The delay `exc` asks for (seconds), when the policy respects Retry-After: its
    /// `retry_after` number, or its (or its `response`'s) `headers["Retry-After"]`.
    pub(crate) fn retry_after(&self, exc: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        if !self.respect_retry_after {
            return Ok(None);
        }
        let py = exc.py();
        if let Some(ra) = lookup(exc, intern!(py, "retry_after"))?
            && !ra.is_instance_of::<PyBool>()
            && (ra.is_instance_of::<PyInt>() || ra.is_instance_of::<PyFloat>())
        {
            return Ok(Some(ra.extract::<f64>()?));
        }
        let headers = match lookup(exc, intern!(py, "headers"))? {
            Some(h) if !h.is_none() => h,
            _ => match lookup(exc, intern!(py, "response"))? {
                Some(r) if !r.is_none() => match lookup(&r, intern!(py, "headers"))? {
                    Some(h) => h,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            },
        };
        let Some(get) = lookup(&headers, intern!(py, "get"))? else {
            return Ok(None);
        };
        let value = match get.call1(("Retry-After",)) {
            Ok(v) if v.is_truthy().unwrap_or(false) => v,
            Ok(_) => match get.call1(("retry-after",)) {
                Ok(v) => v,
                Err(e) if e.is_instance_of::<PyException>(py) => return Ok(None),
                Err(e) => return Err(e),
            },
            Err(e) if e.is_instance_of::<PyException>(py) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !value.is_instance_of::<PyString>() {
            return Ok(None);
        }
        let parse = PARSE_RETRY_AFTER.get_or_try_init(py, || -> PyResult<_> {
            Ok(py
                .import("riprap._http")?
                .getattr("parse_retry_after")?
                .unbind())
        })?;
        parse.bind(py).call1((value,))?.extract()
    }

    pub(crate) fn traverse(&self, visit: &pyo3::gc::PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.retryable)?;
        visit.call(&self.named_rejections)
    }
}
