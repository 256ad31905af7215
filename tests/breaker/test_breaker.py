"""Circuit breaker: configuration, the state machine, stats, listeners, reset/force_open.

Runs on the active backend. Tests named `test_reg_<id>` guard against a bug or weakness a peer
library shipped (comments cite the issue); the integrations (decorator, with, call),
control-flow exceptions and threads have their own files.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

import riprap
from riprap import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from riprap.testing import ManualClock


class Driver:
    """Runs calls through a breaker on a manual clock: ok, fail, ignored, slow."""

    def __init__(self, clock: ManualClock, **fields: Any) -> None:
        self.clock = clock
        self.breaker = CircuitBreaker(
            "svc", CircuitBreakerConfig(**fields), clock=clock
        )
        self.transitions: list[tuple[str, str]] = []
        self.breaker.add_listener(
            lambda name, old, new: self.transitions.append((old.value, new.value))
        )

        @self.breaker
        def op(exc: BaseException | None = None, lasts: float = 0.0) -> str:
            clock.advance(lasts)
            if exc is not None:
                raise exc
            return "ok"

        self.op = op

    def ok(self, lasts: float = 0.0) -> None:
        assert self.op(None, lasts) == "ok"

    def fail(self, exc: Exception | None = None, lasts: float = 0.0) -> None:
        exc = exc if exc is not None else ConnectionError("down")
        with pytest.raises(type(exc)):
            self.op(exc, lasts)

    def rejected(self) -> CircuitOpenError:
        with pytest.raises(CircuitOpenError) as info:
            self.op()
        return info.value

    @property
    def state(self) -> str:
        return self.breaker.state.value

    def stats(self) -> dict[str, Any]:
        return self.breaker.get_stats()


OPENED = [("closed", "open")]

# -- configuration ---------------------------------------------------------------------------


def test_defaults_are_the_seeds_and_the_specs() -> None:
    c = CircuitBreakerConfig()
    assert (c.failure_threshold, c.timeout, c.success_threshold) == (5, 60.0, 3)
    assert (c.monitoring_window, c.expected_exception) == (300.0, Exception)
    assert (c.failure_rate_threshold, c.minimum_calls, c.half_open_max_calls) == (
        0.5,
        10,
        3,
    )
    assert (c.slow_call_duration, c.slow_call_rate_threshold) == (None, 1.0)
    assert c.excluded_exceptions == ()
    assert [s.value for s in CircuitState] == ["closed", "open", "half_open"]
    assert CircuitBreakerConfig() == CircuitBreakerConfig()


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"failure_threshold": 0}, ValueError, "failure_threshold must be >= 1, got 0"),
        ({"failure_threshold": True}, TypeError, "failure_threshold must be an int"),
        ({"failure_threshold": 2.0}, TypeError, "failure_threshold must be an int"),
        ({"timeout": 0}, ValueError, "timeout must be > 0.0, got 0.0"),
        ({"timeout": -1.0}, ValueError, "timeout must be > 0.0, got -1.0"),
        ({"timeout": math.nan}, ValueError, "timeout must be a finite number, got nan"),
        ({"timeout": "60"}, TypeError, "timeout must be a number, got str"),
        (
            {"success_threshold": -3},
            ValueError,
            "success_threshold must be >= 1, got -3",
        ),
        (
            {"monitoring_window": math.inf},
            ValueError,
            "monitoring_window must be a finite",
        ),
        (
            {"failure_rate_threshold": 1.01},
            ValueError,
            "failure_rate_threshold must be <= 1.0, got 1.01",
        ),
        (
            {"failure_rate_threshold": -0.1},
            ValueError,
            "failure_rate_threshold must be >= 0.0, got -0.1",
        ),
        ({"minimum_calls": 0}, ValueError, "minimum_calls must be >= 1, got 0"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls must be >= 1"),
        (
            {"half_open_max_calls": False},
            TypeError,
            "half_open_max_calls must be an int",
        ),
        ({"slow_call_duration": 0.0}, ValueError, "slow_call_duration must be > 0.0"),
        (
            {"slow_call_duration": True},
            TypeError,
            "slow_call_duration must be a number",
        ),
        (
            {"slow_call_rate_threshold": 0.0},
            ValueError,
            "slow_call_rate_threshold must be > 0.0, got 0.0",
        ),
        (
            {"slow_call_rate_threshold": 2},
            ValueError,
            "slow_call_rate_threshold must be <= 1.0, got 2.0",
        ),
        (
            {"expected_exception": int},
            TypeError,
            "expected_exception must hold exception",
        ),
        ({"expected_exception": 3}, TypeError, "expected_exception must be a tuple"),
        (
            {"excluded_exceptions": (KeyError, "x")},
            TypeError,
            "excluded_exceptions must",
        ),
    ],
)
def test_invalid_config_names_the_field_and_value(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match="^" + message.replace("(", r"\(")):
        CircuitBreakerConfig(**fields)


def test_config_is_frozen_and_accepts_tuples_and_huge_counts() -> None:
    c = CircuitBreakerConfig(
        expected_exception=(ConnectionError, TimeoutError),
        excluded_exceptions=[KeyError],  # type: ignore[arg-type]
        minimum_calls=2**80,
    )
    assert c.excluded_exceptions == (KeyError,)
    with pytest.raises(AttributeError):
        c.timeout = 1.0  # type: ignore[misc]


def test_breaker_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        CircuitBreaker(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a CircuitBreakerConfig"):
        CircuitBreaker("x", {"timeout": 1})  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"clock must be a riprap\.testing\.ManualClock"
    ):
        CircuitBreaker("x", clock=object())
    with pytest.raises(ValueError, match="on_storage_error must be one of"):
        CircuitBreaker("x", on_storage_error="ignore")


def test_storage_keywords_are_checked_without_a_server() -> None:
    # Building never connects (tests/redis has the shared breaker itself).
    with pytest.raises(TypeError, match="storage must be a redis:// URL"):
        CircuitBreaker("x", storage=object(), on_storage_error="fail_closed")
    with pytest.raises(ValueError, match="shared must be one of 'state', 'quorum'"):
        CircuitBreaker("x", shared="majority")
    with pytest.raises(ValueError, match=r"quorum must be <= 1\.0, got 1\.5"):
        CircuitBreaker("x", quorum=1.5)
    with pytest.raises(ValueError, match="time_source must be one of"):
        CircuitBreaker("x", time_source="ntp")


# -- CLOSED -> OPEN --------------------------------------------------------------------------


def test_consecutive_failures_reaching_the_threshold_open_it(
    clock: ManualClock,
) -> None:
    d = Driver(clock, failure_threshold=3, minimum_calls=100)
    d.fail()
    d.fail()
    d.ok()  # a success resets the run
    d.fail()
    d.fail(KeyError("ignored?"))  # Exception is expected by default: counted
    assert d.state == "closed"
    d.fail()
    assert d.state == "open"
    assert d.transitions == OPENED


def test_ignored_exceptions_neither_reset_nor_extend_the_run(
    clock: ManualClock,
) -> None:
    d = Driver(
        clock,
        failure_threshold=2,
        expected_exception=ConnectionError,
        excluded_exceptions=(ConnectionAbortedError,),
    )
    d.fail()
    d.fail(ValueError("not expected"))
    d.fail(ConnectionAbortedError("excluded, though a ConnectionError"))
    s = d.stats()
    assert (s["failure_count"], s["success_count"], s["total_ignored"]) == (1, 0, 2)
    assert s["consecutive_failures"] == 1
    d.fail()
    assert d.state == "open"


def test_failure_rate_needs_minimum_calls_and_must_exceed(clock: ManualClock) -> None:
    d = Driver(clock, failure_threshold=100, minimum_calls=4)
    d.fail()
    d.fail()
    d.ok()
    assert d.state == "closed"  # 2/3 > 0.5, but only 3 calls
    d.ok()
    assert d.state == "closed"  # 2/4 = 0.5 does not exceed 0.5
    assert d.stats()["failure_rate"] == 0.5
    d.fail()
    assert d.state == "open"  # 3/5
    assert d.transitions == OPENED


def test_a_success_can_trip_the_rate_once_the_window_is_big_enough(
    clock: ManualClock,
) -> None:
    d = Driver(clock, failure_threshold=100, minimum_calls=3)
    d.fail()
    d.fail()
    d.ok()  # 2 of 3 calls failed
    assert d.state == "open"


def test_slow_calls_reach_the_slow_rate_threshold(clock: ManualClock) -> None:
    d = Driver(
        clock,
        failure_threshold=100,
        failure_rate_threshold=1.0,
        minimum_calls=4,
        slow_call_duration=2.0,
        slow_call_rate_threshold=0.5,
    )
    d.ok(lasts=1.999)
    d.ok(lasts=2.0)  # exactly the duration: slow
    d.fail(lasts=3.0)  # a slow failure is a failure and slow
    s = d.stats()
    assert (s["slow_call_count"], s["failure_count"], s["window_calls"]) == (2, 1, 3)
    assert (
        d.state == "closed"
    )  # 2/3 slow, but fewer than minimum_calls (test_reg_B7 guards it too)
    d.ok()
    assert d.state == "open"  # 2/4 = 0.5 reaches 0.5


def test_without_slow_call_duration_nothing_is_slow(clock: ManualClock) -> None:
    d = Driver(clock, minimum_calls=1, slow_call_rate_threshold=0.01)
    d.ok(lasts=1e6)
    assert d.stats()["slow_call_count"] == 0
    assert d.state == "closed"


def test_the_window_forgets_calls_older_than_monitoring_window(
    clock: ManualClock,
) -> None:
    d = Driver(clock, failure_threshold=100, minimum_calls=3, monitoring_window=60.0)
    d.fail()
    d.fail()
    clock.advance(59.0)
    assert d.stats()["failure_count"] == 2
    clock.advance(1.0)
    s = d.stats()
    assert (s["failure_count"], s["failure_rate"]) == (0, 0.0)
    d.ok()
    d.fail()
    assert d.state == "closed"  # the old failures no longer count: 1 of 2


# -- OPEN -> HALF_OPEN -> CLOSED / OPEN -------------------------------------------------------


def test_open_rejects_with_retry_after_until_the_timeout(clock: ManualClock) -> None:
    d = Driver(clock, failure_threshold=1, timeout=30.0)
    d.fail()
    clock.advance(12.5)
    e = d.rejected()
    assert (e.name, e.retry_after) == ("svc", 17.5)
    assert d.stats()["retry_after"] == 17.5
    assert d.stats()["opened_at"] == 0.0
    clock.advance(17.5 - 1e-9)
    assert d.state == "open"
    clock.advance(1e-9)
    assert d.state == "half_open"  # lazily, on a state read
    assert d.transitions == [*OPENED, ("open", "half_open")]


def test_half_open_is_visible_in_stats_without_a_call(clock: ManualClock) -> None:
    d = Driver(clock, failure_threshold=1, timeout=5.0)
    d.fail()
    clock.advance(5.0)
    assert d.stats()["state"] == "half_open"
    assert d.transitions[-1] == ("open", "half_open")


def test_success_threshold_closes_and_clears_the_window(clock: ManualClock) -> None:
    d = Driver(clock, failure_threshold=2, timeout=1.0, success_threshold=2)
    d.fail()
    d.fail()
    clock.advance(1.0)
    d.ok()
    assert d.state == "half_open"
    assert d.stats()["half_open_successes"] == 1
    d.ok()
    assert d.state == "closed"
    s = d.stats()
    assert (s["failure_count"], s["success_count"], s["consecutive_failures"]) == (
        0,
        0,
        0,
    )
    assert (s["total_failures"], s["total_successes"]) == (2, 2)
    assert s["open_duration"] == 0.0
    assert d.transitions == [
        *OPENED,
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_any_half_open_failure_reopens_with_a_fresh_timeout(clock: ManualClock) -> None:
    d = Driver(clock, failure_threshold=1, timeout=10.0, success_threshold=3)
    d.fail()
    clock.advance(10.0)
    d.ok()
    clock.advance(2.0)
    d.fail()
    assert d.state == "open"
    assert d.rejected().retry_after == 10.0
    s = d.stats()
    assert s["opened_at"] == 12.0
    assert s["open_duration"] == 12.0  # since it first left CLOSED
    assert d.transitions[-1] == ("half_open", "open")


def test_half_open_admits_at_most_half_open_max_calls(clock: ManualClock) -> None:
    b = CircuitBreaker(
        "gate", CircuitBreakerConfig(half_open_max_calls=2, timeout=1.0), clock=clock
    )
    b.force_open()
    clock.advance(1.0)
    with b, b:
        assert b.get_stats()["half_open_calls"] == 2
        with pytest.raises(CircuitOpenError) as info, b:
            pass
        assert info.value.retry_after == 0.0
    assert b.get_stats()["half_open_calls"] == 0


def test_reg_B7_minimum_calls_applies_only_while_closed(clock: ManualClock) -> None:
    # nodeshift/opossum#276: the volume threshold also ran in HALF_OPEN, so it never left.
    d = Driver(clock, failure_threshold=1, minimum_calls=1000, success_threshold=2)
    d.fail()
    clock.advance(60.0)
    d.ok()
    d.ok()
    assert d.state == "closed"
    d.fail()
    clock.advance(60.0)
    d.fail()
    assert d.state == "open"


def test_reg_B8_open_always_has_opened_at(clock: ManualClock) -> None:
    # ahawkins/breaker#7: OPEN with no open time never half-opened.
    d = Driver(clock, failure_threshold=1, timeout=3.0)
    for step in range(40):
        if step % 3 == 0:
            d.breaker.force_open()
        elif step % 5 == 0:
            d.breaker.reset()
        elif d.state != "open":
            d.fail()
        clock.advance(0.7)
        s = d.stats()
        assert (s["state"] == "open") == (s["opened_at"] is not None)
        if s["state"] == "open":
            assert 0.0 < s["retry_after"] <= 3.0
            assert s["opened_at"] + 3.0 - clock.now() == pytest.approx(s["retry_after"])


# -- stats ------------------------------------------------------------------------------------


def test_stats_have_the_spec_keys_and_honest_values(clock: ManualClock) -> None:
    d = Driver(clock, failure_threshold=2, timeout=5.0, expected_exception=OSError)
    s = d.stats()
    spec = {
        "name",
        "state",
        "failure_count",
        "success_count",
        "failure_rate",
        "last_failure_time",
        "time_since_last_failure",
        "total_calls",
    }
    assert spec <= s.keys()
    assert s["last_failure_time"] is None
    assert s["time_since_last_failure"] is None
    d.ok()
    clock.advance(4.0)
    d.fail(ValueError("ignored"))
    d.fail()
    clock.advance(1.5)
    s = d.stats()
    assert s["name"] == "svc"
    assert s["state"] == "closed"
    assert (s["failure_count"], s["success_count"], s["failure_rate"]) == (1, 1, 0.5)
    assert s["last_failure_time"] == 4.0
    assert s["time_since_last_failure"] == 1.5
    assert s["total_calls"] == 3
    d.fail()
    d.rejected()
    s = d.stats()
    assert s["total_calls"] == 5
    assert s["total_rejected"] == 1
    assert isinstance(s["failure_rate"], float)


def test_reset_closes_clears_the_window_and_keeps_lifetime_counters(
    clock: ManualClock,
) -> None:
    d = Driver(clock, failure_threshold=1)
    d.fail()
    d.breaker.reset()
    assert d.state == "closed"
    assert d.transitions == [*OPENED, ("open", "closed")]
    s = d.stats()
    assert (s["failure_count"], s["total_failures"], s["last_failure_time"]) == (
        0,
        1,
        0.0,
    )
    d.breaker.reset()  # closed -> closed: no transition
    assert len(d.transitions) == 2
    d.ok()


def test_force_open_opens_now_and_half_opens_after_timeout(clock: ManualClock) -> None:
    d = Driver(clock, timeout=10.0)
    d.breaker.force_open()
    assert d.rejected().retry_after == 10.0
    clock.advance(4.0)
    d.breaker.force_open()  # restarts the timeout, no second transition
    assert d.rejected().retry_after == 10.0
    assert d.transitions == OPENED
    clock.advance(10.0)
    d.ok()
    assert d.state == "half_open"


def test_time_reads_the_breakers_clock_only(clock: ManualClock) -> None:
    clock.advance(1000.0)
    d = Driver(clock, failure_threshold=1, timeout=2.0)
    d.fail()
    assert d.stats()["last_failure_time"] == 1000.0
    assert d.stats()["opened_at"] == 1000.0


# -- listeners ---------------------------------------------------------------------------------


def test_reg_B15_listeners_run_in_order_and_a_raising_one_is_isolated(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # danielfm/pybreaker#16, #41: one bad listener broke the breaker.
    d = Driver(clock, failure_threshold=1, timeout=1.0)
    order: list[str] = []

    def bad(name: str, old: CircuitState, new: CircuitState) -> None:
        order.append("bad")
        raise RuntimeError("listener bug")

    d.breaker.add_listener(bad)
    d.breaker.add_listener(lambda name, old, new: order.append(f"good:{new.value}"))
    d.fail()  # the call's own exception reaches the caller, not the listener's
    assert order == ["bad", "good:open"]
    assert d.state == "open"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "listener" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    clock.advance(1.0)
    d.ok()  # a transition inside a successful call: the result still comes back
    assert order[-1] == "good:half_open"
    d.breaker.remove_listener(bad)
    with pytest.raises(ValueError):
        d.breaker.remove_listener(bad)
    with pytest.raises(TypeError, match="listener must be callable"):
        d.breaker.add_listener(3)  # type: ignore[arg-type]


def test_listeners_get_the_name_and_state_members(clock: ManualClock) -> None:
    b = CircuitBreaker("payments", clock=clock)
    got: list[tuple[str, CircuitState, CircuitState]] = []
    b.add_listener(lambda *a: got.append(a))
    b.force_open()
    assert got == [("payments", CircuitState.CLOSED, CircuitState.OPEN)]


def test_transitions_are_logged(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    d = Driver(clock, failure_threshold=1, timeout=1.0, success_threshold=1)
    d.fail()
    clock.advance(1.0)
    d.ok()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "circuit breaker 'svc': closed -> open"),
        ("INFO", "circuit breaker 'svc': open -> half_open"),
        ("INFO", "circuit breaker 'svc': half_open -> closed"),
    ]


# -- rejections -------------------------------------------------------------------------------


def test_reg_X3_every_rejection_is_a_fresh_error_with_a_short_traceback(
    clock: ManualClock,
) -> None:
    # purgatory raises one shared exception whose traceback grows with every rejection.
    d = Driver(clock)
    d.breaker.force_open()
    seen: set[int] = set()
    kept: list[CircuitOpenError] = []
    lengths = set()
    for _ in range(10_000):
        try:
            d.op()
        except CircuitOpenError as e:
            seen.add(id(e))
            kept.append(e)
            tb, n = e.__traceback__, 0
            while tb is not None:
                tb, n = tb.tb_next, n + 1
            lengths.add(n)
    assert len(seen) == 10_000
    assert len(lengths) == 1
    assert lengths.pop() <= 5  # the caller's frame plus the wrapper's (python backend)


def test_circuit_open_error_has_name_retry_after_and_a_message() -> None:
    e = CircuitOpenError("db", 1.25)
    assert (e.name, e.retry_after) == ("db", 1.25)
    assert str(e) == "circuit breaker 'db' is open; retry after 1.250s"
    assert str(CircuitOpenError("db", 0.0, "custom")) == "custom"
    assert riprap.CircuitBreakerOpenException is CircuitOpenError
    assert isinstance(e, riprap.ResilienceError)


def test_repr_names_the_breaker_and_its_state(clock: ManualClock) -> None:
    b = CircuitBreaker("db", CircuitBreakerConfig(timeout=1.0), clock=clock)
    seen: list[CircuitState] = []
    b.add_listener(lambda name, old, new: seen.append(new))
    assert repr(b) == "<CircuitBreaker 'db' closed>"
    b.force_open()
    assert repr(b) == "<CircuitBreaker 'db' open>"
    clock.advance(1.0)
    assert repr(b._engine) == "<riprap.BreakerEngine 'db' half_open>"
    assert seen == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
    ]  # a repr's transition fires too


def test_a_breaker_is_findable_while_alive() -> None:
    import gc

    from riprap._breaker import live_breakers

    b = CircuitBreaker("findable")
    assert b in live_breakers()
    del b
    gc.collect()
    assert all(x.name != "findable" for x in live_breakers())


# -- time ---------------------------------------------------------------------------------


#: The breaker, run in a child whose wall clock (CLOCK_REALTIME) is shifted by libfaketime while
#: its monotonic clock is left alone. It prints what it saw as JSON.
WALL_CLOCK_CHILD = r"""
import json, select, sys, time
import riprap

