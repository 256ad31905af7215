"""`riprap dlq list|show|replay|purge` end to end on a real queue file.

Most cases call `riprap._cli.main([...])` in process (output through capsys); two run the real
command in a child process (`python -m riprap`), where the operations are imported from this
folder (PYTHONPATH). Runs on the active backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dlq_targets
import pytest

from riprap import DeadLetterQueue
from riprap._cli import main

HERE = Path(__file__).resolve().parent


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A queue file with three entries: one that replays, one that fails, one unimportable."""
    path = tmp_path / "dlq.sqlite3"
    q = DeadLetterQueue(path)
    q.put(
        "dlq_targets:record",
        args=["a-1", {"cmd": "reboot"}],
        kwargs={"urgent": True},
        error=ConnectionError("reset by peer"),
        attempts=3,
        metadata={"agent": "a-1"},
    )
    q.put("dlq_targets:fail", args=[2], error=TimeoutError("slow"), attempts=5)
    q.put("gone.module:handler", args=[3], error="no such service")
    q.close()
    return path


@pytest.fixture(autouse=True)
def _no_calls() -> None:
    dlq_targets.CALLS.clear()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["dlq", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_table(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "list", "--db", str(db))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "id",
        "created",
        "(UTC)",
        "operation",
        "attempts",
        "replays",
        "error",
    ]
    assert lines[1].split()[0] == "1"
    assert "dlq_targets:record" in lines[1]
    assert "ConnectionError: reset by peer" in lines[1]
    assert lines[3].split()[3:6] == ["gone.module:handler", "0", "0"]
    assert lines[-1] == f"3 entries in {db}"


