"""`riprap bench`: its outputs (JSON, Markdown, the chart), argument errors, progress, and the
allocation count beside the timings.

The command runs on fake cases here (a few ms each): what is checked is what it writes, not how
fast anything is.
"""

from __future__ import annotations

import io
import json
import pathlib
import sys

import pytest

from riprap._cli import main
from riprap._cli.bench import cases, harness
from riprap._cli.bench.progress import Progress

CALLS = {"fake": 0}


def _fn() -> int:
    CALLS["fake"] += 1
    return 1


def _fake_cases() -> list[harness.Case]:
    return [
        harness.Case(
            "retry_fake",
            "a fake retry row",
            150.0,
            {
                "riprap": lambda: _fn,
                "fake": lambda: _fn,
                "missing peer": lambda: _fn,
            },
            {"missing peer": ("json", "riprap_no_such_module")},
        ),
        harness.Case(
            "pipeline_fake",
            "a fake pipeline row",
            None,
            {"fake": lambda: _fn},
            target_impl="hand-rolled",
        ),
    ]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cases, "all_cases", _fake_cases)
    CALLS["fake"] = 0


def test_json_path_writes_a_document_that_parses(
    fake: None, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--no-python-backend", "--json", str(path)]
    assert main(argv) == 0
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["machine"] == harness.machine()
    assert doc["command"] == "riprap bench --quick --no-python-backend"
    assert doc["seconds"] >= 0
    assert doc["not_installed"] == {"retry_fake": ["missing peer"]}
    measured = {(r["case"], r["impl"]) for r in doc["results"]}
    assert measured == {
        ("retry_fake", "riprap"),
        ("retry_fake", "fake"),
        ("pipeline_fake", "fake"),
    }
    assert all(isinstance(r["alloc_bytes"], float) for r in doc["results"])
    # The tables still go to standard output when the JSON goes to a file.
    out = capsys.readouterr().out
    assert "| a fake retry row | ≤ 150 ns |" in out
    assert "| a fake pipeline row | ≤ hand-rolled |" in out


def test_json_dash_is_standard_output_in_place_of_the_tables(
    fake: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--quick", "--json", "-", "--only", "fake"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)  # nothing but the document
    assert {r["impl"] for r in doc["results"]} == {"fake"}
    assert doc["command"] == "riprap bench --quick --only fake"
    assert doc["not_installed"] == {}  # the missing peer was not asked for


def test_markdown_writes_the_tables_with_the_machine_and_the_command(
    fake: None, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "bench.md"
    assert (
        main(["bench", "--quick", "--only", "fake,riprap", "--markdown", str(path)])
        == 0
    )
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0].startswith(f"Machine: {harness.machine()}; riprap ")
    assert lines[1].startswith("Command: `riprap bench --quick --only fake,riprap`")
    header = next(line for line in lines if line.startswith("| path | target |"))
    assert "riprap (" in header
    assert "| fake |" in header or header.endswith("| fake |")
    row = next(line for line in lines if line.startswith("| a fake retry row |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "≤ 150 ns"
    assert all(c.endswith(" B") for c in cells[2:4])  # time, then bytes per call


def test_a_missing_peer_is_shown_as_not_installed(
    fake: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--quick", "--no-python-backend"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("| path | target |"))
    assert header.split("|")[-2].strip() == "missing peer"
    row = next(line for line in out if line.startswith("| a fake retry row |"))
    assert row.split("|")[-2].strip() == harness.NOT_INSTALLED


def test_plot_writes_a_png(fake: None, tmp_path: pathlib.Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert main(["bench", "--quick", "--only", "fake", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_exits_2_before_measuring(
    fake: None,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    path = tmp_path / "bench.png"
    assert main(["bench", "--quick", "--only", "fake", "--plot", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err
    assert "riprap[plot]" in err
    assert CALLS["fake"] == 0  # nothing was measured
    assert not path.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--json"], "expected one argument"),
        (["--plot"], "expected one argument"),
        (["--quick", "--fast"], "unrecognized arguments: --fast"),
        (["--only", "riprap,nobody"], "unknown implementation(s) 'nobody'"),
        (["--json", "{missing}/x.json"], "does not exist"),
        (["--markdown", "{missing}/x.md"], "does not exist"),
        (["--plot", "-"], "--plot needs a file path"),
        (["--json", "-", "--markdown", "-"], "cannot both write to standard output"),
        (["--markdown", "{tmp}"], "is a directory"),
    ],
)
def test_argument_errors_exit_2_with_a_message(
    fake: None,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    argv = [a.format(missing=tmp_path / "no" / "such", tmp=tmp_path) for a in argv]
    try:
        status = main(["bench", *argv])
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code  # type: ignore[assignment]
    assert status == 2
    err = capsys.readouterr().err
    assert message in err
    assert "error:" in err
    assert CALLS["fake"] == 0


def test_progress_goes_to_stderr_as_plain_lines_when_piped(
    fake: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--quick", "--only", "fake"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.endswith(": retry_fake") for line in err)
    assert any(line.endswith(": pipeline_fake") for line in err)
    assert any("2 measurements in" in line for line in err)
    assert not any("\r" in line for line in err)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_bar_on_a_terminal() -> None:
    stream = _Terminal()
    progress = Progress(4, "rust backend", stream)
    case = harness.Case("retry_x", "x", None, {})
    for impl in ("a", "b", "c", "d"):
        progress(case, impl)
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 5  # every draw returns to the start of the line
    assert text.count("\n") == 1  # and only the summary ends it
    assert "[" + "#" * 18 + "." * 6 + "] 4/4" in text  # 3 of 4 done while the 4th runs
    assert text.endswith("rust backend: 4 measurements in 0 s\n")


def _allocates_1000() -> bytearray:
    return bytearray(1000)


def _keeps_one() -> None:
    KEPT.append(object())


KEPT: list[object] = []


def test_allocated_counts_what_a_call_allocates_and_nothing_for_a_bare_call() -> None:
    assert harness.allocated(harness.bare) == 0
    assert harness.allocated(lambda: None) == 0
    assert 1000 <= harness.allocated(_allocates_1000) < 1200
    assert harness.allocated(_keeps_one) >= 16  # an object() kept per call
    # Against a baseline that allocates the same, nothing is added.
    assert harness.allocated(_allocates_1000, _allocates_1000) == 0
