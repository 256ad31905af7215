//! `RateLimiter` (a GCRA token bucket) and `LimitedCall` (the native wrapper `@limiter` puts
//! around a sync function), plus the pieces the keyed limiter shares: argument checks, the
//! blocking wait, `RateLimitExceeded`, and the wake-up registry for async waiters.
//!
//! Why native: `try_acquire` is a lean method (one clock read, one compare-and-swap, one counter),
//! and a decorated sync function is called through vectorcall, so a limited call adds little over
//! `try_acquire` itself. Waiting happens here for sync callers (GIL released in
//! <= 50 ms slices that honour Ctrl-C; a manual clock just advances) and in Python for async
//! callers, which reserve with `_reserve`, wait for `_remaining` to reach zero and report
//! `_complete` or `_cancel`. A cancelled waiter's slot is given back and the waiters behind it
//! move up; `_watch` registers a callback that wakes an async waiter when its slot moved.

use pyo3::PyTraverseError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyString, PyTuple};
use riprap_core::{Clock, Decision, RateLimiter, Reservation, nanos_to_secs};

use crate::awaitable::{Driver, Guard, Step, close_quietly, guarded_call, guarded_call_tp};
use crate::call::{AsyncCallEngine, CallEngine, native_async_call, native_call};
use crate::clock::sleep_detached;
use crate::convert::{clock as extract_clock, cost, max_wait, name, no_storage, quota, raises};
use crate::deadline;
use crate::errors::rate_limited;
use crate::vectorcall::{Args, Fast};
use crate::wakers::Wakers;

/// Blocks until `remaining(now)` is 0: a manual clock advances; real time is slept with the
/// interpreter released, in slices of at most 50 ms with a signal check after each, so Ctrl-C
/// interrupts the wait (the caller then cancels the reservation).
pub(crate) fn wait_until_due(
    py: Python<'_>,
    clock: &Clock,
    remaining: impl Fn(u64) -> u64,
) -> PyResult<()> {
    const SLICE: u64 = 50_000_000;
    // An enclosing `riprap.deadline` / `riprap.timeout`: a wait that would end after it is not
    // started (the caller then gives the reservation back).
    if let Some(left) = deadline::remaining(py)?
        && remaining(clock.now()) > left
    {
        return Err(deadline::exceeded(py));
    }
    loop {
        let left = remaining(clock.now());
        if left == 0 {
            return Ok(());
        }
        match clock {
            Clock::Manual(m) => m.advance(left),
            Clock::Monotonic => {
                sleep_detached(py, std::time::Duration::from_nanos(left.min(SLICE)));
                py.check_signals()?;
            }
        }
    }
}

/// A GCRA token bucket: `rate` tokens per second, `burst` at most, starting full.
#[pyclass(name = "RateLimiter", module = "riprap", frozen, subclass, weakref)]
pub struct PyRateLimiter {
    inner: RateLimiter,
    clock: Clock,
    clock_obj: Option<Py<PyAny>>,
    name: Option<Py<PyString>>,
    raise_on_limit: bool,
    wakers: Wakers,
}

impl PyRateLimiter {
    /// One token if it is there now (counted only when taken): the async decorator's fast path.
    #[inline]
    fn admit_now(&self) -> bool {
        self.inner
            .admit_now_cost(self.inner.quota().interval_ns(), self.clock.now())
    }

    /// One token, as `@limiter` and `with limiter:` take it: admitted, queued, or refused.
    #[inline]
    fn reserve_one(&self) -> Reservation {
        let max_wait = if self.raise_on_limit { Some(0) } else { None };
        self.inner
            .reserve_cost(self.inner.quota().interval_ns(), self.clock.now(), max_wait)
    }

    fn refused(&self, py: Python<'_>, wait: u64) -> PyErr {
        rate_limited(py, self.name.as_ref(), wait)
    }

    /// Waits for `ticket`'s slot; on interruption, gives the reservation back and re-raises.
    fn wait_ticket(&self, py: Python<'_>, ticket: u64) -> PyResult<()> {
        match wait_until_due(py, &self.clock, |now| self.inner.remaining(ticket, now)) {
            Ok(()) => {
                self.inner.complete(ticket);
                Ok(())
            }
            Err(e) => {
                self.cancel_ticket(py, ticket);
                Err(e)
            }
        }
    }

    fn cancel_ticket(&self, py: Python<'_>, ticket: u64) {
        if self.inner.cancel(ticket) {
            self.wakers.wake_after(py, ticket);
        }
    }

