"""Every answer states how far it extrapolates; budgets are met with what the model costs; intervals
are never tighter than the backtest or the seeds allow; `scaling predict`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.allocation import allocation, extrapolation, optimal, predict
from analysis.cli import register  # noqa: F401  (the `scaling` entry point imports it)
from analysis.laws import chinchilla
from analysis.table import load_table
from analysis.workflow import fit

from synthetic_tables import TRUE, synthetic_frame


def _stem_frame(c0=5e6, c1=300.0, seeds=(0,), noise=0.005, unique=None):
    """A small-model table whose FLOPs per sample carry a fixed cost c0 (an image stem) beside c1 N."""
    rng = np.random.default_rng(1)
    rows = []
    p = {"E": 1.5, "A": 300.0, "B": 40.0, "alpha": 0.5, "beta": 0.3}
    for n in np.logspace(4, 5.7, 6):
        for d in np.logspace(4, 5.6, 6):
            for s in seeds:
                loss = float(chinchilla(n, d, **p) * np.exp(noise * rng.standard_normal()))
                rows.append({"n_params": n, "n_samples": round(d), "flops": (c0 + c1 * n) * round(d), "val_loss": loss,
                             "seed": s, "state": "completed", "epochs": None if unique is None else round(d) / unique})
    return pd.DataFrame(rows), p


def test_budget_is_met_with_the_flops_of_the_model_built():
    df, p = _stem_frame()
    res = fit(df, bootstrap=0)
    assert res.observed["fps_c0"] == pytest.approx(5e6, rel=1e-6)
    assert res.observed["fps_c1"] == pytest.approx(300, rel=1e-6)
    C = 3e13
    opt = optimal(res, C)
    assert opt["flops_per_sample"] * opt["d_opt"] == pytest.approx(C, rel=1e-9)
    assert opt["flops_per_sample"] == pytest.approx(5e6 + 300 * opt["n_opt"], rel=1e-9)
    # k N D with the table's median k would spend a different budget on the same model.
    k_cost = res.k * opt["n_opt"] * opt["d_opt"]
    assert abs(k_cost / C - 1) > 0.05
    # The numeric optimum is the true one: no N nearby at the same compute does better.
    for f in (0.9, 1.1):
        n = opt["n_opt"] * f
        assert chinchilla(n, C / (5e6 + 300 * n), **res.params) >= opt["loss"] - 1e-12


def test_numeric_allocation_agrees_with_the_closed_form_without_a_fixed_cost():
    n1, d1 = allocation("chinchilla", TRUE, 1e21, 6.0)
    n2, d2 = allocation("chinchilla", TRUE, 1e21, 6.0, fps=(1e-9, 6.0))
    assert n2 == pytest.approx(n1, rel=2e-3) and d2 == pytest.approx(d1, rel=2e-3)


def test_optimal_far_past_the_data_says_how_far():
    df = synthetic_frame(noise=0.005)
    res = fit(df, bootstrap=50, seed=0)
    cmax = float(df["flops"].max())
    opt = optimal(res, 100 * cmax)
    ex = opt["extrapolation"]
    assert ex["C"] == pytest.approx(100, rel=1e-6) and ex["sides"]["C"] == "above"
    assert ex["N"] > 1 and ex["sides"]["N"] == "above"
    assert any("far extrapolation" in w for w in opt["warnings"])
    inside = optimal(res, cmax)["extrapolation"]
    assert inside["C"] == 1.0 and inside["sides"]["C"] == "inside"
    assert extrapolation({"n_min": 10.0, "n_max": 100.0}, 2.0, None, None)["N"] == pytest.approx(5.0)


def test_past_the_unique_data_it_counts_epochs():
    df, _ = _stem_frame(unique=4e5)
    res = fit(df, bootstrap=0)
    assert res.observed["unique_samples"] == pytest.approx(4e5)
    opt = optimal(res, 50 * float(df["flops"].max()))
    assert opt["extrapolation"]["epochs"] == pytest.approx(opt["d_opt"] / 4e5)
    assert any("unique samples" in w for w in opt["warnings"])


def test_an_extrapolated_interval_is_no_tighter_than_backtest_or_seeds():
    df, _ = _stem_frame(seeds=(0, 1, 2), noise=0.02)
    res = fit(df, bootstrap=60, seed=0)
    assert res.observed["seed_sd"] > 0.01 and res.observed["backtest_reach"] > 0
    far = optimal(res, 300 * float(df["flops"].max()))
    lo, hi = far["ci"]["loss"]
    half = 0.5 * (hi - lo)
    assert half >= 1.959 * res.observed["seed_sd"] * far["loss"] * 0.999
    decades = far["extrapolation"]["log10_max"]
    bt_floor = res.backtest["are_max"] * max(1.0, decades / res.observed["backtest_reach"]) * far["loss"]
    assert half >= 0.999 * bt_floor
    boot = far["ci_bootstrap"]["loss"]
    assert lo <= boot[0] and hi >= boot[1] and "backtest" in far["ci_method"] and "seeds" in far["ci_method"]


def test_seed_spread_is_measured_where_configurations_repeat():
    df, _ = _stem_frame(seeds=(0, 1), noise=0.03)
    obs = load_table(df).observed()
    assert 0.015 < obs["seed_sd"] < 0.06
    assert "seed_sd" not in load_table(_stem_frame()[0]).observed()


def test_predict_gives_loss_interval_and_extrapolation(tmp_path, capsys):
    from sweeps.cli import main

    df, p = _stem_frame(seeds=(0, 1))
    res = fit(df, bootstrap=40)
    path = res.save(tmp_path / "fit.json")
    out = predict(res, 3e4, 1e5)
    assert out["loss"] == pytest.approx(chinchilla(3e4, 1e5, **res.params))
    assert out["flops"] == pytest.approx((res.observed["fps_c0"] + res.observed["fps_c1"] * 3e4) * 1e5)
    assert out["extrapolation"]["sides"] == {"N": "inside", "D": "inside", "C": "inside"}
    assert main(["predict", str(path), "--n", "3e4", "--d", "4e6", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["extrapolation"]["D"] == pytest.approx(4e6 / df["n_samples"].max())
    assert main(["predict", str(path), "--n", "3e4", "--d", "1e5"]) == 0
    text = capsys.readouterr().out
    assert "loss =" in text and "extrapolation: N inside" in text
    assert main(["predict", str(path), "--n", "-3", "--d", "1e5"]) == 2
    assert main(["optimal", str(path), "--flops", "1e14"]) == 0
    assert "extrapolation:" in capsys.readouterr().out


def test_fitted_curves_are_dashed_beyond_the_runs():
    from analysis import plots

    df, _ = _stem_frame()
    tbl = load_table(df)
    res = fit(tbl, bootstrap=0)
    ax = plots.loss_vs_compute(tbl, res)
    styles = {ln.get_linestyle() for ln in ax.get_lines()}
    assert "--" in styles and "-" in styles
    inside = plots.inside_runs(res.observed, np.array([2e4, 1e7]), np.array([2e4, 2e4]), np.array([1e12, 1e12]))
    assert inside.tolist() == [True, False]


def test_approach2_answers_state_extrapolation_and_honest_intervals(tmp_path, capsys):
    from analysis.approaches import fit_approach2
    from sweeps.cli import main

    rng = np.random.default_rng(3)
    rows = []
    for c in np.logspace(18, 20, 5):
        for n in np.logspace(7, 9.5, 9):
            d = c / (6 * n)
            rows.append({"n_params": n, "n_samples": d, "flops": c, "budget": c, "state": "completed",
                         "val_loss": float(chinchilla(n, d, **TRUE) * np.exp(0.004 * rng.standard_normal()))})
    fit_a2 = fit_approach2(pd.DataFrame(rows), bootstrap=100, out=tmp_path / "a2.json")
    bt = fit_a2["backtest"]
    assert bt["holdout"] == 9 and bt["reach"] == pytest.approx(0.5, abs=1e-6) and bt["are_max"] < 0.05
    assert main(["optimal", str(tmp_path / "a2.json"), "--flops", "1e22", "--json"]) == 0
    opt = json.loads(capsys.readouterr().out)
    ex = opt["extrapolation"]
    assert ex["C"] == pytest.approx(100, rel=1e-6) and ex["sides"]["C"] == "above"
    half = 0.5 * (opt["ci"]["loss"][1] - opt["ci"]["loss"][0])
    assert half >= 0.999 * bt["are_max"] * (2.0 / 0.5) * opt["loss"]  # 2 decades out, the backtest reached 0.5
    assert "backtest" in opt["ci_method"]
    assert main(["predict", str(tmp_path / "a2.json"), "--n", "1e8", "--d", "1e11", "--json"]) == 0
    pr = json.loads(capsys.readouterr().out)
    assert pr["extrapolation"]["sides"]["N"] == "inside" and "ci_method" in pr


def test_a_widened_interval_stops_at_the_known_loss_floor():
    from analysis.allocation import widen_interval

    out = {"loss": 2.0, "ci": {"loss": [1.9, 2.1]}}
    ex = {"log10_max": 2.0}
    widen_interval(out, ex, {"are_max": 0.2}, {"backtest_reach": 0.3}, floor=1.5)
    assert out["ci"]["loss"][0] == 1.5 and out["ci"]["loss"][1] > 2.1 and "loss floor" in out["ci_method"]
    out = {"loss": 2.0, "ci": {}}
    widen_interval(out, ex, {"are_max": 0.2}, {"backtest_reach": 0.3})
    assert out["ci"]["loss"][0] == 0.0


def test_answers_from_one_seed_say_the_spread_between_seeds_is_unmeasured():
    from analysis.allocation import SINGLE_SEED

    one = fit(_stem_frame()[0], bootstrap=0)
    assert SINGLE_SEED in optimal(one, 1e13)["warnings"] and SINGLE_SEED in predict(one, 3e4, 1e5)["warnings"]
    two = fit(_stem_frame(seeds=(0, 1), noise=0.02)[0], bootstrap=0)
    assert SINGLE_SEED not in optimal(two, 1e13)["warnings"]


def test_a_validation_verdict_says_whether_it_is_beyond_the_seed_noise():
    from analysis.validation import summarize

    def rows(rec_losses, alt_losses):
        out = []
        for n, losses, rec in ((1e3, alt_losses, False), (4e3, rec_losses, True)):
            out += [dict(phase="validation", state="completed", val_loss=v, budget=1e13, n_params=n, n_samples=10,
                         size="x", recommended=rec, predicted_loss=2.2, predicted_lo=2.1, predicted_hi=2.3)
                    for v in losses]
        return pd.DataFrame(out)

    close = summarize(rows([2.22, 2.24], [2.25, 2.17]))[0]
    assert not close["recommended_won"] and close["decisive"] is False and close["seed_sd"] > 0.03
    clear = summarize(rows([2.10, 2.11], [2.30, 2.31]))[0]
    assert clear["recommended_won"] and clear["decisive"] is True
    assert summarize(rows([2.1], [2.3]))[0]["decisive"] is None  # one seed: not measured
