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
