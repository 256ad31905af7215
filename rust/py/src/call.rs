//! The native wrapper every decorator puts around a sync function, defined once.
//!
//! A decorated sync function is a `<P>Call` object holding two things: the function and an
//! *engine* (the primitive's binding object: a `RetryEngine`, a `BreakerEngine`, a
//! `RateLimiter`, ...). The engine decides; the wrapper only forwards. [`native_call!`] declares
//! such a wrapper type in one line and gives it everything a wrapper needs to behave like the
//! function it wraps:
//!
//! - vectorcall (see [`crate::vectorcall`]): the caller's argument vector is forwarded untouched,
//!   turned on for the type when its first instance is built (no list to keep in `lib.rs`);
//! - `tp_call` (`__call__`) for callers that use `PyObject_Call`;
//! - `__get__`, so it binds as a method, like a function;
//! - a getter for its engine, `__repr__`, and `__traverse__` (the GC sees the function and the
//!   engine);
//! - `dict` (so `functools.update_wrapper` can give it `__wrapped__`, `__name__`, `__doc__`,
//!   and `inspect.signature` finds the wrapped function) and `weakref`.
//!
//! What a call does is the engine's [`CallEngine`] implementation: a `fast` half run before PyO3
//! knows the thread is attached (it must not drop a `Py<T>` or a `PyErr`), a `slow` half under
//! `Python::attach`, and `call` for the `tp_call` path.

use pyo3::PyClass;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::{PyDict, PyTuple};

use crate::vectorcall::{Args, Fast};

/// A binding object that runs a wrapped sync function (see the module docs).
pub(crate) trait CallEngine: PyClass<Frozen = True> + Sync {
    /// What the fast half hands to the slow half.
    type Pending<'py>;

    /// The first part of a call, run before PyO3 knows the thread is attached: it may call
    /// Python and create `Bound` values, but must not drop a `Py<T>` or a `PyErr`.
    fn fast<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
    ) -> Fast<'py, Self::Pending<'py>>;

    /// The rest of a call, run under `Python::attach`.
    fn slow<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
        pending: Self::Pending<'py>,
    ) -> PyResult<Bound<'py, PyAny>>;

    /// A whole call made through `tp_call` (`PyObject_Call`), with a tuple and a dict.
    fn call<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>>;
}