    /// Takes one token for a decorated call or a `with` block, waiting or raising per
    /// `on_limit`.
    fn enter(&self, py: Python<'_>) -> PyResult<()> {
        match self.reserve_one() {
            Reservation::Admitted => Ok(()),
            Reservation::Refused { wait } => Err(self.refused(py, wait)),
            Reservation::Queued { ticket, .. } => self.wait_ticket(py, ticket),
        }
    }
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(
        signature = (rate, burst = None, *, name = None, on_limit = None, clock = None, storage = None, on_storage_error = None),
        text_signature = "(rate, burst=None, *, name=None, on_limit='wait', clock=None, storage=None, on_storage_error=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        rate: &Bound<'_, PyAny>,
        burst: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        on_limit: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        storage: Option<&Bound<'_, PyAny>>,
        on_storage_error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let quota = quota(rate, burst)?;
        let name = self::name(name)?;
        let raise_on_limit = raises(on_limit)?;
        let core_clock = extract_clock(clock)?;
        no_storage("RateLimiter", storage, on_storage_error)?;
        Ok(Self {
            inner: RateLimiter::new(quota, core_clock.now()),
            clock: core_clock,
            clock_obj: clock.filter(|c| !c.is_none()).map(|c| c.clone().unbind()),
            name,
            raise_on_limit,
            wakers: Wakers::default(),
        })
    }

    /// Takes `n` tokens if they are available now; never waits.
    #[pyo3(signature = (n = None), text_signature = "($self, n=1)")]
    fn try_acquire(&self, n: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let cost = cost(self.inner.quota(), n)?;
        Ok(self.inner.try_acquire_cost(cost, self.clock.now()) == Decision::Admit)
    }

    /// Takes `n` tokens, blocking (GIL released) until they are available; raises
    /// `RateLimitExceeded` at once if the wait would exceed `timeout` seconds.
    #[pyo3(signature = (n = None, timeout = None), text_signature = "($self, n=1, timeout=None)")]
    fn acquire(
        &self,
        py: Python<'_>,
        n: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let cost = cost(self.inner.quota(), n)?;
        let max_wait = max_wait("timeout", timeout)?;
        match self.inner.reserve_cost(cost, self.clock.now(), max_wait) {
            Reservation::Admitted => Ok(()),
            Reservation::Refused { wait } => Err(self.refused(py, wait)),
            Reservation::Queued { ticket, .. } => self.wait_ticket(py, ticket),
        }
    }

    /// Reserves `n` tokens: 0 when admitted at once, else a ticket to wait on (async waiters).
    #[pyo3(name = "_reserve", signature = (n, timeout))]
    fn reserve(
        &self,
        py: Python<'_>,
        n: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let cost = cost(self.inner.quota(), n)?;
        let max_wait = max_wait("timeout", timeout)?;
        match self.inner.reserve_cost(cost, self.clock.now(), max_wait) {
            Reservation::Admitted => Ok(0),
            Reservation::Refused { wait } => Err(self.refused(py, wait)),
            Reservation::Queued { ticket, .. } => Ok(ticket),
        }
    }

    /// Seconds until `ticket`'s slot (0.0: due).
    #[pyo3(name = "_remaining")]
    fn remaining(&self, ticket: u64) -> f64 {
        nanos_to_secs(self.inner.remaining(ticket, self.clock.now()))
    }

    /// The waiter holding `ticket` proceeds.
    #[pyo3(name = "_complete")]
    fn complete(&self, ticket: u64) {
        self.inner.complete(ticket);
    }

    /// The waiter holding `ticket` gave up: give its slot back and wake the waiters behind it.
    #[pyo3(name = "_cancel")]
    fn cancel(&self, py: Python<'_>, ticket: u64) {
        self.cancel_ticket(py, ticket);
    }

    /// Calls `callback()` whenever `ticket`'s slot moves earlier.
    #[pyo3(name = "_watch")]
    fn watch(&self, ticket: u64, callback: Py<PyAny>) {
        self.wakers.watch(ticket, callback);
    }

    /// Forgets `ticket`'s callback.
    #[pyo3(name = "_unwatch")]
    fn unwatch(&self, ticket: u64) {
        self.wakers.unwatch(ticket);
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        slf.get().enter(slf.py())?;
        Ok(slf.clone())
    }

