//! The jitter PRNG, exposed so tests can check both backends draw the same numbers.

use pyo3::prelude::*;
use riprap_core::Rng;

/// wyrand: `Rng(seed)` gives the same stream on both backends; `Rng()` seeds from entropy.
#[pyclass(name = "Rng", module = "riprap", frozen)]
pub struct PyRng {
    inner: Rng,
}

#[pymethods]
impl PyRng {
    #[new]
    #[pyo3(signature = (seed = None))]
    fn new(seed: Option<u64>) -> Self {
        Self {
            inner: Rng::new(seed),
        }
    }

    /// The next 64 random bits.
    fn next_u64(&self) -> u64 {
        self.inner.next_u64()
    }

    /// A uniform float in `[0, 1)`.
    fn next_f64(&self) -> f64 {
        self.inner.next_f64()
    }
}

/// Tells every unseeded generator the process forked (registered with `os.register_at_fork`).
#[pyfunction]
pub(crate) fn note_fork() {
    riprap_core::note_fork();
}
