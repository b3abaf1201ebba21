"""Approach 2 (IsoFLOP parabolas) as a command: exponents a and b measured separately, with intervals;
each budget's parabolas on a window around its minimum."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.approaches import approach2, fit_approach2, window_rule
from analysis.laws import chinchilla
from sweeps.cli import main

from synthetic_tables import REFERENCE

P = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.36}


def _isoflop_frame(noise=0.0, seed=0, k=6.0):
    """9 sizes around N_opt per budget, 5 budgets 1e17..1e21; D = C / (k N)."""
    rng = np.random.default_rng(seed)
    C = np.repeat(np.logspace(17, 21, 5), 9)
    N = np.concatenate([np.logspace(np.log10(g) - 1.0, np.log10(g) + 1.0, 9) for g in 0.05 * np.logspace(8.5, 10.5, 5)])
    D = C / (k * N)
    loss = chinchilla(N, D, **P) * np.exp(noise * rng.standard_normal(N.size))
    return pd.DataFrame({"n_params": N, "n_samples": D, "val_loss": loss, "budget": C, "flops": k * N * D})


def test_exponents_and_intervals_on_a_known_law():
    df = _isoflop_frame(noise=0.003, seed=1)
    d = fit_approach2(df, bootstrap=200)
    a_true = P["beta"] / (P["alpha"] + P["beta"])
    assert d["a"] == pytest.approx(a_true, abs=0.03) and d["b"] == pytest.approx(1 - a_true, abs=0.03)
    assert d["ci"]["a"][0] < d["a"] < d["ci"]["a"][1] and d["ci"]["b"][0] < d["b"] < d["ci"]["b"][1]
    assert len(d["points"]) == 5 and d["n_boot"] == 200
    assert d["approach"] == 2 and d["window"] == 2 and d["window_rule"] == window_rule(2)
    assert len(d["bootstrap"]["rows"]) == 200 and len(d["budgets"]) == 5


def test_b_is_measured_not_one_minus_a():
    """D is not C/(6N) here (k = 8 in the data, the parabola in log D finds it): b comes from its own fit."""
    df = _isoflop_frame(noise=0.003, seed=2)
    df["n_samples"] *= np.exp(0.01 * np.arange(len(df)) / len(df))  # a drift that only the D parabolas see
    r = approach2(df.n_params, df.n_samples, df.val_loss, df.flops, budget=df.budget)
    assert abs(r.a + r.b - 1.0) > 1e-6


def test_exclude_col_and_edge_warning(tmp_path, capsys):
    df = _isoflop_frame(noise=0.002)
    df["outlier"] = False
    df.loc[3, ["val_loss", "outlier"]] = [9.9, True]
    edge = pd.DataFrame({"n_params": np.logspace(6, 7, 4), "budget": 1e22})  # far below N_opt ~ 3e10
    edge["n_samples"] = 1e22 / (6 * edge.n_params)
    edge["val_loss"] = chinchilla(edge.n_params, edge.n_samples, **P)
    edge["flops"], edge["outlier"] = 1e22, False
    src = tmp_path / "iso.csv"
    pd.concat([df, edge], ignore_index=True).to_csv(src, index=False)
    out = tmp_path / "a2.json"
    assert main(["fit", str(src), "--approach", "2", "--budget-col", "budget", "--exclude-col", "outlier",
                 "--bootstrap", "100", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    d = json.loads(out.read_text())
    assert d["n_points"] == len(df) + 3 and "left out 1" in text
    assert any("1e+22" in w and "grid too narrow: add sizes above N=1e+07" in w for w in d["warnings"])
    assert d["a"] == pytest.approx(0.36 / 0.70, abs=0.03)


def test_bad_budget_column_exits_2(tmp_path, capsys):
    src = tmp_path / "iso.csv"
    _isoflop_frame().to_csv(src, index=False)
    assert main(["fit", str(src), "--approach", "2", "--budget-col", "nope", "--out", str(tmp_path / "a.json")]) == 2
    assert "no column 'nope' (--budget-col)" in capsys.readouterr().err


def _reference(name):
    p = REFERENCE / name
    if not p.is_file():
        pytest.skip(f"{p} absent (validation-only data, not shipped)")
    return pd.read_csv(p)


@pytest.mark.parametrize("experiment, published, tol", [
    ("llama_3__raw_loss", 0.463, 0.01),  # Open-Athena's Approach 2 on all Llama 3 IsoFLOP points (whole grid)
    ("epochai_chinchilla__massivetext__chinchilla", 0.49, 0.03),  # Chinchilla's Approach 2 (Hoffmann et al.)
])
def test_reproduces_published_approach2(experiment, published, tol, tmp_path):
    """The published values come from whole-grid parabolas: window=None reproduces them. On Llama 3 the
    windowed fit (the default) moves, but its interval still holds the published value."""
    df = _reference("isoflops_openathena.csv")
    df = df[df.experiment == experiment]
    kw = dict(n_col="params", d_col="tokens", loss_col="loss", budget_col="budget", bootstrap=200)
    whole = fit_approach2(df, window=None, **kw)
    assert whole["a"] == pytest.approx(published, abs=tol)
    if tol == 0.01:
        assert whole["ci"]["a"][0] <= published <= whole["ci"]["a"][1], whole["ci"]
        win = fit_approach2(df, **kw)
        assert win["ci"]["a"][0] <= published <= win["ci"]["a"][1], win["ci"]


# Open-Athena's Approach 3 on the clean Marin points (their exp12 figure): a = beta / (alpha + beta).
MARIN_A3 = {"marin_202603__comma__llama_2": 0.389 / (0.722 + 0.389),
            "marin_202603__dclm__llama_2": 0.438 / (0.695 + 0.438),
            "marin_202603__nemotron__llama_2": 0.433 / (0.681 + 0.433)}


@pytest.mark.parametrize("experiment", sorted(MARIN_A3))
def test_windows_move_wide_grids_toward_approach3(experiment):
    """Marin's grids span 75x in N at the same sizes for every budget: whole-grid parabolas put a too high;
    windows bring it nearer the parametric fit's."""
    df = _reference("isoflops_openathena.csv")
    df = df[(df.experiment == experiment) & ~df.outlier.astype(bool)]
    args = (df.params, df.tokens, df.loss, 6 * df.params * df.tokens)
    whole = approach2(*args, budget=df.budget.to_numpy(float), window=None)
    win = approach2(*args, budget=df.budget.to_numpy(float))
    assert abs(win.a - MARIN_A3[experiment]) < abs(whole.a - MARIN_A3[experiment])
    assert win.a < whole.a


