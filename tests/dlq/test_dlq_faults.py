"""When the queue's own storage fails: a clear DeadLetterError, and nothing committed is lost.

Disk full (`PRAGMA max_page_count`), a read-only directory, a corrupt header, a file that is not
SQLite, another application's database, a lock held past the busy timeout. Runs on the active
backend. The read-only directory case runs its queue in a forked child as user `nobody` when the
suite runs as root (root ignores permission bits).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from riprap import DeadLetterError, DeadLetterQueue

NOBODY = 65534


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def filled(path: Path, n: int = 5) -> list[int]:
    """A queue at `path` holding `n` entries, closed; their ids."""
    q = DeadLetterQueue(path)
    ids = [q.put("op", args=[i, "x" * 100]) for i in range(n)]
    q.close()
    return ids


def intact(path: Path, ids: list[int]) -> None:
    """Every id is there with its arguments, and SQLite finds the file sound."""
    q = DeadLetterQueue(path)
    assert [(e.id, e.args[0]) for e in q.list(limit=None)] == [  # type: ignore[index]
        (i, n) for n, i in enumerate(ids)
    ]
    q.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_disk_full(tmp_path: Path) -> None:
    path = tmp_path / "full.sqlite3"
    ids = filled(path)
    q = DeadLetterQueue(path)
    (pages,) = q._read("x", lambda c: c.execute("PRAGMA page_count").fetchone())
    q._read("x", lambda c: c.execute(f"PRAGMA max_page_count = {pages + 1}"))

    def fill() -> None:
        while len(ids) < 1000:
            ids.append(q.put("op", args=[len(ids), "y" * 2000]))

    with pytest.raises(DeadLetterError) as info:
        fill()
    assert len(ids) < 1000
    err = info.value
    assert str(path) in str(err)
    assert "full" in str(err)
    assert isinstance(err.__cause__, sqlite3.Error)
    assert err.__cause__.sqlite_errorname == "SQLITE_FULL"  # type: ignore[attr-defined]
    assert err.path == str(path)
    q.close()
    intact(path, ids)  # every put that returned is there; the failed one is not
    q = DeadLetterQueue(path)  # a new connection has no page limit
    q.put("op", args=[len(ids)])
    q.close()


def as_nobody(work: Callable[[], list[str]]) -> list[str]:
    """Run `work` in a forked child as user nobody (as ourselves when not root); its lines.

    A fork, not a new interpreter: the interpreter may live where nobody cannot read.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            os.write(w, json.dumps(work()).encode())
            code = 0
        except BaseException as e:
            os.write(w, json.dumps([f"crashed: {e!r}"]).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX permissions and fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_read_only_directory() -> None:
    # Under /tmp rather than tmp_path: every directory above must be searchable by nobody.
    top = Path(tempfile.mkdtemp(prefix="riprap-ro-"))
    try:
        read_only_directory(top)
    finally:
        shutil.rmtree(top)


def read_only_directory(top: Path) -> None:
    top.chmod(0o755)
    folder = top / "ro"
    folder.mkdir()
    path = folder / "dlq.sqlite3"
    ids = filled(path)
    if os.geteuid() == 0:
        os.chown(folder, NOBODY, NOBODY)
        os.chown(path, NOBODY, NOBODY)
    folder.chmod(0o500)
    before = digest(path)
    try:

        def work() -> list[str]:
            lines = []
            for name in ("dlq.sqlite3", "new.sqlite3"):
                try:
                    DeadLetterQueue(folder / name).put("op")
                except DeadLetterError as e:
                    cause = type(e.__cause__).__name__
                    right_path = e.path.endswith(name) and e.path in str(e)
                    lines.append(f"refused: {name} {cause} {right_path} {e}")
                else:
                    lines.append(f"accepted: {name}")
            return lines

        lines = as_nobody(work)
        assert [line.split()[:4] for line in lines] == [
            ["refused:", "dlq.sqlite3", "OperationalError", "True"],
            ["refused:", "new.sqlite3", "PermissionError", "True"],
        ], lines
        assert "not writable" in lines[0] or "cannot be opened" in lines[0], lines[0]
    finally:
        folder.chmod(0o755)
    assert digest(path) == before
    assert not (folder / "new.sqlite3").exists()
    intact(path, ids)


@pytest.mark.parametrize("where", [(0, 16), (16, 100)], ids=["magic", "header-fields"])
def test_corrupt_header_is_refused_and_never_overwritten(
    tmp_path: Path, where: tuple[int, int]
) -> None:
    path = tmp_path / "corrupt.sqlite3"
    ids = filled(path)
    original = path.read_bytes()
    start, end = where
    damaged = original[:start] + os.urandom(end - start) + original[end:]
    path.write_bytes(damaged)
    with pytest.raises(DeadLetterError) as info:
        DeadLetterQueue(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert path.read_bytes() == damaged  # never overwritten
    path.write_bytes(original)  # repair the header: everything committed is still there
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    intact(path, ids)


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes, not a database\n" * 100)
    before = digest(path)
    with pytest.raises(DeadLetterError, match="is not a SQLite database") as info:
        DeadLetterQueue(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert digest(path) == before
    assert not Path(f"{path}-wal").exists()


def test_another_applications_database(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()
    before = digest(path)
    with pytest.raises(DeadLetterError, match="not a riprap dead-letter queue"):
        DeadLetterQueue(path)
    assert digest(path) == before  # not even switched to WAL
    assert not Path(f"{path}-wal").exists()
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()
    assert names == ["users"]


def test_another_applications_id_and_a_newer_schema(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("PRAGMA application_id = 1234")
    conn.close()
    with pytest.raises(DeadLetterError, match="another application"):
        DeadLetterQueue(other)
    newer = tmp_path / "newer.sqlite3"
    DeadLetterQueue(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(DeadLetterError, match="schema version 99"):
        DeadLetterQueue(newer)


def test_a_directory_is_not_a_queue(tmp_path: Path) -> None:
    with pytest.raises(DeadLetterError, match="cannot"):
        DeadLetterQueue(tmp_path)


def test_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "dlq.sqlite3"
    with pytest.raises(DeadLetterError, match="No such file or directory") as info:
        DeadLetterQueue(path)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_locked_beyond_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    ids = filled(path, 2)
    q = DeadLetterQueue(path, busy_timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DeadLetterError, match="busy timeout") as info:
            q.put("op", args=[99])
        assert str(path) in str(info.value)
        cause = info.value.__cause__
        assert isinstance(cause, sqlite3.OperationalError)
        assert "locked" in str(cause)
        assert q.count() == 2  # reads still work under a writer's lock (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ids.append(q.put("op", args=[2]))  # and writes again once it is released
    q.close()
    intact(path, ids)
