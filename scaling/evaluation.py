"""Closed-loop evaluation: the trained model (any family's: its `predict`) as a batched tabletop policy,
and its success rate.

The policy sees what a robot would: the image (uint8), raw proprioception and the instruction text.
It applies the dataset's own preprocessing (instruction tokenizer, proprio mean/std) and maps the
model's first predicted action from [-1, 1] back to raw units with the dataset's ActionTokenizer.
"""

from __future__ import annotations

import numpy as np
import torch

_STD_FLOOR = 1e-6


def _members(source) -> list[dict]:
    """`describe()` of each part of the data: a mixture's members, else the one dataset."""
    desc = source.describe()
    return desc.get("mixture", [desc])


def is_tabletop(source) -> bool:
    """Whether every part of the data came from the built-in tabletop generator."""
    return all(m.get("generator") == "tabletop" for m in _members(source))


def tabletop_families(source) -> tuple[str, ...] | None:
    """The task families the data was generated from (union over a mixture's members); None = all.

    A model is evaluated on the task distribution it was trained on: one trained on
    ``touch,reach_zone`` is not scored on the ten families it never saw.
    """
    fams: set[str] = set()
    for m in _members(source):
        value = m.get("families")
        if not value:  # a member drawn from every family
            return None
        fams.update(f for f in str(value).split(",") if f)
    return tuple(sorted(fams)) or None


def tabletop_objects(source) -> str | None:
    """The objects-per-scene range the data was generated with ("LO-HI"; the widest over a
    mixture's members); None = the generator's default."""
    from scaling.data.tabletop.tasks import DEFAULT_OBJECTS, check_objects

    ranges = [check_objects(m.get("objects")) for m in _members(source)]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return None if (lo, hi) == DEFAULT_OBJECTS else f"{lo}-{hi}"


def not_evaluated_reason(source, n_episodes: int) -> str | None:
    """Why a run has no closed-loop success rate (None when it can be measured)."""
    if n_episodes <= 0:
        return "eval_episodes is 0"
    if not is_tabletop(source):
        kinds = sorted({str(m.get("generator") or m.get("sources") or "imported")
                        for m in _members(source)})
        return (f"closed-loop evaluation needs the built-in tabletop simulator; this data comes from "
                f"{', '.join(kinds)} (no simulator wired for it)")
    return None


class VLAPolicy:
    """Batched policy ``policy(obs) -> (B, A)`` raw actions for `evaluate_policy`.

    Args:
        model: a trained model with ``predict(batch) -> (B, chunk, A)`` (a `VLA`, or any family's
            module as `ResolvedModel.build` returns it; any device; run in eval mode without gradients).
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
        self.blind = bool(getattr(source, "blind", False))  # the blind baseline acts without seeing

    def batch(self, obs: dict) -> dict[str, torch.Tensor]:
        """Observation dict -> the model's batch of tensors."""
        ids = self.tokenizer.encode_batch(list(obs["instruction"]))  # (B, L) int64, 0-padded
        proprio = (np.asarray(obs["proprio"], dtype=np.float32) - self.mean) / self.std  # (B, P)
        arrays = {"image": np.asarray(obs["image"], dtype=np.uint8), "proprio": proprio.astype(np.float32),
                  "instruction": ids.astype(np.int64)}
        if self.blind:
            from scaling.data.blind import blank_inputs
            arrays = blank_inputs(arrays)
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
    """Closed-loop tabletop success over `n_episodes` seeded episodes, on the families (and objects
    per scene) the data was generated from; None when 0 or not tabletop (`not_evaluated_reason` says why)."""
    out = evaluate_success(model, source, n_episodes, seed=seed, precision=precision)
    return None if out is None else out["success_rate"]


def evaluate_success(model, source, n_episodes: int, *, seed: int = 0, precision: str = "32-true") -> dict | None:
    """As `success_rate`, with the breakdown: {"success_rate", "per_task": {family: rate},
    "per_task_episodes": {family: episodes}}; None when not evaluated."""
    if not_evaluated_reason(source, n_episodes) is not None:
        return None
    from scaling.data.tabletop import evaluate_policy

    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    if dtype is torch.float16 and next(model.parameters()).device.type == "cpu":
        dtype = torch.bfloat16  # fp16 autocast is a GPU feature
    was_training = model.training
    policy = VLAPolicy(model, source, autocast_dtype=dtype)
    try:
        out = evaluate_policy(policy, int(n_episodes), seed=seed, image_size=source.image_size,
                              families=tabletop_families(source), objects=tabletop_objects(source))
    finally:
        model.train(was_training)
    return {"success_rate": float(out["success_rate"]),
            "per_task": {k: float(v) for k, v in sorted(out["per_task"].items())},
            "per_task_episodes": {k: int(v) for k, v in sorted(out["per_task_episodes"].items())}}
