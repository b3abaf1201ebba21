"""kill -9 of the whole sweep (launcher, workers, runs) at random moments, then resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_whole_sweep_then_resume(tmp_path, spec_file, fake_env, runs_of, replay_seed):
    spec = spec_file(seeds=[0, 1, 2])  # 12 points
    d = tmp_path / "d"
    fake_env.update(FAKE_STEPS="10", FAKE_STEP_S="0.3")  # 3 s per run: kills land mid-run
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", "run", str(spec), "--dir", str(d), "--workers", "3",
           "--no-progress"]
    rng = random.Random(replay_seed)  # the kill moments; printed, TEST_SEED replays them
    snapshots = []
    for _ in range(2):
        # Its own process group, so killpg takes the launcher, every worker and every run at once.
        proc = subprocess.Popen(cmd, env=fake_env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # A random moment while runs are in flight: after a new checkpoint appears, plus a random delay.
        seen = set((d / "runs").glob("*/checkpoints/last.json")) if (d / "runs").exists() else set()
        deadline = time.time() + 120
        while time.time() < deadline and not (set((d / "runs").glob("*/checkpoints/last.json")) - seen):
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 2.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.3)
        exp = tmp_path / f"snap{len(snapshots)}.csv"
        r = subprocess.run([*cmd[:4], "export", str(spec), "--dir", str(d), "--out", str(exp)], env=fake_env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        snapshots.append(pd.read_csv(exp))
    assert (snapshots[0]["state"] != "completed").any() or len(snapshots[0]) < 12  # killed mid-sweep
    r = subprocess.run(cmd, env=fake_env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr
    final = pd.read_csv(d / "results.csv").set_index("run_key")
    assert len(final) == 12 and set(final["state"]) == {"completed"}
    # Every point trained to the end exactly once (killed runs resume, they do not restart).
    finishes = Counter(k for ev, k, *_ in runs_of(d) if ev == "finish")
    assert len(finishes) == 12 and max(finishes.values()) == 1, finishes
    # Progress is never lost: once a point has checkpointed (a resume) or finished, it never starts from 0.
    # (A run killed before its first checkpoint legitimately starts again from step 0.)
    progressed: set[str] = set()
    for ev, key, *_ in runs_of(d):
        assert not (ev == "start" and key in progressed), f"{key} restarted from scratch after progress"
        if ev in ("resume", "finish"):
            progressed.add(key)
    assert any(ev == "resume" for ev, *_ in runs_of(d))  # some killed run did resume from its checkpoint
    # Rows finished before a kill are unchanged.
    for snap in snapshots:
        done = snap[snap["state"] == "completed"].set_index("run_key")
        for key, row in done.iterrows():
            assert row["val_loss"] == pytest.approx(final.loc[key, "val_loss"])
            assert row["run_id"] == final.loc[key, "run_id"]
