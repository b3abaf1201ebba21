"""The lr search as points of the one engine, with the fake trainer: trials run by `sweep worker` processes,
at most `trials` per size whoever asks, each size's runs enqueued once after its search, pruned trials
recorded so, and a plan that writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest

from sweeps.cli import main
from sweeps.sweep import Sweep
from tests.proc import finish, run_group

CLI = [sys.executable, "-m", "sweeps.cli"]
SEARCH = {"trials": 4, "samples": 64, "low": 1e-4, "high": 1e-1}


def _spec(spec_file, **kw):
    return spec_file(train={"batch_size": 16}, lr_search=SEARCH, **kw)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: (size, mtime in ns)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _trial_points(sw: Sweep) -> dict[str, list]:
    """The lr_search points in the queue per size (every trial, retired duplicates included)."""
    out: dict[str, list] = {}
    for t in sw.queue.trials():
        if t.user_attrs.get("phase") == "lr_search":
            out.setdefault(str(t.user_attrs["size"]), []).append(t)
    return out


def _lr_study(sw: Sweep, size: str) -> optuna.Study:
    from sweeps.lr_search import study_name

    return optuna.load_study(study_name=study_name(sw.queue.name, size), storage=sw.queue.storage)


def test_plan_of_an_lr_search_writes_nothing_anywhere(tmp_path, spec_file, capsys):
    spec = _spec(spec_file)
    before = _tree(tmp_path)
    db = tmp_path / "sweeps.db"
    for storage in ([], ["--storage", f"sqlite:///{db}"]):
        assert main(["sweep", "plan", str(spec), "--dir", str(tmp_path / "d"), "--no-calibrate", *storage]) == 0
    assert _tree(tmp_path) == before  # no folder, journal, database or spec edit
    out = capsys.readouterr().out
    rows = [ln.split() for ln in out.splitlines() if " lr_search " in ln]
    assert len(rows) == 2 * 2 * SEARCH["trials"]  # both plans, both sizes
    assert sum(r[0] == "-" for r in rows) == 2 * 2 * (SEARCH["trials"] - 3)  # TPE's, asked as trials end
    assert "size 100000.0: its runs await its lr search" in out and "size 200000.0: its runs await" in out
    assert " main " not in out


def test_a_fresh_sweep_asks_the_trials_its_plan_shows_and_no_more(tmp_path, spec_file):
    """The sampler is seeded by size and trial number: any sweep of the spec asks the same first lrs (and finds
    their runs); while none of them has ended, enqueueing again asks nothing."""
    spec = _spec(spec_file, models=[1e5])
    shown = {r.key for r in Sweep.open(spec, tmp_path / "plan").plan() if r.key != "-"}
    for d in ("a", "b"):
        sw = Sweep.open(spec, tmp_path / d)
        assert sw.enqueue() == 3 and sw.enqueue() == 0
        assert {t.user_attrs["run_key"] for t in _trial_points(sw)["100000.0"]} == shown
        assert len(_lr_study(sw, "100000.0").trials) == 3


@pytest.mark.slow
def test_lr_search_trials_are_run_by_sweep_worker_processes(tmp_path, spec_file, fake_env, runs_of):
    """This process only enqueues: two `sweep worker` processes run every trial, and the runs each search
    enqueues when it ends."""
    sw = Sweep.open(_spec(spec_file), tmp_path / "d")
    sw.enqueue()
    env = {**fake_env, "SCALING_STORAGE": str(sw.dir / "optuna.journal")}
    cmd = [*CLI, "sweep", "worker", "--study", sw.queue.name, "--dir", str(sw.dir)]
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True) for _ in range(2)]
    for w in workers:
        rc, err = finish(w, timeout=300)
        assert rc == 0, err
    states = sw.queue.point_states()
    phases = Counter(t.user_attrs["phase"] for _, t in states.values())
    assert phases == {"lr_search": 2 * SEARCH["trials"], "main": 4}
    assert {st for st, _ in states.values()} == {"completed"}
    ran_by = {t.user_attrs["worker"]["pid"] for _, t in states.values()}
    assert ran_by <= {w.pid for w in workers} and os.getpid() not in ran_by
    assert Counter(k for ev, k, *_ in runs_of(sw.dir) if ev == "finish") == Counter(set(states))  # each once
    df = sw.table()
    assert Counter(df["phase"]) == {"lr_search": 8, "main": 4} and set(df["state"]) == {"completed"}


@pytest.mark.slow
def test_two_concurrent_sweep_runs_share_one_search_per_size(tmp_path, spec_file, fake_env, runs_of):
    """Two `sweep run` processes (a worker each) start together: each size gets `trials` trials, asked once;
    its runs appear once, after its search, with its best trial's lr; a plan afterwards writes nothing."""
    spec = _spec(spec_file)
    d = tmp_path / "d"
    cmd = [*CLI, "sweep", "run", str(spec), "--dir", str(d), "--no-progress"]
    procs = [subprocess.Popen(cmd, env=fake_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for _ in range(2)]
    for p in procs:
        rc, err = finish(p, timeout=300)
        assert rc == 0, err
    sw = Sweep.open(spec, d)
    chosen = {}
    for size, trials in _trial_points(sw).items():
        assert len({t.user_attrs["run_key"] for t in trials}) == SEARCH["trials"], size
        study = _lr_study(sw, size)
        assert len(study.trials) == SEARCH["trials"] and {t.number for t in study.trials} == {
            t.user_attrs["lr_trial"] for t in trials}
        best = min((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
        chosen[size] = best.user_attrs["config"]["lr"]
        ended = max(t.datetime_complete for t in study.trials)  # told, before its point is recorded
        mains = [t for t in sw.queue.trials() if t.user_attrs.get("phase") == "main"
                 and str(t.user_attrs["size"]) == size]
        assert len(mains) == 2 and {t.user_attrs["config"]["lr"] for t in mains} == {chosen[size]}
        assert all(t.datetime_start > ended for t in mains)  # claimed only after every trial of its size ended
    assert sw.queue.info()["lr_chosen"] == pytest.approx(chosen)
    planned = {r.key for r in sw.plan(lrs=chosen) if r.phase == "main"}
    df = pd.read_csv(d / "results.csv")
    assert set(df[df["phase"] == "main"]["run_key"]) == planned and len(df) == 2 * SEARCH["trials"] + 4
    assert max(Counter(k for ev, k, *_ in runs_of(d) if ev == "start").values()) == 1
    before = _tree(tmp_path)
    assert main(["sweep", "plan", str(spec), "--dir", str(d), "--no-calibrate"]) == 0
    assert _tree(tmp_path) == before


@pytest.mark.slow
def test_a_pruned_trial_is_ended_and_its_row_says_pruned(tmp_path, spec_file, fake_env, runs_of):
    """Two completed trials already in the size's study, better at every step than any run of the fake
    trainer: the median pruner stops each new trial at its first validation, and its worker ends the run."""
    from optuna.distributions import FloatDistribution

    from sweeps.lr_search import study_name

    spec = spec_file(train={"batch_size": 16}, models=[1e5], samples=[64],
                     lr_search={**SEARCH, "trials": 2})
    sw = Sweep.open(spec, tmp_path / "d")
    study = optuna.create_study(study_name=study_name(sw.queue.name, "100000.0"), storage=sw.queue.storage)
    for lr in (1e-3, 2e-3):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr}, distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)}, value=0.1,
            intermediate_values={16 * (s + 1): 0.1 for s in range(40)}))
    sw.enqueue()
    env = {**fake_env, "FAKE_STEPS": "40", "FAKE_STEP_S": "0.5", "SCALING_STORAGE": str(sw.dir / "optuna.journal")}
    r = run_group([*CLI, "sweep", "worker", "--study", sw.queue.name, "--dir", str(sw.dir)], env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    df = sw.table()
    trials = df[df["phase"] == "lr_search"]
    assert len(trials) == 2 and set(trials["state"]) == {"pruned"}, trials[["state", "reason"]]
    assert trials["reason"].str.contains("pruned by the median rule").all()
    assert not [ln for ln in runs_of(sw.dir) if ln[0] == "finish"]  # ended mid-run, not trained to the end
    assert {t.state for t in study.trials[2:]} == {optuna.trial.TrialState.PRUNED}
    # No trial completed, so no lr and no runs of the size: `sweep run` says so after writing the table.
    r = run_group([*CLI, "sweep", "run", str(spec), "--dir", str(sw.dir), "--no-progress"], env=env, timeout=300)
    assert r.returncode == 2 and "lr_search: no trial of size 100000.0 completed" in r.stderr, r.stderr
    assert set(pd.read_csv(sw.dir / "results.csv")["state"]) == {"pruned"}
