"""Standard errors and covariance from the curvature of each fit's objective at its optimum."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

import analysis
from analysis.covariance import huber_covariance, huber_hessian, log_jacobian
from analysis.fitting import Objective, fit_grid
from analysis.forms import FORMS, log_columns
from analysis.result import FitResult
from analysis.success import fit_success, logistic

from synthetic_tables import synthetic_frame

GRID = FORMS["chinchilla"].grid[::45]
F = FORMS["chinchilla"]


def _fitted(delta, noise=0.005, seed=0, asymmetry=0.5):
    df = synthetic_frame(noise=noise, seed=seed)
    logs = log_columns({"N": df.n_params.to_numpy(), "D": df.n_samples.to_numpy()})
    y = np.log(df.val_loss.to_numpy())
    pf = fit_grid(F, logs, y, GRID, delta=delta, asymmetry=asymmetry)
    return logs, y, pf.theta


@pytest.mark.parametrize("delta, asymmetry", [(1e-2, 0.5), (1e-2, 0.8), (1.0, 0.5)])
def test_hessian_equals_finite_differences_of_the_objective(delta, asymmetry):
    """Against second differences of the objective's values (not of our gradient): the Hessian is exact."""
    logs, y, theta = _fitted(delta, asymmetry=asymmetry)
    fun = Objective(F, logs, y, delta=delta, asymmetry=asymmetry)
    r = F.log_predict(theta[None, :], logs)[0][0] - y
    h = 1e-6
    J = log_jacobian(F, theta, logs)
    # no run crosses the Huber kink within the steps below (each moves a residual by at most |J| 2h)
    assert np.abs(J).sum(axis=1).max() * 2 * h < np.min(np.abs(np.abs(r) - delta))
    H = huber_hessian(F, logs, y, theta, delta, asymmetry)
    P = theta.size
    fd = np.zeros((P, P))
    f0 = fun(theta[None, :])[0][0]
    for j in range(P):
        for k in range(P):
            ej, ek = np.eye(P)[j] * h, np.eye(P)[k] * h
            f = lambda t: fun(t[None, :])[0][0]  # noqa: E731
            fd[j, k] = (f(theta + ej + ek) - f(theta + ej - ek) - f(theta - ej + ek) + f(theta - ej - ek)) / (4 * h * h)
    assert f0 > 0
    assert_allclose(H, fd, rtol=2e-3, atol=1e-6 * np.abs(fd).max())


def test_least_squares_limit_is_curve_fits_covariance():
    """With every residual inside delta the objective is least squares; its covariance is what scipy's
    curve_fit (s^2 (J^T J)^-1) reports for the same law fitted to log L."""
    from scipy.optimize import curve_fit

    logs, y, theta = _fitted(delta=1.0, noise=0.01, seed=3)
    cov, why = huber_covariance(F, logs, y, theta, 1.0)
    assert why is None

    def model(_, *t):
        return F.log_predict(np.array(t)[None, :], logs)[0][0]

    t_cf, pcov = curve_fit(model, np.arange(y.size), y, p0=theta, xtol=1e-14, ftol=1e-14, gtol=1e-14)
    assert_allclose(t_cf, theta, rtol=1e-5, atol=1e-7)
    # curve_fit's J^T J leaves out sum r d2r (residuals of ~1%): equal to about that
    assert_allclose(np.sqrt(np.diag(cov)), np.sqrt(np.diag(pcov)), rtol=0.03)
    assert_allclose(cov, pcov, rtol=0.1, atol=0.03 * np.sqrt(np.outer(np.diag(pcov), np.diag(pcov))).max())


def test_success_law_covariance_is_curve_fits():
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(1)
    C = np.logspace(16, 21, 30)
    s = np.clip(logistic(np.log10(C), 18.5, 1.5, 0.9) + 0.03 * rng.standard_normal(C.size), 0, 1)
    f = fit_success(C, s, C, "compute", bootstrap=0)
    p0 = [f.params[k] for k in ("mid", "slope", "ceiling")]
    p, pcov = curve_fit(lambda u, m, sl, c: logistic(u, m, sl, c), np.log10(C), s, p0=p0, xtol=1e-15, ftol=1e-15,
                        gtol=1e-15)
    assert_allclose(p, p0, rtol=1e-6)
    assert_allclose(np.asarray(f.covariance.matrix), pcov, rtol=1e-4, atol=1e-10)
    assert f.stderr["slope"] == pytest.approx(np.sqrt(pcov[1, 1]), rel=1e-4)


def test_fit_reports_stderr_and_covariance_and_they_round_trip(tmp_path):
    res = analysis.fit(synthetic_frame(noise=0.01, seed=2), bootstrap=60, holdout_frac=0, grid=GRID,
                       success_col=None)
    cov = res.covariance
    assert cov.why is None and cov.names == list(F.params)
    m = np.asarray(cov.matrix)
    assert_allclose(m, m.T, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(m) > 0)
    for k in F.params:
        est = res.estimates[k]
        assert est.stderr == pytest.approx(np.sqrt(m[cov.names.index(k)] [cov.names.index(k)]))
        assert est.ci == tuple(res.ci[k]) and est.value == res.params[k]
    # the local standard error and the bootstrap's spread tell about the same story on clean data
    for k in ("alpha", "beta"):
        sd = np.std(np.asarray(res.bootstrap.params()[k]))
        assert 0.33 < res.stderr[k] / sd < 3.0, (k, res.stderr[k], sd)
    assert res.stderr["a"] is not None and res.stderr["a"] > 0
    back = FitResult.load(res.save(tmp_path / "fit.json"))
    assert back.to_dict() == res.to_dict()
    assert back.covariance == res.covariance and back.stderr == res.stderr


def test_a_parameter_at_its_edge_is_held_in_the_covariance():
    """results/cpu_study drives E to 0: the runs do not determine it; the others still get a covariance."""
    from pathlib import Path

    table = Path(__file__).resolve().parents[2] / "results" / "cpu_study" / "results.csv"
    res = analysis.fit(table, bootstrap=0, holdout_frac=0, success_col=None, compare=False)
    assert res.at_bound.get("E") == "lower"
    assert res.covariance.at_edge == ["E"] and "E" not in res.covariance.names
    assert res.stderr["E"] is None and res.stderr["alpha"] > 0


def test_sections_read_like_their_json_and_a_sparse_file_reads():
    """A hand-written fit.json's partial objects become sections; each reads and compares as its JSON object."""
    import dataclasses

    from analysis.result import Backtest

    d = {"form": "chinchilla", "params": {"E": 1.0, "A": 1.0, "B": 1.0, "alpha": 0.3, "beta": 0.3},
         "bootstrap": {"names": ["E"], "samples": [[1.0], [1.2]]}, "backtest": {"are_max": 0.1},
         "convergence": {"iterations": 3}}
    res = FitResult.from_dict(d)
    assert res.backtest == {"holdout": 0, "are_mean": None, "are_max": 0.1} and res.backtest.are_max == 0.1
    assert res.bootstrap.column("E").tolist() == [1.0, 1.2] and res.bootstrap.get("seed") is None
    assert res.stderr == {} and res.covariance is None and res.to_dict()["covariance"] == {}
    moved = dataclasses.replace(res, backtest={"holdout": 4, "are_mean": 0.01, "are_max": 0.02})
    assert isinstance(moved.backtest, Backtest) and moved.backtest["are_mean"] == 0.01
