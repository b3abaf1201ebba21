"""Approach 3 (Hoffmann et al. 2022, D.2): summed Huber loss of log residuals, L-BFGS from a grid.

The objective is sum_i w_i Huber_delta(log L_hat_i - log L_i) with delta = 1e-3 (summed, not
averaged: Besiroglu et al. 2024 showed the mean stops L-BFGS early). Running scipy's L-BFGS-B
4,500 times in a Python loop spends its time in per-call overhead on 240-point arrays, so this
module runs one L-BFGS per start *in lockstep*: every start is a row of an (S, P) batch, each
objective evaluation is a handful of (S, n) numpy operations. Starts are pruned by successive
halving (those far behind the best after a few iterations do not end up best in practice; the tests
and benchmarks/bench_fit.py check the result against the per-start scipy loop), and the best few
are polished to full precision. The first, ranking-only stage runs in float32 (half the memory
traffic); everything after it in float64.
The same batched solver fits all bootstrap resamples at once (one weight row per resample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.forms import Form
from analysis.options import DELTA


def huber(r: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Elementwise Huber loss: r^2/2 inside |r| <= delta, linear outside."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


class Objective:
    """Summed weighted Huber loss of log residuals for a batch of parameter vectors.

    Args:
        form: the law form. logs: its log columns, each (n,). log_loss: observed log L, (n,).
        weights: (n,) shared by all rows, or (S, n) one row per batch member (bootstrap counts).
        delta: Huber delta.
        asymmetry: tau in (0, 1). 0.5 (default) is the symmetric loss; above 0.5, runs that land
            below the curve cost tau / (1 - tau) times more than runs above it, so the fit follows
            the lower envelope (runs above it lost to a poor learning rate or seed, not to N or D).
            Each side is scaled by 2 tau and 2 (1 - tau), so tau = 0.5 leaves the objective as is.
    """

    def __init__(self, form: Form, logs: dict, log_loss: np.ndarray, weights=None, delta: float = DELTA,
                 dtype=np.float64, asymmetry: float = 0.5):
        self.form, self.delta, self.dtype = form, delta, dtype
        self.asymmetry = float(asymmetry)
        self.logs = {k: np.asarray(v, dtype) for k, v in logs.items()}
        self.y = np.asarray(log_loss, dtype)
        n = self.y.shape[0]
        self.w = np.ones(n, dtype) if weights is None else np.asarray(weights, dtype)
        self.unit = weights is None

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None = None):
        """Objective (S,) and gradient (S, P) at theta (S, P); `rows` picks the weight rows."""
        w = self.w if self.w.ndim == 1 or rows is None else self.w[rows]
        with np.errstate(all="ignore"):  # overflow -> inf -> rejected by the line search
            return self._eval(np.asarray(theta, self.dtype), w)

    def _eval(self, theta, w):
        pred, derivs = self.form.log_predict(theta, self.logs)
        r = pred - self.y  # (S, n) log residuals
        c = np.clip(r, -self.delta, self.delta)  # dHuber/dr
        if self.asymmetry != 0.5:
            # r > 0: the curve predicts more than the run reached, i.e. the run lies below the curve.
            side = np.where(r > 0, 2.0 * self.asymmetry, 2.0 * (1.0 - self.asymmetry)).astype(self.dtype)
            c = c * side  # the derivative of side * Huber(r) is side * clip(r); side is constant per piece
            r -= 0.5 * c / side
        else:
            r -= 0.5 * c
        r *= c  # Huber(r) = c (r - c/2), c = clip(r): one formula inside and outside delta
        if self.unit:
            q = c
        else:
            q = w * c
            r *= w
        val = r.sum(axis=1)
        grad = np.empty_like(theta)
        for coef, F, idx in derivs:
            grad[:, idx] = (coef * q) @ F
        bad = ~np.isfinite(val) | ~np.isfinite(grad).all(axis=1)
        val[bad] = np.inf
        return val, grad


def lbfgs_batch(fun: Objective, x0: np.ndarray, *, maxiter: int = 200, m: int = 10, gtol: float = 1e-7,
                ftol: float = 1e-13, rows: np.ndarray | None = None):
    """L-BFGS (two-loop recursion, Armijo backtracking) on every row of x0 at once.

    Args:
        fun: batched objective, `fun(theta (S, P), rows) -> (f (S,), g (S, P))`.
        x0: starts, (S, P). maxiter: iterations. m: history length.
        gtol: stop a row when max |g| < gtol. ftol: stop a row when its relative decrease < ftol.
        rows: weight-row index of each start (bootstrap); default 0..S-1.

    Returns:
        (x (S, P), f (S,), n_iter (S,), converged (S,) bool) at the last iterate of each row; a row has
        converged when it stopped on a tolerance (or could not descend further) before `maxiter`.
    """
    with np.errstate(all="ignore"):  # float32 ranking stage: tiny guards underflow to 0 harmlessly
        return _lbfgs(fun, x0, maxiter, m, gtol, ftol, rows)


def _lbfgs(fun, x0, maxiter, m, gtol, ftol, rows):
    x = np.array(x0, getattr(fun, "dtype", np.float64))
    S, P = x.shape
    rows = np.arange(S) if rows is None else np.asarray(rows)
    f, g = fun(x, rows)
    sh, yh, rho = np.zeros((m, S, P)), np.zeros((m, S, P)), np.zeros((m, S))
    active = np.isfinite(f)
    iters = np.zeros(S, int)
    for it in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        gi = g[idx]
        # Two-loop recursion, newest pair first; pairs with rho = 0 (bad curvature) drop out.
        order = [(it - 1 - j) % m for j in range(min(it, m))]
        q, alph = gi.copy(), []
        for j in order:
            a = rho[j, idx] * np.einsum("sp,sp->s", sh[j, idx], q)
            q -= a[:, None] * yh[j, idx]
            alph.append(a)
        if order:
            j = order[0]
            yy = np.einsum("sp,sp->s", yh[j, idx], yh[j, idx])
            gamma = np.where((rho[j, idx] > 0) & (yy > 0), 1.0 / np.maximum(rho[j, idx] * yy, 1e-300), 1.0)
        else:
            gamma = 1.0 / np.maximum(np.abs(gi).max(axis=1), 1e-12)  # first step of size ~1 in max-norm
        r = gamma[:, None] * q
        for j, a in zip(reversed(order), reversed(alph)):
            b = rho[j, idx] * np.einsum("sp,sp->s", yh[j, idx], r)
            r += sh[j, idx] * (a - b)[:, None]
        d = -r
        slope = np.einsum("sp,sp->s", d, gi)
        bad = ~(slope < 0)
        d[bad] = -gi[bad] / np.maximum(np.abs(gi[bad]).max(axis=1, keepdims=True), 1e-12)
        slope[bad] = np.einsum("sp,sp->s", d[bad], gi[bad])
        # Armijo backtracking, only the rows that still fail are re-evaluated.
        t = np.ones(idx.size)
        xn, fn, gn = x[idx].copy(), np.full(idx.size, np.inf), np.zeros_like(gi)
        todo = np.arange(idx.size)
        for _ in range(30):
            xt = x[idx[todo]] + t[todo, None] * d[todo]
            ft, gt = fun(xt, rows[idx[todo]])
            ok = ft <= f[idx[todo]] + 1e-4 * t[todo] * slope[todo]
            done = todo[ok]
            xn[done], fn[done], gn[done] = xt[ok], ft[ok], gt[ok]
            todo = todo[~ok]
            if todo.size == 0:
                break
            t[todo] *= 0.25
        stuck = np.isinf(fn)
        s_new = xn - x[idx]
        y_new = gn - gi
        sy = np.einsum("sp,sp->s", s_new, y_new)
        slot = it % m
        good = (sy > 1e-12 * np.maximum(np.einsum("sp,sp->s", y_new, y_new), 1e-300)) & ~stuck
        sh[slot, idx], yh[slot, idx] = np.where(good[:, None], s_new, 0), np.where(good[:, None], y_new, 0)
        rho[slot, idx] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        fold = f[idx]
        upd = ~stuck
        x[idx[upd]], f[idx[upd]], g[idx[upd]] = xn[upd], fn[upd], gn[upd]
        iters[idx] += 1
        rel = (fold - f[idx]) / np.maximum(np.maximum(np.abs(fold), np.abs(f[idx])), 1e-300)
        conv = stuck | (np.abs(g[idx]).max(axis=1) < gtol) | (upd & (rel < ftol))
        active[idx[conv]] = False
    return x, f, iters, ~active & np.isfinite(f)


@dataclass(frozen=True)
class ParamFit:
    """The best Approach 3 optimum over a start grid."""

    theta: np.ndarray
    """Best parameters in fit space (P,)."""
    huber: float
    """Summed Huber objective at `theta`."""
    n_starts: int
    """Starts in the grid."""
    candidates: np.ndarray
    """Final fit-space points of the polished candidates, best first (K, P)."""
    converged: bool = True
    """Whether the best candidate's final polish stopped on a tolerance before its iteration cap."""
    n_iter: int = 0
    """Iterations of the best candidate's final polish."""
    grad_max: float = 0.0
    """Largest |gradient| component of the objective at `theta`."""
    basins: np.ndarray | None = None
    """Distinct optima among the candidates within 2x the best objective, best first, at most 3 (B, P):
    seeds for the bootstrap's refits (a basin twice as bad on all runs seldom wins a resample)."""


