"""A durable dead-letter queue: failed calls kept in SQLite, to inspect and replay later.

Durability and concurrency, and why:

* WAL journal with `synchronous=FULL`: a `put` that returned has been fsynced and survives a
  `kill -9` and a power loss (with `NORMAL`, WAL may lose the last commits on power loss).
* Every write is one `BEGIN IMMEDIATE` transaction: it takes the write lock up front and waits
  for it through the busy timeout. A deferred transaction that upgrades from read to write gets
  "database is locked" at once, without waiting (python/cpython#124510).
* One connection per process, shared by its threads behind a lock, opened again in a forked
  child (pid check): an SQLite connection must never be used on both sides of a fork. The
  inherited connection is kept, unused, and never closed in the child, since closing it could
  disturb the parent's locks.
* The database file is created with mode 0600, and SQLite gives its `-wal` and `-shm` files the
  same mode: dead letters hold call arguments.
* Failures of the queue itself (disk full, a read-only directory, a file that is corrupt or not
  a SQLite database, a lock held past the busy timeout) raise `DeadLetterError` with the path,
  chained to the SQLite or OS error. A file that does not start with the SQLite header is never
  opened by SQLite, so it cannot be overwritten (`_dlq_file` opens and checks the file).

Retention: `max_entries` and `max_age` (seconds, on the wall clock) bound the queue. Every `put`
drops the oldest entries beyond them in the same transaction, and `get_stats()` counts what
was dropped. Entries older than `max_age` are also hidden from reads until the next write drops
them.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from . import _dlq_file, _fork, _registry
from . import _validate as v
from ._dlq_entry import (
    DeadLetter,
    decode,
    describe_error,
    encode,
    encode_metadata,
    run_one,
    run_one_async,
)
from ._stats import DeadLetterQueueStats

__all__ = ["DeadLetterQueue"]

logger = logging.getLogger("riprap")
logger.addHandler(logging.NullHandler())

_COLUMNS = (
    "id, operation, encoding, payload, error_type, error_message, attempts, created_at, "
    "replay_count, last_error, metadata"
)

#: Connections inherited across a fork: kept alive, never used or closed, in the child.
_INHERITED: list[sqlite3.Connection] = []

#: Wall-clock seconds for `created_at` and `max_age` (a module global so tests can move it).
_wall_time = time.time


class DeadLetterQueue:
    """Failed calls kept durably in a SQLite file, to inspect and replay.

    Args:
        path: The database file (created, mode 0600, if missing; its directory must exist).
        max_entries: Keep at most this many entries (>= 1); None: no bound.
        max_age: Keep entries at most this many seconds (> 0, wall clock); None: no bound.
        busy_timeout: Seconds a write waits for another process's lock before it fails (> 0).
        allow_pickle: Pickle arguments JSON cannot hold, and load pickled entries. Only for a
            file nobody else can write: loading a pickle runs code.

    Raises:
        DeadLetterError: The file cannot be created or opened, is not a SQLite database (it is
            left untouched), or is a SQLite database of something else.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "riprap-dlq.sqlite3",
        *,
        max_entries: int | None = None,
        max_age: float | None = None,
        busy_timeout: float = 10.0,
        allow_pickle: bool = False,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        if max_entries is not None:
            v.check_int("max_entries", v.integer("max_entries", max_entries), 1)
        self.max_entries = max_entries
        self.max_age = (
            None
            if max_age is None
            else v.check_float("max_age", v.number("max_age", max_age), 0.0, False)
        )
        self.busy_timeout = v.check_float(
            "busy_timeout", v.number("busy_timeout", busy_timeout), 0.0, False
        )
        self.allow_pickle = v.boolean("allow_pickle", allow_pickle)
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        _fork.track(self)
        _registry.track(_registry.DEAD_LETTER_QUEUE, self, self.path)
        with self._lock:
            self._connection()  # open now: a bad path fails here, not at the first failure

    def _after_fork(self) -> None:
        """A forked child: a fresh lock; the next use opens a connection of its own."""
        self._lock = threading.Lock()
        if self._conn is not None:
            _INHERITED.append(self._conn)
            self._conn = None

    # --- opening -----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened on first use (the lock is held)."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:  # forked without the hook: never reuse it
            _INHERITED.append(self._conn)
            self._conn = None
        conn = _dlq_file.connect(self.path, self.busy_timeout)
        self._conn, self._pid = conn, os.getpid()
        return conn

    # --- transactions ------------------------------------------------------------------------

    def _write(self, action: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `work` in one BEGIN IMMEDIATE transaction; DeadLetterError if SQLite fails."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    _dlq_file.rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise _dlq_file.error(self.path, action, exc) from exc
            return result

    def _read(self, action: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            conn = self._connection()
            try:
                return work(conn)
            except sqlite3.Error as exc:
                raise _dlq_file.error(self.path, action, exc) from exc

    def _visible(self) -> tuple[str, tuple[Any, ...]]:
        """A WHERE clause hiding entries past `max_age`."""
        if self.max_age is None:
            return "1", ()
        return "created_at >= ?", (_wall_time() - self.max_age,)

    def _entry(self, row: Sequence[Any]) -> DeadLetter:
        args, kwargs = decode(row[2], row[3], self.allow_pickle)
        return DeadLetter(
            id=row[0],
            operation=row[1],
            args=args,
            kwargs=kwargs,
            error_type=row[4],
            error_message=row[5],
            attempts=row[6],
            created_at=row[7],
            replay_count=row[8],
            last_error=row[9],
            metadata=None if row[10] is None else json.loads(row[10]),
            encoding=row[2],
        )

    # --- the queue ---------------------------------------------------------------------------

    def put(  # noqa: PLR0917 - the documented signature
        self,
        operation: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        error: BaseException | str | None = None,
        attempts: int = 0,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        """Record a failed call; returns its id once it is durably committed.

        Raises:
            TypeError: An argument (named, with its type) or the metadata cannot be stored as
                JSON and pickle is not allowed; or a field has the wrong type.
            DeadLetterError: The queue itself failed (nothing was stored).
        """
        if not isinstance(operation, str) or not operation:
            raise TypeError(f"operation must be a non-empty str, got {operation!r}")
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise TypeError(f"args must be a tuple or list, got {type(args).__name__}")
        if kwargs is None:
            kwargs = {}
        elif not isinstance(kwargs, Mapping):
            raise TypeError(
                f"kwargs must be a dict or None, got {type(kwargs).__name__}"
            )
        v.check_int("attempts", v.integer("attempts", attempts), 0)
        encoding, payload = encode(tuple(args), dict(kwargs), self.allow_pickle)
        meta = encode_metadata(metadata)
        error_type, error_message = describe_error(error)
        now = _wall_time()

        def insert(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO dead_letters (operation, encoding, payload, error_type, "
                "error_message, attempts, created_at, metadata) VALUES (?,?,?,?,?,?,?,?)",
                (
                    operation,
                    encoding,
                    payload,
                    error_type,
                    error_message,
                    attempts,
                    now,
                    meta,
                ),
            )
            self._retain(conn, now)
            return int(cur.lastrowid or 0)

        return int(self._write("add an entry", insert))

    def _retain(self, conn: sqlite3.Connection, now: float) -> None:
        """Drop the oldest entries beyond `max_age` and `max_entries` (inside a write)."""
        if self.max_age is not None:
            dropped = conn.execute(
                "DELETE FROM dead_letters WHERE created_at < ?", (now - self.max_age,)
            ).rowcount
            self._dropped(conn, "dropped_max_age", dropped)
        if self.max_entries is not None:
            (count,) = conn.execute(
                "SELECT value FROM riprap_counters WHERE name = 'entries'"
            ).fetchone()
            excess = count - self.max_entries
            if excess > 0:
                conn.execute(
                    "DELETE FROM dead_letters WHERE id IN "
                    "(SELECT id FROM dead_letters ORDER BY id LIMIT ?)",
                    (excess,),
                )
                self._dropped(conn, "dropped_max_entries", excess)

    def _dropped(self, conn: sqlite3.Connection, counter: str, n: int) -> None:
        if n <= 0:
            return
        conn.execute(
            "UPDATE riprap_counters SET value = value + ? WHERE name = ?", (n, counter)
        )
        level = logging.DEBUG if counter in self._warned else logging.WARNING
        self._warned.add(counter)
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "dead-letter queue %s: dropped %d oldest entr%s (%s); see get_stats()",
                self.path,
                n,
                "y" if n == 1 else "ies",
                "max_age" if counter == "dropped_max_age" else "max_entries",
            )

    def get(self, id: int) -> DeadLetter | None:
        """The entry with this id, or None."""
        where, params = self._visible()

        def read(conn: sqlite3.Connection) -> DeadLetter | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM dead_letters WHERE id = ? AND {where}",
                (id, *params),
            ).fetchone()
            return None if row is None else self._entry(row)

        return self._read("read an entry", read)  # type: ignore[no-any-return]

    def list(
        self, operation: str | None = None, limit: int | None = 100
    ) -> builtins.list[DeadLetter]:
        """Entries, oldest first: all of them, or those of one operation; at most `limit`."""
        return list(self._select(operation, limit, after=0, upto=None))

    def _select(
        self, operation: str | None, limit: int | None, *, after: int, upto: int | None
    ) -> Iterator[DeadLetter]:
        if limit is not None:
            v.check_int("limit", v.integer("limit", limit), 0)
        where, params = self._visible()
        sql = f"SELECT {_COLUMNS} FROM dead_letters WHERE id > ? AND {where}"
        values: list[Any] = [after, *params]
        if upto is not None:
            sql += " AND id <= ?"
            values.append(upto)
        if operation is not None:
            sql += " AND operation = ?"
            values.append(operation)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            values.append(limit)
        rows = self._read(
            "list entries", lambda conn: conn.execute(sql, values).fetchall()
        )
        return (self._entry(row) for row in rows)

    def count(self, operation: str | None = None) -> int:
        """How many entries there are (of one operation)."""
        where, params = self._visible()
        if operation is None and self.max_age is None:
            sql, values = "SELECT value FROM riprap_counters WHERE name = 'entries'", ()
        elif operation is None:
            sql, values = f"SELECT count(*) FROM dead_letters WHERE {where}", params
        else:
            sql = f"SELECT count(*) FROM dead_letters WHERE operation = ? AND {where}"
            values = (operation, *params)
        return int(
            self._read("count entries", lambda c: c.execute(sql, values).fetchone()[0])
        )

    def delete(self, id: int) -> bool:
        """Remove one entry; whether it was there."""
        return bool(
            self._write(
                "delete an entry",
                lambda c: (
                    c.execute("DELETE FROM dead_letters WHERE id = ?", (id,)).rowcount
                ),
            )
        )

    def purge(self, operation: str | None = None) -> int:
        """Remove every entry (of one operation); how many were removed."""
        sql = "DELETE FROM dead_letters"
        values: tuple[str, ...] = ()
        if operation is not None:
            sql, values = f"{sql} WHERE operation = ?", (operation,)
        return int(
            self._write("purge entries", lambda c: c.execute(sql, values).rowcount)
        )

    def _mark_failed(self, entry: DeadLetter, error: str) -> None:
        self._write(
            "record a failed replay",
            lambda c: c.execute(
                "UPDATE dead_letters SET replay_count = replay_count + 1, last_error = ? "
                "WHERE id = ?",
                (error, entry.id),
            ),
        )

    def _replay_batches(
        self, operation: str | None, limit: int | None
    ) -> Iterator[DeadLetter]:
        """The entries a replay works through, oldest first, a page at a time.

        Only entries present when the replay starts are included.
        """
        (upto,) = self._read(
            "list entries",
            lambda c: c.execute("SELECT max(id) FROM dead_letters").fetchone(),
        )
        if upto is None:
            return
        after, left = 0, limit
        while left is None or left > 0:
            page = min(100, left) if left is not None else 100
            batch = list(self._select(operation, page, after=after, upto=upto))
            if not batch:
                return
            yield from batch
            after = batch[-1].id
            if left is not None:
                left -= len(batch)

    def replay(
        self,
        handler: Callable[[DeadLetter], object] | None = None,
        *,
        operation: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, int]:
        """Run entries again, oldest first; returns (succeeded, failed).

        Each entry is given to `handler(entry)`, or without a handler its operation
        (`module:qualname`) is imported and called with the stored arguments. An entry whose
        call returns is removed; one whose call raises is kept with `replay_count` + 1 and
        `last_error`; an operation that cannot be imported fails its entry the same way.
        Only entries present when the replay starts are run. A replay is at least once: if
        the process dies between a successful call and the removal, the entry runs again next
        time. A coroutine returned by the call is run to completion (in a new event loop; use
        `replay_async` from async code).

        Raises:
            DeadLetterError: The queue itself failed; entries handled before stay handled.
        """
        succeeded = failed = 0
        for entry in self._replay_batches(operation, limit):
            error = run_one(entry, handler, self.allow_pickle)
            if error is None:
                self.delete(entry.id)
                succeeded += 1
            else:
                self._mark_failed(entry, error)
                failed += 1
        return succeeded, failed

    async def replay_async(
        self,
        handler: Callable[[DeadLetter], object] | None = None,
        *,
        operation: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, int]:
        """`replay` for async code: awaits what the calls return.

        The queue's own reads and writes run in a worker thread, so they do not block the
        event loop.
        """
        batches = await asyncio.to_thread(
            lambda: list(self._replay_batches(operation, limit))
        )
        succeeded = failed = 0
        for entry in batches:
            error = await run_one_async(entry, handler, self.allow_pickle)
            if error is None:
                await asyncio.to_thread(self.delete, entry.id)
                succeeded += 1
            else:
                await asyncio.to_thread(self._mark_failed, entry, error)
                failed += 1
        return succeeded, failed

    def get_stats(self) -> DeadLetterQueueStats:
        """The queue's contents and retention counters.

        `path`, `entries`, `by_operation`, `oldest_created_at`, `newest_created_at`,
        `dropped_max_entries` and `dropped_max_age` (totals over the file's life, from every
        process), `max_entries`, `max_age`.
        """
        where, params = self._visible()

        def read(conn: sqlite3.Connection) -> DeadLetterQueueStats:
            counters = dict(conn.execute("SELECT name, value FROM riprap_counters"))
            by_op = dict(
                conn.execute(
                    f"SELECT operation, count(*) FROM dead_letters WHERE {where} "
                    "GROUP BY operation ORDER BY operation",
                    params,
                )
            )
            oldest, newest = conn.execute(
                f"SELECT min(created_at), max(created_at) FROM dead_letters WHERE {where}",
                params,
            ).fetchone()
            return DeadLetterQueueStats(
                path=self.path,
                entries=sum(by_op.values()),
                by_operation=by_op,
                oldest_created_at=oldest,
                newest_created_at=newest,
                dropped_max_entries=counters.get("dropped_max_entries", 0),
                dropped_max_age=counters.get("dropped_max_age", 0),
                max_entries=self.max_entries,
                max_age=self.max_age,
            )

        return self._read("read its statistics", read)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close this process's connection (the next use opens it again)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                if self._pid == os.getpid():
                    conn.close()
                else:  # inherited across a fork: never close it here
                    _INHERITED.append(conn)

    def __enter__(self) -> DeadLetterQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeadLetterQueue({self.path!r})"
