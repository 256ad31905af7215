"""The Lua scripts themselves: a static check of the rules every script keeps, the keys each
primitive passes (one hash tag per script), and the GCRA script at the TTL edges."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from riprap import CircuitBreaker, KeyedRateLimiter, RateLimiter
from riprap._redis import scripts
from riprap._redis.server import RedisServer
from riprap.testing import ManualClock

# Commands whose first argument is a key.
KEYED = {
    "GET",
    "SET",
    "DEL",
    "EXISTS",
    "PTTL",
    "PEXPIRE",
    "HMGET",
    "HSET",
    "HDEL",
    "HINCRBY",
    "ZADD",
    "ZREM",
    "ZCARD",
    "ZRANGE",
    "ZREMRANGEBYSCORE",
}
WRITES = {"SET", "HSET", "HINCRBY", "ZADD"}
ALIAS = re.compile(r"local ([\w, ]+) = (KEYS\[\d\](?:, KEYS\[\d\])*)")
CALL = re.compile(r"redis\.call\('([A-Z]+)'(?:,\s*([^,)]+))?")


@pytest.mark.parametrize("name", sorted(scripts.SCRIPTS))
def test_reg_D5_every_key_is_in_KEYS_and_numbers_in_ARGV(name: str) -> None:
    source = scripts.SCRIPTS[name]
    # Keys reach a script only through KEYS[] (directly, or a local alias of KEYS[n]).
    aliases: dict[str, str] = {}
    for names, values in ALIAS.findall(source):
        aliases.update(
            zip(
                names.replace(" ", "").split(","),
                re.findall(r"KEYS\[\d\]", values),
                strict=True,
            )
        )

    calls = CALL.findall(source)
    assert calls, "no redis.call found"
    for command, first in calls:
        assert command in KEYED | {"TIME"}, f"{name}: unexpected command {command}"
        if command == "TIME":
            continue
        key = aliases.get(first.strip(), first.strip())
        assert re.fullmatch(r"KEYS\[\d\]", key), f"{name}: {command} on {key}"
    # Nothing but KEYS[] and ARGV[] comes from outside: no literal key names, no numbers
    # that configure a decision written into the script (they arrive in ARGV).
    assert not re.search(r"'riprap", source)
    assert "unpack(KEYS" not in source
    # Every script that writes also sets a TTL in the same call or the same script.
    written = {c for c, _ in calls} & WRITES
    if written:
        assert "PEXPIRE" in source or "'PX'" in source, name
    # A script that asks for TIME allows effects replication on servers that need it.
    if "redis.call('TIME')" in source:
        assert (
            "if redis.replicate_commands then redis.replicate_commands() end" in source
        )


def _slot(key: str | bytes) -> int:
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def test_reg_D5_the_keys_of_one_script_share_one_hash_tag(url: str) -> None:
    lim = RateLimiter(1, name="api:v1", storage=url)
    assert lim._key == "riprap:{api:v1}:gcra"
    keyed = KeyedRateLimiter(1, name="per-user", storage=url)
    key = keyed._redis_key("alice")
    assert key == b"riprap:{per-user:salice}:gcra"
    assert _slot(key) == _slot(b"per-user:salice")  # each key its own tag: spread out
    shared = CircuitBreaker("payments", storage=url)
    state, window = shared._shared.keys
    assert _slot(state) == _slot(window) == _slot("payments")
    quorum = CircuitBreaker("payments", storage=url, shared="quorum")
    voters, opened = quorum._shared.keys
    assert _slot(voters) == _slot(opened) == _slot("payments")


NS = 10**9
NOW = 1_700_000_000 * NS + 123_456_789
INTERVAL = NS // 4  # rate 4/s
TAU = 2 * INTERVAL  # burst 2


@given(
    offset=st.sampled_from(
        [None, -10 * NS, -1, 0, 1, INTERVAL, TAU - 1, TAU, TAU + 1, 10 * NS]
    ),
    ttl=st.sampled_from(["none", "1ms", "long"]),
    n=st.sampled_from([1, 2]),
)
def test_reg_D2_decisions_at_the_ttl_edges(
    redis_server: RedisServer, offset: int | None, ttl: str, n: int
) -> None:
    """A stored TAT with no TTL, one about to expire, or none at all, gives the GCRA
    decision for what is there, and leaves a TTL behind."""
    client = redis_server.client()
    clock = ManualClock(NOW / NS)
    lim = RateLimiter(
        4, 2, name="edge", storage=redis_server.url, clock=clock, time_source="client"
    )
    now = clock.now_ns()
    key = "riprap:{edge}:gcra"
    client.delete(key)
    if offset is not None:
        client.set(key, str(now + offset))
        if ttl == "1ms":
            client.pexpire(key, 1)
        elif ttl == "long":
            client.pexpire(key, 3_600_000)

    def admits(tat: int | None) -> bool:
        base = now if tat is None else max(tat, now)
        return base + n * INTERVAL - TAU <= now

    expected = {admits(None if offset is None else now + offset)}
    if ttl == "1ms" and offset is not None:
        expected.add(admits(None))  # it may have expired just before the script ran
    assert lim.try_acquire(n) in expected
    assert client.pttl(key) != -1  # a TTL (or gone: -2), never a key that lives forever
    client.close()


def test_reg_D8_a_decision_is_O1_whatever_the_burst(r: Any, url: str) -> None:
    """alisaifee/limits#268: a moving window costs O(limit) per call in Lua and stalls Redis.
    GCRA stores one number: at burst 10**6 no decision reaches the slow log."""
    r.config_set("slowlog-log-slower-than", 5000)  # 5 ms; a decision takes ~10 µs
    r.slowlog_reset()
    lim = RateLimiter(1, 1e6, name="big", storage=url)
    assert sum(lim.try_acquire(1000) for _ in range(1000)) == 1000  # the whole burst
    assert not lim.try_acquire(1000)
    assert r.slowlog_len() == 0
    assert r.keys("*") == [b"riprap:{big}:gcra"]
