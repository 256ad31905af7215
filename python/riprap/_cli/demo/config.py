"""The demo's settings: `DemoConfig`, and the `riprap demo` options that fill it."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

__all__ = ["DemoConfig", "add_arguments", "config_from"]

#: Simulated seconds of a full run and of `--quick`.
DURATION = 120.0
QUICK_DURATION = 40.0
#: Bounds: the incidents and the breakers' recovery need room; the top keeps a run to minutes.
MIN_DURATION = 10.0
MAX_DURATION = 3600.0
MAX_AGENTS = 500


def _duration(value: object) -> float:
    seconds = _float(value)
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        raise ValueError(
            f"must be between {MIN_DURATION:g} and {MAX_DURATION:g} simulated seconds "
            f"(the incidents and the breakers' recovery need room), got {value!r}"
        )
    return seconds


def _agents(value: object) -> int:
    n = _int(value)
    if not 1 <= n <= MAX_AGENTS:
        raise ValueError(
            f"must be a whole number from 1 to {MAX_AGENTS}, got {value!r}"
        )
    return n


def _failure_rate(value: object) -> float:
    rate = _float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"must be a fraction from 0 to 1 (0.1: 10 %), got {value!r}")
    return rate


def _seed(value: object) -> int:
    return _int(value)


def _pace(value: object) -> float | None:
    if value is None:
        return None
    pace = _float(value)
    if not pace > 0.0:
        raise ValueError(
            f"must be > 0 (real seconds per simulated second), got {value!r}"
        )
    return pace


def _float(value: object) -> float:
    if isinstance(value, bool):
        raise TypeError(f"must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {value!r}")
    return number


def _int(value: object) -> int:
    if isinstance(value, (bool, float)):
        raise TypeError(f"must be a whole number, got {value!r}")
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        raise ValueError(f"must be a whole number, got {value!r}") from None


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """One demo run. Invalid values raise ValueError naming the field.

    Attributes:
        duration: Simulated seconds the agents work for (10 to 3600).
        agents: How many agents (1 to 500).
        failure_rate: The background fault rate of every dependency, in [0, 1].
        seed: Seeds every random stream: the same seed gives the same run.
        dlq: The dead-letter queue file (None: a new temporary directory's).
        pace: Real seconds spent per simulated second (None: run as fast as possible).
    """

    duration: float = DURATION
    agents: int = 20
    failure_rate: float = 0.1
    seed: int = 7
    dlq: str | None = None
    pace: float | None = None

    def __post_init__(self) -> None:
        checks: dict[str, Callable[[Any], Any]] = {
            "duration": _duration,
            "agents": _agents,
            "failure_rate": _failure_rate,
            "seed": _seed,
            "pace": _pace,
        }
        for name, check in checks.items():
            try:
                value = check(getattr(self, name))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name} {exc}") from None
            object.__setattr__(self, name, value)
        if self.dlq is not None and not isinstance(self.dlq, str):
            raise TypeError(f"dlq must be a path (str) or None, got {self.dlq!r}")


def _option(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse `type=`: argparse prefixes the message with the option's name."""

    def parse(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = check.__name__.lstrip("_")
    return parse


def _dlq_path(text: str) -> str:
    path = os.path.abspath(text)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(f"the directory {folder} does not exist, got {text!r}")
    if os.path.isdir(path):
        raise ValueError(f"a directory, not a file name, got {text!r}")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `riprap demo` options to `parser`."""
    parser.add_argument(
        "--duration",
        type=_option(_duration),
        default=None,
        metavar="S",
        help=f"simulated seconds to run (default {DURATION:g}; --quick: "
        f"{QUICK_DURATION:g}); nothing really waits",
    )
    parser.add_argument(
        "--agents",
        type=_option(_agents),
        default=20,
        metavar="N",
        help="agents in the fleet (default 20)",
    )
    parser.add_argument(
        "--failure-rate",
        type=_option(_failure_rate),
        default=0.1,
        metavar="F",
        help="background fault rate of every dependency, 0 to 1 (default 0.1)",
    )
    parser.add_argument(
        "--seed",
        type=_option(_seed),
        default=7,
        metavar="N",
        help="seed of every random choice: the same seed gives the same run (default 7)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run: {QUICK_DURATION:g} simulated seconds (unless --duration says)",
    )
    parser.add_argument(
        "--dlq",
        type=_option(_dlq_path),
        default=None,
        metavar="PATH",
        help="the dead-letter queue file (default: riprap-dlq.sqlite3 in a new temporary "
        "directory)",
    )


def config_from(args: argparse.Namespace) -> DemoConfig:
    """The `DemoConfig` the parsed `riprap demo` options describe."""
    duration = args.duration
    if duration is None:
        duration = QUICK_DURATION if args.quick else DURATION
    return DemoConfig(
        duration=duration,
        agents=args.agents,
        failure_rate=args.failure_rate,
        seed=args.seed,
        dlq=args.dlq,
    )
