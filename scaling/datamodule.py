"""Training and validation batches over a `DataSource`, sharded across ranks, resumable mid-run.

The run trains on exactly D = cfg.data.samples frames, ``source.train_indices(D, seed)`` in order: step s
uses the global batch ``indices[s*B:(s+1)*B]`` (the last step may be short). Each global batch is
cut into ``world_size * accumulate`` micro-batches; rank r takes micro-batches ``a*W + r`` for
a = 0..accumulate-1, so ranks never overlap and the global batch is the same for any device count.
A resumed (or branched) run starts at its checkpoint's step of the same index sequence
(``TrainBatches(..., start_step=s)``), so the samples seen are exactly D whatever the interruptions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vla_core.errors import BadInput


def plan_accumulation(batch_size: int, world_size: int, micro_batch_size: int | None) -> tuple[int, int]:
    """Micro-batch size and accumulation steps so that world_size * accumulate * micro == batch_size.

    Raises:
        BadInput: the global batch does not split evenly over the devices and micro-batches.
    """
    if batch_size % world_size:
        raise BadInput(f"train: --batch-size {batch_size} is not divisible by the world size {world_size}")
    per_rank = batch_size // world_size
    micro = per_rank if micro_batch_size is None else min(micro_batch_size, per_rank)
    if per_rank % micro:
        raise BadInput(f"train: --micro-batch-size {micro} does not divide the per-device batch {per_rank} "
                       f"(batch_size {batch_size} / world size {world_size})")
    return micro, per_rank // micro


def split_step(batch: np.ndarray, parts: int) -> list[np.ndarray]:
    """Cut one step's indices into `parts` micro-batches of (nearly) equal size.

    A short last step with fewer samples than parts repeats some of its samples so every rank and
    accumulation slot has at least one (DDP needs a forward pass on every rank).
    """
    if len(batch) < parts:
        batch = np.resize(batch, parts)
    return np.array_split(batch, parts)


def _to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class TrainBatches(IterableDataset):
    """Yields this rank's micro-batches (dicts of tensors) from `start_step` to the end of the run.

    Args:
        source: the DataSource (`get_batch(indices, chunk)`).
        indices: (D,) int64 training frame indices for the whole run.
        batch_size: global batch B (samples per optimizer step).
        micro_batch_size: samples per forward pass on one rank.
        accumulate: micro-batches per optimizer step on one rank.
        rank, world_size: this process and the number of processes.
        chunk: action chunk length passed to get_batch.
        start_step: first optimizer step to yield (the steps a checkpoint already holds are skipped).
    """

    def __init__(self, source, indices: np.ndarray, *, batch_size: int, micro_batch_size: int, accumulate: int,
                 rank: int, world_size: int, chunk: int, start_step: int = 0) -> None:
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.micro, self.accumulate = batch_size, micro_batch_size, accumulate
        self.rank, self.world_size, self.chunk = rank, world_size, chunk
        self.steps = math.ceil(len(self.indices) / batch_size)
        self.start_step = start_step

    def micro_indices(self, step: int) -> list[np.ndarray]:
        """This rank's micro-batch indices for optimizer step `step` (accumulate arrays)."""
        batch = self.indices[step * self.batch_size:(step + 1) * self.batch_size]
        parts = split_step(batch, self.world_size * self.accumulate)
        return [parts[a * self.world_size + self.rank] for a in range(self.accumulate)]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        item = 0
        for step in range(self.start_step, self.steps):
            for idx in self.micro_indices(step):
                # DataLoader reads workers round-robin, so item j from worker j % n keeps the order.
                if item % n_workers == worker:
                    yield _to_torch(self.source.get_batch(idx, chunk=self.chunk))
                item += 1


def loader(dataset: TrainBatches, num_workers: int = 0) -> DataLoader:
    """Micro-batches in order; with workers, each builds every n-th one (batches arrive in order)."""
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, persistent_workers=False,
                      pin_memory=False)


def val_batches(source, max_samples: int, micro_batch_size: int, rank: int, world_size: int,
                chunk: int) -> list[dict[str, torch.Tensor]]:
    """This rank's share of the validation frames, as micro-batches (loaded once, reused each time).

    Every rank gets the same number of batches (some possibly empty-padded by repetition) so that
    collective reductions line up.
    """
    idx = source.val_indices(max_samples) if max_samples > 0 else np.zeros(0, dtype=np.int64)
    if len(idx) == 0:
        return []
    shard = np.array_split(np.asarray(idx, dtype=np.int64), world_size)[rank]
    n_batches = math.ceil(math.ceil(len(idx) / world_size) / micro_batch_size)
    out = []
    for b in range(n_batches):
        part = shard[b * micro_batch_size:(b + 1) * micro_batch_size]
        batch = _to_torch(source.get_batch(part if len(part) else idx[:1], chunk=chunk))
        batch["_weight"] = torch.tensor(float(len(part)))  # 0 for a padding batch
        out.append(batch)
    return out
