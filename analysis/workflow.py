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
from analysis.covariance import HUBER_METHOD, Covariance, derived_stderr, huber_covariance, natural_covariance
from analysis.fitting import DELTA, ParamFit, fit_grid
from analysis.forms import EXPONENT_CAP, Form, get_form, log_columns, restrict
from analysis.options import FitOptions, resolve
from analysis.result import Backtest, Bootstrap, Convergence, FitResult, Success
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


def _table(table, f: Form, n_params: int, o: FitOptions) -> Table:
    return table if isinstance(table, Table) else load_table(table, need=f.columns, n_params=n_params, **o.columns)


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


def fit(table, form: str | None = None, *, options: FitOptions | None = None, **overrides) -> FitResult:
    """Fit a scaling law to a results table.

    Args:
        table: DataFrame, CSV / Parquet path, or an already checked `analysis.table.Table`.
        form: law form (see `analysis.forms.FORMS`); None: the options' (default chinchilla).
        options: how to fit (`analysis.options.FitOptions`: columns, bootstrap, seed, level, holdout_frac,
            grid, all_states, exclude_col, delta, asymmetry, grid_frac, success_col, fix, e_min,
            loss_floor, compare); default `FitOptions()`.
        overrides: FitOptions fields by name, replacing the options' (e.g. ``bootstrap=0``).

    Raises:
        BadInput: the table cannot support the fit (see `analysis.table.load_table`), or `fix`,
            `e_min`, `loss_floor` or a number of the options is unusable.
    """
    o = resolve(options, form=form, **overrides)
    law = _law(o)
    tbl = _table(table, law.form, len(law.form.params), o)
    run = _run(law, tbl, o)
    warnings = list(run.warnings)
    if o.bootstrap > 0:
        ci, boot, conv_extra, more = _intervals(law, run, o)
        warnings += more
    else:
        ci, boot, conv_extra = {}, None, {}
        warnings += _edge_warnings(law, run)
    warnings += _floor_warnings(law, run)
    bt = run_backtest(law.form, run.cols, tbl.loss, tbl.compute, o.holdout_frac, run.grid, delta=o.delta,
                      asymmetry=o.asymmetry) if o.holdout_frac > 0 else Backtest(0, None, None)
    warnings += _backtest_warnings(bt)
    success = success_section(tbl, tbl.compute, tbl.loss, min(o.bootstrap, 200), o.seed, o.success_col,
                              level=o.level) if o.success_col else {}
    for part in ("vs_compute", "vs_loss"):
        warnings += [f"success {part.replace('_', ' ')}: {w}" for w in getattr(success.get(part), "warnings", [])]
    cov, stderr = _covariance(law, run, o)
    res = FitResult(form=law.base.name, params=run.params, ci=ci, exponents=run.exponents, huber=run.pf.huber,
                    n_points=tbl.n, backtest=bt, warnings=warnings, notes=_notes(law, run, o, tbl),
                    columns=dict(tbl.names), k=tbl.k, k_measured=tbl.k_measured, bootstrap=boot, source=tbl.source,
                    at_bound=run.at_edge, convergence=Convergence(**run.convergence, **conv_extra),
                    observed=tbl.observed(o.holdout_frac), training=tbl.training(),
                    success=Success(**success) if success else None, fixed=law.fixed, e_min=law.e_min,
                    loss_floor=run.floor_value, stderr=stderr, covariance=cov)
    if law.form.has_allocation:
        from analysis.allocation import optimal

        opt = optimal(res, float(tbl.compute.max()), o.level)
        res = dataclasses.replace(res, optimum=opt)
        if "N" in tbl.cols and "D" in tbl.cols and o.compare:
            res = _with_approaches(res, tbl, opt, min(o.bootstrap, 200), o.seed, o.level)
    return res


class _Law(NamedTuple):
    """The law a fit fits: the registered form, what is held, and the form the fitter sees."""

    base: Form
    """The registered form."""
    fixed: dict[str, float]
    """Held parameters."""
    form: Form
    """`base` with `fixed` held and its floor bounded by `e_min` (`analysis.forms.restrict`)."""
    e_min: float | None
    """Lower bound of the floor, when given."""


