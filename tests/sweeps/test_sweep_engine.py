"""The queue engine on the journal store, with the fake trainer: once per point, retries, states, export."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from sweeps.cli import main


def _cli(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_plan_lists_every_run(tmp_path, spec_file, capsys):
    spec = spec_file()
    assert main(["sweep", "plan", str(spec), "--dir", str(tmp_path / "d"), "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert "total: 4 runs" in out
    # A plan trains and enqueues nothing: no storage, no run folders, no timings without calibration.
    made = {p.name for p in (tmp_path / "d").iterdir()} if (tmp_path / "d").exists() else set()
    assert not made & {"optuna.journal", "runs", "sweep.json", "calibration.json", "results.csv"}, made


@pytest.mark.slow
def test_run_three_workers_each_point_once(tmp_path, spec_file, fake_env, runs_of):
    spec = spec_file(seeds=[0, 1])  # 8 points
    d = tmp_path / "d"
    r = _cli("sweep", "run", str(spec), "--dir", str(d), "--workers", "3", "--no-progress", env=fake_env)
    assert r.returncode == 0, r.stderr
    starts = Counter(k for ev, k, *_ in runs_of(d) if ev == "start")
    finishes = Counter(k for ev, k, *_ in runs_of(d) if ev == "finish")
    assert len(finishes) == 8 and set(finishes.values()) == {1} and set(starts.values()) == {1}
    df = pd.read_csv(d / "results.csv")
    assert len(df) == 8 and set(df["state"]) == {"completed"} and df["run_key"].is_unique
    assert {"sweep", "run_key", "seed", "state", "val_loss", "n_params", "d_model"} <= set(df.columns)
    # Kaplan's 6ND beside the exact FLOPs (6 x non-embedding N x D), as the README says.
    assert (df["flops_6nd"] == 6.0 * df["n_params_nonembed"] * df["n_samples"]).all()
    # Each run's W&B is quiet (train.log is a file: no banners, no colour codes); WANDB_MODE stays the user's.
    for key in df["run_key"]:
        env = json.loads((d / "runs" / key / "env.json").read_text())
        assert env["WANDB_SILENT"] == "true" and env["WANDB_MODE"] == "disabled" and env["WANDB_JOB_TYPE"] == "train"
    # A second run is a no-op: nothing is trained again.
    r = _cli("sweep", "run", str(spec), "--dir", str(d), "--workers", "2", "--no-progress", env=fake_env)
    assert r.returncode == 0 and len(runs_of(d)) == 16
    st = _cli("sweep", "status", str(spec), "--dir", str(d), "--json", env=fake_env)
    assert json.loads(st.stdout) == {"total": 8, "completed": 8, "running": 0, "waiting": 0,
                                     "failed": 0, "diverged": 0, "pruned": 0}


@pytest.mark.slow
def test_failures_retried_then_failed_diverged_recorded(tmp_path, spec_file, fake_env, runs_of, monkeypatch):
    spec = spec_file(retries=2, models=[1e5, 2e5, 3e5], samples=[64])
    fake_env.update(FAKE_FAIL="200000", FAKE_DIVERGE="300000")
    d = tmp_path / "d"
    r = _cli("sweep", "run", str(spec), "--dir", str(d), "--no-progress", env=fake_env)
    assert r.returncode == 1 and "1 failed" in r.stderr
    df = pd.read_csv(d / "results.csv", dtype={"size": str}).set_index("size")
    assert df.loc["200000.0", "state"] == "failed" and "fake failure" in df.loc["200000.0", "reason"]
    assert df.loc["200000.0", "attempts"] == 3
    assert df.loc["300000.0", "state"] == "diverged" and df.loc["100000.0", "state"] == "completed"
    assert sum(1 for ev, *_ in runs_of(d) if ev == "start") == 1 + 3 + 1
    out = tmp_path / "r.parquet"
    assert main(["sweep", "export", str(spec), "--dir", str(d), "--out", str(out)]) == 0
    assert len(pd.read_parquet(out)) == 3


def test_duplicate_enqueue_is_retired_on_claim(tmp_path):
    from sweeps.store import Queue

    q = Queue("dup", None, tmp_path)
    pt = {"run_key": "k1", "params": {"run_key": "k1"}, "attrs": {"config": {}}}
    assert q.enqueue([pt]) == 1 and q.enqueue([pt]) == 0
    # Force a duplicate past the lock (as a foreign client might) and check it is never run twice.
    q.study.enqueue_trial({"run_key": "k1", "x": 1}, user_attrs={"run_key": "k1", "config": {}})
    first = q.claim()
    assert first is not None and first.run_key == "k1"
    assert q.claim() is None  # the copy sees the running original and retires itself
    assert q.counts()["running"] == 1 and q.counts()["total"] == 1


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path, spec_file, fake_env, runs_of):
    from sweeps.launcher import launch_submitit
    from sweeps.sweep import Sweep

    sw = Sweep.open(spec_file(), tmp_path / "d")
    sw.enqueue()
    launch_submitit(sw, 2, local=True, progress=False)
    counts = sw.finalize()
    assert counts["completed"] == 4
    assert Counter(k for ev, k, *_ in runs_of(sw.dir) if ev == "finish").most_common(1)[0][1] == 1


@pytest.mark.slow
def test_lr_search_picks_best_lr_and_is_recorded(tmp_path, spec_file, fake_env):
    spec = spec_file(train={"batch_size": 16}, models=[1e5], samples=[64, 128],
                     lr_search={"trials": 5, "samples": 64, "low": 1e-4, "high": 1e-1})
    d = tmp_path / "d"
    r = _cli("sweep", "run", str(spec), "--dir", str(d), "--no-progress", env=fake_env, timeout=300)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(d / "results.csv")
    search = df[df["phase"] == "lr_search"]
    main_rows = df[df["phase"] == "main"]
    assert len(search) == 5 and len(main_rows) == 2
    best = search[search["state"] == "completed"].sort_values("val_loss").iloc[0]["lr"]
    assert main_rows["lr"].tolist() == pytest.approx([best] * 2)
    for key in search["run_key"]:  # each trial a point: its own run folder, a quiet log, its W&B job type
        env = json.loads((d / "runs" / key / "env.json").read_text())
        assert env["WANDB_SILENT"] == "true" and env["WANDB_JOB_TYPE"] == "lr_search"


@pytest.mark.parametrize("given, mode, silent", [
    ({}, "offline", "true"),
    ({"WANDB_SILENT": ""}, "offline", "true"),
    ({"WANDB_MODE": "online", "WANDB_SILENT": "false"}, "online", "false"),
])
def test_run_env_keeps_wandb_offline_and_quiet_unless_told(given, mode, silent, monkeypatch, tmp_path):
    """Every run of a worker (lr_search trials too) gets it: train.log has no W&B banners or colour codes."""
    from sweeps.runproc import run_env

    for key in ("WANDB_MODE", "WANDB_SILENT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in given.items():
        monkeypatch.setenv(key, value)
    env = run_env(tmp_path, group="s", job_type="lr_search")
    assert (env["WANDB_MODE"], env["WANDB_SILENT"]) == (mode, silent)
    assert (env["WANDB_RUN_GROUP"], env["WANDB_JOB_TYPE"], env["WANDB_DIR"]) == ("s", "lr_search", str(tmp_path))


@pytest.mark.slow
def test_wsd_cooldowns_wait_for_their_stable_phase(tmp_path, spec_file, fake_env, runs_of):
    spec = spec_file(models=[1e5], samples=[64, 128, 256], wsd={"cooldown_frac": 0.25})
    d = tmp_path / "d"
    r = _cli("sweep", "run", str(spec), "--dir", str(d), "--workers", "2", "--no-progress", env=fake_env)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(d / "results.csv")
    assert sorted(df["phase"]) == ["cooldown", "cooldown", "main"] and set(df["state"]) == {"completed"}
    order = [k for ev, k, *_ in runs_of(d) if ev == "start"]
    main_key = df.loc[df["phase"] == "main", "run_key"].item()
    assert order[0] == main_key  # the cooldowns branched only after the stable phase finished
    import yaml

    for key in df.loc[df["phase"] == "cooldown", "run_key"]:
        cfg = yaml.safe_load((d / "runs" / key / "run.yaml").read_text())
        schedule = cfg["schedule"]
        assert schedule["name"] == "wsd"
        assert schedule["branch_from"].startswith(str(d / "runs" / main_key / "checkpoints"))


def test_worker_in_process_records_results_and_failures(tmp_path, spec_file, fake_env, monkeypatch):
    from sweeps.sweep import Sweep
    from sweeps.worker import WorkerSettings, work

    monkeypatch.setenv("FAKE_FAIL", "200000")
    sw = Sweep.open(spec_file(models=[1e5, 2e5], samples=[64], retries=1), tmp_path / "d")
    assert sw.enqueue() == 2 and sw.enqueue() == 0  # idempotent
    ran = work(sw.queue, WorkerSettings(sweep_dir=sw.dir, data=sw.local_data(), sweep="t", retries=1))
    assert ran == 2
    counts = sw.finalize()
    assert counts == {"total": 2, "completed": 1, "running": 0, "waiting": 0, "failed": 1, "diverged": 0, "pruned": 0}
    df = sw.table().set_index("size")
    assert df.loc["100000.0", "val_loss"] > 0 and df.loc["100000.0", "d_model"] == 32
    assert df.loc["200000.0", "attempts"] == 2 and "fake failure" in df.loc["200000.0", "reason"]
    assert (sw.dir / "results.csv").is_file()


def test_dead_workers_point_goes_back_to_the_queue(tmp_path, fake_env):
    from sweeps.store import Queue

    q = Queue("dead", None, tmp_path)
    q.enqueue([{"run_key": "k1", "params": {"run_key": "k1"}, "attrs": {"config": {}}}])
    code = ("import sys, time; from pathlib import Path; from sweeps.store import Queue; "
            f"q = Queue('dead', None, Path({str(tmp_path)!r})); c = q.claim(); "
            "print(c.run_key, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=fake_env)
    assert proc.stdout.readline().strip() == "k1"
    assert q.counts()["running"] == 1
    proc.kill()  # kill -9 of the worker holding the point
    proc.wait()
    assert q.requeue_stale() == 1
    assert q.counts() == {"total": 1, "completed": 0, "running": 0, "waiting": 1, "failed": 0, "diverged": 0,
                          "pruned": 0}
    claim = q.claim()
    assert claim is not None and claim.run_key == "k1" and claim.attrs["config"] == {}
