"""`fit(table) -> FitResult`: the whole Approach 3 analysis of one results table.

Grid fit (`analysis.fitting`), bootstrap intervals (`analysis.bootstrap`) made honest at the edges
of each parameter's domain (`analysis.bounds`), backtest (`analysis.backtest`) and the
compute-optimal choice at the table's largest compute (`analysis.allocation`), gathered into one
`FitResult` with the warnings a reader needs. The form owns its math (`analysis.forms.Form`): no
code here looks at a form's name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.backtest import backtest as run_backtest
from analysis.bootstrap import bootstrap_fits, identification_warnings, percentile_ci
from analysis.bounds import FLOOR_EDGE, edges, honest_intervals
from analysis.fitting import DELTA, fit_grid
from analysis.forms import EXPONENT_CAP, Form, get_form, log_columns, restrict
from analysis.result import FitResult
from analysis.success import success_section
from analysis.table import Table, load_table
from vla_core.errors import BadInput

NOT_CONVERGED_WARN = 0.03
"""Share of bootstrap refits still moving at their iteration cap above which the fit warns."""
LOSS_FLOOR_COLUMN = "loss_floor"
"""Results-table column of a known lower bound on each run's loss (set by the data generator)."""
TIE = 0.001
"""Backtest errors (mean |relative error|) closer than this (0.1 percentage point) are a tie in `fit_pair`."""


def _domain_text(kind: str) -> str:
    return {"floor": ">= 0", "exponent": f"in (0, {EXPONENT_CAP:g})"}.get(kind, "> 0")