shift_file, T = sys.argv[1], float(sys.argv[2])


def shift(spec):
    with open(shift_file, "w") as f:
        f.write(spec + "\n")


def seen(b):
    s = b.get_stats()
    keys = ("state", "retry_after", "window_calls", "time_since_last_failure")
    return {k: s[k] for k in keys}


out = {}
# The probe is live: the wall clock follows the file, the monotonic clock does not.
w0, m0 = time.time(), time.monotonic()
shift("+3h")
out["wall_jump"], out["mono_jump"] = time.time() - w0, time.monotonic() - m0
shift("+0")

timer = riprap.CircuitBreaker("timer", riprap.CircuitBreakerConfig(failure_threshold=1, timeout=T))
window = riprap.CircuitBreaker(
    "window",
    riprap.CircuitBreakerConfig(failure_threshold=10**6, minimum_calls=10**6, monitoring_window=T),
)


def fail(b):
    try:
        with b:
            raise ConnectionError("down")
    except ConnectionError:
        pass


start = time.monotonic()
fail(timer)
for _ in range(5):
    fail(window)
opened = time.monotonic()
shift("+3h")  # three hours ahead: a wall-clock timer would half-open, a wall-clock window empty
out["ahead"] = {"timer": seen(timer), "window": seen(window)}
out["ahead_within"] = time.monotonic() - start
# Wait until `T` has passed on the monotonic clock (select: time.sleep's absolute-deadline
# call fails under libfaketime).
select.select([], [], [], max(0.0, opened + T - time.monotonic()) + 0.05)
shift("-3h")  # three hours behind: a wall-clock timer would not half-open for 3 h
out["behind"] = {"timer": seen(timer), "window": seen(window)}
print(json.dumps(out))
"""

LIBFAKETIME_PATHS = [
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
]


def libfaketime() -> str:
    """libfaketime's path, or a skip (locally) / a failure (in CI, where it must be present)."""
    import glob
    import os

    found = [p for pattern in LIBFAKETIME_PATHS for p in glob.glob(pattern)]
    if found:
        return found[0]
    why = (
        "libfaketime is not installed (apt-get install faketime; `make test-deps` does it): "
        "the wall-clock test runs the breaker under it"
    )
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def test_reg_B10_wall_clock_jumps_move_nothing(tmp_path: Any) -> None:
    # fabfuel/circuitbreaker#31: open/reset timing used the wall clock. Neither backend's
    # clock reads time.time() from Python, so a patched time.time proves nothing: the breaker
    # runs in a child under libfaketime, with only the wall clock (CLOCK_REALTIME, which
    # time.time() and Rust's SystemTime read) shifted 3 h ahead and then 3 h behind, while the
    # open timer and the window must follow the monotonic clock.
    import json
    import os
    import subprocess
    import sys

    timeout = 1.0
    shift_file = tmp_path / "shift"
    shift_file.write_text("+0\n")
    env = {
        **os.environ,
        "LD_PRELOAD": libfaketime(),
        "FAKETIME_TIMESTAMP_FILE": str(shift_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    child = subprocess.run(
        [sys.executable, "-c", WALL_CLOCK_CHILD, str(shift_file), str(timeout)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert abs(out["wall_jump"] - 3 * 3600) < 60, out  # the shift reached the child
    assert out["mono_jump"] < 60, out
    # Three hours ahead on the wall clock, a moment later on the monotonic one.
    assert out["ahead_within"] < timeout, (
        "the child was too slow to judge the open state"
    )
    timer, window = out["ahead"]["timer"], out["ahead"]["window"]
    assert timer["state"] == "open", out
    assert 0.0 < timer["retry_after"] <= timeout, out
    assert timer["time_since_last_failure"] < timeout, out
    assert window["window_calls"] == 5, out
    # Three hours behind on the wall clock, `timeout` later on the monotonic one.
    timer, window = out["behind"]["timer"], out["behind"]["window"]
    assert timer["state"] == "half_open", out
    assert timer["retry_after"] == 0.0, out
    assert timeout <= timer["time_since_last_failure"] < 60, out
    assert window["window_calls"] == 0, out


@pytest.mark.parametrize("window", [1e-9, 2e-9, 300.0], ids=["1-bucket", "2", "60"])
def test_reg_B17_windows_of_one_two_and_max_buckets_survive_1e5_ticks(
    window: float,
) -> None:
    # resilience4j/resilience4j#2379, #2334: the time window crashed with one bucket. The
    # counts also match the definition (a call counts while its bucket is one of the last n).
    import random

    clock = ManualClock()
    config = CircuitBreakerConfig(
        failure_threshold=2**63, minimum_calls=2**63, monitoring_window=window
    )
    b = CircuitBreaker("b17", config, clock=clock)
    width = round(config._core.bucket_width * 1e9)
    n = round(window * 1e9) // width
    assert n in (1, 2, 60)

    @b
    def op(fail: bool) -> None:
        if fail:
            raise KeyError("failure")

    rng = random.Random(17)
    epochs: list[int] = []
    for tick in range(100_000):
        clock.advance(rng.choice([0, 0, 1, 1, 2, n + 1]) * width / 1e9)
        epoch = clock.now_ns() // width
        try:
            op(rng.random() < 0.3)
        except KeyError:
            pass
        epochs.append(epoch)
        if tick % 97 == 0:
            expected = sum(1 for e in epochs if e > epoch - n)
            assert b.get_stats()["window_calls"] == expected
            epochs = [e for e in epochs if e > epoch - n]
    assert b.get_stats()["total_calls"] == 100_000
