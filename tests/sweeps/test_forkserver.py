"""The warm fork server: a run is a forked child with its own log, env, argv and exit status, and the
kill chain holds (worker -> server -> run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sweeps.forkserver import ForkServer

REPO = Path(__file__).resolve().parents[2]
T = "tests.sweeps.forkserver_targets"


@pytest.fixture
def server():
    s = ForkServer(preload=("torch",), cwd=str(REPO)).start()
    yield s
    s.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_run_gets_its_argv_env_cwd_log_and_exit_status(server, tmp_path):
    log = tmp_path / "run.log"
    run = server.run(["3", "x"], log, env={**os.environ, "FS_TEST": "hello"}, cwd=str(tmp_path), entry=f"{T}:echo")
    assert run.pid != server.proc.pid
    assert run.wait(timeout=60) == 3
    text = log.read_text()
    assert "argv ['3', 'x']" in text and f"cwd {tmp_path}" in text and "env hello" in text
    assert "torch True" in text  # imported once, in the server, before the fork
    assert "to stderr" in text
    # The same server starts the next run: exceptions become exit 1 with the traceback in the log.
    assert server.run(["y"], log, entry=f"{T}:crash").wait(timeout=60) == 1
    assert "RuntimeError: boom y" in log.read_text()


def test_a_run_relaunches_like_python_dash_m_its_entry_module(server, tmp_path):
    # Lightning's DDP launcher starts the other ranks from __main__.__spec__ and sys.argv.
    log = tmp_path / "log"
    assert server.run(["train", "--config", "x.yaml"], log, entry=f"{T}:relaunch").wait(timeout=60) == 0
    assert f"'-m', '{T}', 'train', '--config', 'x.yaml']" in log.read_text()


def test_a_run_gets_the_thread_count_of_its_own_environment(server, tmp_path):
    # torch read OMP_NUM_THREADS when the server imported it; the run's environment decides instead.
    log = tmp_path / "log"
    for n in ("1", "2"):
        assert server.run([], log, env={**os.environ, "OMP_NUM_THREADS": n}, entry=f"{T}:threads").wait(timeout=60) == 0
    assert [ln.split()[1] for ln in log.read_text().splitlines() if ln.startswith("threads")] == ["1", "2"]


def test_wait_times_out_like_popen(server, tmp_path):
    run = server.run([str(tmp_path / "pid"), "1"], tmp_path / "log", entry=f"{T}:sleep")
    with pytest.raises(subprocess.TimeoutExpired):
        run.wait(timeout=0.05)
    assert run.wait(timeout=60) == 0


def test_killed_run_reports_the_signal(server, tmp_path):
    pidfile = tmp_path / "pid"
    run = server.run([str(pidfile), "60"], tmp_path / "log", entry=f"{T}:sleep")
    while not pidfile.exists() or not pidfile.read_text():
        time.sleep(0.01)
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(timeout=30) == -signal.SIGKILL
    assert server.run(["0"], tmp_path / "log", entry=f"{T}:echo").wait(timeout=60) == 0  # server lives on


def test_kill_9_of_the_worker_kills_server_and_run(tmp_path):
    pidfile = tmp_path / "pid"
    worker = textwrap.dedent(f"""
        import sys, time
        from sweeps.forkserver import ForkServer
        s = ForkServer(preload=(), cwd={str(REPO)!r}).start()
        print(s.proc.pid, flush=True)
        s.run([{str(pidfile)!r}, "120"], {str(tmp_path / 'log')!r}, entry="{T}:sleep")
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", worker], cwd=REPO, stdout=subprocess.PIPE, text=True)
    server_pid = int(proc.stdout.readline())
    deadline = time.time() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.01)
    run_pid = int(pidfile.read_text())
    assert _alive(server_pid) and _alive(run_pid)
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while (_alive(server_pid) or _alive(run_pid)) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(server_pid) and not _alive(run_pid)


def test_worker_uses_the_fork_server_unless_told_not_to(monkeypatch):
    from sweeps import forkserver, worker

    class Dummy:
        def start(self):
            return self

    monkeypatch.setattr(worker, "_SERVER", None)
    monkeypatch.setattr(forkserver, "ForkServer", Dummy)
    monkeypatch.delenv("SWEEP_RUN_COMMAND", raising=False)
    monkeypatch.delenv("SWEEP_FORKSERVER", raising=False)
    assert worker._fork_server() is None  # a worker started by hand (SLURM) opts in
    monkeypatch.setenv("SWEEP_FORKSERVER", "1")
    assert isinstance(worker._fork_server(), Dummy)
    monkeypatch.setenv("SWEEP_RUN_COMMAND", "python fake.py")  # the tests' stand-in trainer runs as a process
    assert worker._fork_server() is None


def test_local_sweeps_use_the_fork_server_by_default_and_zero_turns_it_off(tmp_path):
    from types import SimpleNamespace

    from sweeps.launcher import local_worker_env

    sweep = SimpleNamespace(storage=None, dir=tmp_path)
    assert local_worker_env(sweep, base={})["SWEEP_FORKSERVER"] == "1"
    assert local_worker_env(sweep, base={"SWEEP_FORKSERVER": "0"})["SWEEP_FORKSERVER"] == "0"
    assert local_worker_env(sweep, "2,3", base={})["CUDA_VISIBLE_DEVICES"] == "2,3"
