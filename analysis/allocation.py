"""Compute-optimal allocation: N_opt(C), D_opt(C) and the loss there, with bootstrap intervals.

Named `allocation` (not `optimal`) so that importing it never shadows the function `analysis.optimal`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from analysis.bootstrap import interval
from vla_core.atomic import write_atomic
from vla_core.errors import BadInput
from vla_core.schema import validate


def allocation(form, params: dict, flops, k: float = 6.0, fps: tuple[float, float] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """N_opt and D_opt minimising the law's loss at compute C (vectorised over params and C).

    Args:
        form: a `Form` or its registered name; the form owns the formula (`Form.allocate`).
        params: natural parameters (floats, or arrays that broadcast against `flops`).
        flops: compute C in FLOPs.
        k: FLOPs per parameter per sample, when compute is k N D (the closed form of the law).
        fps: (c0, c1): FLOPs per sample of a model of N parameters is c0 + c1 N (`Table.observed`'s
            fps_c0, fps_c1). Then the budget is met with what the model actually costs, C = (c0 + c1 N) D,
            and N_opt is found numerically; a fixed per-sample cost (an image stem) makes small models
            dearer than k N D says.
    """
    f = _form(form)
    if fps is None or not fps[0] > 0:
        kk = k if fps is None else fps[1]
        return f.allocation(params, flops, kk)
    if not f.has_allocation:
        f.allocation(params, flops, k)  # raises the form's own BadInput
    return _numeric_allocation(f, params, np.asarray(flops, float), float(fps[0]), float(fps[1]))


_LOGN = np.linspace(0.0, np.log(1e16), 3201)
"""The log N grid a numeric allocation searches (1 to 1e16 parameters, 1.15% apart), refined by a parabola."""


def _numeric_allocation(f, params: dict, flops: np.ndarray, c0: float, c1: float):
    """argmin over N of L(N, C / (c0 + c1 N)) for every parameter row and budget (broadcast)."""
    p = {k: np.asarray(v, float) for k, v in params.items()}
    shape = np.broadcast_shapes(flops.shape, *(v.shape for v in p.values()))
    flat_c = np.broadcast_to(flops, shape).ravel()
    flat_p = {k: np.broadcast_to(v, shape).ravel() for k, v in p.items()}
    n_out = np.empty(flat_c.size)
    step = _LOGN[1] - _LOGN[0]
    chunk = max(1, 2_000_000 // _LOGN.size)
    for s in range(0, flat_c.size, chunk):
        sl = slice(s, s + chunk)
        c = flat_c[sl][:, None]
        n = np.exp(_LOGN)[None, :]
        d = c / (c0 + c1 * n)
        pp = {k: v[sl][:, None] for k, v in flat_p.items()}
        with np.errstate(all="ignore"):
            loss = f.loss_at(pp, n, d)
        loss = np.where(np.isfinite(loss), loss, np.inf)
        i = np.clip(np.argmin(loss, axis=1), 1, _LOGN.size - 2)
        r = np.arange(i.size)
        y0, y1, y2 = loss[r, i - 1], loss[r, i], loss[r, i + 1]
        with np.errstate(all="ignore"):
            den = y0 - 2 * y1 + y2
            off = np.where(np.isfinite(den) & (den > 0), 0.5 * (y0 - y2) / den, 0.0)
        n_out[sl] = np.exp(_LOGN[i] + np.clip(off, -1, 1) * step)
    n_opt = n_out.reshape(shape)
    return n_opt, np.broadcast_to(flops, shape) / (c0 + c1 * n_opt)


def _form(form):
    from analysis.forms import Form, get_form

    return form if isinstance(form, Form) else get_form(form)


def fps_model(observed: dict | None) -> tuple[float, float] | None:
    """(c0, c1) of FLOPs per sample = c0 + c1 N from a fit's `observed`, or None when it has none."""
    obs = observed or {}
    if obs.get("fps_c1") is None:
        return None
    return float(obs.get("fps_c0") or 0.0), float(obs["fps_c1"])


INSIDE_TOL = 0.01
"""An answer within 1% of the fitted range's end counts as inside it (a budget equal to the largest run's)."""


