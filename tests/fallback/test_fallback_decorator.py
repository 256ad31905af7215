"""`riprap.fallback`, `FallbackDecorator` and `ServiceFallbackManager`.

The decorator's shape (colour, metadata, methods, refused generators), its strategies (named in
the manager, or private), cache keys, and control flow through a decorated call. Runs on the
active backend.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

import pytest

import riprap
from riprap import (
    MISSING,
    FallbackConfig,
    FallbackDecorator,
    FallbackExhaustedError,
    FallbackStrategy,
    ServiceFallbackManager,
)
from riprap.testing import ManualClock


def down(*args: Any, **kwargs: Any) -> Any:
    raise ConnectionError("down")


def replica(user_id: int, *, fields: str = "all") -> dict[str, Any]:
    return {"user": user_id, "fields": fields, "from": "replica"}


async def areplica(user_id: int, *, fields: str = "all") -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"user": user_id, "fields": fields, "from": "async replica"}


class TestShape:
    def test_sync_stays_sync_with_metadata(self) -> None:
        def get_user(user_id: int, *, fields: str = "all") -> dict[str, Any]:
            """Docs."""
            raise ConnectionError("down")

        wrapped = riprap.fallback(replica)(get_user)
        assert not inspect.iscoroutinefunction(wrapped)
        assert wrapped.__wrapped__ is get_user  # type: ignore[attr-defined]
        assert wrapped.__name__ == "get_user"
        assert wrapped.__qualname__ == get_user.__qualname__
        assert wrapped.__doc__ == "Docs."
        assert inspect.signature(wrapped) == inspect.signature(get_user)
        assert wrapped(7, fields="name") == {
            "user": 7,
            "fields": "name",
            "from": "replica",
        }

    def test_async_stays_a_coroutine_function(self) -> None:
        async def get_user(user_id: int, *, fields: str = "all") -> dict[str, Any]:
            raise ConnectionError("down")

        wrapped = riprap.fallback(areplica, replica)(get_user)
        assert inspect.iscoroutinefunction(wrapped)
        assert wrapped.__wrapped__ is get_user  # type: ignore[attr-defined]
        assert inspect.signature(wrapped) == inspect.signature(get_user)
        assert asyncio.run(wrapped(3))["from"] == "async replica"

    def test_methods_static_and_class_methods(self) -> None:
        def from_cache(self: Any, key: str) -> str:
            return f"{self.name}:{key}:cached"

        class Client:
            name = "c"

            @riprap.fallback(from_cache)
            def get(self, key: str) -> str:
                raise ConnectionError(key)

            @riprap.fallback(lambda key: f"static:{key}")
            @staticmethod
            def sget(key: str) -> str:
                raise ConnectionError(key)

            @riprap.fallback(lambda cls, key: f"{cls.__name__}:{key}")
            @classmethod
            def cget(cls, key: str) -> str:
                raise ConnectionError(key)

            @riprap.fallback(default="d")
            async def aget(self, key: str) -> str:
                raise ConnectionError(key)

        c = Client()
        assert c.get("k") == "c:k:cached"
        assert Client.sget("k") == c.sget("k") == "static:k"
        assert Client.cget("k") == "Client:k"
        assert asyncio.run(c.aget("k")) == "d"

    def test_partial_callable_object_and_bound_method(self) -> None:
        def get(source: str, key: str) -> str:
            raise ConnectionError(source)

        class Loader:
            def __call__(self, key: str) -> str:
                raise ConnectionError(key)

            def load(self, key: str) -> str:
                raise ConnectionError(key)

        class AsyncLoader:
            async def __call__(self, key: str) -> str:
                raise ConnectionError(key)

        # The fallbacks get the call's arguments, not the partial's bound ones.
        part = riprap.fallback(lambda key: f"partial/{key}")(
            functools.partial(get, "db")
        )
        assert part("k") == "partial/k"
        assert riprap.fallback(lambda key: f"obj/{key}")(Loader())("k") == "obj/k"
        assert (
            riprap.fallback(lambda key: f"bound/{key}")(Loader().load)("k") == "bound/k"
        )
        wrapped = riprap.fallback(default="d")(AsyncLoader())
        assert inspect.iscoroutinefunction(wrapped)
        assert asyncio.run(wrapped("k")) == "d"

    def test_generators_are_refused(self) -> None:
        def gen() -> Any:
            yield 1

        async def agen() -> Any:
            yield 1

        for f in (gen, agen):
            with pytest.raises(TypeError, match="cannot wrap the generator function"):
                riprap.fallback(default=1)(f)
        with pytest.raises(TypeError, match="generator function"):
            riprap.fallback(gen)

    def test_a_sync_function_with_an_async_fallback_is_refused_when_decorated(
        self,
    ) -> None:
        with pytest.raises(TypeError, match=r"is async but .* is a sync function"):
            riprap.fallback(areplica)(replica)

    def test_not_callable(self) -> None:
        with pytest.raises(TypeError, match="needs a callable"):
            riprap.fallback(default=1)(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="fallback_funcs"):
            riprap.fallback(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="cache_key must be a callable"):
            riprap.fallback(cache_key="fixed")  # type: ignore[arg-type]


class TestBehaviour:
    def test_none_default_and_missing(self) -> None:
        assert riprap.fallback(default=None)(down)() is None
        with pytest.raises(FallbackExhaustedError):
            riprap.fallback(default=MISSING)(down)()

    def test_cache_key_caches_the_primary_per_key(self, clock: ManualClock) -> None:
        calls = {"n": 0}

        @riprap.fallback(cache_key=lambda user_id: ("user", user_id), clock=clock)
        def get_user(user_id: int) -> str:
            calls["n"] += 1
            if calls["n"] > 2:
                raise ConnectionError("down")
            return f"user {user_id} v{calls['n']}"

        assert get_user(1) == "user 1 v1"
        assert get_user(2) == "user 2 v2"
        assert get_user(1) == "user 1 v1"  # primary down: the cached value for key 1
        assert get_user(2) == "user 2 v2"
        clock.advance(300.001)
        with pytest.raises(FallbackExhaustedError):
            get_user(1)
        stats = get_user.fallback_strategy.get_stats()  # type: ignore[attr-defined]
        assert stats["cache_fallbacks"] == 2

    def test_cache_key_func_returning_none_skips_caching(self) -> None:
        @riprap.fallback(cache_key=lambda x: None)
        def f(x: int) -> int:
            return x

        f(1)
        assert len(f.fallback_strategy.cache) == 0  # type: ignore[attr-defined]

    def test_unhashable_key_from_the_key_function(self) -> None:
        called = []

        @riprap.fallback(cache_key=lambda x: [x])
        def f(x: int) -> int:
            called.append(x)
            return x

        with pytest.raises(TypeError, match="cache_key must be hashable, got list"):
            f(1)
        assert called == []

    @pytest.mark.parametrize(
        "cfe", [KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError]
    )
    def test_control_flow_passes_through_a_decorated_call(
        self, cfe: type[BaseException]
    ) -> None:
        called = []

        def fb() -> str:
            called.append(1)
            return "fb"

        @riprap.fallback(fb, default="d")
        def f() -> str:
            raise cfe

        @riprap.fallback(fb, default="d")
        async def af() -> str:
            raise cfe

        with pytest.raises(cfe):
            f()
        with pytest.raises(cfe):
            asyncio.run(af())
        assert called == []

    def test_each_undecorated_function_gets_its_own_strategy(self) -> None:
        deco = riprap.fallback(default=1)
        f, g = deco(down), deco(lambda: 2)
        assert f.fallback_strategy is not g.fallback_strategy  # type: ignore[attr-defined]
        assert f.fallback_strategy.name.endswith("down")  # type: ignore[attr-defined]


class TestManager:
    def test_service_shares_one_strategy(self) -> None:
        manager = ServiceFallbackManager()
        a = FallbackDecorator("inventory", [replica], manager=manager)(down)
        b = FallbackDecorator("inventory", default_value=0, manager=manager)(down)
        strategy = manager.get_strategy("inventory")
        assert a.fallback_strategy is b.fallback_strategy is strategy  # type: ignore[attr-defined]
        assert a(1)["from"] == "replica"
        assert b() == 0
        assert manager.get_all_stats()["inventory"]["primary_failures"] == 2

    def test_global_manager_through_the_decorator(self) -> None:
        f = riprap.fallback(default=5, service="test-global-manager")(down)
        assert f.fallback_strategy is riprap.fallback_manager.get_strategy(  # type: ignore[attr-defined]
            "test-global-manager"
        )
        assert f() == 5

    def test_a_different_config_for_an_existing_service_is_refused(self) -> None:
        manager = ServiceFallbackManager()
        s = manager.get_strategy("db", FallbackConfig(cache_ttl=10))
        assert manager.get_strategy("db") is s
        assert manager.get_strategy("db", FallbackConfig(cache_ttl=10)) is s
        with pytest.raises(
            ValueError, match="'db' already exists with a different config"
        ):
            manager.get_strategy("db", FallbackConfig(cache_ttl=20))

    def test_default_config_and_clock(self, clock: ManualClock) -> None:
        manager = ServiceFallbackManager(FallbackConfig(cache_ttl=1.0))
        s = manager.get_strategy("x", clock=clock)
        assert isinstance(s, FallbackStrategy)
        assert s.config.cache_ttl == 1.0
        assert s.clock is clock
        assert s.name == "x"

    def test_clear_all_caches(self) -> None:
        manager = ServiceFallbackManager()
        s = manager.get_strategy("x")
        s.execute_with_fallback_sync(lambda: 1, [], cache_key="k")
        manager.clear_all_caches()
        assert len(s.cache) == 0

    def test_bad_arguments(self) -> None:
        with pytest.raises(TypeError, match="service_name must be a str, got int"):
            ServiceFallbackManager().get_strategy(5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="default_config must be a FallbackConfig"):
            ServiceFallbackManager({})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="config must be a FallbackConfig"):
            riprap.fallback(config={})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="clock must be"):
            riprap.fallback(clock="now")
