"""`make bench-check`'s comparison: a path that got slower fails, named with its numbers.

The counting needs valgrind and runs in `make bench-check`; these tests drive the comparison
with made-up counts, so they need neither valgrind nor a build of any particular speed.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from types import ModuleType

import pytest

CHECK_DIR = pathlib.Path(__file__).resolve().parent.parent / "benches" / "check"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"bench_check_{name}", CHECK_DIR / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


check = _load("check")

BASE = {"bare": 400.0, "breaker_closed": 1000.0, "try_acquire": 500.0}


def test_a_path_20_percent_slower_fails_naming_the_path_and_numbers() -> None:
    now = {**BASE, "breaker_closed": 1200.0}
    rows = check.compare(BASE, now)
    failed = {r.key for r in rows if r.failed}
    assert failed == {"breaker_closed"}
    assert check.failures(rows) == [
        "breaker_closed: 1,000 -> 1,200 instructions per call (+20.0%, limit +10%)"
    ]


def test_every_path_20_percent_slower_fails_each() -> None:
    now = {k: v * 1.2 for k, v in BASE.items()}
    rows = check.compare(BASE, now)
    assert [r.key for r in rows if r.failed] == [
        "bare",
        "breaker_closed",
        "try_acquire",
    ]
    assert len(check.failures(rows)) == 3


def test_the_limit_is_a_rise_above_ten_percent() -> None:
    within = check.compare(BASE, {**BASE, "breaker_closed": 1099.0})
    above = check.compare(BASE, {**BASE, "breaker_closed": 1101.0})
    assert not any(r.failed for r in within)
    assert [r.key for r in above if r.failed] == ["breaker_closed"]
    # The threshold is a parameter: 5 % catches what 10 % lets through.
    assert [
        r.key for r in check.compare(BASE, {**BASE, "bare": 430.0}, 0.05) if r.failed
    ] == ["bare"]


def test_faster_passes_and_asks_for_a_new_baseline() -> None:
    rows = check.compare(BASE, {**BASE, "try_acquire": 300.0})
    assert not any(r.failed for r in rows)
    (row,) = (r for r in rows if r.key == "try_acquire")
    assert row.change == pytest.approx(-0.4)
    assert "update the baseline" in row.note


def test_a_path_missing_from_the_measurement_fails() -> None:
    now = {k: v for k, v in BASE.items() if k != "try_acquire"}
    rows = check.compare(BASE, now)
    assert check.failures(rows) == ["try_acquire: in the baseline but not measured"]


def test_a_new_path_is_shown_not_judged() -> None:
    rows = check.compare(BASE, {**BASE, "keyed_check": 900.0})
    (row,) = (r for r in rows if r.key == "keyed_check")
    assert not row.failed
    assert row.baseline is None
    assert row.note == "no baseline"


def test_over_bare_subtracts_the_reference_measured_in_the_same_run() -> None:
    rows = check.compare(BASE, {**BASE, "bare": 450.0})
    (row,) = (r for r in rows if r.key == "breaker_closed")
    assert row.over_bare == 550.0


def test_the_table_has_path_baseline_now_change() -> None:
    table = check.render(check.compare(BASE, {**BASE, "breaker_closed": 1200.0}))
    header, rule, *lines = table.splitlines()
    assert header.split() == ["path", "baseline", "now", "change", "over", "bare"]
    assert set(rule) == {"-", " "}
    (line,) = (t for t in lines if "[breaker_closed]" in t)
    assert line.split()[-5:] == ["1,000", "1,200", "+20.0%", "800", "SLOWER"]


def test_the_committed_baseline_covers_every_path_and_records_the_machine() -> None:
    baseline = json.loads((CHECK_DIR / "baseline.json").read_text())
    paths = [p.key for p in check.PATHS]
    assert sorted(baseline["paths"]) == sorted(paths)
    assert all(v > 0 for v in baseline["paths"].values())
    for key in ("machine", "python", "valgrind", "rustc", "commit", "date", "calls"):
        assert baseline[key], key
    # The workload knows every path the checker asks for (it exits on an unknown one).
    workload = _load("workload")
    assert sorted(workload.PATHS) == sorted(paths)
    # Each reference the "over bare" column subtracts is itself measured.
    assert {p.bare for p in check.PATHS} - {None} <= set(paths)
