"""A sweep worker: take the next waiting point, run it as its own OS process, record the outcome.

Each run is ``scaling train --config RUN_DIR/run.yaml`` in its own process (DDP relaunches its
script, and W&B wants one run per process), started as a fresh ``python -m sweeps.cli train``
process or, with ``SWEEP_FORKSERVER=1`` (the default of local sweeps), forked from the worker's warm fork server
(`sweeps.forkserver`: torch and Lightning imported once per worker). The run folder is
``SWEEP_DIR/runs/<run_key>``, so a re-queued point finds its own checkpoints and resumes from them.
The run is tied to its worker (``PR_SET_PDEATHSIG``): if the worker is killed the run dies too, and
two processes never train into one folder.

Tests may swap the run command with the environment variable ``SWEEP_RUN_COMMAND`` (a command
prefix; ``--config PATH`` is appended). Everything else is the real engine.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from optuna.trial import TrialState

from sweeps import forkserver
from sweeps.runproc import (
    RUN_COMMAND_ENV,
    die_with_parent,
    finished_result,
    flatten_result,
    run_command,
    run_env,
    train_command,
)
from sweeps.store import HEARTBEAT_S, Claim, Queue
from vla_core.atomic import write_atomic

__all__ = ["WorkerSettings", "work", "run_group", "run_point", "run_command", "RUN_COMMAND_ENV"]


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs besides the queue."""

    sweep_dir: Path
    """Local sweep folder; runs go to ``sweep_dir/runs/<run_key>``."""
    data: object
    """The ``data`` value of every RunConfig on this machine (path or mixture dict)."""
    sweep: str
    """Sweep name (W&B group)."""
    retries: int = 2
    """Retries of a failed run before it is recorded as failed."""
    poll_s: float = 2.0
    """Sleep between queue polls while other workers finish (seconds)."""
    wait: bool = True
    """Keep polling while other workers still run points (False: stop when nothing is waiting)."""
    sizes: tuple[str, ...] | None = None
    """Only take points of these model sizes, as ``str(size)`` (a SLURM array sized for them); None: all."""


_SERVER: forkserver.ForkServer | None = None
_SERVER_BROKEN = False  # it died during its imports: runs start as fresh processes instead


def _fork_server() -> forkserver.ForkServer | None:
    """This worker's fork server (started on first use), or None when runs start as fresh processes."""
    global _SERVER
    if os.environ.get(RUN_COMMAND_ENV) or not forkserver.enabled() or _SERVER_BROKEN:
        return None
    if _SERVER is None:
        _SERVER = forkserver.ForkServer()
    return _SERVER.start()


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def _run_config(claim: Claim, s: WorkerSettings, run_dir: Path) -> dict:
    """The point's run.yaml: its planned config (the flat names run keys hash, `scaling.config.LEGACY`)
    with this machine's data, folder, precision and branch point, written by section."""
    from scaling.config import from_mapping, sectioned

    cfg = dict(claim.attrs["config"])
    cfg["data"] = s.data
    cfg["out"] = str(run_dir)
    if claim.attrs.get("precision"):
        # `precision: auto`, resolved once for this size when the sweep was planned (sweeps.auto_precision):
        # resolving it here again, under this machine's load, could train another precision.
        cfg["precision"] = claim.attrs["precision"]
    branch = claim.attrs.get("branch")
    if branch:
        # WSD cooldown: start from the stable phase's checkpoint at this D's cooldown start.
        cfg["branch_from"] = str(s.sweep_dir / "runs" / branch["from_key"] / "checkpoints" / branch["checkpoint"])
    from_mapping(cfg, source=str(run_dir / "run.yaml"))  # a plan of other code fails here, not in the run
    return sectioned(cfg, source=str(run_dir / "run.yaml"))


