"""``open_source``: a dataset path or a weighted mixture of datasets, as one ``DataSource``.

A mixture (as OpenVLA and Octo mix Open X-Embodiment) samples member m with probability
weight_m / sum(weights). Choices are drawn in fixed blocks of ``_BLOCK`` positions, block b from
``default_rng([seed, b])``, and the k-th draw of member m is ``member.train_indices(...)[k]``;
both streams are prefix-stable, so mixture subsets are nested like a single dataset's.

Normalisation uses pooled stats (``scaling.data.stats.pool_stats``): exact pooled mean/std for
proprio, and an action q01/q99 envelope (min of q01s, max of q99s) so one action tokenizer serves
every member without clipping any member's in-range actions. The instruction tokenizer is the
union of the members' vocabularies; each member's instructions are re-encoded with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scaling.data.dataset import Dataset, assemble_batch
from scaling.data.splits import evenly_spaced
from scaling.data.stats import pool_stats
from scaling.data.tokenizers import ActionTokenizer, InstructionTokenizer
from vla_core.errors import BadInput

_BLOCK = 4096
_STD_FLOOR = 1e-6


class MixtureSource:
    """Several datasets sampled by weight; global frame index = member offset + member frame.

    Args:
        members: the opened datasets (identical image size, proprio and action dims).
        weights: sampling weight of each member (positive; normalised here).
    """

    def __init__(self, members: list[Dataset], weights: list[float]) -> None:
        if not members:
            raise BadInput("mixture: needs at least one member")
        first = members[0]
        for m in members[1:]:
            for attr in ("image_size", "proprio_dim", "action_dim"):
                if getattr(m, attr) != getattr(first, attr):
                    raise BadInput(f"mixture: {m.path} has {attr} {getattr(m, attr)}, "
                                   f"{first.path} has {getattr(first, attr)}")
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(members),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise BadInput(f"mixture: weights must be positive numbers, got {list(weights)}")
        self.members = members
        self.weights = w / w.sum()
        self.image_size, self.proprio_dim, self.action_dim = first.image_size, first.proprio_dim, first.action_dim
        self.offsets = np.cumsum([0] + [m.n_frames for m in members]).astype(np.int64)
        self.n_frames = int(self.offsets[-1])
        self.stats = pool_stats([m.stats for m in members], [m.n_frames for m in members])
        self.action_tokenizer = ActionTokenizer.from_stats(self.stats)
        self.tokenizer = InstructionTokenizer.union([m.tokenizer for m in members])
        self._ids = [self.tokenizer.encode_batch(list(m.episodes["instruction"])) for m in members]
        self.proprio_mean = np.asarray(self.stats["proprio"]["mean"], dtype=np.float32)
        std = np.asarray(self.stats["proprio"]["std"], dtype=np.float32)
        self.proprio_std = np.where(std > _STD_FLOOR, std, 1.0).astype(np.float32)

    def __len__(self) -> int:
        return self.n_frames

    @property
    def loss_floor(self) -> None:
        """Unknown (None): the members' floors hold for their own bins, not the pooled tokenizer's."""
        return None

    @property
    def n_train_frames(self) -> int:
        """Unique training frames over all members."""
        return int(sum(m.n_train_frames for m in self.members))

    def member_choices(self, n_samples: int, seed: int = 0) -> np.ndarray:
        """(n_samples,) int64 member of each stream position (prefix-stable in ``n_samples``)."""
        blocks = [np.random.default_rng([seed, b]).choice(len(self.members), size=_BLOCK, p=self.weights)
                  for b in range(-(-n_samples // _BLOCK))]
        return np.concatenate(blocks)[:n_samples].astype(np.int64) if blocks else np.zeros(0, np.int64)

    def train_indices(self, n_samples: int, seed: int = 0) -> np.ndarray:
        """(n_samples,) int64 global frame indices; member m drawn with probability weight_m."""
        choice = self.member_choices(n_samples, seed)
        out = np.empty(n_samples, dtype=np.int64)
        for m, ds in enumerate(self.members):
            pos = np.flatnonzero(choice == m)
            out[pos] = ds.train_indices(pos.size, seed) + self.offsets[m]
        return out

    def val_indices(self, max_samples: int | None = None) -> np.ndarray:
        """Every member's validation frames (each capped by its weight's share of ``max_samples``)."""
        parts = []
        for m, ds in enumerate(self.members):
            cap = None if max_samples is None else max(1, int(round(max_samples * self.weights[m])))
            parts.append(ds.val_indices(cap) + self.offsets[m])
        out = np.concatenate(parts)
        return out if max_samples is None else evenly_spaced(out, max_samples)

    def get_batch(self, indices, chunk: int = 1) -> dict[str, np.ndarray]:
        """The contract's batch; rows of each member read from its own shards."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_frames):
            raise IndexError(f"frame index out of range [0, {self.n_frames})")
        member = np.searchsorted(self.offsets, idx, side="right") - 1
        b = idx.size
        raw = {
            "image": np.empty((b, self.image_size, self.image_size, 3), dtype=np.uint8),
            "proprio": np.empty((b, self.proprio_dim), dtype=np.float32),
            "actions_raw": np.empty((b, chunk, self.action_dim), dtype=np.float32),
        }
        ids = np.zeros((b, self.tokenizer.max_len), dtype=np.int64)
        for m in np.unique(member):
            rows = np.flatnonzero(member == m)
            part = self.members[m].read_raw(idx[rows] - self.offsets[m], chunk)
            for k in raw:
                raw[k][rows] = part[k]
            ids[rows] = self._ids[m][part["episode"]]
        return assemble_batch(raw, ids, self.action_tokenizer, self.proprio_mean, self.proprio_std)

    def describe(self) -> dict:
        """The mixture a run used: members with weights and counts."""
        return {
            "mixture": [{**m.describe(), "weight": float(w)} for m, w in zip(self.members, self.weights)],
            "episodes": int(sum(m.n_episodes for m in self.members)),
            "frames": self.n_frames, "train_frames": self.n_train_frames,
            "normalization": "pooled (exact mean/std; q01/q99 envelope)",
        }


def open_source(spec) -> Dataset | MixtureSource:
    """A ``DataSource`` from a dataset path or ``{"mixture": [{"path": ..., "weight": ...}, ...]}``."""
    if isinstance(spec, (str, Path)):
        return Dataset(spec)
    if not isinstance(spec, dict) or not isinstance(spec.get("mixture"), list):
        raise BadInput(f"data spec must be a dataset path or {{'mixture': [...]}}, got {spec!r}"[:200])
    members, weights = [], []
    for i, item in enumerate(spec["mixture"]):
        if not isinstance(item, dict) or "path" not in item:
            raise BadInput(f"mixture item {i}: needs a 'path' (and optional 'weight'), got {item!r}"[:200])
        try:
            weights.append(float(item.get("weight", 1.0)))
        except (TypeError, ValueError):
            raise BadInput(f"mixture item {i}: weight {item.get('weight')!r} is not a number") from None
        members.append(Dataset(item["path"]))
    return MixtureSource(members, weights)
