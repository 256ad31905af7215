"""Benchmarks shared by `riprap bench` and `benches/` (pytest-benchmark).

`harness` is the paired timer and the table; `retry`, `breaker`, `limiter` and `cache` each hold
one primitive's cases; `cases` lists them all.
"""
