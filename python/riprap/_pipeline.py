"""Composition: `riprap.Pipeline(*policies)`, the policies of one dependency as one decorator.

`Pipeline(a, b, c)(f)` behaves exactly as `a(b(c(f)))`: the first policy is the outermost. A
pipeline accepts every riprap policy (a `RetryPolicy` or `riprap.retry(...)`, a
`CircuitBreaker`, a `RateLimiter`, a keyed limiter with its key (`limiter(key=...)`), a
`Bulkhead`, `riprap.timeout(...)`, `riprap.fallback(...)`, `riprap.dead_letter(...)`,
`riprap.chaos.inject(...)`) and any other decorator. What it adds to writing the decorators by
hand: `explain()` says what each layer does with the errors of the layers inside it and warns
about orders that bite, `repr` shows the order, `call`/`acall` run a function through it without
decorating it.

Cost: each Rust-backed layer (retry, breaker, limiters, bulkhead) is a native wrapper, so a call
through a stack of them runs no Python frame per layer: sync, each layer calls the next through
vectorcall; async, each layer's part of the await is a native `Coroutine` driving the next. The
layers are not fused into one state machine: a stack costs the sum of its layers.

Orders that cannot bite, whatever the order: a breaker never counts an inner layer's own
rejection (`RateLimitExceeded`, `BulkheadRejectedError`, `CircuitOpenError`) as a failure, and a
retry does not retry them unless its policy names them.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from . import _validate as v
from ._breaker import CircuitBreaker
from ._breaker_registry import CircuitBreakerDecorator
from ._bulkhead import Bulkhead
from ._bulkhead_manager import BulkheadDecorator
from ._dead_letter import DeadLetterDecorator
from ._decorate import is_async
from ._fallback_manager import FallbackDecorator
from ._limiter import KeyedLimit, KeyedRateLimiter, RateLimiter
from ._retry import RetryDecorator, RetryPolicy
from ._timeout import Timeout
from .chaos import Chaos

__all__ = ["Layer", "Pipeline"]

F = TypeVar("F", bound=Callable[..., Any])


class Layer:
    """One policy of a pipeline, as the pipeline understands it.

    Attributes:
        kind: "retry", "breaker", "limiter", "keyed", "bulkhead", "timeout", "fallback",
            "dead_letter", "chaos", or "custom" (a decorator riprap does not know).
        policy: The decorator object itself.
        label: How `repr` and `explain()` name it.
    """

    __slots__ = ("kind", "label", "policy")

    def __init__(self, kind: str, policy: Callable[[Any], Any], label: str) -> None:
        self.kind = kind
        self.policy = policy
        self.label = label

    def __repr__(self) -> str:
        return f"Layer({self.kind}: {self.label})"


def _layer(policy: object) -> Layer:
    if isinstance(policy, RetryPolicy):
        policy = RetryDecorator(policy)
    if isinstance(policy, RetryDecorator):
        p = policy.policy
        return Layer(
            "retry",
            policy,
            f"retry(max_attempts={p.max_attempts}, {p.backoff_strategy} from "
            f"{p.base_delay:g}s)",
        )
    if isinstance(policy, CircuitBreaker):
        return Layer("breaker", policy, f"breaker {policy.name!r}")
    if isinstance(policy, CircuitBreakerDecorator):
        return Layer("breaker", policy, f"breaker {policy.name!r}")
    if isinstance(policy, KeyedRateLimiter):
        raise TypeError(
            "a KeyedRateLimiter in a pipeline needs its key: use limiter(key=lambda *args, "
            "**kwargs: ...)"
        )
    if isinstance(policy, RateLimiter):
        return Layer("limiter", policy, f"limiter {policy.name!r} ({policy.rate:g}/s)")
    if isinstance(policy, KeyedLimit):
        name = policy.limiter.name
        return Layer(
            "keyed", policy, f"keyed limiter {name!r} ({policy.limiter.rate:g}/s)"
        )
    if isinstance(policy, Bulkhead):
        return Layer("bulkhead", policy, f"bulkhead {policy.name!r}")
    if isinstance(policy, BulkheadDecorator):
        return Layer("bulkhead", policy, f"bulkhead {policy.resource_type!r}")
    if isinstance(policy, Timeout):
        return Layer("timeout", policy, f"timeout({policy.seconds:g}s)")
    if isinstance(policy, FallbackDecorator):
        return Layer("fallback", policy, "fallback")
    if isinstance(policy, DeadLetterDecorator):
        return Layer("dead_letter", policy, "dead letter")
    if isinstance(policy, Chaos):
        return Layer("chaos", policy, f"chaos(rate={policy.rate:g})")
    if callable(policy):
        label = getattr(policy, "__qualname__", None) or repr(policy)
        return Layer("custom", cast(Callable[[Any], Any], policy), str(label))
    raise TypeError(
        f"a Pipeline takes riprap policies or decorators, got {type(policy).__name__}"
    )


#: What each kind does, in words, for `explain()`.
_DOES = {
    "retry": "retries what fails inside it (riprap's own rejections only if named)",
    "breaker": "counts failures inside it and rejects calls while open (inner rejections "
    "never count)",
    "limiter": "takes a token per call that reaches it (waits or rejects per on_limit)",
    "keyed": "takes a token from the call's key per call that reaches it",
    "bulkhead": "holds a slot while the layers inside it run (queues or rejects when full)",
    "timeout": "bounds the time of the layers inside it",
    "fallback": "answers with fallbacks, a cached result or a default when the layers inside "
    "it fail",
    "dead_letter": "records calls whose failure reaches it, then re-raises",
    "chaos": "injects faults and latency before the layers inside it",
    "custom": "a decorator riprap does not know",
}


class Pipeline:
    """The policies of one dependency, outermost first, as one decorator.

    `Pipeline(a, b, c)(f)` is `a(b(c(f)))`, on sync and async functions and methods (the
    colour, `__wrapped__`, name and signature are kept). Example, in the order that usually
    serves a call best (see the README, "Choosing an order"):

        pipeline = riprap.Pipeline(
            riprap.fallback(read_replica),
            riprap.RetryPolicy(max_attempts=3, base_delay=0.2, deadline=10.0),
            breaker,
            bulkhead,
            limiter,
            riprap.timeout(2.0),
        )

        @pipeline
        async def fetch(agent_id: str) -> dict: ...

    Args:
        *policies: riprap policies or other decorators, outermost first.
        name: A name for `repr` and `explain()`.
    """

    __slots__ = ("_cache", "_layers", "name")

    def __init__(self, *policies: object, name: str | None = None) -> None:
        if not policies:
            raise TypeError("a Pipeline needs at least one policy")
        self._layers = tuple(_layer(p) for p in policies)
        self.name = v.name(name)
        self._cache: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers, outermost first."""
        return self._layers

    def __call__(self, func: F) -> F:
        """Run every call of `func` through the pipeline (a decorator)."""
        wrapped: Any = func
        for layer in reversed(self._layers):
            wrapped = layer.policy(wrapped)
        return cast(F, wrapped)

    def _decorated(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return cast(Callable[..., Any], self._cache[func])
        except (KeyError, TypeError):
            pass
        decorated = self(func)
        # A function that is not weakly referenceable is decorated on each call.
        with contextlib.suppress(TypeError):
            self._cache[func] = decorated
        return decorated

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run one call of the sync function `func(*args, **kwargs)` through the pipeline."""
        if is_async(func):
            raise TypeError(
                "Pipeline.call runs sync functions; await pipeline.acall(...) for "
                f"{getattr(func, '__qualname__', func)!r}"
            )
        return self._decorated(func)(*args, **kwargs)

    async def acall(
        self, func: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        """Run one call of `func(*args, **kwargs)` through the pipeline and await it.

        `func` may be a coroutine function (its layers are async) or a sync function (its
        layers are sync: waits block the event loop; prefer async functions here).
        """
        result = self._decorated(func)(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    def warnings(self) -> list[str]:
        """Orders users regret, in words (empty when there is nothing to say)."""
        return _order_warnings(self._layers)

    def explain(self) -> str:
        """The layers, what each does with the errors of the layers inside it, and warnings."""
        lines = [f"{self!r}, outermost first:"]
        for i, layer in enumerate(self._layers, 1):
            lines.append(f"  {i}. {layer.label}: {_DOES[layer.kind]}")
        problems = self.warnings()
        if problems:
            lines.append("Order warnings:")
            lines.extend(f"  - {p}" for p in problems)
        else:
            lines.append("No order warnings.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        order = " -> ".join(layer.label for layer in self._layers)
        name = f"{self.name!r}: " if self.name else ""
        return f"Pipeline({name}{order})"


def _order_warnings(layers: Sequence[Layer]) -> list[str]:
    kinds = [layer.kind for layer in layers]
    out: list[str] = []

    def index(kind: str) -> int | None:
        return kinds.index(kind) if kind in kinds else None

    fallback, retry = index("fallback"), index("retry")
    if fallback is not None and fallback > 0:
        outer = ", ".join(layers[i].label for i in range(fallback))
        out.append(
            f"the fallback is inside {outer}: it answers every failure first, so those "
            "layers never see one; put the fallback outermost"
        )
    if retry is not None:
        # A per-attempt timeout is the right thing when something else bounds the whole call.
        policy = cast(RetryDecorator, layers[retry].policy).policy
        whole_call_bounded = policy.deadline is not None or "timeout" in kinds[:retry]
        for layer in layers[retry + 1 :]:
            if layer.kind == "timeout" and not whole_call_bounded:
                out.append(
                    f"{layer.label} is inside retry: it bounds each attempt, not the whole "
                    "call; give the RetryPolicy a deadline (or add a timeout outside retry) "
                    "to bound all attempts"
                )
            if layer.kind == "dead_letter":
                out.append(
                    "the dead letter is inside retry: it records every failed attempt; put "
                    "it outside retry to record only calls whose retries ran out"
                )
        for layer in layers[:retry]:
            if layer.kind in ("limiter", "keyed"):
                out.append(
                    f"{layer.label} is outside retry: only the first attempt takes a token, "
                    "so retries bypass the limit; put it inside retry"
                )
            if layer.kind == "bulkhead":
                out.append(
                    f"{layer.label} is outside retry: a call holds its slot through the "
                    "backoff sleeps between attempts; put it inside retry"
                )
    out.extend(_blind_breakers(layers, kinds))
    return out


def _blind_breakers(layers: Sequence[Layer], kinds: list[str]) -> list[str]:
    """Breakers that cannot see a hang: it is cut short outside them, never inside.

    A timeout (or a bulkhead's own timeout, on async calls) cuts an async call short by
    cancelling it, and a breaker counts a cancellation as neither success nor failure; a sync
    call it abandons reaches the breaker only when it really ends, if ever. Cut outside the
    breaker only, a dependency that hangs never opens it.
    """
    out: list[str] = []
    for b, breaker in enumerate(layers):
        if breaker.kind != "breaker" or "timeout" in kinds[b + 1 :]:
            continue
        for layer in layers[:b]:
            if layer.kind == "timeout":
                out.append(
                    f"{layer.label} is outside {breaker.label} and no timeout is inside "
                    "it: a call it cuts short never reaches the breaker as a failure (an "
                    "async call is cancelled, a sync one is abandoned), so a hanging "
                    "dependency never opens it; add a timeout inside the breaker"
                )
            elif layer.kind == "bulkhead":
                out.append(
                    f"{layer.label} is outside {breaker.label}: an async call the "
                    "bulkhead's timeout cuts short reaches the breaker as a cancellation, "
                    "not a failure; put the breaker outside the bulkhead (or a timeout "
                    "inside the breaker)"
                )
    return out
