"""Chinchilla Approaches 1 and 2 (Hoffmann et al. 2022, sections 3.1 and 3.2), from final-run tables.

Approach 1: the envelope of minimum loss over compute; the runs on it give N_opt(C), D_opt(C).
Approach 2: per IsoFLOP budget, a parabola in log N through the losses; its vertex is N_opt(C); and
separately a parabola in log D, whose vertex is D_opt(C) (so b is measured, not 1 - a by construction).
Both end with power-law fits N_opt ~ C^a, D_opt ~ C^b (least squares in log-log). Approach 2's
intervals come from a bootstrap over runs within each budget (every budget keeps its grid).
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
    ci: dict = field(default_factory=dict)
    """Approach 2 with a bootstrap: 95% intervals {"a": [lo, hi], "b": [lo, hi]}."""
    n_boot: int = 0
    """Bootstrap resamples behind `ci` (resamples that left fewer than 2 budgets fitted are dropped)."""

    def to_dict(self) -> dict:
        """Plain-JSON summary: exponents, intervals, coefficients and the per-budget optima."""
        return {"approach": self.approach, "a": self.a, "b": self.b, "ci": self.ci, "coef": list(self.coef),
                "n_boot": self.n_boot, "warnings": list(self.warnings),
                "points": [{"flops": float(c), "n_opt": float(n), "d_opt": float(d), "loss": float(lo)}
                           for c, n, d, lo in zip(self.flops, self.n_opt, self.d_opt, self.loss)]}

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


def _vertex(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    """Weighted least-squares parabola y ~ p2 x^2 + p1 x + p0 for many weight rows at once.

    Args:
        x, y: (k,). w: (R, k) weights (bootstrap counts) or None for one unweighted fit.

    Returns:
        (p2, p1, p0) each (R,) (or scalars), and the vertex -p1 / (2 p2).
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


def approach2(N, D, loss, flops, budget=None, k: float = 6.0, min_points: int = 3, n_boot: int = 0,
              seed: int = 0, level: float = 0.95) -> AllocationFit:
    """Approach 2: per IsoFLOP budget, parabolas in log N and in log D; their vertices are N_opt, D_opt.

    Args:
        N, D, loss, flops: per run. budget: per-run budget, nominal FLOPs or a label (default: runs
            grouped by `budgets_of(flops)`); a budget's compute is its nominal FLOPs when numeric,
            else the geometric mean of its runs' FLOPs.
        k: FLOPs per parameter per sample (unused when D is given; kept for callers).
        min_points: distinct model sizes a budget needs to be fitted.
        n_boot: bootstrap resamples of the runs within each budget, for intervals on a and b (0: none).
        seed: bootstrap seed. level: interval level.
    """
    N, D, loss, C = (np.asarray(v, float) for v in (N, D, loss, flops))
    groups = budgets_of(C) if budget is None else np.asarray(budget)
    nominal = budget is not None and np.issubdtype(np.asarray(budget).dtype, np.number)
    warns, rows, curves, few, fitted = [], [], [], 0, []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        c = float(g) if nominal else float(np.exp(np.mean(np.log(C[idx]))))  # the budget's compute
        x, xd, y = np.log(N[idx]), np.log(D[idx]), loss[idx]
        if np.unique(x).size < min_points:
            few += 1  # not an IsoFLOP budget at all (e.g. a grid sweep): summarised below, not listed
            continue
        (p2, p1, p0), xv = _vertex(x, y)
        (q2, q1, q0), xdv = _vertex(xd, y)
        if p2 <= 0 or q2 <= 0:
            warns.append(f"budget {c:.3g} FLOPs: losses do not curve upward in log N or log D (no minimum), skipped")
            continue
        i_min = int(np.argmin(y))
        if not (x.min() < xv < x.max() and xd.min() < xdv < xd.max()):
            warns.append(f"budget {c:.3g} FLOPs: the parabola's minimum (N = {np.exp(xv):.3g}) lies outside its grid "
                         f"[{np.exp(x.min()):.3g}, {np.exp(x.max()):.3g}]; budget skipped, widen its grid")
            continue
        if x[i_min] in (x.min(), x.max()):
            warns.append(f"budget {c:.3g} FLOPs: lowest loss at the edge of its grid (N = {np.exp(x[i_min]):.3g}); "
                         "widen the grid, its N_opt leans on the parabola's shape")
        rows.append((c, float(np.exp(xv)), float(np.exp(xdv)), float(np.polyval([p2, p1, p0], xv))))
        curves.append((c, N[idx][np.argsort(x)], y[np.argsort(x)], (p2, p1, p0)))
        fitted.append((c, idx))
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
    res = _finish(2, c, n, d, lo, warns, curves)
    if n_boot > 0 and c.size >= 2:
        ci, used = _bootstrap_exponents(N, D, loss, fitted, n_boot, seed, level)
        res = AllocationFit(**{**res.__dict__, "ci": ci, "n_boot": used})
    return res


