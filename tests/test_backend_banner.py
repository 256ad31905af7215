"""A plain `pytest` says loudly that it ran one backend; a `make test` pass says which pass it is.

Each case runs pytest on a small test file in a child process, on the active backend.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import riprap

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTE = f"riprap backend: {riprap.backend()} only — `make test` runs both backends"


def run_pytest(**env: str) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if k != "RIPRAP_TEST_PASS"}
    child_env.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_clock.py",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_plain_pytest_says_in_its_header_and_summary_that_it_ran_one_backend() -> None:
    proc = run_pytest()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header, _, rest = proc.stdout.partition("tests/test_clock.py")
    assert NOTE in header
    assert NOTE in rest  # the terminal summary, after the tests ran


def test_a_make_test_pass_names_its_pass_instead() -> None:
    proc = run_pytest(RIPRAP_TEST_PASS="2/2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"riprap backend: {riprap.backend()} " in proc.stdout
    assert "pass 2/2 of `make test`" in proc.stdout
    assert NOTE not in proc.stdout
