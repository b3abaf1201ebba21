"""Figures of a fit. Each function takes `ax=None` (a new figure when None) and returns the Axes.

Figures are built on `matplotlib.figure.Figure` directly (the Agg canvas), never through pyplot's
global state, so nothing here opens a window or calls `plt.show`.
"""

from __future__ import annotations

import numpy as np

from analysis.allocation import allocation, fps_model
from analysis.forms import FORMS


def _axes(ax, size=(5.5, 4.0)):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained").add_subplot()


def _blind(table, ax):
    """The input-free baseline's loss as a horizontal reference line, when the table has one."""
    if getattr(table, "blind_loss", None) is not None:
        ax.axhline(table.blind_loss, color="grey", ls="--", lw=1, label=f"blind baseline ({table.blind_loss:.3g})")


def _predict(fit, cols):
    return FORMS[fit.form].predict(fit.params, cols)


def _groups(v: np.ndarray, max_groups: int = 6) -> np.ndarray:
    """Group labels: distinct values when few, else log-spaced quantile bins."""
    u = np.unique(v)
    if u.size <= max_groups:
        return np.searchsorted(u, v)
    edges = np.quantile(np.log(v), np.linspace(0, 1, max_groups + 1)[1:-1])
    return np.searchsorted(edges, np.log(v))


def loss_vs_compute(table, fit=None, ax=None):
    """Every run's loss against its compute, coloured by N, with the fitted compute-optimal frontier."""
    ax = _axes(ax)
    C = table.compute
    sc = ax.scatter(C, table.loss, c=np.log10(table.cols["N"]) if "N" in table.cols else None, s=14, cmap="viridis")
    if "N" in table.cols:
        ax.figure.colorbar(sc, ax=ax, label="log10 N (parameters)")
    if fit is not None and fit.exponents.get("a") is not None:
        cc = np.logspace(np.log10(C.min()), np.log10(C.max()) + 0.5, 100)
        n, d = allocation(fit.form, fit.params, cc, fit.k, fps_model(fit.observed))
        _solid_inside(ax, cc, _predict(fit, {"N": n, "D": d, "U": d}), inside_runs(fit.observed, n, d, cc),
                      "k", "fitted frontier (N_opt, D_opt)")
    _blind(table, ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="loss", title="Loss against compute")
    return ax


def inside_runs(observed: dict | None, n, d, c) -> np.ndarray:
    """Where (N, D, C) lie inside the fitted runs' range on every axis (all of it when the fit has no record)."""
    obs = observed or {}
    ok = np.ones(np.shape(c), bool)
    for v, lo, hi in ((n, "n_min", "n_max"), (d, "d_min", "d_max"), (c, "flops_min", "flops_max")):
        if obs.get(hi) is not None:
            ok &= (np.asarray(v) <= obs[hi] * 1.01) & (np.asarray(v) >= obs.get(lo, 0.0) / 1.01)
    return ok


def _solid_inside(ax, x, y, inside, color, label, lw=1.5):
    """A fitted curve drawn solid where it is measured (inside the runs), dashed where it extrapolates."""
    x, y, inside = np.asarray(x), np.asarray(y), np.asarray(inside, bool)
    solid = np.where(inside, y, np.nan)
    out = ~inside
    # The dashed part takes one point more at each end, so the two parts join up.
    dashed = np.where(out | np.r_[out[1:], False] | np.r_[False, out[:-1]], y, np.nan)
    ax.plot(x, solid, color=color, ls="-", lw=lw, label=f"{label} (solid: inside the runs)" if inside.any() else None)
    if (~inside).any():
        ax.plot(x, dashed, color=color, ls="--", lw=lw * 0.8,
                label=f"{label}, extrapolated" if not inside.any() else "extrapolated (dashed)")


def _loss_vs(table, fit, x: str, by: str, ax):
    ax = _axes(ax)
    xv, bv, L = table.cols[x], table.cols[by], table.loss
    labels = _groups(bv)
    cmap = __import__("matplotlib").colormaps["plasma"]
    for j, g in enumerate(np.unique(labels)):
        m = labels == g
        col = cmap(j / max(1, len(np.unique(labels)) - 1) * 0.85)
        ref = float(np.exp(np.median(np.log(bv[m]))))
        ax.scatter(xv[m], L[m], s=14, color=col, label=f"{by} ~ {ref:.2g}")
        if fit is not None:
            grid = np.logspace(np.log10(xv.min()), np.log10(xv.max()), 60)
            cols = {x: grid, by: np.full_like(grid, ref)}
            cols["U"] = table.cols["U"][m].max() * np.ones_like(grid) if "U" in table.cols else cols.get("D")
            ax.plot(grid, _predict(fit, cols), color=col, lw=1)
    _blind(table, ax)
    ax.set(xscale="log", yscale="log", xlabel=f"{x} ({'parameters' if x == 'N' else 'samples'})", ylabel="loss",
           title=f"Loss against {x}, per {by}")
    ax.legend(fontsize=7)
    return ax


