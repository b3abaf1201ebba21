"""Learning-rate schedules whose length is exactly the run's length.

Chinchilla (Hoffmann et al. 2022, App. B) showed that a cosine cycle longer than the run biases the
fitted law, so every schedule here is a pure function of (step, total_steps) that ends at the run's
last step. WSD (warmup-stable-decay; Hu et al. 2024 "MiniCPM", Hägele et al. 2024) keeps a constant
rate and cools down over the last ~20% of steps with a 1-sqrt shape, so one stable phase can branch
into several data sizes.
"""

from __future__ import annotations

import math


def _warmup(step: int, warmup_steps: int) -> float | None:
    # Linear warmup from lr/warmup_steps at step 0 to lr at step warmup_steps - 1 (never exactly 0,
    # so the first step already learns).
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return None


def cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.1) -> float:
    """Multiplier of the peak lr: linear warmup, then cosine decay reaching `min_ratio` at the last step.

    Args:
        step: optimizer step, 0-based.
        total_steps: steps in the run; the last step is total_steps - 1.
        warmup_steps: steps of linear warmup.
        min_ratio: final multiplier (exactly at step total_steps - 1).
    """
    warm = _warmup(step, warmup_steps)
    if warm is not None:
        return warm
    decay_steps = total_steps - 1 - warmup_steps
    if decay_steps <= 0:
        return 1.0
    progress = min(max((step - warmup_steps) / decay_steps, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def wsd_decay_start(total_steps: int, decay_frac: float = 0.2) -> int:
    """First step of the WSD cooldown: the last ceil(decay_frac * total_steps) steps cool down."""
    return max(total_steps - math.ceil(decay_frac * total_steps), 0)


def wsd(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0, decay_frac: float = 0.2) -> float:
    """Multiplier of the peak lr: linear warmup, constant, then a 1-sqrt cooldown to `min_ratio`.

    The cooldown is ``1 - sqrt(progress)`` (Hägele et al. 2024, "Scaling Laws and Compute-Optimal
    Training Beyond Fixed Training Durations"), reaching `min_ratio` exactly at step total_steps - 1.
    """
    warm = _warmup(step, warmup_steps)
    start = wsd_decay_start(total_steps, decay_frac)
    if warm is not None and step < start:
        return warm
    if step < start:
        return 1.0
    span = total_steps - 1 - start
    if span <= 0:
        return min_ratio
    progress = min((step - start) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * (1.0 - math.sqrt(progress))


def lr_multiplier(kind: str, step: int, total_steps: int, warmup_steps: int, min_ratio: float,
                  decay_frac: float = 0.2) -> float:
    """Dispatch on the schedule name ("cosine" | "wsd")."""
    if kind == "cosine":
        return cosine(step, total_steps, warmup_steps, min_ratio)
    if kind == "wsd":
        return wsd(step, total_steps, warmup_steps, min_ratio, decay_frac)
    raise ValueError(f"unknown schedule {kind!r}")