def test_intervals_stay_near_the_point_on_every_public_grid():
    """Windowed bootstrap intervals neither run away from the point nor miss it, on every public IsoFLOP grid."""
    df = _reference("isoflops_openathena.csv")
    for name, g in df[~df.outlier.astype(bool)].groupby("experiment"):
        r = approach2(g.params, g.tokens, g.loss, 6 * g.params * g.tokens, budget=g.budget.to_numpy(float),
                      n_boot=200)
        lo, hi = r.ci["a"]
        assert lo <= r.a <= hi and hi - lo < 0.2 and hi - r.a < 0.12, (name, r.a, r.ci)


def _chinchilla_budget(p, c, sizes, seeds=1, noise=0.0, rng=None):
    """One IsoFLOP budget's runs from law p at compute c (D = c / (6 N)), `seeds` runs per size."""
    N = np.repeat(np.asarray(sizes, float), seeds)
    D = c / (6 * N)
    loss = chinchilla(N, D, **p)
    if noise:
        loss = loss * np.exp(noise * rng.standard_normal(N.size))
    return N, D, loss, np.full(N.size, c)


def _n_opt(p, c):
    """Exact compute-optimal N of the Chinchilla law p at C = 6 N D."""
    a = p["beta"] / (p["alpha"] + p["beta"])
    return (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"])) * (c / 6) ** a


# Exponents near Open-Athena's Approach 3 fits to Marin (alpha ~0.7, beta ~0.4): a = 0.364.
WIDE = {"E": 2.6, "A": 3000.0, "B": 3000.0, "alpha": 0.7, "beta": 0.4}


def test_window_recovers_the_exponent_on_a_grid_too_wide_for_a_parabola():
    """The same 9 sizes over 60x in N at every budget (as Marin's grids): loss is no parabola over that
    span, and the whole-grid vertices drift with where the optimum sits in the grid."""
    a_true = WIDE["beta"] / (WIDE["alpha"] + WIDE["beta"])
    sizes = _n_opt(WIDE, 1e19) * np.geomspace(60**-0.5, 60**0.5, 9)
    N, D, loss, C = map(np.concatenate, zip(*(_chinchilla_budget(WIDE, c, sizes) for c in np.logspace(17, 21, 5))))
    whole = approach2(N, D, loss, C, budget=C, window=None)
    win = approach2(N, D, loss, C, budget=C)
    assert abs(whole.a - a_true) > 0.04
    assert win.a == pytest.approx(a_true, abs=0.02)
    assert win.flops.size == 5 and not win.warnings
    # the parabolas and their windows are kept for predictions
    b = win.to_dict()["budgets"]
    assert all(3 <= x["sizes"] <= 5 and x["window_n"][0] < x["n_opt"] < x["window_n"][1] for x in b)
    assert [x["sizes"] for x in b] == [4, 5, 5, 5, 4]  # the end budgets' minima sit at the second size


def test_minimum_at_the_second_smallest_size_is_fitted_not_skipped():
    """On a wide grid the whole-grid vertex of such a budget falls below the grid; its window is fine."""
    p = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.5, "beta": 0.1}
    c = 1e19
    sizes = _n_opt(p, c) * np.geomspace(1, 60, 9) / 60 ** (0.5 / 8)
    N, D, loss, C = _chinchilla_budget(p, c, sizes)
    assert np.argmin(loss) == 1
    r = approach2(N, D, loss, C)
    assert r.flops.size == 1 and r.n_opt[0] == pytest.approx(_n_opt(p, c), rel=0.03)
    assert not any("skipped" in w or "widen" in w for w in r.warnings)
    whole = approach2(N, D, loss, C, window=None)
    assert whole.flops.size == 0 and "outside its grid" in whole.warnings[0]


