"""RateLimiter: decisions, waits, validation, decorators, context managers.

Runs on the active backend (`make test` runs it on both). Tests named `test_reg_<id>` guard
against a bug or weakness a peer library shipped (comments cite the issue); async cancellation
and real-time audits live in test_limiter_async.py and test_limiter_concurrency.py.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import signal
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import pytest
from helpers import halfway, os_threads, rss_growth, run_threads

import riprap
from riprap import RateLimiter, RateLimitExceeded
from riprap._backend import core
from riprap.testing import ManualClock

NS = 10**9


def drain(limiter: RateLimiter) -> None:
    """Empty the bucket (at the clock's current time)."""
    while limiter.try_acquire():
        pass


# --- the bucket ---------------------------------------------------------------------------------


def test_starts_full_then_refills_at_the_rate(clock: ManualClock) -> None:
    lim = RateLimiter(10, 3, clock=clock)
    assert [lim.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.099)
    assert not lim.try_acquire()
    clock.advance(0.001)
    assert lim.try_acquire()
    assert not lim.try_acquire()
    clock.advance(0.2)
    assert lim.try_acquire(2)
    assert lim.get_stats() == {
        "name": None,
        "rate": 10.0,
        "burst": 3.0,
        "admitted": 5,
        "rejected": 3,
        "waited": 0,
    }


def test_reg_L19_first_period_burst_is_the_documented_bound(clock: ManualClock) -> None:
    # boinkor-net/governor#219: the bucket starts full, so admitted(w) <= burst + rate x w, with
    # equality possible.
    lim = RateLimiter(5, 4, clock=clock)
    admitted = 0
    for step in range(2001):  # [0 s, 2 s] in 1 ms steps, asking as fast as possible
        if step:
            clock.advance(0.001)
        while lim.try_acquire():
            admitted += 1
    assert clock.now_ns() == 2 * NS
    assert admitted == 4 + 5 * 2  # exactly burst + rate x 2 s: the bound is tight
    assert lim.get_stats()["admitted"] == admitted


def test_default_burst_is_max_one_rate(clock: ManualClock) -> None:
    # rate=0.5 gives a bucket of one token, refilled every 2 s.
    slow = RateLimiter(0.5, clock=clock)
    assert slow.burst == 1.0
    assert slow.try_acquire()
    assert not slow.try_acquire()
    clock.advance(1.999999999)
    assert not slow.try_acquire()
    clock.advance(0.000000001)
    assert slow.try_acquire()
    fast = RateLimiter(2.5, clock=clock)
    assert fast.burst == 2.5
    assert [fast.try_acquire() for _ in range(3)] == [True, True, False]
    assert fast.try_acquire(2) is False
    with pytest.raises(ValueError, match=r"n must be <= burst \(2.5\), got 3"):
        fast.try_acquire(3)


def test_n_token_requests_and_exact_retry_after(clock: ManualClock) -> None:
    lim = RateLimiter(
        3, 3, name="api", clock=clock
    )  # interval 333,333,334 ns (rounded up)
    assert lim.try_acquire(3)
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire(2, timeout=0)
    assert info.value.name == "api"
    assert info.value.retry_after == 666_666_668 / 1e9
    clock.advance(0.666666667)
    assert not lim.try_acquire(2)
    clock.advance(0.000000001)
    assert lim.try_acquire(2)


def test_acquire_blocks_on_the_clock_and_refuses_long_waits_at_once(
    clock: ManualClock,
) -> None:
    lim = RateLimiter(4, 1, clock=clock)
    assert lim.try_acquire()
    lim.acquire()  # waits 0.25 s on the manual clock
    assert clock.now() == 0.25
    lim.acquire(timeout=0.25)
    assert clock.now() == 0.5
    before = clock.now_ns()
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire(timeout=0.2)
    assert clock.now_ns() == before  # refused at once, nothing slept ...
    assert info.value.retry_after == 0.25
    assert lim.try_acquire() is False
    clock.advance(0.25)
    assert lim.try_acquire()  # ... and nothing reserved
    s = lim.get_stats()
    assert (s["admitted"], s["rejected"], s["waited"]) == (4, 2, 2)


def test_reg_L2_try_acquire_never_takes_a_queued_waiters_token(
    clock: ManualClock,
) -> None:
    # anyio#1170: a no-wait acquire took the token earmarked for a woken waiter.
    lim = RateLimiter(1, 1, clock=clock)
    assert lim.try_acquire()
    ticket = lim._reserve(1, None)  # an async waiter queued for t = 1 s
    assert ticket
    clock.advance(1.0)
    assert lim._remaining(ticket) == 0.0
    assert not lim.try_acquire()  # the token at 1 s is the waiter's
    lim._complete(ticket)
    clock.advance(1.0)
    assert lim.try_acquire()


def test_a_cancel_cannot_give_back_once_a_later_request_went_through(
    clock: ManualClock,
) -> None:
    # Giving a reservation back rewrites history; once a later request was admitted that could
    # exceed the bound, so the tokens count as spent.
    lim = RateLimiter(1, 2, clock=clock)
    assert lim.try_acquire(2)
    first = lim._reserve(1, None)  # slot at 1 s
    clock.set(2.0)  # its slot came and went; the waiter has not run yet
    assert lim.try_acquire()  # an immediate admission slips in at 2 s
    second = lim._reserve(1, None)  # queued behind it: slot at 3 s
    assert first
    assert second
    assert lim._remaining(second) == 1.0
    lim._cancel(first)
    assert lim._remaining(second) == 1.0  # nobody moved up ...
    assert not lim.try_acquire()  # ... and no third token at 2 s (burst is 2)
    # Before its slot, though, a cancel always gives back and moves the queue up.
    third = lim._reserve(1, None)  # slot at 4 s
    lim._cancel(second)
    assert lim._remaining(third) == 1.0


def test_reg_L6_n_above_burst_or_not_whole_is_refused_at_once(
    clock: ManualClock,
) -> None:
    # limits#151: a cost above the limit read past the window and was allowed.
    lim = RateLimiter(10, 5, clock=clock)
    for call in (lim.try_acquire, lim.acquire):
        with pytest.raises(ValueError, match=r"n must be <= burst \(5.0\), got 6"):
            call(6)
        with pytest.raises(ValueError, match="n must be >= 1, got 0"):
            call(0)
        with pytest.raises(ValueError, match="n must be >= 1, got -2"):
            call(-2)
        with pytest.raises(
            ValueError, match=r"whole number of tokens \(an int\), got nan"
        ):
            call(math.nan)
        with pytest.raises(ValueError, match=r"got 1.5"):
            call(1.5)
        with pytest.raises(TypeError, match="n must be an int, got bool"):
            call(True)
        with pytest.raises(TypeError, match="n must be an int, got str"):
            call("1")
    with pytest.raises(
        ValueError, match=r"n must be <= burst \(5.0\), got 1" + "0" * 30
    ):
        lim.try_acquire(10**30)
    assert lim.get_stats()["admitted"] == 0
    assert clock.now() == 0.0

    async def main() -> None:
        with pytest.raises(ValueError, match="n must be <= burst"):
            await lim.acquire_async(6)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"rate": 0}, ValueError, "rate must be > 0.0, got 0.0"),
        ({"rate": -1.0}, ValueError, "rate must be > 0.0, got -1.0"),
        ({"rate": math.nan}, ValueError, "rate must be a finite number, got nan"),
        ({"rate": math.inf}, ValueError, "rate must be a finite number, got inf"),
        ({"rate": True}, TypeError, "rate must be a number, got bool"),
        ({"rate": "10"}, TypeError, "rate must be a number, got str"),
        ({"rate": 10, "burst": 0.5}, ValueError, "burst must be >= 1.0, got 0.5"),
        ({"rate": 10, "burst": math.nan}, ValueError, "burst must be a finite number"),
        ({"rate": 10, "name": 3}, TypeError, "name must be a str or None, got int"),
        (
            {"rate": 10, "on_limit": "block"},
            ValueError,
            "on_limit must be one of 'wait', 'raise', got 'block'",
        ),
        ({"rate": 10, "on_limit": 3}, TypeError, "on_limit must be a str, got int"),
        (
            {"rate": 10, "clock": time},
            TypeError,
            "clock must be a riprap.testing.ManualClock",
        ),
        ({"rate": 3e6}, ValueError, "rate 3000000.0 is not representable"),
        ({"rate": 1e12}, ValueError, "rate 1000000000000.0 is not representable"),
        ({"rate": 1e-11}, ValueError, "rate 1e-11 is too small"),
        ({"rate": 1e-6, "burst": 1e9}, ValueError, "burst / rate must be at most"),
        (
            {"rate": 1e9, "burst": 1.5},
            ValueError,
            "burst 1.5 is not representable at rate",
        ),
    ],
)
def test_invalid_configuration_names_the_field(
    kwargs: dict[str, object], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc, match=message.replace("(", r"\(").replace(")", r"\)")):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


