"""Closed-loop evaluation: the trained `VLA` as a batched tabletop policy, and its success rate.

The policy sees what a robot would: the image (uint8), raw proprioception and the instruction text.
It applies the dataset's own preprocessing (instruction tokenizer, proprio mean/std) and maps the
model's first predicted action from [-1, 1] back to raw units with the dataset's ActionTokenizer.
"""

from __future__ import annotations

import numpy as np
import torch

_STD_FLOOR = 1e-6


def is_tabletop(source) -> bool:
    """Whether every part of the data came from the built-in tabletop generator."""
    desc = source.describe()
    members = desc.get("mixture", [desc])
    return all(m.get("generator") == "tabletop" for m in members)


class VLAPolicy:
    """Batched policy ``policy(obs) -> (B, A)`` raw actions for `evaluate_policy`.

    Args:
        model: a trained `VLA` (any device; run in eval mode without gradients).
        source: the run's DataSource (tokenizer, proprio stats, action tokenizer).
        autocast_dtype: torch dtype for autocast (None = full precision).
    """

    def __init__(self, model, source, autocast_dtype: torch.dtype | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = source.tokenizer
        self.action_tokenizer = source.action_tokenizer
        mean = getattr(source, "proprio_mean", None)
        std = getattr(source, "proprio_std", None)
        if mean is None:  # same rule as the data package: near-constant features are not scaled
            mean = np.asarray(source.stats["proprio"]["mean"], dtype=np.float32)
            raw_std = np.asarray(source.stats["proprio"]["std"], dtype=np.float32)
            std = np.where(raw_std > _STD_FLOOR, raw_std, 1.0)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.autocast_dtype = autocast_dtype
        self.device = next(model.parameters()).device

    def batch(self, obs: dict) -> dict[str, torch.Tensor]:
        """Observation dict -> the model's batch of tensors."""
        ids = self.tokenizer.encode_batch(list(obs["instruction"]))  # (B, L) int64, 0-padded
        proprio = (np.asarray(obs["proprio"], dtype=np.float32) - self.mean) / self.std  # (B, P)
        arrays = {"image": np.asarray(obs["image"], dtype=np.uint8), "proprio": proprio.astype(np.float32),
                  "instruction": ids.astype(np.int64)}
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in arrays.items()}

    @torch.no_grad()
    def __call__(self, obs: dict) -> np.ndarray:
        batch = self.batch(obs)
        enabled = self.autocast_dtype is not None
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=enabled):
            pred = self.model.predict(batch)  # (B, chunk, A) normalised
        first = pred[:, 0].float().cpu().numpy()  # (B, A): execute the first action of the chunk
        return self.action_tokenizer.unnormalize(first)  # (B, A) raw units


def success_rate(model, source, n_episodes: int, *, seed: int = 0, precision: str = "32-true") -> float | None:
    """Closed-loop tabletop success over `n_episodes` seeded episodes; None when 0 or not tabletop."""
    if n_episodes <= 0 or not is_tabletop(source):
        return None
    from scaling.data.tabletop import evaluate_policy

    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if dtype is torch.float16 and next(model.parameters()).device.type == "cpu":
        dtype = torch.bfloat16  # fp16 autocast is a GPU feature
    was_training = model.training
    policy = VLAPolicy(model, source, autocast_dtype=dtype)
    try:
        out = evaluate_policy(policy, int(n_episodes), seed=seed, image_size=source.image_size)
    finally:
        model.train(was_training)
    return float(out["success_rate"])