def fit_grid(form: Form, logs: dict, log_loss: np.ndarray, grid: np.ndarray | None = None, *,
             weights=None, stages=((12, 0.05), (60, 0.2)), n_polish: int = 8, chunk: int = 1500,
             delta: float = DELTA, asymmetry: float = 0.5) -> ParamFit:
    """Best Approach 3 fit from every start of `grid` (default: the form's own, Chinchilla's 4,500).

    Args:
        form, logs, log_loss, weights: see `Objective`.
        grid: starts (S, P).
        stages: successive halving, (iterations, fraction kept) per stage; () runs every start to
            convergence (the exact, slower mode).
        n_polish: best candidates polished to full precision.
        chunk: starts per batch in the first stage (bounds memory to chunk * n doubles per array).
        delta, asymmetry: the robust loss (see `Objective`).
    """
    fun = Objective(form, logs, log_loss, weights, delta, asymmetry=asymmetry)
    # The first stage only ranks starts: float32 halves its memory traffic and costs no accuracy
    # that matters (log residuals of ~1e-3 keep 4 significant digits); later stages are float64.
    fun32 = Objective(form, logs, log_loss, weights, delta, dtype=np.float32, asymmetry=asymmetry)
    x = np.array(form.grid if grid is None else grid, float)
    n_starts = x.shape[0]
    for i, (iters, keep) in enumerate(stages):
        fs, xs = [], []
        for lo in range(0, x.shape[0], chunk):
            xi, fi, _, _ = lbfgs_batch(fun32 if i == 0 else fun, x[lo:lo + chunk], maxiter=iters)
            xs.append(xi)
            fs.append(fi)
        x, f = np.concatenate(xs).astype(float), np.concatenate(fs)
        n_keep = max(n_polish, min(x.shape[0], int(np.ceil(keep * x.shape[0]))), 8)
        x = x[np.argsort(f)[:n_keep]]
    x, f, _, _ = lbfgs_batch(fun, x, maxiter=500)
    # Polish the best few to full precision (relative decrease 1e-15, |g| < 1e-11) in the same solver:
    # scipy's L-BFGS-B would do too, but its LAPACK calls stall for seconds on a busy multi-core box.
    top = x[np.argsort(f)[:n_polish]]
    x, f, it, conv = lbfgs_batch(fun, top, maxiter=1000, gtol=1e-11, ftol=1e-15)
    if not conv[np.argmin(f)]:
        # Flat valleys (an exponent -> 0, E -> 0) need many more steps; a few rows cost little.
        x2, f2, it2, conv2 = lbfgs_batch(fun, x, maxiter=8000, gtol=1e-11, ftol=1e-15)
        x, f, it, conv = x2, f2, it + it2, conv2
    order = np.argsort(f)
    best = order[0]
    _, g = fun(x[best][None, :])
    return ParamFit(x[best], float(f[best]), n_starts, x[order], bool(conv[best]), int(it[best]),
                    float(np.abs(g).max()),
                    distinct(form, x[order], f[order], float(np.exp(np.min(log_loss))), worse=2.0)[:3])