def test_the_core_refuses_storage_and_points_to_the_public_class() -> None:
    # Shared state is the public class's job (tests/redis); the core is in-process only.
    with pytest.raises(NotImplementedError, match=r"use riprap\.RateLimiter\("):
        core.RateLimiter(10, storage="redis://localhost:6379/0")


def test_timeout_validation(clock: ManualClock) -> None:
    lim = RateLimiter(1, clock=clock)
    for bad, msg in [
        (-1.0, "timeout must be >= 0.0, got -1.0"),
        (math.nan, "timeout must be a finite number, got nan"),
        (math.inf, "timeout must be a finite number, got inf"),
    ]:
        with pytest.raises(ValueError, match=msg):
            lim.acquire(timeout=bad)
    with pytest.raises(TypeError, match="timeout must be a number, got bool"):
        lim.acquire(timeout=True)


def test_reg_L15_rates_from_1e_minus_9_to_1e12_build_exactly_or_refuse() -> None:
    # governor#203: a sub-ns interval, or one rounded to whole ms, became 0 and panicked.
    built = refused = 0
    for exponent in range(-9 * 4, 12 * 4 + 1):
        for mantissa in (1.0, 1.5, 3.0, 7.3):
            rate = mantissa * 10 ** (exponent / 4)
            if not 1e-9 <= rate <= 1e12:
                continue
            clock = ManualClock()
            try:
                lim = RateLimiter(rate, 1, clock=clock)
            except ValueError as e:
                reason = str(e)
            else:
                reason = ""
            if reason:
                refused += 1
                assert "not representable" in reason, (rate, reason)
                assert rate > 1e6, rate  # every rate up to 1e6/s works
                continue
            built += 1
            # The real interval: after the one token, the next comes exactly `retry_after` later.
            assert lim.try_acquire()
            with pytest.raises(RateLimitExceeded) as info:
                lim.acquire(timeout=0)
            real_rate = 1 / info.value.retry_after
            assert real_rate <= rate * (1 + 1e-12)  # never faster than asked
            assert real_rate >= rate * 0.999, (rate, real_rate)
    assert built > 100
    assert refused > 10


