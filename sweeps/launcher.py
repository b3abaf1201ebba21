"""Launchers: start K copies of the same worker, as local processes or as a SLURM job array.

Both start ``scaling sweep worker --storage S --study NAME --dir DIR``; the worker takes points from
the shared queue until none is left, so any number of launchers on any number of machines cooperate.
``slurm`` uses submitit (``pip install submitit``); tests use submitit's ``LocalExecutor``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.errors import BadInput

if TYPE_CHECKING:
    from sweeps.sweep import Sweep


def worker_command(sweep: "Sweep") -> list[str]:
    """The ``sweep worker`` command line for this sweep."""
    storage = sweep.storage or str(sweep.dir / "optuna.journal")
    return [sys.executable, "-m", "sweeps.cli", "sweep", "worker", "--storage", storage,
            "--study", sweep.spec.name, "--dir", str(sweep.dir)]


def _worker_main(argv: list[str]) -> int:
    """What a SLURM array task runs (picklable entry point for submitit)."""
    from sweeps.cli import main

    return main(argv)


def launch(sweep: "Sweep", workers: int, kind: str = "local", progress: bool = True) -> None:
    """Run the sweep's points with ``workers`` workers and wait for them.

    Args:
        sweep: The sweep (already enqueued).
        workers: Worker processes (local) or array tasks (slurm).
        kind: ``local`` or ``slurm``.
        progress: Show the one-line sweep progress on stderr while waiting.
    """
    if kind == "local":
        _launch_local(sweep, workers, progress)
    elif kind in ("slurm", "submitit-local"):
        launch_submitit(sweep, workers, local=(kind == "submitit-local"), progress=progress)
    else:
        raise BadInput(f"--launcher {kind}: use local or slurm")


def _launch_local(sweep: "Sweep", workers: int, progress: bool) -> None:
    from sweeps.progress import Progress

    logs = sweep.dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(workers):
        log = open(logs / f"worker-{os.getpid()}-{i}.log", "ab")
        procs.append((subprocess.Popen(worker_command(sweep), stdout=log, stderr=subprocess.STDOUT), log))
    bar = Progress(sweep.queue, enabled=progress)
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


def launch_submitit(sweep: "Sweep", workers: int, local: bool = False, progress: bool = True,
                    slurm_params: dict | None = None) -> list:
    """Submit the worker as a job array of ``workers`` tasks and wait for it.

    Args:
        local: Use submitit's ``LocalExecutor`` (same code path, no SLURM; used by the tests).
        slurm_params: Extra ``update_parameters`` (partition, time, gpus_per_node, ...).
    """
    try:
        import submitit
    except ImportError:
        raise BadInput("--launcher slurm: needs submitit (pip install 'vla-scaling[slurm]')") from None
    from sweeps.progress import Progress

    folder = sweep.dir / "slurm" / "%j"
    ex = submitit.LocalExecutor(folder=folder) if local else submitit.AutoExecutor(folder=folder)
    params = {"timeout_min": 24 * 60, **(slurm_params or {})}
    if not local:
        params.setdefault("slurm_array_parallelism", workers)
    ex.update_parameters(**params)
    argv = worker_command(sweep)[3:]  # drop "python -m sweeps.cli": main() takes the rest
    with ex.batch():
        jobs = [ex.submit(_worker_main, argv) for _ in range(workers)]
    bar = Progress(sweep.queue, enabled=progress)
    while not all(j.done() for j in jobs):
        bar.update()
        time.sleep(1.0)
    bar.close()
    return [j.result() for j in jobs]


def worker_main(storage: str, study: str, sweep_dir: str | None, wait: bool = True) -> int:
    """``scaling sweep worker``: run points of ``study`` until none is left; returns 0."""
    import json

    from sweeps.store import Queue
    from sweeps.worker import WorkerSettings, work

    q = Queue(study, storage, Path(sweep_dir) if sweep_dir else None, create=False)
    folder = Path(sweep_dir or q.info().get("dir") or "")
    info_path = folder / "sweep.json"
    if not info_path.is_file():
        raise BadInput(f"--dir {folder}: no sweep.json; run `scaling sweep run SPEC --dir {folder}` there first")
    info = json.loads(info_path.read_text())
    settings = WorkerSettings(sweep_dir=folder.resolve(), data=info["data"], sweep=study,
                              retries=int(info.get("retries", 2)), wait=wait)
    work(q, settings)
    return 0
