//! `BulkheadPermit`: one slot, handed back once.

use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use riprap_core::Bulkhead;
use riprap_core::bulkhead::Slot;

/// One slot of a bulkhead; hand it back once with `release`.
#[pyclass(name = "BulkheadPermit", module = "riprap", frozen)]
pub struct PyBulkheadPermit {
    pub(crate) slot: Mutex<Option<Slot>>,
}

impl PyBulkheadPermit {
    pub(crate) fn new(slot: Slot) -> Self {
        Self {
            slot: Mutex::new(Some(slot)),
        }
    }

    pub(crate) fn check(bulkhead: &Bulkhead, slot: Option<&Slot>) -> PyResult<()> {
        if slot.is_some_and(|s| !bulkhead.owns(s)) {
            return Err(PyValueError::new_err(
                "this permit belongs to another bulkhead",
            ));
        }
        Ok(())
    }

    /// Takes the slot out (`None` if it was returned already); another bulkhead's permit is a
    /// `ValueError` and stays where it is.
    pub(crate) fn take(&self, bulkhead: &Bulkhead) -> PyResult<Option<Slot>> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        Self::check(bulkhead, slot.as_ref())?;
        Ok(slot.take())
    }
}

#[pymethods]
impl PyBulkheadPermit {
    /// Whether the permit was handed back already.
    #[getter]
    fn returned(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }
}
