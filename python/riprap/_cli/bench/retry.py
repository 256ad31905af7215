"""Benchmark cases for retry: riprap vs a hand-rolled loop, tenacity, stamina, backoff."""

from __future__ import annotations

from .harness import Case, Thunk, bare

__all__ = ["CASES", "flaky"]


def flaky() -> Thunk:
    """A function that fails twice with ConnectionError, then succeeds, over and over."""
    count = [0]

    def flaky() -> int:
        count[0] += 1
        if count[0] % 3:
            raise ConnectionError("connection reset")
        return 1

    return flaky


# --- implementations ---------------------------------------------------------------------------


def _riprap(target: Thunk) -> Thunk:
    import riprap

    policy = riprap.RetryPolicy(
        max_attempts=3, base_delay=0.0, max_delay=0.0, jitter=False
    )
    return riprap.retry(policy)(target)


def _hand_rolled(target: Thunk) -> Thunk:
    def retried() -> object:
        for attempt in range(3):
            try:
                return target()
            except ConnectionError:
                if attempt == 2:
                    raise
        return None

    return retried


def _tenacity(target: Thunk) -> Thunk:
    import tenacity

    return tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_none(),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        reraise=True,
    )(target)


def _stamina(target: Thunk) -> Thunk:
    import stamina

    return stamina.retry(
        on=ConnectionError, attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0
    )(target)


def _backoff(target: Thunk) -> Thunk:
    import backoff

    return backoff.on_exception(
        backoff.constant, ConnectionError, max_tries=3, interval=0, jitter=None
    )(target)


PEERS = {"tenacity": "tenacity", "stamina": "stamina", "backoff": "backoff"}

#: The cases, in table order.
CASES: list[Case] = [
    Case(
        "retry_success",
        "retry decorator, success, sync",
        150.0,
        {
            "riprap": lambda: _riprap(bare),
            "hand-rolled": lambda: _hand_rolled(bare),
            "tenacity": lambda: _tenacity(bare),
            "stamina": lambda: _stamina(bare),
            "backoff": lambda: _backoff(bare),
        },
        PEERS,
    ),
    Case(
        "retry_fails_twice",
        "retry, fails twice then succeeds, zero wait, sync",
        2000.0,
        {
            "riprap": lambda: _riprap(flaky()),
            "hand-rolled": lambda: _hand_rolled(flaky()),
            "tenacity": lambda: _tenacity(flaky()),
            "stamina": lambda: _stamina(flaky()),
            "backoff": lambda: _backoff(flaky()),
        },
        PEERS,
    ),
]
