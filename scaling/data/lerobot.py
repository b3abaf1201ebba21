"""LeRobot v3.0 interoperability: export our datasets to the LeRobot on-disk layout and import back.

The LeRobot v3.0 layout (``codebase_version`` "v3.0"), which packs many episodes per file::

    OUT/meta/info.json                          schema, fps, counts, path templates, splits
    OUT/meta/stats.json                         per feature: min, max, mean, std, count, q01, q10, q50, q90, q99
    OUT/meta/tasks.parquet                      unnamed index (the instruction) -> column task_index
    OUT/meta/episodes/chunk-000/file-000.parquet  one row per episode: tasks, length, file location,
                                                  dataset_from_index/to_index, per-episode stats
    OUT/data/chunk-CCC/file-FFF.parquet         one row per frame: observation.state, action,
                                                  observation.images.top, timestamp, frame_index,
                                                  episode_index, index, task_index

Images are stored as an *image* feature (not video): a struct {bytes: PNG, path: null}, as the
Hugging Face ``datasets`` Image feature stores them, so frames survive the round trip bit for bit.
Data files roll over at ``DATA_FILE_MB`` (LeRobot's default 100 MB) and chunks at 1000 files.
Our per-episode fields that LeRobot has no column for (task name, success, source, seed, meta) ride
along as extra columns of the episodes table, which LeRobot's reader ignores. LeRobot's edit tools
(``delete_episodes``, ``split_dataset``) rebuild that table from its own columns and rebuild
meta/stats.json from the per-episode stats there; so every episode row carries q01..q99, and a
folder edited there imports as foreign data (source "lerobot", its outcome unknown, taken as success).

Import reads a local v3.0 folder only (no hub access), written by us or by LeRobot itself (created,
edited or merged there), with the camera as image features or as mp4 video (decoded with PyAV, the
``video`` extra: any codec its FFmpeg reads, AV1 included), and writes our format through
``scaling.data.store.write_dataset``. One camera is imported (``camera``; the manifest records which
and the ones left out); a recording whose task changes within it becomes one episode per task run;
an image cell that is empty, names a missing file or does not decode is bad input. Golden folders
written by ``LeRobotDataset`` 0.4.4 are in ``tests/scaling/data/``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scaling.data.episode import Episode
from vla_core.errors import BadInput

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's DEFAULT_CHUNK_SIZE)
DATA_FILE_MB = 100  # a data file rolls over past this many MB (LeRobot's default)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
IMAGE_KEY, STATE_KEY, ACTION_KEY = "observation.images.top", "observation.state", "action"
DEFAULT_FPS = {"metaworld": 80, "tabletop": 10}  # Meta-World: 5 physics steps of 2.5 ms per action
IMPORTER_VERSION = "2"  # the manifest's generator_version: changes when a folder would import differently
_INDEX_COLUMNS = ("frame_index", "episode_index", "index", "task_index")  # int64 scalars per frame

# Per-dimension names where the source defines them; generic names otherwise.
_NAMES = {
    "metaworld": {STATE_KEY: ["hand_x", "hand_y", "hand_z", "gripper"], ACTION_KEY: ["dx", "dy", "dz", "grip"]},
}


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)  # lossless; level 1 is ~5x faster
    return buf.getvalue()


def _vector_stats(x: np.ndarray) -> dict:
    """LeRobot's per-episode stats of (T, D) rows: lists of length D (quantiles included), count [T].

    LeRobot's edit tools (``delete_episodes``, ``split_dataset``, ``merge_datasets``) rebuild
    meta/stats.json from these rows alone, so without the quantiles its QUANTILES and QUANTILE10
    normalisations fail on an edited export.
    """
    return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
            "std": x.std(0).tolist(), "count": [int(x.shape[0])], **_vector_quantiles(x)}


def _vector_quantiles(x: np.ndarray) -> dict:
    """q01..q99 of (T, D) rows per dimension (numpy's linear interpolation), as lists of length D."""
    return {name: np.quantile(x, q, axis=0).astype(np.float64).tolist() for name, q in QUANTILES.items()}


def _image_stats(images: np.ndarray) -> dict:
    """Per-channel stats on the [0, 1] scale, shaped (3, 1, 1) as LeRobot stores image stats (quantiles included)."""
    from scaling.data.stats import ImageStats

    flat = images.reshape(-1, 3)  # (T*H*W, 3) uint8 view: min/max without a float copy
    moments = ImageStats()  # chunked float32 sums: bounded memory for long, large episodes
    moments.update(images)
    mean_std = moments.result()

    def c11(v) -> list:
        return np.reshape(v, (3, 1, 1)).tolist()

    quantiles = moments.quantiles(list(QUANTILES.values()))  # (3, 5)
    return {"min": c11(flat.min(0) / 255.0), "max": c11(flat.max(0) / 255.0), "mean": c11(mean_std["mean"]),
            "std": c11(mean_std["std"]), "count": [int(images.shape[0])],
            **{name: c11(quantiles[:, j]) for j, name in enumerate(QUANTILES)}}


def _frame_schema(state_dim: int, action_dim: int):
    import pyarrow as pa

    # The "huggingface" schema metadata lets `datasets` load the file with the Image feature decoded.
    hf_features = {
        STATE_KEY: {"feature": {"dtype": "float32", "_type": "Value"}, "length": state_dim, "_type": "Sequence"},
        ACTION_KEY: {"feature": {"dtype": "float32", "_type": "Value"}, "length": action_dim, "_type": "Sequence"},
        IMAGE_KEY: {"_type": "Image"},
        "timestamp": {"dtype": "float32", "_type": "Value"},
        **{k: {"dtype": "int64", "_type": "Value"} for k in _INDEX_COLUMNS},
    }
    fields = [
        pa.field(STATE_KEY, pa.list_(pa.float32(), state_dim)),
        pa.field(ACTION_KEY, pa.list_(pa.float32(), action_dim)),
        pa.field(IMAGE_KEY, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        pa.field("timestamp", pa.float32()),
        *[pa.field(k, pa.int64()) for k in _INDEX_COLUMNS],
    ]
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": hf_features}})})


def _new_folder(out: Path) -> tuple[Path, list[Path]]:
    """Checks ``out`` may be written; returns the temporary folder to build it in and the folders
    above it that were created for it (deepest first), to remove again if the export fails."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"{out}: already exists and is not an empty folder")
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    made = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "meta").mkdir(parents=True)
    except OSError as exc:
        raise BadInput(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
    return tmp, made


class _DataFiles:
    """Writes frame batches to data/chunk-CCC/file-FFF.parquet, rolling over by size and count."""

    def __init__(self, root: Path, schema) -> None:
        self.root, self.schema = root, schema
        self.chunk, self.file, self.bytes, self.writer = 0, 0, 0, None

    def write(self, batch) -> tuple[int, int]:
        """Appends ``batch`` (whole episodes); returns the (chunk, file) it went to."""
        import pyarrow.parquet as pq

        if self.writer is not None and self.bytes > DATA_FILE_MB * 2**20:
            self.close()
            # LeRobot's update_chunk_file_indices: a chunk folder holds CHUNKS_SIZE files.
            last = self.file == CHUNKS_SIZE - 1
            self.chunk, self.file = (self.chunk + 1, 0) if last else (self.chunk, self.file + 1)
        if self.writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer, self.bytes = pq.ParquetWriter(path, self.schema), 0
        self.writer.write_batch(batch)
        self.bytes += batch.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _frame_batch(ep: Episode, schema, episode_index: int, first_frame: int, task_index: int, fps: int):
    """One episode as a record batch of LeRobot frame rows (T rows)."""
    import pyarrow as pa

    t = len(ep)
    frame_index = np.arange(t, dtype=np.int64)
    pngs = pa.array([_png(img) for img in ep.images], pa.binary())
    return pa.record_batch([
        pa.FixedSizeListArray.from_arrays(pa.array(ep.proprio.reshape(-1), pa.float32()), ep.proprio.shape[1]),
        pa.FixedSizeListArray.from_arrays(pa.array(ep.actions.reshape(-1), pa.float32()), ep.actions.shape[1]),
        pa.StructArray.from_arrays([pngs, pa.nulls(t, pa.string())], ["bytes", "path"]),
        pa.array((frame_index / fps).astype(np.float32)),  # timestamp (s)
        pa.array(frame_index), pa.array(np.full(t, episode_index, np.int64)),
        pa.array(first_frame + frame_index), pa.array(np.full(t, task_index, np.int64)),
    ], schema=schema)


def _episode_row(ep: Episode, episode_index: int, first_frame: int, chunk: int, file: int) -> dict:
    """The episode's row of meta/episodes (LeRobot's columns, then ours, then per-episode stats)."""
    t = len(ep)
    return {
        "episode_index": episode_index, "tasks": [ep.instruction], "length": t,
        "data/chunk_index": chunk, "data/file_index": file,
        "dataset_from_index": first_frame, "dataset_to_index": first_frame + t,
        "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
        # Beyond LeRobot's columns, so that import restores the episode exactly.
        "task_name": ep.task, "success": bool(ep.success), "source": ep.source,
        "seed": -1 if ep.seed is None else int(ep.seed),
        # The uid rides along so that import puts the episode on the same side of the validation
        # split (it differs from the content hash for cleaned episodes and split recordings).
        "meta": json.dumps(ep.meta, default=str),
        **_flat_stats(ep),
    }


def export_lerobot(src_dir: str | Path, out_dir: str | Path, *, fps: int | None = None) -> Path:
    """Writes the dataset at ``src_dir`` as a LeRobot v3.0 dataset folder at ``out_dir``.

    Streams episode by episode: memory holds one episode's frames and one row per episode.

    Args:
        src_dir: one of our dataset folders (``scaling.data.store`` format).
        out_dir: the LeRobot folder to create (must not exist, or be empty).
        fps: frames per second recorded in info.json (timestamps are frame_index / fps); default:
            the source's control rate (Meta-World 80, tabletop 10).

    Returns:
        ``out_dir``. It is built under a temporary name and renamed when complete.

    Raises:
        BadInput: missing/corrupt source dataset, or ``out_dir`` not writable.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scaling.data.store import open_dataset

    ds = open_dataset(src_dir)
    out = Path(out_dir)
    sources = ds.manifest.get("sources") or ["unknown"]
    fps = int(fps or DEFAULT_FPS.get(sources[0], 10))
    if fps <= 0:
        raise BadInput(f"export-lerobot: fps must be positive, got {fps}")
    size, p_dim, a_dim = (ds.manifest["features"][k]["shape"] for k in ("images", "proprio", "actions"))
    schema = _frame_schema(int(p_dim[0]), int(a_dim[0]))
    tmp, made = _new_folder(out)
    data = _DataFiles(tmp, schema)
    try:
        tasks: dict[str, int] = {}  # instruction -> task_index, in order of first appearance
        rows: list[dict] = []
        frames = 0
        quant = _Quantiles()
        for i, ep in enumerate(ds.iter_episodes()):
            task_index = tasks.setdefault(ep.instruction, len(tasks))
            chunk, file = data.write(_frame_batch(ep, schema, i, frames, task_index, fps))
            rows.append(_episode_row(ep, i, frames, chunk, file))
            quant.update(ep)
            frames += len(ep)
        data.close()
        (tmp / EPISODES_PATH).parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp / EPISODES_PATH)
        # As LeRobot writes it: the task strings are the (unnamed) index.
        pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks)).to_parquet(tmp / "meta" / "tasks.parquet")
        _write_json(tmp / "meta" / "stats.json", _dataset_stats(ds, rows, frames, quant))
        _write_json(tmp / "meta" / "info.json", _info(ds, sources, fps, size, p_dim, a_dim, len(rows), frames,
                                                      len(tasks)))
        if out.exists():
            out.rmdir()  # empty (checked above): replace it with the finished folder
        os.replace(tmp, out)
    except BaseException:
        data.close()
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # no longer empty: something else wrote there meanwhile
                break
        raise
    return out


