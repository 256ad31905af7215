"""One demo run: build the fleet, run it in simulated time, gather what every primitive did."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import riprap

from ..._monitor import ResilienceMonitor
from . import fleet as _fleet
from . import simtime
from .config import DemoConfig
from .display import Display, Tally

__all__ = ["DemoResult", "simulate"]


@dataclasses.dataclass
class DemoResult:
    """What a run did. `statistics()` is the part the seed alone decides.

    Attributes:
        config: The run's settings.
        simulated: Simulated seconds the run took (a little past `config.duration`: the calls
            in flight at the end finish).
        wall: Real seconds the run took.
        stats: Each primitive's `get_stats()` at the end, by kind and name: "circuit_breakers",
            "bulkheads", "rate_limiters", "retry_budget", "retries" (this run's counters per
            retried operation), "fallbacks" (with their cache), "chaos" (fault injection),
            "dead_letters" (entries recorded this run, by operation).
        outcomes: Per operation, the calls by how they ended ("live", "cached", "default" for
            the status polls; "ok", "failed", "dead_lettered" for the rest).
        retries: Retries made per operation (counted by `on_retry` hooks).
        transitions: Every breaker transition: (simulated time, breaker, old, new).
        events: Every incident, transition and health check printed while it ran.
        health: The monitor's `overall_health` at the end.
        outage_health: The same in the middle of the agent API's outage.
        alerts: The monitor's alerts at the end.
        report: The monitor's resilience report at the end.
        pipelines: Each operation's pipeline, outermost layer first, in words.
        dlq_path: The dead-letter queue file.
        dlq_entries: Entries in it now (more than this run's if it held some before).
        replay_command: The command that replays the queue.
    """

    config: DemoConfig
    simulated: float
    wall: float
    stats: dict[str, Any]
    outcomes: dict[str, dict[str, int]]
    retries: dict[str, int]
    transitions: list[tuple[float, str, str, str]]
    events: list[tuple[float, str]]
    health: dict[str, Any]
    outage_health: dict[str, Any]
    alerts: list[str]
    report: str
    pipelines: dict[str, list[str]]
    dlq_path: str
    dlq_entries: int
    replay_command: str

    def statistics(self) -> dict[str, Any]:
        """Everything the configuration decides: two runs with the same seed agree on it.

        Left out: wall time, the queue's path, and the report (it prints when it was made).
        """
        return {
            "simulated": self.simulated,
            "stats": self.stats,
            "outcomes": self.outcomes,
            "retries": self.retries,
            "transitions": self.transitions,
            "events": self.events,
            "health": self.health,
            "outage_health": self.outage_health,
            "alerts": self.alerts,
        }


class _Quiet(Display):
    """A display that shows nothing (the run still reports to it, so it runs the same)."""

    def begin(self, pipelines: dict[str, list[str]]) -> None:
        pass

    def event(self, at: float, text: str) -> None:
        pass

    def progress(self, fraction: float, at: float, tally: Tally) -> None:
        pass

    def close(self) -> None:
        pass


def _layers(pipeline: riprap.Pipeline, dependency: str) -> list[str]:
    """A pipeline's layers in words; the fault-injection layers are the dependency itself."""
    words = []
    for layer in pipeline.layers:
        policy: Any = layer.policy
        if layer.kind == "retry":
            words.append(f"retry ({policy.policy.max_attempts} attempts)")
        elif layer.kind == "fallback":
            words.append("fallback (cache, then a default)")
        elif layer.kind == "dead_letter":
            words.append("dead letter")
        elif layer.kind == "keyed":
            words.append(f"limiter {policy.limiter.name} (per agent)")
        elif layer.kind == "chaos":
            if words[-1] != dependency:
                words.append(dependency)
        else:
            words.append(layer.label.replace("'", ""))
    return words


def _replay_command(path: str) -> str:
    """The command that replays the queue at `path`, as this process was started."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "riprap":
        on_path = shutil.which("riprap")
        program = (
            "riprap"
            if on_path and os.path.realpath(on_path) == os.path.realpath(argv0)
            else shlex.quote(os.path.abspath(argv0))
        )
    else:
        program = f"{shlex.quote(sys.executable)} -m riprap"
    return f"{program} dlq replay --db {shlex.quote(path)}"


def _tally(f: _fleet.Fleet) -> Tally:
    """The run so far, for the progress display (it reads no primitive's state)."""
    c = f.counters
    status = c.outcomes["agent_status"]
    return Tally(
        calls=sum(c.calls.values()),
        retries=sum(c.retries.values()),
        fallbacks=status["cached"] + status["default"],
        dead_letters=sum(
            c.outcomes[op]["dead_lettered"] for op in ("agent_command", "metrics_write")
        ),
        breakers=tuple(f.breaker_states.items()),
    )


class _Run:
    """One run in progress: the fleet, its clock, and what it reported so far."""

    def __init__(
        self,
        config: DemoConfig,
        display: Display,
        stopped: Callable[[], bool],
        queue: riprap.DeadLetterQueue,
    ) -> None:
        self.config, self.display, self.stopped = config, display, stopped
        self.clock = simtime.SimClock()
        self.events: list[tuple[float, str]] = []
        self.monitor = ResilienceMonitor()
        self.outage_health: dict[str, Any] = {}
        self.fleet = _fleet.Fleet(
            agents=config.agents,
            duration=config.duration,
            failure_rate=config.failure_rate,
            seed=config.seed,
            clock=self.clock,
            queue=queue,
            on_event=self.event,
        )
        self.pipelines = {
            op: _layers(self.fleet.pipelines[op], dependency)
            for op, dependency in (
                ("agent_status", "agent API"),
                ("agent_command", "agent API"),
                ("external_lookup", "external API"),
                ("metrics_write", "database"),
            )
        }

    def event(self, at: float, text: str) -> None:
        self.events.append((at, text))
        self.display.event(at, text)

    async def incidents(self) -> None:
        """Switch the incidents on and off on time; check the health mid-outage."""
        incidents = self.fleet.incidents()
        start, end = _fleet.OUTAGE
        incidents.append(((start + end) / 2 * self.config.duration, "", lambda: None))
        incidents.sort(key=lambda i: i[0])
        for at, text, switch in incidents:
            await self.fleet.sleep_until(at)
            if self.stopped():
                return
            switch()
            if text:
                self.event(at, text)
                continue
            health = self.fleet.health(self.monitor)["overall_health"]
            self.outage_health.update(health)
            self.event(
                at,
                f"health check: {health['status'].upper()} (score {health['score']:.0%})",
            )

    async def progress(self) -> None:
        """Report progress a hundred times a run, in every output mode alike."""
        for i in range(1, _fleet.TICKS + 1):
            await self.fleet.sleep_until(self.config.duration * i / _fleet.TICKS)
            if self.stopped():
                return
            self.display.progress(
                i / _fleet.TICKS, self.clock.now(), _tally(self.fleet)
            )

    async def main(self) -> None:
        self.event(0.0, f"{self.config.agents} agents start")
        clockwork = [
            asyncio.ensure_future(self.incidents()),
            asyncio.ensure_future(self.progress()),
        ]
        try:
            await asyncio.gather(
                *(self.fleet.agent(n, self.stopped) for n in range(self.config.agents))
            )
            if not self.stopped():
                # The agents stop at the end of the run, when the last tick is due.
                await asyncio.gather(*clockwork)
        finally:
            # Stopped early: the next incident may be minutes of simulated time away.
            for task in clockwork:
                task.cancel()
            await asyncio.gather(*clockwork, return_exceptions=True)

    def run(self) -> float:
        """Run it; returns the wall time it took."""
        self.display.begin(self.pipelines)
        riprap_log = logging.getLogger("riprap")
        level = riprap_log.level
        # Each retried attempt logs a warning: thousands would bury the demo's own output.
        riprap_log.setLevel(logging.CRITICAL)
        t0 = time.perf_counter()
        try:
            simtime.run(self.main(), self.clock, pace=self.config.pace)
        finally:
            riprap_log.setLevel(level)
            self.display.close()
        return time.perf_counter() - t0


def simulate(
    config: DemoConfig,
    display: Display | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> DemoResult:
    """Run the demo once in simulated time and return what it did (it prints nothing itself).

    Args:
        config: The run's settings.
        display: Where progress and events go while it runs (None: nowhere).
        should_stop: Polled by the agents; True ends the run early (for `riprap serve`).
    """
    path = config.dlq or os.path.join(
        tempfile.mkdtemp(prefix="riprap-demo-"), "riprap-dlq.sqlite3"
    )
    queue = riprap.DeadLetterQueue(path)
    try:
        before = queue.get_stats()["by_operation"]
        run = _Run(
            config,
            display or _Quiet(sys.stdout, tty=False),
            should_stop or (lambda: False),
            queue,
        )
        wall = run.run()
        f = run.fleet
        metrics = f.health(run.monitor)
        return DemoResult(
            config=config,
            simulated=run.clock.now(),
            wall=wall,
            stats=_stats(f, before),
            outcomes={
                op: dict(sorted(c.items())) for op, c in f.counters.outcomes.items()
            },
            retries=dict(f.counters.retries),
            transitions=list(f.transitions),
            events=run.events,
            health=dict(metrics["overall_health"]),
            outage_health=run.outage_health,
            alerts=[a["message"] for a in metrics["alerts"]],
            report=run.monitor.report(metrics),
            pipelines=run.pipelines,
            dlq_path=queue.path,
            dlq_entries=queue.count(),
            replay_command=_replay_command(queue.path),
        )
    finally:
        queue.close()


def _stats(f: _fleet.Fleet, before: dict[str, int]) -> dict[str, Any]:
    after = f.queue.get_stats()["by_operation"]
    recorded = {
        op: n - before.get(op, 0) for op, n in after.items() if n - before.get(op, 0)
    }
    retries = {}
    for op, delta in f.retry_deltas().items():
        attempts = delta["attempts"]
        retries[op] = {
            "calls": delta["successes"] + delta["failures"],
            "successes": delta["successes"],
            "failures": delta["failures"],
            "attempts": sum(attempts),
            "retries": sum(attempts) - attempts[0],
            "attempts_by_number": _trimmed(attempts),
        }
    strategy = f.fallback_strategy
    return {
        "circuit_breakers": {b.name: dict(b.get_stats()) for b in f.breakers},
        "bulkheads": {f.bulkhead.name: f.bulkhead.get_stats()},
        "rate_limiters": {str(lim.name): dict(lim.get_stats()) for lim in f.limiters},
        "retry_budget": dict(f.budget.get_stats()),
        "retries": retries,
        "fallbacks": {strategy.name: dict(strategy.get_stats())},
        "chaos": {name: layer.get_stats() for name, layer in f.chaos.items()},
        "dead_letters": {"recorded": sum(recorded.values()), "by_operation": recorded},
    }


def _trimmed(counts: list[int]) -> list[int]:
    """`counts` without its trailing zeros."""
    end = len(counts)
    while end > 1 and counts[end - 1] == 0:
        end -= 1
    return counts[:end]
