"""`FitResult`: what a fit found, as an object, a plain-JSON file (fit.json) and a text summary."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vla_core.atomic import write_atomic
from vla_core.errors import BadInput

FORMAT_VERSION = 1


def seed_summary(bt: dict) -> str | None:
    """One sentence on the backtest against configuration means, or None without repeated configurations."""
    if bt.get("points") is None:
        return None
    return (f"against the mean loss of each of the {bt['points']} configurations (seeds averaged): "
            f"{100 * bt['point_are_mean']:.2f}%, max {100 * bt['point_are_max']:.2f}%; the seeds spread "
            f"{100 * bt['seed_spread']:.2f}% about their means")


@dataclass(frozen=True)
class FitResult:
    """One law fitted to one results table (the fit.json of docs/contracts.md)."""

    form: str
    """Law form name ("chinchilla", "kaplan", "power_n", ...)."""
    params: dict[str, float]
    """Best-fit parameters by the form's own names (E, A, B, alpha, beta for Chinchilla)."""
    ci: dict[str, list[float]]
    """95% bootstrap intervals [lo, hi] for every parameter and derived quantity (empty without bootstrap)."""
    exponents: dict[str, float | None]
    """Compute-optimal exponents: N_opt ~ C^a, D_opt ~ C^b (None for one-variable forms)."""
    huber: float
    """Summed Huber objective (delta 1e-3, log residuals) at the optimum."""
    n_points: int
    """Runs fitted."""
    backtest: dict[str, float | int | None]
    """Refit without the top-compute runs: holdout (runs held out), are_mean, are_max (relative errors);
    with seeds, also points, point_are_mean, point_are_max (against configuration means), seed_spread."""
    warnings: list[str] = field(default_factory=list)
    """Things a reader must know before trusting the numbers (poorly identified parameters, ...)."""
    notes: list[str] = field(default_factory=list)
    """What was done on the way (rows dropped, columns used)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Results-table column used for each quantity (N, D, C, loss)."""
    k: float = 6.0
    """FLOPs per parameter per sample used to turn compute into N * D."""
    k_measured: bool = False
    """Whether `k` was measured from the table's FLOPs column."""
    bootstrap: dict = field(default_factory=dict)
    """Bootstrap: {"n": resamples, "seed", "names": [...], "samples": [[...], ...] natural parameters}."""
    optimum: dict = field(default_factory=dict)
    """Compute-optimal choice at the largest compute in the table (see `analysis.allocation.optimal`)."""
    source: str = ""
    """Where the table came from."""
    at_bound: dict[str, str] = field(default_factory=dict)
    """Parameters at an edge of their domain ({"E": "lower"}): not determined by the runs, one-sided intervals."""
    convergence: dict = field(default_factory=dict)
    """converged, iterations, grad_max of the main fit; bootstrap_not_converged (refits at their cap)."""
    observed: dict = field(default_factory=dict)
    """The range fitted: loss_min, flops_max, n_max, d_max, and blind_loss (input-free baseline) when present."""
    training: dict = field(default_factory=dict)
    """Training settings of the fitted runs (lr, global_batch_size, precision, ...; {"by_n": {N: v}} when
    they vary with model size); `scaling optimal --emit-config` writes them into the run config."""
    success: dict = field(default_factory=dict)
    """Success-rate laws when the table has success rates: {"column", "floor", "vs_compute", "vs_loss"}
    (see `analysis.success`); empty otherwise."""
    approaches: dict = field(default_factory=dict)
    """Approaches 1, 2 and 3 on the same runs (`analysis.approaches.compare_approaches`): each one's a with
    its interval and whether the data meets its assumptions, whether they agree, which to trust."""
    fixed: dict[str, float] = field(default_factory=dict)
    """Parameters held at a value instead of fitted ({"E": 1.6}); also in `params`, with intervals [v, v]."""
    e_min: float | None = None
    """Lower bound the floor parameter (E) was fitted above (E = e_min + exp(e)); None: unbounded (>= 0)."""
    loss_floor: float | None = None
    """Known lower bound on the loss (the table's loss_floor column, or given); None when unknown."""
    format_version: int = FORMAT_VERSION
    """fit.json format version."""

    def to_dict(self) -> dict:
        """Plain-JSON dict (NaN becomes null)."""
        return _clean(asdict(self))

    def save(self, path) -> Path:
        """Write fit.json atomically (temporary name, then rename), after checking it against its contract."""
        from vla_core.schema import validate

        doc = self.to_dict()
        validate("fit", doc)
        return write_atomic(path, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict, where: str = "fit") -> "FitResult":
        """Inverse of `to_dict`; BadInput naming the first thing wrong when `d` is not a fit.

        Intervals written as null (an open end, e.g. [0, null]) come back as -inf / inf.
        """
        _check(d, where)
        known = {f for f in cls.__dataclass_fields__}
        d = dict(d)
        d["ci"] = {k: [-math.inf if v[0] is None else float(v[0]), math.inf if v[1] is None else float(v[1])]
                   for k, v in (d.get("ci") or {}).items()}
        # A hand-written fit.json needs only form and params; the rest has a meaning when absent.
        if not isinstance(d.get("exponents"), dict):
            from analysis.forms import FORMS

            d["exponents"] = FORMS[d["form"]].exponents(d["params"])
        d.setdefault("huber", math.nan)
        d.setdefault("n_points", 0)
        d.setdefault("backtest", {})
        for key in ("bootstrap", "optimum", "at_bound", "convergence", "observed", "training", "columns", "success",
                    "fixed", "approaches"):
            if d.get(key) is None:
                d[key] = {}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path) -> "FitResult":
        """Read a fit.json; BadInput (one line) when it is missing, not JSON, or not a fit."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise BadInput(f"{path}: no such fit file")
        except IsADirectoryError:
            raise BadInput(f"{path}: a directory, not a fit.json")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: not a fit.json (not valid JSON: {str(exc).splitlines()[0][:80]})")
        return cls.from_dict(d, str(path))

    def summary(self) -> str:
        """Readable text: parameters with intervals, exponents, objective, backtest, warnings."""
        lines = [f"{self.form} fit on {self.n_points} runs ({self.source})"]
        for name, v in self.params.items():
            edge = f"   (at its {self.at_bound[name]} bound)" if name in self.at_bound else ""
            if name in (self.fixed or {}):
                edge = "   (held, not fitted)"
            elif self.e_min is not None and name in self.at_bound:
                edge = f"   (at its lower bound e_min = {_fmt(self.e_min)})"
            lines.append(f"  {name:>8} = {_fmt(v)}{_ci(self.ci.get(name))}{edge}")
        for name, v in self.exponents.items():
            if v is not None:
                lines.append(f"  {name:>8} = {_fmt(v)}{_ci(self.ci.get(name))}   (N_opt ~ C^a, D_opt ~ C^b)"
                             if name == "a" else f"  {name:>8} = {_fmt(v)}{_ci(self.ci.get(name))}")
        lines.append(f"  summed Huber (log L) = {self.huber:.4e}")
        cv = self.convergence or {}
        if cv:
            lines.append(f"  converged: {'yes' if cv.get('converged') else 'NO'} ({cv.get('iterations')} polish iterations"
                         + (f"; {cv['bootstrap_not_converged']} of {self.bootstrap.get('n')} bootstrap refits at their cap"
                            if cv.get("bootstrap_not_converged") is not None else "") + ")")
        bt = self.backtest or {}
        if bt.get("are_mean") is not None:
            lines.append(f"  backtest: refit without the top {bt['holdout']} runs by compute; predicting them: "
                         f"mean |rel. error| {100 * bt['are_mean']:.2f}%, max {100 * bt['are_max']:.2f}%")
            if seeds := seed_summary(bt):
                lines.append(f"    {seeds}")
        if self.bootstrap.get("n"):
            lines.append(f"  intervals: 95% percentile bootstrap over runs ({self.bootstrap['n']} resamples)")
        for part, label in (("vs_compute", "log10 FLOPs"), ("vs_loss", "loss")):
            sp = (self.success or {}).get(part)
            if sp:
                p, ci = sp["params"], sp.get("ci", {})
                lines.append(f"  success vs {label}: mid {_fmt(p['mid'])}{_ci(ci.get('mid'))}, slope {_fmt(p['slope'])}"
                             f"{_ci(ci.get('slope'))}, ceiling {_fmt(p['ceiling'])}{_ci(ci.get('ceiling'))}; "
                             f"rmse {sp['rmse']:.3f} on {sp['n_points']} runs")
        for key, app in sorted((self.approaches or {}).get("approaches", {}).items()):
            a, ci = app.get("a"), app.get("ci")
            name = {"1": "envelope", "2": "IsoFLOP parabolas", "3": "this fit"}.get(key, key)
            lines.append(f"  approach {key} ({name}): a = {_fmt(a)}{_ci(ci)}; "
                         f"{'assumptions met' if app.get('assumptions_met') else 'assumptions NOT met'}: {app.get('why', '')}")
        if (self.approaches or {}).get("trust"):
            lines.append(f"  approaches: {self.approaches['trust']}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        for w in self.warnings:
            lines.append(f"  WARNING: {w}")
        return "\n".join(lines)


_NUM = (int, float)


def _check(d, where: str) -> None:
    """Raise BadInput with one line when `d` is not a usable fit (wrong type, missing key, bad value)."""
    from analysis.forms import FORMS

    def bad(msg):
        raise BadInput(f"{where}: not a usable fit.json: {msg}")

    def num(v):
        return isinstance(v, _NUM) and not isinstance(v, bool)

    if not isinstance(d, dict):
        bad(f"expected a JSON object, found a {type(d).__name__}")
    form = d.get("form")
    if not isinstance(form, str):
        bad("no 'form' (the law's name)")
    if form not in FORMS:
        bad(f"unknown form {form!r} (known: {', '.join(FORMS)})")
    params = d.get("params")
    if not isinstance(params, dict):
        bad("'params' must be an object of numbers")
    for name in FORMS[form].params:
        if name not in params:
            bad(f"'params' lacks {name!r}, which the {form} law needs")
        if not num(params[name]) or not math.isfinite(params[name]):
            bad(f"params.{name} must be a finite number, found {params[name]!r}")
    k = d.get("k", 6.0)
    if not num(k) or not k > 0:
        bad(f"'k' (FLOPs per parameter per sample) must be a positive number, found {k!r}")
    for key, typ in (("ci", dict), ("exponents", dict), ("backtest", dict), ("bootstrap", dict), ("optimum", dict),
                     ("warnings", list), ("notes", list), ("at_bound", dict), ("observed", dict), ("training", dict),
                     ("convergence", dict), ("columns", dict), ("success", dict), ("fixed", dict), ("approaches", dict)):
        if key in d and d[key] is not None and not isinstance(d[key], typ):
            bad(f"{key!r} must be a JSON {'object' if typ is dict else 'array'}, found {type(d[key]).__name__}")
    for name, v in (d.get("ci") or {}).items():
        if not (isinstance(v, list) and len(v) == 2 and all(x is None or num(x) for x in v)):
            bad(f"ci.{name} must be [lo, hi], found {v!r}")
    for name, v in (d.get("fixed") or {}).items():
        if name not in params or not num(v) or not math.isfinite(v):
            bad(f"fixed.{name} must name a parameter and hold a finite number, found {v!r}")
    for key in ("e_min", "loss_floor"):
        v = d.get(key)
        if v is not None and not (num(v) and math.isfinite(v)):
            bad(f"{key!r} must be a finite number or null, found {v!r}")
    if not isinstance(d.get("n_points", 0), int):
        bad("'n_points' must be an integer")
    if not num(d.get("huber", 0.0)) and d.get("huber") is not None:
        bad("'huber' must be a number")
    bs = d.get("bootstrap") or {}
    if bs.get("samples") is not None:
        names, samples = bs.get("names"), bs["samples"]
        if not (isinstance(names, list) and all(n in params for n in names)):
            bad("bootstrap.names must list parameter names")
        if not (isinstance(samples, list) and all(isinstance(r, list) and len(r) == len(names) and
                                                  all(x is None or num(x) for x in r) for r in samples)):
            bad(f"bootstrap.samples must be rows of {len(names)} numbers")
    for part in ("vs_compute", "vs_loss"):
        sp = (d.get("success") or {}).get(part)
        if sp is not None and not (isinstance(sp, dict) and isinstance(sp.get("params"), dict) and
                                   all(num(sp["params"].get(k)) for k in ("mid", "slope", "ceiling"))):
            bad(f"success.{part} must hold params mid, slope and ceiling as numbers")
    for key in ("observed", "training"):
        for name, v in (d.get(key) or {}).items():
            if key == "observed" and not (v is None or num(v)):
                bad(f"observed.{name} must be a number, found {v!r}")


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.4e}"


def _ci(c) -> str:
    return f"   [{_fmt(c[0])}, {_fmt(c[1])}]" if c else ""


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item() if getattr(x, "ndim", 0) == 0 else x.tolist()
        return _clean(x) if isinstance(x, list) else x if not (isinstance(x, float) and not math.isfinite(x)) else None
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
