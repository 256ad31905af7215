"""`riprap demo`: a simulated fleet of flaky agents run through riprap's policies.

Eight agents answer over a "network" that drops and resets connections, times out, answers 503
with a Retry-After, and now and then refuses our credentials. Part-way through, the agents' API
has an outage. Async status polls go through a retry policy wrapped around a circuit breaker
(an open breaker stops the retries at once); sync database writes go through their own retry
policy and breaker; both policies share one retry budget. Every poll also looks the agent up in
an external API that allows 300 requests per second across the fleet (the agents queue for it,
first come first served), and commands to each agent are limited per agent (excess commands are
skipped, not queued). The run ends with the statistics (retries, the breakers' dashboard, the
limiters, the budget, what finally failed) and `ResilienceMonitor`'s resilience report.

Faults come from a seeded RNG; latencies, backoff waits and breaker timeouts are real (a few ms).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import sys
import time
from collections.abc import Mapping
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

    @property
    def fraction(self) -> float:
        return self.done / self.total

    def step(self) -> None:
        self.done += 1
        frac = self.fraction
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
    """Simulated agents and their database: latency and faults from one seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.requests = 0
        self.outage = False

    def fault(self) -> BaseException | None:
        self.requests += 1
        r = self.rng.random()
        if self.outage and r < 0.9:
            return ConnectionRefusedError("agent API is down")
        if r < 0.10:
            return ConnectionResetError("connection reset by peer")
        if r < 0.15:
            return TimeoutError("agent did not answer in time")
        if r < 0.18:
            return ServiceUnavailableError(retry_after=0.004)
        if r < 0.19:
            return PermissionError("agent rejected our credentials")
        return None

    async def status(self, agent: int) -> dict[str, Any]:
        await asyncio.sleep(self.rng.uniform(0.0005, 0.002))
        fault = self.fault()
        if fault is not None:
            raise fault
        return {"agent": agent, "status": "ok"}

    async def external_lookup(self, agent: int) -> str:
        await asyncio.sleep(0.0002)
        return f"agent-{agent}.example.net"

    def write_metrics(self, agent: int) -> int:
        time.sleep(self.rng.uniform(0.0002, 0.001))
        fault = self.fault()
        if fault is not None and not isinstance(
            fault, (ServiceUnavailableError, PermissionError)
        ):
            raise ConnectionRefusedError("database connection refused")
        return agent


