"""A warm run starter: one process per worker imports torch and Lightning once, then forks a clean child
per run, so a run's start-up is a fork instead of seconds of imports.

    worker ──pipe──► fork server (python -m sweeps.forkserver: imports PRELOAD, never runs a tensor op)
                         └── fork ──► run (its own process: the run's log as stdout/stderr, the run's
                                      environment and argv; ``scaling train --config RUN.yaml`` in-process)

What stays as it was with one ``subprocess`` per run: one OS process per run (its own memory, threads
and W&B run), its exit status, and the kill chain: the server dies with its worker and a run dies with
its server (``PR_SET_PDEATHSIG``), so kill -9 of a worker kills its run, and a run killed by itself
is a failed attempt that the worker retries (resuming from the run's checkpoints).

Why the server never runs tensor ops: forking a process whose OpenMP or CUDA runtime has started is
unsafe, and importing does not start them. Why a separate server, not a fork of the worker itself:
the worker holds the queue's storage (open files, a PostgreSQL connection) that a child must not share.

Protocol (one JSON object per line): the server says {"ready"} once its imports are done; then per run
the worker sends {"argv", "log", "env", "cwd", "entry"} and the server answers {"pid"} when the run
has started and {"rc"} when it has ended (negative: killed by that signal, as `subprocess` reports it).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback

PRELOAD = (
    # Any `lightning.*` import runs lightning/__init__.py, which imports Fabric (torch._dynamo through
    # lightning.fabric.wrappers; torchmetrics, with scipy.signal and matplotlib, through the version
    # checks of lightning.fabric.utilities.imports) and lightning.pytorch: ~2 s that a run cannot avoid.
    "torch", "lightning",
    # What `scaling train` imports between its fork and its end (measured: `sys.modules` of a run's
    # child minus the server's; tests/sweeps/test_run_imports.py keeps it so); pandas and pyarrow read
    # the dataset's episodes.parquet, torch.distributed.checkpoint writes the run's checkpoints.
    "pandas", "pyarrow.parquet", "pyarrow.dataset", "pyarrow.pandas_compat",
    "torch.distributed.checkpoint.state_dict", "torch.utils.serialization",
    "sweeps.cli", "scaling.data.cli", "scaling.train_cli", "scaling.hardware_cli", "sweeps.sweep_cli", "analysis.cli",
    "scaling.train",
    "scaling.trainer", "scaling.checkpointing", "scaling.datamodule", "scaling.metrics_csv", "scaling.model.vla",
    "scaling.model.mup", "scaling.model.family", "scaling.model.vla_family", "scaling.model.measure",
    "scaling.data", "scaling.data.dataset", "scaling.data.mixture", "scaling.data.stats", "scaling.data.blind",
    "scaling.evaluation", "scaling.probe", "scaling.schedules", "scaling.hardware", "scaling.versions",
    "scaling.ensemble",
)
"""Modules the server imports before the first run (missing ones are skipped)."""
ENTRY = "sweeps.cli:main"
"""What a run calls: ``module:function`` taking the argv list and returning the exit status."""
DISABLE_ENV = "SWEEP_FORKSERVER"
"""1: start runs through the fork server; otherwise each run is a fresh ``python -m sweeps.cli train``.
Local sweeps set it to 1 unless it is set (`sweeps.launcher.local_worker_env`); SLURM workers opt in."""


def die_with_parent() -> None:
    """Linux prctl(PR_SET_PDEATHSIG, SIGKILL): this process is killed when its parent dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def enabled() -> bool:
    """Whether runs go through a fork server (Linux, with ``SWEEP_FORKSERVER=1``)."""
    return sys.platform.startswith("linux") and os.environ.get(DISABLE_ENV, "0") in ("1", "true", "yes")


class ForkServerDied(RuntimeError):
    """The server ended while a run was starting or running."""


class Run:
    """A run started by the server; `wait` has `subprocess.Popen.wait`'s contract."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server, self.pid, self.returncode = server, pid, None

    def wait(self, timeout: float | None = None) -> int:
        """The run's exit status; raises `subprocess.TimeoutExpired` after `timeout` seconds."""
        if self.returncode is None:
            msg = self.server._read(timeout)
            if msg is None:
                raise subprocess.TimeoutExpired(f"run {self.pid}", timeout)
            self.returncode = int(msg["rc"])
        return self.returncode


