"""Backend selection: the Rust core (default) or the pure-Python reference.

`RIPRAP_BACKEND` is read exactly once, here, at import. Everything else in the package gets its
core types from `core`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__all__ = ["NAME", "core"]

NAME = os.environ.get("RIPRAP_BACKEND", "rust").strip().lower() or "rust"
if NAME not in ("rust", "python"):
    raise ImportError(f"RIPRAP_BACKEND must be 'rust' or 'python', got {NAME!r}")

if TYPE_CHECKING or NAME == "rust":
    from . import _core as core
else:
    from . import _reference as core

if NAME == "rust":
    # A forked child must not replay its parent's jitter stream (unseeded jitter reseeds in
    # the child, or forked workers would retry in lockstep). The reference
    # registers its own hook when it is imported.
    os.register_at_fork(after_in_child=core.note_fork)
