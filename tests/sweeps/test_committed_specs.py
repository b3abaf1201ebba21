"""Every committed study re-runs by key from its spec: results/NAME/results.csv was planned by
sweeps/NAME.yaml as that file stands (an edit that changed what the spec plans would orphan its rows)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sweeps.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted(p.parent.name for p in (REPO / "results").glob("*/results.csv"))


def test_there_are_committed_studies():
    assert len(STUDIES) >= 5, STUDIES


@pytest.mark.parametrize("name", STUDIES)
def test_study_rows_carry_the_fingerprint_of_their_spec(name):
    spec = REPO / "sweeps" / f"{name}.yaml"
    assert spec.exists(), f"results/{name} has no spec sweeps/{name}.yaml"
    with open(REPO / "results" / name / "results.csv", newline="") as fh:
        fingerprints = {row["spec_fingerprint"] for row in csv.DictReader(fh)}
    assert fingerprints == {load_spec(spec).fingerprint()}, (name, fingerprints)
