//! `Coroutine`: a coroutine written in Rust, what an awaited call of a riprap-decorated async
//! function is.
//!
//! Why: a Python `async def` wrapper around the user's coroutine function costs a coroutine
//! object, a frame and a `*args, **kwargs` pack per call, plus one native call before the await
//! and one after; that is more than a primitive's whole decision. This object does the same job
//! without a Python frame: it drives the user's coroutine (forwarding `send`, `throw` and
//! `close`) and lets a [`Guard`] act before the first step (admit: take a breaker permit) and
//! after the last (record the outcome, give the permit back). Anything the guard cannot finish
//! at once (a retry that must sleep) is *handed over* to a Python coroutine that continues the
//! work; from then on this object only forwards to it.
//!
//! It speaks the whole coroutine protocol: `am_send` (the slot CPython's `await` and asyncio's
//! tasks use, so a result comes back without a `StopIteration` object), `__await__`,
//! `__next__`, `send`, `throw` and `close`. `collections.abc.Coroutine` recognises it, so asyncio
//! accepts it wherever it accepts a coroutine (`create_task`, `gather`, `run`, `wait_for`); it is
//! not a `types.CoroutineType` (as Cython's coroutines are not).
//!
//! The guard runs when the coroutine is first resumed, not when the function is called, like
//! the code of an `async def`: a call that is never awaited takes no permit. Control-flow
//! exceptions (`CancelledError` thrown in by a task's cancellation, `GeneratorExit` from
//! `close()`) reach the guard as outcomes like any other, and a coroutine dropped half-way gives
//! its permit back (the guard's `Drop`).
//!
//! A coroutine is resumed by one caller at a time: the state's mutex is only ever `try_lock`ed,
//! and a second resume while one runs gets `ValueError`, as CPython's own coroutines do.

use std::sync::{Mutex, MutexGuard, TryLockError};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{PyTraverseError, PyTypeInfo, intern};

use crate::attr;
use crate::breaker::BreakerGuard;
use crate::bulkhead::BulkheadGuard;
use crate::limiter::LimiterGuard;
use crate::retry::RetryGuard;
use crate::vectorcall::{Args, Fast};

/// What a guard decided: what the coroutine does next.
pub(crate) enum Step<'py> {
    /// Drive this awaitable (the user's coroutine, a wait, a sleep) and report how it ends to
    /// the guard.
    Drive(Bound<'py, PyAny>),
    /// The await continues as an await of this coroutine (a Python continuation): how it ends
    /// is how the await ends.
    Handover(Bound<'py, PyAny>),
    /// The await returns this value.
    Return(Bound<'py, PyAny>),
    /// The await raises this exception.
    Raise(PyErr),
}

/// The work around one awaited call (admission before, bookkeeping after).
pub(crate) trait Guard {
    /// When the coroutine is first resumed. `inner` is the user's coroutine, made when the
    /// function was called; the usual answer is `Step::Drive(inner)`. A guard that ends the
    /// await before driving it (a rejection) closes it (`close_quietly`).
    fn start<'py>(&mut self, py: Python<'py>, inner: Bound<'py, PyAny>) -> Step<'py>;

    /// The awaitable driven last returned `value`.
    fn returned<'py>(&mut self, value: Bound<'py, PyAny>) -> Step<'py>;

    /// The awaitable driven last raised `exc` (any exception, control-flow ones included).
    fn raised<'py>(&mut self, exc: Bound<'py, PyAny>) -> Step<'py>;
}

/// Closes a coroutine that will never be driven (so it does not warn "never awaited"); an
/// error from its `close` is reported as unraisable.
pub(crate) fn close_quietly(coroutine: &Bound<'_, PyAny>) {
    let py = coroutine.py();
    if let Err(e) = coroutine.call_method0(intern!(py, "close")) {
        e.write_unraisable(py, Some(coroutine));
    }
}

/// What a call of a guarded coroutine function returns: a `Coroutine` driving `inner` (the
/// function's coroutine, made when the function was called) under `driver`.
pub(crate) fn guarded<'py>(
    func: &Bound<'py, PyAny>,
    inner: Bound<'py, PyAny>,
    driver: Driver,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(Bound::new(
        func.py(),
        PyCoroutine::new(func.clone().unbind(), inner.unbind(), driver),
    )?
    .into_any())
}

