"""``Dataset``: a checked, memory-mapped view of one dataset folder, and a ``DataSource``.

Frames are numbered globally in episode order (episode e owns frames
``frame_start[e] .. frame_start[e] + length[e] - 1``). ``get_batch`` reads only the rows asked for
from the shards' memory maps, so memory stays bounded whatever the dataset size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scaling.data.episode import Episode
from scaling.data.format import ARRAYS, FORMAT_VERSION, sha256_file
from scaling.data.splits import DEFAULT_VAL_FRACTION, evenly_spaced, nested_indices, validation_mask
from scaling.data.tokenizers import ActionTokenizer, InstructionTokenizer
from vla_core.errors import BadInput

_STD_FLOOR = 1e-6


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise BadInput(f"{path}: missing (not a dataset, or an incomplete write)")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def _load_array(path: Path, frames: int, shape: list, dtype: str) -> np.ndarray:
    """Memory-maps one shard file and checks its header against the manifest."""
    if not path.is_file():
        raise BadInput(f"{path}: shard file missing")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"{path}: truncated or corrupt shard ({str(exc).splitlines()[0]})") from None
    if arr.shape != (frames, *shape) or arr.dtype != np.dtype(dtype):
        raise BadInput(f"{path}: holds {arr.shape} {arr.dtype}, manifest says {(frames, *shape)} {dtype}")
    return arr


class Dataset:
    """One dataset folder, opened and checked (raises ``BadInput`` naming the bad file).

    Args:
        path: the dataset folder.
        val_fraction: fraction of episodes held out for validation (by episode hash).
        split_seed: seed of the validation split hash.
    """

    def __init__(self, path: str | Path, *, val_fraction: float = DEFAULT_VAL_FRACTION,
                 split_seed: int = 0) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BadInput(f"{self.path}: no such dataset folder")
        if not self.path.is_dir():
            raise BadInput(f"{self.path}: not a folder")
        self.manifest = _read_json(self.path / "manifest.json")
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BadInput(f"{self.path / 'manifest.json'}: unknown format_version {version!r} "
                           f"(this version reads {FORMAT_VERSION})")
        try:
            self._load()
        except BadInput:
            raise
        except (KeyError, TypeError, IndexError, ValueError) as exc:  # a field missing or of the wrong type
            raise BadInput(f"{self.path}: malformed dataset metadata ({type(exc).__name__}: {exc})") from None

        self.val_fraction = val_fraction
        self.is_val = validation_mask(list(self.episodes["source"]), list(self.episodes["uid"]),
                                      val_fraction=val_fraction, seed=split_seed)
        self._train_frames = self._frames_of(~self.is_val)
        self._val_frames = self._frames_of(self.is_val)

    def _load(self) -> None:
        """Reads stats, tokenizers, the episode table and the shard headers."""
        import pyarrow.parquet as pq

        self.stats = _read_json(self.path / "stats.json")
        tok = _read_json(self.path / "tokenizer.json")
        self.tokenizer = InstructionTokenizer.from_dict(tok["instruction"])
        self.action_tokenizer = ActionTokenizer.from_dict(tok["action"])
        feats = self.manifest["features"]
        shards = self.manifest["shards"]
        table_path = self.path / "episodes.parquet"
        try:
            self.episodes = pq.read_table(table_path).to_pandas()
        except Exception as exc:  # pyarrow raises several types for missing/corrupt files
            raise BadInput(f"{table_path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None

        self.shards = self._open_shards()
        self.n_episodes = len(self.episodes)
        self.n_frames = int(sum(s["frames"] for s in shards))
        counts = self.manifest.get("counts", {})
        if counts.get("frames") != self.n_frames or counts.get("episodes") != self.n_episodes:
            raise BadInput(f"{self.path / 'manifest.json'}: counts {counts} disagree with the shards "
                           f"({self.n_frames} frames) or episodes.parquet ({self.n_episodes} episodes)")
        self.frame_start = self.episodes["frame_start"].to_numpy(np.int64)
        self.length = self.episodes["length"].to_numpy(np.int64)
        self.ep_shard = self.episodes["shard"].to_numpy(np.int64)
        self.shard_start = np.cumsum([0] + [s["frames"] for s in shards])[:-1].astype(np.int64)

        self.image_size = int(feats["images"]["shape"][0])
        self.proprio_dim = int(feats["proprio"]["shape"][0])
        self.action_dim = int(feats["actions"]["shape"][0])
        self.proprio_mean = np.asarray(self.stats["proprio"]["mean"], dtype=np.float32)
        std = np.asarray(self.stats["proprio"]["std"], dtype=np.float32)
        self.proprio_std = np.where(std > _STD_FLOOR, std, 1.0).astype(np.float32)
        # (E, L) token ids per episode, encoded once: get_batch only gathers rows.
        self.instruction_ids = self.tokenizer.encode_batch(list(self.episodes["instruction"]))

    def _open_shards(self) -> list[dict[str, np.ndarray]]:
        """Memory maps of every shard file, headers checked against the manifest."""
        feats = self.manifest["features"]
        out = []
        for s in self.manifest["shards"]:
            d = self.path / "shards" / s["name"]
            out.append({k: _load_array(d / f"{k}.npy", s["frames"], feats[k]["shape"], feats[k]["dtype"])
                        for k in ARRAYS})
        return out

    def __getstate__(self) -> dict:
        # Pickle (e.g. DataLoader workers under "spawn") without the memory maps' contents;
        # the copy re-maps the same files.
        state = self.__dict__.copy()
        state["shards"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.shards = self._open_shards()

    def _frames_of(self, mask: np.ndarray) -> np.ndarray:
        """Every frame of the episodes in ``mask``, ascending (vectorised: no per-episode loop)."""
        starts, lengths = self.frame_start[mask], self.length[mask]
        # frame = start of its episode + position within it; offsets[k] = first output slot of episode k.
        offsets = np.cumsum(lengths) - lengths
        within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(offsets, lengths)
        return np.repeat(starts, lengths) + within

    def __len__(self) -> int:
        return self.n_frames

    @property
    def loss_floor(self) -> float | None:
        """The manifest's loss floor (nats per action dimension; `scaling.data.floor`), None if unknown."""
        value = self.manifest.get("loss_floor")
        return None if value is None else float(value)

    # --- splits ---------------------------------------------------------------------------

    @property
    def n_train_frames(self) -> int:
        """Unique frames in the training split."""
        return int(self._train_frames.size)

    def train_indices(self, n_samples: int, seed: int = 0) -> np.ndarray:
        """(n_samples,) int64 training frame indices; nested in ``n_samples`` (see splits.py)."""
        return nested_indices(self._train_frames, n_samples, seed)

    def val_indices(self, max_samples: int | None = None) -> np.ndarray:
        """Validation frame indices (all, or ``max_samples`` evenly spaced), deterministic."""
        return evenly_spaced(self._val_frames, max_samples)

    # --- reading ---------------------------------------------------------------------------

    def episode_of(self, indices: np.ndarray) -> np.ndarray:
        """(B,) episode index of each global frame index."""
        return np.searchsorted(self.frame_start, indices, side="right") - 1

    def read_raw(self, indices, chunk: int = 1) -> dict[str, np.ndarray]:
        """Unnormalised rows: image (B,H,W,3) uint8, proprio (B,P), actions_raw (B,chunk,A), episode (B,)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_frames):
            raise IndexError(f"frame index out of range [0, {self.n_frames})")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        b = idx.size
        ep = self.episode_of(idx)
        last = self.frame_start[ep] + self.length[ep] - 1
        # (B, chunk) future frames; past the episode end they repeat the last frame's action.
        fut = np.minimum(idx[:, None] + np.arange(chunk)[None, :], last[:, None])
        shard = self.ep_shard[ep]
        out = {
            "image": np.empty((b, self.image_size, self.image_size, 3), dtype=np.uint8),
            "proprio": np.empty((b, self.proprio_dim), dtype=np.float32),
            "actions_raw": np.empty((b, chunk, self.action_dim), dtype=np.float32),
            "episode": ep,
        }
        for s in np.unique(shard):
            rows = np.flatnonzero(shard == s)
            arrs, base = self.shards[s], self.shard_start[s]
            local = idx[rows] - base
            order = np.argsort(local, kind="stable")  # sorted reads are sequential in the mmap
            out["image"][rows[order]] = arrs["images"][local[order]]
            out["proprio"][rows] = arrs["proprio"][local]
            rows_fut = (fut[rows] - base).reshape(-1)  # (b_s * chunk,) local rows
            out["actions_raw"][rows] = arrs["actions"][rows_fut].reshape(-1, chunk, self.action_dim)
        return out

    def get_batch(self, indices, chunk: int = 1) -> dict[str, np.ndarray]:
        """A training batch with the keys, dtypes and shapes of docs/contracts.md."""
        raw = self.read_raw(indices, chunk)
        return assemble_batch(raw, self.instruction_ids[raw["episode"]], self.action_tokenizer,
                              self.proprio_mean, self.proprio_std)

    def episode(self, i: int) -> Episode:
        """Episode ``i`` read back in full (its uid is kept in ``meta["uid"]``)."""
        row = self.episodes.iloc[i]
        s = self.shards[int(row["shard"])]
        lo = int(row["frame_start"] - self.shard_start[int(row["shard"])])
        hi = lo + int(row["length"])
        meta = json.loads(row["meta"]) if row["meta"] else {}
        meta["uid"] = row["uid"]
        seed = int(row["seed"]) if int(row["seed"]) >= 0 else meta.pop("_seed", None)
        return Episode(
            images=np.array(s["images"][lo:hi]), proprio=np.array(s["proprio"][lo:hi]),
            actions=np.array(s["actions"][lo:hi]), instruction=str(row["instruction"]), task=str(row["task"]),
            success=bool(row["success"]), source=str(row["source"]),
            seed=None if seed is None else int(seed), meta=meta,
        )

    def iter_episodes(self):
        """Yields every episode in order (streaming; one episode in memory at a time)."""
        for i in range(self.n_episodes):
            yield self.episode(i)

    def describe(self) -> dict:
        """What a run records about its data."""
        return {
            "path": str(self.path.resolve()), "format_version": self.manifest["format_version"],
            "generator": self.manifest.get("generator"), "generator_version": self.manifest.get("generator_version"),
            "seed": self.manifest.get("seed"), "sources": self.manifest.get("sources"),
            "episodes": self.n_episodes, "frames": self.n_frames,
            "train_frames": self.n_train_frames, "val_frames": int(self._val_frames.size),
            "val_episodes": int(self.is_val.sum()), "val_fraction": self.val_fraction,
            "families": (self.manifest.get("meta") or {}).get("families"),
            "objects": (self.manifest.get("meta") or {}).get("objects"),
        }

    def verify(self) -> list[str]:
        """Reads every shard and checks it against the manifest; returns problems (one line each)."""
        problems = []
        for s, arrs in zip(self.manifest["shards"], self.shards):
            d = self.path / "shards" / s["name"]
            for k in ARRAYS:
                want = s.get("files", {}).get(f"{k}.npy")
                if want is not None and sha256_file(d / f"{k}.npy") != want:
                    problems.append(f"{d / (k + '.npy')}: sha256 mismatch (corrupt shard)")
            epi = np.asarray(arrs["episode_index"])
            lo, n = s["first_episode"], s["episodes"]
            if epi.size and (epi.min() != lo or epi.max() != lo + n - 1):
                problems.append(f"{d / 'episode_index.npy'}: episodes {epi.min()}..{epi.max()}, "
                                f"manifest says {lo}..{lo + n - 1}")
        lengths = self.episodes.groupby("shard")["length"].sum()
        for i, s in enumerate(self.manifest["shards"]):
            if int(lengths.get(i, 0)) != s["frames"]:
                problems.append(f"{self.path / 'episodes.parquet'}: shard {s['name']} frames "
                                f"{int(lengths.get(i, 0))} != manifest {s['frames']}")
        return problems


def assemble_batch(raw: dict, instruction_ids: np.ndarray, action_tokenizer: ActionTokenizer,
                   proprio_mean: np.ndarray, proprio_std: np.ndarray) -> dict[str, np.ndarray]:
    """Normalises raw rows into the training batch (shared by Dataset and mixtures)."""
    actions = action_tokenizer.normalize(raw["actions_raw"])  # (B, chunk, A) in [-1, 1]
    return {
        "image": raw["image"],
        "proprio": ((raw["proprio"] - proprio_mean) / proprio_std).astype(np.float32),
        "actions": actions,
        "action_tokens": action_tokenizer.tokens_from_normalized(actions),
        "actions_raw": raw["actions_raw"],
        "instruction": instruction_ids.astype(np.int64),
    }
