# riprap: the one entry point. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
PY := $(BIN)/python
# PyO3's build script and maturin must see the same interpreter.
export PYO3_PYTHON := $(PY)
MATURIN := VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin
RUST_SOURCES := Cargo.toml Cargo.lock $(shell find rust -name '*.rs' -o -name Cargo.toml)
# Hypothesis profile: "dev" locally, "ci" (more examples) under `make ci`.
HYPOTHESIS_PROFILE ?= dev

$(PY):
	$(PYTHON) -m venv $(VENV)

# Dependencies and a first release build of the extension, in one step.
$(VENV)/.deps: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check 'maturin==1.16.0'
	$(MATURIN) develop --release --extras dev,bench,plot
	touch $@ $(VENV)/.built

# Rebuild the extension in place whenever Rust sources change.
$(VENV)/.built: $(RUST_SOURCES) | $(VENV)/.deps
	$(MATURIN) develop --release --skip-install
	touch $@

.PHONY: install
install: $(VENV)/.built ## Create .venv, install dev + bench + plot extras, build the extension (release)

.PHONY: demo
demo: install ## Run the demo: a simulated flaky fleet through riprap's policies
	$(BIN)/riprap demo

.PHONY: test
test: install ## Rust core tests, then the Python suite on the Rust and on the Python backend
	cargo test -p riprap-core
	RIPRAP_BACKEND=rust RIPRAP_TEST_PASS=1/2 HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(BIN)/pytest
	RIPRAP_BACKEND=python RIPRAP_TEST_PASS=2/2 HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(BIN)/pytest

# libfaketime shifts a child process's wall clock and nothing else: the breaker test that proves
# timers ignore the wall clock runs under it. Locally the test skips (saying why) without it;
# under `make ci` (CI=1) its absence fails the test, so `make ci` installs it when it can.
LIBFAKETIME := $(firstword $(wildcard /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 /usr/local/lib/faketime/libfaketime.so.1))

.PHONY: test-deps
test-deps: ## Install the system packages some tests need (faketime), with apt-get when allowed
	@if [ -n "$(LIBFAKETIME)" ]; then echo "libfaketime: $(LIBFAKETIME)"; \
	elif ! command -v apt-get >/dev/null; then echo "test-deps: no apt-get; install libfaketime by hand"; \
	else SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
		$$SUDO apt-get install -y -q faketime || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q faketime; }; fi

.PHONY: bench
bench: install ## Benchmarks (pytest-benchmark): riprap vs the Python reference vs installed peers
	RIPRAP_BACKEND=python $(BIN)/pytest benches -q -o filterwarnings=default -o timeout=0 --benchmark-max-time=0.5
	RIPRAP_BACKEND=rust $(BIN)/pytest benches -q -o filterwarnings=default -o timeout=0 --benchmark-max-time=0.5

# Instructions per call counted by callgrind, so the gate does not move with the machine's load.
.PHONY: bench-check
bench-check: install ## Regression gate: instructions per call (callgrind) vs benches/check/baseline.json, fails on +10 %
	$(PY) benches/check/check.py

.PHONY: bench-check-update
bench-check-update: install ## Count instructions per call again and rewrite benches/check/baseline.json
	$(PY) benches/check/check.py --update

# `maturin build --release` shares target/ with `make install`'s release build, so the wheel
# costs no second compile.
.PHONY: wheel
wheel: install ## Release wheel and sdist in dist/ (maturin)
	rm -rf dist
	$(MATURIN) build --release --interpreter $(PY) --out dist
	$(MATURIN) sdist --out dist
	@ls -l dist

.PHONY: wheel-test
wheel-test: wheel ## Install the wheel in a fresh venv with no Rust on PATH; smoke import, `riprap demo --quick`
	RIPRAP_WHEEL_DIR=$(abspath dist) $(BIN)/pytest tests/test_wheel.py -p no:cacheprovider

.PHONY: lint
lint: install ## rustfmt, clippy, rustdoc, ruff, mypy --strict, stubtest
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
	$(BIN)/ruff format --check python tests benches
	$(BIN)/ruff check python tests benches
	$(BIN)/mypy
	$(PY) -m mypy.stubtest riprap._core --allowlist stubtest-allowlist.txt

.PHONY: ci
ci: ## What CI runs: lint, the whole test suite (more hypothesis examples), the wheel, bench-check
	$(MAKE) lint
	$(MAKE) test-deps
	CI=1 $(MAKE) test HYPOTHESIS_PROFILE=ci
	$(MAKE) wheel-test
	$(MAKE) bench-check

.PHONY: format
format: install ## Apply rustfmt and ruff format
	cargo fmt --all
	$(BIN)/ruff format python tests benches
	$(BIN)/ruff check --fix python tests benches

.PHONY: clean
clean: ## Remove build products and the virtualenv
	cargo clean
	rm -rf $(VENV) dist .bench .pytest_cache .mypy_cache .ruff_cache .hypothesis python/riprap/_core*.so

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'
