"""Learning-rate search per model size: Optuna TPE with median pruning, its trials points of the sweep's queue.

With ``lr_search:`` in a spec, each model size runs ``lr_search.trials`` short runs (``lr_search.samples``
samples, the spec's first seed) whose learning rate TPE draws log-uniformly in ``[low, high]``; the
completed trial with the lowest val_loss gives the lr of every run of that size. The trials are
ordinary points of the queue with ``phase = lr_search``: any worker, local or SLURM, claims, retries,
heartbeats, re-queues and records them as it does any point, and each is a row of the results table.

An Optuna study per size, ``<queue study>.lr.<size>`` in the sweep's storage, is TPE's memory:

- asked: a trial is asked when its point is created (:meth:`Search.advance`, under the queue's lock):
  the first ``min(3, trials)`` together (TPE's random start-up trials, seeded by size and trial
  number, so a re-run of the spec asks the same lrs and finds their runs), each later one once those
  have ended, at most three of a size waiting or running, never more than ``trials`` per size;
- reported: while a trial runs, its worker reads the validation losses of its ``metrics.csv`` and
  reports them; a trial the median pruner stops is ended and recorded ``pruned`` (:class:`TrialRun`);
- told: the worker tells the trial's outcome when its point ends, before recording the point.

When every trial of a size has ended, the worker that records the last one (or else the next ``sweep
run``) enqueues the size's own points, planned with its lr, and records the lr in the queue
(``lr_chosen``), under the same lock, once: their run keys depend on the lr. Until then the plan holds
the size's trials in place of its points (:func:`with_trials`; ``sweep plan`` prints them and opens no
storage).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from sweeps import auto_precision, generation
from sweeps.data_source import data_dims
from sweeps.plan import plan_runs
from sweeps.points import PlannedRun, base_config, run_key
from sweeps.spec import LRSearchSpec, SweepSpec, load_spec
from sweeps.store import Claim, Queue
from vla_core.errors import BadInput

PHASE = "lr_search"
STARTUP = 3
"""TPE's random start-up trials per size (asked together), and the most trials of a size waiting or running."""
ENDED = ("completed", "diverged", "pruned", "failed")
"""Point states in which a trial has ended."""


def study_name(sweep: str, size: Any) -> str:
    """Name of the lr study of one model size (``sweep``: the queue's study name)."""
    return f"{sweep}.lr.{size}"


def chosen(q: Queue) -> dict[str, float]:
    """The lr of each size whose search has ended, ``{str(size): lr}``, as recorded in the queue."""
    return {str(k): float(v) for k, v in (q.info().get("lr_chosen") or {}).items()}


def _startup(ls: LRSearchSpec) -> int:
    return min(STARTUP, ls.trials)


def _ask(study: optuna.Study, size: Any, ls: LRSearchSpec) -> tuple[int, float]:
    """Ask the study's next trial: (its number, its lr). TPE is seeded by the size and the trial's number: any
    process asks trial n of a size as any other would, and a re-run of the spec asks what the last one asked
    (a sampler seeded once per process would draw the same first lrs in every process)."""
    number = len(study.get_trials(deepcopy=False))
    seed = int(hashlib.sha256(f"{size}:{number}".encode()).hexdigest()[:8], 16)
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=_startup(ls), constant_liar=True)
    with warnings.catch_warnings():  # a database storage has heartbeats: for the queue's points, not these
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        trial = study.ask({"lr": FloatDistribution(ls.low, ls.high, log=True)})
    return trial.number, float(trial.params["lr"])


def _trial_run(spec: SweepSpec, like: PlannedRun, lr: float | None) -> PlannedRun:
    """A trial of ``like``'s size at ``lr`` (None: not asked yet, its key ``-``). Its W&B job type says what it
    is, and keeps its key apart from a run of the design with the same size, samples and lr."""
    ls = spec.lr_search
    assert ls is not None
    cfg = base_config(spec, like.size, ls.samples, spec.seeds[0], None if lr is None else {str(like.size): lr})
    cfg["wandb_job_type"] = PHASE
    return PlannedRun(key="-" if lr is None else run_key(cfg, spec.data.identity()), phase=PHASE, size=like.size,
                      n_params=like.n_params, samples=ls.samples, seed=spec.seeds[0],
                      flops=float(like.flops_per_sample) * ls.samples, flops_per_sample=like.flops_per_sample,
                      config=cfg, precision=like.precision, family=like.family)


