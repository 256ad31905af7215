"""Durability under `kill -9` and concurrent writers from several processes.

A child process puts entries in a loop and reports each id over a pipe only after `put`
returned; the parent SIGKILLs it at a random moment, 50 times. Every reported id must be in the
file with its exact arguments, and `PRAGMA integrity_check` must pass. Then 4 processes put 500
entries each at once: all 2,000 rows land, with unique ids, and no writer ever sees "database
is locked". Children are forked (the interpreter and riprap are already loaded), so each run
costs milliseconds. Runs on the active backend.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import struct
import time
from collections import Counter
from pathlib import Path

import pytest

from riprap import DeadLetterQueue

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

KILLS = 50
ID = struct.Struct("<q")


def payload(child: int, n: int) -> list[object]:
    """What a child stores as its n-th entry: enough to tell a torn row from a whole one."""
    return [child, n, "x" * (n % 97), {"check": child * 1_000_003 + n}]


def putter(path: Path, child: int, w: int, limit: int | None) -> None:
    """The child: open its own queue, put forever (or `limit` times), report each id."""
    code = 1
    try:
        q = DeadLetterQueue(path, busy_timeout=30.0)
        n = 0
        while limit is None or n < limit:
            i = q.put("durability", args=payload(child, n), metadata={"child": child})
            os.write(w, ID.pack(i))  # only after put returned: committed
            n += 1
        code = 0
    except BaseException as e:
        os.write(w, ID.pack(-1) + repr(e).encode())
    finally:
        os._exit(code)


def read_ids(r: int) -> tuple[list[int], bytes]:
    """Every complete id written to the pipe, and any error text after a -1."""
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    ids, rest = [], b""
    for offset in range(0, len(data) - len(data) % ID.size, ID.size):
        (i,) = ID.unpack_from(data, offset)
        if i == -1:
            rest = data[offset + ID.size :]
            break
        ids.append(i)
    return ids, rest


def check_file(path: Path, committed: dict[int, int]) -> int:
    """Every committed id is present and whole; the file is sound. Returns the row count."""
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (rows,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    conn.close()
    q = DeadLetterQueue(path)
    entries = {e.id: e for e in q.list(limit=None)}
    q.close()
    assert len(entries) == rows
    for entry in entries.values():  # every row is whole, reported or not
        c, n = entry.args[0], entry.args[1]  # type: ignore[index]
        assert list(entry.args) == payload(c, n)
        assert entry.metadata == {"child": c}
    for i, child in committed.items():
        assert i in entries, f"committed id {i} is missing"
        assert entries[i].args[0] == child  # type: ignore[index]
    return int(rows)


def test_sigkill_at_random_loses_no_committed_entry(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite3"
    DeadLetterQueue(path).close()
    rng = random.Random(20_261_205)
    committed: dict[int, int] = {}
    for child in range(KILLS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            putter(path, child, w, None)
        os.close(w)
        # Let it commit at least one entry, then kill it after a random extra while.
        ready, _, _ = select.select([r], [], [], 30)
        assert ready, "the child never committed anything"
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status)
        assert os.WTERMSIG(status) == signal.SIGKILL
        ids, error = read_ids(r)
        os.close(r)
        assert error == b"", error.decode(errors="replace")
        assert ids, "no id reported"
        for i in ids:
            assert i not in committed
            committed[i] = child
    rows = check_file(path, committed)
    # A put that committed but was killed before it reported may add one row per kill.
    assert len(committed) <= rows <= len(committed) + KILLS


def test_four_processes_put_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    DeadLetterQueue(path).close()
    procs, per_child = 4, 500
    children = []
    for child in range(procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            putter(path, child, w, per_child)
        os.close(w)
        children.append((pid, r))
    committed: dict[int, int] = {}
    errors = []
    for child, (pid, r) in enumerate(children):
        ids, error = read_ids(r)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if error or status != 0:
            errors.append(error.decode(errors="replace") or f"exit status {status}")
        assert len(ids) == per_child or errors
        for i in ids:
            assert i not in committed
            committed[i] = child
    assert errors == []  # in particular, never "database is locked"
    assert len(committed) == procs * per_child
    assert check_file(path, committed) == procs * per_child
    assert Counter(committed.values()) == dict.fromkeys(range(procs), per_child)
