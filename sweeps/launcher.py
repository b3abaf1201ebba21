"""Launchers: start K copies of the same worker, as local processes or as SLURM job arrays.

Both start ``scaling sweep worker --study NAME --dir DIR`` with the storage URL in the environment
(:data:`sweeps.storage_url.STORAGE_ENV`, never on a command line or in a job file: it may hold a
password); the worker takes points from the shared queue until none is left, so any number of
launchers on any number of machines cooperate.

- ``local``: processes on this machine. On a GPU node each worker sees its own GPUs
  (``CUDA_VISIBLE_DEVICES``: worker i gets devices [i*k, (i+1)*k) for runs of k devices).
- ``slurm``: submitit (``pip install 'vla-scaling[slurm]'``), one job array per group of model sizes
  that share resources (the spec's ``slurm:`` block, overridden by command-line flags; per size where
  ``slurm.per_size`` says so); each task only takes points of its sizes. A preempted or timed-out
  task is requeued by submitit (:class:`WorkerJob` is ``Checkpointable``), at most ``--max-requeues``
  (else the spec's ``slurm.max_requeues``, else 3) times on timeout; its point goes back in the queue
  and resumes from the run's last checkpoint.
  Arrays are named after the sweep, checked with ``sbatch --test-only`` before anything is written
  (:func:`check_slurm`) and followed through ``squeue`` (:mod:`sweeps.slurm_jobs`); a task that
  fails is reported by name. Tests run a real single-node cluster (``tests/sweeps/slurm_cluster.py``)
  and submitit's ``LocalExecutor``.

Ctrl-C or SIGTERM of the launcher: local workers stop (each hands its point back to the queue);
SLURM arrays are cancelled, or left running with ``--on-interrupt leave``. Either way the launcher
returns a :class:`LaunchReport` and the caller writes the table from the ledger.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sweeps.storage_url import STORAGE_ENV, from_env
from vla_core.errors import BadInput

if TYPE_CHECKING:
    from sweeps.sweep import Sweep


def worker_command(sweep: Sweep, sizes: list[str] | None = None) -> list[str]:
    """The ``sweep worker`` command line for this sweep (no storage URL: see :func:`worker_env`)."""
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", "worker", "--study", sweep.queue.name, "--dir", str(sweep.dir)]
    if sizes:
        cmd += ["--sizes", ",".join(sizes)]
    return cmd


def worker_env(sweep: Sweep, base: dict | None = None) -> dict:
    """The environment of a worker: ``base`` (default ours) with the storage in ``STORAGE_ENV``."""
    env = dict(os.environ if base is None else base)
    env[STORAGE_ENV] = sweep.storage or str(sweep.dir / "optuna.journal")
    return env


FORKSERVER_ENV = "SWEEP_FORKSERVER"
"""Local workers start their runs through a warm fork server (`sweeps.forkserver`) unless this is 0."""


def local_worker_env(sweep: Sweep, cuda_devices: str | None = None, base: dict | None = None) -> dict:
    """`worker_env` for a worker on this machine: its GPU slice, and the fork server on by default
    (``SWEEP_FORKSERVER=0`` in the environment turns it off; measured in docs/throughput.md)."""
    env = worker_env(sweep, base)
    if cuda_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_devices
    env.setdefault(FORKSERVER_ENV, "1")
    return env


ON_INTERRUPT = ("cancel", "leave")
"""What Ctrl-C or SIGTERM of ``sweep run --launcher slurm`` does to its job arrays (``--on-interrupt``):
``cancel`` them (the default: the sweep stops, as a local sweep stops its workers) or ``leave`` them
running (they finish the sweep; run ``sweep run`` again afterwards for the fit)."""

DEFAULT_REQUEUES = 3
"""How many times a timed-out array task is requeued (``--max-requeues``; submitit's own default)."""


def preflight(kind: str, on_interrupt: str = "cancel", max_requeues: int = DEFAULT_REQUEUES) -> None:
    """Refuse a launcher this machine cannot use, before anything is planned or written.

    Raises:
        BadInput: Unknown launcher; ``slurm`` without submitit or without SLURM's ``sbatch``; an
            unknown ``on_interrupt``; a negative ``max_requeues``.
    """
    if kind not in ("local", "slurm", "submitit-local"):
        raise BadInput(f"--launcher {kind}: use local or slurm")
    if on_interrupt not in ON_INTERRUPT:
        raise BadInput(f"--on-interrupt {on_interrupt}: use {' or '.join(ON_INTERRUPT)}")
    if kind == "local" and on_interrupt != "cancel":
        raise BadInput(f"--on-interrupt {on_interrupt}: needs --launcher slurm (local workers are this "
                       "command's children and stop with it)")
    if int(max_requeues) < 0:
        raise BadInput(f"--max-requeues {max_requeues}: must be >= 0")
    if kind == "slurm":
        if importlib.util.find_spec("submitit") is None:
            raise BadInput("--launcher slurm: needs submitit (pip install 'vla-scaling[slurm]')")
        if shutil.which("sbatch") is None:
            raise BadInput("--launcher slurm: no SLURM here (sbatch not found); run on the cluster's login node, "
                           "or use --launcher local")


@dataclass
class LaunchReport:
    """How the workers ended. The ledger, not this, says how the points did."""

    problems: list[str] = field(default_factory=list)
    """One line per worker, job or array task that did not end well, naming it."""
    interrupted: int | None = None
    """The signal that stopped the launcher (SIGINT, SIGTERM), None when it waited for the workers."""
    stopped: str = ""
    """What the interrupt did to the workers, in words (empty when not interrupted)."""
    left_running: list[str] = field(default_factory=list)
    """SLURM jobs left running by an interrupt (``--on-interrupt leave``)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM of the launcher, raised where it waits, as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _interruptible() -> Iterator[None]:
    """While the launcher waits, SIGTERM interrupts it as Ctrl-C does (only the main thread has signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Stopping workers or cancelling arrays runs to its end: a second Ctrl-C or SIGTERM meanwhile is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def launch(sweep: Sweep, workers: int, kind: str = "local", progress: bool = True, slurm: dict | None = None,
           on_interrupt: str = "cancel", max_requeues: int = DEFAULT_REQUEUES) -> LaunchReport:
    """Run the sweep's points with ``workers`` workers and wait for them.

    Ctrl-C or SIGTERM stops the wait: local workers are stopped (each hands its point back to the
    queue), SLURM arrays are cancelled or left running as ``on_interrupt`` says. Either way the
    launcher returns, so that the caller still writes the table.

    Args:
        sweep: The sweep (already enqueued).
        workers: Worker processes (local) or array tasks per resource group (slurm).
        kind: ``local`` or ``slurm``.
        progress: Show the one-line sweep progress on stderr while waiting.
        slurm: Resources from the command line, over the spec's ``slurm:`` block.
        on_interrupt: ``cancel`` or ``leave`` the SLURM arrays on Ctrl-C or SIGTERM.
        max_requeues: How many times a timed-out SLURM task is requeued.
    """
    preflight(kind, on_interrupt, max_requeues)
    if kind == "local":
        return _launch_local(sweep, workers, progress)
    return launch_submitit(sweep, workers, local=(kind == "submitit-local"), progress=progress, slurm_params=slurm,
                           on_interrupt=on_interrupt, max_requeues=max_requeues)


def visible_gpus(env: dict | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else those ``nvidia-smi -L`` lists."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, ln in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def gpu_slices(gpus: list[str], workers: int, per_run: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` per worker: disjoint slices of ``per_run`` GPUs (None: no GPUs here).

    Raises:
        BadInput: More workers than the GPUs can hold at ``per_run`` devices per run.
    """
    if not gpus:
        return [None] * workers
    if workers * per_run > len(gpus):
        raise BadInput(f"--workers {workers}: runs of {per_run} device(s) need {workers * per_run} GPUs, this node has "
                       f"{len(gpus)} ({','.join(gpus)}); use --workers {max(1, len(gpus) // per_run)}")
    return [",".join(gpus[i * per_run:(i + 1) * per_run]) for i in range(workers)]


STOP_WAIT_S = 60
"""How long stopped workers (or cancelled tasks) get to hand their points back before the launcher goes on."""


def _launch_local(sweep: Sweep, workers: int, progress: bool) -> LaunchReport:
    from sweeps.progress import Progress

    logs = sweep.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    train = sweep.spec.train_dict
    on_gpu = str(train.get("accelerator", "auto")) != "cpu"
    slices = gpu_slices(visible_gpus() if on_gpu else [], workers, int(train.get("devices", 1) or 1))
    cmd = worker_command(sweep)
    procs = []
    report = LaunchReport()
    for i in range(workers):
        env = local_worker_env(sweep, slices[i])
        log = open(logs / f"worker-{os.getpid()}-{i}.log", "ab")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    bar = Progress(sweep.queue, enabled=progress, runs_dir=sweep.dir / "runs")
    try:
        with _interruptible():
            while any(p.poll() is None for p, _ in procs):
                bar.update()
                time.sleep(1.0)
    except KeyboardInterrupt as exc:
        report.interrupted = getattr(exc, "signum", signal.SIGINT)
        report.stopped = "stopped the workers (their points went back to the queue)"
    finally:
        with _uninterrupted():
            for p, _ in procs:
                if p.poll() is None:  # a worker stops its run and hands its point back on SIGTERM
                    p.terminate()
            for p, log in procs:
                try:
                    p.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                log.close()
            bar.close()
    bad = [p.returncode for p, _ in procs if p.returncode not in (0, None)]
    if bad and report.interrupted is None:
        report.problems.append(f"{len(bad)} worker(s) exited with status {bad}; see {logs}")
    return report


# spec/flag resource name -> submitit's AutoExecutor parameter
_SUBMITIT_NAMES = {"partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
                   "constraint": "slurm_constraint", "time_min": "timeout_min", "mem_gb": "mem_gb",
                   "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task"}


def resource_groups(sweep: Sweep, flags: dict | None = None) -> list[tuple[dict, list[str] | None]]:
    """Resources per job array: ``[(resources, model sizes or None for all)]``.

    Sizes with the same resources share one array; command-line ``flags`` override the spec for
    every size.
    """
    spec = sweep.spec.slurm
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    sizes = [str(m) for m in sweep.spec.models]
    if not spec.per_size:
        return [({**dict(spec.resources), **flags}, None)]
    groups: dict[tuple, list[str]] = {}
    for size in sizes:
        res = {**spec.for_size(size), **flags}
        groups.setdefault(tuple(sorted(res.items())), []).append(size)
    return [(dict(k), v) for k, v in groups.items()]


def submitit_parameters(resources: dict, workers: int, local: bool = False) -> dict:
    """submitit ``update_parameters`` for one array: defaults, then ``resources`` in submitit's names."""
    params: dict = {"timeout_min": 24 * 60}
    for k, v in resources.items():
        params[_SUBMITIT_NAMES[k]] = v
    if local:  # the LocalExecutor takes only the generic parameters
        return {k: v for k, v in params.items() if k in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb")}
    params["slurm_array_parallelism"] = workers
    return params


class WorkerJob:
    """A SLURM array task: one sweep worker. Requeued on preemption or timeout (submitit checkpointing).

    The worker keeps no state worth saving: its claimed point goes back in the queue through the
    heartbeat, and the run resumes from its own last checkpoint, so the requeued task is the same call.
    Nothing secret is pickled: the storage URL comes from the task's environment.
    """

    def __init__(self, study: str, sweep_dir: str, sizes: list[str] | None = None) -> None:
        self.study, self.sweep_dir, self.sizes = study, sweep_dir, sizes

    def __call__(self) -> int:
        return worker_main(None, self.study, self.sweep_dir, sizes=self.sizes)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption/timeout: resubmit the same worker."""
        import submitit

        return submitit.helpers.DelayedSubmission(WorkerJob(self.study, self.sweep_dir, self.sizes))


def job_name(sweep: Sweep, sizes: list[str] | None) -> str:
    """The SLURM job name of an array: the sweep's name, and the sizes it runs when it runs only some."""
    return sweep.spec.name + (":" + ",".join(sizes) if sizes else "")


@dataclass
class _Array:
    """One submitted job array (or, with the local executor, its processes)."""

    what: str
    """How messages name it: job name and resources."""
    jobs: list
    """submitit jobs, one per task."""

    @property
    def job_id(self) -> str:
        """The array's SLURM job id (``12`` of tasks ``12_0``, ``12_1``)."""
        return str(self.jobs[0].job_id).split("_")[0]


def slurm_arrays(sweep: Sweep, workers: int, flags: dict | None = None, local: bool = False,
                 hold: bool = False) -> list[tuple[str, dict, list[str] | None]]:
    """Every array the sweep submits: ``(name and resources in words, submitit parameters, sizes)``.

    Args:
        hold: Submit held (released once every array is in, so none runs if a later one is refused).
    """
    out = []
    for resources, sizes in resource_groups(sweep, flags):
        params = submitit_parameters(resources, workers, local)
        name = job_name(sweep, sizes)
        if not local:
            params["name"] = name
            if hold:
                params["slurm_additional_parameters"] = {"hold": True}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(resources.items())) or "the cluster's defaults"
        out.append((f"array '{name}' ({workers} task(s); {shown})", params, sizes))
    return out


def check_slurm(sweep: Sweep, workers: int, flags: dict | None = None) -> None:
    """Ask SLURM (``sbatch --test-only``) whether it accepts every array of the sweep; submits nothing.

    Raises:
        BadInput: An array SLURM refuses (bad partition, account or QoS, more than a node has), with
            sbatch's own line.
    """
    from sweeps import slurm_jobs

    slurm_jobs.check_arrays((what, params, workers) for what, params, _ in slurm_arrays(sweep, workers, flags))


def _submit(ex, sweep: Sweep, workers: int, sizes: list[str] | None) -> list:
    """Submit one array; raises BadInput with sbatch's line when SLURM refuses it."""
    import submitit

    from sweeps.slurm_jobs import sbatch_line

    err = io.StringIO()  # submitit prints sbatch's stderr itself: keep it for our one line instead
    try:
        with contextlib.redirect_stderr(err), ex.batch():
            jobs = [ex.submit(WorkerJob(sweep.queue.name, str(sweep.dir), sizes)) for _ in range(workers)]
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError, OSError) as exc:
        raise BadInput(sbatch_line(str(exc) or err.getvalue())) from None
    return jobs


def launch_submitit(sweep: Sweep, workers: int, local: bool = False, progress: bool = True,
                    slurm_params: dict | None = None, on_interrupt: str = "cancel",
                    max_requeues: int = DEFAULT_REQUEUES) -> LaunchReport:
    """Submit the worker as job arrays of ``workers`` tasks (one per resource group) and wait for them.

    The storage URL reaches the tasks through the environment (sbatch exports the submitting
    process's environment), never through the pickled job or its script. With several arrays each
    is submitted held and all are released together, so a refused array leaves nothing running: the
    ones before it are cancelled unstarted.

    Tasks are followed through ``squeue`` (:mod:`sweeps.slurm_jobs`), so a task that fails is seen to
    end even where ``sacct`` has no database. Whatever ends a task, it is reported in the returned
    :class:`LaunchReport` by job id and name, never raised: the caller still writes the table.

    Args:
        local: Use submitit's ``LocalExecutor`` (same code path, no SLURM; used by the tests).
        slurm_params: Resources from the command line (partition, account, time_min, mem_gb,
            gpus_per_node, cpus_per_task, qos, constraint), over the spec's.
        on_interrupt: ``cancel`` (default) or ``leave`` the arrays on Ctrl-C or SIGTERM.
        max_requeues: How many times a timed-out task is requeued (submitit's ``max_num_timeout``).

    Raises:
        BadInput: SLURM refused an array (sbatch's line; the arrays before it are cancelled).
    """
    try:
        import submitit
    except ImportError:
        raise BadInput("--launcher slurm: needs submitit (pip install 'vla-scaling[slurm]')") from None
    from sweeps import slurm_jobs
    from sweeps.progress import Progress

    folder = sweep.dir / "slurm" / "%j"
    hold = not local and len(resource_groups(sweep, slurm_params)) > 1
    groups = slurm_arrays(sweep, workers, slurm_params, local, hold=hold)
    saved = os.environ.get(STORAGE_ENV)
    os.environ[STORAGE_ENV] = worker_env(sweep)[STORAGE_ENV]
    arrays: list[_Array] = []
    with _interruptible():  # SIGTERM while submitting cancels what is in, as Ctrl-C does
        try:
            for what, params, sizes in groups:
                if local:
                    ex = submitit.LocalExecutor(folder=folder, max_num_timeout=max_requeues)
                else:
                    ex = submitit.AutoExecutor(folder=folder, slurm_max_num_timeout=max_requeues)
                ex.update_parameters(**params)
                try:
                    jobs = _submit(ex, sweep, workers, sizes)
                except BadInput as exc:
                    ids = [a.job_id for a in arrays]
                    gone = f"; cancelled job(s) {', '.join(ids)} submitted before it, unstarted" if ids else ""
                    raise BadInput(f"--launcher slurm: {what}: {exc}{gone}") from None
                arrays.append(_Array(what, jobs))
            if hold:
                complaint = slurm_jobs.release([a.job_id for a in arrays])
                if complaint:
                    raise BadInput(f"--launcher slurm: scontrol release: {complaint}; cancelled the arrays")
        except BaseException:  # refused, or Ctrl-C while submitting: no array of this sweep runs unwatched
            (_LocalWatch if local else _SlurmWatch)([(a, j) for a in arrays for j in a.jobs]).cancel()
            raise
        finally:
            if saved is None:
                os.environ.pop(STORAGE_ENV, None)
            else:
                os.environ[STORAGE_ENV] = saved
    for a in arrays:
        sys.stderr.write(f"sweep {sweep.spec.name}: submitted job {a.job_id}: {a.what}; a task that times out is "
                         f"requeued at most {max_requeues} time(s) (slurm.max_requeues or --max-requeues), a "
                         "preempted one always\n")
    tasks = [(a, j) for a in arrays for j in a.jobs]
    watch = _LocalWatch(tasks) if local else _SlurmWatch(tasks)
    report = LaunchReport()
    bar = Progress(sweep.queue, enabled=progress, runs_dir=sweep.dir / "runs")
    try:
        with _interruptible():
            while not watch.all_over():
                bar.update()
                time.sleep(1.0)
    except KeyboardInterrupt as exc:
        report.interrupted = getattr(exc, "signum", signal.SIGINT)
        with _uninterrupted():
            ids = [a.job_id for a in arrays]
            if on_interrupt == "leave" and not local:
                report.left_running = ids
                report.stopped = (f"left job(s) {', '.join(ids)} running: they go on with the sweep "
                                  f"(scancel {' '.join(ids)} stops them)")
            else:
                watch.cancel()
                end = time.time() + STOP_WAIT_S
                while not watch.all_over() and time.time() < end:
                    time.sleep(1.0)
                report.stopped = f"cancelled job(s) {', '.join(ids)} (their points went back to the queue)"
    finally:
        bar.close()
    if report.interrupted is None:
        report.problems += watch.problems(max_requeues)
    return report


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _log_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _task_reason(job, max_requeues: int) -> str:
    """Why a task ended badly, in one line: the requeue limit where submitit refused to requeue it, else
    its result (submitit's record of what the worker raised), else the last line of its stderr."""
    from submitit.core.utils import pickle_load

    try:
        outcome, value = pickle_load(job.paths.result_pickle)
    except Exception:  # no result (killed) or one being written: fall back to the log
        outcome, value = None, None
    text = str(value) if outcome == "error" else ""
    # submitit logs its refusal before raising it; the raise can be lost (SLURM sends SIGCONT with the
    # USR2, and an exception raised while the SIGCONT handler logs is swallowed by logging), and the
    # task then runs on until SLURM ends it at the limit: its log still says why it was not requeued.
    if "timed-out too many times" in text or "not requeued because: timed-out too many times" in _log_text(
            Path(job.paths.stdout)):
        return (f"the requeue limit was reached: timed out {max_requeues + 1} time(s), requeued {max_requeues} "
                f"(the spec's slurm.max_requeues, or --max-requeues)")
    if text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            return lines[-1][:300]
    return _last_line(job.paths.stderr) or "no log"


class _SlurmWatch:
    """Array tasks followed through squeue/sacct (:func:`sweeps.slurm_jobs.task_states`)."""

    def __init__(self, tasks: list[tuple[_Array, object]]) -> None:
        self.tasks = tasks
        self.states: dict[str, str] = {}

    def all_over(self) -> bool:
        from sweeps.slurm_jobs import ACTIVE, task_states

        states = task_states([str(j.job_id) for _, j in self.tasks])
        if states is None:  # the controller did not answer: ask again later
            return False
        self.states = states
        return not any(s in ACTIVE for s in states.values())

    def cancel(self) -> None:
        from sweeps.slurm_jobs import cancel

        if self.tasks:
            cancel(sorted({a.job_id for a, _ in self.tasks}))

    def problems(self, max_requeues: int) -> list[str]:
        out = []
        for a, j in self.tasks:
            state = self.states.get(str(j.job_id), "unknown")
            if state != "COMPLETED":
                out.append(f"job {j.job_id} of {a.what} {state}: {_task_reason(j, max_requeues)}")
        return out


class _LocalWatch:
    """The same for submitit's LocalExecutor (processes on this machine)."""

    def __init__(self, tasks: list[tuple[_Array, object]]) -> None:
        self.tasks = tasks

    def all_over(self) -> bool:
        return all(j.done() for _, j in self.tasks)

    def cancel(self) -> None:
        for _, j in self.tasks:
            if not j.done():
                j.cancel()

    def problems(self, max_requeues: int) -> list[str]:
        from submitit.core.utils import pickle_load

        out = []
        for a, j in self.tasks:
            try:
                outcome = pickle_load(j.paths.result_pickle)[0]
            except Exception:  # killed before it could record one
                outcome = "no result"
            if outcome != "success":
                how = "FAILED" if outcome == "error" else "ended without a result"
                out.append(f"task {j.job_id} of {a.what} {how}: {_task_reason(j, max_requeues)}")
        return out


def worker_main(storage: str | None, study: str, sweep_dir: str | None, wait: bool = True,
                sizes: list[str] | None = None) -> int:
    """``scaling sweep worker``: run points of ``study`` until none is left; returns 0.

    Args:
        storage: URL or journal path; None reads ``STORAGE_ENV`` (what launchers set).
        sizes: Only points of these model sizes (a SLURM array sized for them).
    """
    import json

    from sweeps.store import Queue
    from sweeps.worker import WorkerSettings, work

    storage = from_env(storage)
    if storage is None:
        raise BadInput(f"--storage: give it, or set {STORAGE_ENV} (the launchers do)")
    q = Queue(study, storage, Path(sweep_dir) if sweep_dir else None, create=False)
    folder = Path(sweep_dir or q.info().get("dir") or "")
    info_path = folder / "sweep.json"
    if not info_path.is_file():
        raise BadInput(f"--dir {folder}: no sweep.json; run `scaling sweep run SPEC --dir {folder}` there first")
    info = json.loads(info_path.read_text())
    settings = WorkerSettings(sweep_dir=folder.resolve(), data=info["data"], sweep=str(info.get("sweep") or study),
                              retries=int(info.get("retries", 2)), wait=wait,
                              sizes=tuple(sizes) if sizes else None)
    work(q, settings)
    return 0
