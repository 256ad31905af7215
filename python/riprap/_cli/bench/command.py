"""`riprap bench`: measure every case, print the tables, write JSON, Markdown and a chart.

Usage: `riprap bench [--quick] [--json PATH] [--markdown PATH] [--plot PATH] [--only IMPLS]
[--no-python-backend]`. The cases run in this process on the active backend; on the Rust
backend, riprap's own rows are then measured again on the pure-Python backend in a child
process. A progress display goes to standard error. A path of `-` (for `--json` or
`--markdown`) means standard output, in place of the tables.

Argument errors (an unknown implementation, a directory that does not exist, `--plot` without
matplotlib) are reported before anything is measured, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

__all__ = ["add_parser", "run"]

DESCRIPTION = """\
Measure riprap against the pure-Python reference backend, a hand-rolled equivalent and the
installed peers, and print one comparison table per primitive: the median added cost per call
over a bare call (paired samples), and the bytes a call allocates (tracemalloc). Peers that are
not installed are shown as such. --quick takes fewer samples (under a minute).
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `bench` command to the `riprap` command's subparsers."""
    bench: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="print the benchmark comparison tables",
        description=DESCRIPTION,
    )
    bench.add_argument("--quick", action="store_true", help="fewer samples")
    bench.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write the results as JSON to PATH ('-': standard output, no tables)",
    )
    bench.add_argument(
        "--markdown",
        metavar="PATH",
        default=None,
        help="write the tables as Markdown, with the machine and the command, to PATH "
        "('-': standard output)",
    )
    bench.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="write a PNG bar chart to PATH (needs matplotlib: pip install 'riprap[plot]')",
    )
    bench.add_argument(
        "--only",
        default=None,
        metavar="IMPLS",
        help="comma-separated implementations (riprap, hand-rolled, tenacity, ...)",
    )
    bench.add_argument(
        "--no-python-backend",
        action="store_true",
        help="skip measuring the pure-Python reference backend (a child process)",
    )
    return bench


def _error(message: str) -> int:
    print(f"riprap bench: error: {message}", file=sys.stderr)
    return 2


def _check_path(flag: str, path: str | None, *, stdout_ok: bool = True) -> str | None:
    if path is None or (path == "-" and stdout_ok):
        return None
    if path == "-":
        return f"{flag} needs a file path, not '-'"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"{flag} {path}: the directory {folder} does not exist"
    if os.path.isdir(path):
        return f"{flag} {path}: is a directory"
    return None


def _problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, found before anything is measured."""
    if args.json == "-" and args.markdown == "-":
        return "--json - and --markdown - cannot both write to standard output"
    for problem in (
        _check_path("--json", args.json),
        _check_path("--markdown", args.markdown),
        _check_path("--plot", args.plot, stdout_ok=False),
    ):
        if problem:
            return problem
    if args.plot is not None:
        from .output import require_matplotlib

        return require_matplotlib()
    return None


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces the measurements (without the output paths)."""
    parts = ["riprap bench"]
    if args.quick:
        parts.append("--quick")
    if args.only:
        parts.append(f"--only {args.only}")
    if args.no_python_backend:
        parts.append("--no-python-backend")
    return " ".join(parts)


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def run(args: argparse.Namespace) -> int:
    """Run `riprap bench` with parsed arguments; returns the exit status."""
    problem = _problem(args)
    if problem:
        return _error(problem)
    import riprap

    from . import cases, harness, output
    from .progress import Progress

    every = cases.all_cases()
    impls = [i for i in args.only.split(",") if i] if args.only else None
    if impls is not None:
        known = {impl for case in every for impl in case.build}
        unknown = [i for i in impls if i not in known]
        if unknown:
            return _error(
                f"--only: unknown implementation(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
    t0 = time.monotonic()
    progress = Progress(
        len(harness.planned(every, impls=impls)), f"{riprap.backend()} backend"
    )
    results = harness.run_cases(every, quick=args.quick, impls=impls, progress=progress)
    progress.finish()
    if (
        not args.no_python_backend
        and riprap.backend() == "rust"
        and (impls is None or "riprap" in impls)
    ):
        results += harness.results_in_subprocess(
            "python", quick=args.quick, impls=["riprap"]
        )
    done = output.Run(
        cases=every,
        results=results,
        machine=harness.machine(),
        command=_command(args),
        version=riprap.__version__,
        seconds=time.monotonic() - t0,
        impls=impls,
    )
    if args.json is not None:
        _write(args.json, output.to_json(done))
    if args.markdown is not None:
        _write(args.markdown, output.markdown(done))
    if args.plot is not None and results:
        output.plot(done, args.plot)
    elif args.plot is not None:
        print("riprap bench: nothing was measured, so no chart", file=sys.stderr)
    if "-" not in (args.json, args.markdown):
        print(f"machine: {done.machine}")
        print(f"{output.HEADLINE}\n")
        print(harness.render_table(every, results, impls=impls))
        print(f"riprap bench: {done.seconds:.0f} s in all", file=sys.stderr)
    return 0
