"""Retry counters: every form of retry counts attempts and outcomes the same way, per operation.

These are the numbers behind `retry_attempts_total`, `retry_success_total`,
`retry_failures_total` and `retry_duration_seconds`, and the monitor's retry health.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import riprap
from riprap import _registry
from riprap._decorate import name_of
from riprap.testing import ManualClock

POLICY = riprap.RetryPolicy(max_attempts=3, base_delay=0.5, jitter=False)


def counts(func: Callable[..., Any]) -> dict[str, Any]:
    snap = dict(_registry.retry_counters(name_of(func)).snapshot())
    snap["attempts"] = snap["attempts"][:4]
    return snap


class Flaky:
    """Fails `fail` times (with `error`), then returns 1; `fail` can be reset between calls."""

    def __init__(
        self, clock: ManualClock, fail: int, error: type[Exception] = ConnectionError
    ):
        self.clock, self.fail, self.error = clock, fail, error

    def step(self) -> int:
        self.clock.advance(0.01)  # each attempt takes 10 ms
        if self.fail:
            self.fail -= 1
            raise self.error("reset")
        return 1


def test_sync_calls_are_counted(clock: ManualClock) -> None:
    flaky = Flaky(clock, 0)

    @riprap.retry(POLICY, clock=clock)
    def call() -> int:
        return flaky.step()

    call()
    flaky.fail = 2
    call()
    flaky.fail = 5
    with pytest.raises(ConnectionError):
        call()
    c = counts(call)
    assert c["attempts"] == [3, 2, 2, 0]
    assert (c["successes"], c["failures"]) == (2, 1)
    assert (c["count"], c["buckets"], c["sum"]) == (0, [0] * 15, 0.0)  # timing is off


def test_the_duration_histogram_counts_sleeps_when_timing_is_on(
    clock: ManualClock,
) -> None:
    _registry.set_retry_timing(True)
    flaky = Flaky(clock, 0)

    @riprap.retry(POLICY, clock=clock)
    def call() -> int:
        return flaky.step()

    call()  # 10 ms
    flaky.fail = 1
    call()  # 10 ms, 0.5 s asleep, 10 ms
    flaky.fail = 3
    with pytest.raises(ConnectionError):
        call()  # 3 x 10 ms + 0.5 + 1.0 s asleep
    c = counts(call)
    assert c["count"] == 3
    assert c["sum"] == pytest.approx(0.01 + 0.52 + 1.53)
    bounds = riprap._backend.core.RetryCounters.duration_bounds
    assert c["buckets"][bounds.index(0.01)] == 1
    assert c["buckets"][bounds.index(0.75)] == 1
    assert c["buckets"][bounds.index(2.5)] == 1
    assert sum(c["buckets"]) == 3


def test_timing_can_be_switched_off_again(clock: ManualClock) -> None:
    @riprap.retry(POLICY, clock=clock)
    def call() -> int:
        return 1

    _registry.set_retry_timing(True)
    call()
    _registry.set_retry_timing(False)
    call()
    c = counts(call)
    assert (c["successes"], c["count"]) == (2, 1)


def run_async(
    func: Callable[[], Awaitable[Any]],
    clock: ManualClock,
    expect: type[BaseException] | None,
) -> None:
    async def main() -> None:
        if expect is None:
            await func()
        else:
            with pytest.raises(expect):
                await func()

    asyncio.run(main())


@pytest.mark.parametrize("shape", ["native", "partial"])
def test_async_calls_are_counted(clock: ManualClock, shape: str) -> None:
    _registry.set_retry_timing(True)
    flaky = Flaky(clock, 0)

    async def step(_: object = None) -> int:
        return flaky.step()

    target: Any = step if shape == "native" else functools.partial(step, None)
    call = riprap.retry(POLICY, clock=clock)(target)
    run_async(call, clock, None)
    flaky.fail = 2
    run_async(call, clock, None)
    flaky.fail = 3
    run_async(call, clock, ConnectionError)
    c = counts(target)
    assert c["attempts"] == [3, 2, 2, 0]
    assert (c["successes"], c["failures"], c["count"]) == (2, 1, 3)
    assert c["sum"] == pytest.approx(0.01 + 1.53 + 1.53)


def test_code_blocks_are_counted(clock: ManualClock) -> None:
    flaky = Flaky(clock, 1)
    for attempt in POLICY.attempts(clock=clock):
        with attempt:
            flaky.step()
    c = dict(_registry.retry_counters("code block").snapshot())
    assert c["attempts"][:3] == [1, 1, 0]
    assert (c["successes"], c["failures"]) == (1, 0)


def test_retry_manager_calls_are_counted_under_their_operation_id(
    clock: ManualClock,
) -> None:
    manager = riprap.RetryManager(POLICY, clock=clock)
    flaky = Flaky(clock, 1)

    async def step() -> int:
        return flaky.step()

    asyncio.run(manager.retry_with_backoff(step, operation_id="fleet"))
    c = dict(_registry.retry_counters("fleet").snapshot())
    assert c["attempts"][:3] == [1, 1, 0]
    assert (c["successes"], c["failures"]) == (1, 0)


def test_not_retryable_and_rejected_results_are_failures(clock: ManualClock) -> None:
    flaky = Flaky(clock, 1, error=ValueError)

    @riprap.retry(POLICY, clock=clock)
    def call() -> int:
        return flaky.step()

    with pytest.raises(ValueError):
        call()

    @riprap.retry(POLICY, clock=clock, retry_on_result=lambda r: r is None)
    def empty() -> None:
        return None

    assert (
        empty() is None
    )  # attempts ran out: the last result is returned, as a failure
    assert counts(call)["attempts"][:2] == [1, 0]
    assert (counts(call)["successes"], counts(call)["failures"]) == (0, 1)
    assert counts(empty)["attempts"][:4] == [1, 1, 1, 0]
    assert (counts(empty)["successes"], counts(empty)["failures"]) == (0, 1)


def test_control_flow_exceptions_are_not_outcomes(clock: ManualClock) -> None:
    @riprap.retry(POLICY, clock=clock)
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    c = counts(interrupted)
    assert (sum(c["attempts"]), c["successes"], c["failures"]) == (0, 0, 0)


def test_functions_with_one_name_share_their_operation(clock: ManualClock) -> None:
    def make() -> Callable[[], int]:
        @riprap.retry(POLICY, clock=clock)
        def same() -> int:
            return 1

        return same

    first, second = make(), make()
    first()
    second()
    assert counts(first)["successes"] == 2
    assert [op for op, _ in _registry.retry_operations()] == [name_of(first)]


def test_a_policy_alone_counts_nothing() -> None:
    policy = riprap.RetryPolicy(max_attempts=2)
    assert policy.is_retryable(ConnectionError())
    assert _registry.retry_operations() == []


def test_operations_past_the_cap_share_the_overflow(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_registry, "MAX_OPERATIONS", 2)
    for i in range(4):
        _registry.retry_counters(f"op{i}").succeeded(1)
    ops = {op: c.snapshot()["successes"] for op, c in _registry.retry_operations()}
    assert ops == {"op0": 1, "op1": 1, _registry.OVERFLOW: 2}


# --- differential: the Rust counters and their reference twin --------------------------------

events = st.lists(
    st.one_of(
        st.tuples(st.just("failed_attempt"), st.integers(0, 30)),
        st.tuples(
            st.just("succeeded"),
            st.integers(0, 30),
            st.none() | st.floats(-1, 20, allow_nan=False) | st.just(float("nan")),
        ),
        st.tuples(
            st.just("gave_up"),
            st.none() | st.floats(-1, 1e6) | st.just(float("inf")),
        ),
    ),
    max_size=60,
)


@pytest.mark.skipif(
    riprap.backend() != "rust",
    reason="drives both cores directly; runs once, in the rust pass",
)
@given(events)
def test_differential_counters(seq: list[tuple[Any, ...]]) -> None:
    from riprap import _core, _reference

    rust, ref = _core.RetryCounters(), _reference.RetryCounters()
    assert rust.duration_bounds == ref.duration_bounds
    for event in seq:
        for c in (rust, ref):
            getattr(c, event[0])(*event[1:])
        assert rust.snapshot() == ref.snapshot(), event


def test_counters_snapshot_is_a_valid_histogram() -> None:
    rng = random.Random(3)
    c = riprap._backend.core.RetryCounters()
    for _ in range(500):
        c.succeeded(rng.randint(1, 4), rng.expovariate(2.0))
    snap = c.snapshot()
    assert snap["count"] == sum(snap["buckets"]) == snap["successes"] == 500


def test_a_forked_child_starts_from_zero() -> None:
    import os

    counters = _registry.retry_counters("forked")
    counters.succeeded(1)
    counters.set_timing(True)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        snap = counters.snapshot()
        ok = snap["successes"] == 0 and snap["attempts"][0] == 0 and counters.timing
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.close(read)
    os.waitpid(pid, 0)
    assert counters.snapshot()["successes"] == 1  # the parent keeps its own
