"""Folders written by LeRobot itself import: the golden LeRobot 0.4.4 folder (video camera) against LeRobot's
own reading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.data import lerobot
from scaling.data.store import open_dataset
from vla_core.errors import BadInput

GOLDEN = Path(__file__).resolve().parent / "data" / "lerobot_v30_video"
REFERENCE = GOLDEN.parent / "lerobot_v30_video_reference.npz"

av = pytest.importorskip("av", reason="video import needs the [video] extra (PyAV)")


def test_golden_folder_is_as_lerobot_writes_it():
    """The layout the importer must handle (so a LeRobot change of layout shows up here first)."""
    tasks = pd.read_parquet(GOLDEN / "meta" / "tasks.parquet")
    assert tasks.index.name is None and list(tasks.columns) == ["task_index"]  # the unnamed tasks index
    info = json.loads((GOLDEN / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["features"]["observation.images.top"]["dtype"] == "video"
    assert info["features"]["observation.images.top"]["info"]["video.codec"] == "av1"


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    return open_dataset(lerobot.import_lerobot(GOLDEN, tmp_path_factory.mktemp("golden") / "ours"))


def test_import_matches_lerobots_own_reading(imported):
    ref = np.load(REFERENCE)
    assert imported.n_episodes == 2 and imported.n_frames == len(ref["images"]) == 16
    eps = list(imported.iter_episodes())
    images = np.concatenate([e.images for e in eps])
    # Both decode the same AV1 stream with FFmpeg's dav1d and convert YUV -> RGB the same way; the
    # reference went through LeRobot's float [0, 1] tensors and back (x * 255 rounded): bit for bit.
    np.testing.assert_array_equal(images, ref["images"])
    np.testing.assert_array_equal(np.concatenate([e.proprio for e in eps]), ref["state"])
    np.testing.assert_array_equal(np.concatenate([e.actions for e in eps]), ref["action"])
    assert [e.instruction for e in eps for _ in range(len(e))] == list(ref["task"])
    assert eps[0].source == "lerobot" and eps[0].task == "push the red block left"


def test_video_frames_are_the_pictures_that_were_encoded(imported):
    """Independent of LeRobot's reading: the frames written by make_golden (a colour ramp) come back."""
    eps = list(imported.iter_episodes())
    for e, ep in enumerate(eps):
        # Rows far from the moving bar (rows 4t..4t+4), so chroma coding of the bar does not reach them.
        ramp = np.array([ep.images[t, 24:, :, e].mean() if t < 4 else ep.images[t, :8, :, e].mean() for t in range(8)])
        np.testing.assert_allclose(ramp, 40 + 25 * np.arange(8), atol=4)  # AV1 at CQP 30 is lossy


def test_missing_video_file_is_bad_input(tmp_path):
    broken = tmp_path / "lr"
    shutil.copytree(GOLDEN, broken)
    next((broken / "videos").rglob("*.mp4")).unlink()
    with pytest.raises(BadInput, match="video file missing"):
        lerobot.import_lerobot(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_without_pyav_the_message_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_av(name, *a, **kw):
        if name == "av":
            raise ImportError("no av")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(BadInput, match=r"vla-scaling\[video\]"):
        lerobot.import_lerobot(GOLDEN, tmp_path / "out")
