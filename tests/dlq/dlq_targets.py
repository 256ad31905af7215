"""Importable operations for dead-letter replays (`dlq_targets:<name>`), used by the tests.

Replay without a handler imports `module:qualname`, so these live in a module of their own. The
test files of this folder put the folder on `sys.path` (pytest's default import mode), and the
command-line tests pass it to their child processes in PYTHONPATH.
"""

from __future__ import annotations

import asyncio
from typing import Any

CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []


def record(*args: Any, **kwargs: Any) -> None:
    """Succeeds, remembering its arguments."""
    CALLS.append(("record", args, kwargs))


def fail(*args: Any, **kwargs: Any) -> None:
    """Always fails."""
    CALLS.append(("fail", args, kwargs))
    raise ValueError(f"still failing with {args}")


async def arecord(*args: Any, **kwargs: Any) -> None:
    """An async operation that succeeds."""
    await asyncio.sleep(0)
    CALLS.append(("arecord", args, kwargs))


def append_line(path: str, text: str) -> None:
    """Succeeds by appending a line to a file (seen from another process)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")


class Service:
    """A class whose static method is an importable operation (`dlq_targets:Service.ping`)."""

    @staticmethod
    def ping(x: int) -> None:
        CALLS.append(("ping", (x,), {}))


NOT_CALLABLE = 42
