"""Benchmarks shared by `riprap bench` and `benches/` (pytest-benchmark).

`harness` is the paired timer, the allocation count and the table; `retry`, `breaker`,
`limiter`, `bulkhead`, `cache`, `monitor` and `redis` each hold one primitive's cases, `pipeline`
the stack of four; `cases` lists them all. `command` is `riprap bench` itself, `progress` its
progress display and `output` what it writes (JSON, Markdown, the chart).
"""
