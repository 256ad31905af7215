//! `BulkheadEngine` (a core bulkhead with its clock, the exception classification of its
//! adaptive mode and its waiters), with `BulkheadConfig` (`bulkhead/config.rs`),
//! `BulkheadPermit` (`bulkhead/permit.rs`) and `BulkheadCall` (the native wrapper `@bulkhead`
//! puts around a sync function, `bulkhead/call.rs`).
//!
//! Why native: a bulkhead guards every call to a dependency, with a budget of ~60 ns added per
//! decorated call and ~120 ns per `with` block. While a slot is free and nobody waits, a call
//! is one compare-and-swap in and one out, with no clock read and no lock.
//!
//! Waiting: sync callers wait here, parked with the interpreter released, in slices of at most
//! 50 ms with a signal check between them (Ctrl-C works), woken the moment their slot is handed
//! over. Async callers wait in Python: they queue with `_acquire`, register a wake-up callback
//! with `_watch` and collect their slot with `_claim`; `_cancel` gives a place (or a slot handed
//! over in the same tick) back. A caller that would wait also states its deadline (the innermost
//! `riprap.deadline` / `riprap.timeout` in force, read from `riprap._deadlines`) and whether it
//! already holds a slot of this bulkhead (then it is rejected instead of deadlocking).
//!
//! Classification (adaptive mode only): no exception is a success; an exception that is not an
//! `Exception` (`CancelledError`, `KeyboardInterrupt`, ...) cancels; one of the `ignored` types
//! (riprap's own rejections from an inner layer) is no sample; any other is a failure.

mod call;
mod config;
mod permit;
mod waiting;

use std::sync::PoisonError;

use pyo3::exceptions::{PyException, PyRuntimeError, PyStopIteration};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{PyTraverseError, ffi, intern};
use riprap_core::bulkhead::{Claim, Ending, Entry, Rejection, Request, Slot};
use riprap_core::{Bulkhead, BulkheadConfig, Clock, nanos_to_secs, secs_to_nanos};

pub(crate) use call::{BulkheadGuard, PyBulkheadAsyncCall, PyBulkheadCall};
pub(crate) use config::PyBulkheadConfig;
pub(crate) use permit::PyBulkheadPermit;
use waiting::{Waker, Wakers, hold, holds, take_slot};

use crate::attr::lookup;
use crate::convert::{clock as extract_clock, number};
use crate::deadline;
use crate::errors::{bulkhead_rejected, config_error};

/// Whether `obj` is a `contextvars.ContextVar`.
fn context_var(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a type check on a valid reference.
    unsafe { ffi::PyContextVar_CheckExact(obj.as_ptr()) != 0 }
}

/// A bulkhead: the core state machine plus its clock, classification and waiters.
#[pyclass(name = "BulkheadEngine", module = "riprap", frozen, subclass, weakref)]
pub struct PyBulkheadEngine {
    pub(crate) inner: Bulkhead,
    pub(crate) clock: Clock,
    clock_obj: Option<Py<PyAny>>,
    name: Py<PyString>,
    ignored: Py<PyTuple>,
    held: Option<Py<PyAny>>,
    wakers: Wakers,
}

