"""Imports point one way: inside every package a reader can start at the bottom file and climb, and
between the packages each floor imports only those below it (NEVER_IMPORTS).

Every import counts, also those inside functions (a "late" import that breaks a circle is still a
circle); only ``if TYPE_CHECKING:`` blocks are left out (annotations, never executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeps", "scaling", "analysis", "vla_core")
# The floors, bottom up: the packages each one must never import. vla_core is the bottom (standard
# library only); sweeps, the top, may import the other three; benchmarks import the packages, and no
# package imports them (they are read too, so that an import of them shows in GRAPH).
NEVER_IMPORTS = {
    "vla_core": ("scaling", "sweeps", "analysis", "benchmarks"),
    "scaling": ("analysis", "sweeps", "benchmarks"),
    "analysis": ("scaling", "sweeps", "benchmarks"),
    "sweeps": ("benchmarks",),
}
NO_TORCH = ("analysis", "vla_core")  # they fit and check anyone's results table, where torch may be missing


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in (*PACKAGES, "benchmarks"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (``from pkg import submodule`` counts as the submodule)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
            rest = [a for a in node.names if f"{node.module}.{a.name}" not in MODULES]
            found |= subs
            if rest and node.module in MODULES:
                found.add(node.module)
    return found


GRAPH = {m: _imports(p) - {m} for m, p in MODULES.items()}


def _cycle(package: str) -> list[str] | None:
    """One import cycle among the modules of ``package`` (a list closing on its first item), or None."""
    nodes = {m for m in GRAPH if m == package or m.startswith(package + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH[m] & nodes):
            # A package's __init__ re-exporting its submodules is the package's face, not a layer:
            # skip edges into a package from its own submodules' side only when they re-enter it.
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(nodes):
        if m not in state and (found := visit(m)):
            return found
    return None


@pytest.mark.parametrize("package", ["sweeps", "scaling.data", "scaling.model", "scaling", "analysis", "vla_core"])
def test_no_import_cycles(package):
    cycle = _cycle(package)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, "sweeps.spec", GRAPH["sweeps.spec"] | {"sweeps.sweep"})
    assert _cycle("sweeps") is not None


def _upward(module: str) -> set[str]:
    """The modules ``module`` imports that its package must never import (NEVER_IMPORTS)."""
    banned = NEVER_IMPORTS[module.split(".")[0]]
    return {d for d in GRAPH[module] if d.split(".")[0] in banned}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] in PACKAGES))
def test_packages_import_downwards(module):
    """vla_core is the bottom floor, sweeps the top; scaling and analysis import neither each other nor
    sweeps; no package imports benchmarks; analysis and vla_core never import torch."""
    assert not _upward(module), f"{module} imports {sorted(_upward(module))}"
    if module.split(".")[0] in NO_TORCH:
        tree = ast.parse(MODULES[module].read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
        assert "torch" not in names


@pytest.mark.parametrize("module, dep", [
    ("vla_core.schema", "scaling.result"), ("vla_core.errors", "sweeps.spec"), ("vla_core.atomic", "analysis.table"),
    ("scaling.config", "analysis.table"), ("scaling.train", "sweeps.spec"),
    ("analysis.table", "scaling.config"), ("analysis.table", "sweeps.spec"), ("sweeps.spec", "benchmarks.bench_fit"),
])
def test_the_floor_check_finds_an_upward_import(monkeypatch, module, dep):
    monkeypatch.setitem(GRAPH, module, GRAPH[module] | {dep})
    assert dep in _upward(module)
