//! `RetryBudget`: retries as a fraction of first attempts over a sliding window.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use riprap_core::{Clock, RetryBudget};

use crate::convert::{clock, number};
use crate::errors::config_error;

/// A retry budget shared by every policy that holds it.
#[pyclass(name = "RetryBudget", module = "riprap", frozen)]
pub struct PyRetryBudget {
    inner: RetryBudget,
    clock: Clock,
}

impl PyRetryBudget {
    /// Records a first attempt (called natively by `RetryCall`).
    pub(crate) fn deposit_now(&self) {
        self.inner.deposit(self.clock.now());
    }

    /// Takes one retry on the budget's own clock.
    pub(crate) fn try_withdraw_now(&self) -> bool {
        self.inner.try_withdraw(self.clock.now())
    }
}

#[pymethods]
impl PyRetryBudget {
    #[new]
    #[pyo3(signature = (ratio = None, min_per_second = None, window = None, *, clock = None))]
    fn new(
        ratio: Option<&Bound<'_, PyAny>>,
        min_per_second: Option<&Bound<'_, PyAny>>,
        window: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let get = |field: &str, v: Option<&Bound<'_, PyAny>>, default: f64| match v {
            Some(v) => number(field, v),
            None => Ok(default),
        };
        let inner = RetryBudget::new(
            get("ratio", ratio, 0.2)?,
            get("min_per_second", min_per_second, 3.0)?,
            get("window", window, 10.0)?,
        )
        .map_err(config_error)?;
        Ok(Self {
            inner,
            clock: self::clock(clock)?,
        })
    }

    /// Records a first attempt.
    fn deposit(&self) {
        self.deposit_now();
    }

    /// Takes one retry from the budget; `False` means the retry must not be made.
    fn try_withdraw(&self) -> bool {
        self.try_withdraw_now()
    }

    #[getter]
    fn ratio(&self) -> f64 {
        self.inner.params().0
    }

    #[getter]
    fn min_per_second(&self) -> f64 {
        self.inner.params().1
    }

    #[getter]
    fn window(&self) -> f64 {
        self.inner.params().2
    }

    /// Counters: the window's first attempts and retries, what is left, and lifetime totals.
    fn get_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats(self.clock.now());
        let (ratio, min_per_second, window) = self.inner.params();
        let d = PyDict::new(py);
        d.set_item("ratio", ratio)?;
        d.set_item("min_per_second", min_per_second)?;
        d.set_item("window", window)?;
        d.set_item("deposits", s.deposits)?;
        d.set_item("withdrawals", s.withdrawals)?;
        d.set_item("available", s.available)?;
        d.set_item("total_deposits", s.total_deposits)?;
        d.set_item("total_withdrawals", s.total_withdrawals)?;
        d.set_item("total_refused", s.total_refused)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let (r, m, w) = self.inner.params();
        format!("RetryBudget(ratio={r}, min_per_second={m}, window={w})")
    }
}
