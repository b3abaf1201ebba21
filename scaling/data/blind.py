"""``BlindSource``: a DataSource with the images and the instruction withheld.

The blind baseline of a sweep trains the largest model on the largest D with only the robot's own
state (proprioception) as input: its validation loss is the *input-free floor*, what a policy gets
without looking or reading. Every report shows how far below it each real run gets; a run that does
not beat it has learned nothing from pixels or language.

Withholding means a constant all-zero image and an instruction of padding only (id 0, masked out as
attention keys), so the model, its shape, its parameter count and FLOPs stay exactly those of the
matching main run; only the information is gone.
"""

from __future__ import annotations

import numpy as np


def blank_inputs(batch: dict) -> dict:
    """The batch with ``image`` zeroed and ``instruction`` all padding (new arrays, input unchanged)."""
    out = dict(batch)
    out["image"] = np.zeros_like(batch["image"])  # (B, H, W, C) uint8
    out["instruction"] = np.zeros_like(batch["instruction"])  # (B, L) int64, 0 = padding
    return out


class BlindSource:
    """Wraps a DataSource; every batch has its image and instruction withheld.

    Everything else (indices, splits, statistics, tokenizers, describe) is the wrapped source's.

    Args:
        source: a ``Dataset`` or ``MixtureSource``.
    """

    blind = True

    def __init__(self, source) -> None:
        self.source = source

    def __getattr__(self, name: str):
        if name == "source":  # not yet set (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def __len__(self) -> int:
        return len(self.source)

    def get_batch(self, indices, chunk: int = 1) -> dict[str, np.ndarray]:
        """The wrapped source's batch with the image and instruction withheld."""
        return blank_inputs(self.source.get_batch(indices, chunk))

    def describe(self) -> dict:
        """The wrapped source's description, marked blind."""
        return {**self.source.describe(), "blind": True}