class _Stop:
    """SIGTERM to a worker (SLURM cancelling, preempting or requeueing its task; the local launcher
    stopping): end the run, hand its point back to the queue, take no other.

    A stopped run is not a failed attempt: it neither uses up a retry nor records the point failed.
    """

    signum: int | None = None
    """The signal received, None while the worker may go on."""
    pid: int | None = None
    """The run in progress (its process id), None between runs."""

    @classmethod
    def handler(cls, signum, frame) -> None:
        cls.signum = signum
        cls._signal_run(signal.SIGTERM)

    @classmethod
    def _signal_run(cls, sig: int) -> None:
        if cls.pid is not None:
            try:
                os.kill(cls.pid, sig)
            except ProcessLookupError:
                pass


STOP_KILL_S = 30
"""A run still alive this long after the worker asked it to stop is killed (seconds)."""


def _end_run(proc) -> None:
    """Stop the run ``proc`` and wait for it, so that no process trains in its folder once its point is handed back."""
    _Stop._signal_run(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_KILL_S)
    except (subprocess.TimeoutExpired, forkserver.ForkServerDied):
        _Stop._signal_run(signal.SIGKILL)
        try:
            proc.wait(timeout=STOP_KILL_S)
        except (subprocess.TimeoutExpired, forkserver.ForkServerDied):
            pass


WATCH_S = 1.0
"""How often a watched run (an lr_search trial: its validation losses) is looked at (seconds)."""


def _train(q: Queue, claims: list[Claim], args: list[str], run_dir: Path, env: dict,
           watch: Callable[[], bool] | None = None) -> int:
    """One attempt: ``scaling train ARGS`` as its own process (its log RUN_DIR/train.log), the claims'
    heartbeats while it lives; returns its exit status.

    ``watch`` is called every :data:`WATCH_S` seconds while the run lives; when it returns True the
    run is ended (an lr_search trial the median pruner stops).

    Anything raised meanwhile (SystemExit from submitit's requeue on timeout, KeyboardInterrupt) ends
    the run before it propagates.
    """
    server = _fork_server()
    with open(run_dir / "train.log", "ab") as log:
        try:
            if server is not None:
                proc = server.run(["train", *args], run_dir / "train.log", env=env)
            else:
                proc = subprocess.Popen(train_command(args), stdout=log, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=die_with_parent)
        except forkserver.ForkServerDied as exc:  # the run died with it: a failed attempt, retried
            log.write(f"sweep worker: {exc}\n".encode())
            return -signal.SIGKILL
        _Stop.pid = proc.pid
        if _Stop.signum is not None:  # the stop came while the run was starting
            _Stop._signal_run(signal.SIGTERM)
        stop_seen = None
        beat = time.monotonic()
        try:
            while True:
                try:
                    return proc.wait(timeout=HEARTBEAT_S if watch is None else WATCH_S)
                except subprocess.TimeoutExpired:
                    if watch is None or time.monotonic() - beat >= HEARTBEAT_S:
                        beat = time.monotonic()
                        for claim in claims:
                            q.heartbeat(claim.trial_id)
                if watch is not None and _Stop.signum is None and watch():
                    _end_run(proc)
                    return -signal.SIGTERM
                if _Stop.signum is not None:
                    stop_seen = stop_seen or time.time()
                    if time.time() - stop_seen > STOP_KILL_S:
                        _Stop._signal_run(signal.SIGKILL)
        except forkserver.ForkServerDied as exc:
            log.write(f"sweep worker: {exc}\n".encode())
            return -signal.SIGKILL
        except BaseException:
            _end_run(proc)
            raise
        finally:
            _Stop.pid = None


def _set_aside_other_code(run_dir: Path, code: str | None) -> None:
    """Move a finished run made by other code to ``<key>.code-<version>``, so it is trained again, not reused.

    ``code`` is the code version of the point's generation (None: a sweep from before versions were
    recorded, or a generation continued with ``--allow-code-change``'s old version: reuse is allowed).
    """
    result = finished_result(run_dir)
    made = ((result or {}).get("versions") or {}).get("code") if result else None
    if code is None or made is None or made == code:
        return
    target = run_dir.with_name(f"{run_dir.name}.code-{made}")
    n = 1
    while target.exists():
        target, n = run_dir.with_name(f"{run_dir.name}.code-{made}.{n}"), n + 1
    run_dir.rename(target)


