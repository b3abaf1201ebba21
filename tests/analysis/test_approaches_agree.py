"""Approaches 1, 2 and 3 side by side (`compare_approaches`), Approach 1's interval, and predictions
from an Approach 2 fit (`a2_optimal`, `a2_predict`)."""

import json

import numpy as np
import pytest

from analysis.approaches import a2_optimal, a2_predict, approach1, compare_approaches, fit_approach2
from analysis.laws import chinchilla

P = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.36}
A_TRUE = P["beta"] / (P["alpha"] + P["beta"])
BUDGETS = np.logspace(17, 21, 5)


def _n_opt(c):
    """Exact compute-optimal N of law P at C = 6 N D."""
    g = (P["alpha"] * P["A"] / (P["beta"] * P["B"])) ** (1 / (P["alpha"] + P["beta"]))
    return g * (c / 6) ** A_TRUE


def _isoflop(seed=0, noise=0.002, seeds=2, budgets=BUDGETS):
    """9 sizes over 64x around N_opt per budget, `seeds` runs per size, lognormal noise; D = C / (6 N)."""
    rng = np.random.default_rng(seed)
    N = np.concatenate([np.repeat(_n_opt(c) * np.geomspace(1 / 8, 8, 9), seeds) for c in budgets])
    C = np.repeat(budgets, 9 * seeds)
    D = C / (6 * N)
    return N, D, chinchilla(N, D, **P) * np.exp(noise * rng.standard_normal(N.size)), C


def _grid(n_range, d_range, noise=0.002, seed=0):
    """An N x D grid sweep (no IsoFLOP design), compute 6 N D."""
    rng = np.random.default_rng(seed)
    N, D = (v.ravel() for v in np.meshgrid(np.geomspace(*n_range), np.geomspace(*d_range)))
    return N, D, chinchilla(N, D, **P) * np.exp(noise * rng.standard_normal(N.size)), 6 * N * D


def test_approach1_has_a_bootstrap_interval():
    N, D, loss, C = _isoflop()
    r = approach1(N, D, loss, C, n_boot=100)
    assert r.n_boot > 50 and r.ci["a"][0] <= r.a <= r.ci["a"][1]
    assert r.ci["a"][0] < A_TRUE < r.ci["a"][1]
    assert approach1(N, D, loss, C).ci == {}  # no resamples asked for, none done


def test_censored_envelope_is_not_trusted():
    """The law's optimum wants 20x more samples than parameters; this grid stops at D = N: the envelope's
    runs pile up at the largest D and N carries all the compute, so its a comes out far too high."""
    N, D, loss, C = _grid((1e8, 1e10, 5), (1e8, 1e9, 5))
    r = compare_approaches(N, D, loss, C, a3=A_TRUE, a3_ci=[A_TRUE - 0.02, A_TRUE + 0.02], a3_extrapolation=0.8,
                           n_boot=100)
    one = r["approaches"]["1"]
    assert one["assumptions_met"] is False
    assert "the envelope's minima sit at the top of the D grid" in one["why"]
    assert "it is censored, its a is biased" in one["why"]
    assert one["a"] > A_TRUE + 0.1
    assert any("top of the D grid" in w for w in r["warnings"])
    assert r["approaches"]["3"]["assumptions_met"] is True
    assert r["trust"].startswith("The data meets the assumptions of approach 3") and "censored" in r["trust"]
    assert r["agree"] is False
    json.dumps(r, allow_nan=False)


def test_uncensored_grid_keeps_approach1():
    N, D, loss, C = _grid((1e7, 1e9, 5), (1e8, 1e11, 5))
    r = compare_approaches(N, D, loss, C, n_boot=50)
    assert r["approaches"]["1"]["assumptions_met"] is True and "censored" not in r["approaches"]["1"]["why"]
    assert "2" not in r["approaches"]  # a grid sweep has no IsoFLOP budgets
    assert r["agree"] is False and any("agreement not checked" in w for w in r["warnings"])


def test_approaches_agree_on_a_clean_isoflop_table():
    N, D, loss, C = _isoflop()
    r = compare_approaches(N, D, loss, C, a3=A_TRUE, a3_ci=[A_TRUE - 0.02, A_TRUE + 0.02], a3_extrapolation=0.5,
                           n_boot=100)
    assert set(r["approaches"]) == {"1", "2", "3"}
    assert all(v["assumptions_met"] for v in r["approaches"].values())
    assert r["approaches"]["2"]["a"] == pytest.approx(A_TRUE, abs=0.02)
    assert r["agree"] is True and r["warnings"] == []
    assert r["trust"] == "The data meets the assumptions of approaches 1, 2 and 3: trust those."
    json.dumps(r, allow_nan=False)


