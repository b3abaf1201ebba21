"""LeRobot v3.0 export/import: layout, round trip, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from scaling.data import lerobot
from scaling.data.store import open_dataset, write_dataset
from scaling.data.testing import synthetic_episodes
from vla_core.errors import BadInput


@pytest.fixture(scope="module")
def exported(tiny_dataset, tmp_path_factory):
    """(our dataset, its LeRobot export, the export imported back)."""
    root = tmp_path_factory.mktemp("lerobot")
    out = lerobot.export_lerobot(tiny_dataset, root / "lr")
    back = lerobot.import_lerobot(out, root / "back")
    return tiny_dataset, out, back


def test_layout_and_info(exported):
    src, out, _ = exported
    ds = open_dataset(src)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["total_episodes"] == ds.n_episodes and info["total_frames"] == ds.n_frames
    assert info["total_tasks"] == ds.episodes["instruction"].nunique()
    assert info["splits"] == {"train": f"0:{ds.n_episodes}"} and info["chunks_size"] == 1000
    assert info["data_path"].format(chunk_index=0, file_index=0) == "data/chunk-000/file-000.parquet"
    assert "{video_key}" in info["video_path"] and isinstance(info["fps"], int)
    feats = info["features"]
    size = ds.image_size
    assert feats["observation.images.top"] == {"dtype": "image", "shape": [size, size, 3],
                                               "names": ["height", "width", "channels"]}
    assert feats["observation.state"]["shape"] == [ds.proprio_dim]
    assert len(feats["action"]["names"]) == ds.action_dim
    for key in ("meta/tasks.parquet", "meta/stats.json", "meta/episodes/chunk-000/file-000.parquet",
                "data/chunk-000/file-000.parquet"):
        assert (out / key).is_file(), key
    assert not list(out.parent.glob("lr.tmp-*"))


def test_frames_table(exported):
    src, out, _ = exported
    ds = open_dataset(src)
    info = json.loads((out / "meta" / "info.json").read_text())
    table = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert set(table.column_names) == set(info["features"])
    image_type = table.schema.field("observation.images.top").type
    assert [image_type.field(i).name for i in range(image_type.num_fields)] == ["bytes", "path"]
    df = table.to_pandas()
    np.testing.assert_array_equal(df["index"], np.arange(ds.n_frames))
    np.testing.assert_allclose(df["timestamp"], df["frame_index"] / info["fps"], rtol=1e-6)
    tasks = pd.read_parquet(out / "meta" / "tasks.parquet")
    # As LeRobot writes it: the task strings are the unnamed index.
    assert tasks.index.name is None and list(tasks["task_index"]) == list(range(len(tasks)))
    first = ds.episode(0)
    assert tasks.index[df["task_index"].iloc[0]] == first.instruction
    np.testing.assert_array_equal(np.stack(df["action"].iloc[: len(first)]), first.actions)
    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pandas()
    np.testing.assert_array_equal(episodes["dataset_to_index"] - episodes["dataset_from_index"], episodes["length"])
    np.testing.assert_array_equal(episodes["dataset_from_index"].iloc[1:], episodes["dataset_to_index"].iloc[:-1])
    assert list(episodes["tasks"].iloc[0]) == [first.instruction]


def test_stats_json_matches_ours(exported):
    src, out, _ = exported
    ours = open_dataset(src).stats
    theirs = json.loads((out / "meta" / "stats.json").read_text())
    for key, name in (("action", "action"), ("observation.state", "proprio")):
        for stat in ("mean", "std", "min", "max", "q01", "q99"):
            np.testing.assert_allclose(theirs[key][stat], ours[name][stat])
        assert theirs[key]["count"] == [open_dataset(src).n_frames]
        # LeRobot's QUANTILE10 normalisation reads q10/q90: exact quantiles over every frame.
        rows = np.concatenate([getattr(e, "actions" if name == "action" else "proprio")
                               for e in open_dataset(src).iter_episodes()])
        for stat, q in (("q10", 0.1), ("q50", 0.5), ("q90", 0.9)):
            np.testing.assert_allclose(theirs[key][stat], np.quantile(rows, q, axis=0), rtol=1e-6)
    image = theirs["observation.images.top"]
    assert np.asarray(image["mean"]).shape == (3, 1, 1)  # LeRobot's per-channel image stats shape
    np.testing.assert_allclose(np.ravel(image["mean"]), ours["image"]["mean"])
    assert np.all(np.asarray(image["min"]) >= 0) and np.all(np.asarray(image["max"]) <= 1)
    pixels = np.concatenate([e.images.reshape(-1, 3) for e in open_dataset(src).iter_episodes()])
    for stat, q in (("q01", 0.01), ("q50", 0.5), ("q99", 0.99)):
        want = np.quantile(pixels, q, axis=0, method="inverted_cdf") / 255.0
        np.testing.assert_allclose(np.ravel(image[stat]), want)


def test_round_trip_keeps_everything(exported):
    src, _, back = exported
    a, b = open_dataset(src), open_dataset(back)
    assert (a.n_episodes, a.n_frames) == (b.n_episodes, b.n_frames)
    for ea, eb in zip(a.iter_episodes(), b.iter_episodes()):
        np.testing.assert_array_equal(ea.images, eb.images)  # PNG is lossless
        np.testing.assert_array_equal(ea.proprio, eb.proprio)
        np.testing.assert_array_equal(ea.actions, eb.actions)
        assert (ea.instruction, ea.task, ea.success, ea.source, ea.seed) == (
            eb.instruction, eb.task, eb.success, eb.source, eb.seed)
    for name in ("action", "proprio"):
        for stat in ("mean", "std", "min", "max", "q01", "q99"):
            np.testing.assert_allclose(b.stats[name][stat], a.stats[name][stat], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b.stats["image"]["mean"], a.stats["image"]["mean"], rtol=1e-6)
    assert b.tokenizer.vocab_size == a.tokenizer.vocab_size
    assert b.manifest["generator"] == "lerobot-import"
    assert b.manifest["meta"]["action_bounds"] == a.manifest["meta"]["action_bounds"]


def test_many_files_and_chunks(tmp_path, monkeypatch):
    """Data files roll over by size and chunk folders by file count; import reads them all."""
    src = write_dataset(synthetic_episodes(5, length=4, image_size=8), tmp_path / "src", seed=0,
                        generator="synthetic", generator_version="1")
    monkeypatch.setattr(lerobot, "DATA_FILE_MB", 0)  # every episode starts a new file
    monkeypatch.setattr(lerobot, "CHUNKS_SIZE", 2)
    out = lerobot.export_lerobot(src, tmp_path / "lr")
    files = sorted(p.relative_to(out).as_posix() for p in (out / "data").glob("*/*.parquet"))
    assert files == ["data/chunk-000/file-000.parquet", "data/chunk-000/file-001.parquet",
                     "data/chunk-001/file-000.parquet", "data/chunk-001/file-001.parquet",
                     "data/chunk-002/file-000.parquet"]
    episodes = pd.read_parquet(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    assert list(episodes["data/chunk_index"]) == [0, 0, 1, 1, 2]
    back = open_dataset(lerobot.import_lerobot(out, tmp_path / "back"))
    for ea, eb in zip(open_dataset(src).iter_episodes(), back.iter_episodes()):
        np.testing.assert_array_equal(ea.actions, eb.actions)


def test_import_foreign_dataset_and_resize(exported, tmp_path):
    """A LeRobot folder without our extra episode columns imports as source 'lerobot'."""
    import shutil

    _, out, _ = exported
    foreign = tmp_path / "foreign"
    shutil.copytree(out, foreign)
    path = foreign / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop(["task_name", "success", "source", "seed", "meta"]), path)
    ds = open_dataset(lerobot.import_lerobot(foreign, tmp_path / "ours", image_size=8))
    ep = ds.episode(0)
    assert ep.source == "lerobot" and ep.success and ep.task == ep.instruction
    assert ep.images.shape[1:] == (8, 8, 3) and ds.image_size == 8


def _edit_info(root, **changes):
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    info.update(changes)
    path.write_text(json.dumps(info))
    return info


def test_bad_inputs(exported, tmp_path):
    import shutil

    src, out, _ = exported
    with pytest.raises(BadInput, match="no such LeRobot dataset folder"):
        lerobot.import_lerobot(tmp_path / "missing", tmp_path / "x")
    with pytest.raises(BadInput, match="info.json: missing"):
        lerobot.import_lerobot(tmp_path, tmp_path / "x")
    old = tmp_path / "old"
    shutil.copytree(out, old)
    _edit_info(old, codebase_version="v2.1")
    with pytest.raises(BadInput, match="codebase_version 'v2.1' is not 'v3.0'") as err:
        lerobot.import_lerobot(old, tmp_path / "x")
    assert "\n" not in str(err.value)
    video = tmp_path / "video"
    shutil.copytree(out, video)
    feats = json.loads((video / "meta" / "info.json").read_text())["features"]
    feats["observation.images.top"]["dtype"] = "video"
    _edit_info(video, features=feats)
    # A video feature whose episodes table does not locate the episodes in the mp4 files.
    pytest.importorskip("av")
    with pytest.raises(BadInput, match="has no videos/observation.images.top/"):
        lerobot.import_lerobot(video, tmp_path / "x")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(out, corrupt)
    (corrupt / "data" / "chunk-000" / "file-000.parquet").write_bytes(b"not parquet")
    with pytest.raises(BadInput, match="file-000.parquet: unreadable"):
        lerobot.import_lerobot(corrupt, tmp_path / "x")
    with pytest.raises(BadInput):
        lerobot.export_lerobot(tmp_path / "no-dataset", tmp_path / "y")
    with pytest.raises(BadInput, match="not an empty folder"):
        lerobot.export_lerobot(src, out)  # refuses to overwrite
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert not list(tmp_path.glob("*.tmp-*"))  # nothing half-written left behind


def test_failed_export_leaves_nothing(tiny_dataset, tmp_path, monkeypatch):
    def boom(image):
        raise RuntimeError("disk full")

    monkeypatch.setattr(lerobot, "_png", boom)
    with pytest.raises(RuntimeError):
        lerobot.export_lerobot(tiny_dataset, tmp_path / "lr")
    assert list(tmp_path.iterdir()) == []
