"""What `riprap demo` prints: the set-up before the run, the summary and the tables after it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TextIO

import riprap

from . import fleet
from .config import DemoConfig
from .runner import DemoResult

__all__ = ["header", "result"]


def _span(config: DemoConfig, phase: tuple[float, float]) -> str:
    return f"{phase[0] * config.duration:g}-{phase[1] * config.duration:g} s"


def header(config: DemoConfig, out: TextIO) -> None:
    """The lines printed before the run starts."""
    print(
        f"riprap {riprap.__version__} demo on the {riprap.backend()} backend", file=out
    )
    print(
        f"{config.agents} agents, {config.duration:g} s of simulated time (nothing really "
        f"waits), background failure rate {config.failure_rate:.0%}, seed {config.seed}",
        file=out,
    )
    print(
        f"incidents: agent API latency spike at {_span(config, fleet.SPIKE)}, agent API "
        f"outage at {_span(config, fleet.OUTAGE)}, database failover at "
        f"{_span(config, fleet.FAILOVER)}",
        file=out,
    )
    print(file=out)


def _table(
    header: Sequence[str], rows: Iterable[Sequence[object]], out: TextIO
) -> None:
    """An aligned table: the first column to the left, the others to the right."""
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        first = ("" if n == 0 else "  ") + row[0]
        line = [first.ljust(widths[0] + 2)]
        line += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(line).rstrip(), file=out)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _opened(r: DemoResult, name: str) -> int:
    return sum(1 for _, n, _, new in r.transitions if n == name and new == "open")


def _closed_at(r: DemoResult, name: str) -> float | None:
    times = [t for t, n, _, new in r.transitions if n == name and new == "closed"]
    return times[-1] if times else None


def _breakers_line(r: DemoResult) -> str:
    parts = []
    for name, stats in r.stats["circuit_breakers"].items():
        opened = _opened(r, name)
        closed = _closed_at(r, name)
        if opened == 0:
            parts.append(f"{name} never opened")
        elif closed is not None and stats["state"] == "closed":
            parts.append(
                f"{name} opened {_times(opened)} and closed again at {closed:.1f} s"
            )
        else:
            parts.append(f"{name} opened {_times(opened)}, {stats['state']} at the end")
    return "; ".join(parts)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _n(count: int, noun: str) -> str:
    """`count` and `noun`, plural unless the count is one ("1 call", "2 calls")."""
    if count == 1:
        return f"1 {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{count} {plural}"


def _summary(r: DemoResult, out: TextIO) -> None:
    s = r.stats
    retries = s["retries"]
    calls = sum(o["calls"] for o in retries.values())
    succeeded = sum(o["successes"] for o in retries.values())
    bulkhead = s["bulkheads"]["agent_api"]
    ext, cmd = s["rate_limiters"]["external_api"], s["rate_limiters"]["agent_commands"]
    status = r.outcomes.get("agent_status", {})
    dead = s["dead_letters"]
    by_op = {op.rsplit(":", 1)[-1]: n for op, n in dead["by_operation"].items()}
    health, outage = r.health, r.outage_health
    during = (
        f"; {outage['status'].upper()} ({outage['score']:.0%}) in the middle of the outage"
        if outage
        else ""
    )
    lines = [
        (
            "retries",
            f"{_n(sum(o['retries'] for o in retries.values()), 'retry')} made; of the "
            f"{_n(calls, 'call')} through a retry layer, {succeeded} succeeded in the end "
            f"and {calls - succeeded} failed for good",
        ),
        ("circuit breakers", _breakers_line(r)),
        (
            "bulkhead",
            f"agent_api turned away {_n(bulkhead['rejected_calls'], 'call')} "
            f"({bulkhead['rejected_queue_full']} with its queue full, "
            f"{bulkhead['rejected_max_wait']} after waiting too long)",
        ),
        (
            "rate limiters",
            f"external_api made {_n(ext['waited'], 'call')} wait for the quota; "
            f"agent_commands made {_n(cmd['waited'], 'command')} wait",
        ),
        (
            "fallbacks",
            f"{_n(status.get('cached', 0), 'status poll')} answered from the cache, "
            f'{status.get("default", 0)} with the default ("unknown")',
        ),
        (
            "dead letters",
            f"{_n(dead['recorded'], 'failed call')} kept for replay "
            f"({_n(by_op.get('deliver_command', 0), 'command')}, "
            f"{_n(by_op.get('record_metrics', 0), 'metric write')})",
        ),
        (
            "health",
            f"{health['status'].upper()} (score {health['score']:.0%}) at the end{during}",
        ),
    ]
    print("what the policies did:", file=out)
    for label, text in lines:
        print(f"  {label:<17} {text}", file=out)


def _tables(r: DemoResult, out: TextIO) -> None:
    s = r.stats
    print("statistics per primitive (from each one's get_stats()):", file=out)
    _table(
        ("circuit breakers", "state", "calls", "successes", "failures", "rejected",
         "not counted", "opened"),
        (
            (name, b["state"], b["total_calls"], b["total_successes"],
             b["total_failures"], b["total_rejected"], b["total_ignored"],
             _opened(r, name))
            for name, b in s["circuit_breakers"].items()
        ),
        out,
    )  # fmt: skip
    _table(
        ("bulkheads", "calls", "admitted", "after waiting", "rejected", "queue full",
         "waited too long", "limit"),
        (
            (name, b["total_calls"], b["admitted_calls"], b["waited_calls"],
             b["rejected_calls"], b["rejected_queue_full"], b["rejected_max_wait"],
             f"{b['config']['max_concurrent']} + {b['config']['max_queue_size']} queued")
            for name, b in s["bulkheads"].items()
        ),
        out,
    )  # fmt: skip
    _table(
        ("rate limiters", "rate/s", "burst", "admitted", "after waiting", "rejected",
         "keys"),
        (
            (name, lim["rate"], lim["burst"], lim["admitted"], lim["waited"],
             lim["rejected"], lim.get("keys"))
            for name, lim in s["rate_limiters"].items()
        ),
        out,
    )  # fmt: skip
    _table(
        ("retries", "calls", "succeeded", "failed", "attempts", "retries",
         "calls by attempts (1/2/..)"),
        (
            (op, o["calls"], o["successes"], o["failures"], o["attempts"], o["retries"],
             "/".join(map(str, _per_call(o["attempts_by_number"]))))
            for op, o in s["retries"].items()
        ),
        out,
    )  # fmt: skip
    b = s["retry_budget"]
    print(
        f"  retry budget (agent API): {b['total_deposits']} first attempts, "
        f"{b['total_withdrawals']} retries allowed, {b['total_refused']} refused "
        f"(ratio {b['ratio']:g} + {b['min_per_second']:g}/s over {b['window']:g} s)",
        file=out,
    )
    _table(
        ("fallbacks", "calls", "primary ok", "from cache", "default", "exhausted",
         "cache size", "cache hits"),
        (
            (name, f["calls"], f["primary_successes"], f["cache_fallbacks"],
             f["default_fallbacks"], f["exhausted"], f["cache"]["size"],
             f["cache"]["hits"])
            for name, f in s["fallbacks"].items()
        ),
        out,
    )  # fmt: skip
    _table(
        ("fault injection (chaos)", "calls", "faults", "delayed"),
        (
            (name, c["calls"], c["faults"], c["delayed"])
            for name, c in s["chaos"].items()
        ),
        out,
    )


def _per_call(attempts: list[int]) -> list[int]:
    """Calls that made exactly 1, 2, ... attempts, from attempts counted by their number."""
    return [a - b for a, b in zip(attempts, [*attempts[1:], 0], strict=True)]


def _dead_letters(r: DemoResult, out: TextIO) -> None:
    dead = r.stats["dead_letters"]
    print(
        f"dead-letter queue: {dead['recorded']} entries recorded this run "
        f"({r.dlq_entries} in the queue) in {r.dlq_path}",
        file=out,
    )
    for op, n in dead["by_operation"].items():
        print(f"  {op:<42} {n}", file=out)
    if r.dlq_entries:
        dry = r.replay_command.replace(" dlq replay ", " dlq list ", 1)
        print(
            "look at them, then replay them (the incidents are over: they succeed):",
            file=out,
        )
        print(f"  {dry}", file=out)
        print(f"  {r.replay_command}", file=out)


def result(r: DemoResult, out: TextIO) -> None:
    """Everything printed after the run."""
    print(
        f"\nfinished: {r.simulated:.1f} s of simulated time in {r.wall:.2f} s\n",
        file=out,
    )
    _summary(r, out)
    print(file=out)
    _tables(r, out)
    print(file=out)
    print(r.report, file=out)
    _dead_letters(r, out)