/// Declares a native wrapper type: `native_call!(PyXCall as "XCall", PyXEngine, getter_name);`
/// (doc comments before it become the class docstring). The Python constructor is
/// `XCall(func, engine)`.
macro_rules! native_call {
    ($(#[$meta:meta])* $ty:ident as $name:literal, $engine:ty, $getter:ident) => {
        $(#[$meta])*
        #[::pyo3::pyclass(name = $name, module = "riprap", frozen, dict, weakref)]
        pub struct $ty {
            vectorcall: ::pyo3::ffi::vectorcallfunc,
            func: ::pyo3::Py<::pyo3::PyAny>,
            engine: ::pyo3::Py<$engine>,
        }

        impl $crate::vectorcall::VectorCall for $ty {
            type Pending<'py> = <$engine as $crate::call::CallEngine>::Pending<'py>;

            #[inline]
            fn fast<'py>(
                slf: &::pyo3::Bound<'py, Self>,
                args: &$crate::vectorcall::Args<'py>,
            ) -> $crate::vectorcall::Fast<'py, Self::Pending<'py>> {
                let this = slf.get();
                let py = slf.py();
                <$engine as $crate::call::CallEngine>::fast(
                    this.engine.bind(py),
                    this.func.bind(py),
                    args,
                )
            }

            fn slow<'py>(
                slf: &::pyo3::Bound<'py, Self>,
                args: &$crate::vectorcall::Args<'py>,
                pending: Self::Pending<'py>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                let this = slf.get();
                let py = slf.py();
                <$engine as $crate::call::CallEngine>::slow(
                    this.engine.bind(py),
                    this.func.bind(py),
                    args,
                    pending,
                )
            }
        }

        #[::pyo3::pymethods]
        impl $ty {
            #[new]
            fn new(
                py: ::pyo3::Python<'_>,
                func: ::pyo3::Py<::pyo3::PyAny>,
                engine: ::pyo3::Py<$engine>,
            ) -> ::pyo3::PyResult<Self> {
                static VECTORCALL: ::pyo3::sync::PyOnceLock<()> = ::pyo3::sync::PyOnceLock::new();
                let make = |func: ::pyo3::Py<::pyo3::PyAny>, engine: ::pyo3::Py<$engine>| Self {
                    vectorcall: $crate::vectorcall::trampoline::<Self>,
                    func,
                    engine,
                };
                VECTORCALL.get_or_try_init(py, || {
                    // The first instance of the type: measure where its vectorcall slot lies
                    // in a probe instance and turn vectorcall on for the whole type.
                    let probe = ::pyo3::Bound::new(
                        py,
                        make(func.clone_ref(py), engine.clone_ref(py)),
                    )?;
                    $crate::vectorcall::enable(&probe, &raw const probe.get().vectorcall);
                    ::pyo3::PyResult::Ok(())
                })?;
                Ok(make(func, engine))
            }

            #[pyo3(signature = (*args, **kwargs))]
            fn __call__<'py>(
                &self,
                py: ::pyo3::Python<'py>,
                args: &::pyo3::Bound<'py, ::pyo3::types::PyTuple>,
                kwargs: Option<&::pyo3::Bound<'py, ::pyo3::types::PyDict>>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                <$engine as $crate::call::CallEngine>::call(
                    self.engine.bind(py),
                    self.func.bind(py),
                    args,
                    kwargs,
                )
            }

            /// Binds like a function, so a decorated method gets `self`.
            fn __get__<'py>(
                slf: ::pyo3::Bound<'py, Self>,
                instance: Option<&::pyo3::Bound<'py, ::pyo3::PyAny>>,
                _owner: Option<&::pyo3::Bound<'py, ::pyo3::PyAny>>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                $crate::vectorcall::bind_method(slf, instance)
            }

            /// The engine this function runs under.
            #[getter]
            fn $getter(&self, py: ::pyo3::Python<'_>) -> ::pyo3::Py<$engine> {
                self.engine.clone_ref(py)
            }

            fn __repr__(&self, py: ::pyo3::Python<'_>) -> String {
                $crate::vectorcall::wrapper_repr($name, self.func.bind(py))
            }

            fn __traverse__(
                &self,
                visit: ::pyo3::gc::PyVisit<'_>,
            ) -> Result<(), ::pyo3::PyTraverseError> {
                visit.call(&self.func)?;
                visit.call(&self.engine)?;
                Ok(())
            }
        }
    };
}

pub(crate) use native_call;

/// A binding object that runs a wrapped coroutine function (see [`native_async_call!`]).
pub(crate) trait AsyncCallEngine: PyClass<Frozen = True> + Sync {
    /// One call through vectorcall: what the caller awaits (a riprap `Coroutine` guarding the
    /// user's coroutine, the user's coroutine itself, or the slow path's coroutine), or
    /// [`Fast::Raised`]. Runs before PyO3 knows the thread is attached: it must not drop a
    /// `Py<T>` or a `PyErr` (restore errors into the interpreter instead).
    fn call_async<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        slow: Option<&Bound<'py, PyAny>>,
        args: &Args<'py>,
    ) -> Fast<'py, ()>;

    /// The same through `tp_call`, with a tuple and a dict.
    fn call_async_tp<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        slow: Option<&Bound<'py, PyAny>>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>>;
}