def loss_vs_n(table, fit=None, ax=None):
    """Loss against N, one colour per D (or D bin), with the fitted curve at that D."""
    return _loss_vs(table, fit, "N", "D", ax)


def loss_vs_d(table, fit=None, ax=None):
    """Loss against D, one colour per N (or N bin), with the fitted curve at that N."""
    return _loss_vs(table, fit, "D", "N", ax)


def isoflops(app2, ax=None):
    """IsoFLOP curves (Approach 2): losses per budget against N, the fitted parabolas and their minima."""
    ax = _axes(ax)
    cmap = __import__("matplotlib").colormaps["viridis"]
    for j, (c, n, y, p, *win) in enumerate(app2.curves):
        col = cmap(j / max(1, len(app2.curves) - 1) * 0.9)
        ax.scatter(n, y, s=14, color=col, label=f"{c:.2g} FLOPs")
        lo, hi = win[0] if win else (np.log(n.min()), np.log(n.max()))
        xs = np.linspace(lo, hi, 60)  # the parabola only where it was fitted: the window about the minimum
        ax.plot(np.exp(xs), np.polyval(p, xs), color=col, lw=1)
    if app2.n_opt.size:
        ax.scatter(app2.n_opt, app2.loss, marker="*", s=80, color="k", zorder=5, label="minimum")
    ax.set(xscale="log", xlabel="N (parameters)", ylabel="loss", title="IsoFLOP curves (Approach 2)")
    if app2.curves:
        ax.legend(fontsize=7, ncol=2 if len(app2.curves) < 12 else 3)
    return ax


def optimal_vs_compute(fit, flops_range, app_points=(), ax=None):
    """N_opt and D_opt against C from the fit, with 95% bootstrap bands, and Approach 1/2 points."""
    ax = _axes(ax)
    cc = np.logspace(np.log10(flops_range[0]), np.log10(flops_range[1]), 80)
    fps = fps_model(fit.observed)
    n, d = allocation(fit.form, fit.params, cc, fit.k, fps)
    inside = inside_runs(fit.observed, n, d, cc)
    _solid_inside(ax, cc, n, inside, "C0", f"N_opt (a = {fit.exponents['a']:.3f})")
    _solid_inside(ax, cc, d, inside, "C1", f"D_opt (b = {fit.exponents['b']:.3f})")
    boot = fit.bootstrap.params() if fit.bootstrap is not None else None
    if boot is not None:
        p = {k: v[:, None] for k, v in boot.items()}  # (B, 1) against cc (80,)
        with np.errstate(all="ignore"):
            ns, ds = allocation(fit.form, p, cc[None, :], fit.k, fps)
        for v, col in ((ns, "C0"), (ds, "C1")):
            lo, hi = np.nanpercentile(v, [2.5, 97.5], axis=0)
            ax.fill_between(cc, lo, hi, color=col, alpha=0.2, lw=0)
    for app, marker in app_points:
        if app.flops.size:
            ax.scatter(app.flops, app.n_opt, marker=marker, color="C0", s=20, label=f"Approach {app.approach} N_opt")
            ax.scatter(app.flops, app.d_opt, marker=marker, color="C1", s=20, label=f"Approach {app.approach} D_opt")
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="parameters / samples",
           title="Compute-optimal allocation (95% bootstrap bands)")
    ax.legend(fontsize=7)
    return ax


def observed_vs_predicted(table, fit, ax=None):
    """Observed loss against the fit's prediction, with the y = x line."""
    ax = _axes(ax, (4.5, 4.0))
    pred = _predict(fit, table.cols)
    ax.scatter(pred, table.loss, s=12)
    lo, hi = min(pred.min(), table.loss.min()), max(pred.max(), table.loss.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xlabel="predicted loss", ylabel="observed loss", title="Observed against predicted")
    return ax


