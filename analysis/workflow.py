"""`fit(table) -> FitResult`: the whole Approach 3 analysis of one results table.

Grid fit (`analysis.fitting`), bootstrap intervals (`analysis.bootstrap`), backtest
(`analysis.backtest`) and the compute-optimal choice at the table's largest compute
(`analysis.allocation`), gathered into one `FitResult` with the warnings a reader needs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis.backtest import backtest as run_backtest
from analysis.bootstrap import bootstrap_fits, identification_warnings, percentile_ci
from analysis.fitting import fit_grid
from analysis.forms import get_form, log_columns
from analysis.result import FitResult
from analysis.table import Table, load_table


def fit(table, form: str = "chinchilla", *, n_col: str = "n_params", d_col: str = "n_samples",
        loss_col: str = "val_loss", c_col: str | None = None, u_col: str | None = None, bootstrap: int = 1000,
        holdout_frac: float = 0.2, seed: int = 0, grid: np.ndarray | None = None,
        all_states: bool = False) -> FitResult:
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

    Raises:
        BadInput: the table cannot support the fit (see `analysis.table.load_table`).
    """
    f = get_form(form)
    if bootstrap < 0 or not 0 <= holdout_frac < 1:
        from analysis.errors import BadInput

        raise BadInput(f"--bootstrap {bootstrap} / --holdout-frac {holdout_frac}: need bootstrap >= 0 and 0 <= holdout-frac < 1")
    tbl = table if isinstance(table, Table) else load_table(
        table, need=f.columns, n_col=n_col, d_col=d_col, loss_col=loss_col, c_col=c_col, u_col=u_col,
        n_params=len(f.params), all_states=all_states)
    cols = {q: tbl.cols[q] for q in f.columns}
    logs, y = log_columns(cols), np.log(tbl.loss)
    pf = fit_grid(f, logs, y, grid)
    params = {k: float(v) for k, v in f.to_natural(pf.theta).items()}
    warnings: list[str] = []
    exponents = _exponents(f.name, params)

    ci, boot = {}, {}
    if bootstrap > 0:
        xb, fb = bootstrap_fits(f, logs, y, pf.theta, bootstrap, seed)
        ok = np.isfinite(fb) & np.isfinite(xb).all(axis=1)
        if ok.mean() < 0.95:
            warnings.append(f"{int((~ok).sum())} of {bootstrap} bootstrap refits failed; intervals use the rest")
        nat = f.to_natural(xb[ok])
        names = list(f.params)
        samples = np.column_stack([nat[k] for k in names])
        lo, hi = percentile_ci(samples)
        ci = {k: [float(a), float(b)] for k, a, b in zip(names, lo, hi)}
        ex = _exponents(f.name, {k: samples[:, i] for i, k in enumerate(names)})
        for k, v in ex.items():
            if v is not None:
                a, b = percentile_ci(np.asarray(v, float)[:, None])
                ci[k] = [float(a[0]), float(b[0])]
        boot = {"n": int(bootstrap), "seed": int(seed), "names": names, "samples": samples.tolist()}
        warnings += identification_warnings({k: ci[k] for k in names}, params, dict(zip(f.params, f.log_params)))
        if exponents.get("a") is not None:
            warnings += identification_warnings({"a": ci["a"]}, exponents, {}, max_rel=0.2)
    for k in ("alpha", "beta", "alpha_N", "alpha_D"):
        if k in params and not 0.0 < params[k] < 3.0:
            warnings.append(f"{k} = {params[k]:.3g} is outside (0, 3): the law does not describe these runs")

    bt = run_backtest(f, cols, tbl.loss, tbl.compute, holdout_frac, grid) if holdout_frac > 0 else \
        {"holdout": 0, "are_mean": None, "are_max": None}
    if bt.get("skipped"):
        warnings.append(f"backtest skipped: {bt['skipped']}")
    elif bt.get("are_max") is not None and bt["are_max"] > 0.05:
        warnings.append(f"backtest: predicting the top {bt['holdout']} runs by compute misses by up to "
                        f"{100 * bt['are_max']:.1f}%; extrapolate with care")
    notes = list(tbl.notes)
    if not tbl.k_measured and "C" not in tbl.cols:
        notes.append("no FLOPs column: compute taken as 6 N D")
    res = FitResult(form=f.name, params=params, ci=ci, exponents=exponents, huber=pf.huber, n_points=tbl.n,
                    backtest=bt, warnings=warnings, notes=notes, columns=dict(tbl.names), k=tbl.k,
                    k_measured=tbl.k_measured, bootstrap=boot, source=tbl.source)
    if exponents.get("a") is not None:
        from analysis.allocation import optimal

        res = dataclasses.replace(res, optimum=optimal(res, float(tbl.compute.max())))
    return res


def _exponents(form: str, p: dict) -> dict:
    """a, b of N_opt ~ C^a, D_opt ~ C^b (None for one-variable forms); works on arrays of samples."""
    if form in ("chinchilla", "data_constrained"):
        a = p["beta"] / (p["alpha"] + p["beta"])
        return {"a": _num(a), "b": _num(1 - a)}
    if form == "kaplan":
        a = p["alpha_D"] / (p["alpha_N"] + p["alpha_D"])
        return {"a": _num(a), "b": _num(1 - a)}
    return {"a": None, "b": None}


def _num(v):
    return float(v) if np.ndim(v) == 0 else np.asarray(v, float)
