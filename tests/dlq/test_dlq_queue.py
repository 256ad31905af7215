"""DeadLetterQueue on a real SQLite file: entries, reopen, replay, retention, storage settings.

Runs on the active backend (`make test` runs it on both). Every queue lives under `tmp_path`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import dlq_targets
import pytest

import riprap
from riprap import DeadLetterError, DeadLetterQueue
from riprap import _dlq as dlq_module
from riprap._dlq_entry import DeadLetter, SealedPayload
from riprap._dlq_file import APPLICATION_ID


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "dlq.sqlite3"


@pytest.fixture
def queue(path: Path) -> DeadLetterQueue:
    q = DeadLetterQueue(path)
    yield q  # type: ignore[misc]
    q.close()


@pytest.fixture(autouse=True)
def _no_calls() -> None:
    dlq_targets.CALLS.clear()


def pragma(q: DeadLetterQueue, name: str) -> Any:
    """A PRAGMA as the queue's own connection sees it (some are per connection)."""
    return q._read("read a pragma", lambda c: c.execute(f"PRAGMA {name}").fetchone()[0])


class TestEntries:
    def test_put_then_get_has_every_attribute(self, queue: DeadLetterQueue) -> None:
        error = ConnectionError("reset by peer")
        before = dlq_module._wall_time()
        i = queue.put(
            "dlq_targets:record",
            args=(1, "two", [3], {"four": 4}),
            kwargs={"five": 5.5, "six": None},
            error=error,
            attempts=3,
            metadata={"agent": "a-7", "tags": ["x"]},
        )
        e = queue.get(i)
        assert isinstance(e, DeadLetter)
        assert e.id == i
        assert e.operation == "dlq_targets:record"
        assert e.args == (1, "two", [3], {"four": 4})
        assert e.kwargs == {"five": 5.5, "six": None}
        assert e.error_type == "ConnectionError"
        assert e.error_message == "reset by peer"
        assert e.attempts == 3
        assert before <= e.created_at <= dlq_module._wall_time()
        assert (e.replay_count, e.last_error) == (0, None)
        assert e.metadata == {"agent": "a-7", "tags": ["x"]}
        assert e.encoding == "json"

    def test_error_type_names_the_module_and_a_message_string(
        self, queue: DeadLetterQueue
    ) -> None:
        e = queue.get(queue.put("op", error=json.JSONDecodeError("bad", "doc", 0)))
        assert e is not None
        assert e.error_type == "json.decoder.JSONDecodeError"
        e = queue.get(queue.put("op", error="just a message"))
        assert e is not None
        assert (e.error_type, e.error_message) == (None, "just a message")
        e = queue.get(queue.put("op"))
        assert e is not None
        assert (e.error_type, e.error_message, e.attempts) == (None, None, 0)

    def test_ids_grow_and_are_never_reused(self, queue: DeadLetterQueue) -> None:
        a, b = queue.put("op"), queue.put("op")
        assert b > a
        queue.delete(b)
        assert queue.put("op") > b

    def test_list_count_delete_purge(self, queue: DeadLetterQueue) -> None:
        ids = [queue.put("a" if i % 2 else "b", args=[i]) for i in range(6)]
        assert [e.id for e in queue.list()] == ids  # oldest first
        assert [e.args[0] for e in queue.list("a")] == [1, 3, 5]
        assert [e.id for e in queue.list(limit=2)] == ids[:2]
        assert [e.id for e in queue.list(limit=None)] == ids
        assert (queue.count(), queue.count("a"), queue.count("nope")) == (6, 3, 0)
        assert queue.delete(ids[0]) is True
        assert queue.delete(ids[0]) is False
        assert queue.get(ids[0]) is None
        assert queue.purge("a") == 3
        assert queue.count() == 2
        assert queue.purge() == 2
        assert queue.count() == 0
        assert queue.list() == []

    def test_a_new_queue_on_the_same_file_sees_everything(self, path: Path) -> None:
        q1 = DeadLetterQueue(path)
        ids = [q1.put("op", args=[i], metadata={"i": i}) for i in range(5)]
        q1.close()
        q2 = DeadLetterQueue(path)
        assert [(e.id, e.args, e.metadata) for e in q2.list()] == [
            (i, (n,), {"i": n}) for n, i in enumerate(ids)
        ]
        q3 = DeadLetterQueue(path)  # two open queues in one process
        q3.put("op")
        assert q2.count() == 6
        q2.close()
        q3.close()

    def test_closed_queue_reopens_on_use(self, queue: DeadLetterQueue) -> None:
        queue.put("op")
        queue.close()
        assert queue.count() == 1
        with DeadLetterQueue(queue.path) as q:
            assert q.count() == 1