class ForkServer:
    """The worker's side: starts the server process and asks it for runs, one at a time.

    Args:
        preload: modules the server imports before its first run.
        cwd: working directory of the server (the runs' default).
    """

    def __init__(self, preload: tuple[str, ...] = PRELOAD, cwd: str | None = None) -> None:
        self.preload = tuple(preload)
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self._buf = b""
        self._ready = False

    def start(self) -> ForkServer:
        """Start the server (its imports run in the background while the worker claims a point)."""
        if self.proc is None or self.proc.poll() is not None:
            cmd = [sys.executable, "-m", "sweeps.forkserver", *self.preload]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=self.cwd,
                                         preexec_fn=die_with_parent)
            self._buf, self._ready = b"", False
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the server has imported its modules; False after `timeout` seconds."""
        self.start()
        if not self._ready:
            msg = self._read(timeout)
            if msg is None:
                return False
            self._ready = "ready" in msg or self._ready
        return self._ready

    def run(self, argv: list[str], log: str | os.PathLike, env: dict | None = None, cwd: str | None = None,
            entry: str = ENTRY) -> Run:
        """Start one run: `entry(argv)` in a fresh child with stdout/stderr appended to `log`."""
        self.wait_ready()
        req = {"argv": [str(a) for a in argv], "log": str(log), "env": dict(os.environ if env is None else env),
               "cwd": cwd or os.getcwd(), "entry": entry}
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ForkServerDied(f"fork server exited with status {self.proc.poll()}") from exc
        return Run(self, int(self._read(None)["pid"]))

    def _read(self, timeout: float | None) -> dict | None:
        """The server's next message, or None after `timeout` seconds without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait()
                raise ForkServerDied(f"fork server exited with status {self.proc.returncode}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        """Stop the server (closing its input ends it; a run in progress dies with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---- the server process ----------------------------------------------------------------------------
def _child(req: dict, server_pid: int, protocol_fd: int) -> None:
    """In the forked child: become the run, then exit with its status (never returns)."""
    rc = 1
    try:
        die_with_parent()
        if os.getppid() != server_pid:  # the server died before prctl took effect
            os._exit(128 + signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.close(protocol_fd)  # only the run's own descriptors stay open (imports may hold others)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        _match_threads()
        module, _, func = req["entry"].partition(":")
        # Look like `python -m <module> ARGV`: Lightning's DDP launcher relaunches the script from
        # __main__.__spec__ and sys.argv, so a CPU DDP run started here spawns its other ranks as
        # `python -m sweeps.cli train --config ...`, as it would without the server.
        import __main__

        spec = importlib.util.find_spec(module)
        __main__.__spec__ = spec
        sys.argv = [spec.origin or module, *req["argv"]]
        rc = getattr(importlib.import_module(module), func)(list(req["argv"]))
        rc = 0 if rc is None else int(rc)
    except SystemExit as exc:
        code = exc.code
        rc = code if isinstance(code, int) else (0 if code is None else 1)
        if isinstance(code, str):
            sys.stderr.write(code + "\n")
    except BaseException:  # noqa: BLE001 - report the traceback in the run's log, exit 1 like Python does
        traceback.print_exc()
        rc = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(rc & 0xFF)


def _match_threads() -> None:
    """Give the run the torch thread count a fresh process with its environment would have: torch read
    ``OMP_NUM_THREADS`` when the server imported it, with the server's environment, not the run's."""
    torch = sys.modules.get("torch")
    want = os.environ.get("OMP_NUM_THREADS", "")
    if torch is not None and want.isdigit() and int(want) > 0 and torch.get_num_threads() != int(want):
        torch.set_num_threads(int(want))


def serve(preload: list[str]) -> int:
    """Server main loop: import `preload`, then fork a child per request line on stdin."""
    # Keep the protocol on private descriptors; stray prints (from an import) go to stderr instead.
    rfd, wfd = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker; the server dies with it
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # a module a later version of the loop no longer has
    me = os.getpid()
    os.write(wfd, (json.dumps({"ready": me}) + "\n").encode())
    with os.fdopen(rfd, "rb") as requests:
        for line in requests:
            if not line.strip():
                continue
            req = json.loads(line)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            pid = os.fork()
            if pid == 0:
                os.close(wfd)
                _child(req, me, rfd)
            os.write(wfd, (json.dumps({"pid": pid}) + "\n").encode())
            _, status = os.waitpid(pid, 0)
            os.write(wfd, (json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
