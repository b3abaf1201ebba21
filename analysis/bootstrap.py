"""Bootstrap over runs: refit on resampled tables, all resamples at once, for 95% intervals.

A resample with replacement is the same table with integer weights (how often each run was drawn),
so B resamples are one (B, n) weight matrix and one batched L-BFGS from the full-data optimum.
"""

from __future__ import annotations

import numpy as np

from analysis.fitting import Objective, lbfgs_batch
from analysis.forms import Form


def resample_weights(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) counts of each run in each resample (multinomial, each sums to n)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def bootstrap_fits(form: Form, logs: dict, log_loss: np.ndarray, theta_hat: np.ndarray, n_boot: int = 1000,
                   seed: int = 0, maxiter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Fit-space optima of `n_boot` resamples, (n_boot, P), and their objectives (n_boot,).

    Each resample starts from the full-data optimum `theta_hat` (P,), the usual choice: the grid
    search already located the basin, and a resample moves the optimum only a little.
    """
    w = resample_weights(log_loss.shape[0], n_boot, seed)
    fun = Objective(form, logs, log_loss, weights=w)
    x0 = np.repeat(np.asarray(theta_hat, float)[None, :], n_boot, axis=0)
    x, f, _ = lbfgs_batch(fun, x0, maxiter=maxiter, gtol=1e-8, ftol=1e-12)  # ample for percentiles
    return x, f


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of (B, k) samples, ignoring non-finite ones."""
    lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)
    s = np.where(np.isfinite(samples), samples, np.nan)
    return np.nanpercentile(s, lo_q, axis=0), np.nanpercentile(s, hi_q, axis=0)


def identification_warnings(ci: dict[str, list[float]], params: dict[str, float], log_params: dict[str, bool],
                            max_ratio: float = 2.5, max_rel: float = 0.5) -> list[str]:
    """Warnings for parameters whose intervals are too wide to read as numbers.

    A positive scale (E, A, B) is poorly identified when its 95% interval spans more than
    `max_ratio` times (Besiroglu et al. 2024 found 3x and 6x for Chinchilla's A and B); an exponent
    when its interval is wider than `max_rel` of its value.
    """
    out = []
    for name, (lo, hi) in ci.items():
        v = params.get(name)
        if v is None or not np.isfinite(lo) or not np.isfinite(hi):
            continue
        if log_params.get(name, False):
            if lo <= 0 or hi / lo > max_ratio:
                span = "unbounded" if lo <= 0 else f"{hi / lo:.3g}x"
                out.append(f"{name} is poorly identified: its 95% interval [{lo:.4g}, {hi:.4g}] spans {span}; "
                           "read it as an order of magnitude")
        elif abs(v) > 0 and (hi - lo) / abs(v) > max_rel:
            out.append(f"{name} is poorly identified: 95% interval [{lo:.4g}, {hi:.4g}] around {v:.4g}")
    return out
