"""`riprap demo`: a simulated fleet of flaky agents run through riprap's policies.

A fleet of agents, their API, an external API and a database, with faults injected all along
and three incidents (a latency spike, an outage that recovers, a database failover), run in
simulated time: a couple of minutes of the fleet's life take about a second, nothing really
sleeps, and the same seed gives the same run on any machine. While it runs it shows its
progress (a bar on a terminal, plain lines when piped) and every incident and breaker
transition; at the end, what each policy did, each primitive's statistics, the
`ResilienceMonitor` report with the health status, and the dead-letter queue with the command
that replays it.

`simulate(config)` runs it and returns a `DemoResult` (what tests assert on); `run(config)`
is the command: it prints the run and its result.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from . import render
from .config import DemoConfig, add_arguments, config_from
from .display import Display
from .runner import DemoResult, simulate

__all__ = [
    "DemoConfig",
    "DemoResult",
    "Display",
    "add_arguments",
    "config_from",
    "run",
    "simulate",
]


def run(
    config: DemoConfig | None = None,
    *,
    out: TextIO | None = None,
    tty: bool | None = None,
) -> int:
    """Run the demo and print it; returns the exit code.

    Args:
        config: The run's settings (default `DemoConfig()`).
        out: Where to print (default standard output).
        tty: Draw a progress bar in place (default: whether `out` is a terminal).
    """
    config = config or DemoConfig()
    out = out or sys.stdout
    if tty is None:
        isatty = getattr(out, "isatty", None)
        tty = bool(isatty and isatty())
    try:
        render.header(config, out)
        result = simulate(config, Display(out, tty=tty))
        render.result(result, out)
        out.flush()
    except KeyboardInterrupt:
        print("\nriprap demo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`riprap demo | head`): stop quietly, and keep the
        # interpreter's own flush at exit from failing again on the closed pipe.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0