class Report:
    """What the run counted, printed at the end."""

    def __init__(self) -> None:
        self.completed = 0
        self.failures: dict[str, int] = {}
        self.retries = {"agent_status": 0, "write_metrics": 0}
        self.transitions: list[str] = []
        self.commands = {"sent": 0, "throttled": 0}

    def failed(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.failures[name] = self.failures.get(name, 0) + 1

    def retry_hook(self, op: str) -> riprap._retry.OnRetry:
        def hook(attempt: int, exc: BaseException | None, delay: float) -> None:
            self.retries[op] += 1

        return hook


def _section(title: str) -> None:
    print(f"\n{title}")


def _print_breakers(dashboard: dict[str, Any]) -> None:
    s = dashboard["summary"]
    _section(
        f"circuit breakers: {s['total_breakers']} "
        f"({s['closed_breakers']} closed, {s['open_breakers']} open, "
        f"{s['half_open_breakers']} half-open)"
    )
    for name, stats in sorted(dashboard["breakers"].items()):
        print(
            f"  {name:<18} {stats['state']:<9} calls {stats['total_calls']:>5}  "
            f"failures {stats.get('total_failures', 0):>4}  "
            f"rejected {stats.get('total_rejected', 0):>4}  "
            f"window failure rate {stats['failure_rate']:.0%}"
        )
    for alert in dashboard["alerts"][:5]:
        print(f"  alert: {alert['message']}")


def run(*, quick: bool = False, seed: int = 7, calls: int | None = None) -> int:
    """Run the demo and print the report; returns the process exit code."""
    logging.getLogger("riprap").setLevel(logging.CRITICAL)
    agents = 8
    per_agent = calls if calls is not None else (15 if quick else 60)
    fleet = Fleet(seed)
    report = Report()
    registry = riprap.CircuitBreakerRegistry()
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
    # Breakers sit inside the retries: an open breaker's CircuitOpenError is not retryable, so
    # retrying stops at once instead of hammering a dependency that is down. Credential errors
    # are excluded: they are our fault, not the agents'.
    fast = riprap.CircuitBreakerConfig(
        timeout=0.03, monitoring_window=0.5, minimum_calls=20
    )
    agent_breaker = registry.get_breaker(
        "agent_api",
        dataclasses.replace(
            fast,
            failure_threshold=5,
            success_threshold=2,
            excluded_exceptions=(PermissionError,),
        ),
    )
    db_breaker = registry.get_breaker("database", fast)
    for breaker in (agent_breaker, db_breaker):
        breaker.add_listener(
            lambda name, old, new: report.transitions.append(
                f"{name}: {old.value} -> {new.value}"
            )
        )
    # The external API's quota is shared by the whole fleet: callers wait their turn. Commands
    # are limited per agent and dropped (RateLimitExceeded) rather than queued.
    external_api = riprap.RateLimiter(rate=300, burst=30, name="external_api")
    commands = riprap.KeyedRateLimiter(
        rate=25, burst=2, name="agent_commands", max_keys=64
    )
    external_lookup = external_api(fleet.external_lookup)

    @commands(key=lambda agent: agent, on_limit="raise")
    def send_command(agent: int) -> None:
        report.commands["sent"] += 1

    manager = riprap.RetryManager(agent_policy)
    agent_status = agent_breaker(fleet.status)
    write_metrics = riprap.retry(
        db_policy, on_retry=report.retry_hook("write_metrics")
    )(db_breaker(fleet.write_metrics))
    progress = Progress(agents * per_agent, "polling the fleet")

    async def agent_loop(agent: int) -> None:
        for _ in range(per_agent):
            # The agents' API is down between 30 % and 45 % of the run.
            fleet.outage = 0.30 <= progress.fraction < 0.45
            try:
                await external_lookup(agent)
                await manager.retry_with_backoff(
                    agent_status, agent, operation_id="agent_status"
                )
                write_metrics(agent)
                report.completed += 1
            except Exception as exc:
                report.failed(exc)
            try:
                send_command(agent)
            except riprap.RateLimitExceeded:
                report.commands["throttled"] += 1
            progress.step()
            await asyncio.sleep(0.003)  # each agent is polled every few milliseconds

    print(
        f"riprap {riprap.__version__} demo on the {riprap.backend()} backend (seed {seed})"
    )
    print(
        f"{agents} agents x {per_agent} polls; faults: resets, timeouts, 503 + Retry-After, "
        "an outage of the agent API from 30 % to 45 % of the run"
    )
    print()
    t0 = time.perf_counter()

    async def main() -> tuple[dict[str, Any], str]:
        await asyncio.gather(*(agent_loop(a) for a in range(agents)))
        # Read while the run's primitives are alive: the monitor holds no reference to them.
        return (
            await riprap.CircuitBreakerMonitor(registry).get_dashboard_data(),
            await riprap.ResilienceMonitor().generate_resilience_report(),
        )

    dashboard, resilience = asyncio.run(main())
    print(
        f"\nfinished in {time.perf_counter() - t0:.2f}s; {fleet.requests} simulated requests"
    )
    _print_report(report, manager, budget, dashboard, (external_api, commands))
    print(f"\n{resilience}", end="")
    return 0


def _print_report(
    report: Report,
    manager: riprap.RetryManager,
    budget: riprap.RetryBudget,
    dashboard: dict[str, Any],
    limiters: tuple[riprap.RateLimiter, riprap.KeyedRateLimiter],
) -> None:
    stats = manager.get_retry_statistics("agent_status")
    report.retries["agent_status"] = stats["total_attempts"] - stats["total_calls"]

    _section("retry statistics (agent_status, async, RetryManager):")
    for key, value in (
        ("calls", f"{stats['total_calls']}"),
        ("attempts", f"{stats['total_attempts']}"),
        ("success rate", f"{stats['success_rate']:.1%}"),
        ("avg attempt time", f"{stats['average_attempt_time'] * 1000:.2f} ms"),
        ("max attempt time", f"{stats['max_attempt_time'] * 1000:.2f} ms"),
    ):
        print(f"  {key:<18} {value}")
    _section("retries made:")
    for op, n in report.retries.items():
        print(f"  {op:<18} {n}")
    b = budget.get_stats()
    print(
        f"  retry budget: {b['total_withdrawals']} retries allowed, {b['total_refused']} refused, "
        f"{b['total_deposits']} first attempts"
    )

    _print_breakers(dashboard)
    _section(f"breaker transitions ({len(report.transitions)}):")
    for line in report.transitions[:12]:
        print(f"  {line}")
    if len(report.transitions) > 12:
        print(f"  ... and {len(report.transitions) - 12} more")

    _section("rate limiters:")
    for limiter in limiters:
        st: Mapping[str, Any] = limiter.get_stats()
        keys = f", {st['keys']} keys" if "keys" in st else ""
        print(
            f"  {st['name']:<18} {st['rate']:g}/s burst {st['burst']:g}: "
            f"{st['admitted']} admitted ({st['waited']} after waiting), "
            f"{st['rejected']} rejected{keys}"
        )
    print(
        f"  commands: {report.commands['sent']} sent, "
        f"{report.commands['throttled']} skipped by the per-agent limit"
    )

    _section(
        f"outcomes: {report.completed} polls completed, "
        f"{sum(report.failures.values())} gave up"
    )
    for name, n in sorted(report.failures.items()):
        print(f"  {name:<24} {n}")