    #[pyo3(signature = (*_exc))]
    #[allow(clippy::unused_self)] // the protocol wants a method; a token taken is spent
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) {}

    /// Counters: `name`, `rate`, `burst`, `admitted`, `rejected`, `waited`.
    fn get_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("name", &self.name)?;
        d.set_item("rate", self.inner.quota().rate())?;
        d.set_item("burst", self.inner.quota().burst())?;
        d.set_item("admitted", s.admitted)?;
        d.set_item("rejected", s.rejected)?;
        d.set_item("waited", s.waited)?;
        Ok(d)
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> Option<Py<PyString>> {
        self.name.as_ref().map(|n| n.clone_ref(py))
    }

    #[getter]
    fn rate(&self) -> f64 {
        self.inner.quota().rate()
    }

    #[getter]
    fn burst(&self) -> f64 {
        self.inner.quota().burst()
    }

    #[getter]
    fn on_limit(&self) -> &'static str {
        if self.raise_on_limit { "raise" } else { "wait" }
    }

    #[getter]
    fn clock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.clock_obj.as_ref().map(|c| c.clone_ref(py))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let q = self.inner.quota();
        let name = match &self.name {
            Some(n) => n.bind(py).repr()?.to_string(),
            None => "None".to_owned(),
        };
        Ok(format!(
            "RateLimiter(rate={}, burst={}, name={name})",
            PyFloat::new(py, q.rate()).repr()?,
            PyFloat::new(py, q.burst()).repr()?,
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.clock_obj)?;
        self.wakers.traverse(&visit)
    }

    fn __clear__(&self) {
        self.wakers.clear();
    }
}

native_call!(
    /// A rate-limited sync function (see `RateLimiter.__call__`).
    PyLimitedCall as "LimitedCall", PyRateLimiter, limiter
);

/// Where the fast path of a limited call left off.
pub(crate) enum Limited {
    /// No token: raise `RateLimitExceeded`.
    Refused(u64),
    /// A slot is reserved: wait for it, then call.
    Queued(u64),
}

impl CallEngine for PyRateLimiter {
    type Pending<'py> = Limited;

    fn fast<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
    ) -> Fast<'py, Limited> {
        let this = slf.get();
        match this.reserve_one() {
            Reservation::Admitted => match args.call(func) {
                Some(result) => Fast::Done(result),
                None => Fast::Raised,
            },
            Reservation::Refused { wait } => Fast::Slow(Limited::Refused(wait)),
            Reservation::Queued { ticket, .. } => Fast::Slow(Limited::Queued(ticket)),
        }
    }

    fn slow<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
        pending: Limited,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = func.py();
        match pending {
            Limited::Refused(wait) => return Err(this.refused(py, wait)),
            Limited::Queued(ticket) => this.wait_ticket(py, ticket)?,
        }
        args.call(func).ok_or_else(|| PyErr::fetch(py))
    }

    fn call<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        this.enter(func.py())?;
        func.call(args, kwargs)
    }
}

native_async_call!(
    /// A rate-limited coroutine function (see `RateLimiter.__call__`). Each call is a riprap
    /// `Coroutine`: it takes its token when first resumed (a call that is never awaited takes
    /// none), then drives the user's coroutine untouched; with no token available now, the
    /// façade's continuation reserves the slot (or raises) and waits.
    PyLimitedAsyncCall as "LimitedAsyncCall", PyRateLimiter, limiter
);

/// A limiter's part in one awaited call: a token when first resumed, nothing after.
pub(crate) struct LimiterGuard {
    limiter: Py<PyRateLimiter>,
    slow: Option<Py<PyAny>>,
}

impl LimiterGuard {
    fn driver(limiter: &Bound<'_, PyRateLimiter>, slow: Option<&Bound<'_, PyAny>>) -> Driver {
        Driver::Limiter(Self {
            limiter: limiter.clone().unbind(),
            slow: slow.map(|s| s.clone().unbind()),
        })
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.limiter)?;
        visit.call(&self.slow)
    }
}

impl Guard for LimiterGuard {
    fn start<'py>(&mut self, py: Python<'py>, inner: Bound<'py, PyAny>) -> Step<'py> {
        if self.limiter.get().admit_now() {
            return Step::Drive(inner);
        }
        let Some(slow) = &self.slow else {
            close_quietly(&inner);
            return Step::Raise(pyo3::exceptions::PyRuntimeError::new_err(
                "LimitedAsyncCall needs its continuation (riprap._limiter)",
            ));
        };
        match slow.bind(py).call1((inner,)) {
            Ok(next) => Step::Handover(next),
            Err(e) => Step::Raise(e),
        }
    }

    fn returned<'py>(&mut self, value: Bound<'py, PyAny>) -> Step<'py> {
        Step::Return(value)
    }

    fn raised<'py>(&mut self, exc: Bound<'py, PyAny>) -> Step<'py> {
        Step::Raise(PyErr::from_value(exc))
    }
}

impl AsyncCallEngine for PyRateLimiter {
    fn call_async<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        slow: Option<&Bound<'py, PyAny>>,
        args: &Args<'py>,
    ) -> Fast<'py, ()> {
        guarded_call(func, args, Ok(LimiterGuard::driver(slf, slow)))
    }

    fn call_async_tp<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        slow: Option<&Bound<'py, PyAny>>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        guarded_call_tp(func, args, kwargs, Ok(LimiterGuard::driver(slf, slow)))
    }
}