def run_point(q: Queue, claim: Claim, s: WorkerSettings) -> str:
    """Run one claimed point to an outcome; returns its state (completed|diverged|pruned|failed).

    Failures are retried ``s.retries`` times (each retry resumes from the run's checkpoints). An
    lr_search trial (`sweeps.lr_search.TrialRun`) is watched while it runs, ended and recorded ``pruned``
    if the median pruner stops it, and its outcome told to its Optuna study before it is recorded.
    """
    run_dir = s.sweep_dir / "runs" / claim.run_key
    _set_aside_other_code(run_dir, claim.attrs.get("code_version"))
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "run.yaml"
    write_atomic(cfg_path, yaml.safe_dump(_run_config(claim, s, run_dir), sort_keys=True))
    trial = None
    if claim.attrs.get("phase") == "lr_search":
        from sweeps.lr_search import TrialRun

        trial = TrialRun(q, claim, run_dir, s.sweep_dir, s.data)
    env = run_env(run_dir, group=s.sweep, job_type="train" if trial is None else "lr_search")
    reason = ""
    t0 = time.time()
    process_s = 0.0  # wall time inside run processes (the rest is the sweep's own overhead)
    if trial is not None and trial.pruned and finished_result(run_dir) is None:  # told so before its worker died
        return _record_pruned(q, claim, trial, run_dir, {"attempts": 1})
    for attempt in range(1, s.retries + 2):
        if attempt == 1 and finished_result(run_dir) is not None:
            # The run finished but its worker died before recording it (kill -9 between the two):
            # the folder belongs to this exact config, so take the result instead of training again.
            rc = 0
        else:
            (run_dir / "result.json").unlink(missing_ok=True)  # a failed attempt's result must not pass
            t_proc = time.time()
            try:
                rc = _train(q, [claim], ["--config", str(cfg_path)], run_dir, env,
                            watch=None if trial is None else trial.prune)
            except BaseException:  # the worker is going away (its run already ended): hand the point back
                _hand_back(q, claim)
                raise
            process_s += time.time() - t_proc
            if trial is not None and trial.pruned:
                return _record_pruned(q, claim, trial, run_dir, {
                    "attempts": attempt, "sweep_seconds": time.time() - t0, "process_seconds": process_s})
            if _Stop.signum is not None and finished_result(run_dir) is None:
                _hand_back(q, claim)
                return "stopped"
        state, reason = _record(q, claim, run_dir, rc, {"attempts": attempt, "sweep_seconds": time.time() - t0,
                                                        "process_seconds": process_s},
                                ended=None if trial is None else trial.ended)
        if state is not None:
            return state
    if trial is not None:
        trial.ended("failed")
    _record_failed(q, claim, run_dir, reason, s.retries + 1)
    return "failed"


def _record_pruned(q: Queue, claim: Claim, trial, run_dir: Path, attrs: dict) -> str:
    """Record an lr_search trial the median pruner stopped (`trial`: its `sweeps.lr_search.TrialRun`)."""
    trial.ended("pruned")
    q.finish(claim.trial_id, TrialState.PRUNED, {"state": "pruned", "reason": trial.why, "run_dir": str(run_dir),
                                                 **attrs})
    return "pruned"


def _record(q: Queue, claim: Claim, run_dir: Path, rc: int | None, attrs: dict, log: Path | None = None,
            ended: Callable[[str, float | None], None] | None = None) -> tuple[str | None, str]:
    """Record the point's outcome from RUN_DIR/result.json where its process exited 0 (`rc`; None: a member
    of an ensemble, whose own result decides) and the run ended completed or diverged: (its state, ""); else
    nothing is recorded: (None, why it failed, from the result or the last line of `log`, default
    RUN_DIR/train.log). ``ended(state, val_loss)`` is called first (an lr_search trial tells its study)."""
    result = None
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        pass
    status = (result or {}).get("status")
    if rc in (0, None) and status in ("completed", "diverged"):
        row = flatten_result(result)
        val = row.get("val_loss")
        finite = isinstance(val, (int, float)) and math.isfinite(val)
        state = "completed" if status == "completed" and finite else "diverged"
        attrs = {"result": row, "state": state, "run_dir": str(run_dir), **attrs}
        if ended is not None:
            ended(state, float(val) if state == "completed" else None)
        if state == "completed":
            q.finish(claim.trial_id, TrialState.COMPLETE, attrs, float(val))
        else:
            q.finish(claim.trial_id, TrialState.PRUNED, attrs)
        return state, ""
    why = _last_line(log or run_dir / "train.log")
    return None, (result or {}).get("error") or (why if rc is None else f"exit {rc}: {why}")


