"""`make bench-check`: count instructions per call on riprap's main paths and compare.

    python benches/check/check.py            # compare with baseline.json; exit 1 on a regression
    python benches/check/check.py --update   # measure and rewrite baseline.json

Wall-clock benchmarks on a shared machine move by tens of percent from run to run; instruction
counts do not. This runs `workload.py` once under callgrind (valgrind's instruction counter),
which counts every path's calls between two markers, and computes instructions per call on the
Rust backend. A path that now costs more than `--threshold` (10 %) over the committed baseline
fails the check, named with both numbers.

Instructions are not time: callgrind does not model caches, branch prediction or contention, so
a change that keeps the count and loses locality (or takes a contended lock) passes. The count
includes the Python loop around each call; the "over bare" column subtracts a bare call counted
in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BASELINE = HERE / "baseline.json"
WORKLOAD = HERE / "workload.py"

#: A rise above this fraction of the baseline fails the check.
THRESHOLD = 0.10
#: Calls counted per path (the counts are exact, so more calls only cost time).
CALLS = 10_000


@dataclasses.dataclass(frozen=True)
class Path:
    """One counted path: its key in the workload and baseline, its title, its reference."""

    key: str
    title: str
    #: The path whose count the "over bare" column subtracts (None: it is a reference).
    bare: str | None


#: Every path, in table order. References (bare is None) are measured and gated like the rest.
PATHS: tuple[Path, ...] = (
    Path("bare", "bare call f() (reference)", None),
    Path("bare_raise", "bare call that raises, caught (reference)", None),
    Path("retry_success", "retry decorator, success, sync", "bare"),
    Path("retry_fails_twice", "retry, fails twice then succeeds, zero wait", "bare"),
    Path("breaker_closed", "circuit breaker closed, sync", "bare"),
    Path("breaker_reject", "circuit breaker open: rejection, caught", "bare"),
    Path("try_acquire", "rate limiter try_acquire()", "bare"),
    Path("limited_call", "rate-limited function (decorator), sync", "bare"),
    Path("bare_key", "bare call f(key) over 1,000 keys (reference)", None),
    Path("keyed_check", "keyed try_acquire(key), 1,000 existing keys", "bare_key"),
    Path("keyed_call", "keyed decorator, key=lambda, 1,000 existing keys", "bare_key"),
    Path("async_bare", "await af() (reference)", None),
    Path("async_hand", "await hand-rolled async def try/except wrapper", "async_bare"),
    Path("async_breaker", "await circuit breaker decorated af()", "async_bare"),
    Path("async_retry", "await retry decorated af()", "async_bare"),
    Path("async_limiter", "await rate-limited af()", "async_bare"),
    Path("async_bulkhead", "await bulkhead decorated af()", "async_bare"),
    Path("hand4_sync", "four hand-rolled def try/except layers, sync", "bare"),
    Path("pipeline_sync", "pipeline retry+breaker+limiter+bulkhead, sync", "bare"),
    Path("hand4_async", "four hand-rolled async def layers", "async_bare"),
    Path(
        "pipeline_async", "await pipeline retry+breaker+limiter+bulkhead", "async_bare"
    ),
)


# --- comparing (pure: tested without valgrind) -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One path's line in the table."""

    key: str
    title: str
    baseline: float | None
    now: float | None
    over_bare: float | None
    #: now / baseline - 1, or None when either is missing.
    change: float | None
    failed: bool
    note: str


def compare(
    baseline: Mapping[str, float],
    now: Mapping[str, float],
    threshold: float = THRESHOLD,
    paths: Sequence[Path] = PATHS,
) -> list[Row]:
    """One row per path: failed when it rose more than `threshold` or was not measured.

    A path in the baseline that was not measured fails (the workload lost it); a measured path
    with no baseline is shown, not judged, until `make bench-check-update` records it.
    """
    known = {p.key for p in paths}
    extra = [Path(k, k, None) for k in sorted({*baseline, *now} - known)]
    rows = []
    for path in (*paths, *extra):
        if path.key not in baseline and path.key not in now:
            continue
        base, cur = baseline.get(path.key), now.get(path.key)
        over = None
        if cur is not None and path.bare is not None and path.bare in now:
            over = cur - now[path.bare]
        if cur is None:
            rows.append(
                Row(path.key, path.title, base, None, None, None, True, "not measured")
            )
            continue
        if base is None:
            rows.append(
                Row(path.key, path.title, None, cur, over, None, False, "no baseline")
            )
            continue
        change = cur / base - 1.0
        failed = cur > base * (1.0 + threshold)
        note = ""
        if failed:
            note = "SLOWER"
        elif cur < base * (1.0 - threshold):
            note = "faster: update the baseline"
        rows.append(Row(path.key, path.title, base, cur, over, change, failed, note))
    return rows


def failures(rows: Sequence[Row], threshold: float = THRESHOLD) -> list[str]:
    """One line per failed row, naming the path and its numbers."""
    out = []
    for r in rows:
        if not r.failed:
            continue
        if r.now is None:
            out.append(f"{r.key}: in the baseline but not measured")
        else:
            assert r.baseline is not None
            assert r.change is not None
            out.append(
                f"{r.key}: {r.baseline:,.0f} -> {r.now:,.0f} instructions per call "
                f"({r.change:+.1%}, limit +{threshold:.0%})"
            )
    return out


