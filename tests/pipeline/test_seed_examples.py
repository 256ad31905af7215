"""The seed design's usage examples, written with riprap's names, against scripted fakes.

The design riprap grew from ends its retry, circuit breaker, bulkhead and fallback sections
with usage examples: an agent command under the network retry policy, an agent status update
under the database policy, breakers around agent communication and an external API, bulkheads
around database and agent calls, a fallback-protected agent status read, and the fallback
manager's agent, database and external API chains; its architecture diagram stacks all the
layers in front of those three services. Each test does what one example does for its user,
against a fake service whose faults are scripted, on a ManualClock, and checks the behaviour
the example exists for (how many attempts, when a breaker opens, who a bulkhead turns away,
which level of a fallback chain answers). The examples' own code is sample code; only their
intent is reproduced here. Managers and registries are private to each test (`registry=`,
`manager=`), so the global ones stay untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from seed_fakes import (
    ClientError,
    ClientResponseError,
    FakeAgent,
    FakeDatabase,
    FakeExternalAPI,
    Hang,
    gaps,
    within_jitter,
)

import riprap
from riprap.testing import ManualClock

# --- "Retry Pattern Implementation": usage examples ---------------------------------------


def network_retry(clock: ManualClock, agent: FakeAgent) -> Callable[..., Any]:
    @riprap.RetryDecorator(riprap.NETWORK_RETRY_POLICY, clock=clock)
    async def send_agent_command(agent_id: str, command: dict[str, Any]) -> Any:
        return await agent.command(agent_id, command)

    return send_agent_command


def test_send_agent_command_retries_network_faults_with_exponential_backoff(
    clock: ManualClock,
) -> None:
    agent = FakeAgent(clock)
    send_agent_command = network_retry(clock, agent)
    agent.command.then(
        ConnectionError("connection reset by peer"),
        ClientResponseError(503),  # retried by its status, like aiohttp's error
        TimeoutError(),
        OSError("network unreachable"),
    )
    result = asyncio.run(send_agent_command("a1", {"op": "reboot"}))
    assert result == {"agent": "a1", "done": "reboot"}
    # NETWORK_RETRY_POLICY: 5 attempts, 1 s doubling (capped at 30 s), ±10 % jitter.
    assert len(agent.command.calls) == 5
    assert within_jitter(gaps(agent.command.calls), [1.0, 2.0, 4.0, 8.0])


def test_send_agent_command_gives_up_with_the_agents_own_error(
    clock: ManualClock,
) -> None:
    agent = FakeAgent(clock)
    send_agent_command = network_retry(clock, agent)
    last = ConnectionError("connection refused")
    agent.command.then(*[ConnectionError("connection refused") for _ in range(4)], last)
    with pytest.raises(ConnectionError) as info:
        asyncio.run(send_agent_command("a1", {"op": "reboot"}))
    assert info.value is last
    assert len(agent.command.calls) == 5

    # A client error (HTTP 404) is the caller's mistake: one attempt, no retry.
    agent.command.calls.clear()
    agent.command.then(ClientResponseError(404))
    with pytest.raises(ClientResponseError):
        asyncio.run(send_agent_command("a1", {"op": "reboot"}))
    assert len(agent.command.calls) == 1


def test_send_agent_command_bounds_each_attempt_like_its_30s_client_timeout(
    clock: ManualClock,
) -> None:
    # aiohttp.ClientTimeout(total=30) on each request: riprap.timeout(30) inside the retry.
    agent = FakeAgent(clock)

    @riprap.RetryDecorator(riprap.NETWORK_RETRY_POLICY, clock=clock)
    @riprap.timeout(30.0, clock=clock)
    async def send_agent_command(agent_id: str, command: dict[str, Any]) -> Any:
        return await agent.command(agent_id, command)

    agent.command.then(Hang(31.0), Hang(29.0))
    result = asyncio.run(send_agent_command("a2", {"op": "update"}))
    assert result == {"agent": "a2", "done": "update"}
    # The hung attempt ended as a TimeoutExceededError (a TimeoutError), which was retried.
    assert len(agent.command.calls) == 2


def database_retry(clock: ManualClock, db: FakeDatabase) -> Callable[..., Any]:
    @riprap.RetryDecorator(riprap.DATABASE_RETRY_POLICY, clock=clock)
    async def update_agent_status(agent_id: str, status: str) -> None:
        await db.execute(
            "UPDATE agents SET status = $1, last_updated = NOW() WHERE id = $2",
            status,
            agent_id,
        )

    return update_agent_status


def test_update_agent_status_retries_database_faults_three_times(
    clock: ManualClock,
) -> None:
    db = FakeDatabase(clock)
    update_agent_status = database_retry(clock, db)
    db.execute.then(ConnectionError("connection reset"), TimeoutError())
    asyncio.run(update_agent_status("a1", "online"))
    assert db.status == {"a1": "online"}
    # DATABASE_RETRY_POLICY: 3 attempts, 0.5 s doubling, ±10 % jitter.
    assert within_jitter(gaps(db.execute.calls), [0.5, 1.0])

    db.execute.calls.clear()
    db.execute.then(*[ConnectionError("connection reset")] * 3)
    with pytest.raises(ConnectionError):
        asyncio.run(update_agent_status("a1", "offline"))
    assert len(db.execute.calls) == 3
    assert db.status == {"a1": "online"}


def test_update_agent_status_does_not_retry_what_the_database_policy_leaves_out(
    clock: ManualClock,
) -> None:
    db = FakeDatabase(clock)
    update_agent_status = database_retry(clock, db)
    # The database policy retries ConnectionError and TimeoutError only, not every OSError.
    db.execute.then(PermissionError("read-only file system"))
    with pytest.raises(PermissionError):
        asyncio.run(update_agent_status("a1", "online"))
    assert len(db.execute.calls) == 1
    # The network policy, which lists OSError, would have retried it.
    assert riprap.NETWORK_RETRY_POLICY.is_retryable(PermissionError("read-only"))
    assert not riprap.DATABASE_RETRY_POLICY.is_retryable(PermissionError("read-only"))


def test_update_agent_status_through_a_retry_manager_keeps_honest_statistics(
    clock: ManualClock,
) -> None:
    # The seed's RetryDecorator runs on its RetryManager and keeps statistics per operation.
    db = FakeDatabase(clock)
    manager = riprap.RetryManager(riprap.DATABASE_RETRY_POLICY, clock=clock)
    sql = "UPDATE agents SET status = $1 WHERE id = $2"

    async def updates() -> None:
        db.execute.then(Hang(0.25), ConnectionError("reset"))  # ok; then fail, ok
        for agent_id in ("a1", "a2"):
            await manager.retry_with_backoff(
                db.execute, sql, "online", agent_id, operation_id="update_agent_status"
            )
        db.execute.then(*[TimeoutError()] * 3)
        with pytest.raises(TimeoutError):
            await manager.retry_with_backoff(
                db.execute, sql, "online", "a3", operation_id="update_agent_status"
            )

    asyncio.run(updates())
    stats = manager.get_retry_statistics("update_agent_status")
    assert stats["total_calls"] == 3
    assert stats["total_attempts"] == 1 + 2 + 3
    assert stats["success_rate"] == pytest.approx(2 / 3)  # not the seed's constant 1.0
    assert stats["max_attempt_time"] == pytest.approx(0.25)
    assert db.status == {"a1": "online", "a2": "online"}


# --- "Circuit Breaker Pattern": usage examples --------------------------------------------


def test_agent_communication_breaker_opens_after_3_failures_and_closes_after_2_successes(
    clock: ManualClock,
) -> None:
    agent = FakeAgent(clock)
    registry = riprap.CircuitBreakerRegistry()

    @riprap.CircuitBreakerDecorator(
        name="agent_communication",
        config=riprap.CircuitBreakerConfig(
            failure_threshold=3, timeout=30.0, success_threshold=2
        ),
        clock=clock,
        registry=registry,
    )
    async def send_agent_command(agent_id: str, command: dict[str, Any]) -> Any:
        return await agent.command(agent_id, command)

    breaker = registry.get_breaker("agent_communication")

    async def run() -> None:
        agent.command.then(*[ConnectionError("connection refused")] * 3)
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await send_agent_command("a1", {"op": "ping"})
        assert breaker.state is riprap.CircuitState.OPEN
        clock.advance(29.0)
        with pytest.raises(riprap.CircuitBreakerOpenException) as info:
            await send_agent_command("a1", {"op": "ping"})
        assert info.value.retry_after == pytest.approx(1.0)
        assert (
            len(agent.command.calls) == 3
        )  # the rejected call never reached the agent
        clock.advance(1.0)
        assert breaker.state is riprap.CircuitState.HALF_OPEN
        await send_agent_command("a1", {"op": "ping"})
        assert breaker.state is riprap.CircuitState.HALF_OPEN  # one success of two
        await send_agent_command("a1", {"op": "ping"})
        assert breaker.state is riprap.CircuitState.CLOSED

        # A failed trial call opens it again for another 30 s.
        agent.command.then(*[ConnectionError("connection refused")] * 4)
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await send_agent_command("a1", {"op": "ping"})
        clock.advance(30.0)
        with pytest.raises(ConnectionError):
            await send_agent_command("a1", {"op": "ping"})
        with pytest.raises(riprap.CircuitOpenError) as again:
            await send_agent_command("a1", {"op": "ping"})
        assert again.value.retry_after == pytest.approx(30.0)

    asyncio.run(run())
    assert breaker.get_stats()["total_rejected"] == 2


def test_external_api_breaker_counts_only_client_errors(clock: ManualClock) -> None:
    api = FakeExternalAPI(clock)
    registry = riprap.CircuitBreakerRegistry()
    guard = riprap.CircuitBreakerDecorator(
        name="external_api",
        config=riprap.CircuitBreakerConfig(
            failure_threshold=5, timeout=60.0, expected_exception=ClientError
        ),
        clock=clock,
        registry=registry,
    )

    @guard
    async def call_external_api(endpoint: str, data: dict[str, Any]) -> Any:
        if "id" not in data:
            raise ValueError("data needs an id")  # the caller's bug, not the API's
        return await api.main(endpoint, data)

    @guard  # the same name: the same breaker
    async def fetch_external_status(endpoint: str) -> Any:
        return await api.main(endpoint, {"id": 0})

    async def run() -> None:
        for _ in range(12):
            with pytest.raises(ValueError):
                await call_external_api("/sync", {})
        assert guard.breaker.state is riprap.CircuitState.CLOSED
        api.main.then(*[ClientResponseError(502)] * 5)
        for _ in range(4):
            with pytest.raises(ClientResponseError):
                await call_external_api("/sync", {"id": 1})
        assert guard.breaker.state is riprap.CircuitState.CLOSED
        with pytest.raises(ClientResponseError):
            await call_external_api("/sync", {"id": 1})
        assert guard.breaker.state is riprap.CircuitState.OPEN
        with pytest.raises(riprap.CircuitOpenError):
            await fetch_external_status("/status")
        clock.advance(60.0)
        assert await fetch_external_status("/status") == {
            "from": "main",
            "echo": {"id": 0},
        }

    asyncio.run(run())
    stats = guard.breaker.get_stats()
    assert (stats["total_failures"], stats["total_ignored"]) == (5, 12)
    assert len(api.main.calls) == 6


# --- "Bulkhead Isolation Pattern": usage examples -----------------------------------------


def test_update_agent_metrics_runs_20_at_once_queues_100_and_rejects_the_rest(
    clock: ManualClock,
) -> None:
    manager = riprap.BulkheadManager()
    running, peak, done = 0, 0, []

    @riprap.BulkheadDecorator("database", clock=clock, manager=manager)
    async def update_agent_metrics(agent_id: int, metrics: dict[str, float]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        done.append(agent_id)

    async def run() -> list[Any]:
        tasks = [
            asyncio.create_task(update_agent_metrics(i, {"cpu": 0.5}))
            for i in range(121)
        ]
        for _ in range(3):
            await asyncio.sleep(0)
        s = manager.get_bulkhead("database").get_stats()
        assert (s["active_calls"], s["queued_calls"], s["rejected_calls"]) == (
            20,
            100,
            1,
        )
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    release = asyncio.Event()
    results = asyncio.run(run())
    assert isinstance(results[120], riprap.BulkheadRejectedException)
    assert peak == 20
    assert sorted(done) == list(range(120))
    assert done[20:] == list(
        range(20, 120)
    )  # the queue is served first come, first served
    s = manager.get_all_stats()["database"]
    assert s["rejection_rate"] == pytest.approx(1 / 121)
    assert (s["active_calls"], s["queued_calls"]) == (0, 0)


def test_update_agent_metrics_is_cut_at_the_database_bulkheads_10s(
    clock: ManualClock,
) -> None:
    manager = riprap.BulkheadManager()
    db = FakeDatabase(clock)

    @riprap.BulkheadDecorator("database", clock=clock, manager=manager)
    async def update_agent_metrics(agent_id: str, metrics: dict[str, float]) -> None:
        await db.execute("UPDATE agents SET status = $1", "busy", agent_id)

    db.execute.then(Hang(9.0), Hang(11.0))
    asyncio.run(update_agent_metrics("a1", {}))
    with pytest.raises(riprap.BulkheadTimeoutException) as info:
        asyncio.run(update_agent_metrics("a2", {}))
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == 10.0
    s = manager.get_bulkhead("database").get_stats()
    assert (s["timed_out_calls"], s["active_calls"]) == (1, 0)


def test_send_command_to_agent_is_not_starved_by_a_full_database_bulkhead(
    clock: ManualClock,
) -> None:
    manager = riprap.BulkheadManager()
    agent = FakeAgent(clock)
    database_back, agents_answer = asyncio.Event(), asyncio.Event()

    @riprap.BulkheadDecorator("database", clock=clock, manager=manager)
    async def update_agent_metrics(agent_id: int, metrics: dict[str, float]) -> None:
        await database_back.wait()

    @riprap.BulkheadDecorator("agent_communication", clock=clock, manager=manager)
    async def send_command_to_agent(agent_id: int, command: dict[str, Any]) -> Any:
        await agents_answer.wait()
        return await agent.command(agent_id, command)

    def in_use(name: str) -> tuple[int, int, int]:
        s = manager.get_bulkhead(name).get_stats()
        return (s["active_calls"], s["queued_calls"], s["rejected_calls"])

    async def run() -> list[Any]:
        db_calls = [
            asyncio.create_task(update_agent_metrics(i, {})) for i in range(120)
        ]
        await asyncio.sleep(0)
        with pytest.raises(riprap.BulkheadRejectedError):
            await update_agent_metrics(999, {})
        assert in_use("database") == (20, 100, 1)
        # The database is saturated; agent communication has 50 slots of its own.
        commands = [
            asyncio.create_task(send_command_to_agent(i, {"op": "ping"}))
            for i in range(51)
        ]
        await asyncio.sleep(0)
        assert in_use("agent_communication") == (50, 1, 0)
        agents_answer.set()
        answers = await asyncio.gather(*commands)
        database_back.set()
        await asyncio.gather(*db_calls)
        return answers

    answers = asyncio.run(run())
    assert [a["agent"] for a in answers] == list(range(51))
    assert in_use("agent_communication") == (0, 0, 0)
    assert in_use("database") == (0, 0, 1)


# --- "Fallback and Graceful Degradation": usage examples ----------------------------------


def test_get_agent_status_answers_from_the_cache_then_the_default(
    clock: ManualClock,
) -> None:
    agent = FakeAgent(clock)
    manager = riprap.ServiceFallbackManager()
    unavailable = {"status": "error", "message": "Service unavailable"}

    def generate_agent_cache_key(agent_id: str) -> str:
        # The seed's key function also takes a `command` that get_agent_status does not have.
        return f"agent_{agent_id}"

    @riprap.FallbackDecorator(
        service_name="agent_communication",
        cache_key_func=generate_agent_cache_key,
        default_value=unavailable,
        clock=clock,
        manager=manager,
    )
    async def get_agent_status(agent_id: str) -> Any:
        return await agent.status(agent_id)

    online = {"agent": "a1", "status": "online"}
    assert asyncio.run(get_agent_status("a1")) == online
    agent.status.then(*[ConnectionError("connection refused")] * 3)
    clock.advance(299.0)
    assert (
        asyncio.run(get_agent_status("a1")) == online
    )  # cached, within cache_ttl (300 s)
    assert asyncio.run(get_agent_status("a2")) == unavailable  # never seen: the default
    clock.advance(2.0)
    assert (
        asyncio.run(get_agent_status("a1")) == unavailable
    )  # the cached status expired
    stats = manager.get_strategy("agent_communication").get_stats()
    assert (stats["cache_fallbacks"], stats["default_fallbacks"]) == (1, 2)

    # A key function that does not fit the call fails loudly, before the agent is called.
    def two_argument_key(agent_id: str, command: dict[str, Any]) -> str:
        return f"agent_{agent_id}_{hash(str(command))}"

    @riprap.fallback(cache_key=two_argument_key, default=unavailable, clock=clock)
    async def get_agent_status_seed_key(agent_id: str) -> Any:
        return await agent.status(agent_id)

    calls = len(agent.status.calls)
    with pytest.raises(TypeError):
        asyncio.run(get_agent_status_seed_key("a1"))
    assert len(agent.status.calls) == calls


def test_agent_communication_with_fallback_tries_the_alternative_endpoint_then_queues(
    clock: ManualClock,
) -> None:
    # ServiceFallbackManager.agent_communication_with_fallback is not a riprap method: the
    # same chain runs through the manager's strategy for "agent_communication".
    agent = FakeAgent(clock)
    strategy = riprap.ServiceFallbackManager().get_strategy(
        "agent_communication", clock=clock
    )

    async def queue_agent_command(agent_id: str, command: dict[str, Any]) -> Any:
        await agent.enqueue(agent_id, command)
        return {"status": "queued", "message": "Command queued for later execution"}

    def agent_communication_with_fallback(
        agent_id: str, command: dict[str, Any]
    ) -> Any:
        return strategy.execute_with_fallback(
            agent.command,
            [agent.alt_command, queue_agent_command],
            agent_id,
            command,
            cache_key=f"agent_command_{agent_id}",
            default_value={"status": "unavailable", "message": "Agent unavailable"},
        )

    async def run() -> None:
        ping = {"op": "ping"}
        assert await agent_communication_with_fallback("a1", ping) == {
            "agent": "a1",
            "done": "ping",
        }
        agent.command.then(ConnectionError("refused"))
        assert (await agent_communication_with_fallback("a1", ping))["done"] == "ping"
        assert len(agent.alt_command.calls) == 1

        agent.command.then(ConnectionError("refused"))
        agent.alt_command.then(ConnectionError("refused"))
        reply = await agent_communication_with_fallback("a1", {"op": "upgrade"})
        assert reply["status"] == "queued"
        assert agent.queued == [("a1", {"op": "upgrade"})]

        # Everything down: the last direct answer for that agent, else the default.
        for _ in range(2):
            agent.command.then(ConnectionError("refused"))
            agent.alt_command.then(ConnectionError("refused"))
            agent.enqueue.then(OSError("queue full"))
        assert await agent_communication_with_fallback("a1", ping) == {
            "agent": "a1",
            "done": "ping",
        }
        reply = await agent_communication_with_fallback("a9", ping)
        assert reply["status"] == "unavailable"

    asyncio.run(run())
    stats = strategy.get_stats()
    assert stats["fallback_successes"] == 2
    assert (stats["cache_fallbacks"], stats["default_fallbacks"]) == (1, 1)


def test_database_query_with_fallback_reads_the_replicas_in_order(
    clock: ManualClock,
) -> None:
    db = FakeDatabase(clock)
    strategy = riprap.ServiceFallbackManager().get_strategy("database", clock=clock)
    sql = "SELECT * FROM agents"

    def database_query_with_fallback(query: str, params: tuple[Any, ...] = ()) -> Any:
        return strategy.execute_with_fallback(
            db.primary,
            db.replicas,
            query,
            params,
            cache_key=f"query_{query}",
            default_value=[],
        )

    async def run() -> None:
        assert await database_query_with_fallback(sql) == [{"from": "primary"}]
        db.primary.then(ConnectionError("primary down"))
        assert await database_query_with_fallback(sql) == [{"from": "replica 1"}]
        # Replica 1 answers after 6 s, past the 5 s degraded_timeout: replica 2 answers.
        db.primary.then(ConnectionError("primary down"))
        db.replicas[0].then(Hang(6.0))
        assert await database_query_with_fallback(sql) == [{"from": "replica 2"}]
        for _ in range(2):
            db.primary.then(ConnectionError("primary down"))
            for replica in db.replicas:
                replica.then(ConnectionError("replica down"))
        assert await database_query_with_fallback(sql) == [
            {"from": "primary"}
        ]  # cached
        clock.advance(300.0)
        assert await database_query_with_fallback(sql) == []  # expired: the default

    asyncio.run(run())
    stats = strategy.get_stats()
    assert stats["timeouts"] == 1
    assert (stats["cache_fallbacks"], stats["default_fallbacks"]) == (1, 1)


def test_external_api_with_fallback_uses_the_backup_then_the_cache_then_the_default(
    clock: ManualClock,
) -> None:
    # The seed's second fallback reads the strategy's private cache; in riprap the cache is
    # a level of every chain (after the fallbacks), so the backup is the only fallback here.
    api = FakeExternalAPI(clock)
    strategy = riprap.ServiceFallbackManager().get_strategy("external_api", clock=clock)
    unavailable = {"status": "unavailable", "data": None}

    def external_api_with_fallback(endpoint: str, data: dict[str, Any]) -> Any:
        return strategy.execute_with_fallback(
            api.main,
            [api.backup],
            endpoint,
            data,
            cache_key=f"api_{endpoint}",
            default_value=unavailable,
        )

    async def run() -> None:
        assert (await external_api_with_fallback("/fleet", {"n": 1}))["from"] == "main"
        api.main.then(ClientResponseError(503))
        assert (await external_api_with_fallback("/fleet", {"n": 2}))[
            "from"
        ] == "backup"
        api.main.then(ClientResponseError(503), ClientResponseError(503))
        api.backup.then(ClientResponseError(503), ClientResponseError(503))
        cached = await external_api_with_fallback("/fleet", {"n": 3})
        assert cached == {
            "from": "main",
            "echo": {"n": 1},
        }  # the main API's last answer
        assert await external_api_with_fallback("/other", {"n": 4}) == unavailable

    asyncio.run(run())
    assert len(api.main.calls) == 4
    assert len(api.backup.calls) == 3


# --- "Resilience Architecture": every layer in front of one service -----------------------


def test_the_resilience_layer_in_front_of_an_external_api(
    clock: ManualClock, tmp_path: Path
) -> None:
    api = FakeExternalAPI(clock)
    breaker = riprap.CircuitBreaker(
        "external_api", riprap.CircuitBreakerConfig(failure_threshold=3), clock=clock
    )
    bulkhead = riprap.Bulkhead("external_api", clock=clock)
    limiter = riprap.RateLimiter(5.0, 10.0, name="external_api", clock=clock)
    policy = riprap.RetryPolicy(max_attempts=3, base_delay=1.0, deadline=20.0)
    unavailable = {"status": "unavailable", "data": None}
    with riprap.DeadLetterQueue(tmp_path / "dlq.sqlite3") as queue:
        pipeline = riprap.Pipeline(
            riprap.fallback(default=unavailable, clock=clock),
            riprap.dead_letter(queue, operation="external_api.post"),
            riprap.RetryDecorator(policy, clock=clock),
            breaker,
            bulkhead,
            limiter,
            riprap.timeout(5.0, clock=clock),
        )
        assert pipeline.warnings() == []

        @pipeline
        async def post(endpoint: str, data: dict[str, Any]) -> Any:
            return await api.main(endpoint, data)

        async def run() -> None:
            # A hung attempt and a 503 are retried; the call still succeeds.
            api.main.then(Hang(6.0), ClientResponseError(503))
            assert (await post("/sync", {"n": 1}))["from"] == "main"
            assert len(api.main.calls) == 3
            assert (
                breaker.state is riprap.CircuitState.CLOSED
            )  # success reset the count
            # An outage: retries run out, the breaker opens, the call is recorded, the
            # caller gets the default.
            api.main.then(*[ConnectionError("connection refused")] * 3)
            assert await post("/sync", {"n": 2}) == unavailable
            assert breaker.state is riprap.CircuitState.OPEN
            # While open, calls are answered at once without reaching the API.
            assert await post("/sync", {"n": 3}) == unavailable
            assert len(api.main.calls) == 6
            entries = queue.list()
            assert [e.args for e in entries] == [
                ("/sync", {"n": 2}),
                ("/sync", {"n": 3}),
            ]
            errors = [e.error_type.rsplit(".", 1)[-1] for e in entries]
            assert errors == ["ConnectionError", "CircuitOpenError"]
            # Later the API is back: the recorded calls are replayed.
            clock.advance(60.0)
            replayed = await queue.replay_async(lambda e: api.main(*e.args))
            assert replayed == (2, 0)
            assert queue.count() == 0

        asyncio.run(run())
    assert limiter.get_stats()["admitted"] == 6  # every attempt that reached the API
    assert bulkhead.get_stats()["active_calls"] == 0
