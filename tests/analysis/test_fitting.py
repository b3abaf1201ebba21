"""Approach 3 fitter: recovery of known parameters, and equivalence with a per-start scipy loop."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from analysis.fitting import Objective, fit_grid, fit_scipy_loop, huber, lbfgs_batch
from analysis.forms import FORMS, log_columns

from synthetic_tables import DATA, TRUE, assert_gradient_matches_finite_differences, synthetic_frame

F = FORMS["chinchilla"]


def _data(df, n="n_params", d="n_samples", loss="val_loss"):
    return log_columns({"N": df[n].to_numpy(float), "D": df[d].to_numpy(float)}), np.log(df[loss].to_numpy(float))


def test_huber_is_quadratic_inside_and_linear_outside():
    r = np.array([-0.01, -1e-3, 0.0, 5e-4, 0.002])
    assert_allclose(huber(r), [1e-3 * (0.01 - 5e-4), 5e-7, 0.0, 1.25e-7, 1e-3 * (0.002 - 5e-4)])


def test_recovers_known_parameters_from_noisy_data(coarse_grid):
    df = synthetic_frame(noise=0.005, seed=3, n_sizes=8, n_budgets=8)
    pf = fit_grid(F, *_data(df), coarse_grid)
    got = F.to_natural(pf.theta)
    assert_allclose([got["E"], got["alpha"], got["beta"]], [TRUE["E"], TRUE["alpha"], TRUE["beta"]], rtol=0.05)
    assert_allclose([got["A"], got["B"]], [TRUE["A"], TRUE["B"]], rtol=0.5)  # scales are weakly identified


def test_recovers_exactly_without_noise(coarse_grid):
    df = synthetic_frame(noise=0.0, n_sizes=5, n_budgets=5)
    pf = fit_grid(F, *_data(df), coarse_grid)
    got = F.to_natural(pf.theta)
    assert_allclose([got[k] for k in TRUE], list(TRUE.values()), rtol=2e-3)
    assert pf.huber < 1e-10


def test_gradient_matches_finite_differences():
    df = pd.read_csv(DATA / "chinchilla_kyotakano.csv")
    fun = Objective(F, *_data(df, "N", "D", "loss"), weights=np.random.default_rng(0).integers(0, 3, len(df)))
    assert_gradient_matches_finite_differences(fun, np.array([[0.5, 6.0, 7.0, 0.3, 0.3]]))


def test_batched_lbfgs_matches_scipy_on_every_start():
    """Each row of the lockstep solver ends where scipy's L-BFGS-B ends from the same start."""
    df = pd.read_csv(DATA / "chinchilla_kyotakano.csv")
    logs, y = _data(df, "N", "D", "loss")
    starts = F.grid[[777, 2222, 4321]]
    xb, fb, _, _ = lbfgs_batch(Objective(F, logs, y), starts, maxiter=2000, gtol=1e-10)
    _, _, fs = fit_scipy_loop(F, logs, y, starts)
    # Each start reaches at least as low an objective as scipy does from it (to scipy's tolerance).
    assert np.all(fb <= fs + 1e-8)


@pytest.mark.slow  # scipy's L-BFGS-B stalls in OpenBLAS threads on a busy machine; ~1 s when idle
def test_grid_fit_equals_per_start_scipy_loop():
    """The pruned lockstep grid fit finds the best optimum of scipy run from every start of a subset."""
    df = pd.read_csv(DATA / "chinchilla_kyotakano.csv")
    logs, y = _data(df, "N", "D", "loss")
    starts = F.grid[::300]  # 15 starts across the whole grid (benchmarks/bench_fit.py runs all 4,500)
    pf = fit_grid(F, logs, y, starts)
    # scipy's defaults stop some starts early on this flat surface; converged runs show the true best.
    th, fbest, _ = fit_scipy_loop(F, logs, y, starts, ftol=1e-15, gtol=1e-10, maxiter=5000)
    assert_allclose(pf.huber, fbest, rtol=1e-9)
    a, b = F.to_natural(pf.theta), F.to_natural(th)
    assert_allclose([a[k] for k in ("E", "alpha", "beta")], [b[k] for k in ("E", "alpha", "beta")], rtol=1e-3)
    assert_allclose([a["A"], a["B"]], [b["A"], b["B"]], rtol=1e-2)


@pytest.mark.parametrize("form, truth", [
    ("kaplan", {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}),
    ("power_n", {"E": 1.5, "A": 300.0, "alpha": 0.3}),
    ("power_c", {"E": 1.5, "A": 3000.0, "alpha": 0.15}),
    ("data_constrained", {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.36, "r_star": 15.0}),
])
def test_other_forms_recover_their_parameters(form, truth):
    f = FORMS[form]
    rng = np.random.default_rng(7)
    N, D = (v.ravel() for v in np.meshgrid(np.logspace(7, 9, 6), np.logspace(8, 11, 6)))
    cols = {"N": N, "D": D, "C": 6 * N * D, "U": np.minimum(D, 3e8)}  # up to ~330 epochs of 3e8 samples
    cols = {q: cols[q] for q in f.columns} | ({"D": D} if "U" in f.columns else {})
    loss = f.predict(truth, cols) * np.exp(0.002 * rng.standard_normal(N.size))
    pf = fit_grid(f, log_columns(cols), np.log(loss))
    got = f.to_natural(pf.theta)
    for k, v in truth.items():
        exp_like = not f.log_params[f.params.index(k)]
        # At 0.2% noise exponents come back within ~4% (measured worst: data_constrained beta, 4.3%).
        # A scale is the exponential of a log-scale that trades off against its exponent along the
        # data: d log B ~ d beta * log D ~ 0.015 * 23, so ~35% on a scale is that same noise
        # level (measured worst: data_constrained B, 23%); not "anything goes" as rtol = 1 was.
        assert_allclose(got[k], v, rtol=0.05 if exp_like else 0.35, err_msg=f"{form}.{k}")


def test_import_analysis_is_light():
    import subprocess
    import sys

    code = ("import sys, analysis, analysis.cli; heavy = [m for m in ('torch', 'scipy', 'matplotlib', 'scaling', "
            "'sweeps') if m in sys.modules]; print(heavy); assert not heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
