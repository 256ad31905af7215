"""The `riprap` command: `demo`, `bench`, `dlq` and `serve`."""

from __future__ import annotations

import argparse
import sys

from . import dlq
from .bench import command as bench
from .demo import config as demo_options

__all__ = ["main"]

DESCRIPTION = """\
riprap: resilience policies for Python with a Rust core.

commands:
  demo    run a simulated fleet of flaky agents through riprap's policies and print the
          resilience statistics (--quick for a short run; --seed N repeats a run exactly)
  bench   measure riprap against the pure-Python reference backend, hand-rolled code and the
          installed peers (tenacity, stamina, backoff, pybreaker, circuitbreaker, aiobreaker,
          purgatory, limits, pyrate-limiter, aiolimiter, resilix, hyx, pyresilience) and
          print the comparison tables (--quick; --json, --markdown, --plot PATH write them)
  dlq     inspect and replay a dead-letter queue file: list, show, replay (--dry-run), purge
  serve   serve /metrics (Prometheus), /health (JSON) and a live dashboard page for the
          primitives of this process (--demo runs the demo workload so there is something
          to watch); binds 127.0.0.1 unless --host says otherwise
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="riprap",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run the simulated flaky fleet and print the statistics",
        description="Run a simulated fleet of flaky agents, an external API and a "
        "database through riprap's policies, in simulated time (deterministic for a "
        "seed), and print what every policy did.",
    )
    demo_options.add_arguments(demo)
    bench.add_parser(sub)
    dlq.add_parser(sub)
    serve = sub.add_parser(
        "serve", help="serve /metrics, /health and a live dashboard (read-only)"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=9108, help="port (default 9108; 0: any free port)"
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="run the demo workload in the background, so there is something to watch",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `riprap` console script and `python -m riprap`."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run(demo_options.config_from(args))
    if args.command == "bench":
        return bench.run(args)
    if args.command == "dlq":
        return dlq.run(args)
    if args.command == "serve":
        from .serve import run as serve

        return serve(host=args.host, port=args.port, demo=args.demo)
    parser.print_help()
    return 0 if argv is not None or len(sys.argv) > 1 else 2
