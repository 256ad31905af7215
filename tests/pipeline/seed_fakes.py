"""Scripted fakes of the seed design's services (agents, a database, an external API).

Each operation is an `Endpoint`: it records when it was called and follows a script of faults
(an exception is raised, a `Hang` takes time on the ManualClock and then answers), so a test
says exactly which attempt fails and how.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

from riprap.testing import ManualClock

__all__ = [
    "ClientError",
    "ClientResponseError",
    "Endpoint",
    "FakeAgent",
    "FakeDatabase",
    "FakeExternalAPI",
    "Hang",
    "gaps",
    "within_jitter",
]


@dataclasses.dataclass
class Hang:
    """A scripted step: the call takes `seconds` on the clock, then answers."""

    seconds: float


class ClientError(Exception):
    """Stands in for aiohttp.ClientError (the external API breaker's expected exception)."""


class ClientResponseError(ClientError):
    """Stands in for aiohttp.ClientResponseError: an HTTP error status in `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class Endpoint:
    """One operation of a fake service: records each call and follows a script of faults.

    Each call takes the next step of `script` (an exception is raised, a `Hang` takes time
    and then answers); with the script empty, the call answers at once.
    """

    def __init__(self, clock: ManualClock, answer: Callable[..., Any]) -> None:
        self.clock = clock
        self.answer = answer
        self.script: list[BaseException | Hang] = []
        self.calls: list[float] = []

    def then(self, *steps: BaseException | Hang) -> Endpoint:
        self.script.extend(steps)
        return self

    async def __call__(self, *args: Any) -> Any:
        self.calls.append(self.clock.now())
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, Hang):
            await self.clock.asleep(step.seconds)
        return self.answer(*args)


class FakeAgent:
    """An agent: direct and alternative command endpoints, a status endpoint, a command queue."""

    def __init__(self, clock: ManualClock) -> None:
        self.command = Endpoint(clock, lambda a, c: {"agent": a, "done": c["op"]})
        self.alt_command = Endpoint(clock, lambda a, c: {"agent": a, "done": c["op"]})
        self.status = Endpoint(clock, lambda a: {"agent": a, "status": "online"})
        self.queued: list[tuple[str, dict[str, Any]]] = []
        self.enqueue = Endpoint(clock, lambda a, c: self.queued.append((a, c)))


class FakeDatabase:
    """A database: status updates on the primary, queries on the primary and two replicas."""

    def __init__(self, clock: ManualClock) -> None:
        self.status: dict[str, str] = {}
        self.execute = Endpoint(clock, self._update)
        self.primary = Endpoint(clock, lambda sql, params: [{"from": "primary"}])
        self.replicas = [
            Endpoint(clock, lambda sql, params, n=n: [{"from": f"replica {n}"}])
            for n in (1, 2)
        ]

    def _update(self, sql: str, status: str, agent_id: str) -> None:
        assert sql.startswith("UPDATE agents SET status")
        self.status[agent_id] = status


class FakeExternalAPI:
    """An external API with a main and a backup endpoint."""

    def __init__(self, clock: ManualClock) -> None:
        self.main = Endpoint(clock, lambda path, data: {"from": "main", "echo": data})
        self.backup = Endpoint(
            clock, lambda path, data: {"from": "backup", "echo": data}
        )


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def within_jitter(measured: list[float], expected: list[float], r: float = 0.1) -> bool:
    """Each sleep is its nominal delay moved by at most ±r of it (the seed's 10 % jitter)."""
    return len(measured) == len(expected) and all(
        (1 - r) * e - 1e-9 <= m <= (1 + r) * e + 1e-9
        for m, e in zip(measured, expected, strict=True)
    )
