"""The suite's own rules, checked on its source: what makes a suite flaky, slow or blind.

- no test module changes process-wide state at import (a thread count set there changes every test
  collected after it: use the `one_thread` fixture);
- no file-wide `slow` mark (it hides the file's fast unit tests from `make test-fast`): mark tests;
- a default per-test timeout, and no test allowed more than the suite's budget;
- no randomness seeded from the clock (a failure could not be replayed): use the `replay_seed` fixture.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SUITE_BUDGET_S = 900  # `make test` on 2 cores: 15 minutes
GLOBAL_STATE = {"set_num_threads", "set_num_interop_threads", "set_default_dtype", "set_default_device",
                "use_deterministic_algorithms", "manual_seed"}


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "data" not in p.relative_to(TESTS).parts)


def _module_level_calls(tree: ast.Module):
    """Calls made when the module is imported (not inside a def or class)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                yield sub


def _name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


@pytest.mark.parametrize("path", _test_files(), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_process_wide_state_set_at_import(path):
    tree = ast.parse(path.read_text())
    bad = [f"line {c.lineno}: {_name(c)}" for c in _module_level_calls(tree) if _name(c) in GLOBAL_STATE]
    assert not bad, f"{path.name} changes the whole session at import ({bad}); use a fixture"


@pytest.mark.parametrize("path", _test_files(), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_file_wide_slow_mark(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
            assert "slow" not in ast.unparse(node.value), f"{path.name}: mark the slow tests one by one"


def test_timeouts_fit_the_suite_budget():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    ini = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(ini["timeout"]) <= SUITE_BUDGET_S and int(ini["session_timeout"]) > 0
    for path in _test_files():
        for n in re.findall(r"mark\.timeout\((\d+)", path.read_text()):
            assert int(n) <= SUITE_BUDGET_S, f"{path.name}: timeout({n}) exceeds the suite's {SUITE_BUDGET_S} s"


def test_no_seed_from_the_clock():
    clock_seed = re.compile(r"(Random|seed|default_rng|manual_seed)\([^)]*time\.(time|monotonic|perf_counter)")
    for path in _test_files():
        for i, line in enumerate(path.read_text().splitlines(), 1):
            assert not clock_seed.search(line), f"{path.name}:{i} seeds from the clock; use the replay_seed fixture"
