"""PostgreSQL faults, for real (the `pg` fixture): a machine killed mid-run, the server restarted
mid-sweep, wrong credentials and hosts that do not answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.proc import finish, run_group, wait_for

from pg_cluster import PASSWORD

CLI = [sys.executable, "-m", "sweeps.cli"]
# Heartbeats every 2 s, presumed dead after 15 s without one: short for the test, long enough that a
# worker starved by a loaded machine is not taken for dead.
FAST_HEARTBEAT = {"SWEEP_HEARTBEAT_S": "2", "SWEEP_GRACE_S": "15"}


def _machine(spec: Path, d: Path, url: str, env: dict) -> subprocess.Popen:
    """One "machine": a `sweep run` with its own folder (no shared disk) on the shared database."""
    return subprocess.Popen([*CLI, "sweep", "run", str(spec), "--dir", str(d), "--storage", url, "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _trials(url: str, spec: Path, d: Path) -> list:
    """Every trial of the sweep's study, read from the database."""
    from sweeps.sweep import Sweep

    return Sweep.open(spec, d, url).existing_queue().trials()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_a_machine_killed_mid_run_is_requeued_by_heartbeat_and_finished_once(tmp_path, spec_file, fake_env, runs_of,
                                                                             pg):
    spec = spec_file(models=[1e5, 2e5], samples=[64, 128, 256])  # 6 points
    env = {**fake_env, **FAST_HEARTBEAT, "FAKE_STEPS": "6", "FAKE_STEP_S": "0.5"}
    a, b = tmp_path / "a", tmp_path / "b"
    ma = _machine(spec, a, pg.url(), env)
    start = wait_for("a run on machine a", lambda: [ln for ln in runs_of(a) if ln[0] == "start"])[0]
    killed = start[1]
    ckpt = a / "runs" / killed / "checkpoints" / "last.json"
    wait_for("its first checkpoint", ckpt.is_file)
    mb = _machine(spec, b, pg.url(), env)
    os.killpg(ma.pid, signal.SIGKILL)  # the machine: launcher, worker and run, with no chance to say so
    ma.communicate()
    rc, err = finish(mb, timeout=300)
    assert rc == 0, err
    finishes = Counter(k for d in (a, b) for ev, k, *_ in runs_of(d) if ev == "finish")
    assert len(finishes) == 6 and set(finishes.values()) == {1}, finishes
    assert ("finish", killed) not in {(ln[0], ln[1]) for ln in runs_of(a)}
    # Requeued by the heartbeat: the dead machine's trial failed as stale, its copy completed.
    states = sorted(t.state.name for t in _trials(pg.url(), spec, b) if t.user_attrs.get("run_key") == killed)
    assert states == ["COMPLETE", "FAIL"], states


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_a_server_restart_mid_sweep_loses_and_doubles_nothing(tmp_path, spec_file, fake_env, runs_of, pg):
    spec = spec_file(models=[1e5, 2e5], samples=[64, 128, 256])  # 6 points
    env = {**fake_env, **FAST_HEARTBEAT, "SWEEP_HEARTBEAT_S": "1", "FAKE_STEPS": "8", "FAKE_STEP_S": "0.5"}
    dirs = [tmp_path / "a", tmp_path / "b"]
    procs = [_machine(spec, d, pg.url(), env) for d in dirs]
    wait_for("runs on both machines", lambda: all(any(ln[0] == "start" for ln in runs_of(d)) for d in dirs))
    pg.restart(downtime_s=3)  # every session ends; heartbeats and polls meet a server that is down
    ends = [finish(p, timeout=300) for p in procs]
    assert [rc for rc, _ in ends] == [0, 0], ends
    finishes = Counter(k for d in dirs for ev, k, *_ in runs_of(d) if ev == "finish")
    assert len(finishes) == 6 and set(finishes.values()) == {1}, finishes
    # Nothing re-queued, nothing retried: exactly one trial per point, each completed at its first attempt.
    trials = _trials(pg.url(), spec, dirs[0])
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 6
    assert {t.user_attrs.get("attempts") for t in trials} == {1}
    # The workers did meet the outage, said so once, and never showed the password.
    logs = "".join(p.read_text() for d in dirs for p in (d / "logs").glob("*.log")) + "".join(e for _, e in ends)
    assert "lost the database" in logs and "sweep:***@" in logs and PASSWORD not in logs


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["flag", "environment"])
def test_a_wrong_password_exits_2_with_the_password_masked(tmp_path, spec_file, fake_env, pg, where):
    wrong = "not-the-" + PASSWORD
    url = pg.url(password=wrong)
    d = tmp_path / "d"
    args = [*CLI, "sweep", "run", str(spec_file()), "--dir", str(d), "--no-progress"]
    r = run_group(args + (["--storage", url] if where == "flag" else []),
                  env={**fake_env, **({"SCALING_STORAGE": url} if where == "environment" else {})}, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "password authentication failed" in lines[0] and "sweep:***@" in lines[0], r.stderr
    assert wrong not in r.stderr + r.stdout
    assert not d.exists()


def test_a_host_that_cannot_be_reached_exits_2_with_the_password_masked(tmp_path, spec_file, fake_env):
    pytest.importorskip("psycopg2")
    # A listener that never answers: the server a dead or firewalled host looks like. Refused in the
    # connect timeout (10 s), not after the system's minutes-long TCP timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    d = tmp_path / "d"
    try:
        for host, says in ((f"127.0.0.1:{silent.getsockname()[1]}", "timeout expired"),
                           ("nosuchhost.invalid", "could not translate host name")):
            t0 = time.time()
            r = run_group([*CLI, "sweep", "run", str(spec_file()), "--dir", str(d), "--no-progress", "--storage",
                           f"postgresql://sweep:{PASSWORD}@{host}/sweeps"], env=fake_env, timeout=120)
            assert r.returncode == 2 and says in r.stderr and "sweep:***@" in r.stderr, r.stderr
            assert PASSWORD not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert time.time() - t0 < 60
            assert not d.exists()
    finally:
        silent.close()
