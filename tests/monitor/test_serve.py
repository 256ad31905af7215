"""riprap serve over real HTTP: /metrics parsed by prometheus_client, /health, the JSON, misuse.

The server runs in a thread of the test process (so it sees the primitives the test makes), on a
free port of 127.0.0.1; one test starts the real command in a subprocess.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from monitor_helpers import fake_bulkhead
from prometheus_client.parser import text_string_to_metric_families

import riprap
from riprap._cli import serve
from riprap._decorate import name_of
from riprap.testing import ManualClock


@pytest.fixture
def server() -> Iterator[str]:
    srv = serve.make_server("127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    yield f"http://{host}:{port}"
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def workload(clock: ManualClock) -> dict[str, Any]:
    """A scripted workload: what the scrape must then show."""
    payments = riprap.CircuitBreaker(
        "payments", riprap.CircuitBreakerConfig(failure_threshold=2), clock=clock
    )
    search = riprap.CircuitBreaker("search", clock=clock)
    for _ in range(2):
        with pytest.raises(ConnectionError), payments:
            raise ConnectionError
    for _ in range(3):
        with search:
            pass
    limiter = riprap.RateLimiter(2, name="api", clock=clock)
    admitted = sum(limiter.try_acquire() for _ in range(5))
    fail = [2]

    @riprap.retry(max_attempts=4, base_delay=0.0, jitter=False, clock=clock)
    def sync_fleet() -> int:
        if fail[0]:
            fail[0] -= 1
            raise ConnectionError
        return 1

    sync_fleet()
    sync_fleet()
    bulkhead = fake_bulkhead("database", 2, 4, rejected_calls=1)  # contract fake
    return {
        "keep": [payments, search, limiter, sync_fleet, bulkhead],
        "admitted": admitted,
        "operation": name_of(sync_fleet),
    }


def test_a_real_scrape_after_a_scripted_workload(
    server: str, clock: ManualClock
) -> None:
    work = workload(clock)
    status, headers, text = get(f"{server}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }

    def at(sample: str, /, **labels: str) -> float:
        return samples[sample, tuple(sorted(labels.items()))]

    assert at("circuit_breaker_state", name="payments", state="open") == 1
    assert at("circuit_breaker_state", name="payments", state="closed") == 0
    assert at("circuit_breaker_state", name="search", state="closed") == 1
    assert at("circuit_breaker_failures_total", name="payments") == 2
    assert at("circuit_breaker_failures_total", name="search") == 0
    assert at("rate_limiter_admitted_total", name="api") == work["admitted"] == 2
    assert at("rate_limiter_rejected_total", name="api") == 3
    op = work["operation"]
    assert at("retry_attempts_total", operation=op, attempt="1") == 2
    assert at("retry_attempts_total", operation=op, attempt="2") == 1
    assert at("retry_attempts_total", operation=op, attempt="3") == 1
    assert at("retry_success_total", operation=op) == 2
    assert at("bulkhead_active_calls", resource="database") == 2
    assert at("bulkhead_rejected_calls_total", resource="database") == 1
    assert at("bulkhead_utilization_ratio", resource="database") == 0.5


def test_health_is_200_until_critical_then_503(server: str, clock: ManualClock) -> None:
    b = riprap.CircuitBreaker("payments", clock=clock)
    status, _, body = get(f"{server}/health")
    health = json.loads(body)
    assert (status, health["status"], health["open_breakers"]) == (200, "healthy", [])
    assert "not liveness" in health["meaning"]
    b.force_open()
    ops = riprap._registry.retry_counters("op")
    for _ in range(3):
        ops.failed_attempt(1)
        ops.gave_up()
    status, _, body = get(f"{server}/health")
    health = json.loads(body)
    assert (status, health["status"], health["open_breakers"]) == (
        503,
        "critical",
        ["payments"],
    )
    assert health["score"] == pytest.approx(1 / 3)


def test_dashboard_json_carries_names_as_data(server: str, clock: ManualClock) -> None:
    evil = riprap.CircuitBreaker("<script>alert(1)</script>", clock=clock)
    evil.force_open()
    status, headers, body = get(f"{server}/dashboard.json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    data = json.loads(body)
    assert data["breakers"]["rows"] == [
        {
            "name": "<script>alert(1)</script>",
            "state": "open",
            "calls": 0,
            "failures": 0,
            "rejected": 0,
            "failure_rate": 0.0,
            "open_duration": 0.0,
            "transitions": 1,
        }
    ]
    assert data["transitions"][-1]["to"] == "open"
    assert data["health"]["status"] == "degraded"


def test_the_page_holds_no_data_and_forbids_other_scripts(server: str) -> None:
    status, headers, page = get(f"{server}/")
    assert status == 200
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "innerHTML" not in page
    assert page.count("<script>") == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_read_only(server: str, method: str) -> None:
    status, _, body = get(f"{server}/metrics", method)
    assert status == 405
    assert "read-only" in body


def test_unknown_paths_are_404(server: str) -> None:
    status, _, body = get(f"{server}/admin")
    assert status == 404
    assert "/metrics" in json.loads(body)["paths"]


def test_a_stalled_client_does_not_block_the_others(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    stalled = [socket.create_connection((host, int(port)), timeout=5) for _ in range(3)]
    stalled[0].sendall(b"GET /metrics HTTP/1.1\r\n")  # never finishes its request
    stalled[1].sendall(b"GET /met")
    try:
        status, _, _ = get(f"{server}/health")
        assert status == 200
    finally:
        for s in stalled:
            s.close()


def test_the_command_binds_localhost_and_serves() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "riprap", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("riprap serve: dashboard http://127.0.0.1:")
            url = first.split()[3]
            status, _, body = get(f"{url}health")
            assert (status, json.loads(body)["status"]) == (200, "healthy")
        finally:
            proc.terminate()
            proc.wait(10)