def residuals(table, fit, ax=None):
    """Log residuals log(L_hat / L) against compute; the Huber delta (1e-3) marked."""
    ax = _axes(ax)
    r = np.log(_predict(fit, table.cols) / table.loss)
    ax.scatter(table.compute, r, s=12)
    ax.axhline(0, color="k", lw=1)
    for s in (-1e-3, 1e-3):
        ax.axhline(s, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="compute C (FLOPs)", ylabel="log(predicted / observed)", title="Residuals")
    return ax


def success(table, fit, x: str = "compute", ax=None):
    """Success rate against compute (or loss): runs, the fitted logistic law and its 95% bootstrap band."""
    from analysis.success import NAMES

    ax = _axes(ax)
    sec = fit.success
    sf = getattr(sec, f"vs_{x}")
    col = sec.column
    s = np.asarray(table.frame[col], float) if table.frame is not None and col in table.frame.columns else None
    v = table.compute if x == "compute" else table.loss
    if s is not None:
        if np.nanmax(s) > 1.0:
            s = s / 100.0
        ok = np.isfinite(s)
        ax.scatter(v[ok], s[ok], s=14, color="C0", label="runs")
    lo, hi = v.min(), v.max()
    grid = np.logspace(np.log10(lo), np.log10(hi) + (1.0 if x == "compute" else 0.0), 100) if x == "compute" \
        else np.linspace(lo - 0.1 * (hi - lo), hi, 100)
    ax.plot(grid, sf.predict(grid), "k-", lw=1.5, label="logistic law")
    if sf.samples:
        smp = np.asarray(sf.samples, float)
        band = sf.predict(grid[None, :], {k: smp[:, i, None] for i, k in enumerate(NAMES)})
        b_lo, b_hi = np.percentile(band, [2.5, 97.5], axis=0)
        ax.fill_between(grid, b_lo, b_hi, color="k", alpha=0.15, lw=0, label="95% bootstrap band")
    if sf.floor > 0:
        ax.axhline(sf.floor, color="grey", ls="--", lw=1, label=f"blind baseline ({sf.floor:.2g})")
    ax.set(xscale="log" if x == "compute" else "linear", ylim=(-0.02, 1.02), ylabel="success rate",
           xlabel="compute C (FLOPs)" if x == "compute" else "validation loss",
           title=f"Success rate against {x}")
    ax.legend(fontsize=7)
    return ax


def families_vs(tables: dict, fits: dict, x: str = "N", ax=None):
    """Loss against N at each family's largest D (``x = "N"``), or against D at its largest N (``"D"``):
    one colour per family, its runs there, its own law at that D (or N), its blind baseline dotted."""
    ax = _axes(ax)
    by = "D" if x == "N" else "N"
    exponent = {"N": "alpha", "D": "beta"}[x]
    for j, (name, table) in enumerate(tables.items()):
        col = f"C{j}"
        at = float(table.cols[by].max())
        m = np.isclose(table.cols[by], at, rtol=1e-6)
        ax.scatter(table.cols[x][m], table.loss[m], s=18, color=col, label=f"{name}: runs at {by} = {at:.3g}")
        fit = fits.get(name)
        if fit is not None:
            xv = table.cols[x]
            grid = np.logspace(np.log10(xv.min()), np.log10(xv.max()), 60)
            cols = {x: grid, by: np.full_like(grid, at)}
            cols["U"] = cols["D"]
            e = fit.params.get(exponent)
            ax.plot(grid, _predict(fit, cols), color=col, lw=1.2,
                    label=f"{name}: its law" + (f" ({exponent} = {e:.3g})" if e is not None else ""))
        if getattr(table, "blind_loss", None) is not None:
            ax.axhline(table.blind_loss, color=col, ls=":", lw=1,
                       label=f"{name}: blind baseline ({table.blind_loss:.3g})")
    ax.set(xscale="log", yscale="log", xlabel=f"{x} ({'parameters' if x == 'N' else 'samples'})", ylabel="loss",
           title=f"Loss against {x} at the largest {by}, per family")
    ax.legend(fontsize=7)
    return ax


def families_vs_compute(tables: dict, ax=None):
    """Every run's loss against its compute, one colour per family."""
    ax = _axes(ax)
    for j, (name, table) in enumerate(tables.items()):
        ax.scatter(table.compute, table.loss, s=14, color=f"C{j}", label=name)
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="loss",
           title="Loss against compute, per family")
    ax.legend(fontsize=8)
    return ax
