"""`RunConfig`: everything one training run needs, as a frozen dataclass.

The settings come in sections (`SECTIONS`: dataset, model, optim, hardware, evaluation, logging,
checkpointing); a YAML file may nest them (``optim: {lr: 1e-3}``) or give them flat (``lr: 1e-3``),
and each field is also a flat command-line flag (``--lr``). Which settings may change when a run
resumes follows from the sections (`RESUMABLE_SECTIONS`). Defaults < YAML file < command-line flags.
Every run writes its fully resolved config to ``RUN_DIR/config.yaml``, which doubles as the command to
resume or reproduce it (``scaling train --config RUN_DIR/config.yaml``). Resolved means that nothing in
it is left to the machine, the environment or the size solver of the day: the model's exact parameter count and shape
(``size``, ``d_model``, ``n_layers``, ``n_heads``), the accelerator, the torch threads and the precision
that ran. What was asked instead, where it differs, is kept under ``requested`` (skipped when the file
is loaded). Values that follow from the file alone (a warmup fraction, ``val_every: 0``) stay as given.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
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


@dataclass(frozen=True)
class RunConfig:
    """One training run: data, model size, sample budget, optimiser and hardware settings."""

    data: Any = None
    """Dataset directory (str), or a mixture spec {"mixture": [{"path": ..., "weight": ...}]}."""
    size: Any = "debug"
    """Model size: a preset name ("debug", ...), a target parameter count (e.g. 1e6 parameters) or a
    shape "WIDTHxBLOCKS" ("48x2")."""
    samples: int = 10_000
    """D, the training budget in samples (frames); steps = ceil(samples / batch_size)."""
    out: str = "runs/run"
    """Run directory (RUN_DIR): config.yaml, result.json, metrics.csv, checkpoints/."""
    run_id: str | None = None
    """Run identifier recorded in result.json; defaults to the name of `out`."""

    lr: float = 3e-4
    """Peak learning rate (after warmup), per unit of the AdamW update."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of `lr` (cosine ends there; WSD cools down to it)."""
    warmup: float = 0.05
    """Linear warmup: a fraction of the run's steps when < 1, else a number of optimizer steps."""
    schedule: str = "cosine"
    """Learning-rate schedule over exactly the run's steps: cosine | wsd."""
    wsd_decay_frac: float = 0.2
    """WSD only: fraction of the steps spent in the final 1-sqrt cooldown."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay (applied to matrices only, not norms/biases/embeddings)."""
    beta1: float = 0.9
    """AdamW first-moment decay (dimensionless)."""
    beta2: float = 0.95
    """AdamW second-moment decay (dimensionless)."""
    grad_clip: float = 1.0
    """Clip the global gradient L2 norm to this value (0 = no clipping)."""
    mup_base_width: int | None = None
    """muP-style width scaling: the d_model at which `lr` was tuned (None = standard parametrisation)."""

    batch_size: int = 64
    """Global batch size in samples per optimizer step, whatever the device count."""
    micro_batch_size: int | None = None
    """Samples per device per forward pass (None = batch_size / world_size, no accumulation)."""
    precision: str = "bf16-mixed"
    """Lightning precision: bf16-mixed | 16-mixed | 32-true | auto (the fastest for the device, measured once
    per machine: `scaling.hardware.resolve_precision`; result.json records the precision that ran)."""
    devices: int = 1
    """Devices (processes) per node."""
    num_nodes: int = 1
    """Number of nodes (torchrun or SLURM provide the rendezvous)."""
    strategy: str = "auto"
    """Distribution strategy: auto | ddp | fsdp (fsdp on GPUs)."""
    accelerator: str = "auto"
    """auto | cpu | gpu."""
    num_workers: int = 0
    """DataLoader worker processes per device (0 = load batches in the training process)."""
    threads: int | None = None
    """CPU threads per training process for torch (None = torch's default; CPU DDP splits the cores)."""
    seed: int = 0
    """Seed for initialisation and the order of training samples."""
    compile: bool = False
    """torch.compile the model (compile time counts in the run's wall time; TORCHINDUCTOR_CACHE_DIR shares it)."""
    fsdp_sharding: str = "full"
    """FSDP only: full (shard everything) | hybrid (shard within a node, replicate across nodes) | grad_op."""

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
    blind: bool = False
    """Withhold the image and the instruction (the input-free baseline: proprioception only)."""
    d_model: int | None = None
    """Override the preset's width (channels); None keeps the size's shape."""
    n_layers: int | None = None
    """Override the preset's depth (blocks); None keeps the size's shape."""
    n_heads: int | None = None
    """Override the preset's attention heads (must divide d_model); None keeps the size's shape."""

    val_every: int = 0
    """Validate every this many training samples (0 = about 10 times per run)."""
    val_samples: int = 512
    """Held-out validation frames used for val_loss and action_mse (frames)."""
    eval_episodes: int = 0
    """Closed-loop tabletop episodes for success_rate (0 = not evaluated, success_rate null)."""
    eval_seed: int = 10_000
    """Seed of the first evaluation episode (episodes use eval_seed, eval_seed+1, ...)."""

    log_every: int = 10
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

    checkpoint_every: int = 200
    """Save RUN_DIR/checkpoints/last.ckpt every this many optimizer steps (and at the end)."""
    checkpoint_minutes: float = 10.0
    """Also save last.ckpt when this many minutes passed since the last save (0 = by steps only)."""
    checkpoint_at: tuple[int, ...] = ()
    """Sample counts at which to keep stable-phase checkpoints (stable-<samples>.ckpt) for WSD branching."""
    branch_from: str | None = None
    """Checkpoint to continue from (a stable-phase checkpoint of a run with the same settings)."""
    divergence_factor: float = 3.0
    """Stop with status diverged when loss is NaN/inf, or > this times the initial loss after warmup."""
    peak_flops: float | None = None
    """Peak FLOP/s per device for MFU (None = known GPU table, or $SCALING_PEAK_FLOPS, else MFU null)."""

    def __post_init__(self) -> None:
        if isinstance(self.data, os.PathLike):
            object.__setattr__(self, "data", os.fspath(self.data))  # keep the YAML plain
        if self.data is None:
            raise BadInput("train: --data is required (a dataset directory or a mixture spec)")
        _size_value(self.size)  # raises on nonsense
        positive = ("samples", "batch_size", "lr", "devices", "num_nodes", "log_every", "checkpoint_every",
                    "chunk", "divergence_factor")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise BadInput(f"train: --{_flag(name)} must be a positive number, got {value!r}")
        # Seeds feed numpy's SeedSequence, which refuses negatives at run time: refuse them here.
        for name in ("val_every", "val_samples", "eval_episodes", "num_workers", "weight_decay", "grad_clip",
                     "warmup", "seed", "eval_seed", "checkpoint_minutes"):
            if getattr(self, name) < 0:
                raise BadInput(f"train: --{_flag(name)} must be >= 0, got {getattr(self, name)!r}")
        for name in ("micro_batch_size", "d_model", "n_layers", "n_heads", "mup_base_width", "peak_flops", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise BadInput(f"train: --{_flag(name)} must be positive, got {value!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise BadInput(f"train: --min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 < self.wsd_decay_frac <= 1:
            raise BadInput(f"train: --wsd-decay-frac must be in (0, 1], got {self.wsd_decay_frac}")
        choices = {"precision": PRECISIONS, "schedule": SCHEDULES, "strategy": STRATEGIES,
                   "accelerator": ACCELERATORS, "logger": LOGGERS, "head": HEADS, "fsdp_sharding": FSDP_SHARDING}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise BadInput(f"train: --{_flag(name)} must be one of {'|'.join(allowed)}, "
                               f"got {getattr(self, name)!r}{_hint(str(getattr(self, name)), allowed)}")
        if not isinstance(self.family, str) or not self.family.strip():
            raise BadInput(f"train: --family must be a family name or MODULE:ATTR, got {self.family!r}")
        if any(c <= 0 for c in self.checkpoint_at):
            raise BadInput(f"train: --checkpoint-at sample counts must be positive, got {list(self.checkpoint_at)}")

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
    def size_value(self) -> str | float:
        """`size` as ModelConfig.from_size takes it: a preset name or a float parameter count."""
        return _size_value(self.size)

    @property
    def steps(self) -> int:
        """Optimizer steps: ceil(samples / batch_size); the last step may be partial."""
        return math.ceil(self.samples / self.batch_size)

    def warmup_steps(self) -> int:
        """Warmup length in optimizer steps (a fraction < 1 is of the run's steps)."""
        if self.warmup < 1:
            return int(round(self.warmup * self.steps))
        return int(self.warmup)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dict of every field."""
        out = dataclasses.asdict(self)
        out["checkpoint_at"] = list(self.checkpoint_at)
        return out

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (validated again)."""
        return from_mapping({**self.to_dict(), **changes})

    def save(self, path: str | os.PathLike, requested: Mapping[str, Any] | None = None) -> Path:
        """Write the config as YAML (atomically); `requested` (field -> the value asked for, where the run
        resolved it to another) goes under the key ``requested``, which readers of the file skip."""
        import yaml

        doc = self.to_dict()
        if requested:
            doc[REQUESTED] = {k: list(v) if isinstance(v, tuple) else v for k, v in requested.items()}
        return write_atomic(path, yaml.safe_dump(doc, sort_keys=False))


# In a run's config.yaml: the values the user asked for where the run resolved them (size 30k -> its
# exact parameter count and shape, accelerator auto -> cpu, ...). Informational: loading the file skips it.
REQUESTED = "requested"


# The run's settings by section. `out` and `run_id` name the run and belong to none.
SECTIONS: dict[str, tuple[str, ...]] = {
    "dataset": ("data", "samples", "seed", "chunk", "blind", "val_every", "val_samples"),
    "model": ("size", "family", "head", "d_model", "n_layers", "n_heads", "patch_size", "keypoints", "film",
              "mup_base_width"),
    "optim": ("lr", "min_lr_ratio", "warmup", "schedule", "wsd_decay_frac", "weight_decay", "beta1", "beta2",
              "grad_clip", "batch_size", "precision", "divergence_factor", "checkpoint_at", "branch_from"),
    "hardware": ("devices", "num_nodes", "strategy", "accelerator", "micro_batch_size", "num_workers", "threads",
                 "compile", "fsdp_sharding", "peak_flops"),
    "evaluation": ("eval_episodes", "eval_seed"),
    "logging": ("log_every", "logger", "wandb_project", "wandb_mode", "wandb_group", "wandb_job_type",
                "progress_bar"),
    "checkpointing": ("checkpoint_every", "checkpoint_minutes"),
}
# Sections that may change between the first start of a run and its resumption: they change how and
# where it runs, never what it computes (same data, model, optimisation and precision).
RESUMABLE_SECTIONS = ("hardware", "evaluation", "logging", "checkpointing")


def resumable_fields() -> set[str]:
    """Fields that may differ between a run's first start and its resumption."""
    return {name for section in RESUMABLE_SECTIONS for name in SECTIONS[section]}


def flatten_sections(values: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Nested sections (``optim: {lr: ...}``) to flat fields; flat keys pass through."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for inner, v in value.items():
                if inner not in SECTIONS[key]:
                    raise BadInput(f"{source}: unknown key {key}.{inner}{_hint(str(inner), SECTIONS[key])}")
                flat[inner] = v
        else:
            flat[key] = value
    return flat


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _hint(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def _size_value(size: Any) -> str | float:
    if isinstance(size, bool) or size is None:
        raise BadInput(f"train: --size must be a preset name or a parameter count, got {size!r}")
    if isinstance(size, (int, float)):
        value = float(size)
    else:
        try:
            value = float(str(size))
        except ValueError:
            return str(size)  # a preset name; the model package validates it
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"train: --size must be a positive parameter count or a preset name, got {size!r}")
    return value


def field_names() -> list[str]:
    """Names of every RunConfig field, in order."""
    return [f.name for f in fields(RunConfig)]


@functools.lru_cache(maxsize=1)
def field_docs() -> dict[str, str]:
    """Attribute docstrings of RunConfig, read from this file's source (used as --help text)."""
    tree = ast.parse(inspect.getsource(RunConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value).strip()  # type: ignore[union-attr]
    return docs


def _coerce(name: str, value: Any) -> Any:
    """Coerce a YAML/flag value to the field's type; raise BadInput naming the key."""
    f = {f.name: f for f in fields(RunConfig)}[name]
    kind = str(f.type)
    if name == "data" and isinstance(value, str) and value.lstrip().startswith("{"):
        # A mixture given inline on the command line: --data '{"mixture": [{"path": ..., "weight": 3}]}'
        import yaml

        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            raise BadInput(
                f"train: --data looks like a mixture spec but is not valid JSON/YAML: {value!r}"[:200]
            ) from None
    if value is None or name in ("data", "size"):
        return value
    try:
        if name == "checkpoint_at":
            items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
            return tuple(int(float(v)) for v in items)
        if kind.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind.startswith("int"):
            number = float(value)
            if number != int(number):
                raise ValueError(value)
            return int(number)
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise BadInput(f"train: {name} must be {kind.split(' |')[0]}, got {value!r}") from None
    return value


def from_mapping(values: Mapping[str, Any], *, source: str = "config") -> RunConfig:
    """Build a RunConfig from a mapping (flat, or nested by section); unknown keys raise BadInput
    with a did-you-mean."""
    values = flatten_sections(values, source)
    known = field_names()
    for key in values:
        if key not in known:
            raise BadInput(f"{source}: unknown key {key!r}{_hint(str(key), known)}")
    return RunConfig(**{k: _coerce(k, v) for k, v in values.items()})


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML run config into a dict (keys checked by `from_mapping`)."""
    return _read_yaml(path)[0]


def _read_yaml(path: str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """(the run config's fields, flattened; the file's ``requested`` entry or None), one parse."""
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
    return flatten_sections(values, str(path)), asked


def load_run_config(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's config.yaml as (resolved, requested): the values the run used, and the values as asked
    (the resolved ones with the file's ``requested`` entries put back). Both as `RunConfig.to_dict`."""
    values, asked = _read_yaml(path)
    resolved = from_mapping(values, source=str(path)).to_dict()
    if not isinstance(asked, dict) or not asked:
        return resolved, dict(resolved)
    return resolved, from_mapping({**resolved, **asked}, source=str(path)).to_dict()


def resolve(config_path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Defaults < YAML file < overrides (flags); None-valued overrides are ignored."""
    values: dict[str, Any] = {}
    source = "config"
    if config_path is not None:
        values.update(load_yaml(config_path))
        source = str(config_path)
        for key in values:  # check the file's keys against its own name
            if key not in field_names():
                raise BadInput(f"{source}: unknown key {key!r}{_hint(str(key), field_names())}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_mapping(values, source=source)


__all__ = ["RunConfig", "REQUESTED", "load_run_config", "SECTIONS", "RESUMABLE_SECTIONS", "resumable_fields",
           "flatten_sections", "resolve", "from_mapping", "load_yaml", "field_names", "field_docs"]
