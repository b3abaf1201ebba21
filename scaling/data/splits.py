"""Validation split by episode and nested training subsets.

- The split is decided per episode (never per frame, so no frame of a validation episode is ever
  trained on) from a hash of (split seed, source, episode uid). An episode's side depends on nothing
  else, so it is deterministic and stable as the dataset grows: generating 2x the episodes keeps
  every old episode on its old side. The uid is the episode's content hash taken at write time
  (carried over by ``clean``), so regenerating the same episode gives the same uid.
- Training subsets are nested: ``nested_indices(pool, n)`` is a prefix of ``nested_indices(pool, 2n)``
  because both read the same fixed stream: epoch e is a permutation of the pool seeded by
  (seed, e), and the stream is epoch 0, epoch 1, ... Data-size sweeps are therefore comparable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

DEFAULT_VAL_FRACTION = 0.05


def _unit_hash(seed: int, source: str, uid: str) -> float:
    """A uniform number in [0, 1) from sha256 of the episode's identity."""
    digest = hashlib.sha256(f"{seed}\x1f{source}\x1f{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def validation_mask(sources: Sequence[str], uids: Sequence[str], *,
                    val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0) -> np.ndarray:
    """(E,) bool, True for validation episodes.

    Episode i is in validation when hash(seed, source_i, uid_i) < val_fraction. With at least two
    episodes and val_fraction > 0 the split has at least one validation and one training episode
    (the episode with the smallest hash, resp. the largest, is moved); only this tiny-dataset
    fallback can change when the dataset grows.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    h = np.array([_unit_hash(seed, s, u) for s, u in zip(sources, uids)], dtype=np.float64)
    mask = h < val_fraction
    if len(h) >= 2 and val_fraction > 0:
        if not mask.any():
            mask[int(np.argmin(h))] = True
        if mask.all():
            mask[int(np.argmax(h))] = False
    return mask


def nested_indices(pool: np.ndarray, n_samples: int, seed: int = 0) -> np.ndarray:
    """The first ``n_samples`` of the stream perm_0(pool), perm_1(pool), ... as int64.

    Args:
        pool: (M,) the candidate indices (e.g. every training frame), in a fixed order.
        n_samples: how many to draw; above M the pool repeats with a fresh permutation per epoch.
        seed: the stream's seed; epoch e uses ``default_rng([seed, e])``.
    """
    pool = np.asarray(pool, dtype=np.int64)
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if n_samples == 0:
        return np.zeros(0, dtype=np.int64)
    if pool.size == 0:
        raise ValueError("no training frames to sample from")
    parts = []
    left = n_samples
    epoch = 0
    while left > 0:
        perm = np.random.default_rng([seed, epoch]).permutation(pool.size)
        take = min(left, pool.size)
        parts.append(pool[perm[:take]])
        left -= take
        epoch += 1
    return np.concatenate(parts)


def evenly_spaced(pool: np.ndarray, max_samples: int | None) -> np.ndarray:
    """Deterministic subset of ``pool`` (validation): all of it, or ``max_samples`` evenly spaced."""
    pool = np.asarray(pool, dtype=np.int64)
    if max_samples is None or max_samples >= pool.size:
        return pool
    if max_samples <= 0:
        return np.zeros(0, dtype=np.int64)
    pick = np.linspace(0, pool.size - 1, max_samples).round().astype(np.int64)
    return pool[pick]
