"""Held parameters (--fix), a bounded floor (--e-min), the data's known loss floor, and fit_pair."""

import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import analysis
from analysis.backtest import backtest
from analysis.fitting import Objective
from analysis.forms import FORMS, log_columns, restrict
from analysis.laws import chinchilla, kaplan
from analysis.workflow import FitPair, _pair_verdict, fit, fit_pair
from sweeps.cli import main
from vla_core.errors import BadInput

from synthetic_tables import TRUE, assert_gradient_matches_finite_differences, synthetic_frame

GRID = FORMS["chinchilla"].grid[::9]  # 500 starts: same basins as the full grid, a fraction of the time
FLOOR_TRUE = {"E": 1.6, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.36}


def tilted_frame(tilt: float = 0.005, floor: float | None = 1.57) -> pd.DataFrame:
    """Runs of a law with E = 1.6 whose top-compute runs land a little below it (as lucky seeds would).

    The loss falls by `tilt` per decade of compute beyond the law, which a free fit reads as a lower
    floor (E ~ 1.52 at tilt 0.005); `floor` goes into a loss_floor column (None: no column).
    """
    N, D = (v.ravel() for v in np.meshgrid(np.logspace(6, 8, 5), np.logspace(7, 10, 5)))
    C = 6 * N * D
    loss = chinchilla(N, D, **FLOOR_TRUE) * (1 - tilt * np.log10(C / C.min()))
    df = pd.DataFrame({"n_params": N, "n_samples": D.round(), "val_loss": loss})
    if floor is not None:
        df["loss_floor"] = floor
    return df


@pytest.mark.parametrize("name, fixed, floor_min", [
    ("chinchilla", {"E": 1.6}, None), ("chinchilla", {"alpha": 0.3}, 1.2), ("chinchilla", {}, 1.5),
    ("kaplan", {"alpha_N": 0.07}, None), ("power_n", {"A": 300.0}, 0.5),
    ("data_constrained_full", {"beta": 0.3, "r_n_star": 5.0}, 1.0),
])
def test_restricted_form_predicts_the_law_and_its_gradient_is_right(name, fixed, floor_min):
    base = FORMS[name]
    f = restrict(base, fixed, floor_min)
    N = np.logspace(5, 9, 9)
    U = np.logspace(6, 9, 9)[::-1]
    D = U * np.array([1, 2, 5, 10, 30, 100, 300, 1, 3])
    cols = {q: v for q, v in {"N": N, "D": D, "U": U, "C": 6 * N * D}.items() if q in base.columns}
    lg = log_columns(cols)
    start = {"chinchilla": [0.5, 6.0, 7.0, 0.35, 0.3], "kaplan": [31.0, 30.0, 0.08, 0.1], "power_n": [0.5, 6.0, 0.3],
             "data_constrained_full": [0.5, 6.0, 7.0, 0.35, 0.3, np.log(5.0), np.log(15.0)]}[name]
    nat = {k: float(v) for k, v in base.to_natural(np.array(start)).items()} | fixed
    theta = f.from_natural(nat)
    assert theta.size == len(base.params) - len(fixed) == len(f.params)
    assert all(k not in f.params for k in fixed)
    back = f.to_natural(theta)
    assert list(back) == list(base.params)  # every parameter, held ones included
    assert_allclose([float(back[k]) for k in nat], list(nat.values()), rtol=1e-12)
    pred, _ = f.log_predict(theta[None, :], lg)
    assert_allclose(np.exp(pred[0]), base.predict(nat, cols), rtol=1e-10)
    y = pred[0] + 0.01 * np.random.default_rng(0).standard_normal(N.size)
    assert_gradient_matches_finite_differences(Objective(f, lg, y), (theta + 0.05)[None, :])
    if floor_min is not None and base.floor not in fixed:
        assert float(f.to_natural(np.full(theta.size, -50.0))[base.floor]) >= floor_min


def test_fix_holds_the_value_and_recovers_the_rest(tmp_path):
    df = synthetic_frame(noise=0.005)
    res = fit(df, bootstrap=30, grid=GRID, fix={"E": TRUE["E"]})
    assert res.params["E"] == TRUE["E"] and res.fixed == {"E": TRUE["E"]}
    assert res.ci["E"] == [TRUE["E"], TRUE["E"]]
    for k in ("alpha", "beta"):
        assert res.params[k] == pytest.approx(TRUE[k], rel=0.05)
    for k in ("A", "B"):
        assert res.params[k] == pytest.approx(TRUE[k], rel=0.35)
    samples = np.array(res.bootstrap["samples"])
    assert (samples[:, res.bootstrap["names"].index("E")] == TRUE["E"]).all()  # the bootstrap holds it too
    assert not any(w.startswith("E") for w in res.warnings)
    # The allocation's loss is the law's with E held: the held value flows through.
    opt = res.optimum
    assert opt["loss"] == pytest.approx(chinchilla(opt["n_opt"], opt["d_opt"], **res.params), rel=1e-9)
    d = json.loads(res.save(tmp_path / "fit.json").read_text())
    assert d["fixed"] == {"E": TRUE["E"]}
    assert analysis.FitResult.from_dict(d).fixed == {"E": TRUE["E"]}
    assert "held, not fitted" in res.summary()


