"""Design ``suggest``: the next runs of a sweep, chosen by `analysis.design.suggest` from the runs so far.

The candidates are the spec's own model ladder, resolved by the model family (so every proposed N
is a size the family builds, with its exact parameter count and FLOPs per sample); D is whole
samples. The planned runs then go through the ordinary queue like any grid point.
"""

from __future__ import annotations

from pathlib import Path

from vla_core.errors import BadInput


def _results_path(spec) -> Path:
    p = Path(spec.suggest.results)
    if not p.is_absolute() and spec.source and not p.is_file():
        p = Path(spec.source).parent / p
    if not p.is_file():
        raise BadInput(f"{spec.source or 'spec'}: design.results: {spec.suggest.results}: no such results table")
    return p


def suggested_points(spec, models) -> list:
    """[(ModelPoint, samples, None)] proposed for the spec's target and budget."""
    import analysis
    from analysis.design import suggest
    from analysis.table import load_table

    tbl = load_table(_results_path(spec), n_params=5)
    fit = analysis.fit(tbl, bootstrap=0, holdout_frac=0, success_col=None)
    by_n = {m.n_params: m for m in models}
    sg = spec.suggest
    out = suggest(fit, tbl, sg.target_flops, sg.budget_flops, sg.count, sizes=sorted(by_n))
    return [(by_n[r["n_params"]], int(r["n_samples"]), None) for r in out["runs"]]
