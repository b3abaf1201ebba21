"""`FitResult`: what a fit found, as an object, a plain-JSON file (fit.json) and a text summary."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from analysis.atomic import write_atomic
from analysis.errors import BadInput

FORMAT_VERSION = 1


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
    """Refit without the top-compute runs: holdout (runs held out), are_mean, are_max (relative errors)."""
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
    format_version: int = FORMAT_VERSION
    """fit.json format version."""

    def to_dict(self) -> dict:
        """Plain-JSON dict (NaN becomes null)."""
        return _clean(asdict(self))

    def save(self, path) -> Path:
        """Write fit.json atomically (temporary name, then rename), after checking it against its contract."""
        from analysis.schema import validate

        doc = self.to_dict()
        validate("fit", doc)
        return write_atomic(path, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> "FitResult":
        """Inverse of `to_dict`."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path) -> "FitResult":
        """Read a fit.json; BadInput when it is missing or not one."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            return cls.from_dict(d)
        except FileNotFoundError:
            raise BadInput(f"{path}: no such fit file")
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{path}: not a fit.json ({type(exc).__name__})")

    def summary(self) -> str:
        """Readable text: parameters with intervals, exponents, objective, backtest, warnings."""
        lines = [f"{self.form} fit on {self.n_points} runs ({self.source})"]
        for name, v in self.params.items():
            lines.append(f"  {name:>8} = {_fmt(v)}{_ci(self.ci.get(name))}")
        for name, v in self.exponents.items():
            if v is not None:
                lines.append(f"  {name:>8} = {_fmt(v)}{_ci(self.ci.get(name))}   (N_opt ~ C^a, D_opt ~ C^b)"
                             if name == "a" else f"  {name:>8} = {_fmt(v)}{_ci(self.ci.get(name))}")
        lines.append(f"  summed Huber (delta 1e-3, log L) = {self.huber:.4e}")
        bt = self.backtest or {}
        if bt.get("are_mean") is not None:
            lines.append(f"  backtest: refit without the top {bt['holdout']} runs by compute; predicting them: "
                         f"mean |rel. error| {100 * bt['are_mean']:.2f}%, max {100 * bt['are_max']:.2f}%")
        if self.bootstrap.get("n"):
            lines.append(f"  intervals: 95% percentile bootstrap over runs ({self.bootstrap['n']} resamples)")
        for n in self.notes:
            lines.append(f"  note: {n}")
        for w in self.warnings:
            lines.append(f"  WARNING: {w}")
        return "\n".join(lines)


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "nan"
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