def test_reg_L13_clock_stepping_back_never_grants_extra(clock: ManualClock) -> None:
    # governor#299: a clock that is not monotonic across cores must not admit early.
    clock.set(100.0)
    lim = RateLimiter(1, 2, clock=clock)
    assert lim.try_acquire(2)
    clock.set(99.0)  # one second back
    assert not lim.try_acquire()
    clock.set(0.0)  # before the limiter even existed
    assert not lim.try_acquire()
    clock.set(100.999999999)
    assert not lim.try_acquire()
    clock.set(101.0)
    assert lim.try_acquire()
    assert lim.get_stats()["admitted"] == 2  # requests, not tokens


def test_reg_L14_an_enormous_clock_advance_saturates_without_panicking(
    clock: ManualClock,
) -> None:
    # commonwarexyz/monorepo#2487: a Duration over 584 years panicked on conversion.
    lim = RateLimiter(1, 1, clock=clock)
    assert lim.try_acquire()
    clock.advance(1e12)  # 30,000 years: the clock saturates at the end of u64 time
    assert clock.now_ns() == 2**64 - 1
    # At the end of time nothing more fits: refused (stricter), never a PanicException.
    assert lim.try_acquire() is False
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire()
    assert info.value.retry_after == (2**64 - 1) / 1e9
    # A limiter made near the end of time counts from its own start, so it still works.
    late = ManualClock(start=(2**64 - 2) / 1e9)
    fresh = RateLimiter(1, 1, clock=late)
    assert fresh.try_acquire()
    assert not fresh.try_acquire()


