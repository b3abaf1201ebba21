"""The Episode record: one demonstration, the unit every data source produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Episode:
    """One robot demonstration (T steps).

    Attributes:
        images: (T, H, W, 3) uint8 camera RGB, one frame per step.
        proprio: (T, P) float32 proprioceptive state at each step.
        actions: (T, A) float32 action taken at step t.
        instruction: natural-language instruction for the episode.
        task: task family or task name ("push", "reach-v3", ...).
        success: whether the (expert) episode succeeded.
        source: "tabletop" | "metaworld" | "lerobot".
        seed: the generator seed of this episode, if any.
        meta: free-form details (noise level, objects, ...); must be JSON-serialisable.
        clean_actions: (T, A) float64 actions the expert meant before its Gaussian noise, or None
            when unknown (imported data). With ``action_noise_std`` it gives the loss floor
            (`scaling.data.floor`); neither is stored in the dataset's arrays.
        action_noise_std: (T, A) std of the Gaussian noise added to each clean action (raw units,
            0 = none), the recorded action being clean + noise clipped to the action bounds.
    """

    images: np.ndarray
    proprio: np.ndarray
    actions: np.ndarray
    instruction: str
    task: str
    success: bool
    source: str
    seed: int | None = None
    meta: dict = field(default_factory=dict)
    clean_actions: np.ndarray | None = None
    action_noise_std: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])
