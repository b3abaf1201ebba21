"""What a trained policy actually uses: the validation loss with one input shuffled across samples.

For each input (image, instruction, proprioception) the held-out frames are re-batched with that
input permuted between samples, so it no longer belongs to the rest of its sample, and the loss is
measured again. The increase over the intact loss is the *reliance* on that input, in nats: zero
means the model ignores it. This is what showed that our small VLAs stay at the input-free floor
for their first ~1,000 optimizer steps: their output does not depend on any input at all
(docs/learning-curves.md), and it is recorded in every run's result.json (`input_reliance`).
"""

from __future__ import annotations

import numpy as np
import torch

INPUTS = ("image", "instruction", "proprio")
"""The batch keys probed, in report order."""


@torch.no_grad()
def input_reliance(model, source, max_samples: int = 1024, *, seed: int = 0, batch_size: int = 256,
                   autocast_dtype: torch.dtype | None = None) -> dict[str, float] | None:
    """Loss increase (nats; the head's loss units) when each input is shuffled across held-out frames.

    Args:
        model: a `VLA` (or anything with ``loss(batch) -> (loss, metrics)``), on any device.
        source: the run's DataSource (its validation frames are used).
        max_samples: validation frames to use (evenly spaced, as in validation).
        seed: seed of the permutations (one permutation per input, shared by every batch).
        batch_size: frames per forward pass.
        autocast_dtype: torch dtype for autocast (None = full precision).

    Returns:
        ``{"image": d, "instruction": d, "proprio": d}``, or None when there are no validation frames.
    """
    idx = np.asarray(source.val_indices(max_samples), dtype=np.int64)
    if len(idx) < 2:
        return None
    device = next(model.parameters()).device
    batch = source.get_batch(idx)
    rng = np.random.default_rng(seed)
    perms = {key: rng.permutation(len(idx)) for key in INPUTS}
    was_training = model.training
    model.eval()

    def loss_of(arrays: dict) -> float:
        total = 0.0
        for lo in range(0, len(idx), batch_size):
            part = {k: torch.from_numpy(np.ascontiguousarray(v[lo:lo + batch_size])).to(device)
                    for k, v in arrays.items()}
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                loss, _ = model.loss(part)
            total += float(loss) * len(part["proprio"])
        return total / len(idx)

    try:
        base = loss_of(batch)
        return {key: loss_of({**batch, key: batch[key][perms[key]]}) - base for key in INPUTS}
    finally:
        model.train(was_training)
