"""The simulated fleet: agents, their API, an external API and a database, behind riprap.

Every agent, about once a simulated second, asks the agent API for its status, looks itself up
in an external API, writes a metrics sample to the database and, now and then, is sent a few
commands. The dependencies are `riprap.chaos.inject` layers over functions that always work:
background faults at the configured rate (connection resets, timeouts, 503 and 429 answers with
a Retry-After) and latency on every call, plus three scheduled incidents that the layers'
`enabled` switch turns on and off: a latency spike on the agent API, an outage of the agent API
that recovers, and a database failover.

Each dependency is reached through a `riprap.Pipeline`, outermost first:

* status polls: fallback (cached status, else "unknown") > retry > breaker `agent_api` >
  bulkhead `agent_api` > the agent API;
* commands: dead letter > retry > per-agent limiter `agent_commands` > breaker `agent_api` >
  bulkhead `agent_api` > the agent API (the breaker and the bulkhead are the status polls', as
  the dependency is the same);
* external lookups: retry (which honours Retry-After) > limiter `external_api` (one quota for
  the whole fleet: callers wait their turn) > the external API;
* metric writes: dead letter > retry > breaker `database` > the database.

The functions the dead-letter queue records (`deliver_command`, `record_metrics`) are plain
module functions, so `riprap dlq replay` can import and call them: once the incidents are over
they succeed, and the replayed entries leave the queue.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

import riprap
from riprap import chaos

from ..._monitor import ResilienceMonitor, Snapshot
from ..._registry import retry_counters
from .simtime import SimClock

__all__ = [
    "OPERATIONS",
    "Fleet",
    "HTTPError",
    "agent_status",
    "deliver_command",
    "lookup_agent",
    "record_metrics",
]

#: The incidents, as fractions of the run: (start, end).
SPIKE = (0.20, 0.30)
OUTAGE = (0.40, 0.55)
FAILOVER = (0.70, 0.76)
#: Simulated seconds per call while the agent API's latency spikes.
SPIKE_LATENCY = (0.8, 2.0)
#: Progress reports per run (the same in every output mode, so they never change the run).
TICKS = 100
COMMANDS = ("restart", "collect-logs", "update-config", "rotate-keys", "ping")
UNKNOWN = {"agent": None, "status": "unknown"}
#: The operations, and how the output calls them.
OPERATIONS = {
    "agent_status": "status polls",
    "agent_command": "commands",
    "external_lookup": "external lookups",
    "metrics_write": "metric writes",
}


class HTTPError(Exception):
    """An HTTP error answer: `status_code`, and `retry_after` seconds when the server sent one."""

    def __init__(
        self, status_code: int, reason: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status_code} {reason}")
        self.status_code = status_code
        self.retry_after = retry_after


# --- the dependencies' own code (it always works; the chaos layers make it fail) -------------


async def agent_status(agent: int) -> dict[str, Any]:
    """Ask agent `agent` for its status (the agent API)."""
    return {"agent": agent, "status": "ok"}


async def deliver_command(agent: int, command: str) -> str:
    """Send `command` to agent `agent` (the agent API); `riprap dlq replay` calls it too."""
    return f"agent {agent} accepted {command}"


async def lookup_agent(agent: int) -> str:
    """Look agent `agent` up in the external inventory API."""
    return f"agent-{agent:03d}.fleet.example.net"


async def record_metrics(agent: int, sample: dict[str, float]) -> int:
    """Write one metrics sample of agent `agent` to the database; replayable too."""
    return agent


# --- the fleet -------------------------------------------------------------------------------


@dataclasses.dataclass
class Counters:
    """What the agents saw, per operation."""

    calls: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    outcomes: dict[str, collections.Counter[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    retries: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )

    def count(self, op: str, outcome: str) -> None:
        self.calls[op] += 1
        self.outcomes[op][outcome] += 1


class Fleet:
    """The simulated fleet and every riprap primitive it runs through.

    Args:
        agents: How many agents.
        duration: Simulated seconds the agents work for.
        failure_rate: The background fault rate of each dependency, in [0, 1].
        seed: Seeds every random stream (faults, latency, jitter, the agents' timing).
        clock: The simulated clock every primitive runs on.
        queue: The dead-letter queue.
        on_event: Called as `on_event(time, text)` for each incident and breaker transition.
    """

    def __init__(
        self,
        *,
        agents: int,
        duration: float,
        failure_rate: float,
        seed: int,
        clock: SimClock,
        queue: riprap.DeadLetterQueue,
        on_event: Callable[[float, str], None],
    ) -> None:
        self.agents, self.duration, self.clock = agents, duration, clock
        self.queue, self.on_event = queue, on_event
        self.counters = Counters()
        self.transitions: list[tuple[float, str, str, str]] = []
        self.breaker_states: dict[str, str] = {}
        master = random.Random(seed)
        seeds = iter([master.getrandbits(32) for _ in range(16)])
        self.agent_rngs = [random.Random(master.getrandbits(32)) for _ in range(agents)]
        self.fault_rng = random.Random(next(seeds))
        self._dependencies(failure_rate, seeds)
        self._primitives(seeds)
        self._pipelines()

    # -- construction ------------------------------------------------------------------------

    def _dependencies(self, failure_rate: float, seeds: Any) -> None:
        clock = self.clock
        self.agent_faults = chaos.inject(
            self._agent_fault, failure_rate, (0.02, 0.12), next(seeds), clock=clock
        )
        self.spike = chaos.inject(
            rate=0.0,
            latency=SPIKE_LATENCY,
            seed=next(seeds),
            enabled=False,
            clock=clock,
        )
        self.outage = chaos.inject(
            lambda: ConnectionRefusedError("agent API unreachable (outage)"),
            1.0,
            enabled=False,
            clock=clock,
        )
        self.api_faults = chaos.inject(
            self._api_fault, failure_rate, (0.05, 0.25), next(seeds), clock=clock
        )
        self.db_faults = chaos.inject(
            lambda: ConnectionResetError("database connection reset"),
            failure_rate / 2,
            (0.002, 0.01),
            next(seeds),
            clock=clock,
        )
        self.db_failover = chaos.inject(
            lambda: ConnectionRefusedError("database failover in progress"),
            1.0,
            enabled=False,
            clock=clock,
        )
        self.chaos = {
            "agent_api faults": self.agent_faults,
            "agent_api latency spike": self.spike,
            "agent_api outage": self.outage,
            "external_api faults": self.api_faults,
            "database faults": self.db_faults,
            "database failover": self.db_failover,
        }

    def _agent_fault(self) -> BaseException:
        r = self.fault_rng.random()
        if r < 0.5:
            return ConnectionResetError("agent connection reset by peer")
        if r < 0.8:
            return TimeoutError("agent did not answer in time")
        return HTTPError(503, "agent busy", round(self.fault_rng.uniform(0.2, 0.8), 3))

    def _api_fault(self) -> BaseException:
        if self.fault_rng.random() < 0.6:
            delay = round(self.fault_rng.uniform(0.2, 1.0), 3)
            return HTTPError(503, "service unavailable", delay)
        return HTTPError(429, "too many requests", 1.0)

    def _primitives(self, seeds: Any) -> None:
        clock, agents = self.clock, self.agents
        # One budget for every retry of the agent API: during an outage the retries of the
        # status polls and of the commands cannot add up to a retry storm.
        self.budget = riprap.RetryBudget(
            ratio=0.2, min_per_second=max(1.0, agents / 4), window=10.0, clock=clock
        )
        self.policies = {
            "agent_status": riprap.RetryPolicy(
                max_attempts=3,
                base_delay=0.1,
                max_delay=1.0,
                budget=self.budget,
                seed=next(seeds),
            ),
            "agent_command": riprap.RetryPolicy(
                max_attempts=4,
                base_delay=0.2,
                max_delay=2.0,
                backoff_strategy="decorrelated",
                budget=self.budget,
                seed=next(seeds),
            ),
            "external_lookup": riprap.RetryPolicy(
                max_attempts=4, base_delay=0.1, max_delay=2.0, seed=next(seeds)
            ),
            "metrics_write": riprap.RetryPolicy(
                max_attempts=3,
                base_delay=0.05,
                max_delay=0.5,
                backoff_strategy="linear",
                seed=next(seeds),
            ),
        }
        self.agent_breaker = riprap.CircuitBreaker(
            "agent_api",
            riprap.CircuitBreakerConfig(
                failure_threshold=5,
                timeout=5.0,
                success_threshold=2,
                monitoring_window=10.0,
                minimum_calls=20,
                half_open_max_calls=2,
            ),
            clock=clock,
        )
        self.db_breaker = riprap.CircuitBreaker(
            "database",
            riprap.CircuitBreakerConfig(
                failure_threshold=4,
                timeout=2.0,
                success_threshold=2,
                monitoring_window=10.0,
                minimum_calls=20,
                half_open_max_calls=1,
            ),
            clock=clock,
        )
        self.breakers = (self.agent_breaker, self.db_breaker)
        for breaker in self.breakers:
            self.breaker_states[breaker.name] = breaker.state.value
            breaker.add_listener(self._transition)
        self.bulkhead = riprap.Bulkhead(
            "agent_api",
            riprap.BulkheadConfig(
                max_concurrent_calls=max(2, agents // 3),
                max_queue_size=max(1, agents // 4),
                timeout=10.0,
                max_wait=0.5,
            ),
            clock=clock,
        )
        self.external_limiter = riprap.RateLimiter(
            rate=max(1.0, 0.75 * agents),
            burst=max(1.0, agents / 2),
            name="external_api",
            clock=clock,
        )
        self.command_limiter = riprap.KeyedRateLimiter(
            rate=1.0, burst=2, name="agent_commands", clock=clock
        )
        self.limiters = (self.external_limiter, self.command_limiter)
        self.fallback = riprap.FallbackDecorator(
            "agent_status",
            cache_key_func=lambda agent: agent,
            default_value=UNKNOWN,
            config=riprap.FallbackConfig(cache_ttl=10.0, degraded_timeout=None),
            clock=clock,
            manager=riprap.ServiceFallbackManager(),
        )
        assert self.fallback.strategy is not None
        self.fallback_strategy = self.fallback.strategy

    def _retry(self, op: str) -> riprap.RetryDecorator:
        def retried(attempt: int, exc: BaseException | None, delay: float) -> None:
            self.counters.retries[op] += 1

        return riprap.RetryDecorator(
            self.policies[op], clock=self.clock, on_retry=retried
        )

    def _pipelines(self) -> None:
        agent_api = (
            self.agent_breaker,
            self.bulkhead,
            self.outage,
            self.spike,
            self.agent_faults,
        )
        self.pipelines = {
            "agent_status": riprap.Pipeline(
                self.fallback, self._retry("agent_status"), *agent_api
            ),
            "agent_command": riprap.Pipeline(
                riprap.dead_letter(self.queue, f"{__name__}:deliver_command"),
                self._retry("agent_command"),
                self.command_limiter(key=lambda agent, command: agent),
                *agent_api,
            ),
            "external_lookup": riprap.Pipeline(
                self._retry("external_lookup"), self.external_limiter, self.api_faults
            ),
            "metrics_write": riprap.Pipeline(
                riprap.dead_letter(self.queue, f"{__name__}:record_metrics"),
                self._retry("metrics_write"),
                self.db_breaker,
                self.db_failover,
                self.db_faults,
            ),
        }
        self.poll_status = self.pipelines["agent_status"](agent_status)
        self.send_command = self.pipelines["agent_command"](deliver_command)
        self.lookup = self.pipelines["external_lookup"](lookup_agent)
        self.write_metrics = self.pipelines["metrics_write"](record_metrics)
        #: The retry operations, as the monitor counts them, by their short name.
        self.operations = {
            "agent_status": f"{__name__}.agent_status",
            "agent_command": f"{__name__}.deliver_command",
            "external_lookup": f"{__name__}.lookup_agent",
            "metrics_write": f"{__name__}.record_metrics",
        }
        self.retry_base = {
            op: retry_counters(name).snapshot() for op, name in self.operations.items()
        }

    # -- events ------------------------------------------------------------------------------

    def _transition(self, name: str, old: Any, new: Any) -> None:
        now = self.clock.now()
        self.transitions.append((now, name, old.value, new.value))
        self.breaker_states[name] = new.value
        self.on_event(now, f"breaker {name}: {old.value} -> {new.value}")

    # -- the run -----------------------------------------------------------------------------

    async def sleep_until(self, at: float) -> None:
        """Wait until simulated time `at`."""
        left = at - self.clock.now()
        if left > 0:
            await asyncio.sleep(left)

    async def agent(self, n: int, stopped: Callable[[], bool]) -> None:
        """Agent `n`'s life: poll, look up, write, sometimes take commands; about once a second."""
        rng = self.agent_rngs[n]
        # The agents do not start in lock-step.
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        last: dict[str, Any] | None = None
        while self.clock.now() < self.duration and not stopped():
            status = await self.poll_status(n)
            # The agent API answers a new dict each time; the cache hands back the last one.
            if status is UNKNOWN:
                self.counters.count("agent_status", "default")
            elif status is last:
                self.counters.count("agent_status", "cached")
            else:
                self.counters.count("agent_status", "live")
                last = status
            await self._call("external_lookup", self.lookup, (n,), "failed")
            sample = {"cpu": round(rng.uniform(0.05, 0.95), 3), "at": self.clock.now()}
            await self._call(
                "metrics_write", self.write_metrics, (n, sample), "dead_lettered"
            )
            if rng.random() < 0.35:
                for _ in range(rng.randint(1, 3)):
                    command = rng.choice(COMMANDS)
                    await self._call(
                        "agent_command",
                        self.send_command,
                        (n, command),
                        "dead_lettered",
                    )
            await asyncio.sleep(rng.uniform(0.6, 1.0))

    async def _call(
        self, op: str, func: Callable[..., Any], args: tuple[Any, ...], failed: str
    ) -> None:
        try:
            await func(*args)
        except Exception:
            self.counters.count(op, failed)
        else:
            self.counters.count(op, "ok")

    def incidents(self) -> list[tuple[float, str, Callable[[], None]]]:
        """The scheduled incidents: (simulated time, what happens, the switch)."""
        d = self.duration

        def switch(layer: chaos.Chaos, on: bool) -> Callable[[], None]:
            def flip() -> None:
                layer.enabled = on

            return flip

        low, high = SPIKE_LATENCY
        return [
            (
                SPIKE[0] * d,
                f"agent API: latency spike begins (calls take {low:g}-{high:g} s)",
                switch(self.spike, True),
            ),
            (
                SPIKE[1] * d,
                "agent API: latency back to normal",
                switch(self.spike, False),
            ),
            (
                OUTAGE[0] * d,
                "agent API: outage begins (connections refused)",
                switch(self.outage, True),
            ),
            (OUTAGE[1] * d, "agent API: back up", switch(self.outage, False)),
            (
                FAILOVER[0] * d,
                "database: failover begins (connections refused)",
                switch(self.db_failover, True),
            ),
            (
                FAILOVER[1] * d,
                "database: failover done",
                switch(self.db_failover, False),
            ),
        ]

    # -- what the monitor sees ---------------------------------------------------------------

    def retry_deltas(self) -> dict[str, Any]:
        """Each retry operation's counters for this run (the process-wide ones minus the start)."""
        out = {}
        for op, name in self.operations.items():
            now, base = retry_counters(name).snapshot(), self.retry_base[op]
            out[op] = {
                "attempts": [
                    a - b
                    for a, b in zip(now["attempts"], base["attempts"], strict=True)
                ],
                "successes": now["successes"] - base["successes"],
                "failures": now["failures"] - base["failures"],
                "buckets": [
                    a - b for a, b in zip(now["buckets"], base["buckets"], strict=True)
                ],
                "sum": now["sum"] - base["sum"],
                "count": now["count"] - base["count"],
            }
        return out

    def snapshot(self) -> Snapshot:
        """The monitor's snapshot of this fleet's primitives only (not the whole process)."""
        counts: dict[str, dict[tuple[str, str], int]] = {
            b.name: {} for b in self.breakers
        }
        for _, name, old, new in self.transitions:
            counts[name][old, new] = counts[name].get((old, new), 0) + 1
        strategy = self.fallback_strategy
        return Snapshot(
            breakers={b.name: b.get_stats() for b in self.breakers},
            breaker_transitions=counts,
            rate_limiters={str(lim.name): lim.get_stats() for lim in self.limiters},
            bulkheads={self.bulkhead.name: self.bulkhead.get_stats()},
            fallbacks={strategy.name: strategy.get_stats()},
            result_caches={strategy.name: strategy.cache.get_stats()},
            dead_letter_queues={self.queue.path: self.queue.get_stats()},
            retries=self.retry_deltas(),
            recent_transitions=[],
            timestamp=time.time(),
        )

    def health(self, monitor: ResilienceMonitor) -> dict[str, Any]:
        """The monitor's metrics (health, alerts, ...) over this fleet's primitives now."""
        return monitor.snapshot(self.snapshot())
