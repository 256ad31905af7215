"""`riprap demo`: the simulated fleet, its determinism, what it shows, and its options.

Most tests call `simulate()` in process and assert on the `DemoResult` it returns (data, not
text); a few run `riprap demo` in a child process, as a user would. Runs on the active backend
(`make test` runs both).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import riprap
from riprap import _registry
from riprap._cli import main, serve
from riprap._cli.demo import (
    DemoConfig,
    DemoResult,
    Display,
    fleet,
    run,
    simtime,
    simulate,
)
from riprap._cli.demo import config as options
from riprap._cli.demo.runner import _Quiet
from riprap._cli.main import _parser

#: A small run: every incident, in a quarter of the quick run's calls.
SMALL = DemoConfig(duration=20.0, agents=8, seed=3)


def small(path: Path, **changes: object) -> DemoConfig:
    return dataclasses.replace(SMALL, dlq=str(path), **changes)  # type: ignore[arg-type]


def quick_config(dlq: Path) -> DemoConfig:
    """What `riprap demo --quick --seed 1 --dlq PATH` runs."""
    args = _parser().parse_args(["demo", "--quick", "--seed", "1", "--dlq", str(dlq)])
    return options.config_from(args)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """One `--quick --seed 1` run, shared by the tests that read it."""
    return simulate(quick_config(tmp_path_factory.mktemp("quick") / "dlq.sqlite3"))


# --- determinism ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_run(tmp_path: Path) -> None:
    first = simulate(small(tmp_path / "a.sqlite3"))
    second = simulate(small(tmp_path / "b.sqlite3"))
    assert first.transitions  # something happened worth comparing
    assert first.statistics() == second.statistics()


def test_another_seed_gives_another_run(tmp_path: Path) -> None:
    first = simulate(small(tmp_path / "a.sqlite3"))
    other = simulate(small(tmp_path / "b.sqlite3", seed=4))
    assert first.outcomes != other.outcomes
    assert first.statistics()["stats"] != other.statistics()["stats"]


VOLATILE = (
    (re.compile(r"simulated time in [0-9.]+ s"), "simulated time in <wall> s"),
    (re.compile(r"Generated at: .*"), "Generated at: <now>"),
)


def _child(
    tmp: Path, name: str, backend: str, hash_seed: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RIPRAP_BACKEND": backend, "PYTHONHASHSEED": hash_seed}
    path = tmp / name
    return subprocess.run(
        [sys.executable, "-m", "riprap", "demo", *args, "--dlq", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _masked(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<tmp>")
    text = re.sub(r"<tmp>/[a-z]+\.sqlite3", "<tmp>/<db>", text)
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def test_quick_twice_in_child_processes_prints_the_same_statistics(
    tmp_path: Path,
) -> None:
    # Two processes with different string hashing: nothing may depend on set order.
    backend = riprap.backend()
    one = _child(tmp_path, "one.sqlite3", backend, "1", "--quick", "--seed", "1")
    two = _child(tmp_path, "two.sqlite3", backend, "2", "--quick", "--seed", "1")
    for proc in (one, two):
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        assert "\r" not in proc.stdout  # piped: plain lines only
    assert "what the policies did" in one.stdout
    assert _masked(one.stdout, tmp_path) == _masked(two.stdout, tmp_path)
    # The pure-Python reference makes the same decisions as the Rust core: the same run.
    other = "python" if backend == "rust" else "rust"
    three = _child(tmp_path, "three.sqlite3", other, "3", "--quick", "--seed", "1")
    assert three.returncode == 0, three.stderr
    mine, theirs = _masked(one.stdout, tmp_path), _masked(three.stdout, tmp_path)
    assert mine.replace(f"on the {backend} backend", "on the <backend> backend") == (
        theirs.replace(f"on the {other} backend", "on the <backend> backend")
    )


# --- every primitive at work ---------------------------------------------------------------


def test_retries_happen_and_the_hooks_agree_with_the_counters(
    quick: DemoResult,
) -> None:
    retries = quick.stats["retries"]
    assert set(retries) == set(fleet.OPERATIONS)
    for op, counted in retries.items():
        assert counted["retries"] > 0, op
        # The on_retry hook and the monitor's counters saw the same retries.
        assert quick.retries[op] == counted["retries"], op
        assert counted["attempts"] == counted["calls"] + counted["retries"], op
        assert sum(quick.outcomes[op].values()) == counted["calls"], op


@pytest.mark.parametrize(
    ("breaker", "incident"), [("agent_api", fleet.OUTAGE), ("database", fleet.FAILOVER)]
)
def test_each_breaker_opens_in_its_incident_and_closes_after_it(
    quick: DemoResult, breaker: str, incident: tuple[float, float]
) -> None:
    duration = quick.config.duration
    start, end = incident[0] * duration, incident[1] * duration
    mine = [(t, old, new) for t, name, old, new in quick.transitions if name == breaker]
    opened = [t for t, _, new in mine if new == "open"]
    assert opened
    assert start <= opened[0] < end
    last_time, last_old, last_new = mine[-1]
    assert (last_old, last_new) == ("half_open", "closed")
    assert last_time > end  # recovered once the incident was over
    stats = quick.stats["circuit_breakers"][breaker]
    assert stats["state"] == "closed"
    assert stats["total_rejected"] > 0  # open, it turned calls away


def test_the_bulkhead_turns_calls_away_during_the_latency_spike(
    quick: DemoResult,
) -> None:
    bulkhead = quick.stats["bulkheads"]["agent_api"]
    assert bulkhead["rejected_calls"] > 0
    assert bulkhead["rejected_queue_full"] > 0
    assert bulkhead["rejected_max_wait"] > 0
    assert quick.stats["chaos"]["agent_api latency spike"]["delayed"] > 0
    # The breaker does not count the bulkhead's rejections as the agent API's failures.
    assert quick.stats["circuit_breakers"]["agent_api"]["total_ignored"] > 0


def test_the_limiters_make_callers_wait(quick: DemoResult) -> None:
    limiters = quick.stats["rate_limiters"]
    assert limiters["external_api"]["waited"] > 0
    assert limiters["agent_commands"]["waited"] > 0
    assert limiters["agent_commands"]["keys"] == quick.config.agents
    assert limiters["external_api"]["rejected"] == 0  # they wait, nobody is turned away


def test_fallbacks_answer_when_the_agent_api_cannot(quick: DemoResult) -> None:
    fb = quick.stats["fallbacks"]["agent_status"]
    polls = quick.outcomes["agent_status"]
    assert fb["cache_fallbacks"] > 0
    assert polls["cached"] == fb["cache_fallbacks"]
    assert polls.get("default", 0) == fb["default_fallbacks"]
    assert fb["exhausted"] == 0  # a default always answers last


def test_failed_calls_land_in_the_dead_letter_queue(quick: DemoResult) -> None:
    dead = quick.stats["dead_letters"]
    assert dead["recorded"] > 0
    assert quick.dlq_entries == dead["recorded"]
    assert dead["by_operation"] == {
        "riprap._cli.demo.fleet:deliver_command": quick.outcomes["agent_command"][
            "dead_lettered"
        ],
        "riprap._cli.demo.fleet:record_metrics": quick.outcomes["metrics_write"][
            "dead_lettered"
        ],
    }


def test_the_health_report_sees_the_outage_and_the_recovery(quick: DemoResult) -> None:
    assert quick.outage_health["status"] in ("degraded", "critical")
    assert quick.outage_health["circuit_breaker_health"] == 0.5  # agent_api open
    assert quick.health["status"] == "healthy"
    assert quick.health["score"] > quick.outage_health["score"]
    assert "=== riprap resilience report ===" in quick.report
    assert f"({quick.health['status'].upper()})" in quick.report
    for name in ("agent_api", "database", "external_api", "agent_commands"):
        assert name in quick.report


def test_the_incidents_happen_on_schedule(quick: DemoResult) -> None:
    d = quick.config.duration
    events = {text: at for at, text in quick.events}
    assert (
        events["agent API: outage begins (connections refused)"] == fleet.OUTAGE[0] * d
    )
    assert events["agent API: back up"] == fleet.OUTAGE[1] * d
    assert events["database: failover begins (connections refused)"] == (
        fleet.FAILOVER[0] * d
    )
    assert quick.stats["chaos"]["agent_api outage"]["faults"] > 0
    assert quick.stats["chaos"]["database failover"]["faults"] > 0
    assert d <= quick.simulated < d + 10  # the calls in flight at the end finish


def test_the_pipelines_are_in_an_order_that_does_not_bite(tmp_path: Path) -> None:
    f = fleet.Fleet(
        agents=3,
        duration=20.0,
        failure_rate=0.1,
        seed=1,
        clock=simtime.SimClock(),
        queue=riprap.DeadLetterQueue(tmp_path / "dlq.sqlite3"),
        on_event=lambda at, text: None,
    )
    for name, pipeline in f.pipelines.items():
        assert pipeline.warnings() == [], name


# --- the dead-letter queue ------------------------------------------------------------------


def test_the_printed_replay_command_replays_every_dead_letter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dlq.sqlite3"
    result = simulate(small(path))
    assert result.dlq_entries > 0
    program, command = result.replay_command.split(" dlq replay ")
    assert shlex.split(command) == ["--db", str(path)]
    assert (
        program == f"{shlex.quote(sys.executable)} -m riprap"
    )  # how pytest was started
    assert main(["dlq", "replay", *shlex.split(command)]) == 0
    assert f"{result.dlq_entries} succeeded" in capsys.readouterr().out
    assert riprap.DeadLetterQueue(path).count() == 0


def test_a_queue_that_already_holds_entries_counts_this_runs_apart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dlq.sqlite3"
    first = simulate(small(path))
    second = simulate(small(path))
    assert second.stats["dead_letters"] == first.stats["dead_letters"]
    assert second.dlq_entries == 2 * first.dlq_entries


def test_the_default_queue_is_in_a_new_temporary_directory() -> None:
    first = simulate(dataclasses.replace(SMALL, duration=10.0))
    second = simulate(dataclasses.replace(SMALL, duration=10.0))
    folders = [os.path.dirname(r.dlq_path) for r in (first, second)]
    try:
        assert folders[0] != folders[1]
        for result, folder in zip((first, second), folders, strict=True):
            assert os.path.basename(result.dlq_path) == "riprap-dlq.sqlite3"
            assert os.path.basename(folder).startswith("riprap-demo-")
            queue = riprap.DeadLetterQueue(result.dlq_path)
            assert queue.count() == result.dlq_entries
            queue.close()
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


# --- what it prints --------------------------------------------------------------------------


def test_piped_output_is_plain_lines(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run(small(tmp_path / "dlq.sqlite3"), out=out) == 0
    text = out.getvalue()
    assert "\r" not in text
    assert len(re.findall(r"^ +[0-9.]+s +\d+% done: ", text, re.M)) == 10
    assert re.search(r"breaker agent_api: closed -> open", text)
    for section in (
        "each call goes through a riprap.Pipeline",
        "what the policies did:",
        "statistics per primitive",
        "=== riprap resilience report ===",
        "dead-letter queue:",
    ):
        assert section in text, section
    assert f"dlq replay --db {tmp_path / 'dlq.sqlite3'}" in text


def test_a_terminal_gets_a_bar_redrawn_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    assert run(small(tmp_path / "dlq.sqlite3"), out=out, tty=True) == 0
    text = out.getvalue()
    bars = [seg.split("\n")[0] for seg in text.split("\r") if seg.startswith("[")]
    assert len(bars) >= 100
    assert bars[-1].startswith("[############] 100%")
    # Never as wide as the terminal: a wrapped line cannot be redrawn with `\r`.
    assert max(len(bar) for bar in bars) <= 79
    # Events are printed over the bar, on lines of their own.
    assert re.search(
        r"\r +8\.0s  agent API: outage begins \(connections refused\) *\n", text
    )


def test_the_run_is_the_same_whatever_it_prints_to(tmp_path: Path) -> None:
    # The display is called at the same moments in every mode, so it cannot change the run.
    runs = [
        simulate(small(tmp_path / f"{n}.sqlite3"), display)
        for n, display in enumerate(
            (
                Display(io.StringIO(), tty=True),
                Display(io.StringIO(), tty=False),
                _Quiet(io.StringIO(), tty=False),
            )
        )
    ]
    assert runs[0].statistics() == runs[1].statistics() == runs[2].statistics()


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--duration", "0"),
        ("--duration", "5"),
        ("--duration", "4000"),
        ("--duration", "nan"),
        ("--duration", "ten"),
        ("--agents", "0"),
        ("--agents", "2.5"),
        ("--agents", "501"),
        ("--failure-rate", "1.5"),
        ("--failure-rate", "-0.1"),
        ("--failure-rate", "inf"),
        ("--seed", "x"),
        ("--dlq", "/no/such/directory/dlq.sqlite3"),
    ],
)
def test_a_bad_option_exits_2_naming_it(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"riprap demo: error: argument {option}: " in err
    assert value in err


def test_a_directory_is_not_a_queue_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--dlq", str(tmp_path)])
    assert exc.value.code == 2
    assert "argument --dlq: " in capsys.readouterr().err


def test_the_command_exits_2_on_a_bad_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "riprap", "demo", "--agents", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "argument --agents: must be a whole number from 1 to 500, got '0'" in (
        proc.stderr
    )


def test_quick_is_short_unless_a_duration_is_given() -> None:
    parse = _parser().parse_args
    assert options.config_from(parse(["demo"])).duration == options.DURATION
    assert options.config_from(parse(["demo", "--quick"])).duration == (
        options.QUICK_DURATION
    )
    quick = options.config_from(parse(["demo", "--quick", "--duration", "15"]))
    assert quick.duration == 15.0
    full = options.config_from(
        parse(["demo", "--agents", "3", "--failure-rate", "0.25", "--seed", "-4"])
    )
    assert (full.agents, full.failure_rate, full.seed) == (3, 0.25, -4)


def test_demo_help_lists_its_options() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "riprap", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in (
        "--duration",
        "--agents",
        "--failure-rate",
        "--seed",
        "--quick",
        "--dlq",
    ):
        assert option in proc.stdout


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("duration", 9.0, ValueError),
        ("duration", float("inf"), ValueError),
        ("agents", 0, ValueError),
        ("agents", True, TypeError),
        ("agents", 2.0, TypeError),
        ("failure_rate", 1.01, ValueError),
        ("failure_rate", "high", ValueError),
        ("seed", 1.5, TypeError),
        ("pace", 0.0, ValueError),
    ],
)
def test_a_bad_config_names_its_field(
    field: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(
        error, match=rf"^{field} must be .*got {re.escape(repr(value))}"
    ):
        DemoConfig(**{field: value})  # type: ignore[arg-type]


# --- simulated time ------------------------------------------------------------------------


def test_simulated_waits_overlap_like_real_ones() -> None:
    clock = simtime.SimClock()
    done: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.asleep(seconds)
        done.append((name, clock.now()))

    async def both() -> None:
        await asyncio.gather(sleeper("a", 30.0), sleeper("b", 20.0))

    started = time.perf_counter()
    simtime.run(both(), clock)
    assert done == [("b", 20.0), ("a", 30.0)]  # side by side: 30 s in all, not 50
    assert time.perf_counter() - started < 5.0  # and nothing slept for real


def test_limiter_waits_run_in_simulated_time() -> None:
    clock = simtime.SimClock()
    limiter = riprap.RateLimiter(rate=2.0, burst=1, clock=clock)
    times: list[float] = []

    async def take() -> None:
        await limiter.acquire_async()
        times.append(clock.now())

    async def four() -> None:
        await asyncio.gather(*(take() for _ in range(4)))

    simtime.run(four(), clock)
    assert times == [0.0, 0.5, 1.0, 1.5]


def test_work_handed_to_a_thread_runs_at_once_on_the_loop() -> None:
    clock = simtime.SimClock()
    threads: list[int] = []

    def work(x: int) -> int:
        threads.append(threading.get_ident())
        if x < 0:
            raise ValueError(x)
        return x * 2

    async def hand_over() -> int:
        with pytest.raises(ValueError):
            await asyncio.to_thread(work, -1)
        return await asyncio.to_thread(work, 21)

    assert simtime.run(hand_over(), clock) == 42
    assert threads == [threading.get_ident()] * 2
    assert clock.now() == 0.0


def test_a_simulation_where_nothing_can_happen_fails_instead_of_hanging() -> None:
    clock = simtime.SimClock()

    async def forever() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(RuntimeError, match="the simulation stalled"):
        simtime.run(forever(), clock)


# --- riprap serve --demo --------------------------------------------------------------------


def test_serve_runs_the_demo_workload_in_real_time_until_stopped() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=serve._demo_forever, args=(stop,), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        names: set[str] = set()
        while time.monotonic() < deadline and "agent_api" not in names:
            names = {label for label, _ in _registry.live(_registry.BREAKER)}
            time.sleep(0.01)
        assert "agent_api" in names  # the dashboard sees the fleet's primitives
    finally:
        stop.set()
        worker.join(15)
    assert not worker.is_alive()