def with_trials(spec: SweepSpec, runs: list[PlannedRun], lrs: dict[str, float]) -> list[PlannedRun]:
    """The plan of a spec with an lr search: each model size of the ladder whose lr is not in ``lrs`` has its
    ``trials`` trials in place of its own runs. The keys of its seeded start-up trials are known now (an
    in-memory study asks them as the sweep's will); TPE's later ones are ``-``, asked as trials end."""
    ls = spec.lr_search
    assert ls is not None
    open_sizes = {str(m) for m in spec.models} - set(lrs)
    trials = []
    for size in spec.models:
        like = next((r for r in runs if str(r.size) == str(size)), None)
        if str(size) not in open_sizes or like is None:  # chosen, or a size the design gives no run
            continue
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="minimize")  # in memory
        for i in range(ls.trials):
            trials.append(_trial_run(spec, like, _ask(study, size, ls)[1] if i < _startup(ls) else None))
    return trials + [r for r in runs if str(r.size) not in open_sizes]


def plan_notes(spec: SweepSpec, runs: list[PlannedRun]) -> list[str]:
    """What `sweep plan` says under the table of a spec with an lr search: one line per size still searching."""
    ls = spec.lr_search
    assert ls is not None
    sizes = dict.fromkeys(str(r.size) for r in runs if r.phase == PHASE)
    lines = ([f"lr_search: {ls.trials} trials per size of {ls.samples:,} samples, lr log-uniform in "
              f"[{ls.low:g}, {ls.high:g}] by TPE (key -: asked once the first {_startup(ls)} have ended)"]
             if sizes else [])
    return lines + [f"size {size}: its runs await its lr search (their lr, hence their run keys, come from it)"
                    for size in sizes]


def _val_losses(metrics: Path) -> list[tuple[int, float]]:
    """(samples, val_loss) rows of a run's metrics.csv so far."""
    out = []
    try:
        with open(metrics) as f:
            for row in csv.DictReader(f):
                if row.get("val_loss"):
                    out.append((int(float(row.get("samples") or row.get("step") or 0)), float(row["val_loss"])))
    except (OSError, ValueError):
        pass
    return out


def _say(line: str) -> None:
    sys.stderr.write(f"lr_search: {line}\n")


def _trials(q: Queue, ending: tuple[str, str, float | None] | None = None) -> dict[str, dict[str, tuple]]:
    """The trial points per size: ``{str(size): {run_key: (state, val_loss, lr, lr_trial)}}``; ``ending``
    (run key, state, val_loss) is a point being recorded now, counted in that state."""
    out: dict[str, dict[str, tuple]] = {}
    for key, (state, t) in q.point_states().items():
        a = t.user_attrs
        if a.get("phase") != PHASE:
            continue
        value = t.value if state == "completed" else None
        if ending is not None and key == ending[0]:
            state, value = ending[1], ending[2]
        out.setdefault(str(a.get("size")), {})[key] = (state, value, (a.get("config") or {}).get("lr"),
                                                       a.get("lr_trial"))
    return out


def _ended(points: dict[str, tuple], ls: LRSearchSpec) -> bool:
    return len(points) >= ls.trials and all(p[0] in ENDED for p in points.values())


def _best(trials: dict[str, dict[str, tuple]], ls: LRSearchSpec) -> dict[str, float]:
    """The lr of each size whose trials have all ended, from its completed trial with the lowest val_loss."""
    out = {}
    for size, points in trials.items():
        done = sorted((v, key, lr) for key, (st, v, lr, _) in points.items() if st == "completed" and v is not None)
        if _ended(points, ls) and done:
            out[size] = float(done[0][2])
    return out


