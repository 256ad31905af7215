"""`riprap.dead_letter`: failed calls recorded, the original exception always re-raised.

Sync and async functions, methods, retries inside, the queue failing (the caller still gets its
own exception, with a note), control-flow exceptions (never recorded), replays (not recorded
twice). Runs on the active backend.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import riprap
from riprap import DeadLetterQueue
from riprap.testing import ManualClock


@pytest.fixture
def queue(tmp_path: Path) -> DeadLetterQueue:
    q = DeadLetterQueue(tmp_path / "dlq.sqlite3")
    yield q  # type: ignore[misc]
    q.close()


class Flaky:
    """Fails `failures` times with ConnectionError, then returns "ok"."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} failed")
        return "ok"


def test_records_the_call_and_reraises_the_same_exception(
    queue: DeadLetterQueue,
) -> None:
    error = ConnectionError("down")

    @riprap.dead_letter(queue)
    def send(agent: str, command: dict[str, Any], *, urgent: bool = False) -> None:
        raise error

    with pytest.raises(ConnectionError) as info:
        send("a-1", {"op": "reboot"}, urgent=True)
    assert info.value is error
    assert getattr(error, "__notes__", None) is None
    (entry,) = queue.list()
    assert entry.operation == f"{__name__}:{send.__qualname__}"
    assert entry.operation.endswith("<locals>.send")
    assert entry.args == ("a-1", {"op": "reboot"})
    assert entry.kwargs == {"urgent": True}
    assert (entry.error_type, entry.error_message, entry.attempts) == (
        "ConnectionError",
        "down",
        1,
    )


def test_success_records_nothing(queue: DeadLetterQueue) -> None:
    assert riprap.dead_letter(queue)(lambda x: x * 2)(21) == 42
    assert queue.count() == 0


def test_async_function(queue: DeadLetterQueue) -> None:
    @riprap.dead_letter(queue, operation="agents:send")
    async def send(agent: str) -> None:
        await asyncio.sleep(0)
        raise TimeoutError(agent)

    assert inspect.iscoroutinefunction(send)
    with pytest.raises(TimeoutError, match="a-2"):
        asyncio.run(send("a-2"))
    (entry,) = queue.list()
    assert (entry.operation, entry.args, entry.error_type) == (
        "agents:send",
        ("a-2",),
        "TimeoutError",
    )


def test_outside_retries_only_the_final_failure_is_recorded(
    queue: DeadLetterQueue, clock: ManualClock
) -> None:
    flaky = Flaky(10)

    @riprap.dead_letter(queue, operation="flaky")
    @riprap.retry(max_attempts=3, base_delay=1.0, jitter=False, clock=clock)
    def call(x: int) -> str:
        return flaky(x)

    with pytest.raises(ConnectionError, match="attempt 3 failed"):
        call(1)
    assert flaky.calls == 3
    (entry,) = queue.list()
    assert entry.error_message == "attempt 3 failed"
    flaky.failures = 0
    assert queue.replay(lambda e: call(*e.args)) == (1, 0)  # type: ignore[misc]


def test_keeps_shape_and_refuses_generators(queue: DeadLetterQueue) -> None:
    def f(a: int, b: str = "x") -> str:
        """Docs."""
        return b * a

    wrapped = riprap.dead_letter(queue)(f)
    assert wrapped.__wrapped__ is f  # type: ignore[attr-defined]
    assert wrapped.__name__ == "f"
    assert wrapped.__doc__ == "Docs."
    assert inspect.signature(wrapped) == inspect.signature(f)
    assert not inspect.iscoroutinefunction(wrapped)

    def gen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator function"):
        riprap.dead_letter(queue)(gen)


def test_partial_callable_object_and_bound_method(queue: DeadLetterQueue) -> None:
    def send(target: str, payload: int) -> None:
        raise ConnectionError(target)

    class Sender:
        def __call__(self, payload: int) -> None:
            raise ConnectionError("obj")

        def send(self, payload: int) -> None:
            raise ConnectionError("bound")

    calls = [
        riprap.dead_letter(queue, operation="partial")(functools.partial(send, "t")),
        riprap.dead_letter(queue, operation="object")(Sender()),
        riprap.dead_letter(queue, operation="bound")(Sender().send),
    ]
    for n, call in enumerate(calls):
        with pytest.raises(ConnectionError):
            call(n)
    assert [(e.operation, e.args) for e in queue.list()] == [
        ("partial", (0,)),
        ("object", (1,)),
        ("bound", (2,)),  # a bound method's self is not an argument
    ]


def test_static_method(queue: DeadLetterQueue) -> None:
    class Jobs:
        @riprap.dead_letter(queue, operation="jobs:run")
        @staticmethod
        def run(n: int) -> None:
            raise ValueError(n)

    with pytest.raises(ValueError):
        Jobs.run(3)
    assert queue.list()[0].args == (3,)


@pytest.mark.parametrize(
    "cfe", [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError]
)
def test_control_flow_is_never_recorded(
    queue: DeadLetterQueue, cfe: type[BaseException]
) -> None:
    @riprap.dead_letter(queue)
    def f() -> None:
        raise cfe

    @riprap.dead_letter(queue)
    async def af() -> None:
        raise cfe

    with pytest.raises(cfe):
        f()
    with pytest.raises(cfe):
        asyncio.run(af())
    assert queue.count() == 0


class TestTheQueueFailing:
    def test_unstorable_arguments(
        self, queue: DeadLetterQueue, caplog: pytest.LogCaptureFixture
    ) -> None:
        error = ConnectionError("down")

        @riprap.dead_letter(queue)
        def f(payload: object) -> None:
            raise error

        with pytest.raises(ConnectionError) as info:
            f(object())
        assert info.value is error
        (note,) = error.__notes__
        assert "was not recorded in the dead-letter queue" in note
        assert "TypeError" in note
        assert queue.path in note
        (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert record.name == "riprap"
        assert queue.count() == 0

    def test_locked_past_the_busy_timeout(self, tmp_path: Path) -> None:
        path = tmp_path / "locked.sqlite3"
        queue = DeadLetterQueue(path, busy_timeout=0.05)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:

            @riprap.dead_letter(queue)
            async def f() -> None:
                raise ConnectionError("down")

            with pytest.raises(ConnectionError) as info:
                asyncio.run(f())
            (note,) = info.value.__notes__
            assert "DeadLetterError" in note
            assert "busy timeout" in note
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        queue.close()

    def test_an_exception_that_refuses_notes_is_still_raised(
        self, queue: DeadLetterQueue
    ) -> None:
        class Stubborn(Exception):
            def add_note(self, note: str) -> None:
                raise RuntimeError("no notes")

        @riprap.dead_letter(queue)
        def f(x: object) -> None:
            raise Stubborn("mine")

        with pytest.raises(Stubborn, match="mine"):
            f(object())


def test_a_replay_through_the_decorator_is_not_recorded_again(
    queue: DeadLetterQueue,
) -> None:
    @riprap.dead_letter(queue, operation="op")
    def f(x: int) -> None:
        raise ValueError(x)

    with pytest.raises(ValueError):
        f(1)
    assert queue.replay(lambda e: f(*e.args)) == (0, 1)  # type: ignore[misc]
    (entry,) = queue.list()
    assert entry.replay_count == 1
    assert entry.last_error == "ValueError: 1"


def test_bad_arguments(queue: DeadLetterQueue) -> None:
    with pytest.raises(TypeError, match="queue must be a DeadLetterQueue, got str"):
        riprap.dead_letter("dlq.sqlite3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="operation must be a non-empty str"):
        riprap.dead_letter(queue, operation="")
