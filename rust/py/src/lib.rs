//! riprap._core: thin PyO3 wrappers over riprap-core.
//!
//! Each wrapper extracts arguments, calls the core and converts the result; semantics live in the
//! core (and, for control flow that needs Python objects, in the Python package).

mod attr;
mod backoff;
mod breaker;
mod budget;
mod bulkhead;
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
    use super::backoff::{PyAdaptiveBackoff, PyRetrySchedule};
    #[pymodule_export]
    use super::breaker::{PyBreakerCall, PyBreakerConfig, PyBreakerEngine, PyBreakerPermit};
    #[pymodule_export]
    use super::budget::PyRetryBudget;
    #[pymodule_export]
    use super::bulkhead::{PyBulkheadCall, PyBulkheadConfig, PyBulkheadEngine, PyBulkheadPermit};
    #[pymodule_export]
    use super::clock::{PyManualClock, monotonic};
    #[pymodule_export]
    use super::keyed::{PyKeyedLimitedCall, PyKeyedRateLimiter};
    #[pymodule_export]
    use super::limiter::{PyLimitedCall, PyRateLimiter};
    #[pymodule_export]
    use super::retry::{PyRetryCall, PyRetryEngine};
    #[pymodule_export]
    use super::rng::{PyRng, note_fork};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        super::retry::PyRetryCall::enable_vectorcall(m.py())?;
        super::breaker::PyBreakerCall::enable_vectorcall(m.py())?;
        super::limiter::PyLimitedCall::enable_vectorcall(m.py())?;
        super::keyed::PyKeyedLimitedCall::enable_vectorcall(m.py())?;
        super::bulkhead::PyBulkheadCall::enable_vectorcall(m.py())?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