/// `AsyncCallEngine::call_async` for a guard that needs nothing of the arguments: `driver`
/// (or the error that it could not be made), then `func(*args)`, then the `Coroutine`.
#[inline]
pub(crate) fn guarded_call<'py>(
    func: &Bound<'py, PyAny>,
    args: &Args<'py>,
    driver: PyResult<Driver>,
) -> Fast<'py, ()> {
    let py = func.py();
    let driver = match driver {
        Ok(driver) => driver,
        Err(e) => {
            e.restore(py);
            return Fast::Raised;
        }
    };
    // An error from the call itself stays set in the interpreter, untouched.
    let Some(inner) = args.call(func) else {
        return Fast::Raised;
    };
    match guarded(func, inner, driver) {
        Ok(coroutine) => Fast::Done(coroutine),
        Err(e) => {
            e.restore(py);
            Fast::Raised
        }
    }
}

/// `AsyncCallEngine::call_async_tp`, the same with a tuple and a dict.
pub(crate) fn guarded_call_tp<'py>(
    func: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
    driver: PyResult<Driver>,
) -> PyResult<Bound<'py, PyAny>> {
    let driver = driver?;
    guarded(func, func.call(args, kwargs)?, driver)
}

/// The guards there are (an enum rather than a boxed trait object: no allocation per call).
pub(crate) enum Driver {
    Breaker(BreakerGuard),
    Bulkhead(BulkheadGuard),
    Limiter(LimiterGuard),
    Retry(RetryGuard),
}

impl Driver {
    fn guard(&mut self) -> &mut dyn Guard {
        match self {
            Self::Breaker(g) => g,
            Self::Bulkhead(g) => g,
            Self::Limiter(g) => g,
            Self::Retry(g) => g,
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Self::Breaker(g) => g.traverse(visit),
            Self::Bulkhead(g) => g.traverse(visit),
            Self::Limiter(g) => g.traverse(visit),
            Self::Retry(g) => g.traverse(visit),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    /// Driving the user's coroutine, the guard watching.
    Guarded,
    /// Driving the guard's Python continuation: its outcome is the await's.
    HandedOver,
    Done,
}

struct State {
    phase: Phase,
    inner: Option<Py<PyAny>>,
    driver: Driver,
}

/// An awaited call of a riprap-decorated coroutine function (see the module docs).
#[pyclass(name = "Coroutine", module = "riprap", frozen, freelist = 64)]
pub struct PyCoroutine {
    state: Mutex<State>,
    /// The wrapped function, for `__name__`, `__qualname__` and the repr.
    func: Py<PyAny>,
}

/// How the coroutine is resumed.
enum Resume<'py> {
    Send(Bound<'py, PyAny>),
    Throw(Bound<'py, PyAny>),
}

/// How a resume ended.
enum Sent<'py> {
    /// The await suspended, yielding this (to the event loop).
    Yield(Bound<'py, PyAny>),
    /// The await is over and returns this.
    Return(Bound<'py, PyAny>),
}

impl PyCoroutine {
    /// A coroutine that will drive `inner` (the user's coroutine) under `driver`.
    pub(crate) fn new(func: Py<PyAny>, inner: Py<PyAny>, driver: Driver) -> Self {
        Self {
            state: Mutex::new(State {
                phase: Phase::NotStarted,
                inner: Some(inner),
                driver,
            }),
            func,
        }
    }

    fn lock(&self) -> PyResult<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(g) => Ok(g),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => {
                Err(PyValueError::new_err("riprap coroutine already executing"))
            }
        }
    }

    fn resume<'py>(&self, py: Python<'py>, how: Resume<'py>) -> PyResult<Sent<'py>> {
        let mut st = self.lock()?;
        let mut how = how;
        match st.phase {
            Phase::Done => {
                return Err(PyRuntimeError::new_err(
                    "cannot reuse already awaited coroutine",
                ));
            }
            Phase::NotStarted => {
                if let Resume::Throw(exc) = how {
                    // Thrown into before it ran: nothing was admitted; the user's coroutine
                    // never starts (closing it keeps "never awaited" quiet).
                    st.phase = Phase::Done;
                    close_inner(py, &mut st);
                    return Err(PyErr::from_value(exc));
                }
                st.phase = Phase::Guarded;
                let Some(inner) = st.inner.take() else {
                    st.phase = Phase::Done;
                    return Err(PyRuntimeError::new_err(
                        "riprap coroutine lost its awaitable",
                    ));
                };
                let step = st.driver.guard().start(py, inner.into_bound(py));
                if let Some(sent) = Self::apply(&mut st, step)? {
                    return Ok(sent);
                }
                how = Resume::Send(py.None().into_bound(py));
            }
            Phase::Guarded | Phase::HandedOver => {}
        }
        loop {
            let Some(inner) = st.inner.as_ref().map(|i| i.bind(py).clone()) else {
                st.phase = Phase::Done;
                return Err(PyRuntimeError::new_err(
                    "riprap coroutine lost its awaitable",
                ));
            };
            let outcome = match how {
                Resume::Send(value) => send(&inner, &value),
                Resume::Throw(exc) => throw(&inner, &exc),
            };
            let step = match (outcome, st.phase) {
                (Outcome::Yield(v), _) => return Ok(Sent::Yield(v)),
                (Outcome::Return(v), Phase::HandedOver) => Step::Return(v),
                (Outcome::Raise(e), Phase::HandedOver) => Step::Raise(PyErr::from_value(e)),
                (Outcome::Return(v), _) => st.driver.guard().returned(v),
                (Outcome::Raise(e), _) => st.driver.guard().raised(e),
            };
            if let Some(sent) = Self::apply(&mut st, step)? {
                return Ok(sent);
            }
            how = Resume::Send(py.None().into_bound(py));
        }
    }

    /// Carries out a guard's step: `Some` when the await is over (or `Err`), `None` when there
    /// is a new awaitable to drive (it starts with `send(None)`).
    fn apply<'py>(st: &mut State, step: Step<'py>) -> PyResult<Option<Sent<'py>>> {
        match step {
            Step::Return(v) => {
                st.phase = Phase::Done;
                st.inner = None;
                Ok(Some(Sent::Return(v)))
            }
            Step::Raise(e) => {
                st.phase = Phase::Done;
                st.inner = None;
                Err(e)
            }
            Step::Drive(next) => {
                st.inner = Some(next.unbind());
                Ok(None)
            }
            Step::Handover(next) => {
                st.phase = Phase::HandedOver;
                st.inner = Some(next.unbind());
                Ok(None)
            }
        }
    }
}

