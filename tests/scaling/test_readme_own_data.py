"""The README's "Your own data" recipe runs as written: its Python block builds a dataset from numpy
arrays (Episode -> write_dataset), its YAML block is the sweep spec (named by its first-line comment),
and its shell block inspects the data and sweeps it to a fit."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.proc import run_group

REPO = Path(__file__).resolve().parents[2]
TITLE = "Your own data"


def section(markdown: str, title: str = TITLE) -> str:
    """The text under the heading ``title`` up to the next heading of the same or a higher level
    (lines inside fenced code blocks are never headings)."""
    lines, out, level, fenced = markdown.splitlines(), [], None, False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#+) (.*)", line)
        if heading and level is None and heading.group(2).strip() == title:
            level = len(heading.group(1))
            continue
        if level is not None:
            if heading and len(heading.group(1)) <= level:
                break
            out.append(line)
    if level is None:
        raise AssertionError(f"README.md has no '{title}' section")
    return "\n".join(out)


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced code block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def run_recipe(text: str, cwd: Path) -> list[str]:
    """Runs the recipe's blocks in ``cwd``; returns the shell commands it ran (each must exit 0).

    A YAML block is written to the file its first line names (``# NAME.yaml``), else to the first
    ``.yaml`` file the shell commands name.
    """
    env = {k: v for k, v in os.environ.items() if k != "SWEEP_RUN_COMMAND"}  # the real `scaling train`
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    found = blocks(text)
    shell = "\n".join(body for lang, body in found if lang not in ("python", "yaml", "yml"))
    ran = []
    for lang, body in found:
        if lang == "python":
            (cwd / "recipe.py").write_text(body)
            run = run_group([sys.executable, "recipe.py"], cwd=cwd, env=env, timeout=300)
            assert run.returncode == 0, run.stderr[-3000:]
        elif lang in ("yaml", "yml"):
            name = re.match(r"#\s*(\S+\.ya?ml)", body) or re.search(r"(\S+\.ya?ml)", shell)
            assert name, "a YAML block names its file in its first line ('# NAME.yaml') or a command runs it"
            (cwd / name.group(1).rstrip(":")).write_text(body)
        else:
            for line in body.splitlines():
                argv = shlex.split(line, comments=True)
                if not argv:
                    continue
                assert argv[0] == "scaling", f"not a scaling command: {line}"
                run = run_group([sys.executable, "-m", "sweeps.cli", *argv[1:]], cwd=cwd, env=env, timeout=600)
                assert run.returncode == 0, f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
                ran.append(line)
    return ran


@pytest.mark.slow
def test_readme_own_data_recipe_runs_as_written(tmp_path):
    """About 20 s on 2 cores: a 3 x 2 sweep of tiny models on 16 random episodes, to a fit."""
    text = section((REPO / "README.md").read_text())
    ran = run_recipe(text, tmp_path)
    assert any(c.split()[:3] == ["scaling", "sweep", "run"] for c in ran), "the recipe sweeps its data"
    fits = list((tmp_path / "runs").glob("*/fit.json"))
    assert len(fits) == 1, "the sweep ends in a fit"
    for needle in ("Episode(", "write_dataset(", "--camera"):
        assert needle in text, f"the section shows {needle}"
