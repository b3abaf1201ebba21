"""`FitResult`: what a fit found, as an object, a plain-JSON file (fit.json) and a text summary.

Its parts are typed, frozen sections (`Backtest`, `Bootstrap`, `Convergence`, `Success`, the
parameters' `Covariance`). Each section reads like the JSON object it writes (`Section`): code that
reads fit.json's plain objects (`fit.backtest["are_mean"]`, `fit.bootstrap.get("samples")`) reads
the section unchanged, and `to_dict` writes exactly those objects. A section given as its JSON object
(`dataclasses.replace(fit, backtest={...})`) is read into its type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from analysis.covariance import Covariance
from analysis.success import SuccessFit
from analysis.success import from_dict as success_from_dict
from vla_core.atomic import write_atomic
from vla_core.errors import BadInput

FORMAT_VERSION = 1


def _optional() -> dict:
    return {"optional": True}


class Section(Mapping):
    """A typed part of a fit that reads like the JSON object it writes.

    `section[key]`, `.get`, `in`, iteration, `dict(section)` and `==` see `to_dict()`: every field, except
    optional ones (metadata "optional") that are None, which the JSON leaves out.
    """

    def to_dict(self) -> dict:
        """The section's plain-JSON object."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.metadata.get("optional"):
                continue
            out[f.name] = _plain(v)
        return out

    @classmethod
    def from_dict(cls, d):
        """The section from its JSON object (unknown keys ignored); None for an empty or absent one."""
        if not d:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(d).items() if k in known})

    def __getitem__(self, key):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def _plain(v):
    if isinstance(v, Section):
        return v.to_dict()
    if isinstance(v, SuccessFit):
        return v.to_dict()
    if isinstance(v, Covariance):
        return asdict(v)
    return v


@dataclass(frozen=True, eq=False)
class Backtest(Section):
    """Refit without the top-compute runs, predicting them (`analysis.backtest.backtest`)."""

    holdout: int = 0
    """Runs held out (the top `holdout_frac` by compute)."""
    are_mean: float | None = None
    """Mean |L_hat - L| / L on them; None when the backtest was not run."""
    are_max: float | None = None
    """Largest |L_hat - L| / L on them."""
    flops_min: float | None = field(default=None, metadata=_optional())
    """Smallest compute among the held-out runs."""
    skipped: str | None = field(default=None, metadata=_optional())
    """Why the backtest was not run."""
    points: int | None = field(default=None, metadata=_optional())
    """Configurations held out, when held-out runs repeat one (seeds of one N and D)."""
    point_are_mean: float | None = field(default=None, metadata=_optional())
    """Mean relative error against each configuration's mean loss."""
    point_are_max: float | None = field(default=None, metadata=_optional())
    """Largest relative error against a configuration's mean loss."""
    seed_spread: float | None = field(default=None, metadata=_optional())
    """Mean |L - its configuration's mean| / that mean over the held-out runs."""


@dataclass(frozen=True, eq=False)
class Bootstrap(Section):
    """The bootstrap behind the intervals: every resample's refit, in natural parameters."""

    n: int = 0
    """Resamples (0 in a hand-written file that does not say)."""
    seed: int | None = field(default=None, metadata=_optional())
    """Their seed."""
    names: list[str] = field(default_factory=list)
    """The parameters of each row of `samples`, in order (held ones included, at their value)."""
    samples: list = field(default_factory=list, repr=False)
    """One row of natural parameters per resample."""
    not_converged: int | None = field(default=None, metadata=_optional())
    """Refits still moving at their iteration cap."""
    grid_refits: int | None = field(default=None, metadata=_optional())
    """Resamples also refitted from random starts of the whole grid."""
    other_basin: int | None = field(default=None, metadata=_optional())
    """Refits that ended in another basin of the objective than the full-data fit."""
    starts: int | None = field(default=None, metadata=_optional())
    """Starts every resample was refitted from (distinct optima known)."""
    level: float | None = field(default=None, metadata=_optional())
    """Coverage of the percentile intervals read off the samples (None in a file that does not record it: 0.95)."""

    def params(self) -> dict[str, np.ndarray] | None:
        """{name: (n,) values} of every resample, None without samples."""
        if not self.samples:
            return None
        s = np.asarray(self.samples, float)
        return {name: s[:, i] for i, name in enumerate(self.names)}

    def column(self, name: str) -> np.ndarray | None:
        """The finite values of parameter `name` over the resamples, None when it has none."""
        p = self.params()
        if p is None or name not in p:
            return None
        v = p[name]
        return v[np.isfinite(v)]


