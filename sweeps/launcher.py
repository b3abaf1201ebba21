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
  task is requeued by submitit (:class:`WorkerJob` is ``Checkpointable``); its point goes back in the
  queue through the heartbeat and resumes from the run's last checkpoint. Tests use submitit's
  ``LocalExecutor``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.errors import BadInput
from sweeps.storage_url import STORAGE_ENV, from_env

if TYPE_CHECKING:
    from sweeps.sweep import Sweep


def worker_command(sweep: "Sweep", sizes: list[str] | None = None) -> list[str]:
    """The ``sweep worker`` command line for this sweep (no storage URL: see :func:`worker_env`)."""
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", "worker", "--study", sweep.queue.name, "--dir", str(sweep.dir)]
    if sizes:
        cmd += ["--sizes", ",".join(sizes)]
    return cmd


def worker_env(sweep: "Sweep", base: dict | None = None) -> dict:
    """The environment of a worker: ``base`` (default ours) with the storage in ``STORAGE_ENV``."""
    env = dict(os.environ if base is None else base)
    env[STORAGE_ENV] = sweep.storage or str(sweep.dir / "optuna.journal")
    return env


FORKSERVER_ENV = "SWEEP_FORKSERVER"
"""Local workers start their runs through a warm fork server (`sweeps.forkserver`) unless this is 0."""


def local_worker_env(sweep: "Sweep", cuda_devices: str | None = None, base: dict | None = None) -> dict:
    """`worker_env` for a worker on this machine: its GPU slice, and the fork server on by default
    (``SWEEP_FORKSERVER=0`` in the environment turns it off; measured in docs/throughput.md)."""
    env = worker_env(sweep, base)
    if cuda_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_devices
    env.setdefault(FORKSERVER_ENV, "1")
    return env


def preflight(kind: str) -> None:
    """Refuse a launcher this machine cannot use, before anything is planned or written.

    Raises:
        BadInput: Unknown launcher; ``slurm`` without submitit or without SLURM's ``sbatch``.
    """
    if kind not in ("local", "slurm", "submitit-local"):
        raise BadInput(f"--launcher {kind}: use local or slurm")
    if kind == "slurm":
        if importlib.util.find_spec("submitit") is None:
            raise BadInput("--launcher slurm: needs submitit (pip install 'vla-scaling[slurm]')")
        if shutil.which("sbatch") is None:
            raise BadInput("--launcher slurm: no SLURM here (sbatch not found); run on the cluster's login node, "
                           "or use --launcher local")


def launch(sweep: "Sweep", workers: int, kind: str = "local", progress: bool = True, slurm: dict | None = None) -> None:
    """Run the sweep's points with ``workers`` workers and wait for them.

    Args:
        sweep: The sweep (already enqueued).
        workers: Worker processes (local) or array tasks per resource group (slurm).
        kind: ``local`` or ``slurm``.
        progress: Show the one-line sweep progress on stderr while waiting.
        slurm: Resources from the command line, over the spec's ``slurm:`` block.
    """
    preflight(kind)
    if kind == "local":
        _launch_local(sweep, workers, progress)
    else:
        launch_submitit(sweep, workers, local=(kind == "submitit-local"), progress=progress, slurm_params=slurm)


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


def _launch_local(sweep: "Sweep", workers: int, progress: bool) -> None:
    from sweeps.progress import Progress

    logs = sweep.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    train = sweep.spec.train_dict
    on_gpu = str(train.get("accelerator", "auto")) != "cpu"
    slices = gpu_slices(visible_gpus() if on_gpu else [], workers, int(train.get("devices", 1) or 1))
    cmd = worker_command(sweep)
    procs = []
    for i in range(workers):
        env = local_worker_env(sweep, slices[i])
        log = open(logs / f"worker-{os.getpid()}-{i}.log", "ab")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    bar = Progress(sweep.queue, enabled=progress, runs_dir=sweep.dir / "runs")
    try:
        while any(p.poll() is None for p, _ in procs):
            bar.update()
            time.sleep(1.0)
    finally:
        for p, log in procs:
            if p.poll() is None:  # interrupted (Ctrl-C): stop our workers; their points are re-queued
                p.terminate()
            p.wait()
            log.close()
        bar.close()
    bad = [p.returncode for p, _ in procs if p.returncode not in (0, None)]
    if bad:
        sys.stderr.write(f"sweep: {len(bad)} worker(s) exited with status {bad}; see {logs}\n")


# spec/flag resource name -> submitit's AutoExecutor parameter
_SUBMITIT_NAMES = {"partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
                   "constraint": "slurm_constraint", "time_min": "timeout_min", "mem_gb": "mem_gb",
                   "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task"}


def resource_groups(sweep: "Sweep", flags: dict | None = None) -> list[tuple[dict, list[str] | None]]:
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


def launch_submitit(sweep: "Sweep", workers: int, local: bool = False, progress: bool = True,
                    slurm_params: dict | None = None) -> list:
    """Submit the worker as job arrays of ``workers`` tasks (one per resource group) and wait for them.

    The storage URL reaches the tasks through the environment (sbatch exports the submitting
    process's environment), never through the pickled job or its script.

    Args:
        local: Use submitit's ``LocalExecutor`` (same code path, no SLURM; used by the tests).
        slurm_params: Resources from the command line (partition, account, time_min, mem_gb,
            gpus_per_node, cpus_per_task, qos, constraint), over the spec's.
    """
    try:
        import submitit
    except ImportError:
        raise BadInput("--launcher slurm: needs submitit (pip install 'vla-scaling[slurm]')") from None
    from sweeps.progress import Progress

    folder = sweep.dir / "slurm" / "%j"
    saved = os.environ.get(STORAGE_ENV)
    os.environ[STORAGE_ENV] = worker_env(sweep)[STORAGE_ENV]
    jobs = []
    try:
        for resources, sizes in resource_groups(sweep, slurm_params):
            ex = submitit.LocalExecutor(folder=folder) if local else submitit.AutoExecutor(folder=folder)
            ex.update_parameters(**submitit_parameters(resources, workers, local))
            with ex.batch():
                jobs += [ex.submit(WorkerJob(sweep.queue.name, str(sweep.dir), sizes)) for _ in range(workers)]
    finally:
        if saved is None:
            os.environ.pop(STORAGE_ENV, None)
        else:
            os.environ[STORAGE_ENV] = saved
    bar = Progress(sweep.queue, enabled=progress, runs_dir=sweep.dir / "runs")
    while not all(j.done() for j in jobs):
        bar.update()
        time.sleep(1.0)
    bar.close()
    return [j.result() for j in jobs]


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
