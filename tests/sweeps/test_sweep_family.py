"""A sweep of a model family defined outside the package: planned with its measured costs (grid, IsoFLOP,
suggest, validation sizes, calibration), run end to end with its module beside the spec, then fitted;
and the same family under DDP and FSDP on 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.laws import chinchilla
from scaling.model.family import Dims, resolve_model
from scaling.model.measure import count_params, measure_training_flops
from sweeps.plan import plan_runs, resolve_models
from sweeps.spec import load_spec
from tests.scaling.test_model_family import MLP_FAMILY, doc_example

REPO = Path(__file__).resolve().parents[2]
DIMS = Dims(image_size=32, vocab_size=40, max_instr_len=14, proprio_dim=4, action_dim=3)


def _spec_beside(folder: Path, module: str, body: str, **spec) -> Path:
    """A spec in `folder` whose family module `module` lies beside it (importable from nowhere else)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(body)
    raw = {"name": "fam", "data": "/d", "models": ["10k", "20k", "40k"], "blind_baseline": False,
           "train": {"family": f"{module}:make", "batch_size": 8, "lr": 1e-3}, **spec}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_family_beside_its_spec_plans_every_design_with_measured_costs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the spec's folder: the module is found beside the spec
    path = _spec_beside(tmp_path / "study", "fam_plan_mod", MLP_FAMILY, samples=[64, 128])
    spec = load_spec(path)
    models = resolve_models(spec, DIMS)
    dims = DIMS
    for m in models:  # each size counted and measured from a module built here, independently
        module = resolve_model(spec.train_dict["family"], m.size, dims).build().policy
        assert (m.n_params, m.n_params_nonembed) == count_params(module)
        assert m.flops_per_sample == measure_training_flops(module, dims)
        assert abs(m.n_params / float(str(m.size).replace("k", "e3")) - 1) <= 0.15
    grid = plan_runs(spec, DIMS)
    assert len(grid) == 6 and all(r.config["family"] == "fam_plan_mod:make" for r in grid)
    vla = plan_runs(replace(spec, train=tuple((k, v) for k, v in spec.train if k != "family")), DIMS)
    assert {r.key for r in vla}.isdisjoint(r.key for r in grid)  # the family is in the key where set...
    assert all("family" not in r.config for r in vla)  # ...and only there

    iso = plan_runs(load_spec(_spec_beside(tmp_path / "iso", "fam_plan_mod", MLP_FAMILY,
                                           design={"kind": "isoflop", "budgets": [2e7, 4e7]})), DIMS)
    fps = {m.n_params: m.flops_per_sample for m in models}
    assert iso and all(r.samples == int(r.budget // fps[r.n_params]) for r in iso)

    n = np.array([m.n_params for m in models], float)
    d = np.array([64.0, 256.0, 1024.0])
    nn, dd = (v.ravel() for v in np.meshgrid(n, d))
    table = tmp_path / "results.csv"
    pd.DataFrame({"n_params": nn, "n_samples": dd, "flops": [fps[int(x)] * y for x, y in zip(nn, dd)],
                  "val_loss": chinchilla(nn, dd, 1.8, 400.0, 1500.0, 0.34, 0.36)}).to_csv(table, index=False)
    suggested = plan_runs(load_spec(_spec_beside(tmp_path / "next", "fam_plan_mod", MLP_FAMILY, design={
        "kind": "suggest", "results": str(table), "target_flops": 1e12, "budget_flops": 5e8, "count": 2})), DIMS)
    assert suggested and all(r.flops == fps[r.n_params] * r.samples for r in suggested)

    from sweeps.validation import _shape

    name = _shape(2.2e4, DIMS, spec)  # what `sweep validate` writes: a size that rebuilds this very model
    again = resolve_models(replace(spec, models=(float(name),)), DIMS)[0]
    assert name == "22000" and again.n_params == resolve_model(spec.train_dict["family"], 22000, dims).n_params


def test_calibration_times_the_familys_own_model(tiny_dataset, tmp_path, monkeypatch):
    from sweeps import calibration
    from sweeps.data_source import data_dims

    monkeypatch.chdir(tmp_path)
    spec = load_spec(_spec_beside(tmp_path / "cal", "fam_cal_mod", MLP_FAMILY, samples=[32],
                                  models=["10k", "40k"]))
    dims = data_dims(str(tiny_dataset))
    built = []
    real = calibration._time_steps

    def spy(resolved, *args, **kw):
        built.append(type(resolved.build().policy).__name__)
        return real(resolved, *args, **{**kw, "min_seconds": 0.0, "max_steps": 3})

    monkeypatch.setattr(calibration, "_time_steps", spy)
    monkeypatch.setattr(calibration, "_startup_seconds", lambda: 1.0)
    out = calibration.calibrate(spec, str(tiny_dataset), dims, plan_runs(spec, dims), tmp_path)
    assert built == ["Policy", "Policy"] and len(out["seconds_per_flop"]) == 2
    assert [m["family"] for m in out["key"]["models"]] == ["fam_cal_mod:make"] * 2  # keyed by the models timed


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SWEEP_RUN_COMMAND", "SCALING_FAMILY_PATH")}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_docs_family_sweeps_2x2_and_fits(tiny_dataset, tmp_path):
    """The docs' example as written (its module beside its spec, the sweep started from another folder):
    every worker and run finds the module; the table carries the exact counts and measured FLOPs; the
    four runs fit (a 3-parameter law: Chinchilla's 5 need 6 runs)."""
    code, spec_text = doc_example()
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "my_policy.py").write_text(code)
    spec = yaml.safe_load(spec_text)
    spec["data"] = str(tiny_dataset)
    (folder / "mine.yaml").write_text(yaml.safe_dump(spec))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", "run", str(folder / "mine.yaml"), "--dir",
                          str(tmp_path / "sweep"), "--workers", "2", "--no-progress"], cwd=elsewhere, env=_env(),
                         capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert len(table) == 5 and set(table["state"]) == {"completed"}  # 2 x 2 and the blind baseline
    for _, row in table.iterrows():
        result = json.loads((tmp_path / "sweep" / "runs" / row["run_key"] / "result.json").read_text())
        assert result["model"]["family"] == "my_policy:make" and result["model"]["flops_source"] == "measured"
        assert row["n_params"] == result["n_params"] and row["flops_per_sample"] == result["flops_per_sample"]
        assert abs(row["n_params"] / float(row["size"].replace("k", "e3")) - 1) <= 0.15
    fit = subprocess.run([sys.executable, "-m", "sweeps.cli", "fit", str(tmp_path / "sweep" / "results.csv"),
                          "--form", "power_c", "--bootstrap", "20", "--out", str(tmp_path / "fit.json")],
                         cwd=elsewhere, env=_env(), capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr[-2000:]
    fitted = json.loads((tmp_path / "fit.json").read_text())
    assert fitted["n_points"] == 4 and all(np.isfinite(v) for v in fitted["params"].values())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_family_trains_under_ddp_and_fsdp_like_one_process(tiny_dataset, tmp_path):
    """Every rank imports the family from $SCALING_FAMILY_PATH; FSDP wraps the blocks it names; the three
    runs agree, and the FSDP run's checkpoint holds the full weights of the bare model."""
    import torch

    (tmp_path / "fam_dist_mod.py").write_text(MLP_FAMILY)
    env = {**_env(), "SCALING_FAMILY_PATH": str(tmp_path)}
    results = {}
    for name, flags in (("one", []), ("ddp", ["--devices", "2", "--strategy", "ddp"]),
                        ("fsdp", ["--devices", "2", "--strategy", "fsdp", "--eval-episodes", "2"])):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "sweeps.cli", "train", "--no-progress-bar", "--data",
                               str(tiny_dataset), "--family", "fam_dist_mod:make", "--size", "20k", "--samples", "64",
                               "--batch-size", "8", "--precision", "32-true", "--accelerator", "cpu", "--val-samples",
                               "16", "--log-every", "1", "--out", str(out), *flags], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
        results[name] = json.loads((out / "result.json").read_text())
    for r in results.values():
        assert r["status"] == "completed" and r["n_samples"] == 64
    assert results["ddp"]["val_loss"] == pytest.approx(results["one"]["val_loss"], rel=2e-3)
    assert results["fsdp"]["val_loss"] == pytest.approx(results["one"]["val_loss"], rel=2e-3)
    assert results["fsdp"]["world_size"] == 2
    from scaling.data import open_source
    from scaling.evaluation import is_tabletop

    if is_tabletop(open_source(str(tiny_dataset))):  # evaluated on the gathered copy of the sharded model
        assert results["fsdp"]["success_rate"] is not None
    one = torch.load(tmp_path / "one" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    fsdp = torch.load(tmp_path / "fsdp" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert set(fsdp) == set(one) and all(fsdp[k].shape == one[k].shape for k in one)
