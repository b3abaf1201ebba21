"""Chinchilla Approaches 1 and 2 (Hoffmann et al. 2022, sections 3.1 and 3.2), from final-run tables,
and how they agree with Approach 3 (the parametric fit).

Approach 1: the envelope of minimum loss over compute; the runs on it give N_opt(C), D_opt(C).
Approach 2: per IsoFLOP budget, a parabola in log N through the losses of a window of sizes around
the budget's lowest loss (`window_rule`); its vertex is N_opt(C); and separately a parabola in log D,
whose vertex is D_opt(C) (so b is measured, not 1 - a by construction).
Both end with power-law fits N_opt ~ C^a, D_opt ~ C^b (least squares in log-log). Intervals come
from bootstraps over runs: all rows for Approach 1, runs within each budget for Approach 2.

An Approach 2 fit (its `to_dict()`) also predicts: `a2_optimal` (N_opt, D_opt and the loss at a
compute) and `a2_predict` (the loss of a given N, D on the IsoFLOP surface). `compare_approaches`
says whether the approaches agree and which one's assumptions the data meets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from analysis.bootstrap import interval, refit_resamples, resample_weights

if TYPE_CHECKING:
    from analysis.result import FitResult

BOOT_COLUMNS = ("a", "coef_n", "b", "coef_d", "E", "G", "gamma", "k_slope", "k_icpt")
"""Per-resample quantities an Approach 2 fit keeps: the two power laws, the loss law through the
per-budget minima (E, G, gamma) and the law of the parabolas' curvature (k_slope, k_icpt)."""
MAX_BOOT_ROWS = 1000
"""Bootstrap rows stored in an Approach 2 fit (resamples are independent: the first ones are a fair subsample)."""
_GAMMAS = np.geomspace(1e-3, 3.0, 300)
"""Exponents the loss law's gamma is chosen from (grid, so that every resample is fitted alike)."""


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
    """Budgets skipped or doubtful (and why), and other caveats."""
    curves: list = field(default_factory=list, repr=False)
    """Approach 2 only: per budget (flops, N grid (k,), loss (k,), parabola coefficients in log N, the
    window (lo, hi) in log N the parabola was fitted on)."""
    ci: dict = field(default_factory=dict)
    """With a bootstrap: percentile intervals {"a": [lo, hi], "b": [lo, hi]}."""
    n_boot: int = 0
    """Bootstrap resamples behind `ci` (resamples that left fewer than 2 points fitted are dropped)."""
    extra: dict = field(default_factory=dict, repr=False)
    """Approach 2: what `a2_optimal` and `a2_predict` need (window rule, per-budget parabolas, loss and
    curvature laws, FLOPs-per-sample model, noise, bootstrap rows); merged into `to_dict()`."""

    def to_dict(self) -> dict:
        """Plain-JSON summary: exponents, intervals, coefficients, the per-budget optima and `extra`."""
        return {"approach": self.approach, "a": self.a, "b": self.b, "ci": self.ci, "coef": list(self.coef),
                "n_boot": self.n_boot, "warnings": list(self.warnings),
                "points": [{"flops": float(c), "n_opt": float(n), "d_opt": float(d), "loss": float(lo)}
                           for c, n, d, lo in zip(self.flops, self.n_opt, self.d_opt, self.loss)],
                **self.extra}

    def predict(self, flops) -> tuple[np.ndarray, np.ndarray]:
        """N_opt(C) and D_opt(C) from the power laws."""
        lc = np.log(np.asarray(flops, float))
        return np.exp(self.a * lc + self.coef[0]), np.exp(self.b * lc + self.coef[1])


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


