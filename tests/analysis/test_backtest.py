"""The backtest: per-run errors, and with seeds, errors against each configuration's mean."""

import numpy as np
import pytest

from analysis import laws
from analysis.backtest import backtest
from analysis.forms import FORMS

TRUE = dict(E=1.7, A=400.0, B=900.0, alpha=0.35, beta=0.3)
N = np.array([1e5, 3e5, 1e6, 3e6])
D = np.array([1e6, 3e6, 1e7, 3e7])


def _grid(seeds: int, noise: np.ndarray | None = None):
    n, d = (a.ravel() for a in np.meshgrid(N, D, indexing="ij"))
    n, d = np.repeat(n, seeds), np.repeat(d, seeds)
    loss = laws.chinchilla(n, d, **TRUE)
    if noise is not None:
        loss = loss * (1 + noise)
    return {"N": n, "D": d}, loss, 6 * n * d


def test_one_run_per_configuration_reports_per_run_errors_only():
    cols, loss, c = _grid(1)
    bt = backtest(FORMS["chinchilla"], cols, loss, c, holdout_frac=0.25)
    assert bt["holdout"] == 4 and bt["are_max"] < 1e-3  # the law is exact
    assert "points" not in bt and "seed_spread" not in bt


def test_seeds_that_cancel_give_exact_configuration_means():
    # Five seeds per configuration at 0, +-1% and +-3% about the law (the median and the mean on
    # it): every run but one is off by 1-3%, each configuration's mean is exactly on the law, and
    # the spread says how much of the per-run error is the seeds'.
    noise = np.tile([0.0, 0.01, -0.01, 0.03, -0.03], 16)
    cols, loss, c = _grid(5, noise)
    bt = backtest(FORMS["chinchilla"], cols, loss, c, holdout_frac=0.25)
    assert bt["holdout"] == 20 and bt["points"] == 4
    assert bt["point_are_mean"] < 1e-4 and bt["point_are_max"] < 1e-4
    per_run = np.abs(noise[:5]) / (1 + noise[:5])
    assert bt["are_mean"] == pytest.approx(per_run.mean(), abs=1e-4)
    assert bt["are_max"] == pytest.approx(0.03 / 0.97, abs=1e-4)
    assert bt["seed_spread"] == pytest.approx(np.abs(noise[:5]).mean(), rel=1e-6)


def test_a_biased_point_shows_in_its_mean():
    # The largest configuration's seeds all sit 5% above the law: the mean error sees it.
    noise = np.zeros(64)
    noise[-4:] = [0.04, 0.06, 0.05, 0.05]
    cols, loss, c = _grid(4, noise)
    bt = backtest(FORMS["chinchilla"], cols, loss, c, holdout_frac=0.25)
    assert bt["point_are_max"] == pytest.approx(0.05 / 1.05, abs=3e-3)
    assert bt["seed_spread"] == pytest.approx(2 * 0.01 / 1.05 / 16, rel=1e-6)  # 2 of 16 held-out runs off their mean
