"""Validation rounds: the prediction is written into the spec first, then the runs are rows of their own."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from scaling.model.family import Dims
from sweeps.plan import plan_runs
from sweeps.spec import parse_spec
from vla_core.errors import BadInput

DIMS = Dims(image_size=32, vocab_size=40, max_instr_len=14, proprio_dim=4, action_dim=3)
ISO = {"name": "i", "data": "/d", "models": ["16x1", "24x2", "32x2"],
       "design": {"kind": "isoflop", "budgets": [1e11, 2e11], "min_samples": 32},
       "wsd": {"enabled": True, "cooldown_frac": 0.2}, "train": {"batch_size": 16, "lr": 1e-3}}


def _round(n_params: int, samples: int, **kw) -> dict:
    point = {"size": "24x2", "n_params": n_params, "samples": samples, "predicted_loss": 2.0,
             "predicted_lo": 1.9, "predicted_hi": 2.1, "recommended": True}
    return {"budget": 6e11, "fit": "fit.json", "seeds": [0, 1], "points": [{**point, **kw}]}


def _planned_24x2(budget: float):
    runs = plan_runs(parse_spec(ISO), DIMS)
    fps = next(r.flops_per_sample for r in runs if r.size == "24x2")
    n = next(r.n_params for r in runs if r.size == "24x2")
    return runs, n, int(budget // fps)


def test_validation_points_plan_as_their_own_rows_and_leave_the_design_alone():
    runs, n, d = _planned_24x2(6e11)
    spec = parse_spec({**ISO, "validation": [_round(n, d)]})
    assert spec.fingerprint() == parse_spec(ISO).fingerprint()  # the design's generation goes on
    planned = plan_runs(spec, DIMS)
    checks = [r for r in planned if r.phase == "validation"]
    assert len(checks) == 2 and {r.seed for r in checks} == {0, 1}
    assert all(r.samples == d and r.budget == 6e11 and r.validation["recommended"] for r in checks)
    assert checks[0].validation["predicted_lo"] == 1.9
    # The design's own keys do not move, and the validation runs use the design's WSD schedule.
    assert {r.key for r in runs} == {r.key for r in planned if r.phase != "validation"}
    assert all(r.config["schedule"] == "wsd" and r.config["warmup"] >= 1 for r in checks)


def test_a_point_the_family_no_longer_builds_is_refused():
    _, n, d = _planned_24x2(6e11)
    with pytest.raises(BadInput, match="prediction was made for"):
        plan_runs(parse_spec({**ISO, "validation": [_round(n + 1, d)]}), DIMS)


def test_spec_checks_the_round():
    _, n, d = _planned_24x2(6e11)
    with pytest.raises(BadInput, match="predicted_lo <= predicted_loss"):
        parse_spec({**ISO, "validation": [_round(n, d, predicted_lo=2.5)]})
    with pytest.raises(BadInput, match="exactly one point must be recommended"):
        parse_spec({**ISO, "validation": [_round(n, d, recommended=False)]})


def _cli(*args, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.slow
def test_validate_writes_the_prediction_then_run_adds_validation_rows(tmp_path, spec_file, fake_env):
    spec = spec_file(models=[3e4, 1e5, 3e5], samples=[64, 128, 256])
    d = tmp_path / "d"
    r = _cli("sweep", "run", str(spec), "--dir", str(d), "--no-progress", env=fake_env)
    assert r.returncode == 0, r.stderr
    before = spec.read_text()
    r = _cli("sweep", "validate", str(spec), "--dir", str(d), "--fit", str(d / "fit.json"), "--flops", "1e12",
             "--factors", "0.25,4", "--seeds", "0", env=fake_env)
    assert r.returncode == 0, r.stderr
    assert "recommended N_opt" in r.stdout
    text = spec.read_text()
    assert text.startswith(before.rstrip("\n")) and "validation:" in text  # appended, the rest as written
    rounds = yaml.safe_load(text)["validation"]
    assert len(rounds) == 1 and sum(p["recommended"] for p in rounds[0]["points"]) == 1
    r = _cli("sweep", "run", str(spec), "--dir", str(d), "--no-progress", env=fake_env)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(d / "results.csv")
    val = df[df["phase"] == "validation"]
    assert len(val) == 3 and val["predicted_loss"].notna().all() and val["recommended"].sum() == 1
    assert (val["predicted_lo"] <= val["predicted_loss"]).all()
    fit = json.loads((d / "fit.json").read_text())
    assert fit["n_points"] == int((df["phase"] != "validation").sum())  # never fitted
    # A second round appends; the first is kept as it was.
    r = _cli("sweep", "validate", str(spec), "--dir", str(d), "--fit", str(d / "fit.json"), "--flops", "4e12",
             env=fake_env)
    assert r.returncode == 0, r.stderr
    rounds2 = yaml.safe_load(spec.read_text())["validation"]
    assert len(rounds2) == 2 and rounds2[0] == rounds[0]
