"""Bootstrap over runs: one resampling engine, and the law fit's refits of all resamples at once.

The engine, used by every bootstrap of the package (the law fit, the success law, Approaches 1
and 2, the difference between families): `resample_weights` draws how often each run is in each
resample from a Generator seeded with the caller's seed, `refit_resamples` refits every resample
and collects one row of quantities per resample, and `percentile_ci` / `interval` read percentile
intervals off the rows. Callers that have always drawn differently keep their draw through
`resample_weights`'s `strata` (resample within groups, e.g. IsoFLOP budgets) and `draw` (run
indices drawn one resample at a time, Approach 1's envelope), so a seed gives the draws it always gave.

A resample with replacement is the same table with integer weights (how often each run was drawn),
so B resamples are one (B, n) weight matrix and, for the law, one batched L-BFGS (`bootstrap_fits`).
Warm starts from the full-data optimum alone would keep every refit in its basin and report an
interval that cannot see another one (on a badly conditioned table, a zero-width interval). So every
resample starts from each distinct optimum the full-data grid search found, a fraction of the
resamples is refitted from random starts of the whole grid, and any further basin those find becomes
a start for every resample. Refits that stop at the iteration cap are continued once, then counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from analysis.fitting import DELTA, Objective, basin_coords, lbfgs_batch
from analysis.forms import Form

DRAWS = ("multinomial", "indices")
"""How `resample_weights` draws a resample: "multinomial" (one multinomial draw of the counts, all
resamples of a stratum at once) or "indices" (n run indices drawn uniformly, one resample at a time)."""


def resample_weights(n: int, n_boot: int, seed: int = 0, *, strata: Sequence[np.ndarray] | None = None,
                     draw: str = "multinomial") -> np.ndarray:
    """(n_boot, n) counts of each run in each resample, from `np.random.default_rng(seed)`.

    Args:
        n: runs. n_boot: resamples. seed: the Generator's seed (the same seed, the same counts).
        strata: index arrays of disjoint groups of runs, each resampled within itself in this order
            (a stratum of k runs: its k counts of every resample sum to k); runs in no stratum get 0.
            None: one stratum of every run.
        draw: "multinomial", each stratum's (n_boot, k) counts in one draw; or "indices", each
            resample's k run indices drawn uniformly with replacement, resample after resample
            (unstratified only).
    """
    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {DRAWS}, not {draw!r}")
    rng = np.random.default_rng(seed)
    if draw == "indices":
        if strata is not None:
            raise ValueError("draw='indices' resamples the whole table; strata need draw='multinomial'")
        return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float) \
            if n_boot else np.zeros((0, n))
    w = np.zeros((n_boot, n))
    for idx in ([np.arange(n)] if strata is None else strata):
        k = len(idx)
        w[:, idx] = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)
    return w


def refit_resamples(refit: Callable[[np.ndarray], np.ndarray], weights: np.ndarray, *,
                    batched: bool = True) -> np.ndarray:
    """Refit every resample and collect its quantities: (n_boot, k) rows.

    Args:
        refit: weights -> quantities; with `batched`, (n_boot, n) weights -> (n_boot, k) rows (one call,
            e.g. a batched solver); else one resample's (n,) weights -> its (k,) row, called in order.
        weights: `resample_weights`'s counts.
    """
    if batched:
        return np.asarray(refit(weights), float)
    return np.array([np.asarray(refit(w), float) for w in weights], float).reshape(len(weights), -1)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of (B, k) samples, ignoring non-finite ones."""
    lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)
    s = np.where(np.isfinite(samples), samples, np.nan)
    return np.nanpercentile(s, lo_q, axis=0), np.nanpercentile(s, hi_q, axis=0)


def interval(values, level: float = 0.95) -> list[float] | None:
    """Percentile interval [lo, hi] of the finite values of one quantity, None when there are none."""
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return [float(np.percentile(v, 50 * (1 - level))), float(np.percentile(v, 50 * (1 + level)))]


