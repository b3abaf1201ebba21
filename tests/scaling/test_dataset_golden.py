"""Golden dataset: a committed folder of format version 1, read by today's reader, equal to a fresh generation.

tests/data/dataset-v1 was written by

    scaling data generate tabletop --episodes 4 --image-size 16 --seed 0 --out tests/data/dataset-v1

and is checked in. Three things can break it, each on purpose only:

- the on-disk format (store.py: files, manifest keys, columns): users' datasets of version 1 must
  still open. Bump FORMAT_VERSION, keep reading version 1, add a tests/data/dataset-v2 beside this one.
  Optional manifest keys that a version-1 reader reads when present and does without when absent
  (OPTIONAL_MANIFEST_KEYS: the loss floor) are no format change: fresh folders have them, this one not;
- the reader (normalisation, tokenizers, splits): the pinned batch below changes; a run on an old
  dataset would no longer see what it saw;
- the generator (same seed and index, different episode): bump tabletop's GENERATOR_VERSION and
  regenerate this folder with the command above plus --overwrite.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.data.inspect import verify
from scaling.data.store import FORMAT_VERSION, open_dataset

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "dataset-v1"
COMMAND = ["data", "generate", "tabletop", "--episodes", "4", "--image-size", "16", "--seed", "0"]

FILES = {"manifest.json", "stats.json", "tokenizer.json", "episodes.parquet", "shards/shard-00000/images.npy",
         "shards/shard-00000/proprio.npy", "shards/shard-00000/actions.npy", "shards/shard-00000/episode_index.npy"}
MANIFEST_KEYS = {"format_version", "generator", "generator_version", "seed", "meta", "sources", "tasks", "counts",
                 "features", "image_size", "shard_frames", "shards"}
OPTIONAL_MANIFEST_KEYS = {"loss_floor", "loss_floor_method", "loss_floor_per_dim"}
EPISODE_COLUMNS = ["episode_index", "uid", "content_hash", "task", "instruction", "success", "source", "length",
                   "frame_start", "shard", "seed", "meta"]


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def test_golden_folder_is_format_version_1_laid_out_as_documented():
    files = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file()}
    assert files == FILES
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and set(manifest) == MANIFEST_KEYS
    episodes = pd.read_parquet(GOLDEN / "episodes.parquet")
    assert list(episodes.columns[: len(EPISODE_COLUMNS)]) == EPISODE_COLUMNS  # then the quality flags
    assert set(json.loads((GOLDEN / "tokenizer.json").read_text())) == {"instruction", "action"}
    assert set(json.loads((GOLDEN / "stats.json").read_text())) >= {"action", "proprio"}


def test_todays_reader_reads_version_1_exactly_as_before():
    assert verify(GOLDEN) == []  # every shard matches the manifest's checksums
    ds = open_dataset(GOLDEN)
    assert (ds.n_frames, ds.n_train_frames, ds.image_size, ds.proprio_dim, ds.action_dim) == (59, 49, 16, 4, 3)
    assert ds.val_indices().tolist() == list(range(24, 34))  # episode 1 of 4 is the validation episode
    assert ds.train_indices(8).tolist() == [22, 11, 45, 4, 2, 3, 18, 21]
    batch = ds.get_batch(np.array([0, 5, 17, 58]), chunk=2)
    # Pinned digests of what a training step sees (pixels, standardised proprio, normalised actions,
    # bins, token ids). Regenerate only with a deliberate reader change: print {k: _sha(v)} for this batch.
    assert {k: _sha(v) for k, v in batch.items()} == {
        "action_tokens": "028b3caaeb5cbfbd", "actions": "35c81725277a8859", "actions_raw": "35c81725277a8859",
        "image": "96a6da111dca7969", "instruction": "c26fd560306eab65", "proprio": "07a0c62570e20e1b"}
    assert ds.tokenizer.decode(batch["instruction"][0]) == \
        "slide the red round piece to the lower side of the table"


def test_fresh_generation_equals_the_golden_folder(tmp_path):
    import scaling.data.tabletop as tabletop
    from sweeps.cli import main

    golden = json.loads((GOLDEN / "manifest.json").read_text())
    assert golden["generator_version"] == tabletop.GENERATOR_VERSION, (
        "tabletop's GENERATOR_VERSION changed: regenerate tests/data/dataset-v1 (see this file's docstring)")
    out = tmp_path / "fresh"
    assert main([*COMMAND, "--out", str(out)]) == 0
    assert format_version_of(out) == FORMAT_VERSION == 1, "format changed: add tests/data/dataset-v2, keep v1 readable"
    for name in sorted(FILES):
        a, b = GOLDEN / name, out / name
        if name == "manifest.json":
            fresh = json.loads(b.read_text())
            assert OPTIONAL_MANIFEST_KEYS <= set(fresh) and fresh["loss_floor"] > 0
            assert json.loads(a.read_text()) == {k: v for k, v in fresh.items() if k not in OPTIONAL_MANIFEST_KEYS}
        elif name.endswith(".json"):
            assert json.loads(a.read_text()) == json.loads(b.read_text()), name
        elif name.endswith(".parquet"):  # the bytes carry the writer's version; the content must match
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
        else:  # same generator version and seed: the same episodes, bit for bit
            assert a.read_bytes() == b.read_bytes(), f"{name}: the generator changed without a version bump"


def format_version_of(path: Path) -> int:
    return json.loads((path / "manifest.json").read_text())["format_version"]
