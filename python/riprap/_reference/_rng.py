"""Reference twin of `rust/core/src/rng.rs`: wyrand on masked integers."""

from __future__ import annotations

import os
import threading
import time

from .._fork import track

__all__ = ["Rng", "note_fork"]

_MASK = (1 << 64) - 1
_INC = 0xA0761D6478BD642F
_XOR = 0xE7037ED1A0B428DB
_fork_generation = 0


def note_fork() -> None:
    """Tells every unseeded generator the process forked."""
    global _fork_generation
    _fork_generation += 1


def _entropy() -> int:
    return int.from_bytes(os.urandom(8), "little") ^ (time.monotonic_ns() & _MASK)


class Rng:
    """wyrand: `Rng(seed)` gives the same stream as the Rust core; `Rng()` seeds from entropy."""

    def __init__(self, seed: int | None = None) -> None:
        self._seeded = seed is not None
        self._state = (seed & _MASK) if seed is not None else _entropy()
        self._generation = _fork_generation
        self._after_fork()
        track(self)

    def _after_fork(self) -> None:
        """A new lock (an unseeded stream reseeds on its next draw, see `note_fork`)."""
        self._lock = threading.Lock()

    def next_u64(self) -> int:
        """The next 64 random bits."""
        with self._lock:
            if not self._seeded and self._generation != _fork_generation:
                self._state = _entropy()
                self._generation = _fork_generation
            self._state = (self._state + _INC) & _MASK
            s = self._state
        t = s * (s ^ _XOR)
        return ((t >> 64) ^ t) & _MASK

    def next_f64(self) -> float:
        """A uniform float in [0, 1) with 53 random bits."""
        return (self.next_u64() >> 11) * (1.0 / 9007199254740992.0)


os.register_at_fork(after_in_child=note_fork)