@pytest.mark.parametrize("shift, side, edge", [(1.5, "below", 0), (-1.5, "above", -1)])
def test_minimum_at_an_edge_says_which_side_to_extend(shift, side, edge):
    sizes = _n_opt(P, 1e19) * np.geomspace(0.2, 5, 7) * 10**shift
    N, D, loss, C = _chinchilla_budget(P, 1e19, sizes)
    r = approach2(N, D, loss, C)
    assert r.flops.size == 0
    assert f"grid too narrow: add sizes {side} N={sizes[edge]:.3g}" in r.warnings[0]
    assert "widen" not in r.warnings[0]


def _dip_table(flat: bool, seed=0):
    """Five budgets from P, two seeds per size (noise 0.1%); with `flat`, the middle budget's losses are
    made flat-bottomed (a quartic in log N with steep walls), which a parabola undercuts."""
    rng = np.random.default_rng(seed)
    parts = []
    for c in np.logspace(17, 21, 5):
        sizes = _n_opt(P, c) * np.geomspace(0.1, 10, 9)
        N, D, loss, C = _chinchilla_budget(P, c, sizes, seeds=2, noise=0.001, rng=rng)
        if flat and c == 1e19:
            u = np.log(N / _n_opt(P, c)) / np.log(10**0.25)  # in grid steps
            loss = (loss.min() + 0.008 * u**4) * np.exp(0.001 * rng.standard_normal(N.size))
        parts.append((N, D, loss, C))
    return map(np.concatenate, zip(*parts))


def test_warns_when_the_parabola_dips_below_every_observed_loss():
    N, D, loss, C = _dip_table(flat=True)
    r = approach2(N, D, loss, C, budget=C)
    dip = [w for w in r.warnings if "below every loss observed" in w]
    assert len(dip) == 1 and "1e+19" in dip[0] and "pooled sd of repeated runs" in dip[0]
    d = r.to_dict()
    assert d["noise"]["source"].startswith("pooled sd of repeated runs") and 0.0005 < d["noise"]["sd"] < 0.01
    clean = approach2(*_dip_table(flat=False), budget=C)
    assert not clean.warnings and clean.to_dict()["noise"]["sd"] < 0.01
