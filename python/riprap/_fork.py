"""Fork awareness on the Python side: a forked child starts fresh.

A `threading.Lock` that another parent thread held at the moment of `os.fork()` is never
released in the child, so the child's first use of that object would hang (peers shipped this
bug: RustPython/RustPython#7178, daboross/fern#59). Objects that hold a lock or per-process
state call `track(self)`; in every forked child `renew_all` (registered with
`os.register_at_fork`) calls each one's `_after_fork()`, which replaces its locks and, for the
stateful primitives of the reference backend, starts their state afresh exactly as the Rust core
does on first use after a fork (`rust/core/src/fork.rs`). The child has one thread while this
runs, so nothing races with it.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["renew_all", "track"]


class Renewable(Protocol):
    def _after_fork(self) -> None: ...


_live: weakref.WeakSet[Renewable] = weakref.WeakSet()


def track(obj: Renewable) -> None:
    """Have `obj._after_fork()` called in every forked child while `obj` lives."""
    _live.add(obj)


def renew_all() -> None:
    """Renew every tracked object (what a forked child does first)."""
    for obj in list(_live):
        obj._after_fork()


os.register_at_fork(after_in_child=renew_all)
