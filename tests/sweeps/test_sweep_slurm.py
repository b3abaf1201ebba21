"""Sweeps through a real single-node SLURM cluster (the `slurm` fixture) with the fake trainer: arrays as
asked, requeue, a killed task, refused submissions, the launcher's own end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tests.proc import finish, run_group, wait_for

CLI = [sys.executable, "-m", "sweeps.cli"]


def _run(spec: Path, d: Path, env: dict, *flags: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_group([*CLI, "sweep", "run", str(spec), "--dir", str(d), "--launcher", "slurm", "--no-progress",
                      *flags], env=env, timeout=timeout)


def _start(spec: Path, d: Path, env: dict, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "sweep", "run", str(spec), "--dir", str(d), "--launcher", "slurm", "--no-progress",
                             *flags], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _started(d: Path, runs_of) -> list[list[str]]:
    return [ln for ln in runs_of(d) if ln[0] == "start"]


def _submitted(err: str) -> dict[str, str]:
    """job name -> array job id, from the launcher's 'submitted job N: array NAME' lines."""
    return {m.group(2): m.group(1) for m in re.finditer(r"submitted job (\d+): array '([^']+)'", err)}


def _table_complete(d: Path, n: int) -> pd.DataFrame:
    df = pd.read_csv(d / "results.csv")
    assert len(df) == n and df["run_key"].is_unique and set(df["state"]) == {"completed"}, df[["run_key", "state"]]
    return df


