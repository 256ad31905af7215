"""Dead-letter queue: durable `put` throughput (entries/s) with `synchronous=FULL`.

Every `put` is one `BEGIN IMMEDIATE` transaction whose commit waits for an fsync of the WAL, so
the number measures the disk as much as riprap. Next to it, the same INSERT through plain
`sqlite3` with the same settings (WAL, `synchronous=FULL`, one transaction per row), so what
riprap adds (argument encoding, the retention check, the trigger-kept count) is visible; and 4
processes putting at once into one file (forked children; commits serialise on the WAL).

The numbers are printed and stored in pytest-benchmark's `extra_info`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import riprap

ARGS = ("agent-17", {"command": "reboot", "attempt": 3, "tags": ["edge", "eu-west"]})
ERROR = ConnectionError("connection reset by peer")
PUTS = 300  # per round and per process


def _report(
    benchmark: Any, capsys: pytest.CaptureFixture[str], what: str, per_second: float
) -> None:
    benchmark.extra_info.update(entries_per_second=per_second, backend=riprap.backend())
    with capsys.disabled():
        print(f"\ndead-letter queue, {what}: {per_second:,.0f} entries/s")


def _timed(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def test_put_one_process(
    benchmark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = riprap.DeadLetterQueue(tmp_path / "bench.sqlite3")

    def put() -> int:
        return q.put("agents:send", ARGS, {"urgent": True}, error=ERROR, attempts=3)

    rates = [_timed(put, PUTS) for _ in range(5)]
    benchmark.pedantic(put, rounds=PUTS, iterations=1, warmup_rounds=10)
    _report(
        benchmark,
        capsys,
        "one process, synchronous=FULL (median of 5 x 300)",
        _median(rates),
    )
    q.close()


def test_put_raw_sqlite_same_settings(
    benchmark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(tmp_path / "raw.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, operation TEXT, payload TEXT,"
        " error TEXT, created_at REAL)"
    )

    def put() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO t (operation, payload, error, created_at) VALUES (?,?,?,?)",
            ("agents:send", repr(ARGS), str(ERROR), time.time()),
        )
        conn.execute("COMMIT")

    rates = [_timed(put, PUTS) for _ in range(5)]
    benchmark.pedantic(put, rounds=PUTS, iterations=1, warmup_rounds=10)
    _report(benchmark, capsys, "plain sqlite3 INSERT, same settings", _median(rates))
    conn.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_put_four_processes(
    benchmark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shared.sqlite3"
    riprap.DeadLetterQueue(path).close()
    procs = 4

    def round_() -> float:
        t0 = time.perf_counter()
        pids = []
        for _ in range(procs):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    q = riprap.DeadLetterQueue(path, busy_timeout=60.0)
                    for _ in range(PUTS):
                        q.put("agents:send", ARGS, error=ERROR, attempts=3)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            assert status == 0
        return procs * PUTS / (time.perf_counter() - t0)

    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(round_()), rounds=3, iterations=1)
    _report(
        benchmark,
        capsys,
        f"{procs} processes at once, synchronous=FULL (median of 3 x {procs} x {PUTS})",
        _median(rates),
    )


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    return ys[len(ys) // 2]
