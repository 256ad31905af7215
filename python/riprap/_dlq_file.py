"""The dead-letter queue's SQLite file: opening it safely, its schema, and error messages.

A file is checked before SQLite touches it: a missing one is created with mode 0600 (SQLite
gives its `-wal` and `-shm` files the same mode); an existing one must start with the SQLite
header, or it is refused and never opened by SQLite, so it cannot be overwritten. A SQLite file
must then be a riprap queue (marked by `PRAGMA application_id`) or empty: another application's
database is refused before anything is written to it, even the switch to WAL. Every failure is a
`DeadLetterError` naming the file, chained to the SQLite or OS error.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3

from ._errors import DeadLetterError

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "connect", "error", "rollback"]

_HEADER = b"SQLite format 3\x00"
#: "RIPR", stored in the database header: this file is a riprap dead-letter queue.
APPLICATION_ID = 0x52495052
SCHEMA_VERSION = 1
_SCHEMA = (
    """CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        operation TEXT NOT NULL,
        encoding TEXT NOT NULL,
        payload BLOB NOT NULL,
        error_type TEXT,
        error_message TEXT,
        attempts INTEGER NOT NULL,
        created_at REAL NOT NULL,
        replay_count INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        metadata TEXT
    )""",
    "CREATE INDEX dead_letters_operation ON dead_letters (operation, id)",
    "CREATE INDEX dead_letters_created_at ON dead_letters (created_at)",
    "CREATE TABLE riprap_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """INSERT INTO riprap_counters (name, value) VALUES
        ('entries', 0), ('dropped_max_entries', 0), ('dropped_max_age', 0)""",
    # The live count, kept by triggers so that `max_entries` costs O(1) per put.
    """CREATE TRIGGER dead_letters_added AFTER INSERT ON dead_letters BEGIN
        UPDATE riprap_counters SET value = value + 1 WHERE name = 'entries'; END""",
    """CREATE TRIGGER dead_letters_removed AFTER DELETE ON dead_letters BEGIN
        UPDATE riprap_counters SET value = value - 1 WHERE name = 'entries'; END""",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_WHY = {
    "SQLITE_BUSY": "another connection held the lock for longer than the busy timeout",
    "SQLITE_LOCKED": "another connection held the lock for longer than the busy timeout",
    "SQLITE_FULL": "the disk (or the database's size limit) is full",
    "SQLITE_READONLY": "the file or its directory is not writable",
    "SQLITE_CANTOPEN": "the file or its directory cannot be opened or created",
    "SQLITE_PERM": "permission denied",
    "SQLITE_NOTADB": "the file is not a SQLite database",
    "SQLITE_CORRUPT": "the database file is corrupt",
    "SQLITE_IOERR": "an I/O error",
}


def _check_file(path: str) -> None:
    """Create the file with mode 0600, or make sure the existing one is a SQLite file."""
    if not os.path.lexists(path):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass  # another process created it just now
        except OSError as exc:
            raise DeadLetterError(
                path, f"cannot create the dead-letter queue {path}: {exc.strerror}"
            ) from exc
        else:
            os.close(fd)
            return
    try:
        with open(path, "rb") as f:
            head = f.read(len(_HEADER))
    except OSError as exc:
        raise DeadLetterError(
            path, f"cannot read the dead-letter queue {path}: {exc.strerror}"
        ) from exc
    if head and head != _HEADER:
        raise DeadLetterError(
            path,
            f"{path} is not a SQLite database (or its header is corrupt); it was left "
            "untouched. Move it away or choose another path.",
        ) from _probe(path)


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A configured connection to the queue file at `path` (checked, created if missing).

    WAL, `synchronous=FULL`, the busy timeout, and the schema.

    Raises:
        DeadLetterError: The file cannot be created or opened, or is not a queue.
    """
    _check_file(path)
    try:
        conn = sqlite3.connect(
            path,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise error(path, "open it", exc) from exc
    try:
        _configure(conn, path, busy_timeout)
    except sqlite3.Error as exc:
        conn.close()
        raise error(path, "open it", exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, path: str, busy_timeout: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {max(1, round(busy_timeout * 1000))}")
    _refuse_foreign(conn, path)  # before switching to WAL, which writes to the file
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise DeadLetterError(
            path, f"dead-letter queue {path}: SQLite refused WAL mode (got {mode!r})"
        )
    conn.execute("PRAGMA synchronous = FULL")
    _ensure_schema(conn, path)


def _ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    if _identity(conn) == (APPLICATION_ID, SCHEMA_VERSION):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        _create_schema(conn, path)  # another process may have created it meanwhile
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def _create_schema(conn: sqlite3.Connection, path: str) -> None:
    _refuse_foreign(conn, path)
    if _identity(conn)[0] == 0:
        for statement in _SCHEMA:
            conn.execute(statement)


def _refuse_foreign(conn: sqlite3.Connection, path: str) -> None:
    """DeadLetterError unless the file is a riprap queue of this schema, or empty."""
    app, version = _identity(conn)
    if app == 0:
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if tables:
            raise DeadLetterError(
                path,
                f"{path} is a SQLite database of something else, not a riprap "
                "dead-letter queue; it was left untouched",
            )
    elif app != APPLICATION_ID:
        raise DeadLetterError(
            path,
            f"{path} is a SQLite database of another application "
            f"(application_id {app:#x}); it was left untouched",
        )
    elif version != SCHEMA_VERSION:
        raise DeadLetterError(
            path,
            f"{path} is a dead-letter queue of schema version {version}; this "
            f"riprap reads version {SCHEMA_VERSION}",
        )


def _identity(conn: sqlite3.Connection) -> tuple[int, int]:
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    return int(app), int(version)


def error(path: str, action: str, exc: sqlite3.Error) -> DeadLetterError:
    """A DeadLetterError for a failed SQLite operation: the path, the action and why."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    why = next((w for k, w in _WHY.items() if name.startswith(k)), None)
    detail = f"{why} ({exc})" if why else str(exc)
    return DeadLetterError(
        path, f"dead-letter queue {path}: could not {action}: {detail}"
    )


def _probe(path: str) -> sqlite3.Error | None:
    """What SQLite itself says about a file, opened read-only (it writes nothing)."""
    try:
        conn = sqlite3.connect(f"{pathlib.Path(path).as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return exc
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    return None


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back an open transaction, if any; a failure to do so is not reported."""
    if conn.in_transaction:
        # If even the rollback fails, the original error is still the one to report.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