def test_reg_L5_a_gather_of_1000_acquires_on_4_per_day_admits_exactly_4(
    clock: ManualClock,
) -> None:
    # limits#277: the expiry cutoff computed outside the lock let `4/day` through.
    lim = RateLimiter(4 / 86400, 4, clock=clock)

    async def one() -> bool:
        try:
            await lim.acquire_async(timeout=0)
        except RateLimitExceeded:
            return False
        return True

    async def main() -> list[bool]:
        return await asyncio.gather(*(one() for _ in range(1000)))

    assert sum(asyncio.run(main())) == 4
    assert lim.get_stats()["rejected"] == 996


def test_reg_L9_no_threads_are_started() -> None:
    # vutran1710/PyrateLimiter#300: a background leaker thread raced the limiter's lock. Counted
    # by the kernel, so a native thread would show too.
    before = os_threads()
    clock = ManualClock()
    lim = RateLimiter(1000, 10, clock=clock)
    keyed = riprap.KeyedRateLimiter(5, max_keys=1000, idle_ttl=1.0, clock=clock)
    for i in range(100_000):
        lim.try_acquire()
        keyed.try_acquire(i)
        if i % 1000 == 0:
            clock.advance(0.5)
    lim.acquire()
    assert os_threads() - before == set()
    assert len(keyed) <= 1000


# --- on_limit, context managers, decorators ------------------------------------------------------


def test_with_block_waits_or_raises(clock: ManualClock) -> None:
    wait = RateLimiter(2, 1, clock=clock)
    with wait as entered:
        assert entered is wait
    with wait:
        pass
    assert clock.now() == 0.5
    fail = RateLimiter(2, 1, on_limit="raise", name="strict", clock=clock)
    with fail:
        pass
    with pytest.raises(RateLimitExceeded) as info, fail:
        pass
    assert (info.value.name, info.value.retry_after) == ("strict", 0.5)
    assert fail.on_limit == "raise"
    assert wait.on_limit == "wait"


def test_async_with_block_waits_or_raises(clock: ManualClock) -> None:
    wait = RateLimiter(2, 1, clock=clock)
    fail = RateLimiter(2, 1, on_limit="raise", clock=clock)

    async def main() -> None:
        async with wait as entered:
            assert entered is wait
        async with wait:
            assert clock.now() == 0.5
        async with fail:
            pass
        with pytest.raises(RateLimitExceeded):
            async with fail:
                pass

    asyncio.run(main())


def test_decorator_waits_and_keeps_the_functions_identity(clock: ManualClock) -> None:
    lim = RateLimiter(10, 2, clock=clock)
    times: list[float] = []

    @lim
    def ping(host: str, *, port: int = 80) -> str:
        """Ping a host."""
        times.append(clock.now())
        return f"{host}:{port}"

    assert [ping("a"), ping("b", port=81), ping("c")] == ["a:80", "b:81", "c:80"]
    assert times == [0.0, 0.0, 0.1]
    assert ping.__name__ == "ping"
    assert ping.__doc__ == "Ping a host."
    assert ping.__wrapped__ is not None
    assert inspect.signature(ping) == inspect.signature(ping.__wrapped__)
    assert list(inspect.signature(ping).parameters) == ["host", "port"]
    assert not inspect.iscoroutinefunction(ping)
    assert ping.limiter is lim  # type: ignore[attr-defined]


def test_decorator_raise_mode_gives_fresh_exceptions(clock: ManualClock) -> None:
    # A reused exception object (purgatory's) grows its traceback on every raise.
    lim = RateLimiter(1, 1, on_limit="raise", name="x", clock=clock)
    calls = 0

    @lim
    def work() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert work() == 1
    seen = []
    for _ in range(1000):
        with pytest.raises(RateLimitExceeded) as info:
            work()
        seen.append(info.value)
        depth = len(list(_walk(info.value.__traceback__)))
        assert depth <= 3
    assert len({id(e) for e in seen}) == len(seen)
    assert calls == 1
    assert lim.get_stats()["rejected"] == 1000


