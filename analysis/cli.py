"""`scaling fit`, `scaling optimal`, `scaling report`: parse, call `analysis`, print.

Handlers import the fitting machinery lazily, so building the parser costs nothing.
"""

from __future__ import annotations

import json
import sys

from analysis.options import FitOptions, add_flags, from_args
from vla_core.errors import BadInput


def register(subparsers) -> None:
    """Add `fit`, `optimal` and `report` to the `scaling` command."""
    p = subparsers.add_parser("fit", help="fit a scaling law to a results table (CSV or Parquet)",
                              description="Chinchilla Approach 3 fit with bootstrap intervals and a backtest.")
    p.add_argument("results", help="results table: .csv or .parquet")
    add_flags(p, "fit")
    p.add_argument("--out", required=True, help="where to write fit.json (with --by family: families.json)")
    p.add_argument("--json", action="store_true", help="print fit.json instead of the text summary")
    p.set_defaults(func=_fit)

    p = subparsers.add_parser("optimal", help="compute-optimal N and D for a compute budget, from fit.json")
    p.add_argument("fit", help="fit.json written by `scaling fit`")
    p.add_argument("--flops", type=float, default=None, help="training compute budget C in FLOPs (e.g. 1e17)")
    p.add_argument("--target-success", type=float, default=None, metavar="S",
                   help="instead of --flops: the compute at which the success-rate law reaches S (0..1), "
                   "and the compute-optimal run there (needs a fit of a table with success rates)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--emit-config", default=None, metavar="RUN_YAML",
                   help="write a `scaling train` config for N_opt, D_opt")
    p.set_defaults(func=_optimal)

    p = subparsers.add_parser("predict", help="the law's loss at a given N and D, with its interval and extrapolation",
                              description="Predicted loss of a model of N parameters trained on D samples, from a "
                              "fit.json (any form in N and D, or an Approach 2 fit), with its 95% interval and how "
                              "far (N, D, C) lie outside the fitted runs.")
    p.add_argument("fit", help="fit.json written by `scaling fit` (Approach 3 or --approach 2)")
    p.add_argument("--n", type=float, required=True, help="parameters N")
    p.add_argument("--d", type=float, required=True, help="training samples D")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_predict)

    p = subparsers.add_parser("suggest", help="the next runs to buy: most shrink the interval of N_opt per FLOP",
                              description="Fit the table, then choose up to COUNT new (N, D) runs costing at most "
                              "BUDGET FLOPs in total that most shrink the uncertainty of N_opt at the target compute "
                              "(delta method on the fit's Fisher information, greedy per FLOP).")
    p.add_argument("results", help="results table: .csv or .parquet")
    add_flags(p, "suggest")
    p.add_argument("--target-flops", type=float, required=True, help="compute C whose N_opt matters (FLOPs)")
    p.add_argument("--budget-flops", type=float, required=True, help="total FLOPs the new runs may cost")
    p.add_argument("--count", type=int, default=4, help="runs to propose (default 4)")
    p.add_argument("--sizes", default=None, help="comma-separated parameter counts the model family builds "
                   "(default: the table's sizes, extended by their own step)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {n_params, n_samples, flops}")
    p.set_defaults(func=_suggest)

    p = subparsers.add_parser("report", help="HTML report with figures from a results table or sweep directory")
    p.add_argument("results", help="results table (.csv/.parquet) or a sweep directory holding results.csv")
    add_flags(p, "report")
    p.add_argument("--out", required=True, help="output directory (report.html, fit.json, PNG figures)")
    p.set_defaults(func=_report)


def _file_out(flag: str, path: str) -> None:
    """Refuse an output path that is a folder, or whose folder is missing, before any work is done."""
    from pathlib import Path

    from vla_core.errors import BadInput

    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{flag} {path}: is a folder; give a file name (e.g. {p / 'fit.json'})"
                       if flag == "--out" else f"{flag} {path}: is a folder; give a file name (e.g. {p / 'run.yaml'})")
    if not p.parent.is_dir():
        raise BadInput(f"{flag} {path}: folder {p.parent} does not exist")


