//! `KeyedRateLimiter` (one GCRA bucket per key, bounded by `max_keys`) and `KeyedLimitedCall`
//! (the native wrapper `@keyed(key=...)` puts around a sync function).
//!
//! Keys are `int`, `str` or `bytes` (a `TypeError` names `key` for anything else; `bool` is
//! refused, since `True` would silently share `1`'s bucket). An existing `str`/`bytes` key is
//! looked up by borrowing its bytes, with no allocation. `int`s outside `i64` are keyed by their
//! decimal digits in a namespace of their own.

use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString, PyTuple};
use pyo3::{PyTraverseError, ffi};
use riprap_core::{Clock, Decision, Key, KeyedRateLimiter, Quota, Reservation, nanos_to_secs};

use crate::call::{CallEngine, native_call};
use crate::convert::{
    clock as extract_clock, cost, int_at_least, max_wait, name as extract_name, nanos, no_storage,
    quota as extract_quota, raises, type_name,
};
use crate::errors::{config_error, rate_limited};
use crate::limiter::wait_until_due;
use crate::vectorcall::{Args, Fast};
use crate::wakers::Wakers;

/// Runs `f` with `obj` as a core key (borrowed whenever possible).
pub(crate) fn with_key<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(Key<'_>) -> R) -> PyResult<R> {
    if let Some(k) = fast_key(obj) {
        return Ok(f(k));
    }
    // Subclasses, strings with lone surrogates, ints outside i64, and refusals.
    if let Ok(s) = obj.cast::<PyString>() {
        if let Ok(text) = s.to_str() {
            return Ok(f(Key::Str(text.as_bytes())));
        }
        // Lone surrogates: still a distinct str, keyed by its surrogatepass encoding.
        let b = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
        return Ok(f(Key::Str(b.cast::<PyBytes>()?.as_bytes())));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(f(Key::Bytes(b.as_bytes())));
    }
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(f(Key::Int(v)));
        }
        // int(obj) first: an int subclass may print itself differently.
        let digits = obj.py().get_type::<PyInt>().call1((obj,))?.str()?;
        return Ok(f(Key::BigInt(digits.to_str()?.as_bytes())));
    }
    Err(PyTypeError::new_err(format!(
        "key must be an int, str or bytes, got {}",
        type_name(obj)
    )))
}

/// The common key types, converted without creating any Python error (vectorcall fast path);
/// `None` sends the call to the slow path, which converts (or refuses) the key properly.
fn fast_key<'a>(obj: &'a Bound<'_, PyAny>) -> Option<Key<'a>> {
    let ptr = obj.as_ptr();
    // SAFETY: `ptr` is a valid object while `obj` lives; the exact-type checks guarantee the
    // concrete layouts the calls below expect; errors are cleared before returning.
    unsafe {
        if ffi::PyLong_CheckExact(ptr) != 0 {
            let mut overflow = 0;
            let v = ffi::PyLong_AsLongLongAndOverflow(ptr, &raw mut overflow);
            return ((v != -1 || ffi::PyErr_Occurred().is_null()) && overflow == 0)
                .then_some(Key::Int(v));
        }
        if ffi::PyUnicode_CheckExact(ptr) != 0 {
            let mut size: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(ptr, &raw mut size);
            if data.is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            let bytes = std::slice::from_raw_parts(data.cast::<u8>(), usize::try_from(size).ok()?);
            return Some(Key::Str(bytes));
        }
    }
    obj.cast::<PyBytes>().ok().map(|b| Key::Bytes(b.as_bytes()))
}

/// One GCRA bucket per key: `rate` tokens per second and `burst` at most for each key.
///
/// Holds exactly `max_keys` keys before it forgets any; then a new key forgets every idle key
/// (bucket full again), and the keys closest to full until `max(1, max_keys // 64)` have gone;
/// never a key with waiters.
#[pyclass(
    name = "KeyedRateLimiter",
    module = "riprap",
    frozen,
    subclass,
    weakref
)]
pub struct PyKeyedRateLimiter {
    inner: KeyedRateLimiter,
    clock: Clock,
    clock_obj: Option<Py<PyAny>>,
    name: Option<Py<PyString>>,
    wakers: Wakers,
}

impl PyKeyedRateLimiter {
    fn refused(&self, py: Python<'_>, wait: u64) -> PyErr {
        rate_limited(py, self.name.as_ref(), wait)
    }

    fn wait_ticket(&self, py: Python<'_>, key: &Bound<'_, PyAny>, ticket: u64) -> PyResult<()> {
        with_key(key, |k| {
            match wait_until_due(py, &self.clock, |now| self.inner.remaining(k, ticket, now)) {
                Ok(()) => {
                    self.inner.complete(k, ticket);
                    Ok(())
                }
                Err(e) => {
                    if self.inner.cancel(k, ticket) {
                        self.wakers.wake_after(py, ticket);
                    }
                    Err(e)
                }
            }
        })?
    }