def _law(o: FitOptions) -> _Law:
    """The options' law, with its held parameters and floor bound checked (BadInput naming the flag)."""
    base = get_form(o.form)
    fixed = fixed_values(base, o.fix)
    fl, e_min = base.floor, o.e_min
    if e_min is not None:
        e_min = float(e_min)
        if fl is None:
            raise BadInput(f"--e-min {e_min:g}: the {base.name} law has no floor parameter to bound; "
                           f"its parameters are {', '.join(base.params)}")
        if not (math.isfinite(e_min) and e_min >= 0):
            raise BadInput(f"--e-min {e_min:g}: need a finite number >= 0")
        if fl in fixed and fixed[fl] < e_min:
            raise BadInput(f"--fix {fl}={fixed[fl]:g} lies below --e-min {e_min:g}")
    if o.bootstrap < 0 or not 0 <= o.holdout_frac < 1:
        raise BadInput(f"--bootstrap {o.bootstrap} / --holdout-frac {o.holdout_frac}: need bootstrap >= 0 and "
                       "0 <= holdout-frac < 1")
    if not (np.isfinite(o.delta) and o.delta > 0):
        raise BadInput(f"--huber-delta {o.delta}: need a positive number (Chinchilla: 1e-3)")
    if not 0 < o.asymmetry < 1:
        raise BadInput(f"--asymmetry {o.asymmetry}: need a number strictly between 0 and 1 (0.5: symmetric)")
    if not 0 < o.level < 1:
        raise BadInput(f"level {o.level}: an interval's coverage lies strictly between 0 and 1")
    return _Law(base, fixed, restrict(base, fixed, e_min), e_min)


@dataclasses.dataclass
class _Run:
    """The main fit of one table and what the later steps read off it: the form's columns, their logs and
    log L (y), the start grid in fit space, the grid fit (`pf`) and its natural parameters and exponents,
    the smallest loss, the floor when free and bounded by e_min (`bounded`), the parameters at an edge of
    their domain (`at_edge`, which the interval step extends) and whether the floor sits at e_min, the
    known loss floor and where it came from, the main fit's convergence, and its warnings so far."""

    cols: dict
    logs: dict
    y: np.ndarray
    grid: np.ndarray | None
    pf: ParamFit
    params: dict[str, float]
    exponents: dict
    min_loss: float
    bounded: str | None
    at_edge: dict[str, str]
    at_e_min: bool
    floor_value: float | None
    floor_source: str
    convergence: dict
    warnings: list[str]


def _run(law: _Law, tbl: Table, o: FitOptions) -> _Run:
    """The grid fit of the whole table, its convergence, and which parameters sit at an edge of their domain."""
    f, e_min = law.form, law.e_min
    min_loss = float(tbl.loss.min())
    bounded = f.floor if e_min is not None else None
    if bounded and not e_min < min_loss:
        raise BadInput(f"--e-min {e_min:g}: not below the smallest observed loss ({min_loss:.4g}); "
                       "a floor there leaves the law nothing to fit")
    floor_value, floor_source = known_loss_floor(tbl, o.loss_floor)
    cols = {q: tbl.cols[q] for q in f.columns}
    logs, y = log_columns(cols), np.log(tbl.loss)
    grid = None if o.grid is None else f.reduce_grid(o.grid)
    pf = fit_grid(f, logs, y, grid, delta=o.delta, asymmetry=o.asymmetry)
    params = {k: float(v) for k, v in f.to_natural(pf.theta).items()}
    warnings = []
    if not pf.converged:
        warnings.append(f"the fit did not converge: still moving after {pf.n_iter} iterations of its final "
                        f"polish (largest |gradient| {pf.grad_max:.2g}); treat every number as provisional")
    at_edge = edges(f, params, min_loss)  # free parameters only: a held one is a choice, not a finding
    at_e_min = False
    if bounded:
        at_edge.pop(bounded, None)
        at_e_min = params[bounded] - e_min < FLOOR_EDGE * min_loss
    return _Run(cols, logs, y, grid, pf, params, f.exponents(params), min_loss, bounded, at_edge, at_e_min,
                floor_value, floor_source, {"converged": pf.converged, "iterations": pf.n_iter,
                                            "grad_max": pf.grad_max}, warnings)