def _flat_stats(ep: Episode) -> dict:
    """Per-episode stats as LeRobot's episodes table flattens them ("stats/<feature>/<stat>")."""
    stats = {STATE_KEY: _vector_stats(ep.proprio), ACTION_KEY: _vector_stats(ep.actions),
             IMAGE_KEY: _image_stats(ep.images)}
    return {f"stats/{key}/{name}": value for key, st in stats.items() for name, value in st.items()}


QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
"""The quantile statistics LeRobot 0.4 keeps per feature (its QUANTILES / QUANTILE10 normalisations read them)."""


class _Quantiles:
    """Exact per-dimension quantiles of state and action, and per-channel quantiles of the camera.

    State and action rows are kept (T x dims float32: small next to the images); images are
    counted in a 256-bin histogram per channel, which gives their quantiles exactly (uint8 pixels).
    """

    def __init__(self) -> None:
        from scaling.data.stats import ImageStats

        self.proprio: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.pixels = ImageStats()

    def update(self, ep: Episode) -> None:
        self.proprio.append(ep.proprio.astype(np.float32))
        self.actions.append(ep.actions.astype(np.float32))
        self.pixels.update(ep.images)

    def vectors(self, key: str) -> dict:
        return _vector_quantiles(np.concatenate(self.proprio if key == STATE_KEY else self.actions))

    def image(self) -> dict:
        q = self.pixels.quantiles(list(QUANTILES.values()))  # (3, 5) on [0, 1]
        return {name: np.reshape(q[:, j], (3, 1, 1)).tolist() for j, name in enumerate(QUANTILES)}