def _to_ask(asked: int, ended: int, ls: LRSearchSpec) -> int:
    """How many trials a size asks now: its start-up trials at once; the others once those have ended, keeping
    at most ``min(3, trials)`` in flight."""
    start = _startup(ls)
    if asked < start:
        return start - asked
    if ended < start:
        return 0
    return max(0, min(ls.trials - asked, start - (asked - ended)))


def stalled(q: Queue, spec: SweepSpec) -> list[str]:
    """Sizes whose trials have all ended with none completed (their runs cannot be planned)."""
    assert spec.lr_search is not None
    done = chosen(q)
    return [size for size, points in _trials(q).items()
            if size not in done and _ended(points, spec.lr_search) and not _best({size: points}, spec.lr_search)]


def searching(q: Queue) -> list[str]:
    """Sizes with trials in the queue and no lr chosen yet (their runs are not in the queue)."""
    done = chosen(q)
    return [size for size in _trials(q) if size not in done]


@dataclass
class Search:
    """The lr search of a sweep's generation, on this machine (its data)."""

    spec: SweepSpec
    gen: generation.Generation
    data: Any
    """This machine's ``data`` value of RunConfig."""

    @classmethod
    def of_worker(cls, q: Queue, sweep_dir: Path, data: Any) -> Search | None:
        """The search as a worker sees it: the spec file named by ``SWEEP_DIR/sweep.json``; None (said on
        stderr) where that file is gone or now plans other runs: the next ``sweep run`` goes on with it."""
        info = q.info()
        try:
            spec = load_spec(json.loads((sweep_dir / "sweep.json").read_text())["spec"])
        except (OSError, ValueError, KeyError, BadInput) as exc:
            _say(f"cannot read the sweep's spec ({exc}); the next `scaling sweep run` goes on with the search")
            return None
        if info.get("spec_fingerprint") not in (None, spec.fingerprint()) or spec.lr_search is None:
            _say(f"{spec.source} changed since the sweep was planned; the next `scaling sweep run` of the "
                 "sweep's spec goes on with the search")
            return None
        gen = generation.Generation(q.name, int(info.get("generation") or 0), spec.fingerprint(),
                                    info.get("code_version"), True)
        return cls(spec, gen, data)

    def plan(self, q: Queue, lrs: dict[str, float]) -> list[PlannedRun]:
        """The sweep's runs with the lr of each size in ``lrs``, each other size's trials in their place."""
        runs = plan_runs(self.spec, data_dims(self.data), lrs)
        ledger = auto_precision.in_ledger(q) if auto_precision.needed(self.spec) else None
        _, runs, _ = auto_precision.settle(self.spec, runs, self.data, ledger, write=False)
        return with_trials(self.spec, runs, lrs)

    def advance(self, q: Queue, ending: tuple[str, str, float | None] | None = None) -> int:
        """Take every size's search as far as it goes now: ask the trials it may have, and enqueue the runs of
        each size whose trials have all ended (recording its lr). Returns how many points were added.

        Args:
            ending: (run key, state, val_loss) of a trial point its worker is about to record, counted as ended.
        """
        ls = self.spec.lr_search
        assert ls is not None
        # The plan outside the lock (a family that measures its FLOPs takes seconds), with the lr of each size
        # whose trials have all ended; planned again if, under the lock, that is no longer what the queue says.
        lrs = {**_best(_trials(q, ending), ls), **chosen(q)}
        while True:
            runs = self.plan(q, lrs)
            like: dict[str, PlannedRun] = {}  # a trial of each size still searching
            for r in runs:
                if r.phase == PHASE:
                    like.setdefault(str(r.size), r)
            with q.lock():
                trials, done = _trials(q, ending), chosen(q)
                now = {**_best(trials, ls), **done}
                if now != lrs:
                    lrs = now
                    continue
                added = 0
                for size, trial in like.items():
                    points = trials.get(size, {})
                    n = _to_ask(len(points), sum(p[0] in ENDED for p in points.values()), ls)
                    if n:
                        added += self._ask_points(q, trial, points, n)
                    elif _ended(points, ls) and ending is not None and ending[0] in points:
                        _say(f"no trial of size {size} completed; its runs wait (widen low/high or raise samples)")
                new = {size: lr for size, lr in now.items() if size not in done}
                if new:
                    # The runs first, then the record: a process killed between the two leaves a record to
                    # make, never runs missing behind one.
                    added += q.enqueue_locked([generation.point(r, self.gen) for r in runs
                                               if str(r.size) in new and r.phase != PHASE])
                    q.set_info(lr_chosen={**done, **new})
                return added

    def _ask_points(self, q: Queue, like: PlannedRun, points: dict[str, tuple], n: int) -> int:
        """Ask ``n`` trials of ``like``'s size and enqueue their points (the caller holds the lock)."""
        ls = self.spec.lr_search
        assert ls is not None
        study = optuna.create_study(study_name=study_name(q.name, like.size), storage=q.storage,
                                    direction="minimize", load_if_exists=True)
        have = {p[3] for p in points.values()}
        # Asked by a process that died before enqueueing its point: its point now, no trial asked in vain.
        orphans = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number not in have]
        added = 0
        for _ in range(n):
            if orphans:
                t = orphans.pop(0)
                number, lr = t.number, float(t.params["lr"])
            else:
                number, lr = _ask(study, like.size, ls)
            p = generation.point(_trial_run(self.spec, like, lr), self.gen)
            p["attrs"]["lr_trial"] = number
            if not q.enqueue_locked([p]):  # its run key is in the queue already: the same lr asked twice
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
                break
            added += 1
        return added


