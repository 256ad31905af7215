"""The progress display of `riprap bench`, on standard error.

On a terminal, one bar redrawn in place (measurements done, the one under way, the time so
far); elsewhere (a pipe, a file, CI logs), one plain line per case, so nothing is redrawn.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

__all__ = ["Progress"]

WIDTH = 24  # characters of the bar


class Progress:
    """Counts measurements as they start and shows how far a run has got."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = 0
        self.case: str | None = None
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the display was made."""
        return time.monotonic() - self.t0

    def __call__(self, case: object, impl: str) -> None:
        """One measurement starts: `impl` on `case` (a `Case`, or anything with a `key`)."""
        self.started += 1
        key = str(getattr(case, "key", case))
        if self.tty:
            filled = WIDTH * (self.started - 1) // max(self.total, 1)
            bar = "#" * filled + "." * (WIDTH - filled)
            line = (
                f"{self.label} [{bar}] {self.started}/{self.total} "
                f"{self.elapsed():.0f} s  {key}: {impl}"
            )
            cols = shutil.get_terminal_size((80, 24)).columns
            self.stream.write("\r\x1b[K" + line[: max(cols - 1, 20)])
        elif key != self.case:
            self.stream.write(
                f"{self.label}: {self.started}/{self.total} measurements, "
                f"{self.elapsed():.0f} s: {key}\n"
            )
        self.case = key
        self.stream.flush()

    def finish(self) -> None:
        """The last measurement is done: say so, and leave the line for what follows."""
        done = f"{self.label}: {self.started} measurements in {self.elapsed():.0f} s\n"
        self.stream.write(("\r\x1b[K" if self.tty else "") + done)
        self.stream.flush()