def _walk(tb: object) -> list[object]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next  # type: ignore[attr-defined]
    return out


def test_decorator_on_methods_static_and_class_methods(clock: ManualClock) -> None:
    lim = RateLimiter(100, 100, clock=clock)

    class Api:
        def __init__(self, base: str) -> None:
            self.base = base

        @lim
        def get(self, path: str) -> str:
            return self.base + path

        @lim
        @staticmethod
        def version() -> int:
            return 2

        @lim
        @classmethod
        def make(cls, base: str) -> Api:
            return cls(base)

    api = Api.make("http://x")
    assert api.get("/a") == "http://x/a"
    assert Api.get(api, "/b") == "http://x/b"
    assert Api.version() == api.version() == 2
    assert lim.get_stats()["admitted"] == 5


def test_decorator_on_async_functions(clock: ManualClock) -> None:
    lim = RateLimiter(4, 1, clock=clock)
    strict = RateLimiter(4, 1, on_limit="raise", clock=clock)

    @lim
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @strict
    async def fetch_or_fail(x: int) -> int:
        return x

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"

    async def main() -> None:
        assert [await fetch(i) for i in range(3)] == [0, 2, 4]
        assert clock.now() == 0.5
        assert await fetch_or_fail(1) == 1
        with pytest.raises(RateLimitExceeded):
            await fetch_or_fail(2)

    asyncio.run(main())


def test_decorator_refuses_generators_and_non_callables() -> None:
    lim = RateLimiter(1)

    def gen() -> object:
        yield 1

    async def agen() -> object:
        yield 1

    with pytest.raises(TypeError, match="generator function"):
        lim(gen)
    with pytest.raises(TypeError, match="generator function"):
        lim(agen)
    with pytest.raises(TypeError, match="needs a callable"):
        lim(3)  # type: ignore[arg-type]


def test_decorated_calls_pass_arguments_and_errors_through(clock: ManualClock) -> None:
    lim = RateLimiter(1000, 1000, clock=clock)
    assert lim(dict)(a=1, b=2) == {"a": 1, "b": 2}  # a builtin, keyword-only
    assert lim(functools.partial(pow, 2))(10) == 1024

    @lim
    def boom() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        boom()
    # A token taken is spent, whatever the call then does.
    assert lim.get_stats()["admitted"] == 3


@pytest.mark.parametrize(
    "exc", [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError]
)
def test_control_flow_exceptions_pass_through_untouched(
    clock: ManualClock, exc: type[BaseException]
) -> None:
    # A control-flow exception through the limiter: propagated unchanged; the token is spent (the
    # call started).
    lim = RateLimiter(1000, 1000, clock=clock)
    raised = exc()

    @lim
    def f() -> None:
        raise raised

    @lim
    async def af() -> None:
        raise raised

    with pytest.raises(exc) as info:
        f()
    assert info.value is raised

    async def main() -> None:
        with pytest.raises(exc) as ainfo:
            await af()
        assert ainfo.value is raised

    asyncio.run(main())
    assert lim.get_stats()["admitted"] == 2
    assert lim.get_stats()["rejected"] == 0


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_ctrl_c_during_a_blocking_wait_gives_the_reservation_back() -> None:
    # Ctrl-C during a blocking wait: KeyboardInterrupt soon after the signal, as promptly as a
    # plain time.sleep is interrupted (timed in the same run); the slot is given back.
    main = threading.get_ident()

    def interrupted(work: Callable[[], object]) -> float:
        timer = threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT))
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            work()
        elapsed = time.perf_counter() - t0
        timer.join()
        return elapsed

    baseline = interrupted(lambda: time.sleep(5.0))
    lim = RateLimiter(0.2, 1)  # real time: the next token is 5 s away
    start = time.perf_counter()
    assert lim.try_acquire()
    drained = time.perf_counter()  # the bucket emptied between `start` and `drained`
    elapsed = interrupted(lim.acquire)
    # A wait that did not check for signals would sleep to its slot, 5 s.
    assert 0.09 < elapsed < halfway(baseline, 5.0), (elapsed, baseline)
    # Given back: a timed acquire sees the original 5 s schedule, not 10 s.
    before = time.perf_counter()
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire(timeout=0)
    after = time.perf_counter()
    ra = info.value.retry_after
    assert 5.0 - (after - start) - 1e-3 <= ra <= 5.0 - (before - drained) + 1e-3, ra
    assert lim.get_stats()["waited"] == 0


