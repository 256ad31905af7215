"""Shared fixtures.

`make test` runs this suite twice, with `RIPRAP_BACKEND=rust` and `RIPRAP_BACKEND=python`, so every
behavioural test runs on both backends (the backend is read once at import, as in production). A
plain `pytest` runs one backend, and says so in its header and its summary.
Differential tests import both cores directly and compare them event by event.
"""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, settings

import riprap
from riprap.testing import ManualClock

settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


#: Set by `make test`, which runs the suite once per backend: "1/2" (rust), then "2/2" (python).
#: Unset, this run is the only one, and it covers one backend.
MAKE_TEST_PASS = os.environ.get("RIPRAP_TEST_PASS")


def one_backend_note() -> str:
    """What a plain `pytest` run must not let a developer forget."""
    other = "python" if riprap.backend() == "rust" else "rust"
    return (
        f"riprap backend: {riprap.backend()} only — `make test` runs both backends "
        f"(or run again with RIPRAP_BACKEND={other})"
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    line = f"riprap backend: {riprap.backend()} (RIPRAP_BACKEND={os.environ.get('RIPRAP_BACKEND')})"
    if MAKE_TEST_PASS:
        return [f"{line}, pass {MAKE_TEST_PASS} of `make test`"]
    return [line, one_backend_note()]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MAKE_TEST_PASS:
        return
    terminalreporter.section("one backend", sep="!", yellow=True, bold=True)
    terminalreporter.write_line(one_backend_note(), yellow=True, bold=True)


@pytest.fixture
def clock() -> ManualClock:
    """A fresh manual clock at t=0."""
    return ManualClock()


@pytest.fixture(autouse=True)
def _riprap_logs_at_debug() -> None:
    """Tests see every riprap log record (caplog) without configuring handlers."""
    logging.getLogger("riprap").setLevel(logging.DEBUG)
