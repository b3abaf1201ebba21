"""`seeds_together:` in a spec: the points that differ only in seed train together in one process
(`scaling train --members`), each keeps its own row and key, equals its solo run, and a row re-run by key
re-runs its group."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd
import pytest
import yaml

from scaling.model.family import Dims
from sweeps.plan import plan_runs
from sweeps.spec import parse_spec
from sweeps.sweep import select_runs
from tests.proc import run_group
from vla_core.errors import BadInput

DIMS = Dims(image_size=32, vocab_size=32, max_instr_len=8, proprio_dim=4, action_dim=4)


def spec(**changes):
    raw = {"name": "t", "data": {"path": "/nonexistent"}, "models": ["debug", "10k"], "samples": [128, 256],
           "seeds": [0, 1, 2], "train": {"batch_size": 32, "lr": 1e-3}, "wsd": {"cooldown_frac": 0.25}}
    raw.update(changes)
    return parse_spec(raw, "t.yaml")


def test_seeds_together_parses_true_false_or_a_size_and_refuses_anything_else():
    assert spec().seeds_together == 0
    assert spec(seeds_together=True).seeds_together == math.inf
    assert spec(seeds_together=False).seeds_together == 0
    assert spec(seeds_together="1e5").seeds_together == 1e5
    for bad in ("yes", -1, 0, [1]):
        with pytest.raises(BadInput, match="seeds_together"):
            spec(seeds_together=bad)


def test_grouping_leaves_keys_and_fingerprint_as_they_are():
    alone, together = spec(), spec(seeds_together=True)
    assert alone.fingerprint() == together.fingerprint()
    a, t = plan_runs(alone, DIMS), plan_runs(together, DIMS)
    assert [r.key for r in a] == [r.key for r in t]
    assert all(r.group is None for r in a)


def test_a_group_is_the_seeds_of_one_point_and_a_size_limit_keeps_larger_models_apart():
    runs = plan_runs(spec(seeds_together=True), DIMS)
    groups: dict[str, list] = {}
    for r in runs:
        if r.phase != "blind":
            assert r.group is not None, r
            groups.setdefault(r.group, []).append(r)
    for members in groups.values():
        assert sorted(r.seed for r in members) == [0, 1, 2]
        assert len({(r.size, r.samples, r.phase) for r in members}) == 1
    assert len(groups) == 2 * 2  # two sizes x (a stable phase at 256 + a cooldown at 128)
    blind = [r for r in runs if r.phase == "blind"]
    assert blind and all(r.group is None for r in blind)  # one seed: nothing to group with

    limited = plan_runs(spec(seeds_together=min(r.n_params for r in runs) + 1), DIMS)
    small = min(r.n_params for r in runs)
    assert all((r.group is not None) == (r.n_params == small and r.phase != "blind") for r in limited)


def test_a_row_re_run_by_key_takes_its_group_and_their_stable_phases():
    runs = plan_runs(spec(seeds_together=True), DIMS)
    cooldown = next(r for r in runs if r.phase == "cooldown" and r.seed == 1)
    picked = select_runs(runs, {cooldown.key})
    assert {(r.seed, r.phase) for r in picked} == {(s, p) for s in (0, 1, 2) for p in ("cooldown", "main")}
    assert {r.size for r in picked} == {cooldown.size}
    # Without grouping only the row and its own stable phase.
    runs = plan_runs(spec(), DIMS)
    cooldown = next(r for r in runs if r.phase == "cooldown" and r.seed == 1)
    assert {(r.seed, r.phase) for r in select_runs(runs, {cooldown.key})} == {(1, "cooldown"), (1, "main")}


def test_a_checkpoint_of_other_members_is_set_aside(tmp_path):
    from sweeps.worker import MEMBERS_FILE, _own_checkpoint

    (tmp_path / "checkpoints").mkdir()
    _own_checkpoint(tmp_path, ["b", "a"])  # no record of whose it is: not resumed
    assert not (tmp_path / "checkpoints").exists() and (tmp_path / "checkpoints.other-members.1").is_dir()
    assert json.loads((tmp_path / MEMBERS_FILE).read_text()) == {"keys": ["a", "b"]}
    (tmp_path / "checkpoints").mkdir()
    _own_checkpoint(tmp_path, ["a", "b"])  # the same members: resumed
    assert (tmp_path / "checkpoints").is_dir()
    _own_checkpoint(tmp_path, ["a"])  # another set: its checkpoint would be refused
    assert not (tmp_path / "checkpoints").exists() and (tmp_path / "checkpoints.other-members.2").is_dir()
    assert json.loads((tmp_path / MEMBERS_FILE).read_text()) == {"keys": ["a"]}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_grouped_sweep_gives_every_row_of_the_solo_sweep_to_the_digit(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.delenv("SWEEP_RUN_COMMAND", raising=False)
    base = {"data": str(tiny_dataset), "models": ["debug"], "samples": [128, 256], "seeds": [0, 1, 2],
            "retries": 0, "blind_baseline": False, "wsd": {"cooldown_frac": 0.25},
            "train": {"batch_size": 32, "lr": 1e-3, "precision": "32-true", "accelerator": "cpu", "val_samples": 64,
                      "eval_episodes": 0, "progress_bar": False, "threads": 1}}
    tables = {}
    for kind, extra in (("alone", {}), ("together", {"seeds_together": True})):
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump({**base, "name": "s", **extra}))
        r = run_group([sys.executable, "-m", "sweeps.cli", "sweep", "run", str(path), "--dir", str(tmp_path / kind),
                       "--workers", "1", "--no-progress"], timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        tables[kind] = pd.read_csv(tmp_path / kind / "results.csv").set_index("run_key").sort_index()
    alone, together = tables["alone"], tables["together"]
    assert list(alone.index) == list(together.index) and len(alone) == 6
    assert (together["state"] == "completed").all()
    for col in ("val_loss", "train_loss", "action_mse", "seed", "n_samples"):
        assert list(together[col]) == list(alone[col]), col
    runs = tmp_path / "together" / "runs"
    groups = sorted(p.name for p in runs.iterdir() if p.name.startswith("g-"))
    assert len(groups) == 2  # the stable phases together, then the cooldowns together
    for g in groups:
        log = (runs / g / "train.log").read_text()
        assert log.count("completed:") == 3, log[-2000:]
        assert not (runs / g / "checkpoints" / "ensemble.ckpt").exists()
    for key in together.index:
        result = json.loads((runs / key / "result.json").read_text())
        assert result["status"] == "completed"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_group_killed_mid_run_resumes_from_its_checkpoint_to_the_same_rows(tmp_path, tiny_dataset, monkeypatch):
    """kill -9 of the whole sweep while a group trains; the same command again resumes the group from its
    ensemble checkpoint (not from step 0) and every row equals the uninterrupted sweep's."""
    import os
    import signal
    import subprocess

    from tests.proc import wait_for

    monkeypatch.delenv("SWEEP_RUN_COMMAND", raising=False)
    base = {"data": str(tiny_dataset), "models": ["debug"], "samples": [2048], "seeds": [0, 1], "retries": 0,
            "blind_baseline": False, "name": "k",
            "train": {"batch_size": 16, "lr": 1e-3, "precision": "32-true", "accelerator": "cpu", "val_samples": 32,
                      "eval_episodes": 0, "progress_bar": False, "threads": 1, "checkpoint_every": 8}}
    tables = {}
    for kind, extra in (("alone", {}), ("together", {"seeds_together": True})):
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump({**base, **extra}))
        cmd = [sys.executable, "-m", "sweeps.cli", "sweep", "run", str(path), "--dir", str(tmp_path / kind),
               "--workers", "1", "--no-progress"]
        if kind == "together":
            proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            ckpt = lambda kind=kind: next((tmp_path / kind / "runs").glob("g-*/checkpoints/ensemble.ckpt"), None)  # noqa: E731
            wait_for("the group's first checkpoint", ckpt, timeout=300)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        r = run_group(cmd, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        tables[kind] = pd.read_csv(tmp_path / kind / "results.csv").set_index("run_key").sort_index()
    log = next((tmp_path / "together" / "runs").glob("g-*/train.log")).read_text()
    assert "resuming from" in log and "ensemble.ckpt" in log, log[-2000:]
    assert list(tables["together"]["val_loss"]) == list(tables["alone"]["val_loss"])
    assert (tables["together"]["state"] == "completed").all() and len(tables["together"]) == 2


def test_the_plan_says_how_many_processes_train_the_groups():
    from sweeps.plan import format_plan

    text = format_plan(plan_runs(spec(seeds_together=True), DIMS))
    assert "seeds together: 12 runs in 4 processes" in text and "1 runs alone" in text
    assert "seeds together" not in format_plan(plan_runs(spec(), DIMS))
