"""`Checkpointer`: saves RUN_DIR/checkpoints/last.ckpt every N steps and at the end, and keeps
stable-phase checkpoints (stable-<samples>.ckpt) at chosen sample counts for WSD branching.

Each file is written under a temporary name and renamed, so a kill -9 mid-save leaves the previous
checkpoint intact. What is saved is plain tensors, dicts, lists, strings and numbers, so every
checkpoint loads with ``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch


def checkpoint_step(path: str | os.PathLike) -> int:
    """Optimizer steps done in a checkpoint (read with weights_only=True, memory-mapped)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(ckpt.get("global_step", 0))


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The run's own metadata in a checkpoint: run/model config, losses (see VLAModule)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"global_step": int(ckpt.get("global_step", 0)), **ckpt.get("scaling", {})}


class Checkpointer(pl.Callback):
    """Atomic periodic, final and stable-phase checkpoints.

    Args:
        dirpath: RUN_DIR/checkpoints.
        every_steps: save last.ckpt every this many optimizer steps.
        batch_size: global batch (samples per step), to turn steps into sample counts.
        total_samples: D; the last step may be short.
        keep_at: sample counts at which to save stable-<samples>.ckpt.
    """

    def __init__(self, dirpath: str | os.PathLike, every_steps: int, batch_size: int, total_samples: int,
                 keep_at: tuple[int, ...] = ()) -> None:
        self.dirpath = Path(dirpath)
        self.every_steps = every_steps
        self.batch_size = batch_size
        self.total_samples = total_samples
        self.keep_at = tuple(sorted(set(keep_at)))
        self._seen_step = -1

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def save(self, trainer: "pl.Trainer", path: Path) -> None:
        """Collective save (every rank calls it) to a temporary name; rank 0 renames it."""
        t0 = time.perf_counter()
        tmp = path.with_name(f"{path.name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # False = full state (optimizer, loops), not "weights only"
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier("checkpoint")
        module = trainer.lightning_module
        if hasattr(module, "excluded_seconds"):
            module.excluded_seconds += time.perf_counter() - t0  # not training time

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._seen_step = trainer.global_step
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._seen_step:
            return  # mid-accumulation
        prev, self._seen_step = self._seen_step, step
        samples, prev_samples = self._samples(step), self._samples(prev)
        for at in self.keep_at:
            if prev_samples < at <= samples:
                self.save(trainer, self.dirpath / f"stable-{at}.ckpt")
        if step % self.every_steps == 0 and samples < self.total_samples:
            self.save(trainer, self.last_path)

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not getattr(pl_module, "diverged", False):
            self.save(trainer, self.last_path)

    def _samples(self, step: int) -> int:
        return min(step * self.batch_size, self.total_samples)