@dataclass(frozen=True)
class BootstrapFits:
    """Optima of every resample and how they were reached."""

    x: np.ndarray
    """Fit-space optimum of each resample, (B, P)."""
    f: np.ndarray
    """Objective at it, (B,)."""
    converged: np.ndarray
    """Whether the refit stopped on a tolerance before its iteration cap, (B,) bool."""
    grid_refit: np.ndarray
    """Whether the resample was also refitted from random starts of the whole grid, (B,) bool."""
    other_basin: np.ndarray
    """Whether its optimum lies away from the full-data optimum's basin, (B,) bool."""
    n_seeds: int = 1
    """Starts every resample was refitted from (distinct optima known)."""

    @property
    def n_not_converged(self) -> int:
        """Refits that were still moving at their iteration cap."""
        return int((~self.converged).sum())


def bootstrap_fits(form: Form, logs: dict, log_loss: np.ndarray, theta_hat: np.ndarray, n_boot: int = 1000,
                   seed: int = 0, maxiter: int = 500, *, seeds: np.ndarray | None = None,
                   grid: np.ndarray | None = None, grid_frac: float = 0.05, grid_starts: int = 128,
                   delta: float = DELTA, asymmetry: float = 0.5) -> BootstrapFits:
    """Fit `n_boot` resamples of the runs.

    Args:
        form, logs, log_loss: as in `analysis.fitting.Objective`.
        theta_hat: the full-data optimum (P,).
        n_boot: resamples. seed: their random seed (also picks the grid starts).
        maxiter: L-BFGS iterations per refit (unconverged refits get 4x more once).
        seeds: other distinct optima of the full data (K, P), e.g. `ParamFit.basins`; every resample
            is refitted from each and keeps the best.
        grid: the start grid (default: the form's); `grid_frac` of the resamples (at least 1 when
            > 0) are refitted from `grid_starts` random points of it each.
        delta, asymmetry: the robust loss (see `Objective`).
    """
    w = resample_weights(log_loss.shape[0], n_boot, seed)
    fun = Objective(form, logs, log_loss, weights=w, delta=delta, asymmetry=asymmetry)
    theta_hat = np.asarray(theta_hat, float)
    scale = float(np.exp(np.min(log_loss)))

    def coords(v):
        return basin_coords(form, v, scale)

    starts = [theta_hat] + ([] if seeds is None else [s for s in np.asarray(seeds, float)
                                                        if np.abs(coords(s) - coords(theta_hat)).max() > BASIN_TOL])
    x, f, conv = _best_of(fun, np.array(starts), np.arange(n_boot), maxiter)
    n_seeds = len(starts)

    grid_refit = np.zeros(n_boot, bool)
    if grid_frac > 0:
        rng = np.random.default_rng([seed, 1])
        m = min(n_boot, max(1, int(np.ceil(grid_frac * n_boot))))
        G = np.asarray(form.grid if grid is None else grid, float)
        fun32 = Objective(form, logs, log_loss, weights=w, delta=delta, dtype=np.float32, asymmetry=asymmetry)
        xg, fg, cg = _grid_refits(fun, fun32, G, np.arange(m), min(grid_starts, len(G)), rng)
        grid_refit[:m] = True
        better = fg < f[:m] - 1e-9 * np.abs(f[:m])
        x[:m][better], f[:m][better], conv[:m][better] = xg[better], fg[better], cg[better]
        # Basins the grid refits found become starts for every resample: the percentile interval then
        # sees them in the share of resamples where they are best, not only in the grid-refitted few.
        new = [p for p in xg[better] if all(np.abs(coords(p) - coords(s)).max() > BASIN_TOL for s in starts)]
        new = _distinct_rows(new, coords)[:MAX_NEW_STARTS]
        if new:
            x2, f2, c2 = _best_of(fun, np.array(new), np.arange(n_boot), maxiter)
            b2 = f2 < f - 1e-9 * np.abs(f)
            x[b2], f[b2], conv[b2] = x2[b2], f2[b2], c2[b2]
            n_seeds += len(new)
    other = _other_basin(form, coords(x), coords(theta_hat))
    return BootstrapFits(x, f, conv, grid_refit, other, n_seeds)