def extrapolation(observed: dict | None, n: float | None, d: float | None, c: float | None) -> dict:
    """How far an answer (N, D, C) lies outside the fitted runs, and against the data's unique samples.

    Returns:
        {"N", "D", "C": factor >= 1 (answer / largest fitted value above the range, smallest / answer
        below it, 1 inside), "sides": {q: "above" | "below" | "inside"}, "unique_samples", "epochs"
        (D / unique samples, where the table recorded the unique samples), "log10_max": the largest
        of the three factors in decades}.
    """
    obs = observed or {}
    out: dict = {"sides": {}}
    for q, v, lo_key, hi_key in (("N", n, "n_min", "n_max"), ("D", d, "d_min", "d_max"),
                                 ("C", c, "flops_min", "flops_max")):
        lo, hi = obs.get(lo_key), obs.get(hi_key)
        if v is None or hi is None:
            out[q], out["sides"][q] = None, None
            continue
        if v > hi * (1 + INSIDE_TOL):
            out[q], out["sides"][q] = float(v / hi), "above"
        elif lo is not None and v < lo / (1 + INSIDE_TOL):
            out[q], out["sides"][q] = float(lo / v), "below"
        else:
            out[q], out["sides"][q] = 1.0, "inside"
    u = obs.get("unique_samples")
    out["unique_samples"] = float(u) if u else None
    out["epochs"] = float(d / u) if (u and d is not None) else None
    out["log10_max"] = float(max([np.log10(out[q]) for q in ("N", "D", "C") if out[q]] or [0.0]))
    return out


def extrapolation_text(ex: dict) -> list[str]:
    """Readable lines for an `extrapolation` object (what `optimal` and `predict` print)."""
    parts = []
    for q, name in (("N", "N"), ("D", "D"), ("C", "C")):
        f, side = ex.get(q), ex["sides"].get(q)
        if f is None:
            continue
        parts.append(f"{name} inside the fitted runs" if side == "inside" else
                     f"{name} {f:.3g}x {'above the largest' if side == 'above' else 'below the smallest'} fitted")
    lines = [f"extrapolation: {'; '.join(parts)}"] if parts else []
    if ex.get("epochs") is not None and ex["epochs"] > 1.0:
        lines.append(f"D is {ex['epochs']:.3g}x the {ex['unique_samples']:.4g} unique samples of the data the runs "
                     f"trained on: each sample would be seen ~{ex['epochs']:.2g} times, which this law does not model "
                     "(fit --form data_constrained or data_constrained_full on runs that repeat data, or collect more)")
    return lines


def interval_floor(backtest: dict | None, observed: dict | None, loss: float, ex: dict,
                   level: float = 0.95) -> tuple[float, str | None]:
    """The smallest half-width a loss interval may have at this extrapolation, and how it was set.

    Two floors, the larger wins: (1) the backtest's: refitting without the top-compute runs
    predicted them within `are_max` (relative) at a distance of `backtest_reach` decades of compute;
    beyond that distance the error is taken to grow in proportion (error x distance / reach, the
    distance being the largest of the N, D and C extrapolation factors in decades); (2) the seeds':
    a run's loss scatters about the law by the spread between seeds (`seed_sd`, relative), so a 95%
    interval for the loss a run will reach is at least +-1.96 of it.
    """
    bt, obs = backtest or {}, observed or {}
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    half, why = 0.0, []
    err, reach = bt.get("are_max"), obs.get("backtest_reach")
    if err is not None and reach:
        scale = max(1.0, ex.get("log10_max", 0.0) / reach)
        half = err * scale * loss
        why.append(f"backtest: {100 * err:.2g}% at {reach:.2f} decades of compute, x{scale:.2g} at this distance")
    sd = obs.get("seed_sd")
    if sd:
        h2 = z * sd * loss
        why.append(f"seeds: +-{z:.2f} x {100 * sd:.2g}% {obs.get('seed_sd_source') or 'spread between seeds'}")
        half = max(half, h2)
    return half, ("; ".join(why) if why else None)


def _load_fit(fit):
    from analysis.result import FitResult

    if isinstance(fit, (str, os.PathLike)):
        return FitResult.load(fit)
    if isinstance(fit, dict):
        return FitResult.from_dict(fit)
    return fit


def widen_interval(out: dict, ex: dict, backtest: dict | None, observed: dict | None, level: float = 0.95,
                   floor: float | None = None) -> None:
    """Widen out["ci"]["loss"] to `interval_floor`, keeping the bootstrap's as ci_bootstrap, saying how in ci_method.

    The widened interval never reaches below the data's known loss floor (`floor`), nor below 0.
    """
    half, why = interval_floor(backtest, observed, out["loss"], ex, level)
    boot = out["ci"].get("loss")
    out["ci_bootstrap"] = {"loss": boot} if boot else {}
    lo = out["loss"] - half if half else (boot[0] if boot else None)
    hi = out["loss"] + half if half else (boot[1] if boot else None)
    if boot:
        lo, hi = min(lo, boot[0]), max(hi, boot[1])
    if lo is not None:
        bound = max(float(floor or 0.0), 0.0)
        if half and lo < bound <= out["loss"] and (not boot or boot[0] >= bound):
            lo = bound
            why = (why or "") + f"; its lower end held at {'the loss floor' if floor else 0} ({bound:.4g})"
        out["ci"]["loss"] = [float(lo), float(hi)]
    out["ci_method"] = ("loss: the wider of the bootstrap percentile interval and " + why) if why else \
        "loss: bootstrap percentile interval (no backtest or seed spread recorded to bound it)"


