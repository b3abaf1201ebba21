"""The full data-constrained law of Muennighoff et al. 2023: excess parameters and repeated data discounted."""

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from analysis import laws
from analysis.forms import FORMS, log_columns
from analysis.workflow import fit

F = FORMS["data_constrained_full"]
TRUTH = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.36, "r_n_star": 5.0, "r_d_star": 15.0}
# The authors' fit on C4 (github.com/huggingface/datablations, "Parametric Fit"): log A, log B, log E, alpha,
# beta, R_D*, R_N*.
PAPER = dict(zip(("a", "b", "e", "alpha", "beta", "r_d_star", "r_n_star"),
                 (6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596, 15.387756, 5.309743)))


def _paper_law(N, D, U):
    p = PAPER
    return laws.data_constrained_full(N, D, U, np.exp(p["e"]), np.exp(p["a"]), np.exp(p["b"]), p["alpha"], p["beta"],
                                      p["r_n_star"], p["r_d_star"])


def test_matches_the_authors_reference_values():
    # Their two models of Figure 1 (right), with the losses their reference code prints.
    assert _paper_law(6.34e9, 242e9, 25e9) == pytest.approx(2.2256440889984477, rel=1e-12)
    assert _paper_law(8.67e9, 178e9, 25e9) == pytest.approx(2.2269634075087867, rel=1e-12)


def test_reduces_to_chinchilla_on_fresh_data_and_few_parameters():
    p = TRUTH
    chin = {k: p[k] for k in ("E", "A", "B", "alpha", "beta")}
    D = np.logspace(8, 11, 7)
    n_opt = laws.optimal_params_for_data(D, p["A"], p["B"], p["alpha"], p["beta"])
    for U in (D, 3 * D):  # U >= D: nothing repeats
        N = n_opt * np.linspace(0.01, 1.0, 7)  # N <= N_opt(U_D): no excess parameters
        assert_allclose(laws.data_constrained_full(N, D, U, **p), laws.chinchilla(N, D, **chin), rtol=1e-13)
        # Past N_opt(U_D) the excess parameters are worth less: the loss is above Chinchilla's.
        big = 50 * n_opt
        assert (laws.data_constrained_full(big, D, U, **p) > laws.chinchilla(big, D, **chin)).all()
    # N_opt(D) is where the marginal terms balance: alpha A / N^alpha = beta B / D^beta.
    assert_allclose(p["alpha"] * p["A"] / n_opt ** p["alpha"], p["beta"] * p["B"] / D ** p["beta"], rtol=1e-12)
    # With only repeated data discounted, the full law's data side is `data_constrained`'s.
    U = D / 20
    n_small = laws.optimal_params_for_data(U, p["A"], p["B"], p["alpha"], p["beta"]) / 2
    assert_allclose(laws.data_constrained_full(n_small, D, U, **p),
                    laws.data_constrained(n_small, D, U, *(p[k] for k in ("E", "A", "B", "alpha", "beta")),
                                          p["r_d_star"]), rtol=1e-13)


def test_log_predict_matches_the_law_and_its_jacobian_is_analytic_and_right():
    N = np.logspace(5, 9, 9)
    U = np.logspace(6, 9, 9)[::-1]
    D = U * np.array([1, 2, 5, 10, 30, 100, 300, 1, 3])
    cols = {"N": N, "D": D, "U": U}
    lg = log_columns(cols)
    for start in ([0.5, 6.0, 7.0, 0.35, 0.3, np.log(5.0), np.log(15.0)], [0.1, 3.0, 9.0, 0.5, 0.3, 0.0, np.log(3.0)]):
        theta = np.array([start])
        pred, groups = F.log_predict(theta.copy(), lg)
        assert_allclose(np.exp(pred[0]), F.predict(F.to_natural(theta[0]), cols), rtol=1e-12)
        jac = np.zeros((N.size, theta.shape[1]))
        for coef, Fm, idx in groups:
            jac[:, list(idx)] = coef[0][:, None] * Fm
        for j in range(theta.shape[1]):
            h = 1e-6
            tp, tm = theta.copy(), theta.copy()
            tp[0, j] += h
            tm[0, j] -= h
            fd = (F.log_predict(tp, lg)[0] - F.log_predict(tm, lg)[0])[0] / (2 * h)
            assert_allclose(jac[:, j], fd, rtol=1e-5, atol=1e-8, err_msg=F.params[j])


def _repeated_table(noise: float = 0.003, seed: int = 3) -> pd.DataFrame:
    """Runs repeating their data 1-256 times, with up to ~2000x the parameters N_opt(U_D) can use."""
    rows = [(n, u * ep, u) for u in (1e7, 1e8, 1e9) for ep in (1, 4, 16, 64, 256) for n in np.logspace(6, 9, 7)]
    N, D, U = (np.array(v) for v in zip(*rows))
    noise = np.exp(noise * np.random.default_rng(seed).standard_normal(N.size))
    loss = laws.data_constrained_full(N, D, U, **TRUTH) * noise
    return pd.DataFrame({"n_params": N, "n_samples": D, "n_unique_samples": U, "val_loss": loss})


def test_fit_recovers_both_repetition_constants():
    df = _repeated_table()
    res = fit(df, "data_constrained_full", bootstrap=20, holdout_frac=0, grid=F.grid[::3], success_col=None)
    for k in ("r_n_star", "r_d_star"):
        assert res.params[k] == pytest.approx(TRUTH[k], rel=0.2), k
    for k in ("alpha", "beta", "E"):
        assert res.params[k] == pytest.approx(TRUTH[k], rel=0.05), k
    assert res.ci["r_n_star"][0] < TRUTH["r_n_star"] * 1.2 and res.ci["r_n_star"][1] > TRUTH["r_n_star"] / 1.2
    # The D-only law cannot describe excess parameters: it fits these runs worse.
    d_only = fit(df, "data_constrained", bootstrap=0, holdout_frac=0, success_col=None)
    assert d_only.huber > 3 * res.huber


def test_allocation_on_fresh_data_is_chinchillas():
    chin = {k: TRUTH[k] for k in ("E", "A", "B", "alpha", "beta")}
    n, d = F.allocation(TRUTH, 1e20)
    n_c, d_c = FORMS["chinchilla"].allocation(chin, 1e20)
    assert (n, d) == (n_c, d_c)
    # And it is the full law's own optimum at that compute (brute force over N, U = D).
    grid = n_c * np.logspace(-1, 1, 2001)
    loss = F.loss_at(TRUTH, grid, 1e20 / 6 / grid)
    assert grid[np.argmin(loss)] == pytest.approx(n_c, rel=0.01)
    assert F.loss_at(TRUTH, n, d) == pytest.approx(FORMS["chinchilla"].loss_at(chin, n_c, d_c), rel=1e-12)