/// Declares a native wrapper around a coroutine function:
/// `native_async_call!(PyXAsyncCall as "XAsyncCall", PyXEngine, getter_name);`. The Python
/// constructor is `XAsyncCall(func, engine, slow=None)`, where `slow` is the Python coroutine
/// function the engine falls back to when a call cannot be decided at once (it takes the same
/// arguments as `func`). What a call returns is the engine's [`AsyncCallEngine`] choice. The
/// façade makes the object look like a coroutine function to `inspect` (see
/// `riprap._decorate.native_coroutine_function`).
macro_rules! native_async_call {
    ($(#[$meta:meta])* $ty:ident as $name:literal, $engine:ty, $getter:ident) => {
        $(#[$meta])*
        #[::pyo3::pyclass(name = $name, module = "riprap", frozen, dict, weakref)]
        pub struct $ty {
            vectorcall: ::pyo3::ffi::vectorcallfunc,
            func: ::pyo3::Py<::pyo3::PyAny>,
            engine: ::pyo3::Py<$engine>,
            slow: Option<::pyo3::Py<::pyo3::PyAny>>,
        }

        impl $crate::vectorcall::VectorCall for $ty {
            type Pending<'py> = ();

            #[inline]
            fn fast<'py>(
                slf: &::pyo3::Bound<'py, Self>,
                args: &$crate::vectorcall::Args<'py>,
            ) -> $crate::vectorcall::Fast<'py, ()> {
                let py = slf.py();
                let this = slf.get();
                <$engine as $crate::call::AsyncCallEngine>::call_async(
                    this.engine.bind(py),
                    this.func.bind(py),
                    this.slow.as_ref().map(|s| s.bind(py)),
                    args,
                )
            }

            fn slow<'py>(
                _slf: &::pyo3::Bound<'py, Self>,
                _args: &$crate::vectorcall::Args<'py>,
                (): (),
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                // `call_async` decides every call in the fast half.
                Err(::pyo3::exceptions::PyRuntimeError::new_err(concat!(
                    $name,
                    " has no slow half"
                )))
            }
        }

        #[::pyo3::pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (func, engine, slow = None))]
            fn new(
                py: ::pyo3::Python<'_>,
                func: ::pyo3::Py<::pyo3::PyAny>,
                engine: ::pyo3::Py<$engine>,
                slow: Option<::pyo3::Py<::pyo3::PyAny>>,
            ) -> ::pyo3::PyResult<Self> {
                static VECTORCALL: ::pyo3::sync::PyOnceLock<()> = ::pyo3::sync::PyOnceLock::new();
                let make = |func: ::pyo3::Py<::pyo3::PyAny>,
                            engine: ::pyo3::Py<$engine>,
                            slow: Option<::pyo3::Py<::pyo3::PyAny>>| Self {
                    vectorcall: $crate::vectorcall::trampoline::<Self>,
                    func,
                    engine,
                    slow,
                };
                VECTORCALL.get_or_try_init(py, || {
                    let probe = ::pyo3::Bound::new(
                        py,
                        make(func.clone_ref(py), engine.clone_ref(py), None),
                    )?;
                    $crate::vectorcall::enable(&probe, &raw const probe.get().vectorcall);
                    ::pyo3::PyResult::Ok(())
                })?;
                Ok(make(func, engine, slow))
            }

            #[pyo3(signature = (*args, **kwargs))]
            fn __call__<'py>(
                &self,
                py: ::pyo3::Python<'py>,
                args: &::pyo3::Bound<'py, ::pyo3::types::PyTuple>,
                kwargs: Option<&::pyo3::Bound<'py, ::pyo3::types::PyDict>>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                <$engine as $crate::call::AsyncCallEngine>::call_async_tp(
                    self.engine.bind(py),
                    self.func.bind(py),
                    self.slow.as_ref().map(|s| s.bind(py)),
                    args,
                    kwargs,
                )
            }

            /// Binds like a function, so a decorated method gets `self`.
            fn __get__<'py>(
                slf: ::pyo3::Bound<'py, Self>,
                instance: Option<&::pyo3::Bound<'py, ::pyo3::PyAny>>,
                _owner: Option<&::pyo3::Bound<'py, ::pyo3::PyAny>>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                $crate::vectorcall::bind_method(slf, instance)
            }

            /// The engine this function runs under.
            #[getter]
            fn $getter(&self, py: ::pyo3::Python<'_>) -> ::pyo3::Py<$engine> {
                self.engine.clone_ref(py)
            }

            fn __repr__(&self, py: ::pyo3::Python<'_>) -> String {
                $crate::vectorcall::wrapper_repr($name, self.func.bind(py))
            }

            fn __traverse__(
                &self,
                visit: ::pyo3::gc::PyVisit<'_>,
            ) -> Result<(), ::pyo3::PyTraverseError> {
                visit.call(&self.func)?;
                visit.call(&self.engine)?;
                visit.call(&self.slow)?;
                Ok(())
            }
        }
    };
}

pub(crate) use native_async_call;
