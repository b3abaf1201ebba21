"""Mixtures: sampling follows the weights, nesting, merged tokenizer and stats, mismatches rejected."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.data.mixture import open_source
from scaling.data.store import write_dataset
from scaling.data.testing import synthetic_episodes
from scaling.data.tokenizers import split_words
from vla_core.errors import BadInput


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    a = write_dataset(synthetic_episodes(20, length=6, image_size=8, seed=1, tasks=("push",)), root / "a",
                      seed=1, generator="s", generator_version="1")
    b = write_dataset(synthetic_episodes(10, length=4, image_size=8, seed=2, tasks=("lift", "open drawer")),
                      root / "b", seed=2, generator="s", generator_version="1")
    c = write_dataset(synthetic_episodes(3, image_size=8, action_dim=2), root / "c", seed=0,
                      generator="s", generator_version="1")
    return a, b, c


def test_sampling_follows_weights_and_is_nested(members):
    a, b, _ = members
    mix = open_source({"mixture": [{"path": str(a), "weight": 3}, {"path": str(b), "weight": 1}]})
    idx = mix.train_indices(20_000, seed=0)
    from_a = (idx < mix.offsets[1]).mean()
    assert abs(from_a - 0.75) < 0.015
    np.testing.assert_array_equal(mix.train_indices(5000, seed=0), idx[:5000])
    assert not np.array_equal(mix.train_indices(100, seed=1), idx[:100])
    # Frames drawn from each member are that member's training frames only.
    a_ds, b_ds = mix.members
    assert np.isin(idx[idx < mix.offsets[1]], a_ds.train_indices(a_ds.n_train_frames)).all()
    assert not np.isin(idx[idx >= mix.offsets[1]] - mix.offsets[1], b_ds.val_indices()).any()


def test_batch_and_merged_tokenizer(members):
    a, b, _ = members
    mix = open_source({"mixture": [{"path": str(a), "weight": 1}, {"path": str(b), "weight": 1}]})
    assert {"lift", "open", "drawer", "push"} <= set(mix.tokenizer.words)
    batch = mix.get_batch(np.array([0, int(mix.offsets[1]), int(mix.offsets[1]) + 5]), chunk=2)
    assert batch["image"].shape == (3, 8, 8, 3) and batch["actions"].shape == (3, 2, 3)
    assert batch["instruction"].shape == (3, mix.tokenizer.max_len)
    b_ds = mix.members[1]
    want = b_ds.episode(0)
    assert mix.tokenizer.decode(batch["instruction"][1]) == " ".join(split_words(want.instruction))
    np.testing.assert_array_equal(batch["actions_raw"][1, 0], want.actions[0])
    d = mix.describe()
    assert [m["weight"] for m in d["mixture"]] == [0.5, 0.5] and d["frames"] == 160
    assert d["mixture"][1]["path"].endswith("b")


def test_mismatch_and_bad_specs(members):
    a, _, c = members
    with pytest.raises(BadInput, match="action_dim 2"):
        open_source({"mixture": [{"path": str(a), "weight": 1}, {"path": str(c), "weight": 1}]})
    with pytest.raises(BadInput, match="weights must be positive"):
        open_source({"mixture": [{"path": str(a), "weight": 0}]})
    with pytest.raises(BadInput, match="needs a 'path'"):
        open_source({"mixture": [{"weight": 1}]})
    assert open_source(str(a)).n_frames == 120
