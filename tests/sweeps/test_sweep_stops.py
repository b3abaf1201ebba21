"""How workers and the launcher end, without SLURM: a stopped worker hands its point back, a worker of
some sizes leaves when they are done, Ctrl-C still writes the table, bad flags exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from sweeps.cli import main
from tests.proc import run_group, wait_for

CLI = [sys.executable, "-m", "sweeps.cli"]


def test_a_worker_of_some_sizes_leaves_when_they_are_done(tmp_path, spec_file, fake_env):
    """Before, it polled while points of other sizes ran (on SLURM: an allocation held for nothing)."""
    from sweeps.sweep import Sweep
    from sweeps.worker import WorkerSettings, work

    sw = Sweep.open(spec_file(models=[1e5, 2e5], samples=[64]), tmp_path / "d")
    sw.enqueue()
    other = sw.queue.claim(ready=lambda a: str(a.get("size")) == "200000.0")  # held by a live worker (us)
    assert other is not None
    settings = WorkerSettings(sweep_dir=sw.dir, data=sw.local_data(), sweep="t", poll_s=0.2, sizes=("100000.0",))
    ran: list[int] = []
    t = threading.Thread(target=lambda: ran.append(work(sw.queue, settings)), daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the worker kept polling while only another size's point ran"
    assert ran == [1]
    states = {str(tr.user_attrs["size"]): st for st, tr in sw.queue.point_states().values()}
    assert states == {"100000.0": "completed", "200000.0": "running"}


def test_sigterm_stops_a_worker_and_hands_its_point_back(tmp_path, spec_file, fake_env, runs_of):
    from sweeps.sweep import Sweep

    sw = Sweep.open(spec_file(models=[1e5], samples=[64], retries=0), tmp_path / "d")
    sw.enqueue()
    env = {**fake_env, "FAKE_STEPS": "30", "FAKE_STEP_S": "0.5", "SCALING_STORAGE": str(sw.dir / "optuna.journal")}
    cmd = [*CLI, "sweep", "worker", "--study", sw.queue.name, "--dir", str(sw.dir)]
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = wait_for("the run to start", lambda: [ln for ln in runs_of(sw.dir) if ln[0] == "start"])[0]
    key, run_pid = start[1], int(start[2])
    ckpt = sw.dir / "runs" / key / "checkpoints" / "last.json"
    wait_for("a checkpoint", ckpt.is_file)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert not Path(f"/proc/{run_pid}").exists()  # its run ended with it
    counts = sw.queue.counts()
    # Back in the queue at once (no heartbeat to wait for), and not failed: retries=0 would have failed it.
    assert counts["waiting"] == 1 and counts["running"] == 0 and counts["failed"] == 0, counts
    # The next worker takes the run up at its checkpoint.
    env["FAKE_STEP_S"] = "0.01"
    r = run_group(cmd, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [ln[0] for ln in runs_of(sw.dir) if ln[1] == key] == ["start", "resume", "finish"]
    assert sw.queue.counts()["completed"] == 1


@pytest.mark.parametrize("sig, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_a_local_sweep_still_writes_the_table_and_says_how_to_go_on(tmp_path, spec_file, fake_env,
                                                                                 runs_of, sig, rc):
    spec = spec_file()
    d = tmp_path / "d"
    proc = subprocess.Popen([*CLI, "sweep", "run", str(spec), "--dir", str(d), "--workers", "2", "--no-progress"],
                            env={**fake_env, "FAKE_STEPS": "40", "FAKE_STEP_S": "0.5"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for("two runs to start", lambda: len([ln for ln in runs_of(d) if ln[0] == "start"]) >= 2, timeout=120)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == rc, err
    assert f"interrupted by {signal.Signals(sig).name}: stopped the workers" in err
    assert f"continue with: scaling sweep run {spec} --dir {d.resolve()} --workers 2" in err
    df = pd.read_csv(d / "results.csv")
    assert len(df) == 4 and set(df["state"]) == {"waiting"}, df["state"]  # handed back, none lost, none failed


@pytest.mark.parametrize("flags, says", [
    (["--on-interrupt", "leave"], "--on-interrupt leave: needs --launcher slurm"),
    (["--max-requeues", "2"], "--max-requeues: SLURM resources need --launcher slurm"),
    (["--on-interrupt", "sometimes"], "invalid choice"),
])
def test_slurm_only_flags_are_refused_for_a_local_sweep(tmp_path, spec_file, capsys, flags, says):
    d = tmp_path / "d"
    try:
        rc = main(["sweep", "run", str(spec_file()), "--dir", str(d), *flags])
    except SystemExit as exc:  # argparse's own refusal
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert not d.exists()


def test_a_negative_requeue_limit_is_refused(tmp_path, spec_file, capsys):
    d = tmp_path / "d"
    assert main(["sweep", "run", str(spec_file()), "--dir", str(d), "--launcher", "slurm", "--max-requeues", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--max-requeues -1: must be >= 0" in err and not d.exists()


@pytest.mark.parametrize("env, says", [({"SWEEP_GRACE_S": "soon"}, "SWEEP_GRACE_S='soon'"),
                                       ({"SWEEP_HEARTBEAT_S": "20", "SWEEP_GRACE_S": "15"}, "must exceed")])
def test_bad_heartbeat_settings_exit_2(tmp_path, spec_file, fake_env, env, says):
    r = run_group([*CLI, "sweep", "status", str(spec_file()), "--dir", str(tmp_path / "d")],
                  env={**fake_env, **env}, timeout=60)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_failed_tasks_are_reported_by_name_not_raised(tmp_path, spec_file, fake_env):
    """submitit's local executor: a task whose worker raises ends FAILED; the launcher names it and returns."""
    from sweeps.launcher import launch_submitit
    from sweeps.sweep import Sweep

    sw = Sweep.open(spec_file(models=[1e5], samples=[64]), tmp_path / "d")
    sw.enqueue()
    (sw.dir / "sweep.json").unlink()  # the worker refuses to start without it: BadInput inside the task
    report = launch_submitit(sw, 1, local=True, progress=False)
    assert len(report.problems) == 1 and "FAILED" in report.problems[0] and "no sweep.json" in report.problems[0], \
        report.problems
    assert sw.finalize()["waiting"] == 1 and (sw.dir / "results.csv").is_file()
