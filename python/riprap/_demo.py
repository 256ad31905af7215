"""`riprap demo`: a simulated fleet of flaky agents run through riprap's policies.

Each agent answers over a "network" that drops connections, resets them, answers 503 with a
Retry-After, and now and then fails for good. Async status polls and sync database writes go
through retry policies with a shared retry budget; the run ends with the statistics a service
would export. Faults come from a seeded RNG; latencies and retry waits are real (a few ms).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from typing import Any

import riprap

__all__ = ["run"]


class ServiceUnavailableError(Exception):
    """A 503 from an agent, with a Retry-After."""

    status_code = 503

    def __init__(self, retry_after: float) -> None:
        super().__init__("service unavailable")
        self.retry_after = retry_after


class Progress:
    """A one-line progress bar (redrawn in place on a terminal, every 25 % otherwise)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.done, self.label = total, 0, label
        self.tty = sys.stdout.isatty()
        self.next_mark = 0.25

    def step(self) -> None:
        self.done += 1
        frac = self.done / self.total
        if self.tty:
            filled = int(frac * 30)
            bar = "#" * filled + "." * (30 - filled)
            end = "\n" if self.done == self.total else ""
            print(
                f"\r{self.label} [{bar}] {self.done}/{self.total}", end=end, flush=True
            )
        elif frac >= self.next_mark or self.done == self.total:
            print(f"{self.label}: {self.done}/{self.total}", flush=True)
            while self.next_mark <= frac:
                self.next_mark += 0.25


class Fleet:
    """Simulated agents: latency and faults drawn from one seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.requests = 0

    def fault(self) -> BaseException | None:
        self.requests += 1
        r = self.rng.random()
        if r < 0.18:
            return ConnectionResetError("connection reset by peer")
        if r < 0.26:
            return TimeoutError("agent did not answer in time")
        if r < 0.30:
            return ServiceUnavailableError(retry_after=0.004)
        if r < 0.31:
            return PermissionError("agent rejected our credentials")
        return None

    async def status(self, agent: int) -> dict[str, Any]:
        await asyncio.sleep(self.rng.uniform(0.0005, 0.002))
        fault = self.fault()
        if fault is not None:
            raise fault
        return {"agent": agent, "status": "ok"}

    def write_metrics(self, agent: int) -> int:
        time.sleep(self.rng.uniform(0.0002, 0.001))
        fault = self.fault()
        if fault is not None and not isinstance(fault, ServiceUnavailableError):
            raise ConnectionRefusedError("database connection refused")
        return agent


def run(*, quick: bool = False, seed: int = 7, calls: int | None = None) -> int:
    """Run the demo and print the report; returns the process exit code."""
    logging.getLogger("riprap").setLevel(logging.CRITICAL)
    agents = 8
    per_agent = calls if calls is not None else (15 if quick else 60)
    fleet = Fleet(seed)
    budget = riprap.RetryBudget(ratio=0.2, min_per_second=20.0, window=10.0)
    agent_policy = riprap.RetryPolicy(
        max_attempts=4, base_delay=0.002, max_delay=0.02, budget=budget, seed=seed
    )
    db_policy = riprap.RetryPolicy(
        max_attempts=3,
        base_delay=0.001,
        max_delay=0.01,
        backoff_strategy="decorrelated",
        budget=budget,
        seed=seed + 1,
    )
    manager = riprap.RetryManager(agent_policy)
    retries = {"agent_status": 0, "write_metrics": 0}

    def counting(op: str) -> Any:
        def hook(attempt: int, exc: BaseException | None, delay: float) -> None:
            retries[op] += 1

        return hook

    write_metrics = riprap.retry(db_policy, on_retry=counting("write_metrics"))(
        fleet.write_metrics
    )
    outcomes = {"ok": 0, "failed": 0}
    failures: dict[str, int] = {}
    progress = Progress(agents * per_agent, "polling the fleet")

    async def agent_loop(agent: int) -> None:
        for _ in range(per_agent):
            try:
                await manager.retry_with_backoff(
                    fleet.status, agent, operation_id="agent_status"
                )
                write_metrics(agent)
                outcomes["ok"] += 1
            except Exception as exc:
                outcomes["failed"] += 1
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            progress.step()

    print(
        f"riprap {riprap.__version__} demo on the {riprap.backend()} backend (seed {seed})"
    )
    print(
        f"{agents} agents x {per_agent} polls; faults: resets, timeouts, 503 + Retry-After\n"
    )
    t0 = time.perf_counter()

    async def main() -> None:
        await asyncio.gather(*(agent_loop(a) for a in range(agents)))

    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    stats = manager.get_retry_statistics("agent_status")
    b = budget.get_stats()
    print(f"\nfinished in {elapsed:.2f}s; {fleet.requests} simulated requests")
    print("\nretry statistics (agent_status, async, RetryManager):")
    rows = [
        ("calls", f"{stats['total_calls']}"),
        ("attempts", f"{stats['total_attempts']}"),
        ("success rate", f"{stats['success_rate']:.1%}"),
        ("avg attempt time", f"{stats['average_attempt_time'] * 1000:.2f} ms"),
        ("max attempt time", f"{stats['max_attempt_time'] * 1000:.2f} ms"),
    ]
    for k, val in rows:
        print(f"  {k:<18} {val}")
    print("\nretries made:")
    for op, n in retries.items():
        print(f"  {op:<18} {n}")
    print(
        f"\nretry budget: {b['total_withdrawals']} retries allowed, {b['total_refused']} refused, "
        f"{b['total_deposits']} first attempts"
    )
    print(f"\noutcomes: {outcomes['ok']} polls completed, {outcomes['failed']} gave up")
    for name, n in sorted(failures.items()):
        print(f"  {name:<22} {n}")
    return 0
