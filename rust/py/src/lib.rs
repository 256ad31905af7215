//! riprap._core: thin PyO3 wrappers over riprap-core.
//!
//! Each wrapper extracts arguments, calls the core and converts the result; semantics live in the
//! core (and, for control flow that needs Python objects, in the Python package).

mod adaptive;
mod attr;
mod awaitable;
mod backoff;
mod breaker;
mod budget;
mod bulkhead;
mod call;
mod clock;
mod convert;
mod deadline;
mod errors;
mod keyed;
mod limiter;
mod retry;
mod rng;
mod vectorcall;
mod wakers;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::adaptive::PyAdaptiveBackoff;
    #[pymodule_export]
    use super::awaitable::PyCoroutine;
    #[pymodule_export]
    use super::breaker::{
        PyBreakerAsyncCall, PyBreakerCall, PyBreakerConfig, PyBreakerEngine, PyBreakerPermit,
    };
    #[pymodule_export]
    use super::budget::PyRetryBudget;
    #[pymodule_export]
    use super::bulkhead::{
        PyBulkheadAsyncCall, PyBulkheadCall, PyBulkheadConfig, PyBulkheadEngine, PyBulkheadPermit,
    };
    #[pymodule_export]
    use super::clock::{PyManualClock, monotonic, real_sleeps};
    #[pymodule_export]
    use super::keyed::{PyKeyedLimit, PyKeyedLimitedCall, PyKeyedRateLimiter};
    #[pymodule_export]
    use super::limiter::{PyLimitedAsyncCall, PyLimitedCall, PyRateLimiter};
    #[pymodule_export]
    use super::retry::{
        PyRetryAsyncCall, PyRetryCall, PyRetryCounters, PyRetryEngine, PyRetrySchedule,
    };
    #[pymodule_export]
    use super::rng::{PyRng, note_fork};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        super::awaitable::install(m.py());
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