def _fit(a) -> int:
    o = from_args(a, "fit")
    if o.by == "family" and o.approach == 2:
        raise BadInput("--by family: fits the parametric law (Approach 3) per family; leave out --approach 2")
    if o.approach == 2:
        return _fit_approach2(a, o)
    if o.by == "family":
        return _fit_by_family(a, o)
    from analysis.workflow import fit

    _file_out("--out", a.out)
    res = fit(a.results, options=o)
    path = res.save(a.out)
    print(json.dumps(res.to_dict()) if a.json else res.summary() + f"\nwrote {path}")
    return 0


def _fit_by_family(a, o: FitOptions) -> int:
    from analysis.families import fit_by_family

    _file_out("--out", a.out)
    res = fit_by_family(a.results, options=o)
    path = res.save(a.out)
    if a.json:
        print(path.read_text().strip())
        return 0
    from analysis.families import fit_file

    beside = ", ".join(str(path.parent / fit_file(n)) for n in res.fits)
    print(res.summary() + f"\nwrote {path} and {beside}")
    return 0


def _fit_approach2(a, o: FitOptions) -> int:
    from analysis.approaches import fit_approach2

    out = fit_approach2(a.results, options=o, out=a.out)
    if a.json:
        print(json.dumps(out))
        return 0
    ci = out["ci"]
    show = lambda k: f"  [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else ""  # noqa: E731
    lines = [f"approach 2 (IsoFLOP parabolas) on {out['n_points']} runs, {len(out['points'])} budgets fitted "
             f"({out['source']})",
             f"  a = {out['a']:.4g}{show('a')}   (N_opt ~ C^a)", f"  b = {out['b']:.4g}{show('b')}   (D_opt ~ C^b)",
             f"  intervals: 95% bootstrap over runs within each budget ({out['n_boot']} resamples)"]
    lines += [f"  note: {n}" for n in out["notes"]] + [f"  WARNING: {w}" for w in out["warnings"]]
    print("\n".join(lines) + f"\nwrote {a.out}")
    return 0


def _show_ci(ci: dict, k: str) -> str:
    return f"  [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if ci.get(k) else ""


def _print_answer(res: dict, head: str, rows: list[tuple[str, str]]) -> None:
    from analysis.allocation import extrapolation_text

    ci = res["ci"]
    lines = [head] + [f"  {label} = {res[key]:.4g}{_show_ci(ci, key)}{unit}" for label, key, unit in rows]
    if res.get("ci_method"):
        lines.append(f"  interval: {res['ci_method']}")
    lines += [f"  {x}" for x in extrapolation_text(res.get("extrapolation") or {"sides": {}})]
    print("\n".join(lines))


def _optimal(a) -> int:
    from analysis.allocation import optimal, write_train_config

    if a.emit_config:
        _file_out("--emit-config", a.emit_config)
    from analysis.approaches import load_any_fit, optimal_any

    fit = load_any_fit(a.fit)
    a2 = fit if isinstance(fit, dict) else None
    target = None
    if (a.flops is None) == (a.target_success is None):
        raise BadInput("scaling optimal: give exactly one of --flops C and --target-success S")
    if a2 is not None:
        if a.target_success is not None:
            raise BadInput(f"{a.fit}: an Approach 2 fit has no success-rate law; use --flops")
        if not (a.flops > 0):
            raise BadInput(f"--flops {a.flops}: compute must be a positive number of FLOPs")
        res = optimal_any(a2, a.flops)
    else:
        if a.target_success is not None:
            target = _target(fit, a)
            if target["flops"] is None:
                ceil = target["ceiling"]
                raise BadInput(f"--target-success {a.target_success}: the fitted success law levels off at {ceil:.3g}; "
                               "no compute reaches the target on these runs")
            a.flops = target["flops"]
        res = optimal(fit, a.flops)
    if target is not None:
        res["target"] = target
    for w in res.get("warnings", []):
        sys.stderr.write(f"scaling: warning: {w}\n")
    if a.emit_config:
        write_train_config(res, a.emit_config, a.fit, None if a2 is not None else fit.training)
    if a.json:
        print(json.dumps(res))
        return 0
    if target is not None:
        tci = target["ci"]
        print(f"success {target['target_success']:g} is reached at C = {target['flops']:.4g} FLOPs"
              + (f"  [{tci[0]:.4g}, {tci[1]:.4g}]" if tci else "")
              + " (success-vs-compute law; the law reaches it in "
              f"{100 * target.get('reached_in', 1):.0f}% of resamples)")
    how = f"{res.get('form', 'approach 2')}" + (f", {res['flops_per_sample']:.4g} FLOPs per sample at N_opt"
                                                if res.get("flops_per_sample") else f", k = {res['k']:.4g}")
    _print_answer(res, f"C = {res['flops']:.4g} FLOPs ({how}):",
                  [("N_opt", "n_opt", " parameters"), ("D_opt", "d_opt", " samples"), ("loss ", "loss", "")])
    if a.emit_config:
        print(f"wrote {a.emit_config}")
    return 0


