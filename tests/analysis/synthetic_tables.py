"""Synthetic results tables from known Chinchilla parameters, and paths of reference data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).parent / "data"
# The team's shared folder sits beside the repository (also in CI); SCALING_REFERENCE_DATA overrides.
REFERENCE = Path(
    os.environ.get(
        "SCALING_REFERENCE_DATA", Path(__file__).resolve().parents[3] / "shared" / "reference-data"
    )
)
TRUE = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.36}


def synthetic_frame(params=TRUE, noise=0.01, seed=0, n_sizes=6, n_budgets=6, k=6.0) -> pd.DataFrame:
    """A results table on an N x D grid (1e7..1e9 parameters, 1e8..1e11 samples), lognormal loss noise."""
    from analysis.laws import chinchilla

    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.logspace(7, 9, n_sizes), np.logspace(8, 11, n_budgets))
    N, D = N.ravel(), D.ravel()
    loss = chinchilla(N, D, **params) * np.exp(noise * rng.standard_normal(N.size))
    return pd.DataFrame({"n_params": N, "n_samples": D.round(), "flops": k * N * D.round(), "val_loss": loss,
                         "state": "completed"})


def assert_gradient_matches_finite_differences(fun, x, step: float = 1e-6) -> None:
    """The analytic gradient of a batched objective `fun` (rows of `x` -> (values, gradients)) equals
    central finite differences at each coordinate of the first row."""
    from numpy.testing import assert_allclose

    _, g = fun(x)
    for j in range(x.shape[1]):
        e = np.zeros_like(x)
        e[0, j] = step
        fd = (fun(x + e)[0] - fun(x - e)[0]) / (2 * step)
        assert_allclose(g[0, j], fd[0], rtol=1e-4, atol=1e-10)