def test_the_backtest_holds_the_fixed_value():
    df = synthetic_frame(noise=0.005)
    res = fit(df, bootstrap=0, grid=GRID, fix=["alpha=0.3"], success_col=None)
    f = restrict(FORMS["chinchilla"], {"alpha": 0.3})
    N, D = df["n_params"].to_numpy(float), df["n_samples"].to_numpy(float)
    bt = backtest(f, {"N": N, "D": D}, df["val_loss"].to_numpy(float), df["flops"].to_numpy(float), 0.2,
                  f.reduce_grid(GRID))
    assert res.backtest["are_mean"] == pytest.approx(bt["are_mean"], rel=1e-9)
    assert res.params["alpha"] == 0.3


def test_a_fixed_parameter_at_its_bound_is_not_reported_as_one():
    """E held at 0 is a choice: no "at the lower bound" nor "the resamples cannot move it" warning."""
    # The full grid: with E at 0 the law has two basins (the floor absorbed by A or by B), and a
    # thinned grid projected onto the free parameters keeps too few starts to find the better one.
    res = fit(synthetic_frame(noise=0.005), bootstrap=20, fix={"E": 0.0}, holdout_frac=0)
    assert res.params["E"] == 0.0 and res.ci["E"] == [0.0, 0.0]
    assert "E" not in res.at_bound
    assert not any(w.startswith("E") or "E:" in w for w in res.warnings), res.warnings
    assert not any("another basin" in w for w in res.warnings), res.warnings


def test_fix_a_kaplan_exponent_by_name_value_strings():
    truth = {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}
    N, D = (v.ravel() for v in np.meshgrid(np.logspace(7, 9, 6), np.logspace(8, 11, 6)))
    loss = kaplan(N, D, **truth) * np.exp(0.002 * np.random.default_rng(7).standard_normal(N.size))
    df = pd.DataFrame({"n_params": N, "n_samples": D, "val_loss": loss})
    res = fit(df, "kaplan", bootstrap=0, holdout_frac=0, fix=["alpha_N=0.076"])
    assert res.params["alpha_N"] == 0.076
    assert res.params["alpha_D"] == pytest.approx(truth["alpha_D"], rel=0.05)


