"""`fit(table) -> FitResult`: the whole Approach 3 analysis of one results table.

Grid fit (`analysis.fitting`), bootstrap intervals (`analysis.bootstrap`) made honest at the edges
of each parameter's domain (`analysis.bounds`), backtest (`analysis.backtest`) and the
compute-optimal choice at the table's largest compute (`analysis.allocation`), gathered into one
`FitResult` with the warnings a reader needs. The form owns its math (`analysis.forms.Form`): no
code here looks at a form's name.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis.backtest import backtest as run_backtest
from analysis.bootstrap import bootstrap_fits, identification_warnings, percentile_ci
from analysis.bounds import edges, honest_intervals
from analysis.errors import BadInput
from analysis.fitting import DELTA, fit_grid
from analysis.forms import EXPONENT_CAP, get_form, log_columns
from analysis.result import FitResult
from analysis.success import success_section
from analysis.table import Table, load_table

NOT_CONVERGED_WARN = 0.03
"""Share of bootstrap refits still moving at their iteration cap above which the fit warns."""


def fit(table, form: str = "chinchilla", *, n_col: str = "n_params", d_col: str = "n_samples",
        loss_col: str = "val_loss", c_col: str | None = None, u_col: str | None = None, bootstrap: int = 1000,
        holdout_frac: float = 0.2, seed: int = 0, grid: np.ndarray | None = None,
        all_states: bool = False, exclude_col: str | None = None, delta: float = DELTA,
        asymmetry: float = 0.5, grid_frac: float = 0.05, success_col: str | None = "success_rate") -> FitResult:
    """Fit a scaling law to a results table.

    Args:
        table: DataFrame, CSV / Parquet path, or an already checked `analysis.table.Table`.
        form: law form (see `analysis.forms.FORMS`).
        n_col, d_col, loss_col, c_col, u_col: columns for parameters, samples, loss, FLOPs, unique samples.
        bootstrap: resamples for the intervals (0 turns them off).
        holdout_frac: fraction of the largest-compute runs held out in the backtest (0 turns it off).
        seed: bootstrap seed.
        grid: start grid in fit space (default: the form's; Chinchilla's 4,500 points).
        all_states: keep runs whose state is not completed.
        exclude_col: a column flagging rows to leave out (true / 1 / yes), e.g. an outlier flag.
        delta: Huber delta on log residuals (Chinchilla: 1e-3).
        asymmetry: 0.5 symmetric; above 0.5 the fit follows the lower envelope of the runs
            (see `analysis.fitting.Objective`).
        grid_frac: share of bootstrap resamples also refitted from random starts of the whole grid.
        success_col: column of closed-loop success rates; when it has 4 or more values, success is
            fitted against compute and against loss (`analysis.success`). None turns it off.

    Raises:
        BadInput: the table cannot support the fit (see `analysis.table.load_table`).
    """
    f = get_form(form)
    if bootstrap < 0 or not 0 <= holdout_frac < 1:
        raise BadInput(f"--bootstrap {bootstrap} / --holdout-frac {holdout_frac}: need bootstrap >= 0 and 0 <= holdout-frac < 1")
    if not (np.isfinite(delta) and delta > 0):
        raise BadInput(f"--huber-delta {delta}: need a positive number (Chinchilla: 1e-3)")
    if not 0 < asymmetry < 1:
        raise BadInput(f"--asymmetry {asymmetry}: need a number strictly between 0 and 1 (0.5: symmetric)")
    tbl = table if isinstance(table, Table) else load_table(
        table, need=f.columns, n_col=n_col, d_col=d_col, loss_col=loss_col, c_col=c_col, u_col=u_col,
        n_params=len(f.params), all_states=all_states, exclude_col=exclude_col)
    cols = {q: tbl.cols[q] for q in f.columns}
    logs, y = log_columns(cols), np.log(tbl.loss)
    pf = fit_grid(f, logs, y, grid, delta=delta, asymmetry=asymmetry)
    params = {k: float(v) for k, v in f.to_natural(pf.theta).items()}
    warnings: list[str] = []
    exponents = f.exponents(params)
    convergence = {"converged": pf.converged, "iterations": pf.n_iter, "grad_max": pf.grad_max}
    if not pf.converged:
        warnings.append(f"the fit did not converge: still moving after {pf.n_iter} iterations of its final "
                        f"polish (largest |gradient| {pf.grad_max:.2g}); treat every number as provisional")
    at_edge = edges(f, params, float(tbl.loss.min()))

    ci, boot = {}, {}
    if bootstrap > 0:
        bs = bootstrap_fits(f, logs, y, pf.theta, bootstrap, seed, seeds=pf.basins, grid=grid,
                            grid_frac=grid_frac, delta=delta, asymmetry=asymmetry)
        ok = np.isfinite(bs.f) & np.isfinite(bs.x).all(axis=1)
        if ok.mean() < 0.95:
            warnings.append(f"{int((~ok).sum())} of {bootstrap} bootstrap refits failed; intervals use the rest")
        nat = f.to_natural(bs.x[ok])
        names = list(f.params)
        samples = np.column_stack([nat[k] for k in names])
        lo, hi = percentile_ci(samples)
        ci = {k: [float(a), float(b)] for k, a, b in zip(names, lo, hi)}
        ci, edge_warn = honest_intervals(f, params, ci, at_edge, int(ok.sum()))
        ex = f.exponents({k: samples[:, i] for i, k in enumerate(names)})
        for k, v in ex.items():
            if v is not None:
                a, b = percentile_ci(np.asarray(v, float)[:, None])
                ci[k] = [float(a[0]), float(b[0])]
        n_nc, n_grid, n_other = bs.n_not_converged, int(bs.grid_refit.sum()), int(bs.other_basin[ok].sum())
        boot = {"n": int(bootstrap), "seed": int(seed), "names": names, "samples": samples.tolist(),
                "not_converged": n_nc, "grid_refits": n_grid, "other_basin": n_other, "starts": bs.n_seeds}
        convergence["bootstrap_not_converged"] = n_nc
        if n_nc > NOT_CONVERGED_WARN * bootstrap:
            warnings.append(f"{n_nc} of {bootstrap} bootstrap refits ({100 * n_nc / bootstrap:.0f}%) did not converge "
                            "(still moving at their iteration cap); the intervals are rougher than they look")
        if n_other:
            warnings.append(f"{n_other} of {int(ok.sum())} bootstrap refits ended in another basin of the objective "
                            "than the full-data fit: the law has several competing optima on these runs, and the "
                            "intervals include them")
        warnings += edge_warn
        warnings += identification_warnings({k: ci[k] for k in names if k not in at_edge}, params,
                                            dict(zip(f.params, f.log_params)))
        if exponents.get("a") is not None:
            warnings += identification_warnings({"a": ci["a"]}, exponents, {}, max_rel=0.2)
    else:
        for name, side in at_edge.items():
            warnings.append(f"{name} = {params[name]:.3g} is at the {side} bound of its domain: the runs do not "
                            "determine it")
    for name, kind in zip(f.params, f.kinds):
        if kind == "exponent" and not params[name] < EXPONENT_CAP and name not in at_edge:
            warnings.append(f"{name} = {params[name]:.3g} is outside (0, {EXPONENT_CAP:g}): the law does not "
                            "describe these runs")

    bt = run_backtest(f, cols, tbl.loss, tbl.compute, holdout_frac, grid, delta=delta, asymmetry=asymmetry) \
        if holdout_frac > 0 else {"holdout": 0, "are_mean": None, "are_max": None}
    if bt.get("skipped"):
        warnings.append(f"backtest skipped: {bt['skipped']}")
    elif bt.get("are_max") is not None and bt["are_max"] > 0.05:
        warnings.append(f"backtest: predicting the top {bt['holdout']} runs by compute misses by up to "
                        f"{100 * bt['are_max']:.1f}%; extrapolate with care")
    notes = list(tbl.notes)
    if not tbl.k_measured and "C" not in tbl.cols:
        notes.append("no FLOPs column: compute taken as 6 N D")
    if delta != DELTA or asymmetry != 0.5:
        notes.append(f"robust loss: Huber delta {delta:g} on log residuals"
                     + (f", asymmetry {asymmetry:g} (lower envelope)" if asymmetry != 0.5 else ""))
    res = FitResult(form=f.name, params=params, ci=ci, exponents=exponents, huber=pf.huber, n_points=tbl.n,
                    backtest=bt, warnings=warnings, notes=notes, columns=dict(tbl.names), k=tbl.k,
                    k_measured=tbl.k_measured, bootstrap=boot, source=tbl.source, at_bound=at_edge,
                    convergence=convergence, observed=tbl.observed(), training=tbl.training())
    success = success_section(tbl, tbl.compute, tbl.loss, min(bootstrap, 200), seed, success_col) if success_col else {}
    for part in ("vs_compute", "vs_loss"):
        for w in (success.get(part) or {}).get("warnings", []):
            warnings.append(f"success {part.replace('_', ' ')}: {w}")
    if success:
        res = dataclasses.replace(res, success=success)
    if f.has_allocation:
        from analysis.allocation import optimal

        res = dataclasses.replace(res, optimum=optimal(res, float(tbl.compute.max())))
    return res