def fixed_values(form: Form, fix) -> dict[str, float]:
    """Validated {name: value} of the parameters to hold, from a mapping or "NAME=VALUE" strings.

    Raises:
        BadInput (one line naming the form's parameters): an unknown name, a value that is not a
            number or lies outside the parameter's domain, every parameter held.
    """
    if not fix:
        return {}
    names = ", ".join(form.params)

    def bad(item, why):
        raise BadInput(f"--fix {item}: {why}; the {form.name} law's parameters are {names}")

    items = fix.items() if isinstance(fix, Mapping) else None
    if items is None:
        if isinstance(fix, str) or not isinstance(fix, Iterable):
            bad(repr(fix), "expected NAME=VALUE pairs, e.g. E=1.6")
        pairs = []
        for item in fix:
            if not isinstance(item, str) or "=" not in item:
                bad(repr(item), "expected NAME=VALUE, e.g. E=1.6")
            k, _, v = item.partition("=")
            pairs.append((k.strip(), v.strip()))
        items = pairs
    kinds = dict(zip(form.params, form.kinds))
    out = {}
    for name, value in items:
        shown = f"{name}={value}"
        if name not in kinds:
            bad(shown, f"no parameter {name!r}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            bad(shown, f"{value!r} is not a number")
        kind = kinds[name]
        ok = math.isfinite(v) and (v >= 0 if kind == "floor" else 0 < v < EXPONENT_CAP if kind == "exponent" else v > 0)
        if not ok:
            bad(shown, f"{name} must be a finite number {_domain_text(kind)}")
        out[name] = v
    if len(out) == len(form.params):
        bad(" ".join(f"{k}={v:g}" for k, v in out.items()), "every parameter is held; leave at least one to fit")
    return out


def _table(table, f: Form, n_params: int, **cols) -> Table:
    return table if isinstance(table, Table) else load_table(table, need=f.columns, n_params=n_params, **cols)


def known_loss_floor(tbl: Table, loss_floor: float | None = None) -> tuple[float | None, str]:
    """The known lower bound on the loss, and where it came from.

    `loss_floor` when given; else the largest value of the table's `loss_floor` column over the
    fitted runs (the bound that holds for all of them); else (None, "").
    """
    if loss_floor is not None:
        v = float(loss_floor)
        if not (math.isfinite(v) and v >= 0):
            raise BadInput(f"--loss-floor {loss_floor}: need a finite number >= 0 (a lower bound on the loss)")
        return v, "given"
    frame = tbl.frame
    if frame is None or LOSS_FLOOR_COLUMN not in frame.columns:
        return None, ""
    v = pd.to_numeric(frame[LOSS_FLOOR_COLUMN], errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None, ""
    return float(v.max()), f"the table's {LOSS_FLOOR_COLUMN} column"


def fit(table, form: str = "chinchilla", *, n_col: str = "n_params", d_col: str = "n_samples",
        loss_col: str = "val_loss", c_col: str | None = None, u_col: str | None = None, bootstrap: int = 1000,
        holdout_frac: float = 0.2, seed: int = 0, grid: np.ndarray | None = None,
        all_states: bool = False, exclude_col: str | None = None, delta: float = DELTA,
        asymmetry: float = 0.5, grid_frac: float = 0.05, success_col: str | None = "success_rate",
        fix=None, e_min: float | None = None, loss_floor: float | None = None, compare: bool = True) -> FitResult:
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
        fix: parameters held at a value instead of fitted, {name: value} or "NAME=VALUE" strings
            (`fixed_values`); the bootstrap, the backtest and the allocation hold them too, and
            their intervals are [value, value].
        e_min: lower bound of the floor parameter (E): fitted as E = e_min + exp(e), and "at its
            bound" when it ends within 1e-3 of the smallest loss above e_min.
        loss_floor: a known lower bound on the loss (default: the table's `loss_floor` column, if
            any); the fit warns when its floor lies below it.
        compare: also run Approaches 1 and 2 on the same runs (laws with an allocation, tables with N
            and D) and record whether they agree with this fit's a (`FitResult.approaches`).

    Raises:
        BadInput: the table cannot support the fit (see `analysis.table.load_table`), or `fix`,
            `e_min` or `loss_floor` is unusable.
    """
    base = get_form(form)
    fixed = fixed_values(base, fix)
    fl = base.floor
    if e_min is not None:
        e_min = float(e_min)
        if fl is None:
            raise BadInput(f"--e-min {e_min:g}: the {base.name} law has no floor parameter to bound; "
                           f"its parameters are {', '.join(base.params)}")
        if not (math.isfinite(e_min) and e_min >= 0):
            raise BadInput(f"--e-min {e_min:g}: need a finite number >= 0")
        if fl in fixed and fixed[fl] < e_min:
            raise BadInput(f"--fix {fl}={fixed[fl]:g} lies below --e-min {e_min:g}")
    f = restrict(base, fixed, e_min)
    if bootstrap < 0 or not 0 <= holdout_frac < 1:
        raise BadInput(f"--bootstrap {bootstrap} / --holdout-frac {holdout_frac}: need bootstrap >= 0 and 0 <= holdout-frac < 1")
    if not (np.isfinite(delta) and delta > 0):
        raise BadInput(f"--huber-delta {delta}: need a positive number (Chinchilla: 1e-3)")
    if not 0 < asymmetry < 1:
        raise BadInput(f"--asymmetry {asymmetry}: need a number strictly between 0 and 1 (0.5: symmetric)")
    tbl = _table(table, f, len(f.params), n_col=n_col, d_col=d_col, loss_col=loss_col, c_col=c_col, u_col=u_col,
                 all_states=all_states, exclude_col=exclude_col)
    min_loss = float(tbl.loss.min())
    bounded = f.floor if e_min is not None else None  # the floor, when free and bounded by e_min
    if bounded and not e_min < min_loss:
        raise BadInput(f"--e-min {e_min:g}: not below the smallest observed loss ({min_loss:.4g}); "
                       "a floor there leaves the law nothing to fit")
    floor_value, floor_source = known_loss_floor(tbl, loss_floor)
    cols = {q: tbl.cols[q] for q in f.columns}
    logs, y = log_columns(cols), np.log(tbl.loss)
    grid = None if grid is None else f.reduce_grid(grid)
    pf = fit_grid(f, logs, y, grid, delta=delta, asymmetry=asymmetry)
    params = {k: float(v) for k, v in f.to_natural(pf.theta).items()}
    warnings: list[str] = []
    exponents = f.exponents(params)
    convergence = {"converged": pf.converged, "iterations": pf.n_iter, "grad_max": pf.grad_max}
    if not pf.converged:
        warnings.append(f"the fit did not converge: still moving after {pf.n_iter} iterations of its final "
                        f"polish (largest |gradient| {pf.grad_max:.2g}); treat every number as provisional")
    at_edge = edges(f, params, min_loss)  # free parameters only: a held one is a choice, not a finding
    at_e_min = False
    if bounded:
        at_edge.pop(bounded, None)
        at_e_min = params[bounded] - e_min < FLOOR_EDGE * min_loss

    ci, boot = {}, {}
    if bootstrap > 0:
        bs = bootstrap_fits(f, logs, y, pf.theta, bootstrap, seed, seeds=pf.basins, grid=grid,
                            grid_frac=grid_frac, delta=delta, asymmetry=asymmetry)
        ok = np.isfinite(bs.f) & np.isfinite(bs.x).all(axis=1)
        if ok.mean() < 0.95:
            warnings.append(f"{int((~ok).sum())} of {bootstrap} bootstrap refits failed; intervals use the rest")
        nat = f.to_natural(bs.x[ok])
        names = list(base.params)
        samples = np.column_stack([nat[k] for k in names])
        lo, hi = percentile_ci(samples)
        ci = {k: [float(a), float(b)] for k, a, b in zip(names, lo, hi)}
        ci.update({k: [v, v] for k, v in fixed.items()})
        # The bounds module knows domains that start at 0; a floor bounded by e_min is judged here.
        bounded_ci = ci.pop(bounded) if at_e_min else None
        ci, edge_warn = honest_intervals(f, params, ci, at_edge, int(ok.sum()))
        if at_e_min:
            ci[bounded] = [e_min, max(bounded_ci[1], params[bounded])]
            at_edge[bounded] = "lower"
            edge_warn.insert(0, _e_min_warning(bounded, params[bounded], e_min, ci[bounded][1]))
        elif bounded and ci[bounded][0] < e_min:
            ci[bounded][0] = e_min  # a whole-domain interval starts at the bound, not at 0
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
        warnings += identification_warnings({k: ci[k] for k in f.params if k not in at_edge}, params,
                                            dict(zip(f.params, f.log_params)))
        if exponents.get("a") is not None:
            warnings += identification_warnings({"a": ci["a"]}, exponents, {}, max_rel=0.2)
    else:
        for name, side in at_edge.items():
            warnings.append(f"{name} = {params[name]:.3g} is at the {side} bound of its domain: the runs do not "
                            "determine it")
        if at_e_min:
            at_edge[bounded] = "lower"
            warnings.append(_e_min_warning(bounded, params[bounded], e_min, None))
    if fl is not None and floor_value is not None:
        if params[fl] < floor_value * (1 - 1e-9):
            held = " (held)" if fl in fixed else ""
            warnings.append(f"{fl} = {_floor_fmt(params[fl])}{held} lies below the data's known loss floor "
                            f"{floor_value:.3g} ({floor_source}): the law's floor is wrong, and it extrapolates too "
                            f"low; refit with --e-min {floor_value:.4g} or --fix {fl}={floor_value:.4g}")
    if floor_value is not None and min_loss < floor_value:
        warnings.append(f"the smallest observed loss {min_loss:.4g} lies below the known loss floor "
                        f"{floor_value:.4g} ({floor_source}): the floor or the losses are wrong")
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
    if fixed:
        notes.append("held, not fitted (in the bootstrap, backtest and allocation too): "
                     + ", ".join(f"{k} = {v:.4g}" for k, v in fixed.items()))
    if bounded:
        notes.append(f"{bounded} bounded below by e_min = {e_min:.4g} (fitted as e_min + exp(e))")
    elif e_min is not None:
        notes.append(f"--e-min {e_min:g} has no effect: {fl} is held")
    if floor_value is not None:
        notes.append(f"known loss floor {floor_value:.4g} ({floor_source})")
    res = FitResult(form=base.name, params=params, ci=ci, exponents=exponents, huber=pf.huber, n_points=tbl.n,
                    backtest=bt, warnings=warnings, notes=notes, columns=dict(tbl.names), k=tbl.k,
                    k_measured=tbl.k_measured, bootstrap=boot, source=tbl.source, at_bound=at_edge,
                    convergence=convergence, observed=tbl.observed(holdout_frac), training=tbl.training(),
                    fixed=fixed, e_min=e_min, loss_floor=floor_value)
    success = success_section(tbl, tbl.compute, tbl.loss, min(bootstrap, 200), seed, success_col) if success_col else {}
    for part in ("vs_compute", "vs_loss"):
        for w in (success.get(part) or {}).get("warnings", []):
            warnings.append(f"success {part.replace('_', ' ')}: {w}")
    if success:
        res = dataclasses.replace(res, success=success)
    if f.has_allocation:
        from analysis.allocation import optimal

        opt = optimal(res, float(tbl.compute.max()))
        res = dataclasses.replace(res, optimum=opt)
        if "N" in tbl.cols and "D" in tbl.cols and compare:
            res = _with_approaches(res, tbl, opt, min(bootstrap, 200), seed)
    return res


def _with_approaches(res: FitResult, tbl: Table, opt: dict, n_boot: int, seed: int) -> FitResult:
    """Approaches 1 and 2 on the same runs beside this fit's a: do they agree, whose assumptions hold."""
    from analysis.approaches import compare_approaches

    budget = None
    if tbl.frame is not None and "budget" in tbl.frame.columns:
        import pandas as pd

        b = pd.to_numeric(tbl.frame["budget"], errors="coerce").to_numpy(float)
        budget = b if (np.isfinite(b) & (b > 0)).all() else None
    a, ci = res.exponents.get("a"), res.ci.get("a")
    cmp = compare_approaches(tbl.cols["N"], tbl.cols["D"], tbl.loss, tbl.compute, a3=a, a3_ci=ci, budget=budget,
                             n_boot=n_boot, seed=seed, a3_extrapolation=opt["d_opt"] / float(tbl.cols["D"].max()))
    warns = [f"approaches: {w}" for w in cmp.get("warnings", [])]
    return dataclasses.replace(res, approaches=cmp, warnings=list(res.warnings) + warns)


def _floor_fmt(v: float) -> str:
    """A floor for a sentence: 0.00 for one that slid to nothing (1e-14 reads as a measurement)."""
    return f"{v:.2f}" if v < 0.005 else f"{v:.3g}"


def _e_min_warning(name: str, v: float, e_min: float, hi: float | None) -> str:
    one_sided = f"; its interval is one-sided, [{e_min:.4g}, {hi:.4g}]" if hi is not None else ""
    return (f"{name} = {v:.4g} is at its lower bound e_min = {e_min:.4g}: the runs alone would put the floor "
            f"lower, so they do not determine it{one_sided}")


class FitPair(NamedTuple):
    """A law fitted twice to one table: floor free, and floor held at the data's known loss floor."""

    free: FitResult
    """The floor fitted."""
    floored: FitResult
    """The floor held at the known loss floor."""
    verdict: str
    """One line: which of the two predicts the held-out top-compute runs better (see `fit_pair`)."""

    @property
    def better(self) -> str | None:
        """"free", "floored", "tie" (within `TIE`), or None when a backtest was skipped."""
        a, b = self.free.backtest.get("are_mean"), self.floored.backtest.get("are_mean")
        if a is None or b is None:
            return None
        return "tie" if abs(a - b) < TIE else "floored" if b < a else "free"


def fit_pair(table, form: str = "chinchilla", *, loss_floor: float | None = None, **kwargs) -> FitPair:
    """Fit `form` with its floor free and with it held at the known loss floor; say which backtests better.

    Args:
        table: as in `fit` (loaded once, both fits see the same runs).
        form: a law with a floor parameter (E).
        loss_floor: the known lower bound on the loss (default: the table's `loss_floor` column).
        kwargs: anything else `fit` takes (columns, bootstrap, holdout_frac, fix, ...); a `fix` of
            other parameters applies to both fits. Both fits record `loss_floor`, so the free one
            warns when its floor lies below it.

    Returns:
        `FitPair(free, floored, verdict)`: the verdict compares the backtests' mean |relative error|
        on the held-out top-compute runs; closer than 0.1 percentage point is a tie.

    Raises:
        BadInput: no floor parameter, no known loss floor, or what `fit` raises.
    """
    base = get_form(form)
    if base.floor is None:
        raise BadInput(f"fit_pair: the {base.name} law has no floor parameter; its parameters are "
                       f"{', '.join(base.params)}")
    cols = {k: kwargs.pop(k) for k in ("n_col", "d_col", "loss_col", "c_col", "u_col", "all_states", "exclude_col")
            if k in kwargs}
    tbl = _table(table, base, len(base.params), **cols)
    floor, _ = known_loss_floor(tbl, loss_floor)
    if floor is None:
        raise BadInput(f"{tbl.source}: no known loss floor to compare against (no {LOSS_FLOOR_COLUMN!r} column); "
                       "give one with --loss-floor")
    fix = fixed_values(base, kwargs.pop("fix", None))
    fix.pop(base.floor, None)
    free = fit(tbl, form, loss_floor=floor, fix=fix, **kwargs)
    floored = fit(tbl, form, loss_floor=floor, fix={**fix, base.floor: floor}, **kwargs)
    return FitPair(free, floored, _pair_verdict(free, floored, base.floor, floor))


def _pair_verdict(free: FitResult, floored: FitResult, name: str, floor: float) -> str:
    a, b = free.backtest.get("are_mean"), floored.backtest.get("are_mean")
    if a is None or b is None:
        why = free.backtest.get("skipped") or floored.backtest.get("skipped") or "no backtest"
        return f"no verdict on free vs floored {name}: the backtest was skipped ({why})"
    held = free.backtest.get("holdout")
    both = (f"mean |rel. error| predicting the top {held} runs by compute: {100 * b:.2f}% with {name} held at the "
            f"loss floor {floor:.4g}, {100 * a:.2f}% with {name} free ({name} = {_floor_fmt(free.params[name])})")
    if abs(a - b) < TIE:
        return f"a tie between free and floored {name} (within 0.1 percentage point): {both}"
    return f"the {'floored' if b < a else 'free'} fit backtests better: {both}"