impl PyBulkheadEngine {
    fn build(
        py: Python<'_>,
        name: Py<PyString>,
        config: BulkheadConfig,
        clock: Option<&Bound<'_, PyAny>>,
        ignored: Option<Py<PyTuple>>,
        held: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        Ok(Self {
            inner: Bulkhead::new(config).map_err(config_error)?,
            clock: extract_clock(clock)?,
            clock_obj: clock.filter(|c| !c.is_none()).map(|c| c.clone().unbind()),
            name,
            ignored: ignored.unwrap_or_else(|| PyTuple::empty(py).unbind()),
            held: match held.filter(|h| !h.is_none(py)) {
                Some(var) if !context_var(var.bind(py)) => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "held must be a contextvars.ContextVar, got {}",
                        crate::convert::type_name(var.bind(py))
                    )));
                }
                held => held,
            },
            wakers: Wakers::default(),
        })
    }

    /// A fresh `BulkheadRejectedError(name, message)` saying why.
    fn rejected(&self, py: Python<'_>, why: Rejection) -> PyErr {
        let reason = match why {
            Rejection::QueueFull => "every slot is busy and the queue is full".to_owned(),
            Rejection::Reentrant => "the caller already holds a slot of this bulkhead, and \
                                     waiting for another could deadlock"
                .to_owned(),
            Rejection::Deadline {
                left: 0,
                expected_wait: _,
            } => "the caller's deadline has passed".to_owned(),
            Rejection::Deadline {
                left,
                expected_wait,
            } => format!(
                "the caller's deadline is {:.3}s away but the expected wait is {:.3}s",
                nanos_to_secs(left),
                nanos_to_secs(expected_wait.unwrap_or(0))
            ),
            Rejection::MaxWait => format!(
                "no slot came within max_wait ({:.3}s)",
                self.inner.config().max_wait.unwrap_or(0.0)
            ),
            Rejection::Gone => "its place in the queue is gone".to_owned(),
        };
        let name = self.name.bind(py);
        let name = name
            .repr()
            .map_or_else(|_| "?".to_owned(), |r| r.to_string());
        let message = format!("bulkhead {name} rejected the call: {reason}");
        bulkhead_rejected(py, &self.name, message)
    }

    /// What a call that ended with `exc` (`None`: it returned) means for the adaptive limit.
    fn ending(&self, exc: Option<&Bound<'_, PyAny>>) -> PyResult<Ending> {
        let Some(exc) = exc else {
            return Ok(Ending::Success);
        };
        if !exc.is_instance_of::<PyException>() {
            return Ok(Ending::Cancelled);
        }
        let ignored = self.ignored.bind(exc.py());
        if !ignored.is_empty() && exc.is_instance(ignored)? {
            return Ok(Ending::Ignored);
        }
        Ok(Ending::Failure)
    }

    /// Hands a slot back after a call that ended with `exc`, waking whoever gets it.
    ///
    /// A `TimeoutExceededError` from a `riprap.timeout` inside the call that abandoned its sync
    /// work (still running in a worker thread) carries that work: the slot is counted as timed
    /// out and comes back only when the work really ends, so the bulkhead keeps bounding the
    /// threads that run.
    fn settle(this: &Bound<'_, Self>, slot: Slot, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = this.py();
        let engine = this.get();
        let mut slot = slot;
        if let Some(exc) = exc
            && let Some(work) = lookup(exc, intern!(py, "_riprap_abandoned"))?
        {
            engine.inner.record_timeout(&mut slot);
            let permit = Py::new(py, PyBulkheadPermit::new(slot))?;
            // No exception with it: the slot is timed out, so how the work ends is no sample.
            let release = py
                .import(intern!(py, "functools"))?
                .getattr(intern!(py, "partial"))?
                .call1((this.getattr(intern!(py, "release"))?, permit.clone_ref(py)))?;
            if work
                .call_method1(intern!(py, "on_end"), (release,))?
                .is_truthy()?
            {
                return Ok(()); // released by the worker thread when the work ends
            }
            // The work ended meanwhile: release now.
            match permit.get().take(&engine.inner)? {
                Some(s) => slot = s,
                None => return Ok(()),
            }
        }
        let (ending, err) = match engine.ending(exc) {
            Ok(e) => (e, None),
            // A failing `__instancecheck__`: the slot still comes back; the error surfaces.
            Err(e) => (Ending::Ignored, Some(e)),
        };
        if let Err(slot) = engine.inner.try_release(slot) {
            let woken = engine.inner.release(slot, engine.clock.now(), ending);
            engine.wakers.wake(py, &woken);
        }
        err.map_or(Ok(()), Err)
    }

    /// The rest of a guarded call once its function returned or raised.
    fn finish<'py>(
        this: &Bound<'py, Self>,
        slot: Slot,
        result: PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = this.py();
        match result {
            Ok(value) => {
                Self::settle(this, slot, None)?;
                Ok(value)
            }
            Err(err) => {
                let exc = err.value(py).clone().into_any();
                Self::settle(this, slot, Some(&exc))?;
                Err(err)
            }
        }
    }

    /// Whether the caller holds a slot of this bulkhead: on this thread, or (read from the
    /// `held` context variable) in the current asyncio task.
    fn reentrant(&self, py: Python<'_>) -> PyResult<bool> {
        if holds(self.inner.id()) {
            return Ok(true);
        }
        match &self.held {
            Some(var) => var.bind(py).call_method0(intern!(py, "get"))?.is_truthy(),
            None => Ok(false),
        }
    }

    /// Marks the current task (its context) as holding a slot of this bulkhead: tasks it
    /// creates meanwhile inherit the mark. Returns the token that takes the mark back
    /// (`None`: this engine has no context variable).
    fn mark_task<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(var) = &self.held else {
            return Ok(None);
        };
        // SAFETY: `var` is a ContextVar (checked at construction); PyContextVar_Set returns a
        // new reference to a token, or NULL with an exception set.
        let token = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyContextVar_Set(var.as_ptr(), ffi::Py_True()))
        }?;
        Ok(Some(token))
    }

    /// Takes back the mark `mark_task` set.
    fn unmark_task(&self, py: Python<'_>, token: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let (Some(var), Some(token)) = (&self.held, token) else {
            return Ok(());
        };
        // SAFETY: `var` is a ContextVar and `token` one of its tokens; -1 sets an exception.
        if unsafe { ffi::PyContextVar_Reset(var.as_ptr(), token.as_ptr()) } < 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(())
    }

    /// A slot for a sync caller: at once, or after waiting (GIL released).
    fn enter(&self, py: Python<'_>) -> PyResult<Slot> {
        match self.inner.try_acquire(|| self.clock.now()) {
            Some(slot) => Ok(slot),
            None => self.enter_slow(py),
        }
    }

    fn enter_slow(&self, py: Python<'_>) -> PyResult<Slot> {
        let request = Request {
            reentrant: self.reentrant(py)?,
            deadline_left: deadline::remaining(py)?,
        };
        let now = self.clock.now();
        let (entry, woken) = self.inner.acquire(now, request);
        self.wakers.wake(py, &woken);
        match entry {
            Entry::Admit(slot) => Ok(slot),
            Entry::Reject(why) => Err(self.rejected(py, why)),
            Entry::Queued { ticket, .. } => {
                let deadline_at = request.deadline_left.map(|l| now.saturating_add(l));
                self.wait(py, ticket, deadline_at)
            }
        }
    }

    /// Blocks until `ticket` is granted (or rejected, or the deadline comes, or a signal
    /// handler raises): parked with the interpreter released, woken by the release that hands
    /// the slot over. Whatever ends the wait without a slot gives the place back.
    fn wait(&self, py: Python<'_>, ticket: u64, deadline_at: Option<u64>) -> PyResult<Slot> {
        const SLICE: u64 = 50_000_000;
        // A manual clock moves only when a test advances it: look again often.
        const MANUAL_SLICE: u64 = 5_000_000;
        self.wakers
            .watch(ticket, Waker::Thread(std::thread::current()));
        let result = loop {
            let now = self.clock.now();
            let (claim, woken) = self.inner.claim(ticket, now);
            self.wakers.wake(py, &woken);
            let expires_at = match claim {
                Claim::Granted(slot) => break Ok(slot),
                Claim::Rejected(why) => break Err(self.rejected(py, why)),
                Claim::Waiting { expires_at, .. } => expires_at,
            };
            if deadline_at.is_some_and(|d| now >= d) {
                self.give_up(py, ticket);
                break Err(deadline::exceeded(py));
            }
            let until = match (expires_at, deadline_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let slice = match (&self.clock, until) {
                (Clock::Manual(_), Some(_)) => MANUAL_SLICE,
                (_, Some(u)) => u.saturating_sub(now).clamp(1, SLICE),
                (_, None) => SLICE,
            };
            py.detach(|| std::thread::park_timeout(std::time::Duration::from_nanos(slice)));
            if let Err(e) = py.check_signals() {
                self.give_up(py, ticket);
                break Err(e);
            }
        };
        self.wakers.unwatch(ticket);
        result
    }

    fn give_up(&self, py: Python<'_>, ticket: u64) {
        let woken = self.inner.cancel(ticket, self.clock.now());
        self.wakers.wake(py, &woken);
    }

    fn run<'py>(
        this: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let engine = this.get();
        let slot = engine.enter(this.py())?;
        let id = engine.inner.id();
        hold(id, None);
        let result = func.call(args, kwargs);
        waiting::unhold(id);
        Self::finish(this, slot, result)
    }
}

