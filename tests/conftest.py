"""Shared fixtures.

`make test` runs this suite twice, with `RIPRAP_BACKEND=rust` and `RIPRAP_BACKEND=python`, so every
behavioural test runs on both backends (the backend is read once at import, as in production).
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


def pytest_report_header(config: pytest.Config) -> str:
    return f"riprap backend: {riprap.backend()} (RIPRAP_BACKEND={os.environ.get('RIPRAP_BACKEND')})"


@pytest.fixture
def clock() -> ManualClock:
    """A fresh manual clock at t=0."""
    return ManualClock()


@pytest.fixture(autouse=True)
def _riprap_logs_at_debug() -> None:
    """Tests see every riprap log record (caplog) without configuring handlers."""
    logging.getLogger("riprap").setLevel(logging.DEBUG)
