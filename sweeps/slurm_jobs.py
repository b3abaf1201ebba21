"""SLURM as the launcher meets it: a submission checked before anything is written, job arrays followed
to their end and cancelled, all through SLURM's own commands.

- :func:`check_arrays` asks ``sbatch --test-only`` about every array the sweep would submit, with the
  flags submitit puts in its job file, so a bad partition or an impossible request is refused with
  SLURM's own words before a point is queued or a file written.
- :func:`task_states` follows array tasks through ``squeue`` (and ``sacct`` once the controller has
  forgotten a job). It needs no accounting database: submitit's own watcher asks ``sacct`` only, and on
  a cluster without slurmdbd it never learns that a failed task ended.
- :func:`cancel` and :func:`release` wrap ``scancel`` and ``scontrol release``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable

from vla_core.errors import BadInput

# submitit's parameter name -> the sbatch flag it writes into the job file (see
# submitit.slurm.slurm._make_sbatch_string; a test compares the two).
SBATCH_FLAGS = {
    "slurm_partition": "--partition", "slurm_account": "--account", "slurm_qos": "--qos",
    "slurm_constraint": "--constraint", "timeout_min": "--time", "mem_gb": "--mem",
    "gpus_per_node": "--gpus-per-node", "cpus_per_task": "--cpus-per-task", "name": "--job-name",
}

ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
                    "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "PREEMPTED"})
"""States of a task that is not over. PREEMPTED counts as not over (as submitit counts it): a preempted
task is requeued unless the cluster cancels preempted jobs."""

GONE = "GONE"
"""The state of a task that neither ``squeue`` nor ``sacct`` knows any more: it ended, how is unknown."""

_TIMEOUT_S = 60


def _mem(mem_gb: float) -> str:
    # As submitit writes it: whole GB as "NGB", else MB.
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


def sbatch_args(params: dict, tasks: int) -> list[str]:
    """The sbatch flags of one array submitted with submitit ``params`` (AutoExecutor names) and ``tasks``
    tasks (one task: submitit submits a plain job, no ``--array``)."""
    args = ["--nodes=1", "--ntasks-per-node=1"] + ([f"--array=0-{tasks - 1}"] if tasks > 1 else [])
    for key, value in params.items():
        flag = SBATCH_FLAGS.get(key)
        if flag is None or value is None:
            continue
        args.append(f"{flag}={_mem(value) if key == 'mem_gb' else value}")
    return args


def sbatch_line(stderr: str) -> str:
    """SLURM's own complaint from sbatch's stderr, one line: its first error line, else its last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["sbatch failed without a message"])[0 if errors else -1]


def _run(cmd: list[str], timeout: float = _TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 1, "", f"{cmd[0]}: {exc}")


def check_arrays(arrays: Iterable[tuple[str, dict, int]]) -> None:
    """Ask SLURM whether it would accept each array, submitting nothing.

    Args:
        arrays: ``(description, submitit parameters, tasks)`` per array.

    Raises:
        BadInput: SLURM refuses one: the description and sbatch's own line.
    """
    for what, params, tasks in arrays:
        r = _run(["sbatch", "--test-only", "--output=/dev/null", *sbatch_args(params, tasks), "--wrap=true"])
        if r.returncode != 0:
            raise BadInput(f"--launcher slurm: {what}: {sbatch_line(r.stderr)}")


def _parse(out: str) -> dict[str, str]:
    states = {}
    for line in out.splitlines():
        task, _, state = line.strip().partition("|")
        if task and state:
            states[task] = state.split()[0].rstrip("+")
    return states


def task_states(tasks: list[str]) -> dict[str, str] | None:
    """The state of each task (``"12_0"`` of an array, ``"12"`` of a plain job), or None while the
    controller cannot be asked.

    Tasks the controller has forgotten are looked up with ``sacct`` (where accounting runs), else
    reported as :data:`GONE`.
    """
    if not tasks:
        return {}
    jobs = sorted({t.split("_")[0] for t in tasks})
    r = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(jobs), "-o", "%i|%T"])
    if r.returncode == 0:
        states = _parse(r.stdout)
    elif "invalid job id" in r.stderr.lower():
        states = {}  # none of them is known any more
    else:
        return None
    missing = [t for t in tasks if t not in states]
    if missing:
        acct = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(sorted({t.split("_")[0] for t in missing})),
                     "-o", "JobID,State"])
        known = _parse(acct.stdout) if acct.returncode == 0 else {}
        for t in missing:
            states[t] = known.get(t, GONE)
    return {t: states[t] for t in tasks}


def release(job_ids: list[str]) -> str | None:
    """Release held jobs; returns SLURM's complaint, or None."""
    if not job_ids:
        return None
    r = _run(["scontrol", "release", ",".join(job_ids)])
    return None if r.returncode == 0 else sbatch_line(r.stderr)


def cancel(job_ids: list[str]) -> str | None:
    """Cancel jobs (whole arrays or single tasks); returns SLURM's complaint, or None."""
    if not job_ids:
        return None
    r = _run(["scancel", *job_ids])
    return None if r.returncode == 0 else sbatch_line(r.stderr)
