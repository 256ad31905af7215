//! Vectorcall for riprap's native wrappers (a workaround for PyO3 #4252).
//!
//! PyO3 implements a pyclass's `__call__` through `tp_call`, which makes every call pack its
//! arguments into a tuple and a dict: ~85 ns per call on the reference machine, where a C
//! vectorcall wrapper costs ~25 ns. A wrapper type opts in here: it stores
//! [`trampoline`] in a `ffi::vectorcallfunc` field, and at module init [`enable`] measures that
//! field's offset in one live instance (the layout is fixed per type) and sets
//! `tp_vectorcall_offset` plus `Py_TPFLAGS_HAVE_VECTORCALL` on the type. The wrapper then
//! forwards the caller's argument vector untouched; tuples and dicts are only built on the slow
//! (failure) path. `Py_TPFLAGS_METHOD_DESCRIPTOR` is set too, so `obj.method(...)` calls the
//! wrapper with `obj` prepended without allocating a bound method, exactly as for functions.
//!
//! `tp_call` (PyO3's `__call__`) stays in place for callers that use `PyObject_Call`.
//!
//! Attachment: CPython calls a vectorcall function with the GIL held, but PyO3 only learns that
//! the thread is attached through its own trampolines or `Python::attach`. Until it does, PyO3
//! parks the decref of every dropped `Py<T>` (for instance inside a fetched `PyErr`) in a global
//! pool, which would keep exceptions and tracebacks alive between calls. So each call is split:
//! [`VectorCall::fast`] runs first and must not drop any `Py<T>` or `PyErr` (creating and dropping
//! `Bound` values is fine: their decref is immediate). It handles the common cases: a call that
//! returns, a call whose exception passes straight through, a rejection raised with
//! [`raise_now`]. Anything else continues in [`VectorCall::slow`] under `Python::attach`, which
//! costs ~40 ns and is only paid on the slow path.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::PyClass;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// The positional and keyword arguments of a vectorcall, borrowed from the caller.
pub(crate) struct Args<'py> {
    py: Python<'py>,
    vector: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
}

impl<'py> Args<'py> {
    /// Calls `func` with these exact arguments (no tuple, no dict). `None` means it raised:
    /// the exception is left set in the interpreter (fetch it on the slow path).
    pub(crate) fn call(&self, func: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
        // SAFETY: the argument vector and kwnames come from our caller and stay valid for the
        // duration of this call; PY_VECTORCALL_ARGUMENTS_OFFSET in `nargsf` is the caller's
        // permission, which we pass on unchanged.
        unsafe {
            Bound::from_owned_ptr_or_opt(
                self.py,
                ffi::PyObject_Vectorcall(func.as_ptr(), self.vector, self.nargsf, self.kwnames),
            )
        }
    }

    /// The arguments as a tuple and an optional dict (built only on the slow path).
    pub(crate) fn to_tuple_dict(
        &self,
    ) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
        let py = self.py;
        // SAFETY: `args` holds `nargs + len(kwnames)` valid borrowed references.
        unsafe {
            let nargs = usize::try_from(ffi::PyVectorcall_NARGS(self.nargsf)).unwrap_or(0);
            let positional: Vec<Borrowed<'_, 'py, PyAny>> = (0..nargs)
                .map(|i| Borrowed::from_ptr(py, *self.vector.add(i)))
                .collect();
            let tuple = PyTuple::new(py, positional)?;
            if self.kwnames.is_null() {
                return Ok((tuple, None));
            }
            let names = Borrowed::from_ptr(py, self.kwnames).cast_unchecked::<PyTuple>();
            let dict = PyDict::new(py);
            for (k, name) in names.iter().enumerate() {
                dict.set_item(name, Borrowed::from_ptr(py, *self.vector.add(nargs + k)))?;
            }
            Ok((tuple, Some(dict)))
        }
    }
}

/// What the fast half of a call produced.
pub(crate) enum Fast<'py, P> {
    /// The call's result.
    Done(Bound<'py, PyAny>),
    /// An exception is set in the interpreter (the callee raised, or [`raise_now`] did): it is
    /// returned to the caller as it is.
    Raised,
    /// The call continues in [`VectorCall::slow`].
    Slow(P),
}

/// A pyclass whose instances are called through [`trampoline`].
pub(crate) trait VectorCall: PyClass {
    /// What the fast path hands to the slow path.
    type Pending<'py>;

    /// The first part of a call, run before PyO3 knows the thread is attached: it may call
    /// Python and create `Bound` values, but must not drop a `Py<T>` or a `PyErr`.
    fn fast<'py>(slf: &Bound<'py, Self>, args: &Args<'py>) -> Fast<'py, Self::Pending<'py>>;