@dataclass(frozen=True, eq=False)
class Convergence(Section):
    """Whether the fit and its bootstrap refits converged."""

    converged: bool | None = None
    """Whether the main fit's final polish stopped on a tolerance before its iteration cap."""
    iterations: int | None = None
    """Iterations of that polish."""
    grad_max: float | None = None
    """Largest |gradient| component of the objective at the optimum."""
    bootstrap_not_converged: int | None = field(default=None, metadata=_optional())
    """Bootstrap refits still moving at their iteration cap."""


@dataclass(frozen=True, eq=False)
class Success(Section):
    """Success-rate laws of a table with success rates (`analysis.success`)."""

    column: str = "success_rate"
    """The results-table column of success rates."""
    floor: float = 0.0
    """Success with no useful policy (the blind baseline's, else 0)."""
    vs_compute: SuccessFit | None = None
    """Success against log10 compute."""
    vs_loss: SuccessFit | None = None
    """Success against loss."""

    @classmethod
    def from_dict(cls, d):
        if not d:
            return None
        parts = {k: success_from_dict(d[k]) if d.get(k) else None for k in ("vs_compute", "vs_loss")}
        return cls(d.get("column", "success_rate"), float(d.get("floor", 0.0)), **parts)


@dataclass(frozen=True)
class Estimate:
    """One parameter of a fit: its value, standard error and bootstrap interval."""

    value: float
    """Best-fit value."""
    stderr: float | None
    """Standard error from the curvature of the objective at the optimum (`analysis.covariance`); None for a
    held parameter or when the covariance could not be computed."""
    ci: tuple[float, float] | None
    """Bootstrap percentile interval; None without a bootstrap."""
    held: bool = False
    """Held at its value instead of fitted."""


