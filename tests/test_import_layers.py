"""Imports point one way: inside every package a reader can start at the bottom file and climb.

Every import counts, also those inside functions (a "late" import that breaks a circle is still a
circle); only ``if TYPE_CHECKING:`` blocks are left out (annotations, never executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeps", "scaling", "analysis")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
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


@pytest.mark.parametrize("package", ["sweeps", "scaling.data", "scaling.model", "scaling", "analysis"])
def test_no_import_cycles(package):
    cycle = _cycle(package)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, "sweeps.spec", GRAPH["sweeps.spec"] | {"sweeps.sweep"})
    assert _cycle("sweeps") is not None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_packages_import_downwards(module):
    """sweeps is the top floor; scaling never imports sweeps; analysis imports neither (nor torch)."""
    deps = GRAPH[module]
    if module.startswith("scaling"):
        assert not {d for d in deps if d.startswith("sweeps")}, deps
    if module.startswith("analysis"):
        assert not {d for d in deps if d.startswith(("sweeps", "scaling"))}, deps
        tree = ast.parse(MODULES[module].read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                 for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
        assert "torch" not in names