def _dataset_stats(ds, rows: list[dict], frames: int, quant: _Quantiles) -> dict:
    """meta/stats.json: our stats.json (exact, streaming) in LeRobot's names and shapes, with its quantiles."""
    ours = ds.stats
    out = {}
    for key, name in ((STATE_KEY, "proprio"), (ACTION_KEY, "action")):
        out[key] = {k: ours[name][k] for k in ("min", "max", "mean", "std")}
        out[key].update(quant.vectors(key))
        out[key]["count"] = [frames]
    img = {k: np.array([r[f"stats/{IMAGE_KEY}/{k}"] for r in rows]) for k in ("min", "max")}  # (E, 3, 1, 1)
    out[IMAGE_KEY] = {
        "min": img["min"].min(0).tolist(), "max": img["max"].max(0).tolist(),
        "mean": np.reshape(ours["image"]["mean"], (3, 1, 1)).tolist(),
        "std": np.reshape(ours["image"]["std"], (3, 1, 1)).tolist(), "count": [frames], **quant.image(),
    }
    return out


def _info(ds, sources, fps, size, p_dim, a_dim, episodes, frames, n_tasks) -> dict:
    """meta/info.json: LeRobot's schema, counts and path templates (plus where the data came from)."""
    names = _NAMES.get(sources[0], {})
    scalar = {"shape": [1], "names": None}
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": sources[0] if len(sources) == 1 else "mixed",
        "total_episodes": episodes, "total_frames": frames, "total_tasks": n_tasks,
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": 500,
        "fps": fps, "splits": {"train": f"0:{episodes}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH,
        "features": {
            IMAGE_KEY: {"dtype": "image", "shape": list(size), "names": ["height", "width", "channels"]},
            STATE_KEY: {"dtype": "float32", "shape": list(p_dim),
                        "names": names.get(STATE_KEY, [f"state_{i}" for i in range(p_dim[0])])},
            ACTION_KEY: {"dtype": "float32", "shape": list(a_dim),
                         "names": names.get(ACTION_KEY, [f"action_{i}" for i in range(a_dim[0])])},
            "timestamp": {"dtype": "float32", **scalar},
            **{k: {"dtype": "int64", **scalar} for k in _INDEX_COLUMNS},
        },
        "exported_from": {"path": str(Path(ds.path).resolve()), "meta": ds.manifest.get("meta") or {},
                          **{k: ds.manifest.get(k) for k in ("generator", "generator_version", "seed")}},
    }


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _read_info(src: Path) -> dict:
    if not src.exists():
        raise BadInput(f"{src}: no such LeRobot dataset folder")
    if not src.is_dir():
        raise BadInput(f"{src}: not a folder")
    path = src / "meta" / "info.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: missing (not a LeRobot dataset folder)") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    version = info.get("codebase_version") if isinstance(info, dict) else None
    if version != CODEBASE_VERSION:
        raise BadInput(f"{path}: codebase_version {version!r} is not {CODEBASE_VERSION!r} "
                       f"(convert it with LeRobot's convert_dataset_v21_to_v30 first)")
    if not isinstance(info.get("features"), dict):
        raise BadInput(f"{path}: no 'features' mapping")
    return info