/// How driving the inner awaitable one step ended.
enum Outcome<'py> {
    Yield(Bound<'py, PyAny>),
    Return(Bound<'py, PyAny>),
    /// The exception it raised (taken out of the interpreter).
    Raise(Bound<'py, PyAny>),
}

fn send<'py>(inner: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>) -> Outcome<'py> {
    let py = inner.py();
    let mut result: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: both are valid references while the GIL is held; PyIter_Send stores a new
    // reference in `result` for NEXT and RETURN, and sets an exception for ERROR.
    let status = unsafe { ffi::PyIter_Send(inner.as_ptr(), value.as_ptr(), &raw mut result) };
    match status {
        // SAFETY: `result` holds a new reference.
        ffi::PySendResult::PYGEN_NEXT => {
            Outcome::Yield(unsafe { Bound::from_owned_ptr(py, result) })
        }
        // SAFETY: as above.
        ffi::PySendResult::PYGEN_RETURN => {
            Outcome::Return(unsafe { Bound::from_owned_ptr(py, result) })
        }
        ffi::PySendResult::PYGEN_ERROR => Outcome::Raise(attr::raised(py)),
    }
}

fn throw<'py>(inner: &Bound<'py, PyAny>, exc: &Bound<'py, PyAny>) -> Outcome<'py> {
    let py = inner.py();
    match inner.call_method1(intern!(py, "throw"), (exc,)) {
        Ok(v) => Outcome::Yield(v),
        Err(e) => {
            if e.is_instance_of::<PyStopIteration>(py) {
                let value = e
                    .value(py)
                    .getattr(intern!(py, "value"))
                    .unwrap_or_else(|_| py.None().into_bound(py));
                return Outcome::Return(value);
            }
            Outcome::Raise(e.into_value(py).into_bound(py).into_any())
        }
    }
}

/// Closes the inner coroutine, if any (errors from its `close` are reported as unraisable).
fn close_inner(py: Python<'_>, st: &mut State) {
    if let Some(inner) = st.inner.take() {
        close_quietly(inner.bind(py));
    }
}

#[pymethods]
impl PyCoroutine {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.send(py, py.None().into_bound(py))
    }

    /// Resumes with `value`: the value the coroutine yields next, or `StopIteration(result)`.
    fn send<'py>(&self, py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match self.resume(py, Resume::Send(value))? {
            Sent::Yield(v) => Ok(v),
            Sent::Return(v) => Err(PyStopIteration::new_err((v.unbind(),))),
        }
    }

    /// Raises an exception inside the coroutine (how a task's cancellation arrives).
    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw<'py>(
        &self,
        py: Python<'py>,
        typ: Bound<'py, PyAny>,
        val: Option<Bound<'py, PyAny>>,
        tb: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exc = exception_of(py, typ, val, tb)?;
        match self.resume(py, Resume::Throw(exc))? {
            Sent::Yield(v) => Ok(v),
            Sent::Return(v) => Err(PyStopIteration::new_err((v.unbind(),))),
        }
    }

    /// Stops the coroutine: `GeneratorExit` is thrown in, and must not be swallowed.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut st = self.lock()?;
            match st.phase {
                Phase::Done => return Ok(()),
                Phase::NotStarted => {
                    st.phase = Phase::Done;
                    close_inner(py, &mut st);
                    return Ok(());
                }
                Phase::Guarded | Phase::HandedOver => {}
            }
        }
        let exit = pyo3::exceptions::PyGeneratorExit::new_err(())
            .into_value(py)
            .into_bound(py)
            .into_any();
        match self.resume(py, Resume::Throw(exit)) {
            Ok(Sent::Yield(_)) => Err(PyRuntimeError::new_err(
                "riprap coroutine ignored GeneratorExit",
            )),
            Ok(Sent::Return(_)) => Ok(()),
            Err(e)
                if e.is_instance_of::<pyo3::exceptions::PyGeneratorExit>(py)
                    || e.is_instance_of::<PyStopIteration>(py) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The wrapped function's `__name__`.
    #[getter]
    fn __name__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.func.bind(py).getattr(intern!(py, "__name__"))
    }

    /// The wrapped function's `__qualname__`.
    #[getter]
    fn __qualname__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.func.bind(py).getattr(intern!(py, "__qualname__"))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let name = self
            .func
            .bind(py)
            .getattr(intern!(py, "__qualname__"))
            .and_then(|n| n.str().map(|s| s.to_string()))
            .unwrap_or_else(|_| "?".to_owned());
        format!("<riprap.Coroutine {name}>")
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.func)?;
        // Running (its mutex held): skip; the collector will look again later.
        if let Ok(st) = self.state.try_lock() {
            visit.call(&st.inner)?;
            st.driver.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Ok(mut st) = self.state.try_lock() {
            st.inner = None;
        }
    }
}