def _envelope(bins: np.ndarray, loss: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Rows on the monotone envelope: per compute bin the present row of lowest loss, kept when it beats
    every cheaper bin's best."""
    rows = np.flatnonzero(present & (bins >= 0))
    rows = rows[np.lexsort((loss[rows], bins[rows]))]
    if rows.size == 0:
        return rows
    first = rows[np.r_[True, bins[rows][1:] != bins[rows][:-1]]]  # lowest loss of each bin, bins ascending
    best, pick = np.inf, []
    for i in first:
        if loss[i] < best:
            best = loss[i]
            pick.append(i)
    return np.array(pick, int)


def approach1(N, D, loss, flops, n_bins: int = 20, n_boot: int = 0, seed: int = 0,
              level: float = 0.95) -> AllocationFit:
    """Approach 1 from final runs: in each log-spaced compute bin, the run of lowest loss.

    Only runs that also beat every cheaper bin's best are kept (the envelope is monotone).

    Args:
        N, D, loss, flops: per run. n_bins: log-spaced compute bins between the smallest and largest run.
        n_boot: bootstrap resamples of the rows (with replacement; the envelope and its slopes are
            recomputed on each, with the same bins) for percentile intervals on a and b (0: none).
        seed: bootstrap seed. level: interval level.
    """
    N, D, loss, C = (np.asarray(v, float) for v in (N, D, loss, flops))
    edges = np.logspace(np.log10(C.min()), np.log10(C.max()) * (1 + 1e-12), n_bins + 1)
    bins = np.searchsorted(edges, C, side="right") - 1
    bins[bins >= n_bins] = -1  # beyond the last edge: in no bin
    pick = _envelope(bins, loss, np.ones(C.size, bool))
    warns = [] if pick.size >= 3 else [f"approach 1: only {pick.size} envelope points; exponents unreliable"]
    res = _finish(1, C[pick], N[pick], D[pick], loss[pick], warns)
    if n_boot > 0 and res.flops.size >= 2:
        def refit(w):
            p = _envelope(bins, loss, w > 0)
            return _powerlaw(C[p], N[p])[0], _powerlaw(C[p], D[p])[0]

        ab = refit_resamples(refit, resample_weights(C.size, n_boot, seed, draw="indices"), batched=False)
        ok = np.isfinite(ab).all(axis=1)
        ci = {k: v for k, v in (("a", interval(ab[ok, 0], level)), ("b", interval(ab[ok, 1], level))) if v is not None}
        res = AllocationFit(**{**res.__dict__, "ci": ci, "n_boot": int(ok.sum())})
    return res


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


def _sizes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a log size (equal to 1e-9, so that seeds at one size share it) and each run's index."""
    return np.unique(np.round(x, 9), return_inverse=True)


def window_rule(window: int | None) -> str:
    """The rule that picks the runs each budget's parabola is fitted on, in words."""
    if window is None:
        return ("whole grid: each budget's parabolas go through all of its runs; a budget is skipped when its "
                "vertex falls outside its sizes")
    return (f"per budget, runs grouped by distinct N (every seed at an N kept); the N of lowest mean loss and the "
            f"{window} nearest distinct N on each side in log N order (up to {2 * window + 1} sizes); fitted only "
            "with at least 3 distinct sizes and at least one on each side of the minimum, else the budget is "
            "skipped as too narrow on that side; the same, by distinct D, for the parabola in log D")


def _vertex(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    """Weighted least-squares parabola y ~ p2 x^2 + p1 x + p0 for many weight rows at once.

    Args:
        x, y: (k,). w: (R, k) weights (bootstrap counts) or None for one unweighted fit.

    Returns:
        (p2, p1, p0) each (R,) (or scalars), and the vertex -p1 / (2 p2) (nan without an upward curve).
    """
    X = np.stack([x * x, x, np.ones_like(x)], axis=1)  # (k, 3)
    if w is None:
        p = np.polyfit(x, y, 2)
        return p, -p[1] / (2 * p[0])
    A = np.einsum("rk,ki,kj->rij", w, X, X)  # (R, 3, 3) normal equations
    b = np.einsum("rk,ki,k->ri", w, X, y)
    ok = np.linalg.matrix_rank(A) == 3
    p = np.full((w.shape[0], 3), np.nan)
    if ok.any():
        p[ok] = np.linalg.solve(A[ok], b[ok][..., None])[..., 0]
    with np.errstate(all="ignore"):
        xv = np.where(p[:, 0] > 0, -p[:, 1] / (2 * p[:, 0]), np.nan)
    return p.T, xv


# Outcome of one budget's parabola (`_window_fit` status).
FITTED, EDGE_LOW, EDGE_HIGH, FLAT, OUTSIDE = range(5)


def _window_fit(x: np.ndarray, y: np.ndarray, W: np.ndarray, window: int | None) -> dict:
    """One budget's parabolas in x (a log size), each through the window of one weight row.

    Args:
        x, y: (k,) log sizes and losses of the budget's runs.
        W: (R, k) non-negative run weights: bootstrap counts, or ones for the fit itself.
        window: distinct sizes kept on each side of the size of lowest mean loss, counted among the sizes
            the weight row has runs at; None keeps every run.

    Returns:
        dict of (R,) arrays: "p" (3, R) coefficients in x, "xv" vertex, "lmin" the parabola's minimum,
        "lo", "hi" the window's smallest and largest x, "status" (FITTED; EDGE_LOW / EDGE_HIGH when the
        row has no run below / above the size of lowest mean loss; FLAT when no upward curve; OUTSIDE when the
        vertex leaves the window), "edge" (EDGE_LOW / EDGE_HIGH / 0, also for the whole grid), "rss" and
        "n" (weighted residual sum of squares and runs in the window).
    """
    R = W.shape[0]
    ux, inv = _sizes(x)
    onehot = np.zeros((x.size, ux.size))
    onehot[np.arange(x.size), inv] = 1.0
    cnt = W @ onehot  # (R, s) runs per size
    present = cnt > 0
    with np.errstate(all="ignore"):
        mean = np.where(present, (W * y) @ onehot / cnt, np.inf)
    j = np.argmin(mean, axis=1)
    # The rule on the sizes each row has runs at: a resample that lost a size reaches one size farther
    # (calibrated better than keeping the budget's own positions, whose 3-run fits made intervals ~3x too
    # wide in simulation).
    rank = np.cumsum(present, axis=1)  # 1-based order among the sizes present in the row
    rj = rank[np.arange(R), j]
    edge = np.where(rj == 1, EDGE_LOW, np.where(rj == present.sum(axis=1), EDGE_HIGH, 0))
    in_win = present if window is None else present & (np.abs(rank - rj[:, None]) <= window)
    Wk = W * in_win[:, inv]
    x0 = float(ux.mean())  # centred: the normal equations stay well conditioned at log sizes ~ 20
    (p2, q1, q0), xv = _vertex(x - x0, y, Wk)
    p = np.stack([p2, q1 - 2 * p2 * x0, p2 * x0 * x0 - q1 * x0 + q0])
    xv = xv + x0
    lo = np.where(in_win, ux, np.inf).min(axis=1)
    hi = np.where(in_win, ux, -np.inf).max(axis=1)
    with np.errstate(all="ignore"):
        lmin = q0 - q1 * q1 / (4 * p2)
        resid = y[None, :] - (p2[:, None] * (x - x0) ** 2 + q1[:, None] * (x - x0) + q0[:, None])
        rss = np.where(Wk > 0, Wk * resid**2, 0.0).sum(axis=1)
    status = np.where(~np.isfinite(xv), FLAT, np.where((xv > lo) & (xv < hi), FITTED, OUTSIDE))
    if window is not None:
        status = np.where(edge > 0, edge, status)
    return {"p": p, "xv": xv, "lmin": lmin, "lo": lo, "hi": hi, "status": status, "edge": edge, "rss": rss,
            "n": Wk.sum(axis=1)}


def _skip_reason(c: float, f: dict, v: str, sizes: np.ndarray, window: int | None) -> str | None:
    """Why a budget's parabola in log N (v = "N") or log D is not used, or None when it is."""
    s = f["status"]
    where = "its grid" if window is None else "its window"
    if s in (EDGE_LOW, EDGE_HIGH):
        side, at = ("below", sizes.min()) if s == EDGE_LOW else ("above", sizes.max())
        what = "sizes" if v == "N" else "runs"
        return (f"budget {c:.3g} FLOPs: lowest loss at its {'smallest' if s == EDGE_LOW else 'largest'} {v} "
                f"({v} = {at:.3g}): grid too narrow: add {what} {side} {v}={at:.3g}; budget skipped")
    if s == FLAT:
        return f"budget {c:.3g} FLOPs: losses do not curve upward in log {v} within {where} (no minimum), skipped"
    if s == OUTSIDE:
        hint = "; fit it on a window (window=2)" if window is None else ""
        return (f"budget {c:.3g} FLOPs: the parabola's minimum ({v} = {np.exp(f['xv']):.3g}) lies outside {where} "
                f"[{np.exp(f['lo']):.3g}, {np.exp(f['hi']):.3g}]{hint}; budget skipped")
    return None


def _noise(groups, N, loss, fits: list[dict]) -> tuple[float | None, str]:
    """Loss noise: the pooled sd of repeated runs at one (N, budget) where the table has any, else the
    residual sd of the fitted parabolas (pooled over budgets, on their windows)."""
    _, g = np.unique(groups, return_inverse=True)
    _, s = _sizes(np.log(N))
    _, cell = np.unique(g * (s.max() + 1) + s, return_inverse=True)
    n = np.bincount(cell)
    if (n > 1).any():
        mean = np.bincount(cell, loss) / n
        dof = int((n - 1).sum())
        sd = float(np.sqrt(((loss - mean[cell]) ** 2).sum() / dof))
        return sd, f"pooled sd of repeated runs at one (N, budget): {int((n > 1).sum())} such cells"
    dof = sum(f["n"] - 3 for f in fits)
    if dof > 0:
        return float(np.sqrt(sum(f["rss"] for f in fits) / dof)), \
            "residual sd of the windowed parabolas: pooled over budgets, the table has no repeated runs"
    return None, "unknown: no repeated runs and no residual degrees of freedom (3-size windows)"


def _masked_lines(x: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lines V[r] ~ slope x + icpt per row over its finite entries (nan below 2 of them)."""
    M = np.isfinite(V)
    n = M.sum(axis=1)
    X = np.broadcast_to(x, V.shape)
    Vz = np.where(M, V, 0.0)
    with np.errstate(all="ignore"):
        mx = np.where(M, X, 0.0).sum(axis=1) / n
        my = Vz.sum(axis=1) / n
        dx = np.where(M, X - mx[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        slope = np.where((n >= 2) & (sxx > 0), (dx * (Vz - my[:, None])).sum(axis=1) / sxx, np.nan)
    return slope, my - slope * mx


def _loss_laws(lc: np.ndarray, L: np.ndarray, lc0: float) -> np.ndarray:
    """Loss law loss_min(C) = E + G exp(-gamma (ln C - lc0)) through each row of per-budget minima.

    Least squares on the finite entries of each row of L (R, m): E >= 0 and G by linear least squares for each
    gamma of `_GAMMAS`, the best gamma kept. With 2 minima (too few for 3 constants) E = 0: the law is a
    power law through both. Returns (R, 3) columns E, G, gamma (nan below 2 minima).
    """
    M = np.isfinite(L)
    Y = np.where(M, L, 0.0)
    n = M.sum(axis=1).astype(float)
    z = np.exp(-_GAMMAS[:, None] * (lc - lc0)[None, :])  # (K, m)
    M = M.astype(float)
    Sz, Szz = np.einsum("rm,km->kr", M, z), np.einsum("rm,km->kr", M, z * z)  # (K, R)
    Sy, Syy, Szy = Y.sum(axis=1), (Y * Y).sum(axis=1), np.einsum("rm,km->kr", Y, z)
    with np.errstate(all="ignore"):
        G = (n * Szy - Sz * Sy) / (n * Szz - Sz * Sz)
        E = (Sy - G * Sz) / n
        neg = ~(E >= 0)  # a negative floor is no loss: refit through the origin
        G = np.where(neg, Szy / Szz, G)
        E = np.where(neg, 0.0, E)
        rss = Syy - 2 * E * Sy - 2 * G * Szy + E * E * n + 2 * E * G * Sz + G * G * Szz
    rss = np.where(np.isfinite(rss), rss, np.inf)
    best = np.argmin(rss, axis=0)
    r = np.arange(L.shape[0])
    out = np.stack([E[best, r], G[best, r], _GAMMAS[best]], axis=1)
    two = n == 2  # a power law through 2 points, exactly
    if two.any():
        slope, icpt = _masked_lines(lc, np.log(np.where(M[two] > 0, L[two], np.nan)))
        out[two] = np.stack([np.zeros(two.sum()), np.exp(icpt + slope * lc0), -slope], axis=1)
    out[n < 2] = np.nan
    return out


def _budget_fits(N, D, loss, C, groups, nominal: bool, min_points: int, window: int | None):
    """Each IsoFLOP budget's parabolas in log N and log D (`approach2`).

    Returns (warnings, rows (flops, N_opt, D_opt, loss_min) of the fitted budgets, their curves, the number
    of compute groups with too few sizes, (flops, run indices) of the fitted budgets, their `_window_fit`
    in N, and a plain-JSON record of each)."""
    warns, rows, curves, few, fitted, fits, info = [], [], [], 0, [], [], []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        c = float(g) if nominal else float(np.exp(np.mean(np.log(C[idx]))))  # the budget's compute
        x, xd, y = np.log(N[idx]), np.log(D[idx]), loss[idx]
        if _sizes(x)[0].size < min_points:
            few += 1  # not an IsoFLOP budget at all (e.g. a grid sweep): summarised below, not listed
            continue
        one = np.ones((1, idx.size))
        fn = {key: v[..., 0] for key, v in _window_fit(x, y, one, window).items()}
        fd = {key: v[..., 0] for key, v in _window_fit(xd, y, one, window).items()}
        why = _skip_reason(c, fn, "N", N[idx], window) or _skip_reason(c, fd, "D", D[idx], window)
        if why:
            warns.append(why)
            continue
        if window is None and fn["edge"]:
            side, at = ("below", N[idx].min()) if fn["edge"] == EDGE_LOW else ("above", N[idx].max())
            warns.append(f"budget {c:.3g} FLOPs: lowest loss at the edge of its grid (N = {at:.3g}): grid too narrow: "
                         f"add sizes {side} N={at:.3g}; its N_opt leans on the parabola's shape")
        xv, lmin = float(fn["xv"]), float(fn["lmin"])
        rows.append((c, float(np.exp(xv)), float(np.exp(fd["xv"])), lmin))
        order = np.argsort(x)
        curves.append((c, N[idx][order], y[order], tuple(float(v) for v in fn["p"]),
                       (float(fn["lo"]), float(fn["hi"]))))
        fitted.append((c, idx))
        fits.append(fn)
        info.append({"flops": c, "p": [float(v) for v in fn["p"]], "q": [float(v) for v in fd["p"]],
                     "n_opt": float(np.exp(xv)), "d_opt": float(np.exp(fd["xv"])), "loss_min": lmin,
                     "min_observed": float(y.min()), "window_n": [float(np.exp(fn["lo"])), float(np.exp(fn["hi"]))],
                     "window_d": [float(np.exp(fd["lo"])), float(np.exp(fd["hi"]))],
                     "sizes": int(np.sum((_sizes(x)[0] >= fn["lo"]) & (_sizes(x)[0] <= fn["hi"]))),
                     "runs": int(fn["n"]), "dip": float(fn["p"][0] * np.min((_sizes(x)[0] - xv) ** 2))})
    return warns, rows, curves, few, fitted, fits, info


def _dip_warnings(info: list[dict], noise: float | None, noise_src: str) -> list[str]:
    """Budgets whose parabola's minimum lies further below every observed loss than noise and curvature allow."""
    warns = []
    for b in info:
        gap = b["min_observed"] - b["loss_min"]
        # Between sizes the true curve dips below the nearest observed loss by up to p2 d^2 (d: the vertex's
        # distance to the nearest size), noise-free: only a gap beyond that and the noise is the parabola's own.
        # Twice the noise: the fitted minimum itself is uncertain by about the noise (a 5-size window).
        if noise is not None and gap - b["dip"] > 2 * noise:
            warns.append(f"budget {b['flops']:.3g} FLOPs: the parabola's minimum ({b['loss_min']:.4g}) lies "
                         f"{gap:.3g} below every loss observed there (lowest {b['min_observed']:.4g}), more than "
                         f"twice the noise {noise:.2g} ({noise_src.split(':')[0]}) plus the {b['dip']:.2g} its "
                         "curvature allows between sizes: the losses are no parabola there; its N_opt is doubtful")
    return warns


def approach2(N, D, loss, flops, budget=None, k: float = 6.0, min_points: int = 3, n_boot: int = 0,
              seed: int = 0, level: float = 0.95, window: int | None = 2) -> AllocationFit:
    """Approach 2: per IsoFLOP budget, parabolas in log N and in log D; their vertices are N_opt, D_opt.

    Each budget's parabola goes through a window of runs around its lowest loss (`window_rule`): runs
    grouped by distinct N; the N of lowest mean loss and the `window` nearest distinct N on each side in
    log N order (up to 2 window + 1 sizes, every seed kept); the window needs at least 3 distinct sizes
    with one on each side of the minimum. Loss is a parabola in log N only near its minimum: over a wide
    grid (tens of times in N) a whole-grid parabola's vertex drifts with where the grid sits. The same
    rule, by distinct D, gives the parabola in log D.

    A budget whose lowest loss sits at an edge of its sizes is skipped with advice on the side to
    extend ("grid too narrow: add sizes below/above N=..."). A fitted budget whose parabola's minimum
    lies below every loss observed there by more than twice the noise (plus the dip the parabola's own
    curvature allows between its sizes, p2 d^2 with d the vertex's distance to the nearest size) is
    warned about: the noise is the pooled sd of repeated runs at one (N, budget) when the table has
    any, else the residual sd of the windowed parabolas pooled over budgets (`noise` in `to_dict()`
    says which).

    Args:
        N, D, loss, flops: per run. budget: per-run budget, nominal FLOPs or a label (default: runs
            grouped by `budgets_of(flops)`); a budget's compute is its nominal FLOPs when numeric,
            else the geometric mean of its runs' FLOPs.
        k: FLOPs per parameter per sample (unused: D is given, and FLOPs per sample are fitted from
            flops / D; kept for callers).
        min_points: distinct model sizes a compute group needs to count as an IsoFLOP budget.
        n_boot: bootstrap resamples of the runs within each budget, for intervals on a and b (0: none).
            Each resample's windows are chosen again by the same rule on the sizes it has runs at; a
            resample whose window lacks a side drops that budget.
        seed: bootstrap seed. level: interval level.
        window: distinct sizes on each side of the minimum (>= 1), or None for the whole grid.
    """
    if window is not None and (int(window) != window or window < 1):
        raise ValueError(f"window must be a whole number >= 1 or None, not {window!r}")
    N, D, loss, C = (np.asarray(v, float) for v in (N, D, loss, flops))
    groups = budgets_of(C) if budget is None else np.asarray(budget)
    nominal = budget is not None and np.issubdtype(np.asarray(budget).dtype, np.number)
    warns, rows, curves, few, fitted, fits, info = _budget_fits(N, D, loss, C, groups, nominal, min_points, window)
    noise, noise_src = _noise(groups, N, loss, fits) if fits else (None, "no budget fitted")
    warns += _dip_warnings(info, noise, noise_src)
    if len(warns) > 6:
        warns = warns[:5] + [f"... and {len(warns) - 5} more budgets with the same problems"]
    if few:
        warns.append(f"approach 2: {few} of {np.unique(groups).size} compute groups have fewer than {min_points} "
                     "model sizes and were skipped (not an IsoFLOP grid there)")
    extra = {"window": window, "window_rule": window_rule(window), "noise": {"sd": noise, "source": noise_src},
             "flops_per_sample": _flops_per_sample(N, D, C), "level": level}
    if not rows:
        return AllocationFit(2, *(np.empty(0),) * 4, float("nan"), float("nan"), (np.nan, np.nan), warns, [],
                             extra={**extra, "budgets": []})
    c, n, d, lo = map(np.array, zip(*rows))
    if c.size < 2:
        warns.append("approach 2: fewer than 2 budgets fitted; no exponents")
    res = _finish(2, c, n, d, lo, warns, curves)
    lc, lc0 = np.log(c), float(np.mean(np.log(c)))
    E, G, gam = _loss_laws(lc, lo[None, :], lc0)[0]
    ks, ki = _masked_lines(lc, np.log([[b["p"][0] for b in info]]))
    extra.update(budgets=sorted(info, key=lambda b: b["flops"]),
                 loss_law={"E": float(E), "G": float(G), "gamma": float(gam), "ref_flops": float(np.exp(lc0)),
                           "form": "loss_min(C) = E + G (C / ref_flops)^-gamma, least squares (E >= 0) through "
                                   "the per-budget parabola minima"},
                 curvature_law={"slope": float(ks[0]), "icpt": float(ki[0]),
                                "form": "ln p2(C) = slope ln C + icpt; p2 the parabola's curvature in ln N"})
    res = AllocationFit(**{**res.__dict__, "extra": extra})
    if n_boot > 0 and c.size >= 2:
        ci, used, boot_rows = _bootstrap_exponents(N, D, loss, fitted, n_boot, seed, level, window, lc0)
        extra["bootstrap"] = {"columns": list(BOOT_COLUMNS), "rows": boot_rows}
        res = AllocationFit(**{**res.__dict__, "ci": ci, "n_boot": used, "extra": extra})
    return res


def _flops_per_sample(N, D, C) -> dict:
    """FLOPs per sample as c0 + c1 N (least squares of flops / D on N over the runs), so C = (c0 + c1 N) D."""
    X = np.stack([np.ones_like(N), N], axis=1)
    (c0, c1), *_ = np.linalg.lstsq(X, C / D, rcond=None)
    return {"c0": float(c0), "c1": float(c1), "form": "C = (c0 + c1 N) D, least squares of flops / D on N"}


def _bootstrap_exponents(N, D, loss, fitted, n_boot, seed, level, window, lc0):
    """Percentile intervals of a and b from resampling runs within each fitted budget.

    Each resample chooses its windows again and fits windowed parabolas; a budget whose window lacks a
    side (or has no upward curve) in that resample is dropped from it. Returns the intervals, the
    resamples behind them (those with every `BOOT_COLUMNS` quantity finite) and up to `MAX_BOOT_ROWS`
    of their rows.
    """
    lc = np.log([c for c, _ in fitted])

    def refit(W):
        shape = (W.shape[0], len(fitted))
        ln_n, ln_d, lmin, ln_k = (np.full(shape, np.nan) for _ in range(4))
        for j, (_, idx) in enumerate(fitted):
            fn = _window_fit(np.log(N[idx]), loss[idx], W[:, idx], window)
            fd = _window_fit(np.log(D[idx]), loss[idx], W[:, idx], window)
            ok = fn["status"] == FITTED
            ln_n[ok, j], lmin[ok, j], ln_k[ok, j] = fn["xv"][ok], fn["lmin"][ok], np.log(fn["p"][0][ok])
            okd = fd["status"] == FITTED
            ln_d[okd, j] = fd["xv"][okd]
        return np.column_stack([*_masked_lines(lc, ln_n), *_masked_lines(lc, ln_d), _loss_laws(lc, lmin, lc0),
                                *_masked_lines(lc, ln_k)])

    # Runs resampled within each fitted budget, the budgets in order: each stratum's draw as it always was.
    W = resample_weights(N.size, n_boot, seed, strata=[idx for _, idx in fitted])
    rows = refit_resamples(refit, W)
    a, b = rows[:, 0], rows[:, 2]
    good = np.isfinite(rows).all(axis=1)
    ci = {k: v for k, v in (("a", interval(a[good], level)), ("b", interval(b[good], level))) if v is not None}
    return ci, int(good.sum()), rows[good][:MAX_BOOT_ROWS].tolist()


def _a2_params(fit: dict) -> tuple[np.ndarray, np.ndarray]:
    """The fit's own row and its bootstrap rows of `BOOT_COLUMNS` ((9,), (R, 9))."""
    need = ("a", "coef", "b", "loss_law", "curvature_law", "flops_per_sample")
    missing = [k for k in need if fit.get(k) is None]
    if missing or fit.get("approach") != 2:
        raise ValueError(f"not an Approach 2 fit with exponents (missing {', '.join(missing) or 'approach: 2'})")
    ll, kl = fit["loss_law"], fit["curvature_law"]
    pt = np.array([fit["a"], fit["coef"][0], fit["b"], fit["coef"][1], ll["E"], ll["G"], ll["gamma"],
                   kl["slope"], kl["icpt"]], float)
    bs = fit.get("bootstrap") or {}
    cols = bs.get("columns") or list(BOOT_COLUMNS)
    rows = np.array(bs.get("rows") or [], float).reshape(-1, len(cols))
    rows = rows[:, [cols.index(c) for c in BOOT_COLUMNS]] if rows.size else np.empty((0, len(BOOT_COLUMNS)))
    return pt, rows


def _a2_at(P: np.ndarray, lc: float, lc0: float):
    """ln N_opt, ln D_opt, loss_min and curvature at ln C = lc for rows P (..., 9) of `BOOT_COLUMNS`."""
    a, cn, b, cd, E, G, gam, ks, ki = np.moveaxis(P, -1, 0)
    with np.errstate(all="ignore"):
        return a * lc + cn, b * lc + cd, E + G * np.exp(-gam * (lc - lc0)), np.exp(ks * lc + ki)


def _a2_span(fit: dict, flops: float) -> tuple[dict, list[str]]:
    cs = [b["flops"] for b in fit.get("budgets") or []]
    lo, hi = (min(cs), max(cs)) if cs else (float("nan"), float("nan"))
    ex = {"flops_ratio": flops / hi, "fitted_flops": [lo, hi]}
    w = []
    if flops > hi * 1.0001 or flops < lo / 1.0001:
        w.append(f"C = {flops:.3g} FLOPs lies outside the fitted budgets ({lo:.3g} to {hi:.3g}): the power laws and "
                 f"the loss law are extrapolated ({flops / hi:.3g}x the largest budget)")
    return ex, w


def a2_optimal(fit: dict, flops: float, level: float = 0.95) -> dict:
    """Compute-optimal N, D and loss at `flops` from an Approach 2 fit (`AllocationFit.to_dict()`).

    N_opt = exp(coef_n) C^a and D_opt = exp(coef_d) C^b (the fit's power laws); the loss is the loss law
    through the per-budget parabola minima, loss_min(C) = E + G (C / ref_flops)^-gamma. Intervals are
    percentiles over the fit's stored bootstrap rows (none when it has none).

    Returns:
        {"approach": 2, "flops", "n_opt", "d_opt", "loss", "ci": {"n_opt", "d_opt", "loss": [lo, hi]}, "level",
        "n_boot", "flops_per_sample" (of a model of N_opt, from the fit's model), "extrapolation", "warnings"}
    """
    flops = float(flops)
    if not (np.isfinite(flops) and flops > 0):
        raise ValueError(f"flops {flops}: compute must be a positive number of FLOPs")
    pt, rows = _a2_params(fit)
    lc, lc0 = np.log(flops), np.log(fit["loss_law"]["ref_flops"])
    ln_n, ln_d, lmin, _ = _a2_at(pt, lc, lc0)
    out = {"approach": 2, "flops": flops, "n_opt": float(np.exp(ln_n)), "d_opt": float(np.exp(ln_d)),
           "loss": float(lmin), "ci": {}, "level": level, "n_boot": int(rows.shape[0])}
    if rows.size:
        bn, bd, bl, _ = _a2_at(rows, lc, lc0)
        for key, v in (("n_opt", np.exp(bn)), ("d_opt", np.exp(bd)), ("loss", bl)):
            if (ci := interval(v, level)) is not None:
                out["ci"][key] = ci
    fps = fit["flops_per_sample"]
    out["flops_per_sample"] = float(fps["c0"] + fps["c1"] * out["n_opt"])
    out["extrapolation"], out["warnings"] = _a2_span(fit, flops)
    if not rows.size:
        out["warnings"].append("the fit has no bootstrap rows: no intervals")
    _a2_finish(fit, out, out["n_opt"], out["d_opt"], flops)
    return out


def a2_predict(fit: dict, n: float, d: float, flops: float | None = None, level: float = 0.95) -> dict:
    """Loss of a model of N = n parameters trained on D = d samples, on an Approach 2 fit's IsoFLOP surface.

    At compute C the surface is the parabola in log N: loss = loss_min(C) + p2(C) (ln n - ln N_opt(C))^2,
    with N_opt(C) from the power law, loss_min(C) from the loss law and p2(C) from the curvature law
    (ln p2 linear in ln C) through the fitted budgets. C is `flops` when given, else what such a run
    costs by the fit's FLOPs-per-sample model, (c0 + c1 n) d. The interval is the percentile interval
    over the fit's bootstrap rows. The parabolas were fitted on windows around each minimum: farther
    from N_opt than those windows reached, the surface is extrapolated in N (a warning says so).

    Returns:
        {"approach": 2, "n", "d", "flops", "flops_source", "loss", "ci": {"loss": [lo, hi]}, "level",
        "n_boot", "n_opt" (at C), "extrapolation", "warnings"}
    """
    for name, v in (("n", n), ("d", d)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} {v}: must be a positive number")
    pt, rows = _a2_params(fit)
    fps = fit["flops_per_sample"]
    src = "given"
    if flops is None:
        flops, src = (fps["c0"] + fps["c1"] * n) * d, "the fit's FLOPs-per-sample model, (c0 + c1 N) D"
    flops = float(flops)
    if not (np.isfinite(flops) and flops > 0):
        raise ValueError(f"flops {flops}: compute must be a positive number of FLOPs")
    lc, lc0, x = np.log(flops), np.log(fit["loss_law"]["ref_flops"]), np.log(n)
    ln_n, _, lmin, k = _a2_at(pt, lc, lc0)
    out = {"approach": 2, "n": float(n), "d": float(d), "flops": flops, "flops_source": src,
           "loss": float(lmin + k * (x - ln_n) ** 2), "ci": {}, "level": level, "n_boot": int(rows.shape[0]),
           "n_opt": float(np.exp(ln_n))}
    if rows.size:
        bn, _, bl, bk = _a2_at(rows, lc, lc0)
        if (ci := interval(bl + bk * (x - bn) ** 2, level)) is not None:
            out["ci"]["loss"] = ci
    ex, warns = _a2_span(fit, flops)
    reach = max((max(abs(np.log(b["window_n"][0] / b["n_opt"])), abs(np.log(b["window_n"][1] / b["n_opt"])))
                 for b in fit.get("budgets") or []), default=float("nan"))
    ex["n_over_n_opt"] = float(n / out["n_opt"])
    if abs(x - ln_n) > reach:
        warns.append(f"N = {n:.3g} is {n / out['n_opt']:.3g}x N_opt ({out['n_opt']:.3g}) at this compute; the "
                     f"parabolas were fitted within {np.exp(reach):.3g}x of their minima: "
                     "the surface is extrapolated in N")
    out["extrapolation"], out["warnings"] = ex, warns
    _a2_finish(fit, out, n, d, flops)
    return out


def _a2_backtest(tbl, budget, window) -> dict:
    """Refit without the largest budget, predict every run of it on the IsoFLOP surface.

    Returns:
        {"holdout" (runs of the held-out budget), "are_mean", "are_max" (relative errors), "reach"
        (log10 of the held-out budget over the largest one left in: how far the backtest extrapolated)},
        or {"skipped": why} when fewer than 3 budgets were fitted.
    """
    groups = budgets_of(tbl.compute) if budget is None else np.asarray(budget)
    keys = np.unique(groups)
    if keys.size < 3:
        return {"skipped": f"{keys.size} budgets: the backtest needs 3 (2 to refit, 1 to predict)"}
    comp = {g: float(np.exp(np.mean(np.log(tbl.compute[groups == g])))) for g in keys}
    top = max(keys, key=lambda g: comp[g])
    keep = groups != top
    sub = approach2(tbl.cols["N"][keep], tbl.cols["D"][keep], tbl.loss[keep], tbl.compute[keep],
                    budget=None if budget is None else np.asarray(budget)[keep], window=window)
    if sub.flops.size < 2:
        return {"skipped": "fewer than 2 budgets fitted without the largest"}
    N, D, L = tbl.cols["N"][~keep], tbl.cols["D"][~keep], tbl.loss[~keep]
    fit = {**sub.to_dict(), "flops_per_sample": _flops_per_sample(tbl.cols["N"], tbl.cols["D"], tbl.compute)}
    try:
        pred = np.array([a2_predict(fit, n, d, flops=comp[top])["loss"] for n, d in zip(N, D)], float)
    except ValueError as exc:
        return {"skipped": str(exc)}
    are = np.abs(pred - L) / L
    left = max(float(c) for c in sub.flops)
    return {"holdout": int(L.size), "are_mean": float(are.mean()), "are_max": float(are.max()),
            "reach": float(np.log10(comp[top] / left))}


def _a2_finish(fit: dict, out: dict, n: float, d: float, c: float) -> None:
    """The answer's extrapolation in N, D and C, and its loss interval widened as Approach 3's are.

    Widening (`analysis.allocation.interval_floor`'s rule): no narrower than the Approach 2 backtest's
    worst error (refit without the largest budget, predict its runs), grown with the decades beyond the
    fitted runs over the decades that backtest reached; nor than +-1.96 x the runs' own scatter about
    the parabolas (the fit's noise estimate, as a share of the loss).
    """
    from analysis.allocation import extrapolation, widen_interval

    obs = dict(fit.get("observed") or {})
    ex = extrapolation(obs, n, d, c)
    ex.update({k: v for k, v in (out.get("extrapolation") or {}).items() if k not in ex})
    out["extrapolation"] = ex
    if ex.get("epochs") is not None and ex["epochs"] > 1.0:
        out.setdefault("warnings", []).append(
            f"D = {d:.3g} samples is {ex['epochs']:.3g}x the unique samples of the data ({ex['unique_samples']:.3g}): "
            "repeated data is worth less than fresh data, which the IsoFLOP surface does not model")
    if obs.get("seed_sd") is None:
        from analysis.allocation import SINGLE_SEED

        out.setdefault("warnings", []).append(SINGLE_SEED)
    bt = dict(fit.get("backtest") or {})
    obs["backtest_reach"] = bt.get("reach")
    noise = (fit.get("noise") or {}).get("sd")
    if noise and out["loss"] > 0 and float(noise) / out["loss"] > float(obs.get("seed_sd") or 0.0):
        obs["seed_sd"] = float(noise) / out["loss"]
        obs["seed_sd_source"] = ("scatter of the runs about the parabolas "
                                 f"({(fit.get('noise') or {}).get('source', '')})")
    widen_interval(out, ex, bt, obs)


def _censoring(a1: AllocationFit, N: np.ndarray, D: np.ndarray) -> str | None:
    """Why Approach 1's envelope is censored by the table's grid, or None.

    Censored when at least 2 envelope points sit at the table's largest D (the optimum wants more data
    than any run had) or at its smallest N (a smaller model than any run), not counting the grid's
    corner there (the largest run, N and D both largest; the smallest run, both smallest), which
    sits on the envelope whatever the optimum.
    """
    top = np.isclose(a1.d_opt, D.max(), rtol=1e-9, atol=0) & ~np.isclose(a1.n_opt, N.max(), rtol=1e-9, atol=0)
    bottom = np.isclose(a1.n_opt, N.min(), rtol=1e-9, atol=0) & ~np.isclose(a1.d_opt, D.min(), rtol=1e-9, atol=0)
    m = a1.flops.size
    if top.sum() >= 2:
        return (f"the envelope's minima sit at the top of the D grid ({top.sum()} of {m} points at D = {D.max():.3g}, "
                "the largest D): it is censored, its a is biased")
    if bottom.sum() >= 2:
        return (f"the envelope's minima sit at the bottom of the N grid ({bottom.sum()} of {m} points at "
                f"N = {N.min():.3g}, the smallest N): it is censored, its a is biased")
    return None


def _iv(v) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]" if v else "(no interval)"


def compare_approaches(N, D, loss, flops, a3: float | None = None, a3_ci=None, budget=None, n_boot: int = 200,
                       seed: int = 0, a3_extrapolation: float | None = None, level: float = 0.95) -> dict:
    """Do Approaches 1, 2 and 3 agree on a (N_opt ~ C^a), and whose assumptions does the data meet?

    Approach 1 (the envelope, `approach1`) assumes the grid reaches past the optimum: its assumptions
    fail when the envelope is censored (`_censoring`: 2 or more of its minima sit at the largest D or
    the smallest N of the table) or has fewer than 3 points. Approach 2 (`approach2`, windowed) is run when the table
    has at least 2 IsoFLOP budgets with at least 3 sizes; it assumes at least 2 budgets fitted with
    their minimum inside the budget's sizes. Approach 3 (the parametric fit, given as `a3`, `a3_ci`)
    assumes the optimum it reports lies within the data: `a3_extrapolation` is its D_opt at the
    largest compute over the largest D of the table, and above 1 it extrapolates.

    Args:
        N, D, loss, flops: per run. budget: per-run IsoFLOP budget (as in `approach2`).
        a3, a3_ci: Approach 3's a and its interval [lo, hi] (omit a3 to leave Approach 3 out).
        n_boot: bootstrap resamples for Approaches 1 and 2. seed: their seed. level: interval level.

    Returns:
        Plain JSON: {"approaches": {"1": {"a", "ci", "assumptions_met", "why", ...}, "2": {...},
        "3": {...}}, "agree" (every pair's intervals overlap, and at least two have intervals),
        "warnings" (one line per pair whose intervals do not overlap, and each failed assumption),
        "trust" (one sentence: which approaches' assumptions the data meets)}.
    """
    N, D, loss, C = (np.asarray(v, float) for v in (N, D, loss, flops))
    apps, warns = {}, []
    a1 = approach1(N, D, loss, C, n_boot=n_boot, seed=seed, level=level)
    cens = _censoring(a1, N, D)
    if cens:
        why1 = cens
    elif a1.flops.size < 3:
        why1 = f"only {a1.flops.size} envelope points: too few for an exponent"
    else:
        why1 = (f"{a1.flops.size} envelope points, none held at the edge of the grid (largest D "
                f"{D.max():.3g}, smallest N {N.min():.3g})")
    met1 = not cens and a1.flops.size >= 3 and np.isfinite(a1.a)
    apps["1"] = {"a": _num(a1.a), "ci": a1.ci.get("a"), "assumptions_met": bool(met1), "why": why1,
                 "points": int(a1.flops.size), "n_boot": a1.n_boot}
    if not met1:
        warns.append(f"approach 1: {why1}")
    groups = budgets_of(C) if budget is None else np.asarray(budget)
    iso = sum(_sizes(np.log(N[groups == g]))[0].size >= 3 for g in np.unique(groups))
    if iso >= 2:
        a2 = approach2(N, D, loss, C, budget=budget, n_boot=n_boot, seed=seed, level=level)
        m = a2.flops.size
        met2 = m >= 2 and np.isfinite(a2.a)
        why2 = (f"{m} of {iso} IsoFLOP budgets fitted, each with its minimum inside its sizes (windowed parabolas)"
                if met2 else f"only {m} of {iso} IsoFLOP budgets have their minimum inside their sizes")
        apps["2"] = {"a": _num(a2.a), "ci": a2.ci.get("a"), "assumptions_met": bool(met2), "why": why2,
                     "budgets": int(m), "n_boot": a2.n_boot, "warnings": list(a2.warnings)}
        if not met2:
            warns.append(f"approach 2: {why2}")
    if a3 is not None:
        if a3_extrapolation is None:
            met3, why3 = True, "parametric fit; how far its optimum extrapolates was not given"
        elif a3_extrapolation > 1:
            met3, why3 = False, (f"its D_opt at the largest compute is {a3_extrapolation:.3g}x the largest D of the "
                                 "table: the optimum is extrapolated beyond the data")
        else:
            met3, why3 = True, (f"its D_opt at the largest compute is {a3_extrapolation:.3g}x the largest D: "
                                "within the data")
        apps["3"] = {"a": float(a3), "ci": [float(v) for v in a3_ci] if a3_ci is not None else None,
                     "assumptions_met": met3, "why": why3}
        if not met3:
            warns.append(f"approach 3: {why3}")
    keys = [k for k in sorted(apps) if apps[k]["ci"] and apps[k]["a"] is not None]
    clash = []
    for i, p in enumerate(keys):
        for q in keys[i + 1:]:
            (lp, hp), (lq, hq) = apps[p]["ci"], apps[q]["ci"]
            if hp < lq or hq < lp:
                clash.append(f"approaches {p} and {q} disagree: a = {apps[p]['a']:.3f} {_iv(apps[p]['ci'])} "
                             f"against a = {apps[q]['a']:.3f} {_iv(apps[q]['ci'])}; their {100 * level:.0f}% "
                             "intervals do not overlap")
    warns += clash
    if len(keys) < 2:
        warns.append("fewer than two approaches have an interval on a: agreement not checked")
    met = [k for k in sorted(apps) if apps[k]["assumptions_met"]]
    not_met = [f"{k}: {apps[k]['why']}" for k in sorted(apps) if not apps[k]["assumptions_met"]]
    if met:
        names = met[0] if len(met) == 1 else f"{', '.join(met[:-1])} and {met[-1]}"
        trust = (f"The data meets the assumptions of approach{'es' if len(met) > 1 else ''} {names}"
                 + (f" (not {'; '.join(not_met)})" if not_met else "") + ": trust "
                 + ("those" if len(met) > 1 else "that one") + ".")
    else:
        trust = f"The data meets no approach's assumptions ({'; '.join(not_met)}): trust none of these a."
    return {"approaches": apps, "agree": bool(len(keys) >= 2 and not clash), "warnings": warns, "trust": trust}


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def fit_approach2(source, *, options=None, out=None, **overrides) -> dict:
    """Approach 2 on a results table, as a plain-JSON dict (written to `out` when given).

    Args:
        source: DataFrame or CSV / Parquet path.
        options, overrides: `analysis.options.FitOptions` (or its fields by name) as in `analysis.fit`; read
            here: the columns and row filters, `budget_col` (each run's IsoFLOP budget; default: "budget"
            when the table has it, else runs grouped by FLOPs within 5%), `bootstrap` and `seed` (resamples
            for the intervals on a and b), `level`, and `window` (distinct sizes each side of a budget's
            minimum its parabolas go through, `approach2`; None: the whole grid).

    Raises:
        BadInput: missing columns, bad values, or no budget with a minimum.
    """
    import json

    import pandas as pd

    from analysis.options import resolve
    from analysis.result import _clean
    from analysis.table import load_table
    from vla_core.atomic import write_atomic
    from vla_core.errors import BadInput

    o = resolve(options, **overrides)
    budget_col, window, seed = o.budget_col, o.window, o.seed
    tbl = load_table(source, need=("N", "D"), n_params=2, **o.columns)
    col = budget_col or ("budget" if "budget" in tbl.frame.columns else None)
    budget = None
    if col is not None:
        if col not in tbl.frame.columns:
            raise BadInput(f"{tbl.source}: no column {col!r} (--budget-col); "
                           f"available: {', '.join(map(str, tbl.frame.columns))}")
        b = tbl.frame[col]
        num = pd.to_numeric(b, errors="coerce")
        budget = num.to_numpy(float) if num.notna().all() else b.astype(str).to_numpy()
        if num.notna().all() and not (budget > 0).all():
            raise BadInput(f"{tbl.source}: column {col!r} (--budget-col) has non-positive budgets")
    res = approach2(tbl.cols["N"], tbl.cols["D"], tbl.loss, tbl.compute, budget=budget, k=tbl.k,
                    n_boot=o.bootstrap, seed=seed, level=o.level, window=window)
    if res.flops.size < 2:
        raise BadInput(f"{tbl.source}: approach 2 needs at least 2 IsoFLOP budgets with a minimum inside their "
                       f"{'grid' if window is None else 'window'}; found {res.flops.size} "
                       f"({'; '.join(res.warnings)[:200]})")
    d = {**res.to_dict(), "n_points": tbl.n, "source": tbl.source, "notes": list(tbl.notes),
         "columns": {**tbl.names, **({"budget": col} if col else {})}, "seed": seed,
         "observed": tbl.observed(0.0), "backtest": _a2_backtest(tbl, budget, window)}
    d = _clean(d)
    if out is not None:
        write_atomic(out, json.dumps(d, indent=1) + "\n")
    return d


def load_any_fit(path) -> FitResult | dict:
    """A fit file as `optimal_any` and `predict_any` take it: a FitResult (Approach 3), or the plain dict
    of an Approach 2 fit (`"approach": 2`). BadInput (one line) when it is neither."""
    from analysis.result import FitResult

    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return FitResult.load(path)  # says what is wrong, in one line
    return d if isinstance(d, dict) and d.get("approach") == 2 else FitResult.from_dict(d, str(path))


def optimal_any(fit, flops: float) -> dict:
    """`optimal` for an Approach 3 fit, `a2_optimal` for an Approach 2 one."""
    from analysis.allocation import optimal

    if isinstance(fit, dict) and fit.get("approach") == 2:
        return a2_optimal(fit, flops)
    return optimal(fit, flops)


def predict_any(fit, n: float, d: float, flops: float | None = None) -> dict:
    """`predict` for an Approach 3 fit, `a2_predict` (at `flops` when given) for Approach 2."""
    from analysis.allocation import predict

    if isinstance(fit, dict) and fit.get("approach") == 2:
        return a2_predict(fit, n, d, flops=flops)
    return predict(fit, n, d)
