"""Bugs peer retry libraries shipped, turned into regression tests, on the active backend.

Each `test_reg_R<n>` cites the issue it reproduces.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
from helpers import halfway, run_threads

import riprap
from riprap import RetryPolicy
from riprap.testing import ManualClock

FAST = {"base_delay": 0.1, "jitter": False}


def test_reg_R1_outer_cancel_is_one_attempt_even_with_base_exception_retryable() -> (
    None
):
    # jd/tenacity#529: retry_if_not_exception_type retried CancelledError.
    calls = 0

    @riprap.retry(
        max_attempts=5, base_delay=10.0, retryable_exceptions=(BaseException,)
    )
    async def op() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(op())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == 1


def test_reg_R2_cancel_during_the_retry_sleep_ends_the_task_promptly() -> None:
    # jd/tenacity#186: the cancelled task kept running.
    calls = 0

    @riprap.retry(max_attempts=5, base_delay=10.0)
    async def op() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async def cancel_after_20ms(work: Callable[[], Awaitable[object]]) -> float:
        task = asyncio.create_task(work())
        await asyncio.sleep(0.02)  # op: now inside the 10 s backoff
        t0 = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - t0

    async def main() -> tuple[float, float]:
        # The baseline: cancelling a plain 10 s sleep, timed in the same run.
        return (
            await cancel_after_20ms(lambda: asyncio.sleep(10.0)),
            await cancel_after_20ms(op),
        )

    baseline, elapsed = asyncio.run(main())
    assert elapsed < halfway(baseline, 10.0), (elapsed, baseline)
    assert calls == 1


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_reg_R3_control_flow_is_never_swallowed(
    clock: ManualClock, exc_type: type[BaseException]
) -> None:
    # Llucs/backon#31: give-up handling returned None on these.
    calls = 0

    @riprap.retry(max_attempts=3, retryable_exceptions=(BaseException,), clock=clock)
    def op() -> str:
        nonlocal calls
        calls += 1
        raise exc_type

    with pytest.raises(exc_type):
        op()
    assert calls == 1
    manager = riprap.RetryManager(clock=clock)

    async def aop() -> None:
        raise exc_type

    with pytest.raises(exc_type):
        asyncio.run(manager.retry_with_backoff(aop, operation_id="x"))
    assert manager.get_retry_statistics("x")["total_calls"] == 0


@pytest.mark.parametrize("n", [1025, 10**6, 2**63])
def test_reg_R4_multiplier_zero_and_huge_attempts(n: int) -> None:
    # jd/tenacity#710: OverflowError at attempt 1025 was caught and max returned.
    assert RetryPolicy(base_delay=0.0, jitter=False).compute_delay(n) == 0.0
    assert RetryPolicy(jitter=False).compute_delay(n) == 60.0


def test_reg_R5_non_decreasing_without_jitter_and_bounded_with_it() -> None:
    # hynek/stamina#104: 2.0**1024 raised before min(cap, ...).
    p = RetryPolicy(jitter=False, base_delay=0.001, max_delay=3600.0)
    delays = [p.compute_delay(n) for n in [*range(1, 2000), 2**40, 2**64]]
    assert delays == sorted(delays)
    assert max(delays) == 3600.0
    j = RetryPolicy(base_delay=0.001, max_delay=3600.0, jitter_range=0.5)
    assert all(j.compute_delay(n) <= 5400.0 for n in range(1, 3000))


def test_reg_R6_huge_attempts_are_constant_time() -> None:
    # jd/tenacity#526: each retry past the cap built a growing big integer 2**n. Compared, in
    # the same run, with attempt 2 (the baseline) and with building 2**n once (the bug).
    p = RetryPolicy()
    n = 10**7

    def per_call(attempt: int) -> float:
        t0 = time.perf_counter()
        for _ in range(200):
            p.compute_delay(attempt)
        return (time.perf_counter() - t0) / 200

    baseline = min(per_call(2) for _ in range(5))
    huge = min(per_call(n) for _ in range(5))
    t0 = time.perf_counter()
    assert pow(2, n) > 0
    bigint = time.perf_counter() - t0
    assert huge < halfway(baseline, bigint), (huge, baseline, bigint)


def test_reg_R7_a_slow_call_past_the_deadline_is_not_retried(
    clock: ManualClock,
) -> None:
    # litl/backoff#186: max_time was read before the call.
    calls = 0

    @riprap.retry(max_attempts=5, deadline=1.0, clock=clock, **FAST)
    def op() -> None:
        nonlocal calls
        calls += 1
        clock.advance(2.0)
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        op()
    assert calls == 1


def test_reg_R8_no_sleep_or_attempt_past_the_deadline(clock: ManualClock) -> None:
    # jd/tenacity#423: the stop check ran after sleeping, overrunning by a whole wait.
    starts: list[float] = []

    @riprap.retry(
        max_attempts=50, base_delay=0.3, jitter=True, seed=1, deadline=5.0, clock=clock
    )
    def op() -> None:
        starts.append(clock.now())
        clock.advance(0.05)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        op()
    assert starts[-1] <= 5.0
    assert clock.now() <= 5.0 + 0.05


def test_reg_R9_statistics_are_exact_under_threads_and_recursion() -> None:
    # jd/tenacity#701: one shared statistics dict, cleared by concurrent calls.
    clock = ManualClock()
    manager = riprap.RetryManager(RetryPolicy(base_delay=0.0), clock=clock)
    local = threading.local()

    async def op() -> int:
        local.n = getattr(local, "n", 0) + 1
        if local.n % 2:
            raise ConnectionError("every other attempt")
        return 1

    def worker() -> None:
        async def many() -> None:
            for _ in range(100):
                await manager.retry_with_backoff(op, operation_id="op")

        asyncio.run(many())

    run_threads(16, lambda i: worker())
    stats = manager.get_retry_statistics("op")
    assert stats["total_calls"] == 1600
    assert stats["total_attempts"] == 3200
    assert stats["success_rate"] == 1.0


def test_reg_R10_a_code_block_resumed_on_another_thread(clock: ManualClock) -> None:
    # jd/tenacity#700: begin() on thread A then iter() on thread B raised KeyError.
    it = iter(RetryPolicy(max_attempts=3, **FAST).attempts(clock=clock))  # type: ignore[arg-type]
    first = next(it)
    with first:
        raise ConnectionError("on thread A")
    box: dict[str, object] = {}

    def on_b() -> None:
        second = next(it)
        with second:
            box["number"] = second.number

    t = threading.Thread(target=on_b)
    t.start()
    t.join(timeout=10)
    assert box == {"number": 2}
    with pytest.raises(StopIteration):
        next(it)


def test_reg_R11_generators_are_refused_at_decoration() -> None:
    # jd/tenacity#64: decorating a generator only wrapped its creation.
    def gen() -> object:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        riprap.retry(gen)


def test_reg_R12_async_retry_waits_do_not_block_the_loop() -> None:
    # microsoft/kiota-python#505: time.sleep inside an async retry path.
    attempts = 0

    @riprap.retry(max_attempts=2, base_delay=0.6, jitter=False)
    async def op() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("first")
        return "ok"

    async def worst_lag(work: Callable[[], Awaitable[object]]) -> float:
        worst = 0.0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst
            while not stop.is_set():
                t0 = time.perf_counter()
                await asyncio.sleep(0.001)
                worst = max(worst, time.perf_counter() - t0 - 0.001)

        tick = asyncio.create_task(ticker())
        await work()
        stop.set()
        await tick
        return worst

    async def main() -> tuple[float, float]:
        # The baseline: the ticker's worst lag around a plain 0.6 s asyncio.sleep.
        return await worst_lag(lambda: asyncio.sleep(0.6)), await worst_lag(op)

    baseline, lag = asyncio.run(main())
    assert attempts == 2
    # A blocking sleep would stall the loop for the whole 0.6 s backoff.
    assert lag < halfway(baseline, 0.6), (lag, baseline)


def test_reg_R13_reported_delay_is_the_delay_slept(clock: ManualClock) -> None:
    # hynek/stamina#72: the reported wait was not the wait used.
    reported: list[float] = []
    starts: list[float] = []

    @riprap.retry(
        max_attempts=5,
        backoff_strategy="decorrelated",
        seed=9,
        clock=clock,
        on_retry=lambda a, e, d: reported.append(d),
    )
    def op() -> None:
        starts.append(clock.now())
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        op()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx(reported, abs=2e-9)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_interrupts_a_blocking_retry_sleep_promptly() -> None:
    # Ctrl-C during a wait: the native wait sleeps in slices with the GIL released and checks for
    # signals.
    @riprap.retry(max_attempts=2, base_delay=5.0, jitter=False)
    def op() -> None:
        raise ConnectionError("down")

    main = threading.get_ident()

    def interrupted(work: Callable[[], object]) -> float:
        def fire() -> None:
            time.sleep(0.05)
            signal.pthread_kill(
                main, signal.SIGINT
            )  # to the main thread, which handles it

        t = threading.Thread(target=fire)
        t.start()
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            work()
        elapsed = time.perf_counter() - t0
        t.join()
        return elapsed

    # The baseline: the same Ctrl-C during a plain time.sleep(5), timed in the same run.
    baseline = interrupted(lambda: time.sleep(5.0))
    elapsed = interrupted(op)
    # A wait that ignored signals would sleep the whole 5 s backoff.
    assert elapsed < halfway(baseline, 5.0), (elapsed, baseline)