/// The exception `throw(typ, val, tb)` means (the legacy three-argument form included).
fn exception_of<'py>(
    py: Python<'py>,
    typ: Bound<'py, PyAny>,
    val: Option<Bound<'py, PyAny>>,
    tb: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let val = val.filter(|v| !v.is_none());
    let exc = if typ.is_instance_of::<PyType>() {
        match val {
            Some(v) if v.is_instance(&typ)? => v,
            Some(v) => typ.call1((v,))?,
            None => typ.call0()?,
        }
    } else {
        typ
    };
    if let Some(tb) = tb.filter(|t| !t.is_none()) {
        exc.setattr(intern!(py, "__traceback__"), tb)?;
    }
    Ok(exc)
}

/// The `am_send` slot: CPython's `await` and asyncio's tasks resume the coroutine through it,
/// and a finished await hands its result back without a `StopIteration` object.
unsafe extern "C" fn am_send(
    slf: *mut ffi::PyObject,
    arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: CPython calls slots with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Python::attach(|py| {
            // SAFETY: the slot is only installed on this type; `arg` is a valid reference.
            let this = unsafe { Borrowed::from_ptr(py, slf).cast_unchecked::<PyCoroutine>() };
            let arg = unsafe { Borrowed::from_ptr(py, arg) }.to_owned();
            match this.get().resume(py, Resume::Send(arg)) {
                Ok(Sent::Yield(v)) => (ffi::PySendResult::PYGEN_NEXT, v.into_ptr()),
                Ok(Sent::Return(v)) => (ffi::PySendResult::PYGEN_RETURN, v.into_ptr()),
                Err(e) => {
                    e.restore(py);
                    (ffi::PySendResult::PYGEN_ERROR, std::ptr::null_mut())
                }
            }
        })
    }));
    let (status, value) = outcome.unwrap_or_else(|_| {
        PyRuntimeError::new_err("riprap internal error (a Rust panic); please report it")
            .restore(py);
        (ffi::PySendResult::PYGEN_ERROR, std::ptr::null_mut())
    });
    // SAFETY: `result` is a valid out-pointer from CPython.
    unsafe { *result = value };
    status
}

/// The `am_await` slot (`await c` asks it for the iterator to drive): the coroutine itself. A
/// raw slot rather than the `__await__` method, so an `await` skips a method trampoline
/// (34 instructions per await, counted by callgrind).
unsafe extern "C" fn am_await(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython passes a valid reference with the GIL held; the slot returns a new one.
    unsafe { ffi::Py_NewRef(slf) }
}

/// Installs `am_send` and `am_await` on the `Coroutine` type (once, at module init).
pub(crate) fn install(py: Python<'_>) {
    let ty = PyCoroutine::type_object(py);
    let tp = ty.as_type_ptr();
    // SAFETY: a heap type's `tp_as_async` points at the `as_async` struct inside its heap type
    // object (CPython sets it for every heap type); writing the slot before any instance exists
    // races with nothing.
    unsafe {
        let am = (*tp).tp_as_async;
        if !am.is_null() {
            (*am).am_send = Some(am_send);
            (*am).am_await = Some(am_await);
            ffi::PyType_Modified(tp);
        }
    }
}
