//! How a decorated function is retried: `RetryCall` (sync, through vectorcall: the whole loop
//! runs natively) and `RetryAsyncCall` (a coroutine function: each call is a riprap `Coroutine`
//! that runs the first attempt itself and, if a retry is needed, hands over to the façade's
//! Python continuation, which sleeps on the event loop and runs the later attempts).

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::PyRetryEngine;
use crate::attr;
use crate::awaitable::{Driver, Guard, Step, guarded};
use crate::call::{AsyncCallEngine, CallEngine, native_async_call, native_call};
use crate::vectorcall::{Args, Fast};

native_call!(
    /// A retried sync function (see `riprap.retry`).
    PyRetryCall as "RetryCall", PyRetryEngine, retry_engine
);

/// Where the first attempt left off when it needs the slow path.
pub(crate) struct FirstAttempt<'py> {
    start: Option<f64>,
    /// The result to check against `retry_on_result`, or `None`: the call raised and the
    /// exception is still set in the interpreter.
    result: Option<Bound<'py, PyAny>>,
}

impl CallEngine for PyRetryEngine {
    type Pending<'py> = FirstAttempt<'py>;

    fn fast<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
    ) -> Fast<'py, FirstAttempt<'py>> {
        let this = slf.get();
        let start = this.begin();
        match args.call(func) {
            Some(result) if this.predicate.is_none() => {
                this.count_success(1, start);
                Fast::Done(result)
            }
            result => Fast::Slow(FirstAttempt { start, result }),
        }
    }

    fn slow<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
        pending: FirstAttempt<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let first = pending.result.ok_or_else(|| attr::raised(func.py()));
        this.after_first(func, first, pending.start, || args.to_tuple_dict())
    }

    fn call<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        this.run(func, args, kwargs)
    }
}

native_async_call!(
    /// A retried coroutine function (see `riprap.retry`).
    PyRetryAsyncCall as "RetryAsyncCall", PyRetryEngine, retry_engine
);

/// Retry's part in one awaited call: the first attempt (a budget deposit and the start time
/// first), then, when the engine decides to retry, a hand-over to `resume(start, attempt,
/// delay, args, kwargs)`, the façade's continuation (it sleeps `delay` and makes the next
/// attempts with the same arguments).
pub(crate) struct RetryGuard {
    engine: Py<PyRetryEngine>,
    resume: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
    start: Option<f64>,
}

impl RetryGuard {
    pub(crate) fn traverse(
        &self,
        visit: &pyo3::gc::PyVisit<'_>,
    ) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.engine)?;
        visit.call(&self.resume)?;
        visit.call(&self.args)?;
        visit.call(&self.kwargs)
    }

    /// Attempt 1 failed with `exc` (or its result was rejected: `None`).
    fn after_failure<'py>(
        &self,
        py: Python<'py>,
        exc: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(delay) = self
            .engine
            .get()
            .decide_inner(py, 1, exc, self.start, None)?
        else {
            return Ok(None);
        };
        let kwargs = self.kwargs.as_ref().map(|k| k.bind(py).clone());
        let next =
            self.resume
                .bind(py)
                .call1((self.start, 1u64, delay, self.args.bind(py), kwargs))?;
        Ok(Some(next))
    }
}

impl Guard for RetryGuard {
    fn start<'py>(&mut self, _py: Python<'py>, inner: Bound<'py, PyAny>) -> Step<'py> {
        self.start = self.engine.get().begin();
        Step::Drive(inner)
    }

    fn returned<'py>(&mut self, value: Bound<'py, PyAny>) -> Step<'py> {
        let py = value.py();
        let engine = self.engine.get();
        if engine.predicate.is_none() {
            engine.count_success(1, self.start);
            return Step::Return(value);
        }
        match engine.wants_retry(&value) {
            Ok(false) => {
                engine.count_success(1, self.start);
                Step::Return(value)
            }
            Ok(true) => match self.after_failure(py, None) {
                Ok(None) => Step::Return(value),
                Ok(Some(next)) => Step::Handover(next),
                Err(e) => Step::Raise(e),
            },
            Err(e) => Step::Raise(e),
        }
    }

    fn raised<'py>(&mut self, exc: Bound<'py, PyAny>) -> Step<'py> {
        let py = exc.py();
        if !exc.is_instance_of::<PyException>() {
            // A control-flow exception: straight back to the caller, untouched.
            return Step::Raise(PyErr::from_value(exc));
        }
        match self.after_failure(py, Some(&exc)) {
            Ok(None) => Step::Raise(PyErr::from_value(exc)),
            Ok(Some(next)) => Step::Handover(next),
            Err(e) => Step::Raise(e),
        }
    }
}

impl RetryGuard {
    fn coroutine<'py>(
        engine: &Bound<'py, PyRetryEngine>,
        func: &Bound<'py, PyAny>,
        resume: &Bound<'py, PyAny>,
        inner: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let driver = Driver::Retry(Self {
            engine: engine.clone().unbind(),
            resume: resume.clone().unbind(),
            args: args.unbind(),
            kwargs: kwargs.map(Bound::unbind),
            start: None,
        });
        guarded(func, inner, driver)
    }
}

impl AsyncCallEngine for PyRetryEngine {
    fn call_async<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        slow: Option<&Bound<'py, PyAny>>,
        args: &Args<'py>,
    ) -> Fast<'py, ()> {
        let py = func.py();
        let Some(resume) = slow else {
            pyo3::exceptions::PyTypeError::new_err("RetryAsyncCall needs its continuation")
                .restore(py);
            return Fast::Raised;
        };
        let Some(inner) = args.call(func) else {
            return Fast::Raised;
        };
        let made = args
            .to_tuple_dict()
            .and_then(|(a, k)| RetryGuard::coroutine(slf, func, resume, inner, a, k));
        match made {
            Ok(coroutine) => Fast::Done(coroutine),
            Err(e) => {
                e.restore(py);
                Fast::Raised
            }
        }
    }

    fn call_async_tp<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        slow: Option<&Bound<'py, PyAny>>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let resume = slow.ok_or_else(|| {
            pyo3::exceptions::PyTypeError::new_err("RetryAsyncCall needs its continuation")
        })?;
        let inner = func.call(args, kwargs)?;
        RetryGuard::coroutine(slf, func, resume, inner, args.clone(), kwargs.cloned())
    }
}
