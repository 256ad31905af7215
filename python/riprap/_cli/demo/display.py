"""The demo's live display: a progress bar on a terminal, plain lines when piped.

On a terminal the bar is one line redrawn in place with a carriage return (no escape codes, no
dependency); incidents and breaker transitions are printed above it as they happen. Piped into
a file or another program, the same events are printed as plain lines, with a progress line
every tenth of the run, and no carriage return ever.
"""

from __future__ import annotations

import shutil
from typing import NamedTuple, TextIO

from .fleet import OPERATIONS

__all__ = ["Display", "Tally"]

BAR = 12


class Tally(NamedTuple):
    """The run so far, as the progress display shows it."""

    calls: int
    retries: int
    fallbacks: int
    dead_letters: int
    #: (breaker name, state) pairs.
    breakers: tuple[tuple[str, str], ...]

    def short(self) -> str:
        """For the bar (80 columns): a breaker that is not closed first, then the counts."""
        trouble = " ".join(
            f"{name} {state.upper()}"
            for name, state in self.breakers
            if state != "closed"
        )
        counts = (
            f"{self.retries} retries, {self.fallbacks} fallbacks, "
            f"{self.dead_letters} dead letters"
        )
        return f"{trouble} | {counts}" if trouble else counts

    def long(self) -> str:
        """For a plain line."""
        states = ", ".join(f"{name} {state}" for name, state in self.breakers)
        return (
            f"{self.calls} calls, {self.retries} retries, {self.fallbacks} fallback "
            f"answers, {self.dead_letters} dead letters; {states}"
        )


class Display:
    """Where the run reports its progress.

    Args:
        out: The stream to write to.
        tty: Redraw a progress bar in place (a terminal) or print plain lines.
    """

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._bar = ""
        self._next_line = 0.1

    def begin(self, pipelines: dict[str, list[str]]) -> None:
        """The run is set up: each operation's pipeline, outermost layer first, in words."""
        self._line("each call goes through a riprap.Pipeline (outermost layer first):")
        for op, layers in pipelines.items():
            self._line(f"  {OPERATIONS.get(op, op):<17} {' > '.join(layers)}")
        self._line("")

    def event(self, at: float, text: str) -> None:
        """Something happened at simulated time `at`."""
        self._line(f"{at:8.1f}s  {text}")

    def progress(self, fraction: float, at: float, tally: Tally) -> None:
        """The run is `fraction` done at simulated time `at`; `tally` sums it up."""
        if self.tty:
            filled = round(fraction * BAR)
            bar = f"[{'#' * filled}{'-' * (BAR - filled)}]{fraction:5.0%} {at:5.1f}s"
            # One character short of the width: a full line would wrap, and `\r` would then
            # redraw only its second half.
            width = shutil.get_terminal_size().columns - 1
            self._draw(f"{bar}  {tally.short()}"[:width])
        elif fraction >= self._next_line - 1e-9:
            self._line(f"{at:8.1f}s  {fraction:4.0%} done: {tally.long()}")
            while self._next_line <= fraction + 1e-9:
                self._next_line += 0.1

    def close(self) -> None:
        """End the display: the bar's last state stays on its own line."""
        if self.tty and self._bar:
            self.out.write("\n")
            self._bar = ""
        self.out.flush()

    def _line(self, text: str) -> None:
        if self.tty and self._bar:
            # Over the bar, then the bar again below the new line.
            self.out.write("\r" + text.ljust(len(self._bar)) + "\n")
            self.out.write("\r" + self._bar)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def _draw(self, bar: str) -> None:
        self.out.write("\r" + bar.ljust(len(self._bar)))
        self._bar = bar
        self.out.flush()