def _bootstrap_exponents(N, D, loss, fitted, n_boot, seed, level):
    """Percentile intervals of a and b from resampling runs within each fitted budget."""
    rng = np.random.default_rng(seed)
    lc = np.log([c for c, _ in fitted])
    ln_opt = np.empty((n_boot, len(fitted)))
    ld_opt = np.empty_like(ln_opt)
    for j, (c, idx) in enumerate(fitted):
        w = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=n_boot).astype(float)  # (B, k)
        _, ln_opt[:, j] = _vertex(np.log(N[idx]), loss[idx], w)
        _, ld_opt[:, j] = _vertex(np.log(D[idx]), loss[idx], w)
    # A resample whose budget has no minimum drops that budget; log-log slopes over what remains.
    out = {}
    ok_rows = np.ones(n_boot, bool)
    for name, v in (("a", ln_opt), ("b", ld_opt)):
        m = np.isfinite(v)
        slopes = np.full(n_boot, np.nan)
        for r in range(n_boot):
            if m[r].sum() >= 2:
                slopes[r] = np.polyfit(lc[m[r]], v[r, m[r]], 1)[0]
        ok_rows &= np.isfinite(slopes)
        good = slopes[np.isfinite(slopes)]
        if good.size:
            out[name] = [float(np.percentile(good, 50 * (1 - level))), float(np.percentile(good, 50 * (1 + level)))]
    return out, int(ok_rows.sum())


def fit_approach2(source, *, n_col: str = "n_params", d_col: str = "n_samples", loss_col: str = "val_loss",
                  c_col: str | None = None, budget_col: str | None = None, exclude_col: str | None = None,
                  bootstrap: int = 1000, seed: int = 0, all_states: bool = False, out=None) -> dict:
    """Approach 2 on a results table, as a plain-JSON dict (written to `out` when given).

    Args:
        source: DataFrame or CSV / Parquet path.
        n_col, d_col, loss_col, c_col: columns (as in `analysis.fit`).
        budget_col: each run's IsoFLOP budget (default: "budget" when the table has it, else runs
            grouped by FLOPs within 5%).
        exclude_col: rows to leave out (true/1/yes), e.g. an outlier flag.
        bootstrap: resamples for the intervals on a and b.

    Raises:
        BadInput: missing columns, bad values, or no budget with a minimum.
    """
    import json

    import pandas as pd

    from analysis.atomic import write_atomic
    from analysis.errors import BadInput
    from analysis.result import _clean
    from analysis.table import load_table

    tbl = load_table(source, need=("N", "D"), n_col=n_col, d_col=d_col, loss_col=loss_col, c_col=c_col,
                     n_params=2, all_states=all_states, exclude_col=exclude_col)
    col = budget_col or ("budget" if "budget" in tbl.frame.columns else None)
    budget = None
    if col is not None:
        if col not in tbl.frame.columns:
            raise BadInput(f"{tbl.source}: no column {col!r} (--budget-col); available: {', '.join(map(str, tbl.frame.columns))}")
        b = tbl.frame[col]
        num = pd.to_numeric(b, errors="coerce")
        budget = num.to_numpy(float) if num.notna().all() else b.astype(str).to_numpy()
        if num.notna().all() and not (budget > 0).all():
            raise BadInput(f"{tbl.source}: column {col!r} (--budget-col) has non-positive budgets")
    res = approach2(tbl.cols["N"], tbl.cols["D"], tbl.loss, tbl.compute, budget=budget, k=tbl.k,
                    n_boot=bootstrap, seed=seed)
    if res.flops.size < 2:
        raise BadInput(f"{tbl.source}: approach 2 needs at least 2 IsoFLOP budgets with a minimum inside their grid; "
                       f"found {res.flops.size} ({'; '.join(res.warnings)[:200]})")
    d = {**res.to_dict(), "n_points": tbl.n, "source": tbl.source, "notes": list(tbl.notes),
         "columns": {**tbl.names, **({"budget": col} if col else {})}, "seed": seed}
    d = _clean(d)
    if out is not None:
        write_atomic(out, json.dumps(d, indent=1) + "\n")
    return d