def _intervals(law: _Law, run: _Run, o: FitOptions) -> tuple[dict, Bootstrap, dict, list[str]]:
    """Bootstrap percentile intervals of every parameter and exponent, made honest at the domains' edges.

    Returns (ci, the Bootstrap section, convergence's bootstrap entry, warnings); marks a floor at its
    e_min bound in `run.at_edge`.
    """
    f, base, fixed, bounded, e_min = law.form, law.base, law.fixed, run.bounded, law.e_min
    params, at_edge, n_boot = run.params, run.at_edge, o.bootstrap
    bs = bootstrap_fits(f, run.logs, run.y, run.pf.theta, n_boot, o.seed, seeds=run.pf.basins, grid=run.grid,
                        grid_frac=o.grid_frac, delta=o.delta, asymmetry=o.asymmetry)
    warnings = []
    ok = np.isfinite(bs.f) & np.isfinite(bs.x).all(axis=1)
    if ok.mean() < 0.95:
        warnings.append(f"{int((~ok).sum())} of {n_boot} bootstrap refits failed; intervals use the rest")
    nat = f.to_natural(bs.x[ok])
    names = list(base.params)
    samples = np.column_stack([nat[k] for k in names])
    lo, hi = percentile_ci(samples, o.level)
    ci = {k: [float(a), float(b)] for k, a, b in zip(names, lo, hi)}
    ci.update({k: [v, v] for k, v in fixed.items()})
    # The bounds module knows domains that start at 0; a floor bounded by e_min is judged here.
    bounded_ci = ci.pop(bounded) if run.at_e_min else None
    ci, edge_warn = honest_intervals(f, params, ci, at_edge, int(ok.sum()))
    if run.at_e_min:
        ci[bounded] = [e_min, max(bounded_ci[1], params[bounded])]
        at_edge[bounded] = "lower"
        edge_warn.insert(0, _e_min_warning(bounded, params[bounded], e_min, ci[bounded][1]))
    elif bounded and ci[bounded][0] < e_min:
        ci[bounded][0] = e_min  # a whole-domain interval starts at the bound, not at 0
    for k, v in f.exponents({k: samples[:, i] for i, k in enumerate(names)}).items():
        if v is not None:
            a, b = percentile_ci(np.asarray(v, float)[:, None], o.level)
            ci[k] = [float(a[0]), float(b[0])]
    n_nc, n_grid, n_other = bs.n_not_converged, int(bs.grid_refit.sum()), int(bs.other_basin[ok].sum())
    boot = Bootstrap(int(n_boot), int(o.seed), names, samples.tolist(), n_nc, n_grid, n_other, bs.n_seeds,
                     float(o.level))
    if n_nc > NOT_CONVERGED_WARN * n_boot:
        warnings.append(f"{n_nc} of {n_boot} bootstrap refits ({100 * n_nc / n_boot:.0f}%) did not converge "
                        "(still moving at their iteration cap); the intervals are rougher than they look")
    if n_other:
        warnings.append(f"{n_other} of {int(ok.sum())} bootstrap refits ended in another basin of the objective "
                        "than the full-data fit: the law has several competing optima on these runs, and the "
                        "intervals include them")
    warnings += edge_warn
    warnings += identification_warnings({k: ci[k] for k in f.params if k not in at_edge}, params,
                                        dict(zip(f.params, f.log_params)))
    if run.exponents.get("a") is not None:
        warnings += identification_warnings({"a": ci["a"]}, run.exponents, {}, max_rel=0.2)
    return ci, boot, {"bootstrap_not_converged": n_nc}, warnings


def _edge_warnings(law: _Law, run: _Run) -> list[str]:
    """Without a bootstrap: one warning per parameter at an edge of its domain (marks a floor at e_min)."""
    out = [f"{name} = {run.params[name]:.3g} is at the {side} bound of its domain: the runs do not determine it"
           for name, side in run.at_edge.items()]
    if run.at_e_min:
        run.at_edge[run.bounded] = "lower"
        out.append(_e_min_warning(run.bounded, run.params[run.bounded], law.e_min, None))
    return out


