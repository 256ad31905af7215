"""The `riprap` command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import riprap
from riprap._cli import main


def test_help_explains_each_command(capsys: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "riprap", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "demo" in proc.stdout
    assert "bench" in proc.stdout


def test_no_command_prints_help_and_fails() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "riprap"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "usage: riprap" in proc.stdout


def test_bench_json_measures_riprap(capsys: object, monkeypatch: object) -> None:
    from riprap._cli.bench import cases, limiter, monitor

    # The keyed cases build a million keys; a thousand show the same plumbing quickly.
    monkeypatch.setattr(limiter, "KEYS", 1000)  # type: ignore[attr-defined]
    monkeypatch.setattr(limiter, "PEER_KEYS", 1000)  # type: ignore[attr-defined]
    # A scrape of 1,000 primitives takes milliseconds; 40 go through the same code.
    monkeypatch.setattr(monitor, "SCRAPED", 40)  # type: ignore[attr-defined]
    argv = ["bench", "--quick", "--json", "-", "--no-python-backend"]
    assert main([*argv, "--only", "riprap,hand-rolled"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]  # type: ignore[attr-defined]
    measured = {(r["case"], r["impl"]) for r in rows}
    assert {
        ("retry_success", "riprap"),
        ("retry_success", "hand-rolled"),
        ("retry_fails_twice", "riprap"),
        ("retry_fails_twice", "hand-rolled"),
    } <= measured
    # Every registered case was measured for both implementations, and nothing else.
    assert measured == {
        (case.key, impl)
        for case in cases.all_cases()
        for impl in ("riprap", "hand-rolled")
        if impl in case.build
    }
    assert all(r["backend"] == riprap.backend() for r in rows)
    assert all(r["bare_ns"] > 0 for r in rows)
    assert all(r["alloc_bytes"] is not None and r["alloc_bytes"] >= 0 for r in rows)


def test_bench_measures_each_case_against_its_baseline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `riprap bench` and `make bench` must measure alike: a case whose harness does work of its
    # own per call (the keyed cases choose a key) is measured against that work, not against a
    # bare call. A fake case counts the calls of its baseline; no timing is asserted.
    from riprap._cli.bench import cases, harness

    calls = {"fn": 0, "baseline": 0}

    def fn() -> None:
        calls["fn"] += 1

    def baseline() -> None:
        calls["baseline"] += 1

    fake = harness.Case(
        "fake_case",
        "a fake case",
        None,
        {"fake": lambda: fn},
        baselines={"fake": lambda: baseline},
    )
    monkeypatch.setattr(cases, "all_cases", lambda: [fake])
    assert main(["bench", "--quick", "--json", "-", "--only", "fake"]) == 0
    rows = json.loads(capsys.readouterr().out)["results"]
    assert [(r["case"], r["impl"]) for r in rows] == [("fake_case", "fake")]
    assert calls["fn"] > 0
    assert calls["baseline"] > 0  # 0 when the bench path measures against a bare call


def test_a_method_is_reported_raw_beside_its_cost_over_an_empty_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # try_acquire() is a whole call the caller makes besides its own work: its cost over an
    # empty call is not its price. A method case reports both, measured against what it says.
    from riprap._cli.bench import cases, harness

    calls = {"raw baseline": 0}

    def raw_baseline() -> None:
        calls["raw baseline"] += 1

    method = harness.Case(
        "limiter_fake",
        "a method",
        80.0,
        {"riprap": lambda: harness.bare, "other": lambda: harness.bare},
        method=True,
        raw_baselines={"other": lambda: raw_baseline},
    )
    plain = harness.Case("limiter_plain", "a decorator", None, {"riprap": lambda: bare})
    monkeypatch.setattr(cases, "all_cases", lambda: [method, plain])
    assert main(["bench", "--quick", "--json", "-", "--no-python-backend"]) == 0
    out = json.loads(capsys.readouterr().out)["results"]
    rows = {(r["case"], r["impl"]): r for r in out}
    assert rows[("limiter_fake", "riprap")]["raw_ns"] is not None
    assert rows[("limiter_fake", "other")]["raw_ns"] is not None
    assert rows[("limiter_plain", "riprap")]["raw_ns"] is None
    assert calls["raw baseline"] > 0
    results = [
        harness.Result("limiter_fake", "riprap", "rust", 45.0, 30.0, 41, 78.0),
        harness.Result("limiter_fake", "riprap", "python", 900.0, 30.0, 41, 960.0),
    ]
    table = harness.render_table([method], results).splitlines()
    times = "\u00d7"  # the table's multiplication sign
    assert table[2] == (
        f"| a method, over an empty call | ≤ 80 ns | 45 ns | 900 ns | 20.0{times} |"
    )
    assert table[3] == (
        f"| a method, the whole call (raw) |  | 78 ns | 960 ns | 12.3{times} |"
    )


def bare() -> int:
    return 1
