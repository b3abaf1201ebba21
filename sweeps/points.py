"""The vocabulary of planning, at the bottom of ``sweeps``: model points, planned runs, run keys, and the
model a spec's run builds (`model_of`: the training path, `scaling.model.family.run_model`).

``plan`` (the designs) and ``wsd`` (branching) both build on it; neither imports the other's internals.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeps.spec import SweepSpec

if TYPE_CHECKING:
    from scaling.model.family import Dims


@dataclass(frozen=True)
class ModelPoint:
    """One rung of the model ladder, resolved."""

    size: str | float
    """As written in the spec: preset name or target parameter count."""
    n_params: int
    """Total parameters."""
    n_params_nonembed: int
    """Non-embedding parameters."""
    flops_per_sample: int
    """Training FLOPs per sample (forward + backward)."""
    shape: dict = field(default_factory=dict, compare=False)
    """d_model, n_layers, n_heads of the resolved config."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of the sweep."""

    key: str
    """Stable key: hash of the resolved run config (12 hex digits)."""
    phase: str
    """``main`` (a point of the design), ``stable`` (a WSD stable phase), ``cooldown`` (a WSD branch)
    or ``blind`` (the input-free baseline: largest N and D, images and instruction withheld)."""
    size: str | float
    """Model size as written in the spec."""
    n_params: int
    """Total parameters N."""
    samples: int
    """Training samples D."""
    seed: int
    """Run seed."""
    flops: float
    """Training compute of this run (FLOPs) = flops_per_sample * samples (cooldowns: their own part)."""
    flops_per_sample: int
    """Training FLOPs per sample."""
    config: dict
    """RunConfig fields except ``data`` and ``out`` (local to each machine)."""
    budget: float | None = None
    """IsoFLOP budget C this run belongs to (FLOPs), None for grid runs."""
    depends_on: str | None = None
    """Key of the run that must complete first (the WSD stable phase of a cooldown)."""
    branch: dict | None = None
    """WSD cooldown: ``{"from_key": stable run key, "checkpoint": checkpoint name}``."""
    est_seconds: float | None = None
    """Estimated wall time from the measured calibration (seconds)."""
    validation: dict | None = None
    """``phase = validation`` only: predicted_loss, predicted_lo, predicted_hi (printed before the run),
    recommended (the compute-optimal size, else an alternative at the same compute) and fit (whose answer)."""
    precision: str | None = None
    """The precision the run trains in where ``config`` says ``auto``: resolved once per model size when
    the sweep is planned (``sweeps.auto_precision``); the key keeps ``auto``. None: the config's own."""
    family: str | None = None
    """The model family of a ``families:`` spec's run (also in ``config``, so in the key); None for a
    one-family spec (its family is ``config``'s, default vla)."""
    group: str | None = None
    """``seeds_together``: the points that differ only in seed share a group and train together, in one
    process (``g-`` and 12 hex digits); None: the run trains alone."""


def run_key(config: dict, data_identity: Any) -> str:
    """Stable key of a run: sha256 of its resolved config and data identity, 12 hex digits.

    The code version is recorded beside the key (in the point and in ``result.json``), not in it, so
    that a committed study's keys stay valid across commits (``sweep run --only KEY``); a sweep never
    reuses a run of other code silently (``sweeps.generation``, and the worker moves such a run aside).
    """
    blob = json.dumps({"config": config, "data": data_identity}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def seed_group(r: PlannedRun) -> str:
    """The group of ``r`` among the points that differ from it only in seed (their config without the seed,
    phase and branch point)."""
    config = {k: v for k, v in r.config.items() if k != "seed"}
    blob = json.dumps({"config": config, "phase": r.phase, "family": r.family,
                       "branch": (r.branch or {}).get("checkpoint")}, sort_keys=True, default=str)
    return "g-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def base_config(spec: SweepSpec, size: str | float, samples: int, seed: int, lrs: dict | None) -> dict:
    """The RunConfig fields a point sets: the spec's training settings, its N, D, seed and lr."""
    cfg = dict(spec.train_dict)
    cfg.update(size=size, samples=int(samples), seed=int(seed), wandb_group=spec.name)
    if lrs is not None and str(size) in lrs:
        cfg["lr"] = float(lrs[str(size)])
    return cfg


def model_of(spec: SweepSpec, size: str | float, dims: Dims):
    """The model a run of this spec builds for ``size`` (a `scaling.model.family.ResolvedModel`), by the
    path training takes: the RunConfig the spec's runs of that size get (`base_config`, as the worker
    writes it to run.yaml; samples, seed and lr do not shape the model) resolved by
    `scaling.model.family.run_model` on the data's `dims` (`sweeps.data_source.data_dims`); a family
    module is also looked up in the spec's folder.

    Raises:
        BadInput: a family that cannot be loaded, or a size it cannot build (naming the spec).
    """
    from pathlib import Path

    from scaling.config import from_mapping
    from scaling.model.family import run_model
    from vla_core.errors import BadInput

    where = f"{spec.source or 'spec'}: models: {size!r}"
    search = [Path(spec.source).resolve().parent] if spec.source else []
    try:
        cfg = from_mapping({**base_config(spec, size, 1, spec.seeds[0], None), "data": "(plan)"})
        return run_model(cfg, dims, search)
    except BadInput as exc:
        raise BadInput(f"{where}: {str(exc).splitlines()[0]}") from None
    except (KeyError, ValueError) as exc:
        raise BadInput(f"{where}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
