"""Scaling-law analysis: fits with honest uncertainty, backtests, compute-optimal choices, reports.

Depends only on numpy, scipy, pandas, matplotlib and `vla_core` (never torch, `scaling` or `sweeps`),
so it fits anyone's results table. Heavy pieces (scipy, matplotlib, the fitter) load on first use.

    >>> import analysis
    >>> res = analysis.fit("results.csv")              # Chinchilla Approach 3, bootstrap, backtest
    >>> analysis.optimal(res, 1e18)                    # compute-optimal N, D, loss with intervals
    >>> analysis.write_report("results.csv", "report/")
"""

from __future__ import annotations

import importlib

from vla_core.errors import BadInput

# Public name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "fit": "analysis.workflow",
    "fit_by_family": "analysis.families",
    "FitResult": "analysis.result",
    "FitOptions": "analysis.options",
    "optimal": "analysis.allocation",
    "write_report": "analysis.report",
    "load_table": "analysis.table",
    "approach1": "analysis.approaches",
    "approach2": "analysis.approaches",
    "chinchilla": "analysis.laws",
    "kaplan": "analysis.laws",
    "power_law": "analysis.laws",
    "effective_data": "analysis.laws",
    "data_constrained": "analysis.laws",
}

__all__ = ["BadInput", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
