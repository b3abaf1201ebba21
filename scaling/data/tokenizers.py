"""Action and instruction tokenizers, both built offline from a dataset and saved with it.

- ``ActionTokenizer``: OpenVLA's scheme (Kim et al. 2024, sec. 3.2): each action dimension is
  mapped with its 1st/99th percentiles to [-1, 1] (clipped, so outliers do not stretch the bins),
  then discretised into 256 uniform bins; decoding returns bin centres.
- ``InstructionTokenizer``: a word-level vocabulary from the dataset's own instructions
  (lower-cased, punctuation split off); nothing is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

# Below this q99 - q01 spread a dimension is treated as constant (avoids dividing by ~0).
_MIN_RANGE = 1e-8
_WORD_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")


class ActionTokenizer:
    """Maps raw actions to [-1, 1] with q01/q99 bounds and to ``bins`` uniform bins per dimension.

    Args:
        q01: (A,) lower bound per action dimension (raw units), maps to -1.
        q99: (A,) upper bound per action dimension (raw units), maps to +1.
        bins: number of uniform bins over [-1, 1] (256 as in OpenVLA).
    """

    def __init__(self, q01: Sequence[float], q99: Sequence[float], bins: int = 256) -> None:
        self.q01 = np.asarray(q01, dtype=np.float64)
        self.q99 = np.asarray(q99, dtype=np.float64)
        if self.q01.shape != self.q99.shape or self.q01.ndim != 1:
            raise ValueError(f"q01 {self.q01.shape} and q99 {self.q99.shape} must be equal 1-D shapes")
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.bins = int(bins)
        # A constant dimension normalises to 0 (dividing by 1, not ~0) and decodes to its value.
        spread = self.q99 - self.q01
        varies = spread > _MIN_RANGE
        self._half = np.where(varies, spread / 2.0, 1.0)
        self._half_out = np.where(varies, spread / 2.0, 0.0)
        self._mid = (self.q99 + self.q01) / 2.0

    @property
    def action_dim(self) -> int:
        return int(self.q01.shape[0])

    @property
    def bin_width(self) -> float:
        """Width of one bin in normalised units (2 / bins)."""
        return 2.0 / self.bins

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) raw actions -> (..., A) float32 in [-1, 1] (clipped outside q01..q99)."""
        x = (np.asarray(actions, dtype=np.float64) - self._mid) / self._half
        return np.clip(x, -1.0, 1.0).astype(np.float32)

    def unnormalize(self, normed: np.ndarray) -> np.ndarray:
        """(..., A) values in [-1, 1] -> (..., A) float32 raw actions."""
        x = np.clip(np.asarray(normed, dtype=np.float64), -1.0, 1.0)
        return (x * self._half_out + self._mid).astype(np.float32)

    def tokens_from_normalized(self, normed: np.ndarray) -> np.ndarray:
        """(..., A) values in [-1, 1] -> (..., A) int64 bin ids in [0, bins)."""
        x = np.clip(np.asarray(normed, dtype=np.float64), -1.0, 1.0)
        return np.minimum(np.floor((x + 1.0) / self.bin_width), self.bins - 1).astype(np.int64)

    def edges(self) -> np.ndarray:
        """(A, bins - 1) float64 interior bin edges in raw action units, ascending per dimension.

        Raw action a falls in bin k exactly when edges[k-1] <= a < edges[k] (up to the float32
        rounding of `normalize`), with edges[-1] = -inf and edges[bins-1] = +inf: the clipping
        to [-1, 1] sends everything below q01 into bin 0 and everything from q99 up into the last.
        """
        k = np.arange(1, self.bins, dtype=np.float64)  # (bins - 1,)
        return self._mid[:, None] + self._half[:, None] * (-1.0 + k[None, :] * self.bin_width)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """(..., A) raw actions -> (..., A) int64 bin ids in [0, bins)."""
        return self.tokens_from_normalized(self.normalize(actions))

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(..., A) bin ids -> (..., A) float32 raw actions at the bin centres."""
        t = np.clip(np.asarray(tokens, dtype=np.int64), 0, self.bins - 1)
        centres = -1.0 + (t + 0.5) * self.bin_width
        return self.unnormalize(centres)

    def to_dict(self) -> dict:
        return {"type": "uniform_bins", "bins": self.bins, "q01": self.q01.tolist(), "q99": self.q99.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ActionTokenizer:
        return cls(d["q01"], d["q99"], bins=int(d.get("bins", 256)))

    @classmethod
    def from_stats(cls, stats: dict, bins: int = 256) -> ActionTokenizer:
        """Builds the tokenizer from a stats.json dict (its ``action`` q01/q99)."""
        return cls(stats["action"]["q01"], stats["action"]["q99"], bins=bins)


def split_words(text: str) -> list[str]:
    """Lower-cases ``text`` and splits it into words and single punctuation marks."""
    return _WORD_RE.findall(text.lower())


class InstructionTokenizer:
    """Word-level tokenizer: ``<pad>`` = 0, ``<unk>`` = 1, optional ``<bos>``/``<eos>``.

    Args:
        vocab: the words, in id order after the special tokens.
        max_len: padded length L of ``encode_batch`` (longest instruction, specials included).
        add_bos_eos: whether ``encode`` wraps the words in ``<bos>`` ... ``<eos>``.
    """

    PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
    pad_id = 0
    unk_id = 1

    def __init__(self, vocab: Sequence[str], max_len: int, add_bos_eos: bool = False) -> None:
        self.add_bos_eos = bool(add_bos_eos)
        specials = [self.PAD, self.UNK] + ([self.BOS, self.EOS] if self.add_bos_eos else [])
        words = [w for w in vocab if w not in specials]
        self.itos: list[str] = specials + words
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("instruction vocabulary has duplicate words")
        self.max_len = int(max_len)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def words(self) -> list[str]:
        """The vocabulary without special tokens."""
        return self.itos[4 if self.add_bos_eos else 2 :]

    @classmethod
    def build(cls, texts: Iterable[str], add_bos_eos: bool = False) -> InstructionTokenizer:
        """Builds the vocabulary (sorted, so it is deterministic) from ``texts``."""
        vocab: set[str] = set()
        longest = 0
        for text in texts:
            words = split_words(text)
            vocab.update(words)
            longest = max(longest, len(words))
        extra = 2 if add_bos_eos else 0
        return cls(sorted(vocab), max_len=max(1, longest + extra), add_bos_eos=add_bos_eos)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (unpadded; unknown words map to ``unk_id``)."""
        ids = [self.stoi.get(w, self.unk_id) for w in split_words(text)]
        if self.add_bos_eos:
            ids = [self.stoi[self.BOS], *ids, self.stoi[self.EOS]]
        return ids

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(B,) texts -> (B, max_len) int64 ids, padded with 0 and truncated to ``max_len``."""
        out = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for i, text in enumerate(texts):
            ids = self.encode(text)[: self.max_len]
            out[i, : len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> space-joined words, dropping padding and bos/eos."""
        skip = {self.pad_id}
        if self.add_bos_eos:
            skip |= {self.stoi[self.BOS], self.stoi[self.EOS]}
        return " ".join(self.itos[i] if 0 <= i < len(self.itos) else self.UNK for i in ids if i not in skip)

    @classmethod
    def union(cls, tokenizers: Sequence[InstructionTokenizer]) -> InstructionTokenizer:
        """One tokenizer over the union of the vocabularies (for mixtures)."""
        bos = any(t.add_bos_eos for t in tokenizers)
        vocab = sorted({w for t in tokenizers for w in t.words})
        max_len = max(t.max_len + (0 if t.add_bos_eos or not bos else 2) for t in tokenizers)
        return cls(vocab, max_len=max_len, add_bos_eos=bos)

    def to_dict(self) -> dict:
        return {
            "type": "word_level",
            "lowercase": True,
            "add_bos_eos": self.add_bos_eos,
            "max_len": self.max_len,
            "pad_id": self.pad_id,
            "unk_id": self.unk_id,
            "vocab": self.itos,
        }

    @classmethod
    def from_dict(cls, d: dict) -> InstructionTokenizer:
        tok = cls(d["vocab"], max_len=int(d["max_len"]), add_bos_eos=bool(d.get("add_bos_eos", False)))
        if tok.itos != list(d["vocab"]):
            raise ValueError("tokenizer vocab does not start with the special tokens")
        return tok