def _floor_warnings(law: _Law, run: _Run) -> list[str]:
    """A floor below the data's known loss floor, losses below it, exponents beyond `EXPONENT_CAP`."""
    out, fl, params = [], law.base.floor, run.params
    floor_value, floor_source = run.floor_value, run.floor_source
    if fl is not None and floor_value is not None:
        if params[fl] < floor_value * (1 - 1e-9):
            held = " (held)" if fl in law.fixed else ""
            out.append(f"{fl} = {_floor_fmt(params[fl])}{held} lies below the data's known loss floor "
                       f"{floor_value:.3g} ({floor_source}): the law's floor is wrong, and it extrapolates too "
                       f"low; refit with --e-min {floor_value:.4g} or --fix {fl}={floor_value:.4g}")
    if floor_value is not None and run.min_loss < floor_value:
        out.append(f"the smallest observed loss {run.min_loss:.4g} lies below the known loss floor "
                   f"{floor_value:.4g} ({floor_source}): the floor or the losses are wrong")
    for name, kind in zip(law.form.params, law.form.kinds):
        if kind == "exponent" and not params[name] < EXPONENT_CAP and name not in run.at_edge:
            out.append(f"{name} = {params[name]:.3g} is outside (0, {EXPONENT_CAP:g}): the law does not "
                       "describe these runs")
    return out


def _backtest_warnings(bt: Backtest) -> list[str]:
    if bt.skipped:
        return [f"backtest skipped: {bt.skipped}"]
    if bt.are_max is not None and bt.are_max > 0.05:
        return [f"backtest: predicting the top {bt.holdout} runs by compute misses by up to "
                f"{100 * bt.are_max:.1f}%; extrapolate with care"]
    return []


def _notes(law: _Law, run: _Run, o: FitOptions, tbl: Table) -> list[str]:
    """What was done on the way: the table's own notes, then the choices that shaped the fit."""
    notes = list(tbl.notes)
    if not tbl.k_measured and "C" not in tbl.cols:
        notes.append("no FLOPs column: compute taken as 6 N D")
    if o.delta != DELTA or o.asymmetry != 0.5:
        notes.append(f"robust loss: Huber delta {o.delta:g} on log residuals"
                     + (f", asymmetry {o.asymmetry:g} (lower envelope)" if o.asymmetry != 0.5 else ""))
    if law.fixed:
        notes.append("held, not fitted (in the bootstrap, backtest and allocation too): "
                     + ", ".join(f"{k} = {v:.4g}" for k, v in law.fixed.items()))
    if run.bounded:
        notes.append(f"{run.bounded} bounded below by e_min = {law.e_min:.4g} (fitted as e_min + exp(e))")
    elif law.e_min is not None:
        notes.append(f"--e-min {law.e_min:g} has no effect: {law.base.floor} is held")
    if run.floor_value is not None:
        notes.append(f"known loss floor {run.floor_value:.4g} ({run.floor_source})")
    return notes


def _covariance(law: _Law, run: _Run, o: FitOptions) -> tuple[Covariance, dict[str, float | None]]:
    """The free parameters' covariance at the optimum (`analysis.covariance.huber_covariance`; parameters at
    an edge of their domain held) and the standard error of every parameter and exponent."""
    f, theta = law.form, run.pf.theta
    keep = [i for i, k in enumerate(f.params) if k not in run.at_edge]
    cov, why = huber_covariance(f, run.logs, run.y, theta, o.delta, o.asymmetry, keep)
    names = [f.params[i] for i in keep]
    left_out = [k for k in f.params if k in run.at_edge] or None
    stderr: dict[str, float | None] = {k: None for k in law.base.params}
    stderr.update({k: None for k, v in run.exponents.items() if v is not None})
    if cov is None:
        return Covariance(names, None, HUBER_METHOD, why, left_out), stderr
    nat = natural_covariance(f, theta, cov)[np.ix_(keep, keep)]
    stderr.update({k: float(np.sqrt(v)) for k, v in zip(names, np.diag(nat))})
    stderr.update(derived_stderr(lambda t: f.exponents(f.to_natural(t)), theta, cov))
    return Covariance(names, nat.tolist(), HUBER_METHOD, None, left_out), stderr


