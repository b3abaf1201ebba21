"""Bringing one's own LeRobot data: several cameras, tasks that change within a recording, corrupt
images, and per-episode quantiles that survive LeRobot's edit tools.

The folder `data/lerobot_v30_cameras` was written by LeRobot 0.4.4's own `LeRobotDataset` (two image
cameras, `top` and `wrist`; episode 0 changes task twice, A B A; see data/README.md), and its
reference npz is LeRobot's own reading of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sweeps.cli
from scaling.data import lerobot
from scaling.data.store import open_dataset, write_dataset
from scaling.data.testing import synthetic_episodes
from vla_core.errors import BadInput

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "lerobot_v30_cameras"
REFERENCE = np.load(DATA / "lerobot_v30_cameras_reference.npz")
DATA_FILE = "data/chunk-000/file-000.parquet"


@pytest.fixture
def cli(monkeypatch, capsys):
    """Runs `scaling ARGS` with only the data commands registered; returns (rc, stdout, stderr)."""
    monkeypatch.setattr(sweeps.cli, "_REGISTRARS", ("scaling.data.cli",))

    def run(*argv):
        rc = sweeps.cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def _frames(ds) -> list:
    return list(ds.iter_episodes())


# --- cameras -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wrist", "observation.images.wrist"])
def test_named_camera_is_imported_and_recorded(tmp_path, capsys, name):
    ds = open_dataset(lerobot.import_lerobot(GOLDEN, tmp_path / "ours", camera=name))
    np.testing.assert_array_equal(np.concatenate([e.images for e in _frames(ds)]), REFERENCE["wrist"])
    rec = ds.manifest["meta"]["lerobot"]
    assert rec["camera"] == "observation.images.wrist"
    assert rec["cameras_left_out"] == ["observation.images.top"]
    assert "warning" not in capsys.readouterr().err  # named: nothing to warn about


def test_default_camera_warns_naming_the_cameras_left_out(cli, tmp_path):
    rc, out, err = cli("data", "import-lerobot", GOLDEN, "--out", tmp_path / "ours")
    assert rc == 0, err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "observation.images.wrist" in warning[0] and "--camera" in warning[0], err
    ds = open_dataset(tmp_path / "ours")
    assert ds.manifest["meta"]["lerobot"]["camera"] == "observation.images.top"
    np.testing.assert_array_equal(np.concatenate([e.images for e in _frames(ds)]), REFERENCE["top"])
    rc, _, err = cli("data", "import-lerobot", GOLDEN, "--out", tmp_path / "wrist", "--camera", "wrist")
    assert rc == 0 and "warning" not in err, err
    assert open_dataset(tmp_path / "wrist").manifest["meta"]["lerobot"]["camera"] == "observation.images.wrist"


def test_unknown_camera_is_one_line_exit_2_naming_the_cameras(cli, tmp_path):
    rc, _, err = cli("data", "import-lerobot", GOLDEN, "--out", tmp_path / "ours", "--camera", "side")
    assert rc == 2 and err.count("\n") == 1, err
    assert "'side'" in err and "observation.images.top, observation.images.wrist" in err
    assert list(tmp_path.iterdir()) == []


# --- a task that changes within a recording --------------------------------------------------------


@pytest.fixture(scope="module")
def split_import(tmp_path_factory):
    return open_dataset(lerobot.import_lerobot(GOLDEN, tmp_path_factory.mktemp("split") / "ours", camera="top"))


def test_each_frame_keeps_the_instruction_it_was_recorded_with(split_import):
    eps = _frames(split_import)
    # Episode 0 (A A A B B B A A) becomes three episodes, episode 1 stays one.
    assert [len(e) for e in eps] == [3, 3, 2, 5]
    assert [e.instruction for e in eps for _ in range(len(e))] == list(REFERENCE["task"])  # as LeRobot reads it
    np.testing.assert_array_equal(np.concatenate([e.images for e in eps]), REFERENCE["top"])
    np.testing.assert_array_equal(np.concatenate([e.proprio for e in eps]), REFERENCE["state"])
    np.testing.assert_array_equal(np.concatenate([e.actions for e in eps]), REFERENCE["action"])
    assert [e.task for e in eps] == [e.instruction for e in eps]  # foreign data: the task is its text
    assert [e.meta.get("lerobot_segment") for e in eps] == [[0, 3], [1, 3], [2, 3], None]
    assert [e.meta.get("lerobot_frames") for e in eps[:3]] == [[0, 3], [3, 6], [6, 8]]
    assert {e.meta["lerobot_episode_index"] for e in eps[:3]} == {0}
    # The parts of one recording share its uid, which the validation split hashes: they fall on one side.
    assert len({e.meta["uid"] for e in eps[:3]}) == 1 and eps[3].meta["uid"] != eps[0].meta["uid"]
    assert set(split_import.tokenizer.encode("place it in the blue zone")) - {0}


def test_split_is_reported_and_survives_a_round_trip(cli, split_import, tmp_path):
    rc, _, err = cli("data", "import-lerobot", GOLDEN, "--out", tmp_path / "ours", "--camera", "top")
    assert rc == 0 and "1 recording(s) change task" in err and "into 3 episodes" in err, err
    out = lerobot.export_lerobot(split_import.path, tmp_path / "lr")
    back = open_dataset(lerobot.import_lerobot(out, tmp_path / "back"))
    a, b = _frames(split_import), _frames(back)
    assert [e.instruction for e in a] == [e.instruction for e in b]
    assert [e.meta["uid"] for e in a] == [e.meta["uid"] for e in b]  # the validation split is unchanged
    assert list(back.is_val) == list(split_import.is_val)


def test_a_split_follows_the_text_not_the_task_index(split_import, tmp_path):
    assert [len(e) for e in _frames(split_import)] == [3, 3, 2, 5]
    same = tmp_path / "lr"
    shutil.copytree(GOLDEN, same)
    tasks = pd.read_parquet(same / "meta" / "tasks.parquet")
    texts = list(tasks.index)
    texts[1] = texts[0]  # "place it in the blue zone" now reads "pick up the red block"
    pd.DataFrame({"task_index": tasks["task_index"].to_numpy()}, index=texts).to_parquet(
        same / "meta" / "tasks.parquet")
    eps = _frames(open_dataset(lerobot.import_lerobot(same, tmp_path / "ours")))
    assert [len(e) for e in eps] == [8, 5] and eps[0].instruction == "pick up the red block"


def test_task_index_without_a_task_is_bad_input(tmp_path):
    broken = tmp_path / "lr"
    shutil.copytree(GOLDEN, broken)
    table = pq.read_table(broken / DATA_FILE)
    index = table.column("task_index").to_numpy().copy()
    index[4] = 7
    pq.write_table(table.set_column(table.schema.get_field_index("task_index"), "task_index", pa.array(index)),
                   broken / DATA_FILE)
    with pytest.raises(BadInput, match="episode 0: task_index 7 is not in meta/tasks.parquet"):
        lerobot.import_lerobot(broken, tmp_path / "out", camera="top")
    assert not (tmp_path / "out").exists()


# --- corrupt images --------------------------------------------------------------------------------


def _with_cell(src: Path, dst: Path, row: int, cell) -> Path:
    """A copy of ``src`` whose top camera holds ``cell`` at data row ``row``."""
    shutil.copytree(src, dst)
    table = pq.read_table(dst / DATA_FILE)
    i = table.schema.get_field_index("observation.images.top")
    cells = table.column(i).to_pylist()
    cells[row] = cell
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(cells, table.schema.field(i).type)),
                   dst / DATA_FILE)
    return dst


def _png_bytes(row: int) -> bytes:
    return pq.read_table(GOLDEN / DATA_FILE).column("observation.images.top")[row].as_py()["bytes"]


PNG = _png_bytes(4)  # 80 bytes; IEND and the IDAT's CRC are its last 16, so 24 off cuts the pixel data
CORRUPT = {
    "truncated PNG": ({"bytes": PNG[:-24], "path": None}, "image does not decode (OSError: image file is truncated"),
    "half a PNG": ({"bytes": PNG[: len(PNG) // 2], "path": None}, "image does not decode"),
    "not an image": ({"bytes": b"\x89PNG but no more", "path": None}, "image does not decode"),
    "missing file": ({"bytes": None, "path": "images/observation.images.top/frame-4.png"},
                     "images/observation.images.top/frame-4.png unreadable"),
    "empty cell": (None, "empty image cell"),
    "empty bytes": ({"bytes": b"", "path": None}, "empty image cell"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_image_exits_2_with_one_line_and_leaves_nothing(cli, tmp_path, case):
    cell, reason = CORRUPT[case]
    broken = _with_cell(GOLDEN, tmp_path / "lr", 4, cell)
    out = tmp_path / "new" / "ours"  # its parent does not exist either
    rc, stdout, err = cli("data", "import-lerobot", broken, "--out", out)  # the default camera, top
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "episode 0, observation.images.top, frame 4" in err and reason in err, err
    assert DATA_FILE in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr"]  # no dataset, no temporary, no parent


def test_corrupt_image_in_a_camera_left_out_is_not_read(tmp_path):
    broken = _with_cell(GOLDEN, tmp_path / "lr", 4, None)
    ds = open_dataset(lerobot.import_lerobot(broken, tmp_path / "ours", camera="wrist"))
    assert ds.n_frames == 13


def test_image_file_named_by_a_cell_is_read_once_it_exists(cli, tmp_path):
    broken = _with_cell(GOLDEN, tmp_path / "lr", 4, {"bytes": None, "path": "frames/top-4.png"})
    rc, _, err = cli("data", "import-lerobot", broken, "--out", tmp_path / "ours")
    assert rc == 2 and "frames/top-4.png unreadable (No such file or directory)" in err, err
    (broken / "frames").mkdir()
    (broken / "frames" / "top-4.png").write_bytes(PNG)
    ds = open_dataset(lerobot.import_lerobot(broken, tmp_path / "ours"))
    np.testing.assert_array_equal(np.concatenate([e.images for e in _frames(ds)]), REFERENCE["top"])


# --- per-episode quantiles in the export -----------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    src = write_dataset(synthetic_episodes(4, length=7, image_size=8), root / "ds", seed=0,
                        generator="synthetic", generator_version="1")
    return src, lerobot.export_lerobot(src, root / "lr")


QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


def _value(v) -> np.ndarray:
    """A stats cell as a float array (parquet gives nested image stats back as object arrays)."""
    if isinstance(v, list) or (isinstance(v, np.ndarray) and v.dtype == object):
        return np.stack([_value(x) for x in v])
    return np.asarray(v, dtype=np.float64)


def test_export_writes_each_episodes_own_quantiles(exported):
    src, out = exported
    rows = pd.read_parquet(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    for ep, (_, row) in zip(open_dataset(src).iter_episodes(), rows.iterrows()):
        for key, x in (("action", ep.actions), ("observation.state", ep.proprio)):
            for name, q in QUANTILES.items():
                np.testing.assert_allclose(_value(row[f"stats/{key}/{name}"]), np.quantile(x, q, axis=0),
                                           rtol=1e-6, err_msg=f"{key} {name}")
        pixels = ep.images.reshape(-1, 3)
        for name, q in QUANTILES.items():
            value = _value(row[f"stats/observation.images.top/{name}"])
            assert value.shape == (3, 1, 1)  # LeRobot's per-channel image stats
            np.testing.assert_allclose(value.ravel(), np.quantile(pixels, q, axis=0, method="inverted_cdf") / 255.0)


def test_quantiles_survive_a_stats_rebuild_from_the_episode_rows(exported):
    """LeRobot's edit tools (delete_episodes, split_dataset) rebuild stats.json from the kept episode
    rows alone, each quantile the count-weighted mean of the episodes' own; a key missing from any
    row is dropped, and QUANTILES / QUANTILE10 then fail. Here: episode 0 deleted."""
    _, out = exported
    rows = pd.read_parquet(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").iloc[1:]
    for key in ("action", "observation.state", "observation.images.top"):
        counts = np.array([_value(c)[0] for c in rows[f"stats/{key}/count"]])
        rebuilt = [np.tensordot(counts, np.stack([_value(v) for v in rows[f"stats/{key}/{name}"]]), axes=1)
                   / counts.sum() for name in QUANTILES]
        assert all(np.isfinite(r).all() for r in rebuilt), key
        assert all((lo <= hi).all() for lo, hi in zip(rebuilt, rebuilt[1:])), key  # q01 <= q10 <= ... <= q99
        assert (rebuilt[-1] > rebuilt[0]).all() and (rebuilt[3] > rebuilt[1]).all(), key  # the modes divide by these


def _lerobot_python() -> str | None:
    """A Python with `lerobot` 0.4 installed: $LEROBOT_PYTHON (a scratch venv), else this one if it has it."""
    if os.environ.get("LEROBOT_PYTHON"):
        return os.environ["LEROBOT_PYTHON"]
    try:
        import lerobot as _  # noqa: F401
    except ImportError:
        return None
    return sys.executable


@pytest.mark.slow
def test_lerobots_own_edit_tools_keep_every_normalisation(exported, tmp_path):
    """The scratch-venv check, run where LeRobot is installed (LEROBOT_PYTHON=/path/to/venv/bin/python)."""
    python = _lerobot_python()
    if python is None:
        pytest.skip("needs lerobot 0.4 (set LEROBOT_PYTHON to a scratch venv's python)")
    _, out = exported
    run = subprocess.run([python, str(DATA / "lerobot_check_export.py"), str(out), str(tmp_path / "scratch")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("ok"), run.stdout[-2000:] + run.stderr[-2000:]
    assert "after delete_episodes QUANTILE10" in run.stdout


def test_failed_export_removes_the_folders_it_made(exported, tmp_path, monkeypatch):
    src, _ = exported

    def boom(image):
        raise BadInput("a frame that cannot be encoded")

    monkeypatch.setattr(lerobot, "_png", boom)
    with pytest.raises(BadInput):
        lerobot.export_lerobot(src, tmp_path / "a" / "b" / "lr")
    assert list(tmp_path.iterdir()) == []
