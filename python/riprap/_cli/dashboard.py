"""The dashboard page `riprap serve` answers at `/`.

Static HTML: it holds no data. Its script fetches `/dashboard.json` every two seconds and builds
every row with `document.createElement` and `textContent`, never `innerHTML`, so whatever a
primitive is called is shown as text. Rates (admitted per second, ...) are computed in the page
from two successive readings.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>riprap dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { display: flex; align-items: baseline; gap: 1em; padding: 12px 20px;
           background: #1d2330; color: #fff; }
  header h1 { font-size: 18px; margin: 0; }
  #status { font-weight: 600; padding: 2px 10px; border-radius: 10px; }
  .healthy { background: #1f8a4c; color: #fff; }
  .degraded { background: #d08a00; color: #fff; }
  .critical { background: #c62828; color: #fff; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(430px, 1fr));
         gap: 14px; padding: 14px 20px; }
  section { background: #fff; border-radius: 6px; padding: 10px 14px;
            box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  h2 { font-size: 15px; margin: 4px 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eceef2;
           font-variant-numeric: tabular-nums; }
  td.num, th.num { text-align: right; }
  .state { font-weight: 600; }
  .state.closed { color: #1f8a4c; } .state.open { color: #c62828; }
  .state.half_open { color: #d08a00; }
  .bar { background: #eceef2; height: 8px; border-radius: 4px; min-width: 80px; }
  .bar > div { background: #3b6fd8; height: 8px; border-radius: 4px; }
  .bar > div.hot { background: #c62828; }
  ul { margin: 0; padding-left: 18px; }
  .muted { color: #6b7280; }
  #alerts li { color: #c62828; }
  #alerts li.muted { color: #6b7280; }
</style>
</head>
<body>
<header>
  <h1>riprap</h1>
  <span id="status">loading</span>
  <span id="score"></span>
  <span id="parts" class="muted"></span>
  <span id="updated" class="muted"></span>
</header>
<main>
  <section><h2>Alerts</h2><ul id="alerts"></ul></section>
  <section><h2>Circuit breakers</h2>
    <table id="breakers"><thead><tr><th>name</th><th>state</th><th class="num">calls</th>
      <th class="num">failures</th><th class="num">rejected</th><th class="num">failure rate</th>
      <th class="num">transitions</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Recent transitions</h2><ul id="transitions"></ul></section>
  <section><h2>Bulkheads</h2>
    <table id="bulkheads"><thead><tr><th>resource</th><th>utilization</th>
      <th class="num">active</th><th class="num">queued</th><th class="num">rejected</th>
      </tr></thead><tbody></tbody></table></section>
  <section><h2>Rate limiters</h2>
    <table id="limiters"><thead><tr><th>name</th><th class="num">admitted</th>
      <th class="num">rejected</th><th class="num">admitted/s</th><th class="num">rejected/s</th>
      </tr></thead><tbody></tbody></table></section>
  <section><h2>Retries</h2>
    <table id="retries"><thead><tr><th>operation</th><th class="num">calls</th>
      <th class="num">succeeded</th><th class="num">retries</th><th class="num">failed</th>
      </tr></thead><tbody></tbody></table></section>
  <section><h2>Fallbacks and dead letters</h2><ul id="fallbacks"></ul></section>
</main>
<script>
"use strict";
let previous = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function pct(x) { return (100 * (x || 0)).toFixed(1) + "%"; }
function num(x) { return Math.round(x || 0).toLocaleString("en"); }
function cell(text, numeric) { return el("td", text, numeric ? "num" : ""); }
function fill(id, block, row) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const r of block.rows) body.appendChild(row(r));
  const note = block.more > 0 ? "... and " + block.more + " more" :
    block.rows.length === 0 ? "none" : null;
  if (note) {
    const tr = el("tr");
    const td = el("td", note, "muted");
    td.colSpan = 8;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}
function list(id, items) {
  const ul = document.getElementById(id);
  ul.replaceChildren();
  for (const text of items) ul.appendChild(el("li", text));
  if (items.length === 0) ul.appendChild(el("li", "none", "muted"));
}
function rate(name, key, now, seconds) {
  if (!previous || seconds <= 0) return "";
  const before = previous.limiters[name];
  if (!before) return "";
  return (Math.max(0, now[key] - before[key]) / seconds).toFixed(1);
}

function render(d) {
  const status = document.getElementById("status");
  status.textContent = d.health.status;
  status.className = d.health.status;
  document.getElementById("score").textContent = "health " + pct(d.health.score);
  document.getElementById("parts").textContent =
    "breakers " + pct(d.health.circuit_breaker_health) +
    " · bulkheads " + pct(d.health.bulkhead_health) +
    " · retries " + pct(d.health.retry_health);
  document.getElementById("updated").textContent =
    "updated " + new Date(d.timestamp * 1000).toLocaleTimeString();
  list("alerts", d.alerts.map(a => a.message));
  fill("breakers", d.breakers, b => {
    const tr = el("tr");
    tr.className = "breaker";
    tr.appendChild(cell(b.name));
    tr.appendChild(el("td", b.state, "state " + b.state));
    tr.appendChild(cell(num(b.calls), true));
    tr.appendChild(cell(num(b.failures), true));
    tr.appendChild(cell(num(b.rejected), true));
    tr.appendChild(cell(pct(b.failure_rate), true));
    tr.appendChild(cell(num(b.transitions), true));
    return tr;
  });
  list("transitions", d.transitions.slice().reverse().map(t =>
    new Date(t.time * 1000).toLocaleTimeString() + "  " + t.name + ": " + t.from + " → " + t.to));
  fill("bulkheads", d.bulkheads, b => {
    const tr = el("tr");
    tr.appendChild(cell(b.name));
    const td = el("td"), bar = el("div", null, "bar"), inner = el("div");
    inner.style.width = Math.min(100, 100 * b.utilization) + "%";
    if (b.utilization >= 0.9) inner.className = "hot";
    bar.appendChild(inner);
    bar.title = pct(b.utilization);
    td.appendChild(bar);
    tr.appendChild(td);
    tr.appendChild(cell(num(b.active) + " / " + num(b.limit), true));
    tr.appendChild(cell(num(b.queued), true));
    tr.appendChild(cell(num(b.rejected) + " (" + pct(b.rejection_rate) + ")", true));
    return tr;
  });
  const seconds = previous ? d.timestamp - previous.timestamp : 0;
  const limiters = {};
  fill("limiters", d.rate_limiters, l => {
    limiters[l.name] = l;
    const tr = el("tr");
    tr.appendChild(cell(l.name));
    tr.appendChild(cell(num(l.admitted), true));
    tr.appendChild(cell(num(l.rejected), true));
    tr.appendChild(cell(rate(l.name, "admitted", l, seconds), true));
    tr.appendChild(cell(rate(l.name, "rejected", l, seconds), true));
    return tr;
  });
  fill("retries", d.retries, r => {
    const tr = el("tr");
    tr.appendChild(cell(r.name));
    tr.appendChild(cell(num(r.calls), true));
    tr.appendChild(cell(pct(r.success_rate), true));
    tr.appendChild(cell(num(r.retries), true));
    tr.appendChild(cell(num(r.failures), true));
    return tr;
  });
  const f = d.fallbacks;
  list("fallbacks", [
    "fallback calls: " + num(f.calls) + " (" + num(f.primary_failures) + " primary failures, " +
      num(f.fallback_successes) + " by a fallback, " + num(f.cache_fallbacks) + " by the cache, " +
      num(f.default_fallbacks) + " by the default, " + num(f.exhausted) + " exhausted)",
    "dead letters: " + num(d.dead_letters.entries) + " in " + d.dead_letters.queues + " queue(s)",
  ]);
  previous = {timestamp: d.timestamp, limiters: limiters};
}

async function refresh() {
  try {
    const response = await fetch("dashboard.json", {cache: "no-store"});
    render(await response.json());
  } catch (err) {
    const status = document.getElementById("status");
    status.textContent = "no answer";
    status.className = "critical";
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
