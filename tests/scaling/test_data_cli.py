"""`scaling data ...` end to end: generate, inspect (--json, --verify), clean, and each bad input."""

from __future__ import annotations

import json
import sys

import pytest

import sweeps.cli
from scaling.data.store import write_dataset
from scaling.data.testing import synthetic_episodes
from tests.scaling.metaworld_skip import skip_without_metaworld


@pytest.fixture
def cli(monkeypatch, capsys):
    """Runs `scaling ARGS` with only the data commands registered; returns (rc, stdout, stderr)."""
    monkeypatch.setattr(sweeps.cli, "_REGISTRARS", ("scaling.data.cli",))

    def run(*argv):
        try:
            rc = sweeps.cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors
            rc = exc.code
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def synth(tmp_path):
    return write_dataset(synthetic_episodes(6), tmp_path / "ds", seed=0, generator="s", generator_version="1",
                         shard_frames=20)


def _one_line_error(rc, err, *needles):
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_generate_tabletop_inspect_json_and_clean(cli, tmp_path):
    pytest.importorskip("scaling.data.tabletop")
    out = tmp_path / "tt"
    rc, stdout, _ = cli("data", "generate", "tabletop", "--episodes", 4, "--image-size", 16, "--workers", 1,
                        "--out", out)
    assert rc == 0 and "4 episodes" in stdout
    rc, stdout, _ = cli("data", "inspect", out, "--json", "--verify")
    s = json.loads(stdout)
    assert rc == 0 and s["episodes"] == 4 and s["frames"] > 0 and s["tasks"] and s["verify"]["ok"]
    assert s["meta"]["action_bounds"] == [-1.0, 1.0]
    rc, stdout, _ = cli("data", "inspect", out)
    assert rc == 0 and "episodes     4" in stdout and "quality" in stdout
    rc, stdout, _ = cli("data", "clean", out, "--out", tmp_path / "clean", "--json")
    assert rc == 0 and json.loads(stdout)["episodes_in"] == 4
    _one_line_error(*cli("data", "generate", "tabletop", "--episodes", 2, "--out", out)[::2], "already exists")


@pytest.mark.parametrize("count", ["0", "-3", "two"])
def test_non_positive_counts(cli, tmp_path, count):
    _one_line_error(*cli("data", "generate", "tabletop", "--episodes", count, "--out", tmp_path / "x")[::2],
                    "--episodes")
    _one_line_error(*cli("data", "generate", "metaworld", "--tasks", "reach-v3", "--episodes-per-task", count,
                         "--out", tmp_path / "x")[::2], "--episodes-per-task")
    assert not (tmp_path / "x").exists()


def test_unknown_task_and_missing_extra(cli, tmp_path, monkeypatch):
    _one_line_error(*cli("data", "generate", "metaworld", "--tasks", "reach-v3,fly-v3", "--out",
                         tmp_path / "x")[::2], "fly-v3")
    monkeypatch.setitem(sys.modules, "metaworld", None)  # importing it now raises ImportError
    _one_line_error(*cli("data", "generate", "metaworld", "--tasks", "reach-v3", "--out", tmp_path / "x")[::2],
                    "Meta-World is not installed")
    assert list(tmp_path.iterdir()) == []


def test_missing_unreadable_and_unknown_version(cli, tmp_path, synth):
    _one_line_error(*cli("data", "inspect", tmp_path / "nope")[::2], "nope: no such dataset folder")
    (synth / "manifest.json").write_text("{not json")
    _one_line_error(*cli("data", "inspect", synth)[::2], "manifest.json: unreadable")
    (synth / "manifest.json").write_text(json.dumps({"format_version": 7}))
    _one_line_error(*cli("data", "inspect", synth)[::2], "unknown format_version 7")
    _one_line_error(*cli("data", "clean", synth, "--out", tmp_path / "c")[::2], "unknown format_version 7")
    assert not (tmp_path / "c").exists()


