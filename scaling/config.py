"""`RunConfig`: everything one training run needs, as a frozen dataclass of sections.

A run's settings come in sections, each a frozen dataclass (`SECTIONS`): ``data``, ``model``, ``optim``,
``schedule``, ``hardware``, ``validation``, ``evaluation``, ``logging``, ``checkpointing``; ``out``,
``run_id`` and ``seed`` name and seed the run and belong to none. Code reads ``cfg.optim.lr``,
``cfg.schedule.warmup_steps`` and so on. A setting with a unit carries it in its name
(``every_samples``, ``every_steps``, ``every_minutes``, ``checkpoint_at_samples``, ``warmup_steps`` /
``warmup_frac``), and a model's shape has one spelling: ``model.size`` is a preset, a parameter count or
``WIDTHxBLOCKS[xHEADS]``.

A YAML file nests the sections (``optim: {lr: 1e-3}``) or gives dotted keys (``optim.lr: 1e-3``); the
command line has one flag per field, ``--SECTION.NAME`` with hyphens (``--optim.lr``,
``--checkpointing.every-steps``; ``--out``, ``--run-id``, ``--seed``), generated from the dataclasses.
Defaults < YAML file < command-line flags.

Old files and flags still load: the flat names of the single-dataclass config (``lr``, ``warmup``,
``val_every``, ``d_model``, ...; `LEGACY`) are read through one mapping, old name -> new field with its
value conversion: ``warmup`` below 1 is ``schedule.warmup_frac``, else ``schedule.warmup_steps``;
``d_model`` / ``n_layers`` / ``n_heads`` fold into the shape ``model.size = "WIDTHxBLOCKSxHEADS"``.
The same mapping, backwards, gives `RunConfig.flat_legacy`: the flat form the sweeps hash into run keys
(`sweeps.points.run_key`) and keep in their plans, so committed keys do not change.

Which settings may change when a run resumes follows from the sections (`RESUMABLE_SECTIONS`).
Every run writes its fully resolved config to ``RUN_DIR/config.yaml`` (nested by section), which doubles
as the command to resume or reproduce it (``scaling train --config RUN_DIR/config.yaml``). Resolved means
that nothing in it is left to the machine, the environment or the size solver of the day: the model's
exact shape (``model.size: WIDTHxBLOCKSxHEADS``), the accelerator, the torch threads and the precision
that ran. What was asked instead, where it differs, is kept under ``requested`` (skipped when the file
is loaded). Values that follow from the file alone (a warmup fraction, ``validation.every_samples: 0``)
stay as given.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from vla_core.atomic import write_atomic
from vla_core.errors import BadInput

PRECISIONS = ("bf16-mixed", "16-mixed", "32-true", "auto")
SCHEDULES = ("cosine", "wsd")
STRATEGIES = ("auto", "ddp", "fsdp")
FSDP_SHARDING = ("full", "hybrid", "grad_op")
ACCELERATORS = ("auto", "cpu", "gpu")
LOGGERS = ("csv", "wandb")
HEADS = ("discrete", "mse", "flow")


def _flag(name: str) -> str:
    """The command-line spelling of a dotted field name: ``optim.min_lr_ratio`` -> ``optim.min-lr-ratio``."""
    return name.replace("_", "-")


def _positive(section: str, obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and value > 0):
            raise BadInput(f"train: --{_flag(f'{section}.{name}')} must be a positive number, got {value!r}")


def _non_negative(section: str, obj, *names: str) -> None:
    # Seeds feed numpy's SeedSequence, which refuses negatives at run time: refuse them here.
    for name in names:
        if getattr(obj, name) < 0:
            raise BadInput(f"train: --{_flag(f'{section}.{name}')} must be >= 0, got {getattr(obj, name)!r}")


def _positive_or_none(section: str, obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise BadInput(f"train: --{_flag(f'{section}.{name}')} must be positive, got {value!r}")


def _choice(section: str, obj, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in allowed:
        raise BadInput(f"train: --{_flag(f'{section}.{name}')} must be one of {'|'.join(allowed)}, "
                       f"got {value!r}{_hint(str(value), allowed)}")


@dataclass(frozen=True)
class DataSettings:
    """What the run trains on, and how much of it."""

    source: Any = None
    """Dataset directory (str), or a mixture spec {"mixture": [{"path": ..., "weight": ...}]}."""
    samples: int = 10_000
    """D, the training budget in samples (frames); steps = ceil(samples / optim.batch_size)."""
    blind: bool = False
    """Withhold the image and the instruction (the input-free baseline: proprioception only)."""

    def __post_init__(self) -> None:
        if isinstance(self.source, os.PathLike):
            object.__setattr__(self, "source", os.fspath(self.source))  # keep the YAML plain
        if self.source is None:
            raise BadInput("train: --data.source is required (a dataset directory or a mixture spec)")
        _positive("data", self, "samples")


@dataclass(frozen=True)
class ModelSettings:
    """Which model: its family, its size or shape, its options and the precision it computes in."""

    size: Any = "debug"
    """Model size, the one way to give a shape: a preset name ("debug", "1m", ...), a target parameter count
    (1e6, "30k") or a shape "WIDTHxBLOCKS" ("48x2", the solver's head width) or "WIDTHxBLOCKSxHEADS"."""
    family: str = "vla"
    """Model family (`scaling.model.family`): vla (the built-in transformer), conv (a convolutional
    behaviour-cloning policy) or MODULE:ATTR, a factory(size, dims) -> nn.Module imported from sys.path,
    $SCALING_FAMILY_PATH or the current directory. For a family other than vla, `size` is a target
    parameter count (30000, 3e4 or 30k) and the vla options below stay at their defaults."""
    chunk: int = 1
    """Action chunk: the model predicts the next `chunk` actions (steps)."""
    head: str = "discrete"
    """Action head: discrete (256-bin cross-entropy) | mse | flow."""
    patch_size: int | None = None
    """Image patch side (pixels; must divide the image size); None picks about an 8x8 patch grid.
    Like `keypoints`, a property of the model family: the size solver fits N around it."""
    keypoints: int = 0
    """Spatial-softmax keypoint tokens from a small conv stem (0 = none; `ModelConfig.keypoints`).
    A property of the model family: the same at every size of a sweep."""
    film: bool = False
    """Condition the keypoint stem on the instruction with FiLM (needs `keypoints`; `ModelConfig.film`).
    A property of the model family, like `keypoints`."""
    mup_base_width: int | None = None
    """muP-style width scaling: the width (channels) at which optim.lr was tuned (None = standard
    parametrisation)."""
    precision: str = "bf16-mixed"
    """Lightning precision: bf16-mixed | 16-mixed | 32-true | auto (the fastest for the device, measured once
    per machine: `scaling.hardware.resolve_precision`; result.json records the precision that ran)."""

    def __post_init__(self) -> None:
        _size_value(self.size)  # raises on nonsense
        _positive("model", self, "chunk")
        _non_negative("model", self, "keypoints")
        _positive_or_none("model", self, "patch_size", "mup_base_width")
        _choice("model", self, "head", HEADS)
        _choice("model", self, "precision", PRECISIONS)
        if not isinstance(self.family, str) or not self.family.strip():
            raise BadInput(f"train: --model.family must be a family name or MODULE:ATTR, got {self.family!r}")

    @property
    def size_value(self) -> str | float:
        """`size` as ModelConfig.from_size takes it: a preset name or shape, or a float parameter count."""
        return _size_value(self.size)


@dataclass(frozen=True)
class OptimSettings:
    """The optimiser: AdamW, its batch and its stopping rule."""

    lr: float = 3e-4
    """Peak learning rate (after warmup), per unit of the AdamW update."""
    batch_size: int = 64
    """Global batch size in samples per optimizer step, whatever the device count."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay (applied to matrices only, not norms/biases/embeddings)."""
    beta1: float = 0.9
    """AdamW first-moment decay (dimensionless)."""
    beta2: float = 0.95
    """AdamW second-moment decay (dimensionless)."""
    grad_clip: float = 1.0
    """Clip the global gradient L2 norm to this value (0 = no clipping)."""
    divergence_factor: float = 3.0
    """Stop with status diverged when loss is NaN/inf, or > this times the initial loss after warmup."""

    def __post_init__(self) -> None:
        _positive("optim", self, "lr", "batch_size", "divergence_factor")
        _non_negative("optim", self, "weight_decay", "grad_clip")


@dataclass(frozen=True)
class ScheduleSettings:
    """The learning-rate schedule over exactly the run's steps, and the WSD branch points."""

    name: str = "cosine"
    """Learning-rate schedule: cosine | wsd."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of optim.lr (cosine ends there; WSD cools down to it)."""
    warmup_frac: float | None = 0.05
    """Linear warmup as a fraction of the run's steps, in [0, 1) (give this or warmup_steps)."""
    warmup_steps: int | None = None
    """Linear warmup in optimizer steps (give this or warmup_frac)."""
    wsd_decay_frac: float = 0.2
    """WSD only: fraction of the steps spent in the final 1-sqrt cooldown."""
    checkpoint_at_samples: tuple[int, ...] = ()
    """Sample counts at which to keep stable-phase checkpoints (stable-<samples>.ckpt) for WSD branching."""
    branch_from: str | None = None
    """Checkpoint to continue from (a stable-phase checkpoint of a run with the same settings)."""

    def __post_init__(self) -> None:
        _choice("schedule", self, "name", SCHEDULES)
        if not 0 <= self.min_lr_ratio <= 1:
            raise BadInput(f"train: --schedule.min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 < self.wsd_decay_frac <= 1:
            raise BadInput(f"train: --schedule.wsd-decay-frac must be in (0, 1], got {self.wsd_decay_frac}")
        if self.warmup_frac is not None and self.warmup_steps is not None:
            raise BadInput("train: give --schedule.warmup-frac or --schedule.warmup-steps, not both "
                           f"(got {self.warmup_frac!r} and {self.warmup_steps!r})")
        if self.warmup_frac is not None and not 0 <= self.warmup_frac < 1:
            raise BadInput(f"train: --schedule.warmup-frac must be in [0, 1), got {self.warmup_frac!r}")
        if self.warmup_steps is not None:
            _non_negative("schedule", self, "warmup_steps")
        if any(c <= 0 for c in self.checkpoint_at_samples):
            raise BadInput("train: --schedule.checkpoint-at-samples sample counts must be positive, got "
                           f"{list(self.checkpoint_at_samples)}")


@dataclass(frozen=True)
class HardwareSettings:
    """Where and how the run computes: devices, distribution, workers, threads."""

    devices: int = 1
    """Devices (processes) per node."""
    num_nodes: int = 1
    """Number of nodes (torchrun or SLURM provide the rendezvous)."""
    strategy: str = "auto"
    """Distribution strategy: auto | ddp | fsdp (fsdp on GPUs)."""
    accelerator: str = "auto"
    """auto | cpu | gpu."""
    micro_batch_size: int | None = None
    """Samples per device per forward pass (None = optim.batch_size / world_size, no accumulation)."""
    num_workers: int = 0
    """DataLoader worker processes per device (0 = load batches in the training process)."""
    threads: int | None = None
    """CPU threads per training process for torch (None = torch's default; CPU DDP splits the cores)."""
    compile: bool = False
    """torch.compile the model (compile time counts in the run's wall time; TORCHINDUCTOR_CACHE_DIR shares it)."""
    fsdp_sharding: str = "full"
    """FSDP only: full (shard everything) | hybrid (shard within a node, replicate across nodes) | grad_op."""
    peak_flops: float | None = None
    """Peak FLOP/s per device for MFU (None = known GPU table, or $SCALING_PEAK_FLOPS, else MFU null)."""

    def __post_init__(self) -> None:
        _positive("hardware", self, "devices", "num_nodes")
        _non_negative("hardware", self, "num_workers")
        _positive_or_none("hardware", self, "micro_batch_size", "peak_flops", "threads")
        _choice("hardware", self, "strategy", STRATEGIES)
        _choice("hardware", self, "accelerator", ACCELERATORS)
        _choice("hardware", self, "fsdp_sharding", FSDP_SHARDING)


@dataclass(frozen=True)
class ValidationSettings:
    """The held-out validation loss: how often, on how many frames."""

    every_samples: int = 0
    """Validate every this many training samples (0 = about 10 times per run)."""
    samples: int = 512
    """Held-out validation frames used for val_loss and action_mse (samples)."""

    def __post_init__(self) -> None:
        _non_negative("validation", self, "every_samples", "samples")


@dataclass(frozen=True)
class EvaluationSettings:
    """Closed-loop evaluation after training."""

    episodes: int = 0
    """Closed-loop tabletop episodes for success_rate (0 = not evaluated, success_rate null)."""
    seed: int = 10_000
    """Seed of the first evaluation episode (episodes use seed, seed+1, ...)."""

    def __post_init__(self) -> None:
        _non_negative("evaluation", self, "episodes", "seed")


@dataclass(frozen=True)
class LoggingSettings:
    """Metrics, W&B and the progress bar."""

    every_steps: int = 10
    """Write train loss / lr / grad-norm every this many optimizer steps."""
    logger: str = "csv"
    """csv (always written) | wandb (also W&B, offline unless wandb_mode or WANDB_MODE says otherwise)."""
    wandb_project: str = "vla-scaling"
    """W&B project name."""
    wandb_mode: str | None = None
    """W&B mode: offline | online | disabled (None = $WANDB_MODE, else offline)."""
    wandb_group: str | None = None
    """W&B group (sweeps pass the sweep name; None = $WANDB_RUN_GROUP, else no group)."""
    wandb_job_type: str = "train"
    """W&B job type."""
    progress_bar: bool = True
    """Show a progress bar on stderr."""

    def __post_init__(self) -> None:
        _positive("logging", self, "every_steps")
        _choice("logging", self, "logger", LOGGERS)


@dataclass(frozen=True)
class CheckpointingSettings:
    """How often RUN_DIR/checkpoints/last.ckpt is saved."""

    every_steps: int = 200
    """Save RUN_DIR/checkpoints/last.ckpt every this many optimizer steps (and at the end)."""
    every_minutes: float = 10.0
    """Also save last.ckpt when this many minutes passed since the last save (0 = by steps only)."""

    def __post_init__(self) -> None:
        _positive("checkpointing", self, "every_steps")
        _non_negative("checkpointing", self, "every_minutes")


@dataclass(frozen=True)
class RunConfig:
    """One training run: its name and seed, and its settings by section."""

    out: str = "runs/run"
    """Run directory (RUN_DIR): config.yaml, result.json, metrics.csv, checkpoints/."""
    run_id: str | None = None
    """Run identifier recorded in result.json; defaults to the name of `out`."""
    seed: int = 0
    """Seed for initialisation and the order of training samples."""
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    hardware: HardwareSettings = field(default_factory=HardwareSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    checkpointing: CheckpointingSettings = field(default_factory=CheckpointingSettings)

    def __post_init__(self) -> None:
        for name, cls in SECTION_TYPES.items():
            if not isinstance(getattr(self, name), cls):
                raise BadInput(f"train: {name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__} "
                               "(build a RunConfig with `from_mapping`)")
        if self.seed < 0:
            raise BadInput(f"train: --seed must be >= 0, got {self.seed!r}")

    # ---- derived values -------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """The run directory as a Path."""
        return Path(self.out)

    @property
    def name(self) -> str:
        """run_id, or the run directory's name."""
        return self.run_id or Path(self.out).resolve().name

    @property
    def steps(self) -> int:
        """Optimizer steps: ceil(data.samples / optim.batch_size); the last step may be partial."""
        return math.ceil(self.data.samples / self.optim.batch_size)

    @property
    def warmup_steps(self) -> int:
        """Warmup length in optimizer steps (schedule.warmup_frac is of the run's steps)."""
        if self.schedule.warmup_steps is not None:
            return int(self.schedule.warmup_steps)
        return int(round((self.schedule.warmup_frac or 0.0) * self.steps))

    # ---- views ------------------------------------------------------------------------------
    def flat(self) -> dict[str, Any]:
        """Every field by its dotted name (``optim.lr``; ``out``, ``run_id``, ``seed``), YAML/JSON-safe."""
        out: dict[str, Any] = {name: getattr(self, name) for name in TOP}
        for section in SECTIONS:
            for name, value in dataclasses.asdict(getattr(self, section)).items():
                out[f"{section}.{name}"] = list(value) if isinstance(value, tuple) else value
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dict nested by section (what config.yaml holds)."""
        return _nest(self.flat())

    def flat_legacy(self) -> dict[str, Any]:
        """The config in the flat names of the single-dataclass config (`LEGACY`): the canonical form
        that sweeps hash into run keys (`sweeps.points.run_key`). ``warmup`` is ``warmup_steps`` when set,
        else ``warmup_frac`` (0 when neither); the shape stays in ``size``."""
        return {"warmup": 0, **to_legacy(self.flat())}

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (validated again): ``out=...``, ``seed=...``, a section as a
        mapping of its fields to change (``model={"precision": "32-true"}``) or dotted names
        (``**{"model.precision": "32-true"}``)."""
        flat = self.flat()
        return _build(_merge(flat, _dotted(changes, "replace")))

    def save(self, path: str | os.PathLike, requested: Mapping[str, Any] | None = None) -> Path:
        """Write the config as YAML nested by section (atomically); `requested` (dotted field -> the value
        asked for, where the run resolved it to another) goes under the key ``requested``, which readers of
        the file skip."""
        import yaml

        doc = self.to_dict()
        if requested:
            doc[REQUESTED] = _nest({k: list(v) if isinstance(v, tuple) else v for k, v in requested.items()})
        return write_atomic(path, yaml.safe_dump(doc, sort_keys=False))


SECTION_TYPES: dict[str, type] = {
    "data": DataSettings, "model": ModelSettings, "optim": OptimSettings, "schedule": ScheduleSettings,
    "hardware": HardwareSettings, "validation": ValidationSettings, "evaluation": EvaluationSettings,
    "logging": LoggingSettings, "checkpointing": CheckpointingSettings,
}
"""Each section's dataclass, in order."""

TOP = ("out", "run_id", "seed")
"""The fields that belong to no section: where the run goes, its name, its seed."""

# The run's settings by section (field names within each section).
SECTIONS: dict[str, tuple[str, ...]] = {name: tuple(f.name for f in fields(cls)) for name, cls in SECTION_TYPES.items()}

# Sections that may change between the first start of a run and its resumption: they change how and
# where it runs, never what it computes (same data, model, optimisation, schedule, precision, validation).
RESUMABLE_SECTIONS = ("hardware", "evaluation", "logging", "checkpointing")

# In a run's config.yaml: the values the user asked for where the run resolved them (size 30k -> its
# exact shape, accelerator auto -> cpu, ...). Informational: loading the file skips it.
REQUESTED = "requested"

LEGACY: dict[str, str] = {
    "data": "data.source", "samples": "data.samples", "blind": "data.blind",
    "size": "model.size", "family": "model.family", "chunk": "model.chunk", "head": "model.head",
    "patch_size": "model.patch_size", "keypoints": "model.keypoints", "film": "model.film",
    "mup_base_width": "model.mup_base_width", "precision": "model.precision",
    "d_model": "model.size", "n_layers": "model.size", "n_heads": "model.size",
    "lr": "optim.lr", "batch_size": "optim.batch_size", "weight_decay": "optim.weight_decay",
    "beta1": "optim.beta1", "beta2": "optim.beta2", "grad_clip": "optim.grad_clip",
    "divergence_factor": "optim.divergence_factor",
    "schedule": "schedule.name", "min_lr_ratio": "schedule.min_lr_ratio",
    "warmup": "schedule.warmup_frac|schedule.warmup_steps", "wsd_decay_frac": "schedule.wsd_decay_frac",
    "checkpoint_at": "schedule.checkpoint_at_samples", "branch_from": "schedule.branch_from",
    "devices": "hardware.devices", "num_nodes": "hardware.num_nodes", "strategy": "hardware.strategy",
    "accelerator": "hardware.accelerator", "micro_batch_size": "hardware.micro_batch_size",
    "num_workers": "hardware.num_workers", "threads": "hardware.threads", "compile": "hardware.compile",
    "fsdp_sharding": "hardware.fsdp_sharding", "peak_flops": "hardware.peak_flops",
    "val_every": "validation.every_samples", "val_samples": "validation.samples",
    "eval_episodes": "evaluation.episodes", "eval_seed": "evaluation.seed",
    "log_every": "logging.every_steps", "logger": "logging.logger", "wandb_project": "logging.wandb_project",
    "wandb_mode": "logging.wandb_mode", "wandb_group": "logging.wandb_group",
    "wandb_job_type": "logging.wandb_job_type", "progress_bar": "logging.progress_bar",
    "checkpoint_every": "checkpointing.every_steps", "checkpoint_minutes": "checkpointing.every_minutes",
    "out": "out", "run_id": "run_id", "seed": "seed",
}
"""Old flat name (the single-dataclass config, its YAML files, flags and ``train:`` blocks) -> the new
dotted field. Two carry a value conversion (`_from_legacy`): ``warmup`` (below 1 a fraction of the steps,
``schedule.warmup_frac``; else ``schedule.warmup_steps``) and the shape overrides ``d_model``,
``n_layers``, ``n_heads``, folded into ``model.size`` as "WIDTHxBLOCKSxHEADS". Every other is a rename
with the value unchanged (units included: ``val_every`` was in samples, ``log_every`` and
``checkpoint_every`` in steps, ``checkpoint_minutes`` in minutes)."""

_SHAPE_KEYS = ("d_model", "n_layers", "n_heads")
_OLD_SECTIONS = ("dataset", "model", "optim", "hardware", "evaluation", "logging", "checkpointing")
"""Section names of the single-dataclass config's nested YAML form (``dataset: {samples: ...}``)."""
_PENDING = "model._shape_"  # legacy shape overrides waiting to be folded into model.size


def field_names() -> list[str]:
    """Every RunConfig field by its dotted name, in order (``out``, ``run_id``, ``seed``, ``data.source``, ...)."""
    return list(TOP) + [f"{section}.{name}" for section, names in SECTIONS.items() for name in names]


@functools.lru_cache(maxsize=1)
def _types() -> dict[str, Any]:
    out = {name: t for name, t in typing.get_type_hints(RunConfig).items() if name in TOP}
    for section, cls in SECTION_TYPES.items():
        out.update({f"{section}.{name}": t for name, t in typing.get_type_hints(cls).items()})
    return out


def field_default(name: str) -> Any:
    """The default of a dotted field."""
    if name in TOP:
        return RunConfig.__dataclass_fields__[name].default
    section, inner = name.split(".", 1)
    return SECTION_TYPES[section].__dataclass_fields__[inner].default


def field_type(name: str) -> Any:
    """The type of a dotted field (``int | None``, ``bool``, ``tuple[int, ...]``, ``Any``, ...)."""
    return _types()[name]


@functools.lru_cache(maxsize=1)
def field_docs() -> dict[str, str]:
    """Attribute docstrings of every dotted field, read from this file's source (used as --help text)."""
    docs: dict[str, str] = {}
    for prefix, cls in [("", RunConfig)] + [(f"{s}.", c) for s, c in SECTION_TYPES.items()]:
        body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[prefix + node.target.id] = str(nxt.value.value).strip()  # type: ignore[union-attr]
    return {k: v for k, v in docs.items() if k in set(field_names())}


def section_docs() -> dict[str, str]:
    """Each section's one-line description (its class docstring)."""
    return {name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in SECTION_TYPES.items()}


def resumable_fields() -> set[str]:
    """Dotted fields that may differ between a run's first start and its resumption."""
    return {f"{section}.{name}" for section in RESUMABLE_SECTIONS for name in SECTIONS[section]}


def _hint(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def _size_value(size: Any) -> str | float:
    if isinstance(size, bool) or size is None:
        raise BadInput(f"train: --model.size must be a preset name, a parameter count or a shape, got {size!r}")
    if isinstance(size, (int, float)):
        value = float(size)
    else:
        try:
            value = float(str(size))
        except ValueError:
            return str(size)  # a preset name or a shape; the model package validates it
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"train: --model.size must be a positive parameter count, a preset name or a shape, "
                       f"got {size!r}")
    return value


def _coerce(name: str, value: Any) -> Any:
    """Coerce a YAML/flag value to the dotted field's type (from its annotation); raise BadInput naming it."""
    tp = field_type(name)
    if name == "data.source" and isinstance(value, str) and value.lstrip().startswith("{"):
        # A mixture given inline on the command line: --data.source '{"mixture": [{"path": ..., "weight": 3}]}'
        import yaml

        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            raise BadInput(
                f"train: --data.source looks like a mixture spec but is not valid JSON/YAML: {value!r}"[:200]
            ) from None
    if value is None or tp is Any:
        return value
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    label = getattr(tp, "__name__", str(tp))
    try:
        if typing.get_origin(tp) is tuple:
            items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
            return tuple(int(float(v)) for v in items)
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            number = float(value)
            if number != int(number):
                raise ValueError(value)
            return int(number)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"train: --{_flag(name)} must be {label}, got {value!r}") from None
    return value


def _is_section_mapping(key: str, value: Any) -> bool:
    """A nested section (``optim: {...}``), not a flat value: ``data`` may also be an old-style dataset
    path or mixture spec ({"mixture": [...]}), which is a value."""
    if not isinstance(value, Mapping):
        return False
    if key == "data":
        return "mixture" not in value
    return key in SECTION_TYPES or key in _OLD_SECTIONS


def _dotted(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Any accepted form -> {dotted new name: value}: nested sections, dotted keys, the top fields and the
    old flat names (`LEGACY`, converted here; the shape overrides wait in `_PENDING` keys for `_build`)."""
    known = set(field_names())
    new: dict[str, Any] = {}
    legacy: dict[str, Any] = {}
    for key, value in values.items():
        key = str(key)
        if _is_section_mapping(key, value):
            for inner, v in value.items():
                inner = str(inner)
                dotted = f"{key}.{inner}"
                if dotted in known:
                    new[dotted] = v
                elif inner in LEGACY:  # an old nested file (optim: {precision: ...}, dataset: {...})
                    legacy[inner] = v
                else:
                    options = SECTIONS.get(key, ())
                    raise BadInput(f"{source}: unknown key {key}.{inner}{_hint(inner, options)}")
        elif key in known:
            new[key] = value
        elif key in LEGACY:
            legacy[key] = value
        elif key.startswith(_PENDING):
            new[key] = value
        else:
            raise BadInput(f"{source}: unknown key {key!r}{_hint(key, list(known) + list(LEGACY))}")
    # One layer: both warmup fields given is an error (`ScheduleSettings`), and its old shape overrides
    # apply to its own size.
    return {**new, **_from_legacy(legacy)}


def _from_legacy(legacy: Mapping[str, Any]) -> dict[str, Any]:
    """Old flat names -> dotted new names, by `LEGACY` (values unchanged but for ``warmup``)."""
    out: dict[str, Any] = {}
    for key, value in legacy.items():
        if key == "warmup":
            if value is None:
                continue
            number = _coerce("schedule.warmup_frac", value)
            if number < 1:
                out.update({"schedule.warmup_frac": number, "schedule.warmup_steps": None})
            else:
                out.update({"schedule.warmup_steps": int(number), "schedule.warmup_frac": None})
        elif key in _SHAPE_KEYS:
            if value is not None:
                out[_PENDING + key] = value
        else:
            out[LEGACY[key]] = value
    return out


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base` (dotted dicts); giving one of the two warmup fields clears the other, and a
    new ``model.size`` drops shape overrides still pending from below."""
    out = dict(base)
    for key, value in over.items():
        if key == "schedule.warmup_steps" and value is not None and "schedule.warmup_frac" not in over:
            out["schedule.warmup_frac"] = None
        if key == "schedule.warmup_frac" and value is not None and "schedule.warmup_steps" not in over:
            out["schedule.warmup_steps"] = None
        if key == "model.size" and not any(k.startswith(_PENDING) for k in over):
            out = {k: v for k, v in out.items() if not k.startswith(_PENDING)}
        out[key] = value
    return out


def fold_shape(size: Any, d_model: Any = None, n_layers: Any = None, n_heads: Any = None) -> Any:
    """The single shape string of an old config's ``size`` with its ``d_model`` / ``n_layers`` / ``n_heads``
    overrides, as the built-in family built them: the whole shape given -> "DxLxH" (``size`` still has to
    be a valid size); a partial one overrides a fixed shape (a preset like debug, or "WxB[xH]"), keeping its
    head width when only the width changes. A size the solver shapes from the data (a parameter count)
    cannot take a partial shape here: give the whole shape.

    Raises:
        BadInput: a partial shape over a solved size, or a size that is not one.
    """
    from scaling.model.presets import parse_size

    given = {k: _coerce_int(k, v) for k, v in (("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads))
             if v is not None}
    if not given:
        return size
    preset = parse_size(_size_value(size))
    if len(given) == 3:
        return f"{given['d_model']}x{given['n_layers']}x{given['n_heads']}"
    if preset.target is not None:
        raise BadInput(f"train: model size {size!r} is solved from the data, so {', '.join(sorted(given))} alone "
                       "cannot fix its shape; give model.size as WIDTHxBLOCKSxHEADS")
    width = given.get("d_model", preset.d_model)
    blocks = given.get("n_layers", preset.n_layers)
    heads = given.get("n_heads")
    if heads is None:
        head_dim = preset.d_model // preset.n_heads
        heads = max(1, width // head_dim) if "d_model" in given else preset.n_heads
    return f"{width}x{blocks}x{heads}"


def _coerce_int(name: str, value: Any) -> int:
    try:
        number = float(value)
        if number != int(number) or number <= 0:
            raise ValueError(value)
    except (TypeError, ValueError):
        raise BadInput(f"train: {name} must be a positive integer, got {value!r}") from None
    return int(number)


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if "." in key:
            section, inner = key.split(".", 1)
            out.setdefault(section, {})[inner] = value
        else:
            out[key] = value
    return out


def _fold_pending(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """`dotted` with the old shape overrides waiting in `_PENDING` keys folded into ``model.size``."""
    values = dict(dotted)
    pending = {k[len(_PENDING):]: values.pop(k) for k in list(values) if k.startswith(_PENDING)}
    if pending:
        values["model.size"] = fold_shape(values.get("model.size", field_default("model.size")), **pending)
    return values


def _build(dotted: Mapping[str, Any]) -> RunConfig:
    values = _fold_pending(dotted)
    if values.get("schedule.warmup_steps") is not None and "schedule.warmup_frac" not in values:
        values["schedule.warmup_frac"] = None
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    nested = _nest(coerced)
    top = {k: nested.pop(k) for k in TOP if k in nested}
    return RunConfig(**top, **{s: SECTION_TYPES[s](**nested.get(s, {})) for s in SECTION_TYPES})


def from_mapping(values: Mapping[str, Any], *, source: str = "config") -> RunConfig:
    """Build a RunConfig from a mapping: nested by section, dotted keys, or the old flat names (`LEGACY`),
    or a mix; unknown keys raise BadInput with a did-you-mean."""
    return _build(_dotted(values, source))


def sectioned(values: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Any accepted form (partial or whole) -> nested by section, only the keys given (old shape overrides
    folded into ``model.size``; no defaults added, values not coerced): a sweep's run.yaml."""
    return _nest(_fold_pending(_dotted(values, source)))


def to_legacy(values: Mapping[str, Any], *, source: str = "config") -> dict[str, Any]:
    """Any accepted form (partial or whole) -> the old flat names, values as given (no defaults added):
    the canonical form of a spec's ``train:`` block and of `RunConfig.flat_legacy`, which run keys hash.
    Old names pass through unchanged, so a committed spec's keys stay the same; a new name maps back by
    `LEGACY` (``schedule.warmup_frac`` and ``schedule.warmup_steps`` both to ``warmup``)."""
    back = {new: old for old, new in LEGACY.items() if "|" not in new and old not in _SHAPE_KEYS}
    out: dict[str, Any] = {}
    for key, value in values.items():
        key = str(key)
        if _is_section_mapping(key, value):
            items = [(f"{key}.{inner}", v) for inner, v in value.items()]
        else:
            items = [(key, value)]
        for name, v in items:
            inner = name.split(".", 1)[-1]
            if name in ("schedule.warmup_frac", "schedule.warmup_steps"):
                if v is not None:
                    if out.get("warmup") is not None:
                        raise BadInput(f"{source}: give schedule.warmup_frac or schedule.warmup_steps, not both")
                    out["warmup"] = v
            elif name in back:
                out[back[name]] = v
            elif name in LEGACY:
                out[name] = v
            elif "." in name and inner in LEGACY and name.split(".", 1)[0] in _OLD_SECTIONS:
                out[inner] = v  # an old nested form
            else:
                raise BadInput(f"{source}: unknown key {name!r}{_hint(name, list(field_names()) + list(LEGACY))}")
    if out.get("warmup", 0) is None:
        out.pop("warmup")
    return out


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML run config into a dotted dict (any accepted form; keys checked)."""
    return _read_yaml(path)[0]


def _read_yaml(path: str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """(the run config's fields as a dotted dict; the file's ``requested`` entry, dotted, or None), one parse."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise BadInput(f"{path}: expected a mapping of RunConfig fields, got {type(values).__name__}")
    asked = values.pop(REQUESTED, None)  # a run's record of what was asked, beside the resolved values
    if isinstance(asked, dict) and asked:
        # Old files list a shape override the run did not ask for as None ("the size's own shape").
        asked = _dotted({k: v for k, v in asked.items() if not (k in _SHAPE_KEYS and v is None)}, str(path))
    return _dotted(values, str(path)), asked


def load_run_config(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's config.yaml (new or old form) as (resolved, requested): the values the run used, and the
    values as asked (the resolved ones with the file's ``requested`` entries put back). Both as
    `RunConfig.flat` (dotted names)."""
    values, asked = _read_yaml(path)
    resolved = _build(values).flat()
    if not isinstance(asked, dict) or not asked:
        return resolved, dict(resolved)
    return resolved, _build(_merge(resolved, asked)).flat()


def resolve(config_path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Defaults < YAML file < overrides (flags: dotted names or old flat names); None-valued overrides are
    ignored."""
    values: dict[str, Any] = {}
    if config_path is not None:
        values = load_yaml(config_path)
    given = _dotted({k: v for k, v in (overrides or {}).items() if v is not None}, "flags")
    return _build(_merge(values, given))


__all__ = ["RunConfig", "DataSettings", "ModelSettings", "OptimSettings", "ScheduleSettings", "HardwareSettings",
           "ValidationSettings", "EvaluationSettings", "LoggingSettings", "CheckpointingSettings", "SECTION_TYPES",
           "SECTIONS", "TOP", "LEGACY", "REQUESTED", "RESUMABLE_SECTIONS", "resumable_fields", "load_run_config",
           "resolve", "from_mapping", "sectioned", "to_legacy", "fold_shape", "load_yaml", "field_names", "field_docs",
           "field_default", "field_type", "section_docs"]
