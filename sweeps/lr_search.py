"""Learning-rate selection per model size: Optuna TPE with median pruning on a small budget.

Before the main design, each model size gets a study ``<sweep>.lr.<size>`` in the sweep's storage:
``trials`` short runs (``lr_search.samples`` samples each) with the learning rate drawn log-uniformly
in ``[low, high]`` by TPE. Each trial is a real ``scaling train`` process; its validation losses are
read from ``metrics.csv`` while it runs and reported to Optuna, and a trial the median pruner stops
is killed and recorded as pruned. The best trial's lr is used by every main run of that size; the
trials appear in the results table with ``phase = lr_search``. Concurrent ``sweep run`` processes
share the studies (``MaxTrialsCallback`` caps the total) and wait for each other's trials.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import yaml
from optuna.trial import TrialState

from sweeps.runproc import die_with_parent, finished_result, flatten_result, run_command, run_env
from sweeps.store import HOST, process_start
from vla_core.errors import BadInput

if TYPE_CHECKING:
    from sweeps.sweep import Sweep

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def study_name(sweep: str, size) -> str:
    """Name of the lr study of one model size."""
    return f"{sweep}.lr.{size}"


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


def _objective(sw: "Sweep", size, data):

    ls = sw.spec.lr_search
    assert ls is not None

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", ls.low, ls.high, log=True)
        trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid(), "pid_start": process_start(os.getpid())})
        run_dir = sw.dir / "lr_search" / str(size) / f"trial-{trial.number}"
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg = {**sw.spec.train_dict, "size": size, "samples": ls.samples, "seed": sw.spec.seeds[0], "lr": lr,
               "data": data, "out": str(run_dir), "wandb_group": sw.spec.name}
        (run_dir / "run.yaml").write_text(yaml.safe_dump(cfg))
        env = run_env(run_dir, group=sw.spec.name, job_type="lr_search")
        reported: set[int] = set()
        with open(run_dir / "train.log", "ab") as log:
            proc = subprocess.Popen(run_command(run_dir / "run.yaml"), stdout=log, stderr=subprocess.STDOUT,
                                    env=env, preexec_fn=die_with_parent)
            while proc.poll() is None:
                time.sleep(1.0)
                for step, loss in _val_losses(run_dir / "metrics.csv"):
                    if step not in reported:
                        reported.add(step)
                        trial.report(loss, step)
                if reported and trial.should_prune():
                    proc.kill()
                    proc.wait()
                    trial.set_user_attr("state", "pruned")
                    raise optuna.TrialPruned()
        result = finished_result(run_dir)
        if proc.returncode != 0 or result is None or result.get("val_loss") is None:
            trial.set_user_attr("state", "failed")
            raise RuntimeError(f"lr trial exit {proc.returncode}")
        trial.set_user_attr("result", flatten_result(result))
        trial.set_user_attr("state", "completed" if result["status"] == "completed" else "diverged")
        if result["status"] != "completed":
            raise optuna.TrialPruned()
        return float(result["val_loss"])

    return objective


def search(sw: "Sweep") -> dict[str, float]:
    """Run (or join) the lr search of every model size; returns ``{str(size): best lr}``."""
    ls = sw.spec.lr_search
    assert ls is not None
    data = sw.local_data()
    q = sw.queue  # the same storage as the main study
    for size in sw.spec.models:
        study = optuna.create_study(
            study_name=study_name(sw.queue.name, size), storage=q.storage, direction="minimize",
            load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=min(3, ls.trials)),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        )
        cap = optuna.study.MaxTrialsCallback(ls.trials, states=None)
        if len(study.get_trials(deepcopy=False)) < ls.trials:
            study.optimize(_objective(sw, size, data), n_trials=ls.trials, callbacks=[cap],
                           catch=(RuntimeError,))
        while _reap(study):
            time.sleep(2.0)  # another process's trials of this size are still running
    q.set_info(lr_models=[str(m) for m in sw.spec.models])
    return chosen_lrs(sw)


def _reap(study: optuna.Study) -> bool:
    """Fail trials whose process on this host died (kill -9); True while live trials remain."""
    optuna.storages.fail_stale_trials(study)  # RDB: heartbeats
    live = False
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = t.user_attrs.get("worker") or {}
        if w.get("host") == HOST and process_start(int(w.get("pid", 0))) != w.get("pid_start"):
            try:
                study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
        else:
            live = True
    return live


def chosen_lrs(sw: "Sweep") -> dict[str, float]:
    """The best lr per model size from finished searches (BadInput when a size has no completed trial)."""
    out = {}
    for size in sw.spec.models:
        try:
            study = optuna.load_study(study_name=study_name(sw.queue.name, size), storage=sw.queue.storage)
        except KeyError:
            continue  # not searched yet: `sweep plan` shows the spec's default lr
        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if not done:
            if len(study.get_trials(deepcopy=False)) >= sw.spec.lr_search.trials:  # type: ignore[union-attr]
                raise BadInput(f"lr_search: no trial of size {size!r} completed; widen low/high or raise samples")
            continue
        out[str(size)] = float(min(done, key=lambda t: t.value).params["lr"])
    return out


# A trial that ended without saying how (its worker was killed): Optuna's state in the table's words.
_STATE = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def lr_rows(sw_name: str, storage, models) -> list[dict]:
    """The lr-search trials as results-table rows (``phase = lr_search``)."""
    rows = []
    for size in models:
        try:
            study = optuna.load_study(study_name=study_name(sw_name, size), storage=storage)
        except KeyError:
            continue
        for t in study.get_trials(deepcopy=False):
            if not t.state.is_finished():
                continue
            r = dict(t.user_attrs.get("result") or {})
            r.update(sweep=sw_name, run_key=f"lr-{size}-{t.number}", state=t.user_attrs.get("state", _STATE[t.state.name]),
                     phase="lr_search", size=str(size), lr=t.params.get("lr"))
            rows.append(r)
    return rows