def _cameras(info: dict) -> list[str]:
    """The image and video features of a LeRobot dataset, in info.json's order."""
    return [k for k, f in info["features"].items() if isinstance(f, dict) and f.get("dtype") in ("image", "video")]


def _pick_camera(info: dict, path: Path, camera: str | None) -> str:
    """The camera feature to import.

    ``camera`` names it by its feature key (``observation.images.wrist``) or by the key's last part
    (``wrist``); without it, ``observation.images.top`` when present, else the first camera.
    """
    cameras = _cameras(info)
    if not cameras:
        raise BadInput(f"{path}: no image or video feature (a camera is needed)")
    if camera is None:
        return IMAGE_KEY if IMAGE_KEY in cameras else cameras[0]
    named = [k for k in cameras if camera in (k, k.rsplit(".", 1)[-1])]
    if len(named) != 1:
        why = "is ambiguous" if named else "is not one of its cameras"
        raise BadInput(f"{path}: camera {camera!r} {why} (cameras: {', '.join(cameras)})")
    return named[0]


def _pick_keys(info: dict, path: Path, camera: str | None = None) -> tuple[str, str, str]:
    """(camera key, state key, action key) of a LeRobot dataset (camera as ``_pick_camera``)."""
    image = _pick_camera(info, path, camera)
    feats = info["features"]
    for key in (STATE_KEY, ACTION_KEY):
        if key not in feats:
            raise BadInput(f"{path}: feature {key!r} missing (have {', '.join(feats)})")
    return image, STATE_KEY, ACTION_KEY