SECTIONS = {"backtest": Backtest, "bootstrap": Bootstrap, "convergence": Convergence, "success": Success}
"""FitResult's typed sections by field name (written as {} when absent)."""


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
    backtest: Backtest | None = None
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
    bootstrap: Bootstrap | None = None
    """Bootstrap: n resamples, seed, names, samples (rows of natural parameters); None without one."""
    optimum: dict = field(default_factory=dict)
    """Compute-optimal choice at the largest compute in the table (see `analysis.allocation.optimal`)."""
    source: str = ""
    """Where the table came from."""
    at_bound: dict[str, str] = field(default_factory=dict)
    """Parameters at an edge of their domain ({"E": "lower"}): not determined by the runs, one-sided intervals."""
    convergence: Convergence | None = None
    """converged, iterations, grad_max of the main fit; bootstrap_not_converged (refits at their cap)."""
    observed: dict = field(default_factory=dict)
    """The range fitted: loss_min, flops_max, n_max, d_max, and blind_loss (input-free baseline) when present."""
    training: dict = field(default_factory=dict)
    """Training settings of the fitted runs (lr, global_batch_size, precision, ...; {"by_n": {N: v}} when
    they vary with model size); `scaling optimal --emit-config` writes them into the run config."""
    success: Success | None = None
    """Success-rate laws when the table has success rates: column, floor, vs_compute, vs_loss
    (see `analysis.success`); None otherwise."""
    approaches: dict = field(default_factory=dict)
    """Approaches 1, 2 and 3 on the same runs (`analysis.approaches.compare_approaches`): each one's a with
    its interval and whether the data meets its assumptions, whether they agree, which to trust."""
    fixed: dict[str, float] = field(default_factory=dict)
    """Parameters held at a value instead of fitted ({"E": 1.6}); also in `params`, with intervals [v, v]."""
    e_min: float | None = None
    """Lower bound the floor parameter (E) was fitted above (E = e_min + exp(e)); None: unbounded (>= 0)."""
    loss_floor: float | None = None
    """Known lower bound on the loss (the table's loss_floor column, or given); None when unknown."""
    stderr: dict[str, float | None] = field(default_factory=dict)
    """Standard error of each parameter and derived exponent from the curvature of the objective at the
    optimum (`analysis.covariance`); None for a held parameter or when the covariance was not computed."""
    covariance: Covariance | None = None
    """Covariance matrix of the free parameters (natural units) at the optimum, and how it was computed."""
    format_version: int = FORMAT_VERSION
    """fit.json format version."""

    def __post_init__(self):
        # A section given as its JSON object ({} for none) is read into its type.
        for key, section in SECTIONS.items():
            v = getattr(self, key)
            if v is not None and not isinstance(v, section):
                object.__setattr__(self, key, section.from_dict(v))
        if self.covariance is not None and not isinstance(self.covariance, Covariance):
            object.__setattr__(self, "covariance", Covariance.from_dict(self.covariance))

    @property
    def estimates(self) -> dict[str, Estimate]:
        """Each parameter's value, standard error and bootstrap interval."""
        return {k: Estimate(float(v), (self.stderr or {}).get(k), _pair(self.ci.get(k)), k in (self.fixed or {}))
                for k, v in self.params.items()}

    def to_dict(self) -> dict:
        """Plain-JSON dict (NaN becomes null; an absent section {})."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = {} if v is None and (f.name in SECTIONS or f.name == "covariance") else _plain(v)
        return _clean(out)

    def save(self, path) -> Path:
        """Write fit.json atomically (temporary name, then rename), after checking it against its contract."""
        from vla_core.schema import validate

        doc = self.to_dict()
        validate("fit", doc)
        return write_atomic(path, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict, where: str = "fit") -> FitResult:
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
        for key in ("optimum", "at_bound", "observed", "training", "columns", "fixed", "approaches", "stderr"):
            if d.get(key) is None:
                d[key] = {}
        for key, section in SECTIONS.items():
            d[key] = section.from_dict(d.get(key))
        d["covariance"] = Covariance.from_dict(d.get("covariance"))
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path) -> FitResult:
        """Read a fit.json; BadInput (one line) when it is missing, not JSON, or not a fit."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise BadInput(f"{path}: no such fit file") from None
        except IsADirectoryError:
            raise BadInput(f"{path}: a directory, not a fit.json") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadInput(f"{path}: not a fit.json (not valid JSON: {str(exc).splitlines()[0][:80]})") from None
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
        cv = self.convergence
        if cv is not None:
            lines.append(f"  converged: {'yes' if cv.converged else 'NO'} ({cv.iterations} polish iterations"
                         + (f"; {cv.bootstrap_not_converged} of {self.bootstrap.n if self.bootstrap else None} "
                            "bootstrap refits at their cap" if cv.bootstrap_not_converged is not None else "") + ")")
        bt = self.backtest
        if bt is not None and bt.are_mean is not None:
            lines.append(f"  backtest: refit without the top {bt.holdout} runs by compute; predicting them: "
                         f"mean |rel. error| {100 * bt.are_mean:.2f}%, max {100 * bt.are_max:.2f}%")
            if seeds := seed_summary(bt):
                lines.append(f"    {seeds}")
        if self.bootstrap is not None and self.bootstrap.n:
            lines.append(f"  intervals: {coverage_text(self.bootstrap.level)} percentile bootstrap over runs "
                         f"({self.bootstrap.n} resamples)")
        for part, label in (("vs_compute", "log10 FLOPs"), ("vs_loss", "loss")):
            sp = getattr(self.success, part) if self.success is not None else None
            if sp:
                p, ci = sp.params, sp.ci or {}
                lines.append(f"  success vs {label}: mid {_fmt(p['mid'])}{_ci(ci.get('mid'))}, slope {_fmt(p['slope'])}"
                             f"{_ci(ci.get('slope'))}, ceiling {_fmt(p['ceiling'])}{_ci(ci.get('ceiling'))}; "
                             f"rmse {sp.rmse:.3f} on {sp.n_points} runs")
        for key, app in sorted((self.approaches or {}).get("approaches", {}).items()):
            a, ci = app.get("a"), app.get("ci")
            name = {"1": "envelope", "2": "IsoFLOP parabolas", "3": "this fit"}.get(key, key)
            met = "assumptions met" if app.get("assumptions_met") else "assumptions NOT met"
            lines.append(f"  approach {key} ({name}): a = {_fmt(a)}{_ci(ci)}; {met}: {app.get('why', '')}")
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
                     ("convergence", dict), ("columns", dict), ("success", dict), ("fixed", dict), ("approaches", dict),
                     ("stderr", dict), ("covariance", dict)):
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


def coverage_text(level: float | None) -> str:
    """An interval's coverage as text ("95%"); None (not recorded) is 95%."""
    return f"{100 * (0.95 if level is None else level):.0f}%"


def _pair(c) -> tuple[float, float] | None:
    return (float(c[0]), float(c[1])) if c else None


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