def _record_failed(q: Queue, claim: Claim, run_dir: Path, reason: str, attempts: int) -> None:
    q.finish(claim.trial_id, TrialState.FAIL,
             {"state": "failed", "reason": str(reason)[:500], "attempts": attempts, "run_dir": str(run_dir)})


def run_group(q: Queue, claims: list[Claim], s: WorkerSettings) -> str:
    """Run the claimed points of one seed group together (``scaling train --members``, `scaling.ensemble`);
    returns "stopped" if the worker was stopped, else the first point's state.

    Each member trains in its own folder ``runs/<run_key>`` exactly as its solo run would and is recorded on
    its own; the group's checkpoint is in ``runs/<group>`` (`MEMBERS_FILE` says for which members, so a
    checkpoint of another set of members is set aside, not resumed). A failed attempt is retried with the
    members that have no result yet.
    """
    if len(claims) == 1:
        return run_point(q, claims[0], s)
    dirs = {}
    for claim in claims:
        run_dir = s.sweep_dir / "runs" / claim.run_key
        _set_aside_other_code(run_dir, claim.attrs.get("code_version"))
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "run.yaml", yaml.safe_dump(_run_config(claim, s, run_dir), sort_keys=True))
        dirs[claim.run_key] = run_dir
    group_dir = s.sweep_dir / "runs" / str(claims[0].attrs["group"])
    group_dir.mkdir(parents=True, exist_ok=True)
    env = run_env(group_dir, group=s.sweep, job_type="train")
    pending, states, reasons = list(claims), {}, {}
    t0, process_s = time.time(), 0.0
    for attempt in range(1, s.retries + 2):
        todo = [c for c in pending if finished_result(dirs[c.run_key]) is None]
        if todo:
            for c in todo:
                (dirs[c.run_key] / "result.json").unlink(missing_ok=True)  # a failed attempt's result must not pass
            _own_checkpoint(group_dir, [c.run_key for c in todo])
            members = ",".join(str(dirs[c.run_key] / "run.yaml") for c in todo)
            t_proc = time.time()
            try:
                _train(q, pending, ["--members", members, "--out", str(group_dir)], group_dir, env)
            except BaseException:
                for c in pending:
                    _hand_back(q, c)
                raise
            process_s += time.time() - t_proc
        for c in list(pending):
            # A member's own result decides: an ensemble exits 1 when any member failed.
            state, reasons[c.run_key] = _record(q, c, dirs[c.run_key], None, {
                "attempts": attempt, "sweep_seconds": time.time() - t0, "process_seconds": process_s,
                "trained_with": [k.run_key for k in claims if k is not c]}, log=group_dir / "train.log")
            if state is not None:
                states[c.run_key] = state
                pending.remove(c)
        if _Stop.signum is not None and pending:
            for c in pending:
                _hand_back(q, c)
            return "stopped"
        if not pending:
            break
    for c in pending:
        _record_failed(q, c, dirs[c.run_key], reasons[c.run_key], s.retries + 1)
        states[c.run_key] = "failed"
    return states[claims[0].run_key]


MEMBERS_FILE = "members.json"
"""In a group's folder: the run keys its checkpoint holds (written before each attempt)."""


def _own_checkpoint(group_dir: Path, keys: list[str]) -> None:
    """Set the group's checkpoint aside if it was made for other members than `keys` (it would be refused)."""
    path = group_dir / MEMBERS_FILE
    try:
        before = json.loads(path.read_text()).get("keys")
    except (OSError, ValueError, AttributeError):
        before = None
    ckpt = group_dir / "checkpoints"
    if ckpt.exists() and before != sorted(keys):
        n = 1
        while (aside := group_dir / f"checkpoints.other-members.{n}").exists():
            n += 1
        ckpt.rename(aside)
    write_atomic(path, json.dumps({"keys": sorted(keys)}))


