"""Compute-optimal allocation: N_opt(C), D_opt(C) and the loss there, with bootstrap intervals.

Named `allocation` (not `optimal`) so that importing it never shadows the function `analysis.optimal`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from analysis.atomic import write_atomic
from analysis.errors import BadInput
from analysis.schema import validate


def allocation(form: str, params: dict, flops, k: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """N_opt and D_opt minimising the law's loss at compute C = k N D (vectorised over params and C).

    Chinchilla (Hoffmann et al. 2022, eq. 4): N_opt = G (C/k)^a, D_opt = G^-1 (C/k)^b with
    a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).
    Kaplan: minimise (N_c/N)^r + D_c k N / C with r = alpha_N/alpha_D, giving
    N_opt = (r N_c^r (C/k) / D_c)^(1/(r+1)).
    """
    cn = np.asarray(flops, float) / k
    if form in ("chinchilla", "data_constrained"):
        al, be = np.asarray(params["alpha"]), np.asarray(params["beta"])
        G = (al * np.asarray(params["A"]) / (be * np.asarray(params["B"]))) ** (1.0 / (al + be))
        n = G * cn ** (be / (al + be))
        return n, cn / n
    if form == "kaplan":
        r = np.asarray(params["alpha_N"]) / np.asarray(params["alpha_D"])
        n = (r * np.asarray(params["N_c"]) ** r * cn / np.asarray(params["D_c"])) ** (1.0 / (r + 1.0))
        return n, cn / n
    raise BadInput(f"form {form!r}: compute-optimal allocation needs a law in both N and D (chinchilla, kaplan)")


def _loss(form: str, params: dict, n, d):
    from analysis.forms import FORMS

    cols = {"N": n, "D": d, "U": d}  # compute-optimal assumes fresh data: U = D, no repetition
    return FORMS[form].predict(params, cols)


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
    n, d = allocation(fit.form, fit.params, flops, fit.k)
    out = {"flops": flops, "n_opt": float(n), "d_opt": float(d), "loss": float(_loss(fit.form, fit.params, n, d)),
           "k": fit.k, "form": fit.form, "ci": {}}
    bs = fit.bootstrap or {}
    if bs.get("samples"):
        s = np.asarray(bs["samples"], float)
        p = {name: s[:, i] for i, name in enumerate(bs["names"])}
        with np.errstate(all="ignore"):
            ns, ds = allocation(fit.form, p, flops, fit.k)
            ls = _loss(fit.form, p, ns, ds)
        lo_q, hi_q = 50 * (1 - level), 50 * (1 + level)
        for key, v in (("n_opt", ns), ("d_opt", ds), ("loss", ls)):
            v = v[np.isfinite(v)]
            if v.size:
                out["ci"][key] = [float(np.percentile(v, lo_q)), float(np.percentile(v, hi_q))]
    validate("optimal", out)
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
