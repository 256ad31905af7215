"""When riprap's own work on a user's exception fails, the user's exception is not lost.

Retry reads a failure's `status_code`/`status`, its message (`str()`), its `retry_after` and
headers, and calls `on_retry`; a breaker checks `isinstance` against `expected_exception`. Any of
these can run user code that raises. The new error must carry the user's exception as its
`__context__` (as the same code in an `except` block would), on both backends and through every
path: the native sync wrapper, the async wrapper, code blocks, `engine.decide` and the breaker's
`with`/decorator. A raising `retry_on_result` predicate has no user exception to keep: both
backends agree that its error has no context. The last part drives the Rust engines and their
pure-Python twins side by side (a differential test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import riprap
from riprap import _core, _reference
from riprap.testing import ManualClock


class Broken(Exception):
    """What riprap's own work raises when it touches a hostile exception."""


class RaisingStatus(Exception):
    """A failure whose `status_code` property raises."""

    @property
    def status_code(self) -> int:
        raise Broken("status_code exploded")


class RaisingStr(Exception):
    """A failure whose `__str__` raises (message patterns need it)."""

    def __str__(self) -> str:
        raise Broken("__str__ exploded")


class RaisingRetryAfter(ConnectionError):
    """A retryable failure whose `retry_after` property raises."""

    @property
    def retry_after(self) -> float:
        raise Broken("retry_after exploded")


class _Meta(type):
    def __instancecheck__(cls, instance: object) -> bool:
        raise Broken("__instancecheck__ exploded")


class Hostile(Exception, metaclass=_Meta):
    """An exception class whose isinstance check raises."""


CASES: dict[str, tuple[Callable[[], BaseException], dict[str, Any]]] = {
    "raising property": (lambda: RaisingStatus("down"), {}),
    "raising __str__": (lambda: RaisingStr(), {"retryable_status_codes": ()}),
    "raising retry_after": (lambda: RaisingRetryAfter("down"), {}),
    "raising __instancecheck__": (
        lambda: ValueError("down"),
        {"retryable_exceptions": (Hostile,)},
    ),
}


def _assert_chained(err: BaseException, user: list[BaseException]) -> None:
    assert isinstance(err, Broken)
    assert len(user) == 1
    assert err.__context__ is user[0]


@pytest.mark.parametrize("case", list(CASES))
def test_retry_classification_errors_keep_the_users_exception(
    case: str, clock: ManualClock
) -> None:
    make, fields = CASES[case]
    raised: list[BaseException] = []

    def fail() -> None:
        exc = make()
        raised.append(exc)
        raise exc

    policy = riprap.RetryPolicy(max_attempts=3, base_delay=0.0, **fields)
    with pytest.raises(Broken) as info:
        riprap.retry(policy, clock=clock)(fail)()
    _assert_chained(info.value, raised)

    async def afail() -> None:
        fail()

    raised.clear()
    with pytest.raises(Broken) as info:
        asyncio.run(riprap.retry(policy, clock=clock)(afail)())
    _assert_chained(info.value, raised)

    raised.clear()
    with pytest.raises(Broken) as info:
        _code_block(policy.attempts(clock=clock), fail)
    _assert_chained(info.value, raised)


def _code_block(attempts: Any, body: Callable[[], None]) -> None:
    for attempt in attempts:
        with attempt:
            body()


def test_a_raising_hook_keeps_the_users_exception(clock: ManualClock) -> None:
    def hook(attempt: int, exc: BaseException | None, delay: float) -> None:
        raise Broken("hook exploded")

    raised: list[BaseException] = []

    def fail() -> None:
        exc = ConnectionError("down")
        raised.append(exc)
        raise exc

    with pytest.raises(Broken) as info:
        riprap.retry(max_attempts=3, base_delay=0.0, clock=clock, on_retry=hook)(fail)()
    _assert_chained(info.value, raised)

    raised.clear()
    attempts = riprap.RetryPolicy(base_delay=0.0).attempts(clock=clock, on_retry=hook)
    with pytest.raises(Broken) as info:
        _code_block(attempts, fail)
    _assert_chained(info.value, raised)


def test_a_raising_result_predicate_has_no_users_exception_to_keep(
    clock: ManualClock,
) -> None:
    def predicate(result: object) -> bool:
        raise Broken("predicate exploded")

    decorated = riprap.retry(
        max_attempts=3, base_delay=0.0, retry_on_result=predicate, clock=clock
    )(lambda: 1)
    with pytest.raises(Broken) as info:
        decorated()
    assert info.value.__context__ is None