def _predict(a) -> int:
    from analysis.approaches import load_any_fit, predict_any

    for flag, v in (("--n", a.n), ("--d", a.d)):
        if not (v > 0):
            raise BadInput(f"{flag} {v}: must be a positive number")
    res = predict_any(load_any_fit(a.fit), a.n, a.d)
    for w in res.get("warnings", []):
        sys.stderr.write(f"scaling: warning: {w}\n")
    if a.json:
        print(json.dumps(res))
        return 0
    _print_answer(res, f"N = {a.n:.4g} parameters, D = {a.d:.4g} samples ({res.get('form', 'approach 2')}; "
                       f"C = {res['flops']:.4g} FLOPs):", [("loss", "loss", "")])
    return 0


def _target(fit, a) -> dict:
    from analysis.success import compute_for_success

    if not 0 < a.target_success < 1:
        raise BadInput(f"--target-success {a.target_success}: a success rate strictly between 0 and 1")
    if fit.success is None or not fit.success.vs_compute:
        raise BadInput(f"{a.fit}: no success-rate law in this fit "
                       "(its table had fewer than 4 runs with a success rate)")
    return compute_for_success(fit.success, a.target_success)


def _suggest(a) -> int:
    from analysis.design import suggest
    from analysis.forms import get_form
    from analysis.table import load_table
    from analysis.workflow import fit

    sizes = None
    if a.sizes:
        try:
            sizes = [float(x) for x in a.sizes.split(",") if x.strip()]
        except ValueError:
            raise BadInput(f"--sizes {a.sizes!r}: comma-separated parameter counts, e.g. 1e6,3e6,1e7") from None
    o = from_args(a, "suggest", bootstrap=0, holdout_frac=0, success_col=None)
    f = get_form(o.form)
    tbl = load_table(a.results, need=f.columns, n_params=len(f.params), **o.columns)
    res = fit(tbl, options=o)
    out = suggest(res, tbl, a.target_flops, a.budget_flops, a.count, sizes=sizes)
    if a.json:
        print(json.dumps([{k: r[k] for k in ("n_params", "n_samples", "flops")} for r in out["runs"]]))
        return 0
    print(f"N_opt at C = {out['target_flops']:.3g} FLOPs: {out['n_opt']:.3g} "
          f"(sd of log N_opt {out['sd_before']:.3g} now, "
          f"{out['sd_after']:.3g} after these runs; {out['spent']:.3g} of {a.budget_flops:.3g} FLOPs)")
    for r in out["runs"]:
        print(f"  N = {r['n_params']:.4g}  D = {r['n_samples']:.4g}  FLOPs = {r['flops']:.3g}  "
              f"(sd after: {r['sd_after']:.3g})")
    return 0


def _report(a) -> int:
    from analysis.report import resolve_results, write_report

    path = write_report(resolve_results(a.results), a.out, options=from_args(a, "report"))
    sys.stdout.write(f"wrote {path}\n")
    return 0