    /// One token for `key`, waiting or raising as `raise_on_limit` says.
    fn enter(&self, py: Python<'_>, key: &Bound<'_, PyAny>, raise_on_limit: bool) -> PyResult<()> {
        let max_wait = if raise_on_limit { Some(0) } else { None };
        let one = self.inner.quota().interval_ns();
        let now = self.clock.now();
        match with_key(key, |k| self.inner.reserve_cost(k, one, now, max_wait))? {
            Reservation::Admitted => Ok(()),
            Reservation::Refused { wait } => Err(self.refused(py, wait)),
            Reservation::Queued { ticket, .. } => self.wait_ticket(py, key, ticket),
        }
    }
}

#[pymethods]
impl PyKeyedRateLimiter {
    #[new]
    #[pyo3(
        signature = (rate, burst = None, *, name = None, max_keys = None, idle_ttl = None, clock = None, storage = None, on_storage_error = None),
        text_signature = "(rate, burst=None, *, name=None, max_keys=1000000, idle_ttl=None, clock=None, storage=None, on_storage_error=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        rate: &Bound<'_, PyAny>,
        burst: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
        max_keys: Option<&Bound<'_, PyAny>>,
        idle_ttl: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        storage: Option<&Bound<'_, PyAny>>,
        on_storage_error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let quota: Quota = extract_quota(rate, burst)?;
        let name = extract_name(name)?;
        let max_keys = match max_keys {
            None => 1_000_000,
            Some(v) => int_at_least("max_keys", v, 1)?,
        };
        let idle_ttl = match idle_ttl {
            Some(v) if !v.is_none() => Some(nanos("idle_ttl", v, false)?.max(1)),
            _ => None,
        };
        let core_clock = extract_clock(clock)?;
        no_storage("KeyedRateLimiter", storage, on_storage_error)?;
        let inner = KeyedRateLimiter::new(quota, max_keys, idle_ttl, core_clock.now())
            .map_err(config_error)?;
        Ok(Self {
            inner,
            clock: core_clock,
            clock_obj: clock.filter(|c| !c.is_none()).map(|c| c.clone().unbind()),
            name,
            wakers: Wakers::default(),
        })
    }

    /// Takes `n` tokens from `key`'s bucket if they are available now; never waits.
    #[pyo3(signature = (key, n = None), text_signature = "($self, key, n=1)")]
    fn try_acquire(&self, key: &Bound<'_, PyAny>, n: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let cost = cost(self.inner.quota(), n)?;
        let now = self.clock.now();
        with_key(key, |k| {
            self.inner.try_acquire_cost(k, cost, now) == Decision::Admit
        })
    }

    /// Takes `n` tokens from `key`'s bucket, blocking (GIL released) until they are available;
    /// raises `RateLimitExceeded` at once if the wait would exceed `timeout` seconds.
    #[pyo3(
        signature = (key, n = None, timeout = None),
        text_signature = "($self, key, n=1, timeout=None)"
    )]
    fn acquire(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        n: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let ticket = self.reserve(py, key, n, timeout)?;
        if ticket == 0 {
            return Ok(());
        }
        self.wait_ticket(py, key, ticket)
    }

    /// Reserves `n` tokens of `key`: 0 when admitted at once, else a ticket to wait on.
    #[pyo3(name = "_reserve", signature = (key, n, timeout))]
    fn reserve(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        n: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let cost = cost(self.inner.quota(), n)?;
        let max_wait = self::max_wait("timeout", timeout)?;
        let now = self.clock.now();
        match with_key(key, |k| self.inner.reserve_cost(k, cost, now, max_wait))? {
            Reservation::Admitted => Ok(0),
            Reservation::Refused { wait } => Err(self.refused(py, wait)),
            Reservation::Queued { ticket, .. } => Ok(ticket),
        }
    }

    /// Seconds until `ticket`'s slot on `key` (0.0: due).
    #[pyo3(name = "_remaining")]
    fn remaining(&self, key: &Bound<'_, PyAny>, ticket: u64) -> PyResult<f64> {
        let now = self.clock.now();
        with_key(key, |k| nanos_to_secs(self.inner.remaining(k, ticket, now)))
    }

    /// The waiter holding `ticket` on `key` proceeds.
    #[pyo3(name = "_complete")]
    fn complete(&self, key: &Bound<'_, PyAny>, ticket: u64) -> PyResult<()> {
        with_key(key, |k| self.inner.complete(k, ticket))
    }

    /// The waiter holding `ticket` on `key` gave up: give its slot back, wake those behind it.
    #[pyo3(name = "_cancel")]
    fn cancel(&self, py: Python<'_>, key: &Bound<'_, PyAny>, ticket: u64) -> PyResult<()> {
        if with_key(key, |k| self.inner.cancel(k, ticket))? {
            self.wakers.wake_after(py, ticket);
        }
        Ok(())
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

    /// Keys tracked now.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Counters: `name`, `rate`, `burst`, `admitted`, `rejected`, `waited`, `keys`, `evicted`.
    fn get_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("name", &self.name)?;
        d.set_item("rate", self.inner.quota().rate())?;
        d.set_item("burst", self.inner.quota().burst())?;
        d.set_item("admitted", s.limiter.admitted)?;
        d.set_item("rejected", s.limiter.rejected)?;
        d.set_item("waited", s.limiter.waited)?;
        d.set_item("keys", s.keys)?;
        d.set_item("evicted", s.evicted)?;
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
    fn max_keys(&self) -> u64 {
        self.inner.max_keys()
    }

    #[getter]
    fn idle_ttl(&self) -> Option<f64> {
        self.inner.idle_ttl().map(nanos_to_secs)
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
            "KeyedRateLimiter(rate={}, burst={}, name={name}, max_keys={})",
            PyFloat::new(py, q.rate()).repr()?,
            PyFloat::new(py, q.burst()).repr()?,
            self.inner.max_keys(),
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

/// A keyed limiter applied with one key function (what `@keyed(key=...)` wraps a function with).
#[pyclass(name = "KeyedLimit", module = "riprap", frozen)]
pub struct PyKeyedLimit {
    limiter: Py<PyKeyedRateLimiter>,
    key: Py<PyAny>,
    raise_on_limit: bool,
}

#[pymethods]
impl PyKeyedLimit {
    #[new]
    #[pyo3(signature = (limiter, key, on_limit = None), text_signature = "(limiter, key, on_limit='wait')")]
    fn new(
        limiter: Py<PyKeyedRateLimiter>,
        key: Py<PyAny>,
        on_limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Ok(Self {
            limiter,
            key,
            raise_on_limit: raises(on_limit)?,
        })
    }

    /// The keyed limiter.
    #[getter]
    fn limiter(&self, py: Python<'_>) -> Py<PyKeyedRateLimiter> {
        self.limiter.clone_ref(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.limiter)?;
        visit.call(&self.key)?;
        Ok(())
    }
}

native_call!(
    /// A sync function limited per key (see `KeyedRateLimiter.__call__`).
    PyKeyedLimitedCall as "KeyedLimitedCall", PyKeyedLimit, keyed_limit
);

/// Where the fast path of a keyed call left off.
pub(crate) enum KeyedPending<'py> {
    /// The key needs the slow conversion (or is refused there).
    SlowKey(Bound<'py, PyAny>),
    /// No token for this key: raise `RateLimitExceeded`.
    Refused(u64),
    /// A slot is reserved for this key: wait for it, then call.
    Queued(Bound<'py, PyAny>, u64),
}

impl CallEngine for PyKeyedLimit {
    type Pending<'py> = KeyedPending<'py>;

    fn fast<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
    ) -> Fast<'py, KeyedPending<'py>> {
        let this = slf.get();
        let py = func.py();
        let Some(key) = args.call(this.key.bind(py)) else {
            return Fast::Raised; // key(...) raised: its exception passes through
        };
        let limiter = this.limiter.get();
        let max_wait = if this.raise_on_limit { Some(0) } else { None };
        let one = limiter.inner.quota().interval_ns();
        let Some(k) = fast_key(&key) else {
            return Fast::Slow(KeyedPending::SlowKey(key));
        };
        match limiter
            .inner
            .reserve_cost(k, one, limiter.clock.now(), max_wait)
        {
            Reservation::Admitted => match args.call(func) {
                Some(result) => Fast::Done(result),
                None => Fast::Raised,
            },
            Reservation::Refused { wait } => Fast::Slow(KeyedPending::Refused(wait)),
            Reservation::Queued { ticket, .. } => Fast::Slow(KeyedPending::Queued(key, ticket)),
        }
    }

    fn slow<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Args<'py>,
        pending: KeyedPending<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = func.py();
        let limiter = this.limiter.get();
        match pending {
            KeyedPending::SlowKey(key) => limiter.enter(py, &key, this.raise_on_limit)?,
            KeyedPending::Refused(wait) => return Err(limiter.refused(py, wait)),
            KeyedPending::Queued(key, ticket) => limiter.wait_ticket(py, &key, ticket)?,
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
        let py = func.py();
        let key = this.key.bind(py).call(args, kwargs)?;
        this.limiter.get().enter(py, &key, this.raise_on_limit)?;
        func.call(args, kwargs)
    }
}
