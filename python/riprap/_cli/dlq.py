"""`riprap dlq list|show|replay|purge`: look into a dead-letter queue file and replay it.

Exit codes: 0 done; 1 some replays failed (or, with `--dry-run`, some entries could not be
replayed), or `show` found no such entry; 2 a usage error, including a `--db` that does not
exist or is not a usable dead-letter queue. The commands never create a queue file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import inspect
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO, cast

__all__ = ["add_parser", "run"]

DEFAULT_DB = "riprap-dlq.sqlite3"

HELP = """\
inspect and replay a dead-letter queue (a SQLite file written by riprap.DeadLetterQueue)

commands:
  list     the entries, oldest first: id, time, operation, attempts, replays, error
  show     one entry in full: arguments, error, metadata, replay history
  replay   run entries again: each operation `module:qualname` is imported and called with
           its stored arguments; successes are removed, failures kept with replay_count and
           last_error (--dry-run: only show what would run)
  purge    delete entries (all, or one operation's); needs --yes

exit codes: 0 ok; 1 some replays failed, or no such entry; 2 usage error (bad arguments, or a
--db that is missing or not a dead-letter queue)
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `dlq` command and its subcommands to the `riprap` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="PATH",
        help=f"the queue's database file (default: {DEFAULT_DB})",
    )
    common.add_argument("--json", action="store_true", help="print JSON")
    dlq = subparsers.add_parser(
        "dlq",
        help="inspect and replay the dead-letter queue",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND")
    sub.required = True
    listing = sub.add_parser(
        "list", parents=[common], help="list entries, oldest first"
    )
    listing.add_argument("--operation", help="only this operation's entries")
    listing.add_argument(
        "--limit",
        type=_count,
        default=100,
        help="at most this many (default 100; 0: all)",
    )
    show = sub.add_parser("show", parents=[common], help="show one entry in full")
    show.add_argument("id", type=int, help="the entry's id")
    replay = sub.add_parser("replay", parents=[common], help="run entries again")
    replay.add_argument("--operation", help="only this operation's entries")
    replay.add_argument("--limit", type=_count, default=None, help="at most this many")
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be replayed, and whether each operation can be imported; "
        "call nothing, change nothing",
    )
    replay.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="directory to import operations from, put first on sys.path (default: .)",
    )
    replay.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load pickled arguments (only for a file nobody else can write)",
    )
    purge = sub.add_parser("purge", parents=[common], help="delete entries")
    purge.add_argument("--operation", help="only this operation's entries")
    purge.add_argument("--yes", action="store_true", help="really delete them")
    return cast(argparse.ArgumentParser, dlq)


