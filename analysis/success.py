"""Downstream success: closed-loop success rate against compute and against loss.

Law form. A success rate lives in [0, 1]: it sits at a floor (chance: what the input-free blind
baseline reaches, else 0) while the policy is too weak, climbs, and saturates at a ceiling (some
tasks stay out of reach). A power law in compute, the form of the loss, cannot respect either end.
The standard form for a bounded downstream metric is a logistic in log compute (Owen 2024, "How
predictable is language model benchmark performance?"; Ruan et al. 2024 use a sigmoid of a
capability score), and in the loss it is a logistic in L (Gadre et al. 2024 map loss to downstream
error through a monotone saturating curve):

    s(u) = floor + (ceiling - floor) / (1 + exp(-slope (u - mid)))

with u = log10 C (FLOPs) for `vs_compute`, and u = -L for `vs_loss` (success rises as loss falls),
so slope > 0 in both. `mid` is stored in the variable's own units: log10 C50, or L50.
Fitted by least squares from a few starts (scipy's bounded trust region), with bootstrap intervals
over runs (`analysis.bootstrap`'s engine), standard errors and covariance from the Jacobian at the
optimum (`analysis.covariance`: s^2 (J^T J)^-1, as lmfit reports them) and a backtest that refits
without the top-compute runs and predicts them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from analysis.covariance import LSQ_METHOD, Covariance, least_squares_covariance

NAMES = ("mid", "slope", "ceiling")


def logistic(u, mid, slope, ceiling, floor: float = 0.0):
    """floor + (ceiling - floor) * sigmoid(slope (u - mid)); vectorised over every argument."""
    z = np.clip(np.asarray(slope) * (np.asarray(u, float) - np.asarray(mid)), -60.0, 60.0)
    return floor + (np.asarray(ceiling) - floor) / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class SuccessFit:
    """A logistic law of success rate in log compute or in loss (see the module docstring)."""

    x: str
    """"compute" (u = log10 FLOPs) or "loss" (u = -L)."""
    params: dict[str, float]
    """mid (log10 C50 or L50), slope (per unit of u), ceiling (largest success the law reaches)."""
    floor: float
    """Success with no useful policy (the blind baseline's, else 0); fixed, not fitted."""
    ci: dict[str, list[float]] = field(default_factory=dict)
    """95% bootstrap intervals of the parameters."""
    samples: list = field(default_factory=list, repr=False)
    """Bootstrap parameter rows (B, 3) in NAMES order, for intervals on predictions."""
    n_points: int = 0
    """Runs fitted."""
    rmse: float = float("nan")
    """Root mean square error of the fit, in success-rate points (0..1)."""
    backtest: dict = field(default_factory=dict)
    """Refit without the top-compute runs, predict them: holdout, mae, max_err (success points)."""
    warnings: list[str] = field(default_factory=list)
    """Caveats (saturated runs, too few points, a ceiling below the target)."""
    stderr: dict[str, float | None] = field(default_factory=dict)
    """Standard error of each parameter, from the covariance (None when it was not computed)."""
    covariance: Covariance | None = None
    """Covariance of (mid, slope, ceiling) at the optimum: s^2 (J^T J)^-1 (`analysis.covariance`)."""

    def _u(self, v):
        v = np.asarray(v, float)
        return np.log10(v) if self.x == "compute" else -v

    def _mid_u(self, mid):
        return np.asarray(mid) if self.x == "compute" else -np.asarray(mid)

    def predict(self, v, params: dict | None = None):
        """Success rate at compute C (FLOPs) or at loss L."""
        p = params or self.params
        return logistic(self._u(v), self._mid_u(p["mid"]), p["slope"], p["ceiling"], self.floor)

    def inverse(self, target: float, params: dict | None = None):
        """Compute (FLOPs) or loss at which the law reaches `target` success; nan where its ceiling is below it."""
        p = params or self.params
        mid, slope, ceil = (np.asarray(p[k], float) for k in NAMES)
        frac = (target - self.floor) / (ceil - self.floor)
        with np.errstate(all="ignore"):
            u = self._mid_u(mid) + np.log(frac / (1.0 - frac)) / slope
        u = np.where((frac > 0) & (frac < 1), u, np.nan)
        return 10.0**u if self.x == "compute" else -u

    def to_dict(self) -> dict:
        """Plain-JSON dict."""
        return asdict(self)


def _starts(u: np.ndarray):
    span = max(np.ptp(u), 1e-6)
    for q in (0.25, 0.5, 0.75, 1.2):  # 1.2: the midpoint beyond the runs (success still climbing)
        for s in (3.0, 12.0):
            for c in (0.7, 1.0):
                yield [np.quantile(u, min(q, 1.0)) + max(q - 1.0, 0.0) * span, s / span, c]


def _fit_u(u, s, floor, w=None, x0=None):
    """Least-squares logistic in u; returns (mid_u, slope, ceiling) and the sum of squares."""
    from scipy.optimize import least_squares

    w = np.ones_like(s) if w is None else w
    sw = np.sqrt(w)
    lo = [u.min() - 3 * max(np.ptp(u), 1.0), 1e-6, max(floor + 1e-6, 1e-6)]
    hi = [u.max() + 3 * max(np.ptp(u), 1.0), 1e4, 1.0]
    best = None
    for start in ([x0] if x0 is not None else _starts(u)):
        start = np.clip(start, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
        r = least_squares(lambda p: sw * (logistic(u, p[0], p[1], p[2], floor) - s), start, bounds=(lo, hi))
        if best is None or r.cost < best.cost:
            best = r
    return best.x, 2.0 * best.cost


def fit_success(v, success, compute, x: str = "compute", floor: float = 0.0, bootstrap: int = 200, seed: int = 0,
                holdout_frac: float = 0.2, level: float = 0.95) -> SuccessFit:
    """Fit a success law against compute or loss.

    Args:
        v: per run, compute in FLOPs (x = "compute") or loss (x = "loss"), (n,).
        success: success rate per run in [0, 1], (n,).
        compute: FLOPs per run, (n,): orders the runs for the backtest.
        floor: success of a policy that ignores its inputs (blind baseline), fixed.
        bootstrap: resamples for intervals (drawn by `analysis.bootstrap.resample_weights` from `seed`).
        holdout_frac: top-compute share held out in the backtest. level: the intervals' coverage.
    """
    v, s, C = (np.asarray(a, float) for a in (v, success, compute))
    tmp = SuccessFit(x, {}, floor)
    u = tmp._u(v)
    warns = []
    if (s >= 0.99).mean() > 0.5 or (s <= floor + 0.01).mean() > 0.5:
        warns.append("most runs sit at the floor or the ceiling of success; the curve between is barely observed")
    p, sse = _fit_u(u, s, floor)
    params = _natural(x, p)
    if params["ceiling"] > 1.0 - 1e-6:
        warns.append("ceiling = 1 is at the bound of its domain: the runs show no saturation below 100% success, "
                     "so the ceiling is not determined (its interval is one-sided)")
    cov = _covariance(x, u, s, floor, p)
    ci, samples = {}, []
    if bootstrap > 0:
        ci, samples = _bootstrap(x, u, s, floor, p, bootstrap, seed, level)
    bt = {}
    h = int(np.ceil(holdout_frac * s.size)) if holdout_frac > 0 else 0
    if h and s.size - h >= 4:
        order = np.argsort(C, kind="stable")
        tr, te = order[:-h], order[-h:]
        q, _ = _fit_u(u[tr], s[tr], floor)
        err = np.abs(logistic(u[te], q[0], q[1], q[2], floor) - s[te])
        bt = {"holdout": h, "mae": float(err.mean()), "max_err": float(err.max())}
    return SuccessFit(x, params, floor, ci, samples, int(s.size), float(np.sqrt(sse / s.size)), bt, warns,
                      cov.stderr(), cov)


def _bootstrap(x: str, u, s, floor: float, p, n_boot: int, seed: int, level: float):
    """Percentile intervals and rows (NAMES order) of the law refitted on `n_boot` resamples of the runs,
    each from the full-data optimum `p`."""
    from analysis.bootstrap import percentile_ci, refit_resamples, resample_weights

    w = resample_weights(s.size, n_boot, seed)
    rows = refit_resamples(lambda wi: [_natural(x, _fit_u(u, s, floor, wi, x0=p)[0])[k] for k in NAMES], w,
                           batched=False)
    lo, hi = percentile_ci(rows, level)
    return {k: [float(a), float(b)] for k, a, b in zip(NAMES, lo, hi)}, rows.tolist()


def _covariance(x: str, u, s, floor: float, q) -> Covariance:
    """Covariance of the natural (mid, slope, ceiling) at the least-squares optimum `q` (in u)."""
    mid, slope, ceil = (float(v) for v in q)
    z = slope * (u - mid)
    sig = 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))
    inside = np.abs(z) < 60.0  # beyond the clip the law is flat in mid and slope
    ds = (ceil - floor) * sig * (1.0 - sig) * inside
    J = np.column_stack([-slope * ds, (u - mid) * ds, sig])
    cov, why = least_squares_covariance(J, logistic(u, mid, slope, ceil, floor) - s)
    if cov is not None and x != "compute":  # mid = -mid_u: its covariances with the others change sign
        d = np.array([-1.0, 1.0, 1.0])
        cov = cov * np.outer(d, d)
    return Covariance(list(NAMES), None if cov is None else cov.tolist(), LSQ_METHOD, why)


