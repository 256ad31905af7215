"""Bulkhead stress: 64 threads x 10,000 calls, and 500 asyncio tasks, through a bulkhead of 8
with a queue of 32 (Netflix/concurrency-limits#140 over-admitted under this kind of load).

The concurrency seen inside the call never exceeds 8, every call is either completed or
rejected, and at the end no slot is held and nobody waits. The tests also check that the race
paths really ran: callers waited in the queue and were handed slots, and some were rejected.
Runs on both backends; the pure-Python backend runs 2,500 calls per thread instead of 10,000
(its waits cost ~10x more, and the full count takes ~15 s on a loaded 2-core machine).
"""

from __future__ import annotations

import asyncio
import threading

import riprap
from riprap import Bulkhead, BulkheadConfig, BulkheadRejectedError

THREADS, LIMIT, QUEUE = 64, 8, 32
CALLS = 10_000 if riprap.backend() == "rust" else 2_500


class Gauge:
    """Calls inside the protected function now, and the most ever seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def test_reg_K1_64_threads_never_exceed_the_limit_and_every_slot_comes_back() -> None:
    bh = Bulkhead(
        "stress", BulkheadConfig(max_concurrent_calls=LIMIT, max_queue_size=QUEUE)
    )
    gauge = Gauge()

    @bh
    def call() -> None:
        gauge.enter()
        gauge.leave()

    barrier = threading.Barrier(THREADS)
    done = [0] * THREADS
    rejected = [0] * THREADS
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            barrier.wait()
            for i in range(CALLS):
                try:
                    if i % 4 == 0:
                        with bh:
                            gauge.enter()
                            gauge.leave()
                    else:
                        call()
                    done[k] += 1
                except BulkheadRejectedError:
                    rejected[k] += 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert not any(t.is_alive() for t in threads)
    assert gauge.peak <= LIMIT
    assert sum(done) + sum(rejected) == THREADS * CALLS
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"]) == (0, 0)
    assert s["total_calls"] == THREADS * CALLS
    assert s["admitted_calls"] == sum(done)
    assert s["rejected_calls"] == sum(rejected)
    # Contention really happened: callers queued, and were handed slots or turned away.
    assert s["waited_calls"] > 0
    assert s["rejected_queue_full"] == sum(rejected)


def test_500_asyncio_tasks_never_exceed_the_limit_and_every_slot_comes_back() -> None:
    bh = Bulkhead(
        "astress", BulkheadConfig(max_concurrent_calls=LIMIT, max_queue_size=QUEUE)
    )
    gauge = Gauge()
    outcome = {"done": 0, "rejected": 0}

    @bh
    async def call() -> None:
        gauge.enter()
        await asyncio.sleep(0)
        gauge.leave()

    async def task() -> None:
        for _ in range(20):
            try:
                await call()
                outcome["done"] += 1
            except BulkheadRejectedError:
                outcome["rejected"] += 1

    async def main() -> None:
        await asyncio.gather(*(task() for _ in range(500)))

    asyncio.run(main())
    assert gauge.peak == LIMIT
    assert outcome["done"] + outcome["rejected"] == 500 * 20
    s = bh.get_stats()
    assert (s["active_calls"], s["queued_calls"]) == (0, 0)
    assert s["admitted_calls"] == outcome["done"]
    assert s["rejected_calls"] == outcome["rejected"] > 0
    assert s["waited_calls"] > 0