def _is_video(info: dict, key: str) -> bool:
    return info["features"][key].get("dtype") == "video"


def _require_av(path: Path):
    try:
        import av
    except ImportError:
        raise BadInput(f"{path}: the camera is stored as mp4 video; decoding it needs PyAV "
                       "(pip install 'vla-scaling[video]')") from None
    return av


def _read_parquet(path: Path, **kwargs):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path, **kwargs)
    except Exception as exc:  # pyarrow raises several types for missing/corrupt files
        raise BadInput(f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


def _task_strings(src: Path) -> dict[int, str]:
    """task_index -> task text from meta/tasks.parquet.

    LeRobot writes the task strings as the parquet's *unnamed* pandas index (``pd.DataFrame({"task_index":
    ...}, index=tasks)``); a ``task`` column, or an index named ``task``, is read too.
    """
    path = src / "meta" / "tasks.parquet"
    table = _read_parquet(path).to_pandas()
    if "task_index" not in table.columns:
        raise BadInput(f"{path}: needs a 'task_index' column (have {', '.join(map(str, table.columns))})")
    texts = table["task"] if "task" in table.columns else table.index
    if "task" not in table.columns and not all(isinstance(t, str) for t in texts):
        raise BadInput(f"{path}: the task strings are neither a 'task' column nor the index")
    return {int(i): str(t) for i, t in zip(table["task_index"], texts)}


def _resized(img, image_size: int | None) -> np.ndarray:
    """A PIL image as (H, W, 3) uint8, resized to (image_size, image_size) if asked."""
    from PIL import Image

    if image_size is not None and img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)  # what PIL raises on bad bytes


