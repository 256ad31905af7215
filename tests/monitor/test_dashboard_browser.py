"""The dashboard page in a real headless browser (Chromium, from the Debian package).

Chromium loads the page from a server thread of this process, runs its script (which fetches
`/dashboard.json`) within a virtual-time budget, and dumps the DOM as it then stands. The test
reads that DOM: every breaker with its state, the alerts, and a breaker named like a script tag
shown as text. Without Chromium the test is skipped locally and fails in CI (`RIPRAP_CI=1`,
set by `.ci/run`, which installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest

import riprap
from riprap._cli import serve
from riprap.testing import ManualClock

EVIL = "<script>alert(1)</script>"


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    why = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
    if os.environ.get("RIPRAP_CI") == "1":
        pytest.fail(f"{why}: the dashboard must be tested in a browser in CI")
    pytest.skip(why)


class Dom(HTMLParser):
    """Collects the rows of `table#breakers`, the items of `ul#alerts` and the script count."""

    def __init__(self) -> None:
        super().__init__()
        self.breakers: list[list[str]] = []
        self.alerts: list[str] = []
        self.scripts = 0
        self._in: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "table" and a.get("id") == "breakers":
            self._in = "breakers"
        elif tag == "ul" and a.get("id") == "alerts":
            self._in = "alerts"
        elif self._in == "breakers" and tag == "tr" and a.get("class") == "breaker":
            self.breakers.append([])
        elif self._in == "breakers" and tag == "td" and self.breakers:
            self._cell = []
        elif self._in == "alerts" and tag == "li":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "li") and self._cell is not None:
            text = "".join(self._cell)
            (self.breakers[-1] if tag == "td" else self.alerts).append(text)
            self._cell = None
        elif (tag, self._in) in (("table", "breakers"), ("ul", "alerts")):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def url() -> Iterator[str]:
    srv = serve.make_server("127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    yield f"http://{host}:{port}/"
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def dump_dom(browser: str, url: str) -> str:
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--virtual-time-budget=3000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout


def test_the_page_shows_breakers_states_and_alerts(
    url: str, clock: ManualClock
) -> None:
    browser = chromium()
    payments = riprap.CircuitBreaker(
        "payments", riprap.CircuitBreakerConfig(timeout=10_000.0), clock=clock
    )
    payments.force_open()
    clock.advance(400.0)
    search = riprap.CircuitBreaker("search", clock=clock)
    evil = riprap.CircuitBreaker(EVIL, clock=clock)
    dom = Dom()
    dom.feed(dump_dom(browser, url))
    rows = {cells[0]: cells[1] for cells in dom.breakers}
    assert rows == {"payments": "open", "search": "closed", EVIL: "closed"}
    assert dom.alerts == ["Circuit breaker 'payments' has been open for 400.0 seconds"]
    assert dom.scripts == 1  # the page's own: the name became text, not an element
    assert (search.name, evil.name) == ("search", EVIL)