class TrialRun:
    """A worker's trial point while it runs: its Optuna trial is reported to from the run's metrics.csv (the
    median pruner may stop it) and told how the point ended, before the point is recorded."""

    def __init__(self, q: Queue, claim: Claim, run_dir: Path, sweep_dir: Path, data: Any) -> None:
        self.q, self.claim, self.run_dir, self.sweep_dir, self.data = q, claim, run_dir, sweep_dir, data
        self.study = optuna.load_study(study_name=study_name(q.name, claim.attrs.get("size")), storage=q.storage,
                                       pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
        self.number = int(claim.attrs["lr_trial"])
        storage = self.study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, self.number)
        self.trial = optuna.trial.Trial(self.study, trial_id)
        frozen = storage.get_trial(trial_id)
        self.reported = set(frozen.intermediate_values)
        self.open = frozen.state == TrialState.RUNNING
        self.pruned = frozen.state == TrialState.PRUNED  # told so before its worker died
        self.why = "pruned by the median rule" if self.pruned else ""

    def prune(self) -> bool:
        """Report the run's new validation losses; True once the median pruner stops the trial."""
        if self.pruned or not self.open:
            return self.pruned
        for step, loss in _val_losses(self.run_dir / "metrics.csv"):
            if step not in self.reported:
                self.reported.add(step)
                self.trial.report(loss, step)
                if self.trial.should_prune():
                    self.pruned = True
                    self.why = (f"pruned by the median rule at {step} samples (val_loss {loss:.4g}, above the "
                                "median of the completed trials there)")
                    break
        return self.pruned

    def ended(self, state: str, value: float | None = None) -> None:
        """Tell the trial how its point ended (completed, diverged, pruned or failed) and take the search a step
        on, while the point still runs: no worker sees the sweep idle between the two."""
        told = {"completed": TrialState.COMPLETE, "failed": TrialState.FAIL}.get(state, TrialState.PRUNED)
        self.study.tell(self.number, value if told == TrialState.COMPLETE else None, state=told,
                        skip_if_finished=True)
        search = Search.of_worker(self.q, self.sweep_dir, self.data)
        if search is None:
            return
        try:
            search.advance(self.q, (self.claim.run_key, state, value))
        except (BadInput, ValueError, RuntimeError) as exc:  # the point is recorded either way
            _say(f"{exc}; the next `scaling sweep run` goes on with the search")
