"""`scaling fit`, `scaling optimal`, `scaling report`: parse, call `analysis`, print.

Handlers import the fitting machinery lazily, so building the parser costs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys


def _columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-col", default="n_params", help="column of parameters N (default: n_params)")
    p.add_argument("--d-col", default="n_samples", help="column of training samples D (default: n_samples)")
    p.add_argument("--loss-col", default="val_loss", help="column of the loss (default: val_loss)")
    p.add_argument("--c-col", default=None, help="column of training FLOPs (default: flops when present)")
    p.add_argument("--u-col", default=None, help="column of unique samples, for --form data_constrained "
                   "(default: n_unique_samples)")
    p.add_argument("--form", default="chinchilla", help="law form: chinchilla (default), kaplan, power_n, power_d, "
                   "power_c, data_constrained")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for intervals (0: none)")
    p.add_argument("--holdout-frac", type=float, default=0.2, help="fraction of top-compute runs held out in the backtest")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--all-states", action="store_true", help="keep runs whose state is not completed")


def register(subparsers) -> None:
    """Add `fit`, `optimal` and `report` to the `scaling` command."""
    p = subparsers.add_parser("fit", help="fit a scaling law to a results table (CSV or Parquet)",
                              description="Chinchilla Approach 3 fit with bootstrap intervals and a backtest.")
    p.add_argument("results", help="results table: .csv or .parquet")
    _columns(p)
    p.add_argument("--out", required=True, help="where to write fit.json")
    p.add_argument("--json", action="store_true", help="print fit.json instead of the text summary")
    p.set_defaults(func=_fit)

    p = subparsers.add_parser("optimal", help="compute-optimal N and D for a compute budget, from fit.json")
    p.add_argument("fit", help="fit.json written by `scaling fit`")
    p.add_argument("--flops", type=float, required=True, help="training compute budget C in FLOPs (e.g. 1e17)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--emit-config", default=None, metavar="RUN_YAML", help="write a `scaling train` config for N_opt, D_opt")
    p.set_defaults(func=_optimal)

    p = subparsers.add_parser("report", help="HTML report with figures from a results table or sweep directory")
    p.add_argument("results", help="results table (.csv/.parquet) or a sweep directory holding results.csv")
    _columns(p)
    p.add_argument("--out", required=True, help="output directory (report.html, fit.json, PNG figures)")
    p.set_defaults(func=_report)


def _fit_kwargs(a) -> dict:
    return dict(form=a.form, n_col=a.n_col, d_col=a.d_col, loss_col=a.loss_col, c_col=a.c_col, u_col=a.u_col,
                bootstrap=a.bootstrap, holdout_frac=a.holdout_frac, seed=a.seed)


def _file_out(flag: str, path: str) -> None:
    """Refuse an output path that is a folder, or whose folder is missing, before any work is done."""
    from pathlib import Path

    from analysis.errors import BadInput

    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{flag} {path}: is a folder; give a file name (e.g. {p / 'fit.json'})"
                       if flag == "--out" else f"{flag} {path}: is a folder; give a file name (e.g. {p / 'run.yaml'})")
    if not p.parent.is_dir():
        raise BadInput(f"{flag} {path}: folder {p.parent} does not exist")


def _fit(a) -> int:
    from analysis.workflow import fit

    _file_out("--out", a.out)
    res = fit(a.results, all_states=a.all_states, **_fit_kwargs(a))
    path = res.save(a.out)
    print(json.dumps(res.to_dict()) if a.json else res.summary() + f"\nwrote {path}")
    return 0


def _optimal(a) -> int:
    from analysis.allocation import optimal, write_train_config

    if a.emit_config:
        _file_out("--emit-config", a.emit_config)
    res = optimal(a.fit, a.flops)
    if a.emit_config:
        write_train_config(res, a.emit_config, a.fit)
    if a.json:
        print(json.dumps(res))
        return 0
    ci = res["ci"]
    show = lambda k: f"  [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else ""  # noqa: E731
    print(f"C = {res['flops']:.4g} FLOPs ({res['form']}, k = {res['k']:.4g}):\n"
          f"  N_opt = {res['n_opt']:.4g}{show('n_opt')} parameters\n"
          f"  D_opt = {res['d_opt']:.4g}{show('d_opt')} samples\n"
          f"  loss  = {res['loss']:.4g}{show('loss')}" + (f"\nwrote {a.emit_config}" if a.emit_config else ""))
    return 0


def _report(a) -> int:
    from analysis.report import resolve_results, write_report

    kw = _fit_kwargs(a)
    kw.pop("u_col")
    path = write_report(resolve_results(a.results), a.out, all_states=a.all_states, **kw)
    sys.stdout.write(f"wrote {path}\n")
    return 0