def test_repr_and_properties(clock: ManualClock) -> None:
    lim = RateLimiter(2.5, name="db", clock=clock)
    assert repr(lim) == "RateLimiter(rate=2.5, burst=2.5, name='db')"
    assert (lim.name, lim.rate, lim.burst, lim.clock) == ("db", 2.5, 2.5, clock)
    assert RateLimiter(1).clock is None


def test_a_limiter_is_usable_from_many_threads_on_a_manual_clock() -> None:
    clock = ManualClock()
    lim = RateLimiter(100, 50, clock=clock)
    counts: list[int] = []

    def worker(i: int) -> None:
        counts.append(sum(lim.try_acquire() for _ in range(1000)))

    run_threads(8, worker)
    assert sum(counts) == 50  # the clock never moved: exactly one bucket's worth
    assert lim.get_stats()["rejected"] == 8000 - 50


def test_oracle_agrees_on_a_fixed_trace(clock: ManualClock) -> None:
    # A readable spot check of the Fraction oracle the property tests use.
    from limiter_helpers import Oracle

    oracle = Oracle(3.0, 2.0)
    lim = RateLimiter(3.0, 2.0, clock=clock)
    for step_ns, n in [
        (0, 1),
        (0, 1),
        (0, 1),
        (100_000_000, 1),
        (400_000_000, 2),
        (1, 1),
    ]:
        clock.advance(step_ns / NS)
        now = Fraction(clock.now_ns(), NS)
        assert lim.try_acquire(n) == oracle.take(now, n)


def test_reg_L7_a_large_cost_then_a_small_one_is_still_limited(
    clock: ManualClock,
) -> None:
    # limits#112: a large cost followed by a small one was not limited.
    lim = RateLimiter(1, 10, clock=clock)
    assert lim.try_acquire(10)
    assert not lim.try_acquire(1)
    clock.advance(0.999999999)
    assert not lim.try_acquire(1)
    clock.advance(0.000000001)
    assert lim.try_acquire(1)
    assert not lim.try_acquire(1)


def test_reg_L8_retry_after_counts_from_the_state_not_the_newest_request(
    clock: ManualClock,
) -> None:
    # limits#200: the reset time came from the newest entry, not the oldest. GCRA has one
    # state, so the wait for n tokens is exact whatever the history of requests was.
    lim = RateLimiter(4, 4, clock=clock)
    for step in (0.0, 0.1, 0.1, 0.05):
        clock.advance(step)
        assert lim.try_acquire()
    # Four taken by 0.25 s, one (0.25 s x 4/s) back: a request for two waits for one more.
    with pytest.raises(RateLimitExceeded) as info:
        lim.acquire(2, timeout=0)
    assert info.value.retry_after == 0.25
    clock.advance(0.249999999)
    assert not lim.try_acquire(2)
    clock.advance(0.000000001)
    assert lim.try_acquire(2)


def test_reg_X5_nothing_is_stored_per_admitted_call(clock: ManualClock) -> None:
    # PyrateLimiter keeps an item per admitted call; the limiter's memory must stay flat.
    # Resident memory counts what the Rust core allocates (tracemalloc would not).
    lim = RateLimiter(1e9, 1e9, clock=clock)
    keyed = riprap.KeyedRateLimiter(1e9, 1e9, clock=clock)

    def calls(n: int) -> None:
        for _ in range(n):
            lim.try_acquire()
            keyed.try_acquire("k")

    calls(20_000)  # warm up (first-call caches, allocator pools)
    grown = rss_growth(lambda: calls(200_000))
    # 400,000 admitted calls: keeping even 2 bytes per call would pass 512 KiB.
    assert grown < 512 * 1024, grown
    assert lim.get_stats()["admitted"] == 220_000
    assert keyed.get_stats()["admitted"] == 220_000
