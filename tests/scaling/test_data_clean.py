"""Cleaning drops and counts bad episodes by reason, trims idle runs; inspect shows the same flags."""

from __future__ import annotations

import numpy as np

from scaling.data.clean import clean_dataset, idle_mask
from scaling.data.inspect import summarize
from scaling.data.store import open_dataset, write_dataset
from scaling.data.testing import synthetic_episodes


def _dirty_episodes():
    eps = list(synthetic_episodes(10, length=12, image_size=8))
    eps[1].actions[3, 0] = np.nan                        # nonfinite
    eps[2].success = False                               # failed
    eps[4] = list(synthetic_episodes(4, length=12, image_size=8))[3]  # duplicate of episode 3
    eps[5].actions[0, 1] = 1.5                           # outside [-1, 1]
    eps[6].images[5:10] = eps[6].images[4]               # frames 5..9 static: 5 idle frames
    eps[6].proprio[5:10] = eps[6].proprio[4]
    eps[7].images[2:4] = eps[7].images[1]                # a 2-frame pause is below the idle threshold
    eps[7].proprio[2:4] = eps[7].proprio[1]
    return eps


def test_idle_mask():
    img = np.zeros((8, 2, 2, 3), np.uint8)
    img[0], img[6], img[7] = 1, 2, 3  # frames 1..5 equal: 2..5 unchanged from their predecessor
    prop = np.zeros((8, 1), np.float32)
    assert idle_mask(img, prop).tolist() == [False, False, True, True, True, True, False, False]


def test_clean_counts_and_inspect_flags(tmp_path):
    src = write_dataset(_dirty_episodes(), tmp_path / "dirty", seed=0, generator="s", generator_version="1",
                        meta={"action_bounds": [-1.0, 1.0]})
    q = summarize(src)["quality"]
    assert {k: q[k] for k in ("nonfinite", "failed", "duplicate", "out_of_bounds")} == \
        {"nonfinite": 1, "failed": 1, "duplicate": 1, "out_of_bounds": 1}
    assert (q["idle_episodes"], q["idle_frames"]) == (1, 5)
    assert open_dataset(src).n_episodes == 10  # inspect dropped nothing

    report = clean_dataset(src, tmp_path / "clean")
    assert report["dropped"] == {"nonfinite": 1, "failed": 1, "duplicate": 1, "out_of_bounds": 1}
    assert (report["idle_frames_trimmed"], report["episodes_trimmed"]) == (5, 1)
    assert (report["episodes_in"], report["episodes_out"]) == (10, 6)
    assert (report["frames_in"], report["frames_out"]) == (120, 6 * 12 - 5)
    cleaned = open_dataset(tmp_path / "clean")
    q2 = summarize(cleaned.path)["quality"]
    assert q2["nonfinite"] == q2["failed"] == q2["duplicate"] == q2["out_of_bounds"] == q2["idle_frames"] == 0
    # Clean keeps every surviving episode's identity, so its split side does not change.
    raw = open_dataset(src)
    keep = [0, 3, 6, 7, 8, 9]
    assert list(cleaned.episodes["uid"]) == list(raw.episodes["uid"].iloc[keep])
    np.testing.assert_array_equal(cleaned.is_val, raw.is_val[keep])


def test_keep_failed_and_explicit_bound(tmp_path):
    src = write_dataset(_dirty_episodes(), tmp_path / "dirty", seed=0, generator="s", generator_version="1")
    report = clean_dataset(src, tmp_path / "c", keep_failed=True, action_bound=2.0)
    assert report["dropped"] == {"nonfinite": 1, "failed": 0, "duplicate": 1, "out_of_bounds": 0}
