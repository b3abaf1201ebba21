# Two commands a user needs: `make demo` and `make test`. Each creates .venv and installs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pinned so that CI takes the CPU wheel on this machine's disk; override for your own build, e.g.
#   make demo TORCH_SPEC="torch"          (PyPI default, CUDA on Linux)
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,metaworld,postgres,slurm
# `make demo DEMO_ARGS=--small`: the three-by-three version, for a slow or busy machine.
DEMO_ARGS ?=

.PHONY: demo test test-fast lint coverage venv bench clean

venv: $(VENV)/.installed

# The package alone: all that `make demo` runs. The extras (Meta-World, PostgreSQL, SLURM, pytest, ruff) come
# with the first `make test`, so a first demo does not spend ~16 s installing what it never imports.
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.base
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: $(VENV)/.base
	$(BIN)/python -m sweeps.demo $(DEMO_ARGS)

# The linter first, so CI (.ci/run calls `make test`) fails on a lint error too. Rules: [tool.ruff] in pyproject.toml.
test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: venv
	$(BIN)/ruff check .

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

# The whole suite under coverage (subprocesses included: see [tool.coverage.run] in pyproject.toml).
coverage: venv
	$(BIN)/python -m pytest -q -p no:cacheprovider --cov --cov-report=term-missing:skip-covered

bench: venv
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf runs/quickstart data/quickstart