def _natural(x: str, q) -> dict[str, float]:
    mid = float(q[0]) if x == "compute" else -float(q[0])
    return {"mid": mid, "slope": float(q[1]), "ceiling": float(q[2])}


def from_dict(d: dict) -> SuccessFit:
    """A SuccessFit from its fit.json entry."""
    known = SuccessFit.__dataclass_fields__
    kw = {k: v for k, v in d.items() if k in known}
    if "covariance" in kw:
        kw["covariance"] = Covariance.from_dict(kw["covariance"])
    return SuccessFit(**kw)


def success_section(table, compute, loss, bootstrap: int = 200, seed: int = 0, col: str = "success_rate",
                    level: float = 0.95) -> dict:
    """{"column", "floor", "vs_compute": SuccessFit, "vs_loss": SuccessFit} when `table.frame` has enough
    success rates, else {}."""
    import pandas as pd

    frame = getattr(table, "frame", None)
    if frame is None or col not in frame.columns:
        return {}
    s = pd.to_numeric(frame[col], errors="coerce").to_numpy(float)
    ok = np.isfinite(s)
    if ok.sum() < 4:
        return {}
    if (s[ok] > 1.0).any() and (s[ok] <= 100.0).all():
        s = s / 100.0  # a percentage column
    floor = float(getattr(table, "blind_success", None) or 0.0)
    out = {"column": col, "floor": floor}
    out["vs_compute"] = fit_success(compute[ok], s[ok], compute[ok], "compute", floor, bootstrap, seed, level=level)
    out["vs_loss"] = fit_success(loss[ok], s[ok], compute[ok], "loss", floor, bootstrap, seed, level=level)
    return out


def compute_for_success(section: dict, target: float, level: float = 0.95) -> dict:
    """Compute at which success reaches `target`, from the success-vs-compute law, with an interval."""
    f = from_dict(section["vs_compute"])
    c = float(f.inverse(target))
    out = {"target_success": target, "flops": c if np.isfinite(c) else None, "ceiling": f.params["ceiling"], "ci": []}
    if f.samples:
        s = np.asarray(f.samples, float)
        cs = f.inverse(target, {k: s[:, i] for i, k in enumerate(NAMES)})
        reach = np.isfinite(cs)
        out["reached_in"] = float(reach.mean())  # share of resamples whose law reaches the target at all
        cs = np.where(reach, cs, np.inf)  # a law that never gets there needs unbounded compute: an open end
        q = [50 * (1 - level), 50 * (1 + level)]
        out["ci"] = [float(v) for v in np.percentile(cs, q, method="inverted_cdf")]  # no inf - inf interpolation
    return out