BASIN_TOL = 0.05
"""Two optima closer than this in every `basin_coords` coordinate are one basin."""
MAX_NEW_STARTS = 2
"""Basins found by the grid refits that become starts for every resample (each costs one more refit)."""


def _distinct_rows(rows: list, coords) -> list:
    out = []
    for r in rows:
        if all(np.abs(coords(r) - coords(o)).max() > BASIN_TOL for o in out):
            out.append(r)
    return out


def _other_basin(form: Form, c: np.ndarray, c_hat: np.ndarray) -> np.ndarray:
    """(B,) whether each optimum lies in another basin than the full-data one.

    Judged on what a reader reads off a law: the floor (moved by more than 10% of the smallest loss)
    and the exponents (moved by more than 30% of their value); scales co-vary with exponents.
    """
    out = np.zeros(c.shape[0], bool)
    for i, kind in enumerate(form.kinds):
        if kind == "floor":
            out |= np.abs(c[:, i] - c_hat[i]) > 0.1
        elif kind == "exponent":
            out |= np.abs(c[:, i] - c_hat[i]) > 0.3 * max(abs(c_hat[i]), 0.05)
    return out


def _best_of(fun: Objective, starts: np.ndarray, groups: np.ndarray, maxiter: int):
    """Refit every resample in `groups` from every start (K, P); keep the best per resample."""
    K, B = starts.shape[0], groups.size
    rows = np.repeat(groups, K)
    x0 = np.tile(starts, (B, 1))
    x, f, _, conv = lbfgs_batch(fun, x0, maxiter=maxiter, gtol=1e-8, ftol=1e-12, rows=rows)
    idx = np.flatnonzero(~conv & np.isfinite(f))
    if idx.size:  # still moving at the cap: continue once, from where they stopped
        x[idx], f[idx], _, conv[idx] = lbfgs_batch(fun, x[idx], maxiter=2 * maxiter, gtol=1e-8, ftol=1e-12,
                                                   rows=rows[idx])
    f = np.where(np.isfinite(f), f, np.inf).reshape(B, K)
    best = np.argmin(f, axis=1)
    pick = np.arange(B) * K + best
    return x[pick], f[np.arange(B), best], conv[pick]


def _grid_refits(fun, fun32, grid, groups, n_starts, rng, chunk: int = 3000):
    """Refit each resample in `groups` from `n_starts` random grid points, by successive halving.

    The ranking stages run per chunk of resamples (bounded memory); the survivors of every chunk
    then share one final L-BFGS call (its cost is per iteration, not per row).
    """
    xs, rs = [], []
    per = max(1, chunk // n_starts)
    for lo in range(0, groups.size, per):
        g = groups[lo:lo + per]
        x = np.concatenate([grid[rng.choice(len(grid), n_starts, replace=False)] for _ in g])
        rows = np.repeat(g, n_starts)
        # Rank in float32 for a few iterations, keep the best tenth of each resample's starts, refine.
        x, f, _, _ = lbfgs_batch(fun32, x, maxiter=12, rows=rows)
        x, rows = _top_per_group(x.astype(float), f, rows, max(2, n_starts // 10))
        x, f, _, _ = lbfgs_batch(fun, x, maxiter=60, rows=rows)
        x, rows = _top_per_group(x, f, rows, 2)
        xs.append(x)
        rs.append(rows)
    x, rows = np.concatenate(xs), np.concatenate(rs)
    x, f, _, conv = lbfgs_batch(fun, x, maxiter=500, gtol=1e-8, ftol=1e-12, rows=rows)
    f = np.where(np.isfinite(f), f, np.inf)
    best = [np.flatnonzero(rows == r)[np.argmin(f[rows == r])] for r in groups]
    return x[best], f[best], conv[best]


def _top_per_group(x, f, rows, k):
    f = np.where(np.isfinite(f), f, np.inf)
    keep = []
    for r in np.unique(rows):
        m = np.flatnonzero(rows == r)
        keep.extend(m[np.argsort(f[m])[:k]])
    keep = np.array(keep, int)
    return x[keep], rows[keep]


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
