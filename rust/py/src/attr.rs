//! Attribute lookup that does not raise when the attribute is missing.
//!
//! The retry engine probes exceptions for `retry_after`, `headers`, `response`, `status_code` and
//! `status`, which are usually absent. PyO3's `getattr_opt` falls back, before Python 3.13, to
//! raising and clearing an `AttributeError` per miss, which costs more than the rest of a retry
//! decision. CPython's own lookup (`_PyObject_LookupAttr`, public as `PyObject_GetOptionalAttr`
//! since 3.13) skips creating the exception for ordinary objects.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

#[cfg(not(Py_3_13))]
unsafe extern "C" {
    // Exported by CPython 3.7-3.12 (Include/cpython/object.h).
    fn _PyObject_LookupAttr(
        obj: *mut ffi::PyObject,
        name: *mut ffi::PyObject,
        result: *mut *mut ffi::PyObject,
    ) -> std::os::raw::c_int;
}

/// `getattr(obj, name, None)`, but `None` also when the attribute is missing; other errors
/// raised by the lookup (a failing property) propagate.
pub(crate) fn lookup<'py>(
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = obj.py();
    let mut out: *mut ffi::PyObject = std::ptr::null_mut();
    // SAFETY: both pointers are valid borrowed references while the GIL is held; on return 1
    // `out` holds a new strong reference, on 0 it is NULL, on -1 an exception is set.
    let rc = unsafe {
        #[cfg(not(Py_3_13))]
        {
            _PyObject_LookupAttr(obj.as_ptr(), name.as_ptr(), &raw mut out)
        }
        #[cfg(Py_3_13)]
        {
            ffi::PyObject_GetOptionalAttr(obj.as_ptr(), name.as_ptr(), &raw mut out)
        }
    };
    match rc {
        1 => Ok(Some(unsafe { Bound::from_owned_ptr(py, out) })),
        0 => Ok(None),
        _ => Err(PyErr::fetch(py)),
    }
}

/// The exception currently set in the interpreter, taken out of it (normalized, its traceback
/// attached), or `None` if none is set.
///
/// The retry loop takes one exception per failed attempt; going through `PyErr` there (its lazy
/// state, `Once` and mutex) costs more than the rest of the decision, so this takes the object
/// directly, as CPython's own `except` does.
pub(crate) fn take_exception(py: Python<'_>) -> Option<Bound<'_, PyAny>> {
    // SAFETY: the GIL is held; each call returns new (or NULL) references that we own.
    unsafe {
        #[cfg(Py_3_12)]
        {
            Bound::from_owned_ptr_or_opt(py, ffi::PyErr_GetRaisedException())
        }
        #[cfg(not(Py_3_12))]
        {
            let (mut ty, mut value, mut tb) = (
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            ffi::PyErr_Fetch(&raw mut ty, &raw mut value, &raw mut tb);
            if ty.is_null() {
                return None;
            }
            ffi::PyErr_NormalizeException(&raw mut ty, &raw mut value, &raw mut tb);
            if !tb.is_null() && !value.is_null() {
                ffi::PyException_SetTraceback(value, tb);
            }
            let _ty = Bound::from_owned_ptr_or_opt(py, ty);
            let _tb = Bound::from_owned_ptr_or_opt(py, tb);
            Bound::from_owned_ptr_or_opt(py, value)
        }
    }
}

/// `func(*args, **kwargs)`: the result, or the exception it raised (taken out of the
/// interpreter, see [`take_exception`]).
pub(crate) fn call<'py>(
    func: &Bound<'py, PyAny>,
    args: &Bound<'py, pyo3::types::PyTuple>,
    kwargs: Option<&Bound<'py, pyo3::types::PyDict>>,
) -> Result<Bound<'py, PyAny>, Bound<'py, PyAny>> {
    let py = func.py();
    let kw = kwargs.map_or(std::ptr::null_mut(), Bound::as_ptr);
    // SAFETY: valid references while the GIL is held; PyObject_Call returns a new reference or
    // NULL with an exception set.
    match unsafe {
        Bound::from_owned_ptr_or_opt(py, ffi::PyObject_Call(func.as_ptr(), args.as_ptr(), kw))
    } {
        Some(result) => Ok(result),
        None => Err(raised(py)),
    }
}

/// The exception a failed call left set (a `SystemError` in its place if, against the C API's
/// contract, none was set).
pub(crate) fn raised(py: Python<'_>) -> Bound<'_, PyAny> {
    take_exception(py).unwrap_or_else(|| {
        pyo3::exceptions::PySystemError::new_err("a call failed without setting an exception")
            .into_value(py)
            .into_bound(py)
            .into_any()
    })
}

/// Runs `f` with `exc` as the exception being handled (`sys.exception()`), as the body of an
/// `except` block would: an error that Python code raises inside `f` gets `exc` as its
/// `__context__`, exactly as the pure-Python backend's code gets it. riprap's own work on a
/// user's exception (classifying it, reading its Retry-After, logging it, calling a hook) runs
/// under this, so when that work fails the user's exception is not lost.
pub(crate) fn handling<R>(exc: &Bound<'_, PyAny>, f: impl FnOnce() -> R) -> R {
    // SAFETY: the GIL is held; PyErr_GetHandledException returns a new reference (or NULL),
    // PyErr_SetHandledException takes its own reference (NULL clears).
    let previous = unsafe {
        let previous = ffi::PyErr_GetHandledException();
        ffi::PyErr_SetHandledException(exc.as_ptr());
        previous
    };
    let result = f();
    // SAFETY: as above; `previous` is released after it is restored.
    unsafe {
        ffi::PyErr_SetHandledException(previous);
        ffi::Py_XDECREF(previous);
    }
    result
}