def _finished_once(d: Path, runs_of, n: int) -> None:
    finishes = Counter(k for ev, k, *_ in runs_of(d) if ev == "finish")
    assert len(finishes) == n and set(finishes.values()) == {1}, finishes


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_per_size_arrays_get_the_resources_asked_and_finish_the_sweep(tmp_path, spec_file, fake_env, runs_of, slurm):
    spec = spec_file(models=[1e5, 2e5], samples=[64, 128, 256], slurm={
        "time_min": 30, "mem_gb": 1, "per_size": {"2e5": {"time_min": 45, "mem_gb": 2, "cpus_per_task": 1}}})
    d = tmp_path / "d"
    r = _run(spec, d, {**fake_env, **slurm.env}, "--max-requeues", "2")
    assert r.returncode == 0, r.stderr + slurm.logs()
    _table_complete(d, 6)
    _finished_once(d, runs_of, 6)
    assert (d / "fit.json").is_file() and (d / "report.html").is_file()
    # One array per resource group, named after the sweep (and its sizes), the requeue limit said.
    arrays = _submitted(r.stderr)
    assert set(arrays) == {"t:100000.0", "t:200000.0"}, r.stderr
    assert "requeued at most 2 time(s)" in r.stderr
    # Asked vs granted: SLURM's own record of each task.
    for name, (limit, mem) in {"t:100000.0": ("00:30:00", "1G"), "t:200000.0": ("00:45:00", "2G")}.items():
        job = slurm.job(arrays[name])  # one task: submitit submits a plain job, not an array
        assert job.get("JobName") == name and job["JobState"] == "COMPLETED", job
        assert job["TimeLimit"] == limit and f"mem={mem}" in job["TRES"] and "cpu=1" in job["TRES"], job


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_lr_search_trials_run_in_the_array_tasks(tmp_path, spec_file, fake_env, runs_of, slurm):
    """The trials are points like any other: each size's array runs its trials and then the runs its search
    enqueues when it ends; the launching process runs none."""
    from sweeps.sweep import Sweep

    spec = spec_file(models=[1e5, 2e5], samples=[64, 128], train={"batch_size": 16},
                     lr_search={"trials": 4, "samples": 64, "low": 1e-4, "high": 1e-1},
                     slurm={"time_min": 30, "per_size": {"2e5": {"time_min": 45}}})
    d = tmp_path / "d"
    proc = _start(spec, d, {**fake_env, **slurm.env})
    rc, err = finish(proc, timeout=300)
    assert rc == 0, err + slurm.logs()
    assert set(_submitted(err)) == {"t:100000.0", "t:200000.0"}, err
    df = _table_complete(d, 12)
    assert Counter(df["phase"]) == {"lr_search": 8, "main": 4}
    _finished_once(d, runs_of, 12)
    states = Sweep.open(spec, d).existing_queue().point_states()
    assert proc.pid not in {t.user_attrs["worker"]["pid"] for _, t in states.values()}


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_scontrol_requeue_mid_run_resumes_from_the_checkpoint(tmp_path, spec_file, fake_env, runs_of, slurm):
    spec = spec_file(models=[1e5], samples=[64, 128])
    d = tmp_path / "d"
    proc = _start(spec, d, {**fake_env, **slurm.env, "FAKE_STEPS": "8", "FAKE_STEP_S": "1"})
    first = wait_for("a run to start", lambda: _started(d, runs_of))[0][1]
    ckpt = d / "runs" / first / "checkpoints" / "last.json"
    wait_for("its first checkpoint", lambda: ckpt.is_file() and json.loads(ckpt.read_text())["step"] >= 2)
    task = wait_for("the job in squeue", slurm.jobs)[0]  # one task: a plain job
    slurm.run("scontrol", "requeue", task)
    # SLURM holds a requeued batch job back until the old job's credential expires (the test cluster sets
    # cred_expire=10 s; 120 s by default): forced to start sooner, it is refused ("Job credential revoked").
    wait_for("the task to be pending again", lambda: slurm.job(task).get("JobState") == "PENDING", timeout=60)
    rc, err = finish(proc, timeout=240)
    assert rc == 0, err + slurm.logs()
    assert slurm.job(task)["Restarts"] == "1"
    df = _table_complete(d, 2)
    _finished_once(d, runs_of, 2)
    resumed = [int(ln[3]) for ln in runs_of(d) if ln[0] == "resume" and ln[1] == first]
    assert resumed and resumed[0] >= 2, runs_of(d)  # the requeued task took up the run at its checkpoint
    # The stop was not a failed attempt: no retry was spent on it.
    assert df.set_index("run_key").loc[first, "attempts"] == 1


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_task_whose_worker_is_killed_still_ends_with_the_full_table(tmp_path, spec_file, fake_env, runs_of, slurm):
    spec = spec_file(models=[1e5, 2e5], samples=[64, 128, 256])
    d = tmp_path / "d"
    proc = _start(spec, d, {**fake_env, **slurm.env, "FAKE_STEPS": "6", "FAKE_STEP_S": "0.5"}, "--workers", "2")
    wait_for("both tasks running", lambda: len([t for t in slurm.jobs()
                                                 if slurm.job(t).get("JobState") == "RUNNING"]) == 2)
    run_pid = int(wait_for("a run to start", lambda: _started(d, runs_of))[0][2])
    worker = int(Path(f"/proc/{run_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # the run's parent
    os.kill(worker, signal.SIGKILL)
    rc, err = finish(proc, timeout=240)
    assert rc == 0, err + slurm.logs()  # every point finished: the failed task is reported, not fatal
    failed = re.findall(r"job (\d+_\d) of array 't' \(2 task\(s\)[^)]*\) FAILED", err)
    assert len(failed) == 1, err
    assert slurm.job(failed[0])["JobState"] == "FAILED"
    _table_complete(d, 6)
    _finished_once(d, runs_of, 6)
    assert (d / "fit.json").is_file() and (d / "report.html").is_file()


@pytest.mark.slurm
@pytest.mark.parametrize("flags, slurm_block, says", [
    (["--partition", "nosuchpart"], None, "invalid partition"),
    ([], {"per_size": {"2e5": {"mem_gb": 100000}}}, "Requested node configuration is not available"),
])
def test_a_refused_submission_exits_2_and_writes_nothing(tmp_path, spec_file, fake_env, slurm, flags, slurm_block,
                                                        says):
    spec = spec_file(**({"slurm": slurm_block} if slurm_block else {}))
    d = tmp_path / "d"
    r = _run(spec, d, {**fake_env, **slurm.env}, *flags, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not d.exists()  # no data, journal, sweep.json or slurm/ folder
    assert slurm.jobs() == []


@pytest.mark.slurm
def test_a_later_array_refused_cancels_the_ones_before_it_unstarted(tmp_path, spec_file, fake_env, runs_of, slurm):
    from sweeps.launcher import launch_submitit
    from sweeps.sweep import Sweep
    from vla_core.errors import BadInput

    # The launcher's own guard, below the --test-only check: a refusal at submission itself.
    sw = Sweep.open(spec_file(slurm={"per_size": {"2e5": {"partition": "nosuchpart"}}}), tmp_path / "d")
    sw.enqueue()
    with pytest.raises(BadInput) as exc:
        launch_submitit(sw, 1, progress=False)
    msg = str(exc.value)
    first = re.search(r"cancelled job\(s\) (\d+) submitted before it", msg)
    assert "t:200000.0" in msg and "invalid partition" in msg.lower() and first, msg
    assert slurm.jobs() == []
    assert slurm.job(first.group(1)).get("JobState") == "CANCELLED", slurm.job(first.group(1))
    assert runs_of(sw.dir) == []  # it was held: nothing ran


@pytest.mark.slurm
@pytest.mark.timeout(400)
def test_ctrl_c_cancels_the_arrays_and_still_writes_the_table(tmp_path, spec_file, fake_env, runs_of, slurm):
    spec = spec_file()
    d = tmp_path / "d"
    env = {**fake_env, **slurm.env, "FAKE_STEPS": "20", "FAKE_STEP_S": "1"}
    proc = _start(spec, d, env)
    wait_for("a run to start", lambda: _started(d, runs_of))
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc, timeout=120)
    assert rc == 130, err
    assert re.search(r"interrupted by SIGINT: cancelled job\(s\) \d+", err), err
    assert "continue with: scaling sweep run" in err
    assert slurm.jobs() == []
    assert (d / "results.csv").is_file()
    st = run_group([*CLI, "sweep", "status", str(spec), "--dir", str(d), "--json"], env=env, timeout=60)
    counts = json.loads(st.stdout)
    assert counts["running"] == 0 and counts["waiting"] == 4 and counts["failed"] == 0, counts  # handed back


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigterm_with_on_interrupt_leave_leaves_the_arrays_to_finish(tmp_path, spec_file, fake_env, runs_of, slurm):
    spec = spec_file()
    d = tmp_path / "d"
    env = {**fake_env, **slurm.env, "FAKE_STEPS": "4", "FAKE_STEP_S": "1"}
    proc = _start(spec, d, env, "--on-interrupt", "leave")
    wait_for("a run to start", lambda: _started(d, runs_of))
    proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc, timeout=120)
    assert rc == 143, err
    job = re.search(r"interrupted by SIGTERM: left job\(s\) (\d+) running", err)
    assert job and f"once job(s) {job.group(1)} end, write the fit with: scaling sweep run" in err, err
    assert slurm.jobs(), "the array was cancelled"
    wait_for("the array to finish the sweep", lambda: not slurm.jobs(), timeout=200, every=1)
    assert slurm.job(job.group(1))["JobState"] == "COMPLETED"
    _finished_once(d, runs_of, 4)


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_reaching_the_requeue_limit_is_reported(tmp_path, spec_file, fake_env, runs_of, slurm):
    # A one-minute limit: submitit's USR2 comes 90 s before it, i.e. at once, and counts as a timeout.
    # The limit comes from the spec (--max-requeues overrides it: test_auto_precision.py).
    spec = spec_file(models=[1e5], samples=[64], slurm={"max_requeues": 0})
    d = tmp_path / "d"
    env = {**fake_env, **slurm.env, "FAKE_STEPS": "100", "FAKE_STEP_S": "1"}
    r = _run(spec, d, env, "--time-min", "1", timeout=300)
    assert r.returncode == 1, r.stderr
    assert "requeued at most 0 time(s)" in r.stderr, r.stderr
    # FAILED, or TIMEOUT where submitit's refusal to requeue was lost to a signal race and SLURM ended the task.
    assert re.search(r"job \d+ of array 't'.*(FAILED|TIMEOUT): the requeue limit was reached: timed out 1 time\(s\), "
                     r"requeued 0 \(the spec's slurm.max_requeues", r.stderr), r.stderr
    assert "1 not finished" in r.stderr and "continue with: scaling sweep run" in r.stderr
    assert pd.read_csv(d / "results.csv")["state"].tolist() == ["waiting"]


def test_sbatch_check_asks_for_what_submitit_submits(tmp_path):
    """The --test-only flags are those of the job file submitit writes (one table of names, kept honest)."""
    pytest.importorskip("submitit")
    from sweeps.launcher import submitit_parameters
    from sweeps.slurm_jobs import sbatch_args

    params = submitit_parameters({"partition": "gpu", "account": "lab", "qos": "high", "constraint": "a100",
                                  "time_min": 90, "mem_gb": 12, "gpus_per_node": 2, "cpus_per_task": 8}, workers=3)
    params["name"] = "t:1e5"
    ours = sbatch_args(params, 3)
    from submitit.slurm import slurm as submitit_slurm

    script = submitit_slurm._make_sbatch_string(
        command="true", folder=tmp_path, map_count=3, job_name="t:1e5", partition="gpu", account="lab", qos="high",
        constraint="a100", time=90, mem=submitit_slurm._convert_mem(12), gpus_per_node=2, cpus_per_task=8, nodes=1,
        ntasks_per_node=1)
    theirs = {ln.split()[1].split("=")[0]: ln.split("=", 1)[1].strip("'") for ln in script.splitlines()
              if ln.startswith("#SBATCH --") and "=" in ln}
    for flag in ours:
        key, value = flag.split("=", 1)
        if key == "--array":
            assert theirs["--array"].startswith(value)
        else:
            assert theirs[key] == value, (flag, theirs.get(key))