def test_disagreeing_approaches_warn_once_per_pair():
    N, D, loss, C = _isoflop()
    r = compare_approaches(N, D, loss, C, a3=0.8, a3_ci=[0.78, 0.82], n_boot=100)
    clash = [w for w in r["warnings"] if "disagree" in w]
    assert r["agree"] is False and len(clash) == 2
    two = r["approaches"]["2"]
    line = next(w for w in clash if w.startswith("approaches 2 and 3"))
    assert f"a = {two['a']:.3f} [{two['ci'][0]:.3f}, {two['ci'][1]:.3f}]" in line and "a = 0.800 [0.780, 0.820]" in line
    assert any(w.startswith("approaches 1 and 3") for w in clash)


def test_extrapolating_approach3_is_flagged():
    N, D, loss, C = _isoflop()
    r = compare_approaches(N, D, loss, C, a3=A_TRUE, a3_ci=[A_TRUE - 0.02, A_TRUE + 0.02], a3_extrapolation=12.0,
                           n_boot=50)
    three = r["approaches"]["3"]
    assert three["assumptions_met"] is False and "12x the largest D" in three["why"] and "extrapolated" in three["why"]
    assert "approach 3" not in r["trust"].split("(")[0]


@pytest.fixture(scope="module")
def a2_fit():
    """An Approach 2 fit as plain JSON (through fit_approach2 and json), from a known law."""
    import pandas as pd

    N, D, loss, C = _isoflop(seed=3)
    df = pd.DataFrame({"n_params": N, "n_samples": D, "val_loss": loss, "budget": C, "flops": 6 * N * D})
    return json.loads(json.dumps(fit_approach2(df, bootstrap=200, seed=1)))


def test_a2_fit_stores_what_predictions_need(a2_fit):
    assert a2_fit["approach"] == 2 and "window_rule" in a2_fit
    assert a2_fit["bootstrap"]["columns"][:4] == ["a", "coef_n", "b", "coef_d"]
    assert len(a2_fit["bootstrap"]["rows"]) == a2_fit["n_boot"] == 200
    assert all(len(b["p"]) == 3 and b["flops"] > 0 for b in a2_fit["budgets"])
    fps = a2_fit["flops_per_sample"]
    assert fps["c1"] == pytest.approx(6.0, rel=1e-6) and abs(fps["c0"]) < 1e-3 * 6 * 1e7


@pytest.mark.parametrize("c", [1e17, 1e18, 3e19, 1e21])
def test_a2_optimal_recovers_the_law_inside_the_grid(a2_fit, c):
    o = a2_optimal(a2_fit, c)
    n = np.geomspace(1e5, 1e14, 200001)
    true_loss = chinchilla(n, c / (6 * n), **P).min()
    n_true, d_true = _n_opt(c), c / (6 * _n_opt(c))
    assert o["n_opt"] == pytest.approx(n_true, rel=0.08) and o["d_opt"] == pytest.approx(d_true, rel=0.08)
    assert o["loss"] == pytest.approx(true_loss, rel=0.005)
    for key, true in (("n_opt", n_true), ("d_opt", d_true), ("loss", true_loss)):
        assert o["ci"][key][0] < true < o["ci"][key][1], (key, o["ci"][key], true)
    assert o["warnings"] == []


def test_a2_optimal_warns_beyond_the_budgets(a2_fit):
    o = a2_optimal(a2_fit, 1e23)
    assert any("outside the fitted budgets" in w and "100x" in w for w in o["warnings"])


@pytest.mark.parametrize("c", np.logspace(17, 21, 7))
@pytest.mark.parametrize("f", [1 / 3, 1 / 1.5, 1.0, 1.5, 3.0])
def test_a2_predict_round_trips_inside_the_grid(a2_fit, c, f):
    """The loss of N = f N_opt(C), D = C / (6 N): within 2% of the law, the law inside the interval, the
    compute found from the fit's FLOPs-per-sample model."""
    n = f * _n_opt(c)
    d = c / (6 * n)
    p = a2_predict(a2_fit, n, d)
    true = chinchilla(n, d, **P)
    assert p["loss"] == pytest.approx(true, rel=0.02)
    assert p["flops"] == pytest.approx(c, rel=1e-3) and "model" in p["flops_source"]
    lo, hi = p["ci"]["loss"]
    assert lo <= p["loss"] <= hi and hi - lo < 0.02 * true
    assert a2_predict(a2_fit, n, d, flops=c)["loss"] == pytest.approx(p["loss"], rel=1e-3)


def test_a2_predict_says_when_n_is_beyond_the_windows(a2_fit):
    c = 1e19
    p = a2_predict(a2_fit, 30 * _n_opt(c), c / (6 * 30 * _n_opt(c)))
    assert any("extrapolated in N" in w for w in p["warnings"])


def test_predictions_refuse_an_approach1_or_exponentless_fit():
    with pytest.raises(ValueError):
        a2_optimal({"approach": 1, "a": 0.5}, 1e19)
