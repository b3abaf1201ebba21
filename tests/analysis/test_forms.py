"""Law functions and the fitter's parameterisation: values, Jacobians, round trips."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from analysis import laws
from analysis.forms import FORMS, get_form, log_columns
from vla_core.errors import BadInput

rng = np.random.default_rng(1)
COLS = {"N": np.logspace(6, 9, 7), "D": np.logspace(8, 11, 7), "C": np.logspace(15, 20, 7)}
COLS["U"] = COLS["D"] / np.array([1, 2, 4, 8, 16, 40, 100])
THETAS = {"chinchilla": [0.5, 6.0, 7.0, 0.35, 0.3], "kaplan": [31.0, 30.0, 0.08, 0.1],
          "power_n": [0.5, 6.0, 0.3], "power_d": [0.5, 6.0, 0.3], "power_c": [0.5, 9.0, 0.15],
          "data_constrained": [0.5, 6.0, 7.0, 0.35, 0.3, np.log(15.0)],
          "data_constrained_full": [0.5, 6.0, 7.0, 0.35, 0.3, np.log(5.0), np.log(15.0)]}


def test_laws_match_published_forms():
    assert_allclose(laws.chinchilla(1e9, 2e10, 1.69, 406.4, 410.7, 0.34, 0.28),
                    1.69 + 406.4 / 1e9**0.34 + 410.7 / 2e10**0.28)
    assert_allclose(laws.kaplan(1e9, 1e10, 8.8e13, 5.4e13, 0.076, 0.095),
                    ((8.8e13 / 1e9) ** (0.076 / 0.095) + 5.4e13 / 1e10) ** 0.095)
    # Effective data: no repetition -> D' = D; infinite repetition -> U (1 + R*).
    assert_allclose(laws.effective_data(1e9, 1e9, 15.4), 1e9)
    assert_allclose(laws.effective_data(1e15, 1e9, 15.4), 1e9 * 16.4, rtol=1e-6)
    assert laws.compute_optimal_exponents(0.34, 0.28)[0] == pytest.approx(0.28 / 0.62)


@pytest.mark.parametrize("name", list(FORMS))
def test_log_predict_matches_law_and_jacobian(name):
    f = FORMS[name]
    cols = {q: COLS[q] for q in f.columns}
    if "U" in cols:
        cols["D"] = COLS["D"]
    lg = log_columns(cols)
    theta = np.array([THETAS[name]])
    pred, groups = f.log_predict(theta.copy(), lg)
    assert_allclose(np.exp(pred[0]), f.predict(f.to_natural(theta[0]), cols), rtol=1e-10)
    jac = np.zeros((len(COLS["N"]), theta.shape[1]))
    for coef, F, idx in groups:
        jac[:, list(idx)] = coef[0][:, None] * F
    for j in range(theta.shape[1]):
        h = 1e-6
        tp, tm = theta.copy(), theta.copy()
        tp[0, j] += h
        tm[0, j] -= h
        fd = (f.log_predict(tp, lg)[0] - f.log_predict(tm, lg)[0])[0] / (2 * h)
        assert_allclose(jac[:, j], fd, rtol=1e-5, atol=1e-8, err_msg=f"{name} d/d{f.params[j]}")


def test_natural_round_trip_and_grid():
    f = FORMS["chinchilla"]
    assert f.grid.shape == (4500, 5)  # Chinchilla's grid: 5 * 5 * 5 * 6 * 6
    p = {"E": 1.7, "A": 400.0, "B": 1200.0, "alpha": 0.3, "beta": 0.35}
    back = f.to_natural(f.from_natural(p))
    assert_allclose([back[k] for k in p], list(p.values()))
    with pytest.raises(BadInput, match="unknown form"):
        get_form("nope")
