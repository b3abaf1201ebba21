"""Chinchilla Approaches 1 and 2 (Hoffmann et al. 2022, sections 3.1 and 3.2), from final-run tables.

Approach 1: the envelope of minimum loss over compute; the runs on it give N_opt(C), D_opt(C).
Approach 2: per IsoFLOP budget, a parabola in log N through the losses; its vertex is N_opt(C).
Both end with power-law fits N_opt ~ C^a, D_opt ~ C^b (least squares in log-log).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AllocationFit:
    """Compute-optimal points found by Approach 1 or 2, and the power laws through them."""

    approach: int
    """1 (envelope) or 2 (IsoFLOP parabolas)."""
    flops: np.ndarray
    """Compute of each optimal point, FLOPs (m,)."""
    n_opt: np.ndarray
    """Optimal parameters at each point (m,)."""
    d_opt: np.ndarray
    """Optimal samples at each point (m,)."""
    loss: np.ndarray
    """Loss at each point (m,): the run's (Approach 1) or the parabola's minimum (Approach 2)."""
    a: float
    """Exponent of N_opt ~ C^a (nan with fewer than 2 points)."""
    b: float
    """Exponent of D_opt ~ C^b."""
    coef: tuple[float, float]
    """log N_opt = a log C + coef[0]; log D_opt = b log C + coef[1]."""
    warnings: list[str] = field(default_factory=list)
    """Budgets whose minimum sits at the edge of their grid, and other caveats."""
    curves: list = field(default_factory=list, repr=False)
    """Approach 2 only: per budget (flops, N grid (k,), loss (k,), parabola coefficients in log N)."""


def _powerlaw(c: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if c.size < 2 or np.unique(c).size < 2:
        return float("nan"), float("nan")
    slope, icpt = np.polyfit(np.log(c), np.log(y), 1)
    return float(slope), float(icpt)


def _finish(approach, c, n, d, loss, warnings, curves=()) -> AllocationFit:
    order = np.argsort(c)
    c, n, d, loss = (np.asarray(v, float)[order] for v in (c, n, d, loss))
    a, ca = _powerlaw(c, n)
    b, cb = _powerlaw(c, d)
    return AllocationFit(approach, c, n, d, loss, a, b, (ca, cb), list(warnings), list(curves))


def approach1(N, D, loss, flops, n_bins: int = 20) -> AllocationFit:
    """Approach 1 from final runs: in each log-spaced compute bin, the run of lowest loss.

    Only runs that also beat every cheaper bin's best are kept (the envelope is monotone).
    """
    N, D, loss, C = (np.asarray(v, float) for v in (N, D, loss, flops))
    edges = np.logspace(np.log10(C.min()), np.log10(C.max()) * (1 + 1e-12), n_bins + 1)
    best, pick = np.inf, []
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = np.flatnonzero((C >= lo) & (C < hi))
        if idx.size == 0:
            continue
        i = idx[np.argmin(loss[idx])]
        if loss[i] < best:
            best = loss[i]
            pick.append(i)
    pick = np.array(pick, int)
    warns = [] if pick.size >= 3 else [f"approach 1: only {pick.size} envelope points; exponents unreliable"]
    return _finish(1, C[pick], N[pick], D[pick], loss[pick], warns)


def budgets_of(flops: np.ndarray, rel_tol: float = 0.05) -> np.ndarray:
    """Group runs into IsoFLOP budgets: sorted compute values within `rel_tol` of a group's first join it."""
    C = np.asarray(flops, float)
    order = np.argsort(C)
    label, out, start = -1, np.empty(C.size, int), None
    for i in order:
        if start is None or C[i] > start * (1 + rel_tol):
            label, start = label + 1, C[i]
        out[i] = label
    return out


def approach2(N, D, loss, flops, budget=None, k: float = 6.0, min_points: int = 3) -> AllocationFit:
    """Approach 2: a parabola in log N per IsoFLOP budget; its vertex is N_opt at that budget.

    Args:
        N, D, loss, flops: per run. budget: per-run budget label or nominal FLOPs (default: runs
            grouped by `budgets_of(flops)`). k: FLOPs per parameter per sample, for D_opt = C/(k N_opt).
        min_points: distinct model sizes a budget needs to be fitted.
    """
    N, D, loss, C = (np.asarray(v, float) for v in (N, D, loss, flops))
    groups = budgets_of(C) if budget is None else np.asarray(budget)
    warns, rows, curves, few = [], [], [], 0
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        c = float(np.exp(np.mean(np.log(C[idx]))))  # geometric mean: the budget's nominal compute
        x, y = np.log(N[idx]), loss[idx]
        if np.unique(x).size < min_points:
            few += 1  # not an IsoFLOP budget at all (e.g. a grid sweep): summarised below, not listed
            continue
        p2, p1, p0 = np.polyfit(x, y, 2)
        if p2 <= 0:
            warns.append(f"budget {c:.3g} FLOPs: losses do not curve upward in log N (no minimum), skipped")
            continue
        xv = -p1 / (2 * p2)
        i_min = int(np.argmin(y))
        if not x.min() < xv < x.max():
            warns.append(f"budget {c:.3g} FLOPs: the parabola's minimum (N = {np.exp(xv):.3g}) lies outside its grid "
                         f"[{np.exp(x.min()):.3g}, {np.exp(x.max()):.3g}]; budget skipped, widen its grid")
            continue
        if x[i_min] in (x.min(), x.max()):
            warns.append(f"budget {c:.3g} FLOPs: lowest loss at the edge of its grid (N = {np.exp(x[i_min]):.3g}); "
                         "widen the grid, its N_opt leans on the parabola's shape")
        n_opt = float(np.exp(xv))
        rows.append((c, n_opt, c / (k * n_opt), float(np.polyval([p2, p1, p0], xv))))
        curves.append((c, N[idx][np.argsort(x)], y[np.argsort(x)], (p2, p1, p0)))
    if len(warns) > 6:
        warns = warns[:5] + [f"... and {len(warns) - 5} more budgets with the same problems"]
    if few:
        warns.append(f"approach 2: {few} of {np.unique(groups).size} compute groups have fewer than {min_points} "
                     "model sizes and were skipped (not an IsoFLOP grid there)")
    if not rows:
        return AllocationFit(2, *(np.empty(0),) * 4, float("nan"), float("nan"), (np.nan, np.nan), warns, [])
    c, n, d, lo = map(np.array, zip(*rows))
    if c.size < 2:
        warns.append("approach 2: fewer than 2 budgets fitted; no exponents")
    return _finish(2, c, n, d, lo, warns, curves)
