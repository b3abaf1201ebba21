"""The committed studies (results/*/) read back and refit to the numbers they committed.

Each study's README states the command that wrote its fits (`scaling report ... --out results/X ...`,
`scaling fit ... --approach 2 --out fit_a2.json`); rerun into a temporary folder, every number and
flag of every JSON file it wrote equals the committed one to 1e-9 (relative). Keys the committed file
lacks (added since, e.g. stderr and covariance) are allowed; every committed key must be there. The
text of warnings is not compared: sentences added to the package since a study was committed (e.g.
the one-seed warning of an optimum) are no change of its numbers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from analysis.result import FitResult

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
STUDIES = sorted(p.parent.name for p in RESULTS.glob("*/fit*.json") if p.name != "fit_a2.json")
STUDIES = sorted(set(STUDIES))
IGNORED = {"format_version"}
REL = 1e-9


def mismatches(committed, new, path: str = "", text: bool = True) -> list[str]:
    """Where `new` differs from `committed`: a committed key missing, a flag, null or length that differs, a
    number further than `REL` (relative) from the committed one, and (with `text`) a string that differs.
    Keys only `new` has are allowed; without `text`, lists of strings (warnings, notes) are not compared."""
    if isinstance(committed, dict):
        if not isinstance(new, dict):
            return [f"{path}: an object became {type(new).__name__}"]
        out = []
        for k, v in committed.items():
            if k in IGNORED:
                continue
            out += [f"{path}.{k}: missing"] if k not in new else mismatches(v, new[k], f"{path}.{k}", text)
        return out
    if isinstance(committed, list):
        if not text and all(isinstance(v, str) for v in committed) and isinstance(new, list) and \
                all(isinstance(v, str) for v in new):
            return []
        if not isinstance(new, list) or len(new) != len(committed):
            return [f"{path}: a list of {len(committed)} became {new!r:.60}"]
        return [m for i, (a, b) in enumerate(zip(committed, new)) for m in mismatches(a, b, f"{path}[{i}]", text)]
    if isinstance(committed, str):
        return [] if committed == new or not (text or not isinstance(new, str)) else \
            [f"{path}: {committed!r:.60} became {new!r:.60}"]
    if isinstance(committed, bool) or committed is None:
        return [] if committed == new else [f"{path}: {committed!r:.60} became {new!r:.60}"]
    if isinstance(new, bool) or not isinstance(new, (int, float)):
        return [f"{path}: {committed!r} became {new!r:.60}"]
    if committed == new or math.isclose(committed, new, rel_tol=REL, abs_tol=0.0):
        return []
    return [f"{path}: {committed!r} became {new!r} (relative {abs(new - committed) / abs(committed):.2g})"]


def readme_commands(study: str, out: Path) -> list[list[str]]:
    """The `scaling report` and `scaling fit --approach 2` commands the study's README says wrote its fits,
    run from the repository's root, writing into `out`."""
    text = (RESULTS / study / "README.md").read_text()
    flat = re.sub(r"`?\s*\n\s*`?", " ", text)
    cmds = []
    m = re.search(rf"scaling report (results/{study}/results\.csv) --out results/{study}((?: --[a-z-]+ [0-9.e+-]+)*)",
                  flat)
    if m:
        cmds.append(["report", m.group(1), "--out", str(out), *m.group(2).split()])
    if (RESULTS / study / "fit_a2.json").is_file() and re.search(r"scaling fit results\.csv --approach 2 --out "
                                                                 r"fit_a2\.json", flat):
        cmds.append(["fit", f"results/{study}/results.csv", "--approach", "2", "--out", str(out / "fit_a2.json")])
    return cmds


# Approach 2 fits (`"approach": 2`) are plain dicts read by `load_any_fit`, not FitResults.
LAW_FITS = [p for p in sorted(RESULTS.glob("*/fit*.json")) if json.loads(p.read_text()).get("approach") != 2]


@pytest.mark.parametrize("path", LAW_FITS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_fit_reads_back_with_every_key_and_value(path):
    d = json.loads(path.read_text())
    assert mismatches(d, FitResult.from_dict(d).to_dict()) == []


def test_every_committed_study_states_its_command(tmp_path):
    for study in STUDIES:
        assert readme_commands(study, tmp_path), study


def test_the_main_fit_of_a_committed_study_refits_to_its_numbers():
    """The grid fit and the backtest of results/cpu_study (no bootstrap, so a few seconds): its committed
    parameters, objective, exponents, convergence and backtest to 1e-9."""
    import analysis

    committed = json.loads((RESULTS / "cpu_study" / "fit.json").read_text())
    res = analysis.fit(RESULTS / "cpu_study" / "results.csv", loss_floor=1.1866, bootstrap=0, success_col=None,
                       compare=False).to_dict()
    for key in ("params", "exponents", "huber", "n_points", "backtest", "observed", "notes", "k", "at_bound"):
        assert mismatches(committed[key], res[key], key) == []
    cv = {k: committed["convergence"][k] for k in ("converged", "iterations", "grad_max")}
    assert mismatches(cv, res["convergence"], "convergence") == []


REFITTED = ("cpu_isoflop", "cpu_families")
"""The studies the slow test refits (about a minute together on 2 cores): between them every writer of a
committed fit (the report's free / floored pair with success laws, Approaches 1-3 and validation rounds,
`scaling fit --approach 2`, and the report of several families); the other studies take cpu_isoflop's path."""


@pytest.mark.slow
@pytest.mark.parametrize("study", REFITTED)
def test_committed_study_refits_to_every_committed_number(study, tmp_path, monkeypatch):
    """The README's commands, rerun: every JSON file they wrote equals the committed one."""
    from sweeps.cli import main

    monkeypatch.chdir(REPO)  # the README's paths, so each fit names its table as the committed one does
    for argv in readme_commands(study, tmp_path):
        assert main(argv) == 0
    written = sorted(tmp_path.glob("*.json"))
    assert written
    for p in written:
        committed = json.loads((RESULTS / study / p.name).read_text())
        if p.name == "fit_a2.json":  # fitted in the study's own folder before it was committed here
            committed.pop("source")
        assert mismatches(committed, json.loads(p.read_text()), p.name, text=False) == [], p.name