@pytest.mark.parametrize("fix, match", [
    ({"Q": 1.0}, "no parameter 'Q'"), (["E"], "expected NAME=VALUE"), (["E=abc"], "'abc' is not a number"),
    ({"alpha": 5.0}, "alpha must be a finite number in \\(0, 3\\)"), ({"A": -1.0}, "A must be a finite number > 0"),
    ({"E": 1.0, "A": 1.0, "B": 1.0, "alpha": 0.3, "beta": 0.3}, "every parameter is held"),
])
def test_bad_fix_names_the_form_parameters(fix, match):
    with pytest.raises(BadInput, match=match) as e:
        fit(synthetic_frame(), bootstrap=0, holdout_frac=0, fix=fix)
    assert "the chinchilla law's parameters are E, A, B, alpha, beta" in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_fix_e_min_and_loss_floor(tmp_path, capsys):
    results = tmp_path / "results.csv"
    synthetic_frame(noise=0.005, n_sizes=5, n_budgets=5).to_csv(results, index=False)
    out = tmp_path / "fit.json"
    for argv, match in ((["--fix", "Q=1"], "no parameter 'Q'"), (["--fix", "E=x"], "'x' is not a number"),
                        (["--form", "kaplan", "--fix", "E=1"], "N_c, D_c, alpha_N, alpha_D")):
        assert main(["fit", str(results), "--bootstrap", "0", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err and "Traceback" not in err
    assert main(["fit", str(results), "--bootstrap", "20", "--fix", "alpha=0.34", "--fix", "beta=0.36",
                 "--e-min", "1.0", "--loss-floor", "1.7", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["fixed"] == {"alpha": 0.34, "beta": 0.36}
    assert d["e_min"] == 1.0 and d["loss_floor"] == 1.7
    assert d["params"]["E"] >= 1.0 and d["ci"]["alpha"] == [0.34, 0.34]
    assert d["exponents"]["a"] == pytest.approx(0.36 / 0.70)


def test_e_min_keeps_the_floor_above_it():
    # Free, these runs put E near 1.52; bounded at 1.57 it stays there, and says so.
    res = fit(tilted_frame(floor=None), bootstrap=20, grid=GRID, e_min=1.57)
    assert res.params["E"] >= 1.57 and res.e_min == 1.57
    assert res.at_bound == {"E": "lower"}
    assert res.ci["E"][0] == 1.57
    names = res.bootstrap["names"]
    assert (np.array(res.bootstrap["samples"])[:, names.index("E")] >= 1.57).all()
    assert any("E = 1.57 is at its lower bound e_min = 1.57" in w for w in res.warnings), res.warnings
    assert not any("lower bound of its domain (0)" in w for w in res.warnings)
    # Away from its bound, the bounded fit is the free one.
    df = synthetic_frame(noise=0.005)
    free = fit(df, bootstrap=0, grid=GRID, holdout_frac=0)
    low = fit(df, bootstrap=0, grid=GRID, holdout_frac=0, e_min=1.0)
    assert low.params["E"] == pytest.approx(free.params["E"], rel=1e-5) and low.at_bound == {}


@pytest.mark.parametrize("form, e_min, match", [
    ("kaplan", 1.0, "the kaplan law has no floor parameter"), ("chinchilla", -1.0, "need a finite number >= 0"),
    ("chinchilla", 50.0, "not below the smallest observed loss"),
])
def test_bad_e_min(form, e_min, match):
    with pytest.raises(BadInput, match=match):
        fit(synthetic_frame(), form, bootstrap=0, holdout_frac=0, e_min=e_min)


def test_a_floor_below_the_known_loss_floor_warns():
    res = fit(tilted_frame(), bootstrap=0, grid=GRID, holdout_frac=0)
    assert res.params["E"] < 1.57 and res.loss_floor == 1.57
    w = [w for w in res.warnings if "known loss floor" in w]
    assert len(w) == 1 and "lies below the data's known loss floor 1.57 (the table's loss_floor column)" in w[0]
    assert "--e-min 1.57 or --fix E=1.57" in w[0]
    # Given instead of read: the same warning; an E above the floor: none.
    given = fit(tilted_frame(floor=None), bootstrap=0, grid=GRID, holdout_frac=0, loss_floor=1.57)
    assert given.loss_floor == 1.57 and any("known loss floor 1.57 (given)" in w for w in given.warnings)
    fine = fit(synthetic_frame(noise=0.005), bootstrap=0, grid=GRID, holdout_frac=0, loss_floor=1.0)
    assert fine.loss_floor == 1.0 and not any("known loss floor" in w for w in fine.warnings)


def test_the_loss_floor_column_takes_the_largest_known_value():
    df = tilted_frame(floor=None)
    df["loss_floor"] = np.nan
    df.loc[[0, 3], "loss_floor"] = [1.2, 1.57]
    res = fit(df, bootstrap=0, grid=GRID, holdout_frac=0)
    assert res.loss_floor == 1.57


def test_the_floored_fit_recovers_the_floor_and_backtests_better():
    pair = fit_pair(tilted_frame(), bootstrap=0, grid=GRID)
    assert isinstance(pair, FitPair)
    free, floored, verdict = pair
    assert free.params["E"] < 1.57 and any("known loss floor" in w for w in free.warnings)
    assert floored.fixed == {"E": 1.57} and floored.params["E"] == pytest.approx(FLOOR_TRUE["E"], rel=0.02)
    assert floored.params["alpha"] == pytest.approx(FLOOR_TRUE["alpha"], rel=0.05)
    assert floored.backtest["are_mean"] < free.backtest["are_mean"]
    assert pair.better == "floored" and verdict.startswith("the floored fit backtests better")
    assert "\n" not in verdict and "1.57" in verdict
    with pytest.raises(BadInput, match="no known loss floor"):
        fit_pair(tilted_frame(floor=None), bootstrap=0, grid=GRID)


def test_pair_verdict_calls_a_tie_within_a_tenth_of_a_point():
    import dataclasses

    res = fit(synthetic_frame(noise=0.005), bootstrap=0, grid=GRID, holdout_frac=0)
    a = dataclasses.replace(res, backtest={"holdout": 5, "are_mean": 0.0100, "are_max": 0.02})
    b = dataclasses.replace(res, backtest={"holdout": 5, "are_mean": 0.0105, "are_max": 0.02})
    c = dataclasses.replace(res, backtest={"holdout": 5, "are_mean": 0.0125, "are_max": 0.02})
    assert FitPair(a, b, "").better == "tie" and _pair_verdict(a, b, "E", 1.5).startswith("a tie")
    assert FitPair(c, a, "").better == "floored" and FitPair(a, c, "").better == "free"
    skipped = dataclasses.replace(res, backtest={"holdout": 0, "are_mean": None, "are_max": None, "skipped": "x"})
    assert FitPair(skipped, a, "").better is None and "no verdict" in _pair_verdict(skipped, a, "E", 1.5)