def _decode_images(column, frame_index, src: Path, image_size: int | None, where: str) -> np.ndarray:
    """(T, H, W, 3) uint8 from an Image-feature column ({bytes, path} structs), resized if asked.

    Raises:
        BadInput: naming ``where`` and the frame, for an empty cell, a missing image file, or bytes
            that do not decode (a truncated or corrupt PNG/JPEG).
    """
    from PIL import Image

    frames = []
    for f, cell in zip(frame_index, column):
        data = cell.get("bytes") if isinstance(cell, dict) else cell
        name = cell.get("path") if isinstance(cell, dict) else None
        if data is None or (isinstance(data, (bytes, bytearray)) and not data):
            if not name:
                raise BadInput(f"{where}, frame {int(f)}: empty image cell (no bytes, no path)")
            file = src / name  # an image stored by path, relative to the dataset root
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise BadInput(f"{where}, frame {int(f)}: image file {file} unreadable "
                               f"({exc.strerror or type(exc).__name__})") from None
        if not isinstance(data, (bytes, bytearray)):
            raise BadInput(f"{where}, frame {int(f)}: not an image cell ({type(cell).__name__})")
        try:
            with Image.open(io.BytesIO(data)) as img:
                frames.append(_resized(img.convert("RGB"), image_size))
        except (*_IMAGE_ERRORS, Image.DecompressionBombError) as exc:
            # PIL names the in-memory buffer by its address ("<_io.BytesIO object at 0x...>"): noise here.
            detail = re.sub(r"\s*<[^>]*>", "", str(exc).splitlines()[0] if str(exc) else "")
            raise BadInput(f"{where}, frame {int(f)}: image does not decode "
                           f"({type(exc).__name__}: {detail}; {len(data)} bytes)") from None
    return np.stack(frames)


