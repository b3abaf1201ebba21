"""Design ``suggest`` in a sweep spec: the next runs come from analysis.design, on the spec's own ladder."""

import numpy as np
import pandas as pd
import pytest

from analysis.laws import chinchilla
from scaling.model.family import Dims
from sweeps.plan import plan_runs, resolve_models
from sweeps.spec import parse_spec
from vla_core.errors import BadInput

DIMS = Dims(image_size=32, vocab_size=40, max_instr_len=14, proprio_dim=4, action_dim=3)
LADDER = ["30k", "100k", "300k", "1m", "3m"]


def _spec(results, **design):
    return parse_spec({"name": "next", "data": "/d", "models": LADDER, "train": {"batch_size": 32},
                       "design": {"kind": "suggest", "results": str(results), "target_flops": 1e15,
                                  "budget_flops": 2e13, "count": 3, **design}})


def test_suggest_design_plans_buildable_runs_within_budget(tmp_path):
    models = resolve_models(parse_spec({"name": "g", "data": "/d", "models": LADDER, "samples": [1]}), DIMS)
    N = np.array([m.n_params for m in models[:3]], float)
    D = np.array([2e3, 8e3, 3.2e4])
    n, d = (v.ravel() for v in np.meshgrid(N, D))
    noise = np.exp(0.005 * np.random.default_rng(0).standard_normal(n.size))
    loss = chinchilla(n, d, 1.8, 400.0, 1500.0, 0.34, 0.36) * noise
    path = tmp_path / "results.csv"
    pd.DataFrame({"n_params": n, "n_samples": d, "flops": 6 * n * d, "val_loss": loss}).to_csv(path, index=False)
    runs = plan_runs(_spec(path), DIMS)
    assert 1 <= len(runs) <= 3
    sizes = {m.n_params: m for m in models}
    for r in runs:
        assert r.n_params in sizes and r.phase == "main" and r.config["batch_size"] == 32
        assert r.flops == sizes[r.n_params].flops_per_sample * r.samples
    k = 6.0  # the fit measures k = flops / (N D) = 6 from the table
    assert sum(k * r.n_params * r.samples for r in runs) <= 2e13 * (1 + 1e-9)


@pytest.mark.parametrize("design, match", [
    ({"kind": "suggest", "results": "r.csv", "target_flops": 1e15}, "design suggest needs 'budget_flops'"),
    ({"kind": "suggest", "results": "r.csv", "target_flops": 1e15, "budget_flops": 1e13, "budgets": [1]},
     "budgets"),
    ({"kind": "sugest"}, "did you mean 'suggest'"),
])
def test_suggest_design_bad_input(design, match):
    with pytest.raises(BadInput, match=match):
        parse_spec({"name": "x", "data": "/d", "models": ["30k"], "design": design})


def test_suggest_design_names_a_missing_results_table(tmp_path):
    with pytest.raises(BadInput, match="no such results table"):
        plan_runs(_spec(tmp_path / "none.csv"), DIMS)
