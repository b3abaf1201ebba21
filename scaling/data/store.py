"""The one on-disk dataset format: layout, streaming atomic writer, and `open_dataset`.

Layout (see docs/contracts.md)::

    DIR/manifest.json      format_version, sources, tasks, counts, features, seed, generator(+version), shards,
                           loss_floor (+ _method, _per_dim)
    DIR/stats.json         normalisation stats (scaling.data.stats)
    DIR/tokenizer.json     {"instruction": word-level tokenizer, "action": q01/q99 256-bin tokenizer}
    DIR/episodes.parquet   one row per episode (index, uid, task, instruction, success, frames, flags)
    DIR/shards/shard-00000/{images,proprio,actions,episode_index}.npy

A shard holds whole episodes, about ``shard_frames`` frames (the last episode may overrun it), so
10^6 frames are a few hundred shards, not 10^6 files. Shards are read with ``np.load(mmap_mode="r")``:
random access touches only the rows asked for and memory stays bounded for data larger than RAM.
The dataset is written under ``DIR.tmp-<pid>`` and renamed when complete (the manifest last), so
a killed writer leaves only a ``.tmp-<pid>`` folder, which is never opened and is removed by the
next writer to the same place. Reading lives in ``scaling.data.dataset.Dataset``.

``loss_floor`` is the lowest val_loss the discrete head can reach (``scaling.data.floor``), from the
clean actions and noise stds a generator attaches to its episodes; null when any episode lacks them
(imported or cleaned data). They are spilled per shard under the temporary folder, because the
floor needs the tokenizer, which exists only once every action has been seen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from scaling.data.dataset import Dataset
from scaling.data.episode import Episode
from scaling.data.floor import METHOD as FLOOR_METHOD
from scaling.data.floor import UNKNOWN as FLOOR_UNKNOWN
from scaling.data.floor import FloorAccumulator
from scaling.data.format import ARRAYS, FORMAT_VERSION, sha256_file
from scaling.data.quality import episode_flags
from scaling.data.stats import StatsAccumulator
from scaling.data.tokenizers import ActionTokenizer, InstructionTokenizer
from vla_core.errors import BadInput

DEFAULT_SHARD_FRAMES = 4096
_FLOOR_DIR = "floor-inputs"  # under the temporary folder only; removed before it is renamed into place


def content_hash(ep: Episode) -> str:
    """sha256 of an episode's content (arrays, instruction, task): equal episodes, equal hash."""
    h = hashlib.sha256()
    for arr in (ep.images, ep.proprio, ep.actions):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(ep.instruction.encode())
    h.update(b"\x1f" + ep.task.encode())
    return h.hexdigest()


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuses to clobber a complete dataset (unless ``overwrite``) or any non-dataset folder."""
    if not out.exists():
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    if (out / "manifest.json").is_file():
        if not overwrite:
            raise BadInput(f"{out}: a dataset already exists there (pass --overwrite to replace it)")
        return
    raise BadInput(f"{out}: exists and is not a dataset or an empty folder; refusing to replace it")


def _remove_stale_temps(out: Path) -> None:
    """Deletes ``OUT.tmp-<pid>`` folders left by writers that were killed (their pid is gone)."""
    for tmp in out.parent.glob(f"{out.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, owned by someone else
            pass


class DatasetWriter:
    """Streams episodes into shards under a temporary folder; ``finish`` renames it into place.

    Memory holds at most one shard of frames plus per-episode metadata.
    """

    def __init__(self, out: str | Path, *, seed: int | None, generator: str, generator_version: str,
                 shard_frames: int | None = None, overwrite: bool = False, meta: dict | None = None) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        _check_target(self.out, overwrite)
        self.shard_frames = int(shard_frames or DEFAULT_SHARD_FRAMES)
        if self.shard_frames <= 0:
            raise BadInput(f"shard_frames must be positive, got {self.shard_frames}")
        self.tmp = self.out.parent / f"{self.out.name}.tmp-{os.getpid()}"
        # Folders created for this dataset (deepest first): `abort` removes them again.
        self.made = [p for p in [self.out.parent, *self.out.parent.parents] if not p.exists()]
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temps(self.out)
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            (self.tmp / "shards").mkdir(parents=True)
        except OSError as exc:
            raise BadInput(f"{self.out}: cannot create the dataset folder ({exc.strerror or exc})") from None
        self.header = {"seed": seed, "generator": generator, "generator_version": str(generator_version),
                       "meta": meta or {}}
        self.features: dict | None = None
        self.rows: list[dict] = []
        self.shards: list[dict] = []
        self.buffer: list[Episode] = []
        self.buffered = 0
        self.frames = 0
        self.stats: StatsAccumulator | None = None
        self.floor_known = True  # until an episode comes without its clean actions

    def _features_of(self, ep: Episode) -> dict:
        return {
            "images": {"shape": list(ep.images.shape[1:]), "dtype": "uint8"},
            "proprio": {"shape": list(ep.proprio.shape[1:]), "dtype": "float32"},
            "actions": {"shape": list(ep.actions.shape[1:]), "dtype": "float32"},
            "episode_index": {"shape": [], "dtype": "int64"},
        }

    def add(self, ep: Episode) -> None:
        """Validates and buffers one episode; flushes a shard when the buffer is full."""
        i = len(self.rows)
        # A float32/contiguous view of the episode; the caller's object is left untouched.
        ep = dataclasses.replace(ep, images=np.ascontiguousarray(ep.images),
                                 proprio=np.ascontiguousarray(ep.proprio, dtype=np.float32),
                                 actions=np.ascontiguousarray(ep.actions, dtype=np.float32))
        t = ep.images.shape[0]
        if (ep.images.dtype != np.uint8 or ep.images.ndim != 4 or ep.images.shape[-1] != 3
                or ep.proprio.ndim != 2 or ep.actions.ndim != 2):
            raise BadInput(f"episode {i}: images must be (T,H,W,3) uint8, proprio (T,P), actions (T,A); got "
                           f"{ep.images.shape} {ep.images.dtype}, {ep.proprio.shape}, {ep.actions.shape}")
        if t == 0 or ep.proprio.shape[0] != t or ep.actions.shape[0] != t:
            raise BadInput(f"episode {i}: empty or unequal lengths {t}, {ep.proprio.shape[0]}, {ep.actions.shape[0]}")
        self._check_clean(ep, i, t)
        feats = self._features_of(ep)
        if self.features is None:
            self.features = feats
            self.stats = StatsAccumulator(ep.actions.shape[1], ep.proprio.shape[1],
                                          seed=int(self.header["seed"] or 0))
        elif feats != self.features:
            raise BadInput(f"episode {i}: features {feats} differ from the first episode's {self.features}")
        chash = content_hash(ep)
        meta = dict(ep.meta)
        uid = str(meta.pop("uid", chash))
        if ep.seed is not None and not 0 <= int(ep.seed) < 2**63:
            meta["_seed"] = str(ep.seed)
        self.rows.append({
            "episode_index": i, "uid": uid, "content_hash": chash, "task": ep.task,
            "instruction": ep.instruction, "success": bool(ep.success), "source": ep.source,
            "length": t, "frame_start": self.frames, "shard": len(self.shards),
            # -1 = no seed; a seed beyond int64 (e.g. 128-bit entropy) is kept in meta instead.
            "seed": int(ep.seed) if ep.seed is not None and 0 <= int(ep.seed) < 2**63 else -1,
            "meta": json.dumps(meta, sort_keys=True, default=str),
            **episode_flags(ep.images, ep.proprio, ep.actions),
        })
        self.stats.update(ep.images, ep.proprio, ep.actions)
        self.buffer.append(ep)
        self.buffered += t
        self.frames += t
        if self.buffered >= self.shard_frames:
            self._flush()

    def _check_clean(self, ep: Episode, i: int, t: int) -> None:
        """Validates an episode's clean actions and noise stds; one missing makes the floor unknown."""
        if ep.clean_actions is None or ep.action_noise_std is None:
            self.floor_known = False
            return
        want = (t, ep.actions.shape[1])
        clean, std = np.asarray(ep.clean_actions), np.asarray(ep.action_noise_std)
        if clean.shape != want or std.shape != want:
            raise BadInput(f"episode {i}: clean_actions {clean.shape} and action_noise_std {std.shape} "
                           f"must be {want}, like its actions")
        if not (np.isfinite(clean).all() and np.isfinite(std).all() and (std >= 0).all()):
            raise BadInput(f"episode {i}: clean_actions and action_noise_std must be finite, the stds >= 0")

    def _flush(self) -> None:
        if not self.buffer:
            return
        name = f"shard-{len(self.shards):05d}"
        if self.floor_known:
            spill = self.tmp / _FLOOR_DIR
            spill.mkdir(exist_ok=True)
            np.save(spill / f"{name}-clean.npy", np.concatenate([e.clean_actions for e in self.buffer]))
            np.save(spill / f"{name}-std.npy", np.concatenate([e.action_noise_std for e in self.buffer]))
        d = self.tmp / "shards" / name
        d.mkdir()
        first = len(self.rows) - len(self.buffer)
        arrays = {
            "images": np.concatenate([e.images for e in self.buffer]),
            "proprio": np.concatenate([e.proprio for e in self.buffer]),
            "actions": np.concatenate([e.actions for e in self.buffer]),
            "episode_index": np.concatenate([np.full(len(e), first + k, dtype=np.int64)
                                             for k, e in enumerate(self.buffer)]),
        }
        files = {}
        for key in ARRAYS:
            np.save(d / f"{key}.npy", arrays[key])
            files[f"{key}.npy"] = sha256_file(d / f"{key}.npy")
        combined = hashlib.sha256("".join(files[f"{k}.npy"] for k in ARRAYS).encode()).hexdigest()
        self.shards.append({"name": name, "frames": self.buffered, "episodes": len(self.buffer),
                            "first_episode": first, "sha256": combined, "files": files})
        self.buffer, self.buffered = [], 0

    def finish(self) -> Path:
        """Writes the metadata files and renames the folder into place; returns the dataset path."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._flush()
        if not self.rows:
            raise BadInput(f"{self.out}: no episodes to write")
        stats = self.stats.result()
        instr = InstructionTokenizer.build(r["instruction"] for r in self.rows)
        act = ActionTokenizer.from_stats(stats)
        floor = self._floor(act)
        _write_json(self.tmp / "stats.json", stats)
        _write_json(self.tmp / "tokenizer.json", {"instruction": instr.to_dict(), "action": act.to_dict()})
        cols = {k: [r[k] for r in self.rows] for k in self.rows[0]}
        pq.write_table(pa.table(cols), self.tmp / "episodes.parquet")
        manifest = {
            "format_version": FORMAT_VERSION, **self.header,
            "sources": sorted({r["source"] for r in self.rows}),
            "tasks": sorted({r["task"] for r in self.rows}),
            "counts": {"episodes": len(self.rows), "frames": self.frames, "shards": len(self.shards)},
            "features": self.features, "image_size": int(self.features["images"]["shape"][0]),
            "shard_frames": self.shard_frames, "shards": self.shards, **floor,
        }
        # The manifest is written last: a folder without it is never taken for a dataset.
        _write_json(self.tmp / "manifest.json", manifest)
        _check_target(self.out, self.overwrite)
        old = None
        if self.out.exists():
            old = self.out.parent / f"{self.out.name}.old-{os.getpid()}"
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def _floor(self, tokenizer: ActionTokenizer) -> dict:
        """The manifest's loss_floor fields, from the spilled clean actions (then deleted)."""
        spill = self.tmp / _FLOOR_DIR
        try:
            if not self.floor_known:
                return {"loss_floor": None, "loss_floor_per_dim": None, "loss_floor_method": FLOOR_UNKNOWN}
            acc = FloorAccumulator(tokenizer)
            for s in self.shards:
                acc.add(np.load(spill / f"{s['name']}-clean.npy"), np.load(spill / f"{s['name']}-std.npy"))
            return {"loss_floor": acc.result(), "loss_floor_per_dim": acc.per_dim().tolist(),
                    "loss_floor_method": FLOOR_METHOD}
        finally:
            shutil.rmtree(spill, ignore_errors=True)

    def abort(self) -> None:
        """Removes the temporary folder and the folders made for it (nothing half-written is left behind)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        for folder in self.made:
            try:
                folder.rmdir()
            except OSError:  # no longer empty: something else wrote there meanwhile
                break


def write_dataset(episodes: Iterable[Episode], out: str | Path, *, seed: int | None, generator: str,
                  generator_version: str, shard_frames: int | None = DEFAULT_SHARD_FRAMES,
                  overwrite: bool = False, meta: dict | None = None) -> Path:
    """Writes ``episodes`` (any iterator; consumed once, streaming) as a dataset at ``out``.

    Args:
        episodes: the episodes, in order (episode_index is the position in this stream).
        out: the dataset folder; must not exist, be empty, or (with ``overwrite``) be a dataset.
        seed: the generator seed, recorded in the manifest.
        generator: what produced the data ("tabletop", "metaworld", "lerobot-import", ...).
        generator_version: that generator's version string.
        shard_frames: target frames per shard.
        overwrite: replace an existing dataset at ``out``.
        meta: extra manifest fields (noise, action_bounds, ...).

    Returns:
        The dataset path. On any error the temporary folder is removed and ``out`` is untouched.
    """
    writer = DatasetWriter(out, seed=seed, generator=generator, generator_version=generator_version,
                           shard_frames=shard_frames, overwrite=overwrite, meta=meta)
    try:
        for ep in episodes:
            writer.add(ep)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def open_dataset(path: str | Path) -> Dataset:
    """Opens a dataset folder (checked: manifest, version, shard headers); see ``scaling.data.dataset``."""
    return Dataset(path)
