"""The stacks `riprap bench` compares (retry + breaker + limiter + bulkhead) do the same work.

A benchmark of four layers against four layers is only fair if every implementation really has
them: each stack must pass a result through, and retry a failing call exactly 3 times (a retry
layer that never ran, or ran 4 times, would show up here). Peers that are not installed are
skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from riprap._cli.bench import harness, pipeline


def _installed(stacks: dict[str, Any], needs: dict[str, Any]) -> list[Any]:
    case = harness.Case(
        "x", "x", None, dict.fromkeys(stacks, lambda: harness.bare), needs
    )
    return [
        pytest.param(stacks[impl], id=impl)
        if case.installed(impl)
        else pytest.param(None, id=impl, marks=pytest.mark.skip(reason="not installed"))
        for impl in stacks
    ]


@pytest.mark.parametrize("stack", _installed(pipeline.SYNC, pipeline.SYNC_NEEDS))
def test_sync_stack_passes_results_and_makes_3_attempts(
    stack: Callable[[Callable[..., Any]], Any],
) -> None:
    calls = [0]

    def ok() -> str:
        calls[0] += 1
        return "done"

    def down() -> None:
        calls[0] += 1
        raise ConnectionError("down")

    assert stack(ok)() == "done"
    assert calls == [1]
    calls[0] = 0
    with pytest.raises(Exception):
        stack(down)()
    assert calls == [pipeline.ATTEMPTS]


@pytest.mark.parametrize("stack", _installed(pipeline.ASYNC, pipeline.ASYNC_NEEDS))
def test_async_stack_passes_results_and_makes_3_attempts(
    stack: Callable[[Callable[..., Any]], Any],
) -> None:
    calls = [0]

    async def ok() -> str:
        calls[0] += 1
        return "done"

    async def down() -> None:
        calls[0] += 1
        raise ConnectionError("down")

    async def run() -> None:
        assert await stack(ok)() == "done"
        assert calls == [1]
        calls[0] = 0
        with pytest.raises(Exception):
            await stack(down)()
        assert calls == [pipeline.ATTEMPTS]

    asyncio.run(run())


def test_the_benchmarked_stacks_succeed_when_driven() -> None:
    # What the harness times: every installed implementation's thunk returns the bare result.
    for case in pipeline.CASES:
        for impl in case.available():
            assert case.build[impl]()() == 1, (case.key, impl)