def test_breaker_classification_errors_keep_the_users_exception(
    clock: ManualClock,
) -> None:
    config = riprap.CircuitBreakerConfig(expected_exception=Hostile)
    breaker = riprap.CircuitBreaker("hostile", config, clock=clock)
    raised: list[BaseException] = []

    def fail() -> None:
        exc = ValueError("down")
        raised.append(exc)
        raise exc

    with pytest.raises(Broken) as info:
        breaker(fail)()
    _assert_chained(info.value, raised)

    raised.clear()
    with pytest.raises(Broken) as info, breaker:
        fail()
    _assert_chained(info.value, raised)

    async def afail() -> None:
        fail()

    raised.clear()
    with pytest.raises(Broken) as info:
        asyncio.run(breaker(afail)())
    _assert_chained(info.value, raised)
    # Permits stay balanced whatever the classification did: nothing is in flight.
    stats = breaker.get_stats()
    assert stats["half_open_calls"] == 0
    assert stats["state"] == "closed"


# --- differential: the Rust engines and their twins, side by side ----------------------------


def _retry_engine(core: Any, fields: dict[str, Any], **hooks: Any) -> Any:
    schedule = core.RetrySchedule(
        strategy="fixed",
        base_delay=0.0,
        max_delay=0.0,
        exponential_base=2.0,
        jitter=False,
        jitter_range=0.0,
        max_attempts=3,
        deadline=None,
        seed=1,
    )
    return core.RetryEngine(
        schedule,
        retryable_exceptions=fields.get(
            "retryable_exceptions", (ConnectionError, TimeoutError, OSError)
        ),
        status_codes=list(fields.get("retryable_status_codes", (503,))),
        patterns=["connection refused"],
        retry_on_result=hooks.get("retry_on_result"),
        respect_retry_after=True,
        budget=None,
        clock=core.ManualClock(),
        on_retry=hooks.get("on_retry"),
        name="diff",
    )


def _retry_case(core: Any, case: str) -> tuple[Any, Callable[[], object]]:
    """A retry engine of `core` and the function it runs, for one case."""

    def hook(*_: object) -> None:
        raise Broken("hook exploded")

    def predicate(result: object) -> bool:
        raise Broken("predicate exploded")

    if case in CASES:
        make, fields = CASES[case]

        def failing() -> object:
            raise make()

        return _retry_engine(core, fields), failing
    if case == "raising hook":

        def down() -> object:
            raise ConnectionError("down")

        return _retry_engine(core, {}, on_retry=hook), down
    calls = 0
    fail_first = case.endswith("after a failure")

    def result() -> object:
        nonlocal calls
        calls += 1
        if fail_first and calls == 1:
            raise ConnectionError("down")
        return "result"

    return _retry_engine(core, {}, retry_on_result=predicate), result


def _outcome(engine: Any, func: Callable[[], object]) -> tuple[object, ...]:
    """What a call through `engine` ended with, as comparable values."""
    try:
        return ("returned", engine.call(func))
    except BaseException as err:
        ctx = err.__context__
        return (
            type(err).__name__,
            str(err) if isinstance(err, Broken) else None,
            None if ctx is None else type(ctx).__name__,
        )


@pytest.mark.skipif(
    riprap.backend() != "rust",
    reason="drives both cores directly; runs once, in the rust pass",
)
@pytest.mark.parametrize(
    "case",
    [*CASES, "raising hook", "raising predicate", "raising predicate after a failure"],
)
def test_differential_rust_and_reference_chain_the_same(case: str) -> None:
    seen = [_outcome(*_retry_case(core, case)) for core in (_core, _reference)]
    assert seen[0] == seen[1]
    assert seen[0][0] == "Broken"

    # The breaker engines: a raising __instancecheck__ while settling a failure.
    seen = []
    for core in (_core, _reference):
        engine = core.BreakerEngine(
            "diff",
            core.BreakerConfig(
                failure_threshold=5,
                timeout=60.0,
                success_threshold=3,
                monitoring_window=300.0,
                failure_rate_threshold=0.5,
                minimum_calls=10,
                half_open_max_calls=3,
                slow_call_duration=None,
                slow_call_rate_threshold=1.0,
            ),
            expected_exception=(Hostile,),
            excluded_exceptions=(),
            clock=core.ManualClock(),
            on_transition=None,
        )

        def down() -> object:
            raise ValueError("down")

        seen.append((_outcome(engine, down), engine.stats()["total_calls"]))
    assert seen[0] == seen[1]
    assert seen[0][0] == ("Broken", "__instancecheck__ exploded", "ValueError")