def _with_approaches(res: FitResult, tbl: Table, opt: dict, n_boot: int, seed: int, level: float) -> FitResult:
    """Approaches 1 and 2 on the same runs beside this fit's a: do they agree, whose assumptions hold."""
    from analysis.approaches import compare_approaches

    budget = None
    if tbl.frame is not None and "budget" in tbl.frame.columns:
        import pandas as pd

        b = pd.to_numeric(tbl.frame["budget"], errors="coerce").to_numpy(float)
        budget = b if (np.isfinite(b) & (b > 0)).all() else None
    a, ci = res.exponents.get("a"), res.ci.get("a")
    cmp = compare_approaches(tbl.cols["N"], tbl.cols["D"], tbl.loss, tbl.compute, a3=a, a3_ci=ci, budget=budget,
                             n_boot=n_boot, seed=seed, a3_extrapolation=opt["d_opt"] / float(tbl.cols["D"].max()),
                             level=level)
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
        a, b = _are_mean(self.free), _are_mean(self.floored)
        if a is None or b is None:
            return None
        return "tie" if abs(a - b) < TIE else "floored" if b < a else "free"


def fit_pair(table, form: str | None = None, *, options: FitOptions | None = None, **overrides) -> FitPair:
    """Fit `form` with its floor free and with it held at the known loss floor; say which backtests better.

    Args:
        table: as in `fit` (loaded once, both fits see the same runs).
        form: a law with a floor parameter (E); None: the options'.
        options, overrides: as in `fit`. `loss_floor` is the known lower bound on the loss (default: the
            table's `loss_floor` column); a `fix` of other parameters applies to both fits. Both fits
            record the loss floor, so the free one warns when its floor lies below it.

    Returns:
        `FitPair(free, floored, verdict)`: the verdict compares the backtests' mean |relative error|
        on the held-out top-compute runs; closer than 0.1 percentage point is a tie.

    Raises:
        BadInput: no floor parameter, no known loss floor, or what `fit` raises.
    """
    o = resolve(options, form=form, **overrides)
    base = get_form(o.form)
    if base.floor is None:
        raise BadInput(f"fit_pair: the {base.name} law has no floor parameter; its parameters are "
                       f"{', '.join(base.params)}")
    tbl = _table(table, base, len(base.params), o)
    floor, _ = known_loss_floor(tbl, o.loss_floor)
    if floor is None:
        raise BadInput(f"{tbl.source}: no known loss floor to compare against (no {LOSS_FLOOR_COLUMN!r} column); "
                       "give one with --loss-floor")
    fix = fixed_values(base, o.fix)
    fix.pop(base.floor, None)
    free = fit(tbl, options=o.replace(loss_floor=floor, fix=fix))
    floored = fit(tbl, options=o.replace(loss_floor=floor, fix={**fix, base.floor: floor}))
    return FitPair(free, floored, _pair_verdict(free, floored, base.floor, floor))


def _are_mean(res: FitResult) -> float | None:
    return None if res.backtest is None else res.backtest.are_mean


def _pair_verdict(free: FitResult, floored: FitResult, name: str, floor: float) -> str:
    a, b = _are_mean(free), _are_mean(floored)
    if a is None or b is None:
        why = next((r.backtest.skipped for r in (free, floored) if r.backtest and r.backtest.skipped), None)
        return f"no verdict on free vs floored {name}: the backtest was skipped ({why or 'no backtest'})"
    held = free.backtest.holdout
    both = (f"mean |rel. error| predicting the top {held} runs by compute: {100 * b:.2f}% with {name} held at the "
            f"loss floor {floor:.4g}, {100 * a:.2f}% with {name} free ({name} = {_floor_fmt(free.params[name])})")
    if abs(a - b) < TIE:
        return f"a tie between free and floored {name} (within 0.1 percentage point): {both}"
    return f"the {'floored' if b < a else 'free'} fit backtests better: {both}"
