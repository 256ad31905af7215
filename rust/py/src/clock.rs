//! `ManualClock` (shared manual time) and the monotonic clock as seen from Python.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pyo3::prelude::*;
use riprap_core::{Clock, ManualClock, nanos_to_secs, secs_to_nanos};

use crate::convert::nanos;

/// A manually driven clock shared by every primitive given it (`clock=`).
#[pyclass(name = "ManualClock", module = "riprap.testing", frozen, subclass)]
pub struct PyManualClock {
    pub(crate) inner: ManualClock,
}

#[pymethods]
impl PyManualClock {
    #[new]
    #[pyo3(signature = (start = None))]
    fn new(start: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let ns = match start {
            Some(s) => nanos("start", s, true)?,
            None => 0,
        };
        Ok(Self {
            inner: ManualClock::new(ns),
        })
    }

    /// The current time in seconds.
    fn now(&self) -> f64 {
        nanos_to_secs(self.inner.now())
    }

    /// The current time in whole nanoseconds.
    fn now_ns(&self) -> u64 {
        self.inner.now()
    }

    /// Moves time forward by `seconds` (saturating at the end of time).
    fn advance(&self, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.advance(nanos("seconds", seconds, true)?);
        Ok(())
    }

    /// Like `advance`: a sleep on a manual clock passes no real time.
    fn sleep(&self, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
        self.advance(seconds)
    }

    /// Sets the time, forwards or backwards (to test a clock that steps back).
    fn set(&self, seconds: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.set(nanos("seconds", seconds, true)?);
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("ManualClock(now={})", nanos_to_secs(self.inner.now()))
    }
}

/// Seconds on the monotonic clock the Rust primitives use (origin: the first read).
#[pyfunction]
pub(crate) fn monotonic() -> f64 {
    Clock::Monotonic.now_secs()
}

/// Real sleeps (one per slice handed to the OS) native code has made in this process.
static REAL_SLEEPS: AtomicU64 = AtomicU64::new(0);

/// The one place native code sleeps for real: `slice` with the interpreter released, counted.
/// Ctrl-C handling is the caller's (a signal check after each slice).
pub(crate) fn sleep_detached(py: Python<'_>, slice: Duration) {
    REAL_SLEEPS.fetch_add(1, Ordering::Relaxed);
    py.detach(|| std::thread::sleep(slice));
}

/// How many real sleeps native code has made in this process (each slice of a long wait counts
/// once). Tests read it: a patched `time.sleep` cannot see a sleep made in Rust, and "a zero
/// delay never sleeps" is a promise about this count.
#[pyfunction]
pub(crate) fn real_sleeps() -> u64 {
    REAL_SLEEPS.load(Ordering::Relaxed)
}

/// Blocks for `seconds` on `clock`: a manual clock just advances; real time is slept detached
/// from the interpreter in slices of at most 50 ms, checking for signals between slices so
/// Ctrl-C interrupts the wait promptly. Zero (or NaN, or negative) sleeps not at all.
pub(crate) fn sleep(py: Python<'_>, clock: &Clock, seconds: f64) -> PyResult<()> {
    match clock {
        Clock::Manual(m) => {
            m.advance(secs_to_nanos(seconds));
            Ok(())
        }
        Clock::Monotonic => {
            let Ok(total) = Duration::try_from_secs_f64(seconds) else {
                return Ok(()); // NaN or negative: nothing to wait for
            };
            let slice_max = Duration::from_millis(50);
            let start = std::time::Instant::now();
            loop {
                let left = total.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Ok(());
                }
                sleep_detached(py, left.min(slice_max));
                py.check_signals()?;
            }
        }
    }
}
