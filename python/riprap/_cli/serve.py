"""`riprap serve`: `/metrics`, `/health` and a live dashboard over HTTP, read-only.

* `/metrics`: the Prometheus text format of every named primitive in this process (the families
  of `riprap.metrics`, written here without prometheus_client).
* `/health`: JSON health (score, its three parts, status, open breakers, alerts). HTTP 503 when
  the status is "critical". It says "a dependency is degraded", not "this process is broken":
  use it for dashboards, alerts or readiness, never as a liveness probe (an open breaker is the
  breaker doing its job; restarting the process for it makes things worse: resilience4j#607).
* `/`: the dashboard page; its script reads `/dashboard.json` every two seconds and builds the
  page with `textContent` only, so a name like `<script>` is shown as text, never run.

The server binds 127.0.0.1 unless told otherwise, answers only GET and HEAD, and serves each
connection in its own daemon thread with a socket timeout, so a slow or vanished client holds
nothing but its own thread. Each request takes its own snapshot; nothing is shared between
requests but the primitives themselves.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from .. import _exposition, _monitor
from .._backend import core
from .dashboard import PAGE
from .demo import DemoConfig, simulate

__all__ = ["make_server", "run"]

#: Rows per table in the dashboard's JSON (the page says how many it left out).
ROWS = 200
#: Seconds a client may stall a read or a write before its connection is dropped.
CLIENT_TIMEOUT = 10.0


def _finite(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON has no inf or NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _rows(items: dict[str, Any], row: Any) -> dict[str, Any]:
    pairs = list(items.items())
    return {
        "rows": [row(k, v) for k, v in pairs[:ROWS]],
        "more": max(0, len(pairs) - ROWS),
    }


def _num(stats: Any, key: str) -> float:
    value = stats.get(key) if isinstance(stats, dict) else None
    return float(value) if isinstance(value, (int, float)) else 0.0


def dashboard_data(monitor: _monitor.ResilienceMonitor) -> dict[str, Any]:
    """What the dashboard page shows, from one snapshot."""
    snap = _monitor.take_snapshot()
    m = monitor.snapshot(snap)
    breakers = _rows(
        m["circuit_breakers"]["breakers"],
        lambda name, s: {
            "name": name,
            "state": s["state"],
            "calls": s["total_calls"],
            "failures": s["total_failures"],
            "rejected": s["total_rejected"],
            "failure_rate": s["failure_rate"],
            "open_duration": s["open_duration"],
            "transitions": sum(snap.breaker_transitions.get(name, {}).values()),
        },
    )
    bulkheads = _rows(
        m["bulkheads"],
        lambda name, s: {
            "name": name,
            "active": _num(s, "active_calls"),
            "queued": _num(s, "queued_calls"),
            "limit": _num(s, "current_limit"),
            "utilization": _num(s, "utilization"),
            "rejected": _num(s, "rejected_calls"),
            "rejection_rate": _num(s, "rejection_rate"),
        },
    )
    limiters = _rows(
        m["rate_limiters"],
        lambda name, s: {
            "name": name,
            "admitted": _num(s, "admitted"),
            "rejected": _num(s, "rejected"),
            "waited": _num(s, "waited"),
        },
    )
    retries = _rows(
        m["retry_patterns"]["operations"],
        lambda name, o: {
            "name": name,
            **{k: v for k, v in o.items() if k != "attempts_by_number"},
        },
    )
    queues = m["dead_letter_queues"]
    data: dict[str, Any] = _finite(
        {
            "health": m["overall_health"],
            "alerts": m["alerts"],
            "breakers": breakers,
            "transitions": m["circuit_breakers"]["transitions"][-20:],
            "bulkheads": bulkheads,
            "rate_limiters": limiters,
            "retries": retries,
            "fallbacks": {
                k: v for k, v in m["fallback_patterns"].items() if k != "strategies"
            },
            "dead_letters": {
                "entries": sum(_num(s, "entries") for s in queues.values()),
                "queues": len(queues),
            },
            "timestamp": m["timestamp"],
        }
    )
    return data


def health_data(monitor: _monitor.ResilienceMonitor) -> tuple[int, dict[str, Any]]:
    """The `/health` status code and body."""
    m = monitor.snapshot()
    health = m["overall_health"]
    body = {
        **health,
        "meaning": "resilience health of this process's dependencies (not liveness)",
        "open_breakers": [
            name
            for name, s in m["circuit_breakers"]["breakers"].items()
            if s["state"] == "open"
        ],
        "alerts": [a["message"] for a in m["alerts"]],
        "timestamp": m["timestamp"],
    }
    code = (
        HTTPStatus.SERVICE_UNAVAILABLE
        if health["status"] == "critical"
        else HTTPStatus.OK
    )
    return int(code), _finite(body)


def metrics_text() -> str:
    """The Prometheus text exposition of every named primitive, from one snapshot."""
    fams = _exposition.families(
        _monitor.take_snapshot(),
        max_series=1000,
        bounds=list(core.RetryCounters.duration_bounds),
    )
    return _exposition.render_text(fams)


class _Handler(BaseHTTPRequestHandler):
    server_version = "riprap"
    timeout = CLIENT_TIMEOUT
    monitor: _monitor.ResilienceMonitor

    def _send(self, code: int, content_type: str, body: str) -> None:
        data = body.encode("utf-8", errors="backslashreplace")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'",
            )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, "application/json", json.dumps(obj, allow_nan=False))

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(
                    200, "text/plain; version=0.0.4; charset=utf-8", metrics_text()
                )
            elif path == "/health":
                self._json(*health_data(self.monitor))
            elif path == "/dashboard.json":
                self._json(200, dashboard_data(self.monitor))
            elif path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", PAGE)
            else:
                self._json(
                    404, {"error": "not found", "paths": ["/", "/metrics", "/health"]}
                )
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client went away: nothing to do

    do_HEAD = do_GET  # noqa: N815 - the name http.server looks up

    def _read_only(self) -> None:
        self._json(405, {"error": "read-only: GET and HEAD only"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _read_only  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: a scraped endpoint would fill the terminal


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanishes mid-request is routine; anything else is printed as usual.
        if isinstance(
            sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, TimeoutError)
        ):
            return
        super().handle_error(request, client_address)


def make_server(
    host: str = "127.0.0.1",
    port: int = 9108,
    monitor: _monitor.ResilienceMonitor | None = None,
) -> ThreadingHTTPServer:
    """A server bound to `host:port` (port 0: any free port), not yet serving.

    Call `serve_forever()` on it (in a thread if you like) and `shutdown()` to stop it.
    """
    handler = type(
        "Handler", (_Handler,), {"monitor": monitor or _monitor.ResilienceMonitor()}
    )
    return _Server((host, port), handler)


def _demo_forever(stop: threading.Event) -> None:
    """Run the demo workload again and again, paced to real time, until `stop` is set.

    Each run is five simulated minutes lived in real time (`riprap demo` itself runs them as
    fast as it can), so the dashboard shows the incidents as they happen. Each run's dead
    letters go to a temporary directory, removed when the run ends.
    """
    seed = 7
    while not stop.is_set():
        with tempfile.TemporaryDirectory(prefix="riprap-serve-demo-") as folder:
            dlq = os.path.join(folder, "riprap-dlq.sqlite3")
            config = DemoConfig(duration=300.0, seed=seed, dlq=dlq, pace=1.0)
            simulate(config, should_stop=stop.is_set)
        seed += 1
        # The last run's primitives hold reference cycles (listeners); let them go before the
        # next run makes new ones of the same names.
        gc.collect()


def run(*, host: str, port: int, demo: bool, out: TextIO | None = None) -> int:
    """Serve until interrupted; returns the exit code."""
    out = out or sys.stdout
    server = make_server(host, port)
    bound_host, bound_port = server.server_address[:2]
    if isinstance(bound_host, bytes):
        bound_host = bound_host.decode()
    url = f"http://{bound_host}:{bound_port}/"
    print(
        f"riprap serve: dashboard {url}  metrics {url}metrics  health {url}health",
        file=out,
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"riprap serve: listening on {host}: anyone who can reach it can read the "
            "names and counters of this process's primitives",
            file=out,
        )
    stop = threading.Event()
    if demo:
        print("riprap serve: running the demo workload in the background", file=out)
        threading.Thread(target=_demo_forever, args=(stop,), daemon=True).start()
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0