    /// The rest of a call, run under `Python::attach`.
    fn slow<'py>(
        slf: &Bound<'py, Self>,
        args: &Args<'py>,
        pending: Self::Pending<'py>,
    ) -> PyResult<Bound<'py, PyAny>>;
}

/// Raises `exc_type(*args)` without a `PyErr` (usable on the fast path); return
/// [`Fast::Raised`] after it.
pub(crate) fn raise_now(exc_type: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) {
    // SAFETY: both are valid references while the GIL is held; PyErr_SetObject takes its own
    // references and instantiates the exception from the arguments.
    unsafe { ffi::PyErr_SetObject(exc_type.as_ptr(), args.as_ptr()) }
}

const PANIC_MESSAGE: &str = "riprap internal error (a Rust panic); please report it";

/// The `vectorcallfunc` stored in each instance of a [`VectorCall`] type.
///
/// # Safety
/// Only CPython calls this, with the GIL held, `callable` an instance of `T`, and a valid
/// argument vector. A Rust panic is caught and turned into a `RuntimeError`: it never unwinds
/// into the interpreter.
pub(crate) unsafe extern "C" fn trampoline<T: VectorCall>(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls vectorcall functions with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: the type's vectorcall slot is only set for instances of T.
    let slf = unsafe { Borrowed::from_ptr(py, callable).cast_unchecked::<T>() };
    let args = Args {
        py,
        vector: args,
        nargsf,
        kwnames,
    };
    let pending = match catch_unwind(AssertUnwindSafe(|| T::fast(&slf, &args))) {
        Ok(Fast::Done(result)) => return result.into_ptr(),
        Ok(Fast::Raised) => return std::ptr::null_mut(),
        Ok(Fast::Slow(pending)) => pending,
        Err(_) => {
            PyRuntimeError::new_err(PANIC_MESSAGE).restore(py);
            return std::ptr::null_mut();
        }
    };
    Python::attach(
        |py| match catch_unwind(AssertUnwindSafe(|| T::slow(&slf, &args, pending))) {
            Ok(Ok(result)) => result.into_ptr(),
            Ok(Err(err)) => {
                err.restore(py);
                std::ptr::null_mut()
            }
            Err(_) => {
                PyRuntimeError::new_err(PANIC_MESSAGE).restore(py);
                std::ptr::null_mut()
            }
        },
    )
}

/// Turns on vectorcall (and method-descriptor calls) for `T`'s type. `slot` is the address of
/// the `vectorcallfunc` field inside `instance`; every instance must hold [`trampoline::<T>`].
pub(crate) fn enable<T: VectorCall>(instance: &Bound<'_, T>, slot: *const ffi::vectorcallfunc) {
    let offset = (slot as isize) - (instance.as_ptr() as isize);
    debug_assert!(offset > 0);
    let ty = instance.as_any().get_type();
    let tp = ty.as_type_ptr();
    // SAFETY: the type object is alive (we hold an instance), the offset points at a
    // `vectorcallfunc` inside every instance of this fixed-layout type, and no call through
    // this type is in flight while the module initialises.
    unsafe {
        (*tp).tp_vectorcall_offset = offset as ffi::Py_ssize_t;
        (*tp).tp_flags |= ffi::Py_TPFLAGS_HAVE_VECTORCALL | ffi::Py_TPFLAGS_METHOD_DESCRIPTOR;
        ffi::PyType_Modified(tp);
    }
}

// Part of CPython's C API (listed in the stable ABI); pyo3-ffi does not declare it.
unsafe extern "C" {
    fn PyMethod_New(func: *mut ffi::PyObject, instance: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// `__get__` of a native wrapper: binds it as a method, like a function does.
pub(crate) fn bind_method<'py, T: PyClass>(
    slf: Bound<'py, T>,
    instance: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    match instance {
        Some(obj) if !obj.is_none() => {
            let py = slf.py();
            // SAFETY: both pointers are valid references for the duration of the call;
            // PyMethod_New returns a new reference or NULL with an exception set.
            unsafe { Bound::from_owned_ptr_or_err(py, PyMethod_New(slf.as_ptr(), obj.as_ptr())) }
        }
        _ => Ok(slf.into_any()),
    }
}

/// `__repr__` of a native wrapper: `<riprap.Kind wrapping <function f>>`.
pub(crate) fn wrapper_repr(kind: &str, func: &Bound<'_, PyAny>) -> String {
    let inner = func
        .repr()
        .map_or_else(|_| "?".to_owned(), |r| r.to_string());
    format!("<riprap.{kind} wrapping {inner}>")
}
