"""On-disk format: determinism, round trip, memory-mapped random access, atomic writes, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scaling.data.store import open_dataset, write_dataset
from scaling.data.testing import synthetic_episodes
from vla_core.errors import BadInput


def _write(path, n=12, shard_frames=35, **kw):
    return write_dataset(synthetic_episodes(n, **kw), path, seed=0, generator="synthetic",
                         generator_version="1", shard_frames=shard_frames)


def _file_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_is_deterministic(tmp_path):
    a, b = _write(tmp_path / "a"), _write(tmp_path / "b")
    assert _file_bytes(a) == _file_bytes(b)
    c = _write(tmp_path / "c", seed=1)
    assert _file_bytes(c)["manifest.json"] != _file_bytes(a)["manifest.json"]


def test_round_trip_and_layout(tmp_path):
    src = list(synthetic_episodes(12))
    ds = open_dataset(_write(tmp_path / "d"))
    m = json.loads((ds.path / "manifest.json").read_text())
    assert m["format_version"] == 1 and m["counts"] == {"episodes": 12, "frames": 120, "shards": 3}
    assert m["features"]["images"] == {"shape": [16, 16, 3], "dtype": "uint8"}
    # A shard is flushed once it holds >= 35 frames: 4 episodes of 10 frames each.
    assert [(s["frames"], s["episodes"]) for s in m["shards"]] == [(40, 4)] * 3
    for name in ("stats.json", "tokenizer.json", "episodes.parquet", "shards/shard-00000/images.npy"):
        assert (ds.path / name).is_file()
    for i in (0, 5, 11):
        got = ds.episode(i)
        np.testing.assert_array_equal(got.images, src[i].images)
        np.testing.assert_array_equal(got.actions, src[i].actions)
        assert (got.instruction, got.task, got.success, got.seed) == (src[i].instruction, src[i].task,
                                                                       src[i].success, src[i].seed)


def test_random_access_batch_matches_episodes(tmp_path):
    src = list(synthetic_episodes(12))
    ds = open_dataset(_write(tmp_path / "d"))
    assert isinstance(ds.shards[0]["images"], np.memmap)
    idx = np.array([119, 0, 57, 9, 9, 64])
    batch = ds.get_batch(idx, chunk=3)
    assert batch["image"].shape == (6, 16, 16, 3) and batch["image"].dtype == np.uint8
    assert batch["proprio"].dtype == np.float32 and batch["proprio"].shape == (6, 4)
    assert batch["actions"].shape == (6, 3, 3) and batch["actions"].dtype == np.float32
    assert batch["action_tokens"].dtype == np.int64 and batch["action_tokens"].max() < 256
    assert batch["instruction"].shape == (6, ds.tokenizer.max_len) and batch["instruction"].dtype == np.int64
    assert np.abs(batch["actions"]).max() <= 1.0
    for row, frame in enumerate(idx):
        e, t = divmod(int(frame), 10)
        np.testing.assert_array_equal(batch["image"][row], src[e].images[t])
        for k in range(3):  # past the episode end the last action repeats
            np.testing.assert_array_equal(batch["actions_raw"][row, k], src[e].actions[min(t + k, 9)])
        assert batch["instruction"][row].tolist()[: len(ds.tokenizer.encode(src[e].instruction))] == \
            ds.tokenizer.encode(src[e].instruction)
    mean, std = np.array(ds.stats["proprio"]["mean"]), np.array(ds.stats["proprio"]["std"])
    np.testing.assert_allclose(batch["proprio"][2], (src[5].proprio[7] - mean) / std, rtol=1e-4, atol=1e-5)


def test_refuses_to_overwrite_and_leaves_no_temp(tmp_path):
    out = _write(tmp_path / "d")
    with pytest.raises(BadInput, match="already exists"):
        _write(out)
    write_dataset(synthetic_episodes(3), out, seed=0, generator="s", generator_version="1", overwrite=True)
    assert open_dataset(out).n_episodes == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_interrupted_write_leaves_nothing(tmp_path):
    def boom():
        yield from synthetic_episodes(5)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(boom(), tmp_path / "d", seed=0, generator="s", generator_version="1", shard_frames=20)
    assert list(tmp_path.iterdir()) == []


def test_open_bad_inputs(tmp_path):
    with pytest.raises(BadInput, match="no such dataset"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="manifest.json: missing"):
        open_dataset(tmp_path / "empty")
    ds = _write(tmp_path / "d")
    m = json.loads((ds / "manifest.json").read_text())
    m["format_version"] = 99
    (ds / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BadInput, match="unknown format_version 99"):
        open_dataset(ds)


def test_truncated_shard_and_verify_catches_corruption(tmp_path):
    ds_path = _write(tmp_path / "d")
    assert open_dataset(ds_path).verify() == []
    img = ds_path / "shards" / "shard-00001" / "images.npy"
    data = bytearray(img.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte: headers still fine, only the checksum can tell
    img.write_bytes(bytes(data))
    problems = open_dataset(ds_path).verify()
    assert len(problems) == 1 and "shard-00001/images.npy: sha256 mismatch" in problems[0]
    img.write_bytes(bytes(data[:-500]))
    with pytest.raises(BadInput, match=r"shard-00001/images.npy: truncated or corrupt"):
        open_dataset(ds_path)


def test_tiny_dataset_fixture_meets_the_contract(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    assert ds.n_episodes == 8 and ds.image_size == 32
    assert ds.tokenizer.pad_id == 0 and ds.tokenizer.vocab_size > 2 and ds.tokenizer.max_len >= 1
    batch = ds.get_batch(ds.train_indices(4), chunk=2)
    assert {k: (v.dtype.name, v.shape) for k, v in batch.items()} == {
        "image": ("uint8", (4, 32, 32, 3)),
        "proprio": ("float32", (4, ds.proprio_dim)),
        "actions": ("float32", (4, 2, ds.action_dim)),
        "action_tokens": ("int64", (4, 2, ds.action_dim)),
        "actions_raw": ("float32", (4, 2, ds.action_dim)),
        "instruction": ("int64", (4, ds.tokenizer.max_len)),
    }
    assert ds.describe()["episodes"] == 8


def test_pickle_reopens_memory_maps(tmp_path):
    import pickle

    ds = open_dataset(_write(tmp_path / "d"))
    blob = pickle.dumps(ds)
    assert len(blob) < 50_000  # the shards' contents are not in the pickle
    again = pickle.loads(blob)
    idx = ds.train_indices(16)
    for k, v in ds.get_batch(idx, chunk=2).items():
        np.testing.assert_array_equal(again.get_batch(idx, chunk=2)[k], v)


def test_killed_writer_leftovers_are_not_a_dataset_and_get_removed(tmp_path):
    stale = tmp_path / "d.tmp-999999999"  # no such pid: a writer that was killed
    (stale / "shards").mkdir(parents=True)
    with pytest.raises(BadInput, match="manifest.json: missing"):
        open_dataset(stale)
    _write(tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_seeds_none_and_huge_round_trip(tmp_path):
    eps = list(synthetic_episodes(2))
    eps[0].seed, eps[1].seed = None, 2**100 + 7
    ds = open_dataset(write_dataset(eps, tmp_path / "d", seed=None, generator="s", generator_version="1"))
    assert ds.episode(0).seed is None and ds.episode(1).seed == 2**100 + 7


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("features"), "malformed dataset metadata"),
    (lambda m: m["counts"].update(frames=7), "counts"),
    (lambda m: m["shards"].pop(), "counts"),
])
def test_malformed_manifest_is_bad_input(tmp_path, edit, message):
    ds = _write(tmp_path / "d")
    m = json.loads((ds / "manifest.json").read_text())
    edit(m)
    (ds / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BadInput, match=message):
        open_dataset(ds)
    (ds / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BadInput, match="expected a JSON object"):
        open_dataset(ds)


def test_package_exports():
    import scaling.data as data
    from scaling.data.dataset import Dataset
    from scaling.data.mixture import open_source

    assert data.open_source is open_source and data.Dataset is Dataset and data.open_dataset is open_dataset
