"""A hypothesis state machine drives a DeadLetterQueue against an ordered-dict model.

Rules: put, get, list (all, by operation, with a limit), count, delete, purge (all or one
operation), replay where the handler passes, replay where it fails, reopen (a new queue object
on the same file), and a check from a forked child (a new process reads the file). After every
rule the queue's whole content equals the model, entry by entry. Runs on the active backend.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from riprap import DeadLetterQueue
from riprap._dlq_entry import DeadLetter

# Python 3.12+ warns when a process with threads forks; the child here only reads the file.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OPERATIONS = st.sampled_from(["billing:charge", "agents:send", "db:write"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@dataclass
class Model:
    operation: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    replay_count: int = 0
    last_error: str | None = None
    metadata: dict[str, Any] | None = field(default=None)


def view(e: DeadLetter) -> tuple[Any, ...]:
    return (
        e.id,
        e.operation,
        list(e.args),  # type: ignore[arg-type]
        e.kwargs,
        e.attempts,
        e.replay_count,
        e.last_error,
        e.metadata,
    )


def model_view(i: int, m: Model) -> tuple[Any, ...]:
    return (
        i,
        m.operation,
        m.args,
        m.kwargs,
        m.attempts,
        m.replay_count,
        m.last_error,
        m.metadata,
    )


class DeadLetterMachine(RuleBasedStateMachine):
    ids = Bundle("ids")

    @initialize()
    def open_queue(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="riprap-dlq-stateful-")
        self.path = Path(self.dir) / "dlq.sqlite3"
        self.queue = DeadLetterQueue(self.path)
        self.model: dict[int, Model] = {}  # insertion order = id order
        self.failures = 0

    def teardown(self) -> None:
        if hasattr(self, "queue"):
            self.queue.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(
        target=ids,
        operation=OPERATIONS,
        args=st.lists(JSON, max_size=3),
        kwargs=st.dictionaries(st.text(min_size=1, max_size=5), JSON, max_size=2),
        attempts=st.integers(0, 5),
        metadata=st.none() | st.dictionaries(st.text(max_size=4), JSON, max_size=2),
    )
    def put(
        self,
        operation: str,
        args: list[Any],
        kwargs: dict[str, Any],
        attempts: int,
        metadata: dict[str, Any] | None,
    ) -> int:
        i = self.queue.put(
            operation, args, kwargs, attempts=attempts, metadata=metadata
        )
        assert all(i > old for old in self.model)
        self.model[i] = Model(operation, args, kwargs, attempts, metadata=metadata)
        return i

    @rule(i=ids)
    def get(self, i: int) -> None:
        entry = self.queue.get(i)
        if i in self.model:
            assert entry is not None
            assert view(entry) == model_view(i, self.model[i])
        else:
            assert entry is None

    @rule(operation=st.none() | OPERATIONS, limit=st.none() | st.integers(0, 4))
    def list_entries(self, operation: str | None, limit: int | None) -> None:
        expected = [
            model_view(i, m)
            for i, m in self.model.items()
            if operation is None or m.operation == operation
        ]
        if limit is not None:
            expected = expected[:limit]
        assert [view(e) for e in self.queue.list(operation, limit)] == expected

    @rule(operation=st.none() | OPERATIONS)
    def count(self, operation: str | None) -> None:
        expected = sum(
            1 for m in self.model.values() if operation in (None, m.operation)
        )
        assert self.queue.count(operation) == expected

    @rule(i=consumes(ids))
    def delete(self, i: int) -> None:
        assert self.queue.delete(i) is (i in self.model)
        self.model.pop(i, None)

    @rule(operation=st.none() | OPERATIONS)
    def purge(self, operation: str | None) -> None:
        gone = [i for i, m in self.model.items() if operation in (None, m.operation)]
        assert self.queue.purge(operation) == len(gone)
        for i in gone:
            del self.model[i]

    def _chosen(self, operation: str | None, limit: int | None) -> list[int]:
        chosen = [i for i, m in self.model.items() if operation in (None, m.operation)]
        return chosen if limit is None else chosen[:limit]

    @rule(operation=st.none() | OPERATIONS, limit=st.none() | st.integers(0, 3))
    def replay_passes(self, operation: str | None, limit: int | None) -> None:
        chosen = self._chosen(operation, limit)
        seen: list[int] = []
        result = self.queue.replay(
            lambda e: seen.append(e.id), operation=operation, limit=limit
        )
        assert result == (len(chosen), 0)
        assert seen == chosen
        for i in chosen:
            del self.model[i]

    @rule(operation=st.none() | OPERATIONS, limit=st.none() | st.integers(0, 3))
    def replay_fails(self, operation: str | None, limit: int | None) -> None:
        chosen = self._chosen(operation, limit)
        self.failures += 1
        message = f"still down #{self.failures}"

        def handler(entry: DeadLetter) -> None:
            raise ConnectionError(message)

        assert self.queue.replay(handler, operation=operation, limit=limit) == (
            0,
            len(chosen),
        )
        for i in chosen:
            self.model[i].replay_count += 1
            self.model[i].last_error = f"ConnectionError: {message}"

    @rule()
    def reopen(self) -> None:
        self.queue.close()
        self.queue = DeadLetterQueue(self.path)

    @precondition(lambda self: hasattr(os, "fork"))
    @rule()
    def read_from_another_process(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                q = DeadLetterQueue(self.path)
                os.write(w, json.dumps([view(e) for e in q.list(limit=None)]).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        seen = [tuple(v) for v in json.loads(data)]
        expected = json.loads(
            json.dumps([model_view(i, m) for i, m in self.model.items()])
        )
        assert seen == [tuple(v) for v in expected]

    @invariant()
    def everything_matches(self) -> None:
        if not hasattr(self, "queue"):
            return
        assert [view(e) for e in self.queue.list(limit=None)] == [
            model_view(i, m) for i, m in self.model.items()
        ]
        assert self.queue.count() == len(self.model)


DeadLetterMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
test_dead_letter_queue_matches_the_model = DeadLetterMachine.TestCase