def test_truncated_and_corrupt_shards(cli, synth):
    f = synth / "shards" / "shard-00001" / "actions.npy"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x55
    f.write_bytes(bytes(data))
    rc, _, _ = cli("data", "inspect", synth)
    assert rc == 0  # the header is intact: only --verify reads and checks every byte
    _one_line_error(*cli("data", "inspect", synth, "--verify")[::2], "shard-00001/actions.npy: sha256 mismatch")
    f.write_bytes(bytes(data[: len(data) // 2]))
    _one_line_error(*cli("data", "inspect", synth)[::2], "shard-00001/actions.npy: truncated or corrupt")


@pytest.mark.slow
@pytest.mark.metaworld
def test_generate_metaworld(cli, tmp_path):
    skip_without_metaworld()
    out = tmp_path / "mw"
    rc, stdout, err = cli("data", "generate", "metaworld", "--tasks", "reach-v3", "--episodes-per-task", 1,
                          "--image-size", 32, "--out", out)
    assert rc == 0, err
    rc, stdout, _ = cli("data", "inspect", out, "--json", "--verify")
    s = json.loads(stdout)
    assert s["episodes"] == 1 and list(s["tasks"]) == ["reach-v3"] and s["features"]["actions"]["shape"] == [4]
    assert "metaworld" in s["generator_version"]


def test_lerobot_export_import_via_cli(cli, tmp_path, synth):
    pytest.importorskip("scaling.data.lerobot")
    rc, stdout, err = cli("data", "export-lerobot", synth, "--out", tmp_path / "lr")
    assert rc == 0 and (tmp_path / "lr" / "meta" / "info.json").is_file(), err
    rc, stdout, err = cli("data", "import-lerobot", tmp_path / "lr", "--out", tmp_path / "back")
    assert rc == 0 and "6 episodes, 60 frames" in stdout, err
    _one_line_error(*cli("data", "import-lerobot", tmp_path / "nope", "--out", tmp_path / "x")[::2], "nope")
    _one_line_error(*cli("data", "export-lerobot", tmp_path / "nope", "--out", tmp_path / "y")[::2], "nope")


def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_generate_twice_gives_the_same_dataset(cli, tmp_path, workers):
    pytest.importorskip("scaling.data.tabletop")
    args = ("data", "generate", "tabletop", "--episodes", 5, "--image-size", 16, "--seed", 7)
    assert cli(*args, "--workers", 1, "--out", tmp_path / "a")[0] == 0
    assert cli(*args, "--workers", workers, "--out", tmp_path / "b")[0] == 0
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")


def test_generate_tabletop_task_families(cli, tmp_path):
    pytest.importorskip("scaling.data.tabletop")
    out = tmp_path / "fam"
    rc, _, _ = cli("data", "generate", "tabletop", "--episodes", 6, "--image-size", 16, "--workers", 1,
                   "--families", "touch,reach_zone", "--out", out)
    assert rc == 0
    rc, stdout, _ = cli("data", "inspect", out, "--json")
    assert rc == 0 and set(json.loads(stdout)["tasks"]) <= {"touch", "reach_zone"}
    _one_line_error(*cli("data", "generate", "tabletop", "--episodes", 2, "--families", "touch,fly",
                         "--out", tmp_path / "bad")[::2], "fly")
    assert not (tmp_path / "bad").exists()


def test_generate_tabletop_objects_range(cli, tmp_path):
    pytest.importorskip("scaling.data.tabletop")
    out = tmp_path / "objs"
    rc, _, _ = cli("data", "generate", "tabletop", "--episodes", 8, "--image-size", 16, "--workers", 2,
                   "--families", "touch", "--objects", "1-2", "--out", out)
    assert rc == 0
    from scaling.data import open_source
    from scaling.evaluation import tabletop_objects

    src = open_source(out)
    assert src.describe()["objects"] == "1-2" and tabletop_objects(src) == "1-2"
    sizes = {len(src.episode(i).meta["objects"]) for i in range(src.n_episodes)}
    assert sizes <= {1, 2}
    _one_line_error(*cli("data", "generate", "tabletop", "--episodes", 2, "--objects", "0-9",
                         "--out", tmp_path / "bad")[::2], "tabletop objects")
    assert not (tmp_path / "bad").exists()