#[pymethods]
impl PyBulkheadEngine {
    #[new]
    #[pyo3(signature = (name, config, *, clock = None, ignored = None, held = None))]
    fn new(
        py: Python<'_>,
        name: Py<PyString>,
        config: &Bound<'_, PyBulkheadConfig>,
        clock: Option<&Bound<'_, PyAny>>,
        ignored: Option<Py<PyTuple>>,
        held: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        Self::build(py, name, config.get().inner.clone(), clock, ignored, held)
    }

    /// The bulkhead's name.
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyString> {
        self.name.clone_ref(py)
    }

    /// The clock given (`None`: the monotonic clock).
    #[getter]
    fn clock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.clock_obj.as_ref().map(|c| c.clone_ref(py))
    }

    /// The admission limit now (it moves only in adaptive mode).
    #[getter]
    fn current_limit(&self) -> u64 {
        self.inner.current_limit()
    }

    /// Seconds a call may run (`execute`, async calls) before it times out.
    #[getter]
    fn timeout(&self) -> f64 {
        self.inner.config().timeout
    }

    /// Seconds a caller may wait in the queue (`None`: no limit).
    #[getter]
    fn max_wait(&self) -> Option<f64> {
        self.inner.config().max_wait
    }

    /// Takes a free slot when nobody waits; `None` otherwise (never waits, never rejects).
    fn try_acquire(&self) -> Option<PyBulkheadPermit> {
        self.inner
            .try_acquire(|| self.clock.now())
            .map(PyBulkheadPermit::new)
    }

    /// A slot, waiting if needed (GIL released, Ctrl-C honoured); raises a fresh
    /// `BulkheadRejectedError` when the queue is full, `max_wait` runs out, the caller's
    /// deadline comes first, or it already holds a slot and would have to wait.
    fn acquire(&self, py: Python<'_>) -> PyResult<PyBulkheadPermit> {
        Ok(PyBulkheadPermit::new(self.enter(py)?))
    }

    /// Hands a permit back: `exc=None` for a call that returned, else the exception it
    /// raised. A second return is a no-op; another bulkhead's permit is a `ValueError`.
    #[pyo3(signature = (permit, exc = None))]
    fn release(
        slf: &Bound<'_, Self>,
        permit: &Bound<'_, PyBulkheadPermit>,
        exc: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        match permit.get().take(&slf.get().inner)? {
            Some(slot) => Self::settle(slf, slot, exc.filter(|e| !e.is_none())),
            None => Ok(()),
        }
    }

    /// Runs `func(*args, **kwargs)` in a slot (what a decorated sync function does).
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn call<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Self::run(slf, func, args, kwargs)
    }

    /// Admits (a permit), queues (a ticket, an `int`) or raises `BulkheadRejectedError`; never
    /// waits. `reentrant`: the caller holds a slot of this bulkhead; `deadline`: seconds left
    /// before its deadline.
    #[pyo3(name = "_acquire")]
    fn acquire_nowait(
        &self,
        py: Python<'_>,
        reentrant: bool,
        deadline: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let deadline_left = match deadline {
            Some(d) if !d.is_none() => Some(secs_to_nanos(number("deadline", d)?.max(0.0))),
            _ => None,
        };
        let request = Request {
            reentrant: reentrant || holds(self.inner.id()),
            deadline_left,
        };
        let (entry, woken) = self.inner.acquire(self.clock.now(), request);
        self.wakers.wake(py, &woken);
        match entry {
            Entry::Admit(slot) => Ok(Py::new(py, PyBulkheadPermit::new(slot))?.into_any()),
            Entry::Queued { ticket, .. } => Ok(ticket.into_pyobject(py)?.into_any().unbind()),
            Entry::Reject(why) => Err(self.rejected(py, why)),
        }
    }

    /// The permit `ticket` was granted (`None` while it waits); raises `BulkheadRejectedError`
    /// when `max_wait` ran out or the place is gone.
    #[pyo3(name = "_claim")]
    fn claim(&self, py: Python<'_>, ticket: u64) -> PyResult<Option<PyBulkheadPermit>> {
        let (claim, woken) = self.inner.claim(ticket, self.clock.now());
        self.wakers.wake(py, &woken);
        match claim {
            Claim::Granted(slot) => Ok(Some(PyBulkheadPermit::new(slot))),
            Claim::Waiting { .. } => Ok(None),
            Claim::Rejected(why) => Err(self.rejected(py, why)),
        }
    }

    /// The waiter holding `ticket` gives up: its place, or a slot already handed to it, goes to
    /// the next live waiter.
    #[pyo3(name = "_cancel")]
    fn cancel(&self, py: Python<'_>, ticket: u64) {
        self.give_up(py, ticket);
    }

    /// Calls `callback()` when `ticket` is granted or runs out of `max_wait`.
    #[pyo3(name = "_watch")]
    fn watch(&self, ticket: u64, callback: Py<PyAny>) {
        self.wakers.watch(ticket, Waker::Call(callback));
    }

    /// Forgets `ticket`'s callback.
    #[pyo3(name = "_unwatch")]
    fn unwatch(&self, ticket: u64) {
        self.wakers.unwatch(ticket);
    }

    /// Records that the call holding `permit` timed out (counted; a drop in adaptive mode). The
    /// slot stays taken until the permit is released.
    #[pyo3(name = "_timed_out")]
    fn timed_out(&self, permit: &Bound<'_, PyBulkheadPermit>) -> PyResult<()> {
        let mut slot = permit
            .get()
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        PyBulkheadPermit::check(&self.inner, slot.as_ref())?;
        if let Some(slot) = slot.as_mut() {
            self.inner.record_timeout(slot);
        }
        Ok(())
    }

    /// Calls `func(*args, **kwargs)` with this thread marked as holding a slot of this bulkhead
    /// (a worker thread running a call for a caller that holds the slot); takes no slot.
    #[pyo3(name = "_call_held", signature = (func, /, *args, **kwargs))]
    fn call_held<'py>(
        &self,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = self.inner.id();
        hold(id, None);
        let result = func.call(args, kwargs);
        waiting::unhold(id);
        result
    }

    /// Runs one step of the awaitable `aw` (a coroutine, or an `__await__` iterator): sends
    /// `value` with this thread marked as holding a slot of this bulkhead, so a call the step
    /// makes into the same bulkhead is seen as re-entrant. `(True, result)` when `aw` finished,
    /// `(False, yielded)` when it suspended; its exception propagates.
    #[pyo3(name = "_step")]
    fn step<'py>(
        &self,
        aw: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let py = aw.py();
        let id = self.inner.id();
        hold(id, None);
        let mut out: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: both are valid references while the GIL is held; PyIter_Send leaves a new
        // reference in `out` on PYGEN_RETURN and PYGEN_NEXT, and sets an exception on error.
        let sent = unsafe { ffi::PyIter_Send(aw.as_ptr(), value.as_ptr(), &raw mut out) };
        waiting::unhold(id);
        match sent {
            ffi::PySendResult::PYGEN_RETURN => {
                Ok((true, unsafe { Bound::from_owned_ptr(py, out) }))
            }
            ffi::PySendResult::PYGEN_NEXT => Ok((false, unsafe { Bound::from_owned_ptr(py, out) })),
            ffi::PySendResult::PYGEN_ERROR => Err(PyErr::fetch(py)),
        }
    }

    /// Throws `exc` into the awaitable `aw` (marked as `_step` does): `(True, result)` if it
    /// finished, `(False, yielded)` if it suspended again; any other exception propagates.
    #[pyo3(name = "_throw")]
    fn throw<'py>(
        &self,
        aw: &Bound<'py, PyAny>,
        exc: &Bound<'py, PyAny>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let py = aw.py();
        let id = self.inner.id();
        hold(id, None);
        let result = aw.call_method1(intern!(py, "throw"), (exc,));
        waiting::unhold(id);
        match result {
            Ok(yielded) => Ok((false, yielded)),
            Err(e) if e.is_instance_of::<PyStopIteration>(py) => {
                Ok((true, e.value(py).getattr(intern!(py, "value"))?))
            }
            Err(e) => Err(e),
        }
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        let slot = this.enter(slf.py())?;
        hold(this.inner.id(), Some(slot));
        Ok(slf.clone())
    }

    #[pyo3(signature = (_exc_type = None, exc = None, _tb = None))]
    fn __exit__(
        slf: &Bound<'_, Self>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let this = slf.get();
        let Some(slot) = take_slot(this.inner.id()) else {
            return Err(PyRuntimeError::new_err(format!(
                "bulkhead {}: exit without a matching enter on this thread",
                this.name.bind(slf.py()).repr()?
            )));
        };
        Self::settle(slf, slot, exc.filter(|e| !e.is_none()))
    }

    /// A snapshot; see `Bulkhead.get_stats`. Waiters whose `max_wait` ran out are rejected
    /// first (and woken).
    fn get_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (s, woken) = self.inner.stats(self.clock.now());
        self.wakers.wake(py, &woken);
        let c = self.inner.config();
        let total = s.total_calls();
        let rejected = s.rejected.total();
        let d = PyDict::new(py);
        d.set_item("name", self.name.bind(py))?;
        d.set_item("active_calls", s.active)?;
        d.set_item("queued_calls", s.queued)?;
        d.set_item("rejected_calls", rejected)?;
        d.set_item("total_calls", total)?;
        d.set_item(
            "rejection_rate",
            if total == 0 {
                0.0
            } else {
                rejected as f64 / total as f64
            },
        )?;
        d.set_item(
            "utilization",
            s.active as f64 / c.max_concurrent_calls as f64,
        )?;
        let config = PyDict::new(py);
        config.set_item("max_concurrent", c.max_concurrent_calls)?;
        config.set_item("max_queue_size", c.max_queue_size)?;
        config.set_item("timeout", c.timeout)?;
        config.set_item("isolation_level", c.isolation_level.as_str())?;
        config.set_item("max_wait", c.max_wait)?;
        config.set_item("slow_call_duration", c.slow_call_duration)?;
        d.set_item("config", config)?;
        d.set_item("current_limit", s.limit)?;
        d.set_item("admitted_calls", s.admitted)?;
        d.set_item("waited_calls", s.waited)?;
        d.set_item("cancelled_waits", s.cancelled_waits)?;
        d.set_item("timed_out_calls", s.timed_out)?;
        d.set_item("running_after_timeout", s.running_after_timeout)?;
        d.set_item("average_duration", s.average_duration.map(nanos_to_secs))?;
        d.set_item("rejected_queue_full", s.rejected.queue_full)?;
        d.set_item("rejected_max_wait", s.rejected.max_wait)?;
        d.set_item("rejected_deadline", s.rejected.deadline)?;
        d.set_item("rejected_reentrant", s.rejected.reentrant)?;
        Ok(d)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.clock_obj)?;
        visit.call(&self.name)?;
        visit.call(&self.ignored)?;
        visit.call(&self.held)?;
        self.wakers.traverse(&visit)
    }

    fn __clear__(&self) {
        self.wakers.clear();
    }
}