def _hand_back(q: Queue, claim: Claim) -> None:
    """Put a claimed point back in the queue now; if the storage cannot be reached, its heartbeat
    going stale does the same later."""
    try:
        q.release(claim.trial_id)
    except Exception as exc:  # noqa: BLE001 - the worker is stopping either way
        sys.stderr.write(f"sweep worker: could not hand point {claim.run_key} back ({exc}); "
                         "it is re-queued once its heartbeat goes stale\n")


def _fail_orphans(q: Queue, states: dict) -> None:
    """WSD cooldowns whose stable phase failed can never run: record them as failed."""
    for key, (state, t) in states.items():
        dep = t.user_attrs.get("depends_on")
        if state == "waiting" and dep and states.get(dep, ("", None))[0] in ("failed", "diverged"):
            c = q.claim(ready=lambda a, k=key: a.get("run_key") == k)
            if c is not None:
                q.finish(c.trial_id, TrialState.FAIL,
                         {"state": "failed", "reason": f"stable phase {dep} {states[dep][0]}"})


def _warm_up() -> None:
    """Wait for the fork server's imports before the first claim: a point claimed meanwhile would sit
    idle while another worker (maybe on another machine) could have run it."""
    global _SERVER_BROKEN
    server = _fork_server()
    if server is None:
        return
    try:
        server.wait_ready()
    except forkserver.ForkServerDied as exc:
        sys.stderr.write(f"sweep worker: {exc} during its imports; starting runs as fresh processes\n")
        _SERVER_BROKEN = True


@contextmanager
def _stop_on_sigterm():
    """SIGTERM stops the worker through :class:`_Stop` while :func:`work` runs (only the main thread has signals)."""
    _Stop.signum, _Stop.pid = None, None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _Stop.handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def work(q: Queue, s: WorkerSettings, max_runs: int | None = None) -> int:
    """Run points until none is left (or ``max_runs``); returns how many this worker ran.

    A worker limited to some sizes stops once no point of its sizes waits or runs, whatever other
    sizes still do: on SLURM it gives its allocation back instead of polling.
    SIGTERM stops it: the run in progress ends and its point goes back to the queue.
    """
    done = 0
    _warm_up()
    with _stop_on_sigterm():
        while (max_runs is None or done < max_runs) and _Stop.signum is None:
            q.requeue_stale()
            states = q.point_states()
            _fail_orphans(q, states)
            claims = q.claim_group(ready=functools.partial(_ready, s=s, states=states))
            if claims:
                if run_group(q, claims, s) == "stopped":
                    break
                done += len(claims)
                continue
            states = q.point_states()
            mine = [(st, t) for st, t in states.values() if _mine(t.user_attrs, s)]
            running = sum(1 for st, _ in mine if st == "running")
            waiting = [t for st, t in mine if st == "waiting"]
            if not s.wait or (running == 0 and not waiting):
                break
            if running == 0 and not any(_ready(t.user_attrs, s, states) for t in waiting):
                break  # only blocked points left and nothing running that could unblock them
            time.sleep(s.poll_s)
    return done


def _ready(attrs: dict, s: WorkerSettings, states: dict) -> bool:
    """Whether a waiting point can be claimed now: of this worker's sizes, its stable phase (if any)
    completed in ``states`` (:meth:`Queue.point_states`), and that phase's checkpoint on this disk."""
    if not _mine(attrs, s):
        return False
    dep, branch = attrs.get("depends_on"), attrs.get("branch")
    if dep is not None and states.get(dep, ("", None))[0] != "completed":
        return False
    # Without a shared disk only the machine that trained the stable phase has its checkpoint.
    return not branch or (s.sweep_dir / "runs" / branch["from_key"] / "checkpoints"
                          / branch["checkpoint"]).exists()


def _mine(attrs: dict, s: WorkerSettings) -> bool:
    """Whether a point is of this worker's sizes."""
    return s.sizes is None or str(attrs.get("size")) in s.sizes