def test_list_json_operation_and_limit(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "list", "--db", str(db), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["total"] == 3
    assert [e["id"] for e in data["entries"]] == [1, 2, 3]
    first = data["entries"][0]
    assert first["args"] == ["a-1", {"cmd": "reboot"}]
    assert first["kwargs"] == {"urgent": True}
    assert (first["error_type"], first["attempts"], first["metadata"]) == (
        "ConnectionError",
        3,
        {"agent": "a-1"},
    )
    code, out, _ = cli(
        capsys, "list", "--db", str(db), "--json", "--operation", "dlq_targets:fail"
    )
    assert [e["id"] for e in json.loads(out)["entries"]] == [2]
    code, out, _ = cli(capsys, "list", "--db", str(db), "--limit", "1")
    assert out.splitlines()[-1].endswith("(the oldest 1 shown; --limit 0 for all)")


def test_show(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "show", "2", "--db", str(db))
    assert code == 0
    fields = {
        line.split()[0]: line.split(None, 1)[1]
        for line in out.splitlines()
        if line[:1] != " "
    }
    assert fields["operation"] == "dlq_targets:fail"
    assert fields["error_type"] == "TimeoutError"
    assert fields["last_error"] == "-"
    code, out, _ = cli(capsys, "show", "2", "--db", str(db), "--json")
    assert json.loads(out)["args"] == [2]
    code, out, err = cli(capsys, "show", "99", "--db", str(db))
    assert code == 1
    assert "no entry 99" in err


def test_replay_dry_run_changes_nothing(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "replay", "--db", str(db), "--dry-run", "--json")
    assert code == 1  # one entry cannot be imported, so a real replay would fail it
    plan = json.loads(out)
    assert plan["dry_run"] is True
    assert [(p["id"], p["ok"]) for p in plan["entries"]] == [
        (1, True),
        (2, True),
        (3, False),
    ]
    assert "cannot import module 'gone.module'" in plan["entries"][2]["error"]
    assert dlq_targets.CALLS == []
    q = DeadLetterQueue(db)
    assert [(e.id, e.replay_count) for e in q.list()] == [(1, 0), (2, 0), (3, 0)]
    q.close()
    code, out, _ = cli(
        capsys,
        "replay",
        "--db",
        str(db),
        "--dry-run",
        "--operation",
        "dlq_targets:record",
    )
    assert code == 0
    assert "would run" in out
    assert "nothing was called or changed" in out


def test_replay(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "replay", "--db", str(db), "--json")
    assert code == 1
    result = json.loads(out)
    assert (result["succeeded"], result["failed"]) == (1, 2)
    assert [(r["id"], r["ok"]) for r in result["entries"]] == [
        (1, True),
        (2, False),
        (3, False),
    ]
    assert result["entries"][1]["error"] == "ValueError: still failing with (2,)"
    assert dlq_targets.CALLS[0] == (
        "record",
        ("a-1", {"cmd": "reboot"}),
        {"urgent": True},
    )
    q = DeadLetterQueue(db)
    kept = q.list()
    assert [(e.id, e.replay_count) for e in kept] == [(2, 1), (3, 1)]
    assert kept[1].last_error is not None
    assert kept[1].last_error.startswith(
        "LookupError: cannot import module 'gone.module'"
    )
    q.close()
    code, out, _ = cli(
        capsys,
        "replay",
        "--db",
        str(db),
        "--operation",
        "dlq_targets:fail",
        "--limit",
        "1",
    )
    assert code == 1
    assert out.splitlines()[-1] == "replayed 1: 0 succeeded (removed), 1 failed (kept)"


def test_replay_all_succeed_exits_0(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        capsys, "replay", "--db", str(db), "--operation", "dlq_targets:record"
    )
    assert code == 0
    assert out.splitlines()[0].split() == ["ok", "1", "dlq_targets:record"]


def test_purge_needs_yes(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "purge", "--db", str(db))
    assert code == 2
    assert "would delete 3 entries" in err
    code, out, _ = cli(
        capsys, "purge", "--db", str(db), "--operation", "dlq_targets:fail", "--yes"
    )
    assert (code, out.strip()) == (0, "deleted 1 entry")
    code, out, _ = cli(capsys, "purge", "--db", str(db), "--yes", "--json")
    assert json.loads(out) == {"deleted": 2}


def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "list", "--db", str(tmp_path / "missing.sqlite3"))
    assert code == 2
    assert "no dead-letter queue at" in err
    assert not (tmp_path / "missing.sqlite3").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database")
    code, _, err = cli(capsys, "list", "--db", str(notes))
    assert code == 2
    assert "is not a SQLite database" in err
    for argv in (["list", "--limit", "-1"], ["show", "x"], ["frobnicate"], []):
        with pytest.raises(SystemExit) as info:
            main(["dlq", *argv])
        assert info.value.code == 2


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    paths = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    return subprocess.run(
        [sys.executable, "-m", "riprap", "dlq", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_end_to_end_in_a_child_process(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite3"
    out_file = tmp_path / "replayed.txt"
    q = DeadLetterQueue(path)
    q.put(
        "dlq_targets:append_line", args=[str(out_file), "first"], error=OSError("disk")
    )
    q.put(
        "dlq_targets:append_line", args=[str(out_file), "second"], error=OSError("disk")
    )
    q.put("dlq_targets:fail", args=[1])
    q.close()
    listed = run_cli("list", "--db", str(path), "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [e["operation"] for e in json.loads(listed.stdout)["entries"]] == [
        "dlq_targets:append_line",
        "dlq_targets:append_line",
        "dlq_targets:fail",
    ]
    dry = run_cli("replay", "--db", str(path), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert not out_file.exists()
    replayed = run_cli("replay", "--db", "dlq.sqlite3", cwd=tmp_path)  # relative to cwd
    assert replayed.returncode == 1, replayed.stderr
    assert out_file.read_text() == "first\nsecond\n"
    assert "replayed 3: 2 succeeded (removed), 1 failed (kept)" in replayed.stdout
    q = DeadLetterQueue(path)
    assert [(e.operation, e.replay_count) for e in q.list()] == [
        ("dlq_targets:fail", 1)
    ]
    q.close()


def test_app_dir_puts_operations_on_the_path(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "myjobs.py").write_text(
        "def touch(path):\n    open(path, 'w').write('done')\n", encoding="utf-8"
    )
    path = tmp_path / "dlq.sqlite3"
    marker = tmp_path / "marker"
    q = DeadLetterQueue(path)
    q.put("myjobs:touch", args=[str(marker)])
    q.close()
    proc = run_cli("replay", "--db", str(path), "--app-dir", str(app), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert marker.read_text() == "done"
