//! `RetryCounters`: the counters of one retried operation, shared by every `RetryEngine` that
//! runs it and read by the monitor and the Prometheus collector at scrape time.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use riprap_core::{DURATION_BOUNDS, RetryCounters, nanos_to_secs};

/// Attempts by number, final successes and failures, and a duration histogram (when timing is
/// on) of one retried operation.
#[pyclass(name = "RetryCounters", module = "riprap", frozen)]
pub struct PyRetryCounters {
    pub(crate) inner: RetryCounters,
}

#[pymethods]
impl PyRetryCounters {
    #[new]
    fn new() -> Self {
        Self {
            inner: RetryCounters::new(),
        }
    }

    /// Upper bounds (seconds) of the duration histogram's buckets; an unbounded one follows.
    #[classattr]
    fn duration_bounds() -> Vec<f64> {
        DURATION_BOUNDS.to_vec()
    }

    /// Whether call durations are measured.
    #[getter]
    fn timing(&self) -> bool {
        self.inner.timing()
    }

    /// Turns the duration histogram on or off.
    fn set_timing(&self, on: bool) {
        self.inner.set_timing(on);
    }

    /// The counts now: `attempts` (finished attempts by number; the last entry counts every
    /// attempt from the tenth on), `successes`, `failures`, `buckets` (timed calls per duration
    /// bucket, not cumulative), `sum` (seconds) and `count` (timed calls).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.snapshot();
        let d = PyDict::new(py);
        d.set_item("attempts", s.attempts.to_vec())?;
        d.set_item("successes", s.successes)?;
        d.set_item("failures", s.failures)?;
        d.set_item("buckets", s.buckets.to_vec())?;
        d.set_item("sum", nanos_to_secs(s.sum_nanos))?;
        d.set_item("count", s.timed_calls())?;
        Ok(d)
    }

    /// Records outcomes by hand (what the engines do): `failed_attempt(n)`.
    fn failed_attempt(&self, attempt: u64) {
        self.inner.failed_attempt(attempt);
    }

    /// Records that a call succeeded at attempt `attempt`, after `seconds` if timed.
    #[pyo3(signature = (attempt, seconds = None))]
    fn succeeded(&self, attempt: u64, seconds: Option<f64>) {
        self.inner.succeeded(attempt, seconds);
    }

    /// Records that a call ended without an accepted result, after `seconds` if timed.
    #[pyo3(signature = (seconds = None))]
    fn gave_up(&self, seconds: Option<f64>) {
        self.inner.gave_up(seconds);
    }
}