def _decode_video(path: Path, times: np.ndarray, fps: float, image_size: int | None) -> np.ndarray:
    """(T, H, W, 3) uint8: the frames of an mp4 file shown at ``times`` (seconds), resized if asked.

    As LeRobot's own decoder: seek to the key frame before the first time, decode forward, and take
    for each requested time the frame whose timestamp matches it within half a frame period.
    """
    av = _require_av(path)
    if not path.is_file():
        raise BadInput(f"{path}: video file missing")
    out: list[np.ndarray | None] = [None] * len(times)
    tol = 0.5 / fps
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            container.seek(max(0, int(float(times.min()) / stream.time_base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                if t > times.max() + tol:
                    break
                i = int(np.argmin(np.abs(times - t)))
                if abs(times[i] - t) <= tol and out[i] is None:
                    out[i] = _resized(frame.to_image(), image_size)
    except (av.error.FFmpegError, IndexError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise BadInput(f"{path}: cannot decode ({type(exc).__name__}: {first_line})") from None
    missing = [float(t) for t, f in zip(times, out) if f is None]
    if missing:
        raise BadInput(f"{path}: no frame at t = {missing[0]:.3f} s ({len(missing)} of {len(times)} frames missing)")
    return np.stack(out)  # type: ignore[arg-type]


def _lerobot_episodes(src: Path, info: dict, image_key: str, image_size: int | None,
                      splits: list[int]) -> Iterator[Episode]:
    """Streams the episodes of a LeRobot v3.0 folder, one data file in memory at a time.

    A recording whose task changes within it comes out as several episodes (``_episodes_from``);
    ``splits`` receives the number of parts of each recording that was split.
    """
    state_key, action_key = STATE_KEY, ACTION_KEY
    tasks = _task_strings(src)
    ep_files = sorted((src / "meta" / "episodes").glob("*/*.parquet"))
    if not ep_files:
        raise BadInput(f"{src / 'meta' / 'episodes'}: no episode metadata files")
    import pyarrow as pa

    episodes = pa.concat_tables([_read_parquet(p) for p in ep_files]).to_pandas()
    episodes = episodes.sort_values("episode_index").set_index("episode_index", drop=False)
    data_files = sorted((src / "data").glob("*/*.parquet"))
    if not data_files:
        raise BadInput(f"{src / 'data'}: no data files")
    video = _is_video(info, image_key)
    if video:
        _require_av(src / "videos")
    columns = [state_key, action_key, "episode_index", "frame_index", "task_index"]
    columns += ["timestamp"] if video else [image_key]
    fps = float(info.get("fps") or 0) or None
    for path in data_files:
        frames = _read_parquet(path, columns=columns).to_pandas()
        # Episodes never span data files in v3.0; within a file frames are in episode order.
        for index, rows in frames.groupby("episode_index", sort=True):
            rows = rows.sort_values("frame_index")
            meta_row = episodes.loc[index] if index in episodes.index else None
            where = f"{path}: episode {int(index)}"
            if video:
                images = _episode_video(src, info, image_key, meta_row, rows, fps, image_size)
            else:
                images = _decode_images(rows[image_key], rows["frame_index"], src, image_size,
                                        f"{where}, {image_key}")
            parts = _episodes_from(rows, meta_row, tasks, images, (state_key, action_key), where)
            if len(parts) > 1:
                splits.append(len(parts))
            yield from parts


def _episode_video(src: Path, info: dict, key: str, meta_row, rows, fps: float | None, image_size: int | None):
    """An episode's camera frames from its mp4 file (located by its meta/episodes row)."""
    where = src / "meta" / "episodes"
    col = f"videos/{key}/"
    if meta_row is None or col + "from_timestamp" not in meta_row:
        raise BadInput(f"{where}: episode {int(rows['episode_index'].iloc[0])} has no {col}* columns for its video")
    if not fps:
        raise BadInput(f"{src / 'meta' / 'info.json'}: 'fps' is needed to decode video")
    template = info.get("video_path") or VIDEO_PATH
    path = src / template.format(video_key=key, chunk_index=int(meta_row[col + "chunk_index"]),
                                 file_index=int(meta_row[col + "file_index"]))
    # Frame times in the file: the episode's offset plus each frame's own timestamp (LeRobot's query).
    times = float(meta_row[col + "from_timestamp"]) + rows["timestamp"].to_numpy(dtype=np.float64)
    return _decode_video(path, times, fps, image_size)


def _task_runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) positions of the runs of equal labels, in frame order."""
    change = (np.flatnonzero(np.diff(labels)) + 1).tolist()
    bounds = [0, *change, len(labels)]
    return list(zip(bounds[:-1], bounds[1:]))


def _episodes_from(rows, meta_row, tasks: dict[int, str], images: np.ndarray, keys: tuple,
                   where: str) -> list[Episode]:
    """The Episodes of one LeRobot episode from its frame rows (pandas, in frame order), camera frames
    and meta/episodes row (or None): one per run of frames with the same task.

    Our data contract holds one instruction per episode, so a recording whose task changes within it
    is split at each change: every frame keeps the instruction it was recorded with. The parts share
    one uid (the recording's), so they fall on the same side of the validation split, and record
    ``lerobot_segment`` [part, parts] and ``lerobot_frames`` [first, last + 1] (frame_index) in meta.
    """
    from scaling.data.store import content_hash

    state_key, action_key = keys
    t = len(rows)
    extra = {} if meta_row is None else meta_row.to_dict()

    def has(key: str) -> bool:
        value = extra.get(key)
        return value is not None and not (isinstance(value, float) and np.isnan(value))

    task_index = rows["task_index"].to_numpy(np.int64)
    unknown = sorted(set(task_index.tolist()) - set(tasks))
    if unknown:
        raise BadInput(f"{where}: task_index {unknown[0]} is not in meta/tasks.parquet")
    meta = json.loads(extra["meta"]) if has("meta") else {}
    meta["lerobot_episode_index"] = int(rows["episode_index"].iloc[0])
    whole = Episode(
        images=images,
        proprio=np.stack(rows[state_key].to_numpy()).astype(np.float32).reshape(t, -1),
        actions=np.stack(rows[action_key].to_numpy()).astype(np.float32).reshape(t, -1),
        instruction=tasks[int(task_index[0])],
        # Our own exports carry the task name, outcome and source; other LeRobot datasets are
        # demonstrations with only the instruction.
        task=str(extra["task_name"]) if has("task_name") else tasks[int(task_index[0])],
        success=bool(extra["success"]) if has("success") else True,
        source=str(extra["source"]) if has("source") else "lerobot",
        seed=int(extra["seed"]) if has("seed") and int(extra["seed"]) >= 0 else None,
        meta=meta,
    )
    # Runs of equal text, not of equal task_index: two indices may carry the same string.
    _, text_id = np.unique([tasks[int(i)] for i in task_index], return_inverse=True)
    runs = _task_runs(text_id)
    if len(runs) == 1:
        return [whole]
    texts = [tasks[int(task_index[a])] for a, _ in runs]
    uid = str(meta.get("uid") or content_hash(dataclasses.replace(whole, instruction="\x1e".join(texts))))
    frame_index = rows["frame_index"].to_numpy(np.int64)
    return [dataclasses.replace(
        whole, images=whole.images[a:b], proprio=whole.proprio[a:b], actions=whole.actions[a:b], instruction=text,
        task=whole.task if has("task_name") else text,
        meta={**meta, "uid": uid, "lerobot_segment": [k, len(runs)],
              "lerobot_frames": [int(frame_index[a]), int(frame_index[b - 1]) + 1]},
    ) for k, ((a, b), text) in enumerate(zip(runs, texts))]


def import_lerobot(src_dir: str | Path, out_dir: str | Path, *, image_size: int | None = None,
                   overwrite: bool = False, camera: str | None = None) -> Path:
    """Reads a local LeRobot v3.0 folder (no hub access) into our dataset format.

    One camera becomes the episodes' images; the manifest's ``meta.lerobot`` records it
    (``camera``) and the cameras left out (``cameras_left_out``). A recording whose task changes
    within it is split at each change (see ``_episodes_from``). Notes go to stderr after the
    dataset is written: the cameras left out when several exist and none was named, and how many
    recordings were split.

    Args:
        src_dir: the LeRobot dataset root (holding ``meta/info.json``).
        out_dir: our dataset folder to write (via ``scaling.data.store.write_dataset``).
        image_size: resize frames to (image_size, image_size); needed when they are not square.
        overwrite: replace an existing dataset at ``out_dir``.
        camera: the camera feature to import, by key (``observation.images.wrist``) or its last part
            (``wrist``); default ``observation.images.top`` when present, else the first camera.

    Returns:
        ``out_dir``.

    Raises:
        BadInput: missing folder, ``codebase_version`` other than v3.0, no camera or an unknown one,
            missing state/action, unreadable files, an image cell that is empty, names a missing file
            or does not decode, a task_index without a task, or non-square images without
            ``image_size``. Nothing is left at ``out_dir`` (or beside it).
    """
    from scaling.data.store import write_dataset

    src = Path(src_dir)
    info = _read_info(src)
    image_key = _pick_keys(info, src / "meta" / "info.json", camera)[0]
    shape = info["features"][image_key].get("shape") or []
    if image_size is None and len(shape) == 3 and shape[0] != shape[1]:
        raise BadInput(f"{src / 'meta' / 'info.json'}: {image_key} images are {shape[0]}x{shape[1]}, not square; "
                       f"pass image_size (--image-size) to resize them")
    if image_size is not None and image_size <= 0:
        raise BadInput(f"import-lerobot: image_size must be positive, got {image_size}")
    left_out = [k for k in _cameras(info) if k != image_key]
    exported = info.get("exported_from") or {}  # present when the folder is one of our exports
    meta = {**(exported.get("meta") or {}),  # e.g. action_bounds, which cleaning uses
            "lerobot": {"source": str(src.resolve()), "fps": info.get("fps"), "robot_type": info.get("robot_type"),
                        "codebase_version": info["codebase_version"], "camera": image_key,
                        "cameras_left_out": left_out}}
    splits: list[int] = []
    out = write_dataset(_lerobot_episodes(src, info, image_key, image_size, splits), out_dir,
                        seed=exported.get("seed"), generator="lerobot-import", generator_version=IMPORTER_VERSION,
                        overwrite=overwrite, meta=meta)
    if left_out and camera is None:
        sys.stderr.write(f"import-lerobot: warning: {len(left_out) + 1} cameras; imported {image_key}, left out "
                         f"{', '.join(left_out)} (choose one with --camera NAME)\n")
    if splits:
        sys.stderr.write(f"import-lerobot: {len(splits)} recording(s) change task within them: split at each "
                         f"change into {sum(splits)} episodes (meta lerobot_segment, lerobot_frames)\n")
    return out
