"""Backtest: refit without the largest-compute runs and score the prediction of them."""

from __future__ import annotations

import math

import numpy as np

from analysis.fitting import fit_grid
from analysis.forms import Form, log_columns
from analysis.result import Backtest


def backtest(form: Form, cols: dict[str, np.ndarray], loss: np.ndarray, compute: np.ndarray,
             holdout_frac: float = 0.2, grid: np.ndarray | None = None, **loss_options) -> Backtest:
    """Refit on all but the top `holdout_frac` of runs by compute, predict the held-out ones.

    `loss_options` (delta, asymmetry) go to `fit_grid`, so the backtest refits as the fit did.

    Returns:
        `Backtest`: holdout (runs held out), are_mean, are_max (mean and max |L_hat - L| / L on them),
        with None errors when too few runs remain to fit (then "skipped" says why). When held-out
        runs repeat a configuration (seeds of one N and D), also "points" (configurations held
        out), "point_are_mean" and "point_are_max" (the same errors against each configuration's
        mean loss: the law predicts an expectation, not a seed) and "seed_spread" (mean
        |L - its configuration's mean| / that mean over the held-out runs: the part of the per-run
        error that no law of N and D can remove).
    """
    n, p = loss.shape[0], len(form.params)
    h = int(math.ceil(holdout_frac * n)) if holdout_frac > 0 else 0
    if h == 0:
        return Backtest(0, None, None, skipped="holdout fraction is 0")
    order = np.argsort(compute, kind="stable")
    train, test = order[: n - h], order[n - h:]
    if train.size < p + 1 or any(np.unique(cols[q][train]).size < 2 for q in form.columns):
        return Backtest(h, None, None,
                        skipped=f"only {train.size} runs below the holdout, too few to refit {p} parameters")
    sub = {q: v[train] for q, v in cols.items()}
    pf = fit_grid(form, log_columns(sub), np.log(loss[train]), grid, **loss_options)
    pred = form.predict(form.to_natural(pf.theta), {q: v[test] for q, v in cols.items()})
    are = np.abs(pred - loss[test]) / loss[test]
    out = {"holdout": h, "are_mean": float(are.mean()), "are_max": float(are.max()),
           "flops_min": float(compute[test].min())}
    # Configurations: runs equal in every column the form reads (N and D; seeds differ only in loss).
    _, point = np.unique(np.stack([cols[q][test] for q in form.columns], axis=1), axis=0, return_inverse=True)
    point = point.ravel()
    if point.max() + 1 < h:
        size = np.bincount(point)
        mean = np.bincount(point, weights=loss[test]) / size  # per configuration
        first = np.unique(point, return_index=True)[1]  # the prediction is the same for all its runs
        pare = np.abs(pred[first] - mean) / mean
        out.update(points=int(size.size), point_are_mean=float(pare.mean()), point_are_max=float(pare.max()),
                   seed_spread=float((np.abs(loss[test] - mean[point]) / mean[point]).mean()))
    return Backtest(**out)
