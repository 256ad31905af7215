"""Real processes sharing state on Redis: the limit holds across them, every key keeps a TTL
when workers are killed at random, and a breaker's state (or its quorum) is one for all.

Workers are started with "spawn" (a fresh interpreter on the backend this run tests) unless
they are only killed (then "fork", for speed); they talk to the test through pipes and queues.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import redis_workers

import riprap
from riprap._redis.server import RedisServer

SPAWN = multiprocessing.get_context("spawn")
FORK = multiprocessing.get_context("fork")


def redis_time(r: Any) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


def test_four_processes_never_exceed_burst_plus_rate_times_elapsed(
    url: str, r: Any
) -> None:
    rate, burst, n = 400.0, 20.0, 2000
    start, out = SPAWN.Barrier(5), SPAWN.Queue()
    workers = [
        SPAWN.Process(
            target=redis_workers.hammer,
            args=(url, "shared", rate, burst, n, start, out),
        )
        for _ in range(4)
    ]
    for w in workers:
        w.start()
    assert [out.get(timeout=60) for _ in workers] == ["ready"] * 4
    t0 = redis_time(r)  # every worker waits at the barrier: none has asked yet
    start.wait(timeout=60)
    reports = [out.get(timeout=120) for _ in workers]
    t1 = redis_time(r)
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    assert {backend for backend, _, _ in reports} == {riprap.backend()}
    admitted = sum(a for _, a, _ in reports)
    assert all(errors == 0 for _, _, errors in reports)
    # The bound, on Redis's clock (GCRA spaces tokens 1/rate apart, rounded up).
    print(
        f"\nadmitted {admitted} of {4 * n} in {t1 - t0:.3f} s; bound {burst + rate * (t1 - t0):.1f}"
    )
    assert admitted <= burst + rate * (t1 - t0)
    assert admitted >= burst  # the bucket started full
    assert admitted < 4 * n  # and the processes really competed


def test_reg_D1_every_key_keeps_a_ttl_when_workers_are_killed_at_random(
    url: str, r: Any
) -> None:
    rng = random.Random(20240613)
    for _ in range(12):
        ready = [FORK.Event() for _ in range(3)]
        workers = [
            FORK.Process(target=redis_workers.churn, args=(url, rng.random(), e))
            for e in ready
        ]
        for w in workers:
            w.start()
        for e in ready:
            assert e.wait(timeout=30)
        for w in workers:
            # A random moment of its loop: somewhere inside or between scripts.
            w.join(timeout=rng.uniform(0.0, 0.03))
            assert w.pid is not None
            os.kill(w.pid, signal.SIGKILL)
            w.join(timeout=10)
            assert w.exitcode == -signal.SIGKILL
    keys = list(r.scan_iter("*"))
    kinds = {k.split(b":")[-1] for k in keys}
    assert kinds >= {b"gcra", b"state", b"window", b"voters"}
    for key in keys:
        assert r.pttl(key) > 0, key


class Actor:
    """A breaker in a process of its own, driven by commands."""

    def __init__(self, url: str, name: str, config: dict[str, Any], **kw: Any) -> None:
        self.conn, child = SPAWN.Pipe()
        self.proc = SPAWN.Process(
            target=redis_workers.breaker_actor,
            args=(child, url, name, config),
            kwargs=kw,
        )
        self.proc.start()

    def send(self, cmd: str) -> None:
        self.conn.send(cmd)

    def reply(self) -> Any:
        assert self.conn.poll(60), "the worker did not answer"
        return self.conn.recv()

    def __call__(self, cmd: str) -> Any:
        self.send(cmd)
        return self.reply()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.send("stop")
            self.reply()
        self.proc.join(timeout=30)
        assert self.proc.exitcode == 0


@pytest.fixture
def actors() -> Iterator[list[Actor]]:
    made: list[Actor] = []
    yield made
    for actor in made:
        actor.stop()


CONFIG = {"failure_threshold": 2, "timeout": 30.0, "half_open_max_calls": 2}


def test_two_processes_share_a_breaker_and_a_third_resets_nothing(
    url: str, r: Any, actors: list[Actor]
) -> None:
    a, b = Actor(url, "dep", CONFIG), Actor(url, "dep", CONFIG)
    actors += [a, b]
    assert a("ok") == b("ok") == "admitted"
    assert a("fail") == "admitted"
    assert a("fail") == "admitted"  # opens it, in a's process
    assert b("state") == "open"
    stored = r.hgetall("riprap:{dep}:state")
    ra, rb = a("ok"), b("ok")
    assert ra[0] == rb[0] == "rejected"
    # The stored open time: both processes agree on when it half-opens.
    assert 29.0 < rb[1] <= ra[1] <= 30.0
    c = Actor(url, "dep", CONFIG)  # a third process, started later
    actors.append(c)
    assert c("state") == "open"
    rc = c("ok")
    assert rc[0] == "rejected"
    assert rc[1] <= rb[1]
    assert r.hgetall("riprap:{dep}:state")[b"oat"] == stored[b"oat"]
    # The state vanishes (eviction, FLUSHALL): CLOSED again, counted, nothing raises.
    r.delete("riprap:{dep}:state", "riprap:{dep}:window")
    assert b("ok") == "admitted"
    assert b("stats")["state_lost"] == 1


def test_half_open_probes_are_limited_across_processes(
    url: str, r: Any, actors: list[Actor]
) -> None:
    procs = [Actor(url, "probe", CONFIG) for _ in range(3)]
    actors += procs
    assert procs[0]("fail") == procs[0]("fail") == "admitted"
    assert procs[1]("state") == "open"
    # Move the stored open time back by the whole timeout instead of sleeping 30 s.
    opened = int(r.hget("riprap:{probe}:state", "oat"))
    r.hset("riprap:{probe}:state", "oat", str(opened - 30_000_001))
    for actor in procs * 2:
        actor.send("hold")  # every process asks twice, all at once
    replies = [actor.reply() for actor in procs * 2]
    admitted = [x for x in replies if x == "admitted"]
    assert len(admitted) == 2  # half_open_max_calls across all processes
    assert all(x == ("rejected", 0.0) for x in replies if x != "admitted")
    assert procs[2]("state") == "half_open"


def test_quorum_of_four_processes(url: str, actors: list[Actor]) -> None:
    fleet = [Actor(url, "q", CONFIG, shared="quorum", quorum=0.5) for _ in range(4)]
    actors += fleet
    assert [p("ok") for p in fleet] == ["admitted"] * 4
    fleet[0]("fail")
    fleet[0]("fail")  # its own view opens
    replies = [p("ok") for p in fleet]
    assert replies[0][0] == "rejected"
    assert replies[1:] == ["admitted"] * 3  # one process of four is not a quorum
    fleet[1]("fail")
    fleet[1]("fail")
    assert all(p("ok")[0] == "rejected" for p in fleet)  # two of four: open for all
    assert fleet[3]("state") == "open"
    stats = fleet[2]("stats")
    assert (stats["quorum_open"], stats["quorum_live"]) == (2, 4)


def test_workers_run_on_this_backend(redis_server: RedisServer) -> None:
    # The spawned interpreters inherit RIPRAP_BACKEND, so every process test above runs on
    # the backend of this pass of `make test`.
    assert os.environ.get("RIPRAP_BACKEND", "rust") == riprap.backend()


def test_a_forked_child_starts_fresh_but_shares_the_stored_state(url: str) -> None:
    """A child forked while parent threads use Redis-backed primitives does not hang, counts
    from zero, and sees the state in Redis (which is shared, not copied)."""
    import json
    import select
    import threading

    limiter = riprap.RateLimiter(1e6, 1e6, name="fork-lim", storage=url)
    breaker = riprap.CircuitBreaker("fork-brk", storage=url)
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            limiter.try_acquire()
            try:
                with breaker:
                    pass
            except riprap.CircuitOpenError:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        breaker.force_open()  # stored in Redis: the child must see it
        reports = []
        for _ in range(10):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.close(r)
                    admitted = limiter.try_acquire()
                    report = {
                        "admitted": admitted,
                        "stats": limiter.get_stats()["admitted"],
                        "state": breaker.state.value,
                        "rejected": breaker.get_stats()["total_rejected"],
                    }
                    os.write(w, json.dumps(report).encode())
                except BaseException as e:
                    os.write(w, json.dumps({"error": repr(e)}).encode())
                    code = 1
                finally:
                    os._exit(code)
            os.close(w)
            ready, _, _ = select.select([r], [], [], 10.0)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                reports.append("hung")
            else:
                reports.append(json.loads(os.read(r, 65536)))
            os.close(r)
            os.waitpid(pid, 0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    expected = {"admitted": True, "stats": 1, "state": "open", "rejected": 0}
    assert reports == [expected] * 10


def test_a_child_forked_while_a_parent_thread_holds_the_pool_locks_does_not_wait_for_them(
    url: str,
) -> None:
    """redis-py resets a forked child's connection pool under the pool's own locks; a parent
    thread holding them at the fork would leave the child waiting for a thread it does not
    have. The child gets fresh locks, so its first decision goes straight to Redis."""
    import select
    import threading

    from riprap._redis.storage import storage_of

    storage = storage_of(url)
    limiter = riprap.RateLimiter(1e6, 1e6, name="fork-held", storage=storage)
    assert limiter.try_acquire()  # the pool has a connection, made in the parent
    pool = storage._sync.connection_pool
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with pool._fork_lock, pool._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(r)
                os.write(w, b"ok" if limiter.try_acquire() else b"refused")
            except BaseException as e:
                os.write(w, repr(e).encode())
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        # Without fresh locks the child waits 5 s for redis-py's fork lock, then fails.
        ready, _, _ = select.select([r], [], [], 3.0)
        answer = os.read(r, 4096) if ready else b"still waiting after 3 s"
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.close(r)
        os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join()
    assert answer == b"ok"
