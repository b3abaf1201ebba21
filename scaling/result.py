"""`RunResult`: what one training run reports (``RUN_DIR/result.json``), the seam to sweeps.

The fields are exactly those of the contract (vla_core/schema.py, rendered in docs/contracts.md);
sweeps flatten `model` into d_model, n_layers, n_heads for the results table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vla_core import schema
from vla_core.atomic import write_atomic


@dataclass(frozen=True)
class RunResult:
    """The outcome of one training run."""

    run_id: str
    """Run identifier (the run directory's name unless configured)."""
    status: str
    """completed | diverged | failed."""
    n_params: int
    """Total trainable parameters (parameters)."""
    n_params_nonembed: int
    """Parameters excluding embeddings (parameters): the N of the scaling fits."""
    model: dict
    """Model shape: d_model, n_layers, n_heads, d_ff, patch_size, head, chunk, ..."""
    flops_per_sample: int
    """Training FLOPs per sample (forward + backward, attention included)."""
    flops: float
    """Training FLOPs spent: flops_per_sample * n_samples."""
    n_samples: int
    """D: training samples seen (frames)."""
    n_unique_samples: int
    """Distinct training frames among them (frames)."""
    epochs: float
    """n_samples / unique training frames available (> 1 means repeated data)."""
    lr: float
    """Peak learning rate."""
    global_batch_size: int
    """Samples per optimizer step."""
    precision: str
    """Precision that actually ran (bf16-mixed | 16-mixed | 32-true; 16-mixed asked on a CPU runs bf16-mixed)."""
    world_size: int
    """Processes (devices x nodes) that trained."""
    val_loss: float | None
    """Final held-out loss: action-token NLL in nats per action dimension (discrete head), else the head's loss."""
    val_loss_best: float | None
    """Lowest validation loss seen during the run (same units)."""
    train_loss: float | None
    """Mean training loss over the last logged steps (same units)."""
    action_mse: float | None
    """Validation MSE of the predicted actions (every chunk step and dimension), in the data's raw units."""
    success_rate: float | None
    """Closed-loop tabletop success over eval_episodes episodes; null when not evaluated."""
    wall_seconds: float
    """Wall-clock seconds of the whole run (set-up, training, validation, evaluation)."""
    samples_per_second: float | None
    """Training throughput from training steps only (samples/s, all devices)."""
    mfu: float | None
    """Model FLOP utilisation: flops_per_sample x samples/s / (peak_flops x world_size), against the peak of
    the fastest dtype the device offers (`scaling.hardware.mfu_peak`); null if the peak is unknown."""
    versions: dict
    """Versions: torch, lightning, python, package."""
    success_note: str | None = None
    """Why success_rate is null (e.g. data without a simulator); null when it was measured."""
    blind: bool = False
    """Whether the images and instruction were withheld (the input-free baseline)."""
    input_reliance: dict | None = None
    """Validation-loss increase (nats) with each input (image, instruction, proprio) shuffled across
    samples (`scaling.probe`): how much the policy uses it; 0 = ignored. Null when not measured."""
    peak_flops: float | None = None
    """The per-device peak FLOP/s that `mfu` divides by (null if unknown)."""
    peak_flops_source: str | None = None
    """Where that peak comes from: "vendor table: <GPU> <dtype> dense", "measured: <probe> ...", "config"."""
    peak_flops_load: float | None = None
    """A measured peak: the machine's 1-minute load average per core before its probe (that load includes
    the run's own threads when it probed after training); null for any other peak."""
    peak_flops_age_s: float | None = None
    """A measured peak: seconds between its probe and this result; null for any other peak."""
    success_per_task: dict | None = None
    """success_rate per task family, {family: rate} over that family's share of the episodes; null when
    success was not measured."""
    loss_floor: float | None = None
    """The dataset's loss floor (manifest.json, `scaling.data.floor`): the lowest val_loss the discrete head
    can reach given the expert's own action noise (nats per action dimension); null when unknown."""
    seed: int | None = None
    """The run's seed (its initialisation and data order); null in results written before it was recorded."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with non-finite floats turned into None (strict JSON)."""
        return {k: _finite(v) for k, v in dataclasses.asdict(self).items()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write result.json atomically (temporary name, then rename), after checking it against its contract."""
        doc = self.to_dict()
        schema.validate("run_result", doc)
        return write_atomic(path, json.dumps(doc, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunResult:
        """Read a result.json written by `save`."""
        values = json.loads(Path(path).read_text())
        return cls(**{f.name: values[f.name] if f.name in values else values.get(f.name, f.default)
                      for f in fields(cls)})


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def result_fields() -> list[str]:
    """The contract's field names, in order."""
    return [f.name for f in fields(RunResult)]
