"""Parameters at the edge of their domain, and intervals that say so instead of shrinking to a point.

A fitted law with its irreducible loss E at 0, or an exponent at 0, has left the region where the
data pin the parameter down: E ~ 1e-14 with a bootstrap interval [1.4e-14, 1.4e-14] is not a
measurement but the optimiser sliding down a flat valley (log E -> -inf). Such a parameter is
reported as at its bound, with a one-sided interval from the bound, and named in a warning.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.forms import EXPONENT_CAP, Form

FLOOR_EDGE = 1e-3
"""A floor (E) below this fraction of the smallest observed loss is at its lower bound, 0."""
EXPONENT_EDGE = 0.01
"""An exponent below this is at its lower bound, 0 (the term no longer varies over the runs)."""


def domain(kind: str) -> tuple[float, float]:
    """Natural domain [lo, hi] of a parameter of this kind (see `Form.kinds`)."""
    return (0.0, EXPONENT_CAP) if kind == "exponent" else (0.0, math.inf)


def edges(form: Form, params: dict[str, float], min_loss: float) -> dict[str, str]:
    """{name: "lower" | "upper"} for the parameters at (or past) an edge of their domain."""
    out = {}
    for name, kind in zip(form.params, form.kinds):
        v = params.get(name)
        if v is None or not np.isfinite(v):
            continue
        if kind == "floor" and v < FLOOR_EDGE * min_loss:
            out[name] = "lower"
        elif kind == "exponent" and v < EXPONENT_EDGE:
            out[name] = "lower"
        elif kind == "exponent" and v >= EXPONENT_CAP:
            out[name] = "upper"
    return out


def honest_intervals(form: Form, params: dict[str, float], ci: dict[str, list[float]], at_edge: dict[str, str],
                     n_boot: int) -> tuple[dict[str, list[float]], list[str]]:
    """Intervals that never read as false precision, and the warnings that go with them.

    A parameter at an edge gets a one-sided interval from the bound ([0, hi] for E at 0); one whose
    bootstrap interval has zero width without being at an edge (the resamples cannot move it) gets
    its whole domain. Both are named in a warning.

    Returns:
        (new ci, warnings).
    """
    ci = {k: list(v) for k, v in ci.items()}
    warns = []
    kinds = dict(zip(form.params, form.kinds))
    for name, side in at_edge.items():
        v = params[name]
        lo_b, hi_b = domain(kinds[name])
        lo, hi = ci.get(name, [v, v])
        if side == "lower":
            ci[name] = [lo_b, max(hi, v)]
            warns.append(f"{name} = {v:.3g} is at the lower bound of its domain ({lo_b:g}): the runs do not "
                         f"determine it; its interval is one-sided, [{lo_b:g}, {ci[name][1]:.4g}]"
                         + (" (no irreducible loss is the fit's best guess, not a measurement)"
                            if kinds[name] == "floor" else " (its term hardly varies over these runs)"))
        else:
            ci[name] = [min(lo, v), math.inf]
            warns.append(f"{name} = {v:.3g} is at or beyond the cap of its domain ({hi_b:g}): the law does not "
                         "describe these runs; its interval is open above")
    for name in form.params:
        if name in at_edge or name not in ci:
            continue
        lo, hi = ci[name]
        v = params[name]
        if np.isfinite(lo) and np.isfinite(hi) and hi - lo <= 1e-9 * max(abs(v), 1e-300):
            ci[name] = list(domain(kinds[name]))
            warns.append(f"{name}: all {n_boot} bootstrap refits returned {v:.4g}, so the resamples cannot move it and "
                         "the data do not determine it; its interval is reported as its whole domain")
    return ci, warns