def render(rows: Sequence[Row]) -> str:
    """The table: path, baseline, now, change, now over bare."""

    def num(x: float | None) -> str:
        return "" if x is None else f"{x:,.0f}"

    head = ("path", "baseline", "now", "change", "over bare", "")
    body = [
        (
            f"{r.title} [{r.key}]",
            num(r.baseline),
            num(r.now),
            ""
            if r.change is None
            else f"{r.change + 0.0:+.1%}".replace("-0.0%", "+0.0%"),
            num(r.over_bare),
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        return "  ".join([first, *rest, cells[-1]]).rstrip()

    rule = "  ".join("-" * w for w in widths[:-1])
    return "\n".join([line(head), rule, *(line(b) for b in body)])


# --- measuring ---------------------------------------------------------------------------------


def _summaries(out_dir: pathlib.Path) -> dict[int, int]:
    """Part number -> instructions, from callgrind's numbered dump files."""
    parts = {}
    for f in out_dir.glob("callgrind.out.*"):
        part = total = None
        with f.open() as lines:
            for text in lines:
                if text.startswith("part:"):
                    part = int(text.split()[1])
                elif text.startswith("summary:"):
                    total = int(text.split()[1])
                    break
        if part is not None and total is not None:
            parts[part] = total
    return parts


def measure(calls: int = CALLS, paths: Sequence[Path] = PATHS) -> dict[str, float]:
    """Instructions per call on every path, counted by one callgrind run of the workload."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit(
            "bench-check needs valgrind (callgrind): apt-get install valgrind, "
            "or brew install valgrind"
        )
    env = {
        **os.environ,
        # The same hash seed every run: dicts and sets then probe alike.
        "PYTHONHASHSEED": "0",
        "RIPRAP_BACKEND": "rust",
    }
    with tempfile.TemporaryDirectory(prefix="riprap-bench-check-") as tmp:
        out_dir = pathlib.Path(tmp)
        proc = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--zero-before=getppid",
                "--dump-before=getpgrp",
                f"--callgrind-out-file={out_dir / 'callgrind.out'}",
                sys.executable,
                str(WORKLOAD),
                str(calls),
                *(p.key for p in paths),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(
                f"the workload failed under callgrind:\n{proc.stderr[-3000:]}"
            )
        order = [(str(k), int(n)) for k, n in json.loads(proc.stdout.splitlines()[-1])]
        counts = _summaries(out_dir)
    # Part k (from 1) is the k-th marked run; the last file, the rest of the program, has none.
    if sorted(counts)[: len(order)] != list(range(1, len(order) + 1)):
        raise SystemExit(
            f"callgrind dumped parts {sorted(counts)} for {len(order)} marked runs: "
            "were the getppid/getpgrp markers seen? (this libc may lack their symbols)"
        )
    by_run = {run: counts[i + 1] for i, run in enumerate(order)}
    return {
        p.key: round((by_run[p.key, calls] - by_run[p.key, 0]) / calls, 1)
        for p in paths
    }


# --- the record --------------------------------------------------------------------------------


def _output(*cmd: str) -> str:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu() -> str:
    try:
        for text in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """What the counts depend on besides riprap: recorded with the baseline."""
    commit = _output("git", "rev-parse", "--short", "HEAD")
    if _output("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {
        "machine": f"{_cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "valgrind": _output("valgrind", "--version"),
        "rustc": _output("rustc", "--version"),
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
    }


def _mismatches(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The differences that change counts by themselves (another Python, valgrind, compiler)."""
    return [
        f"{key}: baseline {recorded.get(key)!r}, now {now[key]!r}"
        for key in ("python", "valgrind", "rustc")
        if recorded.get(key) != now[key]
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench-check", description=__doc__.splitlines()[0])
    p.add_argument("--update", action="store_true", help="rewrite the baseline")
    p.add_argument("--baseline", type=pathlib.Path, default=BASELINE)
    p.add_argument("--threshold", type=float, default=THRESHOLD)
    p.add_argument("--calls", type=int, default=CALLS, help="calls counted per path")
    args = p.parse_args(argv)

    env = environment()
    now = measure(args.calls)
    recorded = json.loads(args.baseline.read_text()) if args.baseline.exists() else None
    if recorded is not None:
        print(
            f"instructions per call, rust backend, {args.calls:,} calls per path "
            f"(baseline: commit {recorded['commit']}, {recorded['date']})"
        )
        rows = compare(recorded["paths"], now, args.threshold)
    else:
        rows = compare({}, now, args.threshold)
    print(render(rows))
    mismatches = _mismatches(recorded, env) if recorded is not None else []
    if mismatches:
        print(
            "\nnote: counts differ for these reasons alone:\n  "
            + "\n  ".join(mismatches)
        )

    if args.update:
        record = {
            **env,
            "calls": args.calls,
            "unit": "instructions per call (callgrind Ir), Python loop included",
            "paths": now,
        }
        args.baseline.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nwrote {args.baseline} (commit {env['commit']})")
        return 0
    if recorded is None:
        print(f"\nno baseline at {args.baseline}: make bench-check-update records one")
        return 1
    failed = failures(rows, args.threshold)
    if failed:
        print("\nbench-check FAILED:\n  " + "\n  ".join(failed))
        if mismatches:
            print("(if the toolchain change explains it: make bench-check-update)")
        return 1
    print(f"\nbench-check passed: no path rose more than {args.threshold:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