class TestArguments:
    def test_non_json_arguments_are_refused_by_name_and_type(
        self, queue: DeadLetterQueue
    ) -> None:
        with pytest.raises(
            TypeError, match=r"args\[1\] \(object\) cannot be stored as JSON"
        ):
            queue.put("op", args=(1, object()))
        with pytest.raises(TypeError, match=r"kwargs\['when'\] \(set\)"):
            queue.put("op", kwargs={"ok": 1, "when": {1, 2}})
        with pytest.raises(TypeError, match="allow_pickle=True"):
            queue.put("op", args=(b"bytes",))
        with pytest.raises(TypeError, match="metadata cannot be stored as JSON"):
            queue.put("op", metadata={"x": object()})
        assert queue.count() == 0

    def test_json_round_trip_turns_tuples_into_lists(
        self, queue: DeadLetterQueue
    ) -> None:
        e = queue.get(queue.put("op", args=((1, 2), {"k": (3,)})))
        assert e is not None
        assert e.args == ([1, 2], {"k": [3]})

    def test_pickle_is_opt_in_and_sealed_without_it(self, path: Path) -> None:
        q = DeadLetterQueue(path, allow_pickle=True)
        i = q.put("dlq_targets:record", args=({1, 2}, b"raw"))
        j = q.put("dlq_targets:record", args=(1,))  # JSON whenever JSON can hold it
        e = q.get(i)
        assert e is not None
        assert (e.encoding, e.args) == ("pickle", ({1, 2}, b"raw"))
        assert q.get(j).encoding == "json"  # type: ignore[union-attr]
        plain = DeadLetterQueue(path)
        sealed = plain.get(i)
        assert sealed is not None
        assert isinstance(sealed.args, SealedPayload)
        assert "not loaded" in repr(sealed.args)
        assert sealed.to_dict()["args"] is None
        assert plain.replay(operation="dlq_targets:record") == (1, 1)
        kept = plain.get(i)
        assert kept is not None
        assert "allow_pickle=True" in (kept.last_error or "")
        assert q.replay() == (1, 0)
        assert dlq_targets.CALLS[-1] == ("record", ({1, 2}, b"raw"), {})

    @pytest.mark.parametrize(
        ("kwargs", "exc", "message"),
        [
            ({"operation": ""}, TypeError, "operation must be a non-empty str"),
            ({"operation": 5}, TypeError, "operation must be a non-empty str"),
            (
                {"operation": "op", "args": "abc"},
                TypeError,
                "args must be a tuple or list",
            ),
            (
                {"operation": "op", "kwargs": [1]},
                TypeError,
                "kwargs must be a dict or None",
            ),
            ({"operation": "op", "attempts": -1}, ValueError, "attempts must be >= 0"),
            (
                {"operation": "op", "attempts": 1.0},
                TypeError,
                "attempts must be an int",
            ),
            ({"operation": "op", "error": 5}, TypeError, "error must be an exception"),
            (
                {"operation": "op", "metadata": [1]},
                TypeError,
                "metadata must be a dict",
            ),
        ],
    )
    def test_bad_put_arguments(
        self,
        queue: DeadLetterQueue,
        kwargs: dict[str, Any],
        exc: type[Exception],
        message: str,
    ) -> None:
        with pytest.raises(exc, match=message):
            queue.put(**kwargs)