def _widen(fit, out: dict, ex: dict, level: float) -> None:
    widen_interval(out, ex, fit.backtest, fit.observed, level, getattr(fit, "loss_floor", None))


def optimal(fit, flops: float, level: float = 0.95) -> dict:
    """Compute-optimal N, D and predicted loss at `flops`, with intervals and how far it extrapolates.

    The budget is met with the FLOPs per sample the fitted runs' models actually cost (c0 + c1 N,
    see `allocation`) where the fit recorded them, else with k N D. The loss interval is the
    bootstrap's, widened where it is narrower than the backtest or the seed spread allow
    (`interval_floor`).

    Args:
        fit: a `FitResult` (or its dict / fit.json path).
        flops: training compute C in FLOPs.

    Returns:
        {"flops", "n_opt", "d_opt", "loss", "k", "form", "ci": {"n_opt", "d_opt", "loss": [lo, hi]},
        "ci_bootstrap", "ci_method", "flops_per_sample", "extrapolation", "warnings"}
    """
    fit = _load_fit(fit)
    flops = float(flops)
    if not np.isfinite(flops) or flops <= 0:
        raise BadInput(f"--flops {flops}: compute must be a positive number of FLOPs")
    form = _form(fit.form)
    fps = fps_model(fit.observed)
    n, d = allocation(form, fit.params, flops, fit.k, fps)
    n, d = float(n), float(d)
    out = {"flops": flops, "n_opt": n, "d_opt": d, "loss": float(form.loss_at(fit.params, n, d)),
           "k": fit.k, "form": fit.form, "ci": {},
           "flops_per_sample": float(fps[0] + fps[1] * n) if fps else float(fit.k * n)}
    p = fit.bootstrap.params() if fit.bootstrap is not None else None
    if p is not None:
        with np.errstate(all="ignore"):
            ns, ds = allocation(form, p, flops, fit.k, fps)
            ls = form.loss_at(p, ns, ds)
        for key, v in (("n_opt", ns), ("d_opt", ds), ("loss", ls)):
            if (ci := interval(v, level)) is not None:
                out["ci"][key] = ci
    ex = extrapolation(fit.observed, n, d, flops)
    out["extrapolation"] = ex
    _widen(fit, out, ex, level)
    out["warnings"] = _extrapolation_warnings(fit, out)
    validate("optimal", out)
    return out


def predict(fit, n: float, d: float, level: float = 0.95) -> dict:
    """The law's loss at N = n parameters trained on D = d samples, with its interval and extrapolation.

    Returns:
        {"n", "d", "flops" (what such a run costs: (c0 + c1 N) D, else k N D), "loss", "ci": {"loss"},
        "ci_bootstrap", "ci_method", "form", "extrapolation", "warnings"}
    """
    fit = _load_fit(fit)
    for flag, v in (("--n", n), ("--d", d)):
        if not (np.isfinite(v) and v > 0):
            raise BadInput(f"{flag} {v}: must be a positive number")
    form = _form(fit.form)
    if "N" not in form.columns or "D" not in form.columns:
        raise BadInput(f"form {fit.form!r} is not a law in N and D; predict needs one (chinchilla, kaplan, ...)")
    fps = fps_model(fit.observed)
    c = float((fps[0] + fps[1] * n) * d) if fps else float(fit.k * n * d)
    out = {"n": float(n), "d": float(d), "flops": c, "loss": float(form.loss_at(fit.params, n, d)),
           "form": fit.form, "ci": {}}
    p = fit.bootstrap.params() if fit.bootstrap is not None else None
    if p is not None:
        with np.errstate(all="ignore"):
            ls = form.loss_at(p, n, d)
        if (ci := interval(ls, level)) is not None:
            out["ci"]["loss"] = ci
    ex = extrapolation(fit.observed, n, d, c)
    out["extrapolation"] = ex
    _widen(fit, out, ex, level)
    out["warnings"] = _extrapolation_warnings(fit, out)
    return out


