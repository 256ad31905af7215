"""The bulkhead manager and the `riprap.bulkhead` / `BulkheadDecorator` decorators. Runs on
the active backend.
"""

from __future__ import annotations

import asyncio

import pytest

import riprap
from riprap import (
    BulkheadConfig,
)

# --- the manager -------------------------------------------------------------------------------


def test_manager_defaults_are_the_seeds_and_unknown_types_get_the_default_config() -> (
    None
):
    m = riprap.BulkheadManager()
    expected = {
        "database": (20, 10.0),
        "agent_communication": (50, 30.0),
        "external_api": (10, 60.0),
        "file_operations": (5, 120.0),
    }
    for name, (n, timeout) in expected.items():
        c = m.get_bulkhead(name).config
        assert (c.max_concurrent_calls, c.timeout) == (n, timeout)
    assert m.get_bulkhead("queue").config == BulkheadConfig()
    assert m.get_bulkhead("database") is m.get_bulkhead("database")
    with pytest.raises(ValueError, match="already exists with a different config"):
        m.get_bulkhead("database", BulkheadConfig(max_concurrent_calls=3))
    assert set(m.get_all_stats()) == {*expected, "queue"}
    assert len(m) == 5
    assert "queue" in m

    async def main() -> int:
        return int(await m.execute_with_bulkhead("database", lambda a, b: a + b, 1, 2))

    assert asyncio.run(main()) == 3
    assert m.get_all_stats()["database"]["admitted_calls"] == 1


def test_the_decorators_use_the_global_manager_under_their_name() -> None:
    @riprap.bulkhead("test-decorator-svc", max_concurrent_calls=3, max_wait=0.5)
    def f() -> int:
        return 1

    @riprap.BulkheadDecorator("test-decorator-svc")
    async def g() -> int:
        return 2

    bh = riprap.bulkhead_manager.get_bulkhead("test-decorator-svc")
    assert f.bulkhead is bh  # type: ignore[attr-defined]
    assert g.bulkhead is bh  # type: ignore[attr-defined]
    assert (bh.config.max_concurrent_calls, bh.config.max_wait) == (3, 0.5)
    assert f() == 1
    assert asyncio.run(g()) == 2
    # Fields alone start from the manager's default for that name.
    m = riprap.BulkheadManager()
    riprap.bulkhead("database", manager=m, max_wait=1.0)(f)
    c = m.get_bulkhead("database").config
    assert (c.max_concurrent_calls, c.timeout, c.max_wait) == (20, 10.0, 1.0)
    with pytest.raises(TypeError, match="config must be a BulkheadConfig"):
        riprap.bulkhead("x", config=3)  # type: ignore[arg-type]