class TestReplay:
    def test_successes_are_removed_failures_kept(self, queue: DeadLetterQueue) -> None:
        ok = queue.put("dlq_targets:record", args=[1], kwargs={"k": "v"})
        bad = queue.put("dlq_targets:fail", args=[2])
        assert queue.replay() == (1, 1)
        assert dlq_targets.CALLS == [
            ("record", (1,), {"k": "v"}),
            ("fail", (2,), {}),
        ]
        assert queue.get(ok) is None
        kept = queue.get(bad)
        assert kept is not None
        assert kept.replay_count == 1
        assert kept.last_error == "ValueError: still failing with (2,)"
        assert queue.replay() == (0, 1)
        assert queue.get(bad).replay_count == 2  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("operation", "why"),
        [
            ("no_such_module_here:f", "cannot import module 'no_such_module_here'"),
            ("dlq_targets:missing", "has no 'missing'"),
            ("dlq_targets:NOT_CALLABLE", "is a int, not a callable"),
            ("dlq_targets:<locals>.f", "is not an importable 'module:qualname'"),
            (
                "__import__('os').system('true')",
                "is not an importable 'module:qualname'",
            ),
            ("just-a-name", "is not an importable 'module:qualname'"),
        ],
    )
    def test_an_operation_that_cannot_be_imported_fails_its_entry(
        self, queue: DeadLetterQueue, operation: str, why: str
    ) -> None:
        i = queue.put(operation, args=[1])
        assert queue.replay() == (0, 1)
        kept = queue.get(i)
        assert kept is not None
        assert kept.replay_count == 1
        assert kept.last_error is not None
        assert kept.last_error.startswith("LookupError: ")
        assert why in kept.last_error

    def test_handler_operation_and_limit(self, queue: DeadLetterQueue) -> None:
        ids = [queue.put("a" if i < 3 else "b", args=[i]) for i in range(5)]
        seen: list[int] = []

        def handler(entry: DeadLetter) -> None:
            seen.append(entry.id)
            if entry.args[0] == 1:  # type: ignore[index]
                raise RuntimeError("no")

        assert queue.replay(handler, operation="a", limit=2) == (1, 1)
        assert seen == ids[:2]
        assert queue.replay(handler, operation="b") == (2, 0)
        assert [e.id for e in queue.list()] == [ids[1], ids[2]]
        assert queue.replay(handler, limit=0) == (0, 0)

    def test_only_entries_present_at_the_start_are_replayed(
        self, queue: DeadLetterQueue
    ) -> None:
        queue.put("op")

        def handler(entry: DeadLetter) -> None:
            queue.put("op")  # a new entry appears while replaying
            raise ValueError("again")

        assert queue.replay(handler) == (0, 1)
        assert queue.count() == 2

    def test_static_method_and_async_operations(self, queue: DeadLetterQueue) -> None:
        queue.put("dlq_targets:Service.ping", args=[1])
        queue.put("dlq_targets:arecord", args=[2])
        assert queue.replay() == (2, 0)
        assert dlq_targets.CALLS == [("ping", (1,), {}), ("arecord", (2,), {})]

    def test_replay_async(self, queue: DeadLetterQueue) -> None:
        queue.put("dlq_targets:arecord", args=[1])
        queue.put("dlq_targets:fail", args=[2])

        async def handler(entry: DeadLetter) -> None:
            await asyncio.sleep(0)
            dlq_targets.CALLS.append(("handler", (entry.id,), {}))

        assert asyncio.run(queue.replay_async()) == (1, 1)
        assert asyncio.run(queue.replay_async(handler)) == (1, 0)
        assert queue.count() == 0

    def test_sync_replay_in_a_running_loop_refuses_an_awaitable(
        self, queue: DeadLetterQueue
    ) -> None:
        i = queue.put("dlq_targets:arecord")

        async def main() -> None:
            with pytest.raises(TypeError, match="replay_async"):
                queue.replay()

        asyncio.run(main())
        assert queue.get(i).replay_count == 0  # type: ignore[union-attr]

    @pytest.mark.parametrize("cfe", [KeyboardInterrupt, SystemExit])
    def test_control_flow_stops_a_replay_and_changes_nothing(
        self, queue: DeadLetterQueue, cfe: type[BaseException]
    ) -> None:
        first, second = queue.put("op"), queue.put("op")
        calls = []

        def handler(entry: DeadLetter) -> None:
            calls.append(entry.id)
            raise cfe

        with pytest.raises(cfe):
            queue.replay(handler)
        assert calls == [first]
        assert [(e.id, e.replay_count) for e in queue.list()] == [
            (first, 0),
            (second, 0),
        ]