def write_train_config(opt: dict, path, fit_source: str = "", training: dict | None = None) -> Path:
    """Write a `scaling train` YAML config for the compute-optimal N and D (atomically).

    Sets ``model.size`` (target parameter count) and ``data.samples``, and the training settings the fitted
    runs used (`training` from fit.json: lr as ``optim.lr``, global_batch_size as ``optim.batch_size``,
    precision and family under ``model``), so the run reproduces the conditions the law was measured under;
    the file is nested by RunConfig section (`scaling.config`). A setting that varied with model size takes
    the value of the fitted size nearest N_opt (in log N).
    """
    path = Path(path)
    ci = opt.get("ci", {})
    lines = [
        f"# Compute-optimal run for C = {opt['flops']:.4g} FLOPs "
        f"({opt['form']} fit{' of ' + fit_source if fit_source else ''};",
        (f"# {opt['flops_per_sample']:.4g} FLOPs per sample for a model of N_opt parameters: x D_opt = "
         f"{opt['flops_per_sample'] * opt['d_opt']:.4g} FLOPs)." if opt.get("flops_per_sample") else
         f"# k = {opt['k']:.4g} FLOPs per parameter per sample: "
         f"N_opt * D_opt * k = {opt['n_opt'] * opt['d_opt'] * opt['k']:.4g} FLOPs).")
        + f" Predicted loss {opt['loss']:.4g}"
        + (f", 95% interval [{ci['loss'][0]:.4g}, {ci['loss'][1]:.4g}]." if "loss" in ci else "."),
        f"# Use: scaling train --config {path.name} --data.source DATASET",
    ]
    sections: dict[str, list[str]] = {
        "model": [f"size: {float(opt['n_opt']):.6e}"],  # always a dot and a signed exponent: YAML 1.1 reads a float
        "data": [f"samples: {int(round(opt['d_opt']))}"],
        "optim": [],
    }
    for key, (section, cfg_key) in (("lr", ("optim", "lr")), ("global_batch_size", ("optim", "batch_size")),
                                    ("precision", ("model", "precision")), ("family", ("model", "family"))):
        v = _setting((training or {}).get(key), opt["n_opt"])
        if v is not None:
            sections[section].append(f"{cfg_key}: {json.dumps(v)}  # as in the fitted runs")
    for section, entries in sections.items():
        if entries:
            lines += [f"{section}:"] + [f"  {e}" for e in entries]
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
SINGLE_SEED = ("the fitted runs have one seed per configuration, so the interval has no measured spread between "
               "seeds: runs that switch a skill on at different times can differ by more than the scatter about "
               "the fitted law; run two or more seeds at a few configurations to measure it")
"""Said with every answer from a table without repeated configurations."""
FAR_AXIS = 3.0
"""An N or D more than this factor outside the fitted runs' range is named in a warning."""


def _extrapolation_warnings(fit, out: dict) -> list[str]:
    """Warnings on a prediction: far beyond the fitted runs, past the unique data, below anything observed."""
    obs = fit.observed or {}
    ex = out.get("extrapolation") or {}
    warns = []
    cmax = obs.get("flops_max")
    if cmax and out["flops"] > FAR * cmax:
        warns.append(f"C = {out['flops']:.3g} FLOPs is {out['flops'] / cmax:.3g}x the largest fitted run "
                     f"({cmax:.3g}); the prediction is a far extrapolation")
    for q, name in (("N", "N"), ("D", "D")):
        f = ex.get(q)
        if f is not None and f > FAR_AXIS:
            side = "above the largest" if ex["sides"][q] == "above" else "below the smallest"
            warns.append(f"{name} is {f:.3g}x {side}"
                         f" {name} of the fitted runs: the law is used far outside the runs that measured it")
    if ex.get("epochs") is not None and ex["epochs"] > 1.0:
        warns.append(f"D = {out.get('d_opt', out.get('d')):.3g} samples is {ex['epochs']:.3g}x "
                     "the unique samples of the data "
                     f"({ex['unique_samples']:.3g}): repeated data is worth less than fresh data, which this law "
                     "does not model")
    if obs.get("loss_min") is not None and out["loss"] < obs["loss_min"]:
        warns.append(f"predicted loss {out['loss']:.4g} is below every observed loss ({obs['loss_min']:.4g}): "
                     "no run has shown the law holds there")
    floor = getattr(fit, "loss_floor", None) or obs.get("loss_floor")
    if floor is not None and out["loss"] < floor:
        warns.append(f"predicted loss {out['loss']:.4g} is below the data's known loss floor ({floor:.4g}): impossible")
    if obs.get("seed_sd") is None and fit.n_points:
        warns.append(SINGLE_SEED)
    if obs.get("blind_loss") is not None and out["loss"] >= obs["blind_loss"]:
        warns.append(f"predicted loss {out['loss']:.4g} is no better than the blind baseline "
                     f"({obs['blind_loss']:.4g}): the model would not use its inputs")
    return warns