def _count(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run `riprap dlq ...`; returns the exit code."""
    from .._errors import DeadLetterError

    out = out or sys.stdout
    path = os.path.abspath(args.db)
    if not os.path.exists(path):
        print(f"riprap dlq: no dead-letter queue at {path}", file=sys.stderr)
        return 2
    try:
        queue = _open(args, path)
        try:
            return COMMANDS[args.dlq_command](queue, args, out)
        finally:
            queue.close()
    except DeadLetterError as exc:
        print(f"riprap dlq: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `riprap dlq list | head`: the reader left early
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes
        return 0


def _open(args: argparse.Namespace, path: str) -> Any:
    from .._dlq import DeadLetterQueue

    return DeadLetterQueue(path, allow_pickle=getattr(args, "allow_pickle", False))


# --- list and show -----------------------------------------------------------------------


def _when(created_at: float) -> str:
    t = datetime.datetime.fromtimestamp(created_at, datetime.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _error_of(entry: Any) -> str:
    if entry.error_type and entry.error_message:
        return f"{entry.error_type}: {entry.error_message}"
    return entry.error_type or entry.error_message or ""


def _table(entries: list[Any]) -> list[str]:
    rows = [
        (
            str(e.id),
            _when(e.created_at),
            _clip(e.operation, 40),
            str(e.attempts),
            str(e.replay_count),
            _clip(_error_of(e), 60),
        )
        for e in entries
    ]
    head = ("id", "created (UTC)", "operation", "attempts", "replays", "error")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {0, 3, 4}

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(head), *(line(r) for r in rows)]


def _list(queue: Any, args: argparse.Namespace, out: TextIO) -> int:
    limit = args.limit or None
    entries = queue.list(args.operation, limit)
    total = queue.count(args.operation)
    if args.json:
        json.dump(
            {
                "db": queue.path,
                "total": total,
                "entries": [e.to_dict() for e in entries],
            },
            out,
            indent=2,
        )
        out.write("\n")
        return 0
    if not entries:
        print(f"no entries in {queue.path}", file=out)
        return 0
    for line in _table(entries):
        print(line, file=out)
    more = (
        f" (the oldest {len(entries)} shown; --limit 0 for all)"
        if total > len(entries)
        else ""
    )
    print(
        f"\n{total} entr{'y' if total == 1 else 'ies'} in {queue.path}{more}", file=out
    )
    return 0


def _show(queue: Any, args: argparse.Namespace, out: TextIO) -> int:
    entry = queue.get(args.id)
    if entry is None:
        print(f"riprap dlq: no entry {args.id} in {queue.path}", file=sys.stderr)
        return 1
    data = entry.to_dict()
    if args.json:
        json.dump(data, out, indent=2)
        out.write("\n")
        return 0
    data["created_at"] = f"{_when(entry.created_at)} UTC ({entry.created_at:.3f})"
    if entry.encoding == "pickle" and data["args"] is None:
        data["args"] = data["kwargs"] = repr(entry.args)
    width = max(len(k) for k in data)
    for key, value in data.items():
        if value is None:
            text = "-"
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, indent=2)
        text = text.replace("\n", "\n" + " " * (width + 2))
        print(f"{key.ljust(width)}  {text}", file=out)
    return 0


# --- replay and purge ---------------------------------------------------------------------


def _replay(queue: Any, args: argparse.Namespace, out: TextIO) -> int:
    from .._dlq_entry import call_entry, resolve

    app_dir = os.path.abspath(args.app_dir)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    if args.dry_run:
        return _dry_run(queue, args, out, resolve)
    outcomes: list[dict[str, Any]] = []

    def handler(entry: Any) -> object:
        record: dict[str, Any] = {"id": entry.id, "operation": entry.operation}
        outcomes.append(record)
        try:
            result = call_entry(entry, queue.allow_pickle)
            if inspect.isawaitable(result):  # an async operation: run it here
                asyncio.run(_awaited(result))
        except Exception as exc:
            record["ok"], record["error"] = False, f"{type(exc).__qualname__}: {exc}"
            raise
        record["ok"] = True
        return None

    succeeded, failed = queue.replay(
        handler, operation=args.operation, limit=args.limit
    )
    _report(
        out,
        args.json,
        {"succeeded": succeeded, "failed": failed, "entries": outcomes},
        ("ok", "failed"),
        f"replayed {succeeded + failed}: {succeeded} succeeded (removed), "
        f"{failed} failed (kept)",
    )
    return 1 if failed else 0


def _report(
    out: TextIO,
    as_json: bool,
    data: dict[str, Any],
    words: tuple[str, str],
    summary: str,
) -> None:
    """`data` as JSON, or one line per entry and then `summary`.

    `words` are what an entry that went well and one that did not are called.
    """
    if as_json:
        json.dump(data, out, indent=2)
        out.write("\n")
        return
    width = max(len(w) for w in words)
    for r in data["entries"]:
        status = words[0] if r["ok"] else words[1]
        extra = "" if r["ok"] else f"  {_clip(r.get('error'), 80)}"
        print(f"{status:{width}}  {r['id']:>6}  {r['operation']}{extra}", file=out)
    print(f"\n{summary}", file=out)


async def _awaited(awaitable: Any) -> None:
    await awaitable


def _dry_run(
    queue: Any,
    args: argparse.Namespace,
    out: TextIO,
    resolve: Callable[[str], object],
) -> int:
    plan: list[dict[str, Any]] = []
    for entry in queue.list(args.operation, args.limit):
        item: dict[str, Any] = {"id": entry.id, "operation": entry.operation}
        try:
            resolve(entry.operation)
        except LookupError as exc:
            item["ok"], item["error"] = False, str(exc)
        else:
            item["ok"] = True
        plan.append(item)
    bad = sum(1 for p in plan if not p["ok"])
    _report(
        out,
        args.json,
        {"dry_run": True, "entries": plan},
        ("would run", "cannot run"),
        f"dry run: {len(plan)} entr{'y' if len(plan) == 1 else 'ies'} would be replayed, "
        f"{bad} of them cannot be imported; nothing was called or changed",
    )
    return 1 if bad else 0


def _purge(queue: Any, args: argparse.Namespace, out: TextIO) -> int:
    n = queue.count(args.operation)
    if not args.yes:
        what = f"operation {args.operation!r}" if args.operation else "every operation"
        print(
            f"riprap dlq: purge would delete {n} entries of {what} from {queue.path}; "
            "add --yes to do it",
            file=sys.stderr,
        )
        return 2
    deleted = queue.purge(args.operation)
    if args.json:
        json.dump({"deleted": deleted}, out)
        out.write("\n")
    else:
        print(f"deleted {deleted} entr{'y' if deleted == 1 else 'ies'}", file=out)
    return 0


COMMANDS: dict[str, Callable[[Any, argparse.Namespace, TextIO], int]] = {
    "list": _list,
    "show": _show,
    "replay": _replay,
    "purge": _purge,
}
