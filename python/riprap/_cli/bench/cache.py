"""Benchmark cases for the result cache: riprap's ResultCache vs functools.lru_cache, cachetools.

Each case cycles over a fixed set of string keys and is measured against the same key stream
passed to a no-op, so only the cache operation is counted. `get` hits a warm cache of 1,000
keys; `put` stores a new key into a full cache of 1,024 (each put evicts the least recently used
entry; for `lru_cache` that is a miss, which calls the function and stores its result).

What differs besides speed: riprap's cache is thread-safe (one lock) and has a TTL and an LRU
bound; `lru_cache` is thread-safe and bounded but has no TTL; cachetools' `TTLCache` and
`LRUCache` take no lock (its docs ask callers to bring one), so a locked `TTLCache` is measured
too.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable
from typing import Any

from .harness import Case, Thunk

__all__ = ["CASES", "HOT", "SIZE"]

HOT = 1_000  # keys read by the get cases (all cached)
SIZE = 1_024  # capacity of every bounded cache
TTL = 3600.0  # long enough that nothing expires while measuring

_KEYS = [f"user:{i}" for i in range(4 * SIZE)]


def _stream(n: int) -> Callable[[], str]:
    return itertools.cycle(_KEYS[:n]).__next__


def _noop(*args: object) -> None:
    return None


def _get(get: Callable[[str], object]) -> Thunk:
    next_key = _stream(HOT)
    return lambda: get(next_key())


def _put(put: Callable[[str, object], object]) -> Thunk:
    next_key = _stream(4 * SIZE)  # every put is a key the full cache does not hold
    return lambda: put(next_key(), 1)


def _warm(put: Callable[[str, object], object]) -> None:
    for key in _KEYS[:HOT]:
        put(key, 1)


# --- implementations ---------------------------------------------------------------------------


def _riprap() -> Any:
    import riprap

    return riprap.ResultCache(TTL, SIZE)


def _ttl() -> Any:
    import cachetools

    return cachetools.TTLCache(maxsize=SIZE, ttl=TTL)


def _lru() -> Any:
    import cachetools

    return cachetools.LRUCache(maxsize=SIZE)


class _LockedTTL:
    """cachetools.TTLCache behind a lock, as its docs ask for shared use."""

    def __init__(self) -> None:
        self.cache = _ttl()
        self.lock = threading.Lock()

    def get(self, key: str) -> object:
        with self.lock:
            return self.cache.get(key)

    def put(self, key: str, value: object) -> None:
        with self.lock:
            self.cache[key] = value


def _lru_cache() -> Callable[[str], object]:
    @functools.lru_cache(maxsize=SIZE)
    def load(key: str) -> object:
        return 1

    return load


def _riprap_get() -> Thunk:
    cache = _riprap()
    _warm(cache.put)
    return _get(cache.get)


def _riprap_put() -> Thunk:
    cache = _riprap()
    _warm(cache.put)
    return _put(cache.put)


def _dict_get() -> Thunk:
    d: dict[str, object] = {}
    _warm(d.__setitem__)
    return _get(d.get)


def _dict_put() -> Thunk:
    d: dict[str, object] = {}
    return _put(d.__setitem__)


def _lru_cache_get() -> Thunk:
    load = _lru_cache()
    for key in _KEYS[:HOT]:
        load(key)
    return _get(load)


def _lru_cache_put() -> Thunk:
    load = _lru_cache()
    next_key = _stream(4 * SIZE)
    return lambda: load(next_key())


def _cachetools_get(make: Callable[[], Any]) -> Thunk:
    cache = make()
    _warm(cache.__setitem__)
    return _get(cache.get)


def _cachetools_put(make: Callable[[], Any]) -> Thunk:
    cache = make()
    _warm(cache.__setitem__)
    return _put(cache.__setitem__)


def _locked_get() -> Thunk:
    cache = _LockedTTL()
    _warm(cache.put)
    return _get(cache.get)


def _locked_put() -> Thunk:
    cache = _LockedTTL()
    _warm(cache.put)
    return _put(cache.put)


def _baselines(put: bool) -> dict[str, Callable[[], Thunk]]:
    """The same key stream passed to a no-op, for every implementation."""

    def same_stream() -> Thunk:
        return _put(_noop) if put else _get(_noop)

    def one_key_stream() -> Thunk:  # lru_cache's put is a call with the key alone
        next_key = _stream(4 * SIZE if put else HOT)
        return lambda: _noop(next_key())

    out = dict.fromkeys(IMPLS, same_stream)
    out["functools.lru_cache"] = one_key_stream
    return out


IMPLS = (
    "riprap",
    "dict (no TTL, no bound, no lock)",
    "functools.lru_cache",
    "cachetools TTLCache",
    "cachetools TTLCache + lock",
    "cachetools LRUCache",
)
PEERS = {
    "cachetools TTLCache": "cachetools",
    "cachetools TTLCache + lock": "cachetools",
    "cachetools LRUCache": "cachetools",
}

#: The cases, in table order.
CASES: list[Case] = [
    Case(
        "cache_get",
        "result cache get, hit (1,000 warm string keys)",
        None,
        {
            "riprap": _riprap_get,
            "dict (no TTL, no bound, no lock)": _dict_get,
            "functools.lru_cache": _lru_cache_get,
            "cachetools TTLCache": lambda: _cachetools_get(_ttl),
            "cachetools TTLCache + lock": _locked_get,
            "cachetools LRUCache": lambda: _cachetools_get(_lru),
        },
        PEERS,
        _baselines(put=False),
    ),
    Case(
        "cache_put",
        "result cache put, new key into a full cache (evicts one; lru_cache: a miss)",
        None,
        {
            "riprap": _riprap_put,
            "dict (no TTL, no bound, no lock)": _dict_put,
            "functools.lru_cache": _lru_cache_put,
            "cachetools TTLCache": lambda: _cachetools_put(_ttl),
            "cachetools TTLCache + lock": _locked_put,
            "cachetools LRUCache": lambda: _cachetools_put(_lru),
        },
        PEERS,
        _baselines(put=True),
    ),
]
