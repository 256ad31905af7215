"""The release wheel works where no Rust toolchain is: `make wheel-test` (part of `make ci`).

`make wheel` builds `dist/riprap-*.whl` and `dist/riprap-*.tar.gz`; `make wheel-test` points
`RIPRAP_WHEEL_DIR` at them and runs this file. Each test installs the wheel into a fresh
virtualenv (no index, no dependencies, so pip cannot fall back to building anything) and runs it
with every cargo/rustc/rustup directory taken off `PATH` and the Rust and virtualenv variables
unset, from an empty directory, so nothing from the source tree can be imported by accident.
Without `RIPRAP_WHEEL_DIR` (a plain `make test`) the tests skip.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass

import pytest

WHEEL_DIR = os.environ.get("RIPRAP_WHEEL_DIR")

pytestmark = pytest.mark.skipif(
    not WHEEL_DIR,
    reason="needs a built wheel: `make wheel-test` (part of `make ci`) runs it",
)

TOOLCHAIN = ("cargo", "rustc", "rustup")
#: Variables that would point a build (or an import) back at the source tree or a toolchain.
UNSET_PREFIXES = ("CARGO", "RUSTUP", "RUSTC", "RUSTFLAGS", "RUSTDOC", "PYO3", "MATURIN")
UNSET = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "RIPRAP_BACKEND", "PYTHONSTARTUP")


def _dist(pattern: str) -> pathlib.Path:
    assert WHEEL_DIR is not None
    found = sorted(pathlib.Path(WHEEL_DIR).glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {WHEEL_DIR}, found {found}"
    return found[0]


def no_rust_env() -> dict[str, str]:
    """The environment minus every Rust toolchain directory and variable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in UNSET and not k.startswith(UNSET_PREFIXES)
    }
    kept = [
        d
        for d in env.get("PATH", "").split(os.pathsep)
        if d and not any(shutil.which(tool, path=d) for tool in TOOLCHAIN)
    ]
    env["PATH"] = os.pathsep.join(kept)
    return env


@dataclass(frozen=True)
class Installed:
    venv: pathlib.Path
    python: pathlib.Path
    env: dict[str, str]
    cwd: pathlib.Path

    def run(self, *argv: str | pathlib.Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=300,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    wheel = _dist("riprap-*.whl")
    root = tmp_path_factory.mktemp("wheel")
    venv, cwd = root / "venv", root / "empty"
    cwd.mkdir()
    env = no_rust_env()
    # The premise: nothing on this PATH can build Rust.
    for tool in TOOLCHAIN:
        assert shutil.which(tool, path=env["PATH"]) is None, tool
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, env=env, cwd=cwd)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", wheel],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr
    return Installed(venv, python, env, cwd)


SMOKE = textwrap.dedent(
    """
    import json, riprap, riprap._core
    from riprap.testing import ManualClock

    clock = ManualClock()
    attempts = []

    @riprap.retry(max_attempts=3, base_delay=1.0, jitter=False, clock=clock)
    def flaky(x):
        attempts.append(clock.now())
        if len(attempts) < 3:
            raise ConnectionError("reset")
        return x * 2

    breaker = riprap.CircuitBreaker("smoke", riprap.CircuitBreakerConfig(failure_threshold=2))

    @breaker
    def broken():
        raise OSError("down")

    outcomes = []
    for _ in range(3):
        try:
            broken()
        except riprap.CircuitOpenError:
            outcomes.append("rejected")
        except OSError:
            outcomes.append("failed")

    limiter = riprap.RateLimiter(rate=1.0, burst=2, clock=clock)
    print(json.dumps({
        "backend": riprap.backend(),
        "riprap": riprap.__file__,
        "core": riprap._core.__file__,
        "version": riprap.__version__,
        "retry": [flaky(21), attempts],
        "breaker": [outcomes, breaker.state.name],
        "limiter": [limiter.try_acquire() for _ in range(3)],
    }))
    """
)


def test_the_wheel_imports_and_runs_on_the_rust_backend(installed: Installed) -> None:
    proc = installed.run(installed.python, "-I", "-c", SMOKE)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["backend"] == "rust"
    # Imported from the fresh virtualenv, not from the source tree.
    for module in ("riprap", "core"):
        assert pathlib.Path(out[module]).is_relative_to(installed.venv), out[module]
    assert out["version"] == _dist("riprap-*.whl").name.split("-")[1]
    assert out["retry"] == [42, [0.0, 1.0, 3.0]]
    assert out["breaker"] == [["failed", "failed", "rejected"], "OPEN"]
    assert out["limiter"] == [True, True, False]


def test_riprap_demo_quick_runs_from_the_wheel(installed: Installed) -> None:
    proc = installed.run(installed.venv / "bin" / "riprap", "demo", "--quick")
    assert proc.returncode == 0, proc.stderr
    assert "rust backend" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_the_wheel_carries_the_extension_stubs_and_command() -> None:
    names = zipfile.ZipFile(_dist("riprap-*.whl")).namelist()
    assert any(n.startswith("riprap/_core.") and n.endswith(".so") for n in names), (
        names
    )
    for name in ("riprap/__init__.py", "riprap/_core.pyi", "riprap/py.typed"):
        assert name in names
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(_dist("riprap-*.whl")).read(entry_points).decode()
    assert "riprap=riprap._cli:main" in text.replace(" ", "").splitlines()


def test_the_sdist_holds_what_a_build_from_source_needs() -> None:
    sdist = _dist("riprap-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = {
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "rust/core/Cargo.toml",
        "rust/core/src/lib.rs",
        "rust/py/Cargo.toml",
        "rust/py/src/lib.rs",
        "python/riprap/__init__.py",
        "python/riprap/_core.pyi",
        "python/riprap/py.typed",
    }
    assert needed <= names, sorted(needed - names)
    # No build products or local state.
    assert not any(n.startswith(("target/", ".venv/", "dist/")) for n in names)
    assert not any(n.endswith((".so", ".pyc")) for n in names)
