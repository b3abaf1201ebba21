"""Compute-optimal allocation: N_opt(C), D_opt(C) and the loss there, with bootstrap intervals.

Named `allocation` (not `optimal`) so that importing it never shadows the function `analysis.optimal`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from analysis.atomic import write_atomic
from analysis.errors import BadInput


def allocation(form, params: dict, flops, k: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """N_opt and D_opt minimising the law's loss at compute C = k N D (vectorised over params and C).

    Args:
        form: a `Form` or its registered name; the form owns the formula (`Form.allocate`).
        params: natural parameters (floats, or arrays that broadcast against `flops`).
        flops: compute C in FLOPs. k: FLOPs per parameter per sample.
    """
    return _form(form).allocation(params, flops, k)


def _form(form):
    from analysis.forms import Form, get_form

    return form if isinstance(form, Form) else get_form(form)


def optimal(fit, flops: float, level: float = 0.95) -> dict:
    """Compute-optimal N, D and predicted loss at `flops`, with bootstrap intervals when the fit has them.

    Args:
        fit: a `FitResult` (or its dict / fit.json path).
        flops: training compute C in FLOPs.

    Returns:
        {"flops", "n_opt", "d_opt", "loss", "k", "ci": {"n_opt": [lo, hi], "d_opt": ..., "loss": ...}}
    """
    from analysis.result import FitResult

    if isinstance(fit, (str, os.PathLike)):
        fit = FitResult.load(fit)
    elif isinstance(fit, dict):
        fit = FitResult.from_dict(fit)
    flops = float(flops)
    if not np.isfinite(flops) or flops <= 0:
        raise BadInput(f"--flops {flops}: compute must be a positive number of FLOPs")
    form = _form(fit.form)
    n, d = form.allocation(fit.params, flops, fit.k)
    out = {"flops": flops, "n_opt": float(n), "d_opt": float(d), "loss": float(form.loss_at(fit.params, n, d)),
           "k": fit.k, "form": fit.form, "ci": {}}
    bs = fit.bootstrap or {}
    if bs.get("samples"):
        s = np.asarray(bs["samples"], float)
        p = {name: s[:, i] for i, name in enumerate(bs["names"])}
        with np.errstate(all="ignore"):
            ns, ds = form.allocation(p, flops, fit.k)
            ls = form.loss_at(p, ns, ds)
        lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)
        for key, v in (("n_opt", ns), ("d_opt", ds), ("loss", ls)):
            v = v[np.isfinite(v)]
            if v.size:
                out["ci"][key] = [float(np.percentile(v, lo_q)), float(np.percentile(v, hi_q))]
    return out


def write_train_config(opt: dict, path, fit_source: str = "") -> Path:
    """Write a `scaling train` YAML config for the compute-optimal N and D (atomically).

    Only `size` (target parameter count) and `samples` (training samples) are set; the rest of the
    run (data, lr, ...) comes from the defaults or further flags.
    """
    path = Path(path)
    ci = opt.get("ci", {})
    lines = [
        f"# Compute-optimal run for C = {opt['flops']:.4g} FLOPs ({opt['form']} fit{' of ' + fit_source if fit_source else ''};",
        f"# k = {opt['k']:.4g} FLOPs per parameter per sample). Predicted loss {opt['loss']:.4g}"
        + (f", 95% interval [{ci['loss'][0]:.4g}, {ci['loss'][1]:.4g}]." if "loss" in ci else "."),
        f"# Use: scaling train --config {path.name} --data DATASET",
        f"size: {float(opt['n_opt']):.6e}",  # always a dot and a signed exponent: YAML 1.1 reads a float
        f"samples: {int(round(opt['d_opt']))}",
    ]
    return write_atomic(path, "\n".join(lines) + "\n")