def basin_coords(form: Form, x: np.ndarray, loss_scale: float) -> np.ndarray:
    """Coordinates in which two optima of one basin are close: (..., P).

    Fit space, except that a floor (E) is compared as a share of the loss (`loss_scale`, e.g. the
    smallest observed loss), not as a log: log E -> -inf is a flat valley, not many basins.
    """
    x = np.array(x, float)
    for i, kind in enumerate(form.kinds):
        if kind == "floor":
            x[..., i] = np.exp(x[..., i]) / loss_scale
    return x


def distinct(form: Form, x: np.ndarray, f: np.ndarray, loss_scale: float, tol: float = 0.05,
             worse: float = 10.0) -> np.ndarray:
    """Distinct optima among sorted candidates x (K, P), f (K,): those apart from every better one.

    Two optima are one basin when every `basin_coords` coordinate agrees within `tol`; candidates
    more than `worse` times the best objective are left out.
    """
    c = basin_coords(form, x, loss_scale)
    keep = []
    for i in range(x.shape[0]):
        if not np.isfinite(f[i]) or f[i] > worse * max(f[0], 1e-300):
            continue
        if all(np.abs(c[i] - c[j]).max() > tol for j in keep):
            keep.append(i)
    return x[keep]


def fit_scipy_loop(form: Form, logs: dict, log_loss: np.ndarray, grid: np.ndarray | None = None,
                   **options) -> tuple[np.ndarray, float, np.ndarray]:
    """Reference: scipy L-BFGS-B separately from every start (default options), best kept.

    Returns (best theta (P,), best objective, all final objectives (S,)).
    """
    from scipy.optimize import minimize

    fun = Objective(form, logs, log_loss)

    def f1(t):
        v, g = fun(t[None, :])
        return (float(v[0]), g[0]) if np.isfinite(v[0]) else (1e300, np.zeros_like(t))

    grid = np.array(form.grid if grid is None else grid, float)
    results = [minimize(f1, x0, jac=True, method="L-BFGS-B", options=options or None) for x0 in grid]
    fs = np.array([r.fun for r in results])
    best = int(np.argmin(fs))
    return results[best].x, float(fs[best]), fs
