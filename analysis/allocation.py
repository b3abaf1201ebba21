"""Compute-optimal allocation: N_opt(C), D_opt(C) and the loss there, with bootstrap intervals.

Named `allocation` (not `optimal`) so that importing it never shadows the function `analysis.optimal`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from analysis.atomic import write_atomic
from analysis.errors import BadInput
from analysis.schema import validate


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
    out["warnings"] = _extrapolation_warnings(fit, out)
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
    validate("optimal", out)
    return out


def write_train_config(opt: dict, path, fit_source: str = "", training: dict | None = None) -> Path:
    """Write a `scaling train` YAML config for the compute-optimal N and D (atomically).

    Sets `size` (target parameter count) and `samples`, and the training settings the fitted runs
    used (`training` from fit.json: lr, global_batch_size as batch_size, precision), so the run
    reproduces the conditions the law was measured under. A setting that varied with model size
    takes the value of the fitted size nearest N_opt (in log N).
    """
    path = Path(path)
    ci = opt.get("ci", {})
    lines = [
        f"# Compute-optimal run for C = {opt['flops']:.4g} FLOPs ({opt['form']} fit{' of ' + fit_source if fit_source else ''};",
        f"# k = {opt['k']:.4g} FLOPs per parameter per sample: N_opt * D_opt * k = {opt['n_opt'] * opt['d_opt'] * opt['k']:.4g} FLOPs)."
        f" Predicted loss {opt['loss']:.4g}"
        + (f", 95% interval [{ci['loss'][0]:.4g}, {ci['loss'][1]:.4g}]." if "loss" in ci else "."),
        f"# Use: scaling train --config {path.name} --data DATASET",
        f"size: {float(opt['n_opt']):.6e}",  # always a dot and a signed exponent: YAML 1.1 reads a float
        f"samples: {int(round(opt['d_opt']))}",
    ]
    for key, cfg_key in (("lr", "lr"), ("global_batch_size", "batch_size"), ("precision", "precision")):
        v = _setting((training or {}).get(key), opt["n_opt"])
        if v is not None:
            lines.append(f"{cfg_key}: {json.dumps(v)}  # as in the fitted runs")
    for w in opt.get("warnings", []):
        lines.insert(3, f"# WARNING: {w}")
    return write_atomic(path, "\n".join(lines) + "\n")


def _setting(v, n_opt: float):
    """A training setting from fit.json: the value, or per-size values' entry nearest n_opt in log N."""
    if isinstance(v, dict) and isinstance(v.get("by_n"), dict) and v["by_n"]:
        sizes = {float(k): x for k, x in v["by_n"].items()}
        return sizes[min(sizes, key=lambda n: abs(np.log(n) - np.log(n_opt)))]
    return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else None


FAR = 10.0
"""Budgets more than this many times the largest fitted run's compute are far extrapolations."""


def _extrapolation_warnings(fit, out: dict) -> list[str]:
    """Warnings on a compute-optimal prediction: far beyond the fitted runs, below anything observed."""
    obs = fit.observed or {}
    warns = []
    cmax = obs.get("flops_max")
    if cmax and out["flops"] > FAR * cmax:
        warns.append(f"C = {out['flops']:.3g} FLOPs is {out['flops'] / cmax:.3g}x the largest fitted run "
                     f"({cmax:.3g}); the prediction is a far extrapolation")
    if obs.get("loss_min") is not None and out["loss"] < obs["loss_min"]:
        warns.append(f"predicted loss {out['loss']:.4g} is below every observed loss ({obs['loss_min']:.4g}): "
                     "no run has shown the law holds there")
    if obs.get("blind_loss") is not None and out["loss"] >= obs["blind_loss"]:
        warns.append(f"predicted loss {out['loss']:.4g} is no better than the blind baseline "
                     f"({obs['blind_loss']:.4g}): the model would not use its inputs")
    return warns