class TestRetention:
    def test_max_entries_drops_the_oldest_and_counts(self, path: Path) -> None:
        q = DeadLetterQueue(path, max_entries=3)
        ids = [q.put("op", args=[i]) for i in range(5)]
        assert [e.id for e in q.list()] == ids[2:]
        stats = q.get_stats()
        assert (stats["entries"], stats["dropped_max_entries"]) == (3, 2)
        # The counter lives in the file: another process (or queue) sees it.
        assert DeadLetterQueue(path).get_stats()["dropped_max_entries"] == 2

    def test_max_entries_applies_to_what_an_unbounded_queue_added(
        self, path: Path
    ) -> None:
        unbounded = DeadLetterQueue(path)
        for i in range(10):
            unbounded.put("op", args=[i])
        bounded = DeadLetterQueue(path, max_entries=4)
        bounded.put("op", args=[10])
        assert [e.args[0] for e in bounded.list()] == [7, 8, 9, 10]  # type: ignore[index]

    def test_max_age_hides_then_drops_old_entries(
        self, path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        now = [1_000_000.0]
        monkeypatch.setattr(dlq_module, "_wall_time", lambda: now[0])
        q = DeadLetterQueue(path, max_age=60.0)
        old = q.put("op", args=["old"])
        now[0] += 30
        young = q.put("op", args=["young"])
        now[0] += 30  # old is exactly 60 s old: still kept
        assert q.count() == 2
        now[0] += 0.5
        assert [e.id for e in q.list()] == [young]  # hidden from reads at once
        assert q.get(old) is None
        assert q.get_stats()["dropped_max_age"] == 0
        assert DeadLetterQueue(path).count() == 2  # still in the file
        q.put("op")  # the next write drops it
        stats = q.get_stats()
        assert (stats["entries"], stats["dropped_max_age"]) == (2, 1)
        assert DeadLetterQueue(path).count() == 2

    def test_drops_are_logged_once_then_quietly(
        self, path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        q = DeadLetterQueue(path, max_entries=1)
        for _ in range(4):
            q.put("op")
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1
        assert "max_entries" in warnings[0].getMessage()

    @pytest.mark.parametrize(
        ("kwargs", "exc", "message"),
        [
            ({"max_entries": 0}, ValueError, "max_entries must be >= 1, got 0"),
            ({"max_entries": True}, TypeError, "max_entries must be an int, got bool"),
            ({"max_age": 0}, ValueError, "max_age must be > 0.0, got 0.0"),
            ({"max_age": float("nan")}, ValueError, "max_age must be a finite number"),
            ({"busy_timeout": -1}, ValueError, "busy_timeout must be > 0.0"),
            ({"allow_pickle": 1}, TypeError, "allow_pickle must be a bool, got int"),
        ],
    )
    def test_bad_configuration_names_the_field(
        self, path: Path, kwargs: dict[str, Any], exc: type[Exception], message: str
    ) -> None:
        with pytest.raises(exc, match=message):
            DeadLetterQueue(path, **kwargs)
        assert not path.exists()  # refused before the file was created


class TestStorage:
    def test_pragmas_on_open(self, queue: DeadLetterQueue) -> None:
        assert pragma(queue, "journal_mode") == "wal"
        assert pragma(queue, "synchronous") == 2  # FULL
        assert pragma(queue, "busy_timeout") == 10_000
        assert pragma(queue, "application_id") == APPLICATION_ID

    def test_files_are_private(self, path: Path) -> None:
        old = os.umask(0o022)
        try:
            q = DeadLetterQueue(path)
            q.put("op")
            # While a connection is open, SQLite keeps the -wal and -shm files.
            for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert p.exists(), p
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
            q.close()
        finally:
            os.umask(old)

    def test_default_path_is_in_the_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        q = DeadLetterQueue()
        assert q.path == str(tmp_path / "riprap-dlq.sqlite3")
        q.close()

    def test_stats(self, queue: DeadLetterQueue) -> None:
        queue.put("b")
        queue.put("a")
        queue.put("a")
        stats = queue.get_stats()
        assert stats["entries"] == 3
        assert stats["by_operation"] == {"a": 2, "b": 1}
        assert stats["oldest_created_at"] <= stats["newest_created_at"]
        assert stats["path"] == queue.path
        assert repr(queue) == f"DeadLetterQueue({queue.path!r})"

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    @pytest.mark.filterwarnings("ignore::DeprecationWarning")
    def test_a_forked_child_opens_its_own_connection(
        self, queue: DeadLetterQueue
    ) -> None:
        queue.put("parent")
        parent_conn = queue._conn
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                i = queue.put("child")
                fresh = queue._conn is not parent_conn
                os.write(w, json.dumps([i, fresh, queue.count()]).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        report = json.loads(os.read(r, 1000))
        os.close(r)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        child_id, fresh, count = report
        assert fresh is True
        assert count == 2
        assert queue._conn is parent_conn  # the parent's connection is untouched
        assert [e.operation for e in queue.list()] == ["parent", "child"]
        assert queue.get(child_id) is not None

    def test_sqlite_sees_a_consistent_file(
        self, path: Path, queue: DeadLetterQueue
    ) -> None:
        for i in range(20):
            queue.put("op", args=[i])
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            (n,) = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        assert n == 20


def test_errors_derive_from_resilience_error() -> None:
    assert issubclass(DeadLetterError, riprap.ResilienceError)
