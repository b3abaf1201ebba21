"""A changed spec or code is never mixed into a sweep silently; failed points can be retried; secrets stay secret."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sweeps.cli import main
from sweeps.sweep import Sweep

from specfiles import write_spec


def _run(spec, d, *flags) -> int:
    return main(["sweep", "run", str(spec), "--dir", str(d), "--no-progress", *flags])


def test_changed_spec_is_refused_then_planned_as_a_new_generation(tmp_path, sweep_dataset, fake_env, runs_of, capsys):
    d = tmp_path / "sw"
    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset)
    assert _run(spec, d) == 0
    first = pd.read_csv(d / "results.csv")
    assert len(first) == 4 and first["spec_fingerprint"].nunique() == 1 and set(first["generation"]) == {1}
    capsys.readouterr()

    write_spec(spec, sweep_dataset, models=[1e5, 2e5, 4e5], train={"batch_size": 16, "lr": 2e-3})
    assert _run(spec, d) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "the spec changed since generation 1" in err
    assert "models" in err and "train.lr: 0.001 -> 0.002" in err and "--new-generation" in err
    assert main(["sweep", "status", str(spec), "--dir", str(d)]) == 2  # status of the new spec: never run
    capsys.readouterr()

    assert _run(spec, d, "--new-generation") == 0
    second = pd.read_csv(d / "results.csv")
    # The new generation's table holds its own 6 points only, all planned by the new spec.
    assert len(second) == 6 and set(second["generation"]) == {2} and second["spec_fingerprint"].nunique() == 1
    assert set(second["spec_fingerprint"]).isdisjoint(set(first["spec_fingerprint"]))
    assert main(["sweep", "run", str(spec), "--dir", str(d), "--no-progress"]) == 0  # resumes generation 2
    assert len(pd.read_csv(d / "results.csv")) == 6


def test_two_specs_with_one_name_do_not_merge(tmp_path, sweep_dataset, fake_env, capsys):
    """One storage (here one journal; the same rule holds in PostgreSQL): name + fingerprint keys the study."""
    d = tmp_path / "sw"
    a = write_spec(tmp_path / "a.yaml", sweep_dataset)
    b = write_spec(tmp_path / "b.yaml", sweep_dataset, samples=[32, 96])
    assert _run(a, d) == 0
    assert _run(b, d) == 2  # refused: same name, other spec
    assert "the spec changed" in capsys.readouterr().err
    sa = Sweep.open(a, d).existing_queue()
    assert sa.name.startswith("t@") and sa.counts()["completed"] == 4


def test_code_change_is_refused_unless_allowed(tmp_path, sweep_dataset, fake_env, monkeypatch, runs_of, capsys):
    d = tmp_path / "sw"
    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset)
    assert _run(spec, d) == 0
    keys_v1 = set(pd.read_csv(d / "results.csv")["run_key"])
    capsys.readouterr()
    monkeypatch.setattr("sweeps.sweep.code_version", lambda: "9.9.9+gdeadbeef0000")
    assert _run(spec, d) == 2
    err = capsys.readouterr().err
    assert "was run by code" in err and "9.9.9+gdeadbeef0000" in err and "--allow-code-change" in err
    assert main(["sweep", "status", str(spec), "--dir", str(d), "--json"]) == 0  # reading is fine
    assert json.loads(capsys.readouterr().out)["completed"] == 4
    n_runs = len(runs_of(d))
    assert _run(spec, d, "--allow-code-change") == 0  # continue: nothing re-run
    assert len(runs_of(d)) == n_runs
    assert _run(spec, d, "--new-generation") == 0  # every point again with this code
    keys_v2 = set(pd.read_csv(d / "results.csv")["run_key"])
    assert keys_v2 == keys_v1  # keys are the config's: committed studies re-run by key across commits
    assert sum(1 for ev, *_ in runs_of(d) if ev == "finish") == 8  # ... but nothing of the old code reused
    assert len(list((d / "runs").glob("*.code-*"))) == 4  # the old runs are kept aside, not deleted


def test_retry_failed_requeues_failed_points(tmp_path, sweep_dataset, fake_env, monkeypatch, runs_of):
    d = tmp_path / "sw"
    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset, retries=0)
    monkeypatch.setenv("FAKE_FAIL", "200000")
    assert _run(spec, d) == 1
    df = pd.read_csv(d / "results.csv")
    assert (df["state"] == "failed").sum() == 2
    assert _run(spec, d) == 1  # a plain re-run leaves failed points alone
    assert sum(1 for ev, *_ in runs_of(d) if ev in ("start", "resume")) == 4
    monkeypatch.delenv("FAKE_FAIL")
    assert _run(spec, d, "--retry-failed") == 0
    df = pd.read_csv(d / "results.csv")
    assert (df["state"] == "completed").sum() == 4 and len(df) == 4
    assert (d / "fit.json").exists() or (d / "fit_skipped.txt").exists()


def test_spec_fingerprint_and_code_version_recorded_per_point(tmp_path, sweep_dataset, fake_env):
    d = tmp_path / "sw"
    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset)
    assert _run(spec, d) == 0
    sw = Sweep.open(spec, d)
    q = sw.existing_queue()
    fp = sw.spec.fingerprint()
    for _, t in q.point_states().values():
        assert t.user_attrs["spec_fingerprint"] == fp
        assert t.user_attrs["code_version"] == sw.code_version
        assert {"N", "D"} <= set(t.params)  # what optuna-dashboard shows per trial
    info = json.loads((d / "sweep.json").read_text())
    assert info["study"] == q.name and info["code_version"] == sw.code_version


def test_password_never_on_a_command_line_or_in_a_file(tmp_path, sweep_dataset, monkeypatch):
    from sweeps.launcher import worker_command, worker_env
    from sweeps.storage_url import STORAGE_ENV, mask

    url = "postgresql+psycopg2://alice:s3cretpw@db.example:5432/sweeps"
    assert mask(url) == "postgresql+psycopg2://alice:***@db.example:5432/sweeps"
    assert mask("postgresql://bob@h/db") == "postgresql://bob@h/db"
    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset)
    sw = Sweep(Sweep.open(spec, tmp_path / "sw").spec, tmp_path / "sw", storage=url)
    monkeypatch.setattr(Sweep, "queue", property(lambda self: type("Q", (), {"name": "t@abc"})()))
    cmd = worker_command(sw)
    assert not any("s3cretpw" in c for c in cmd) and "--storage" not in cmd
    assert worker_env(sw, {})[STORAGE_ENV] == url
    sw.write_local_info()
    text = (tmp_path / "sw" / "sweep.json").read_text()
    assert "s3cretpw" not in text and "alice:***@" in text


@pytest.mark.parametrize("workers, per_run, gpus, want", [
    (4, 1, ["0", "1", "2", "3"], ["0", "1", "2", "3"]),
    (2, 2, ["4", "5", "6", "7"], ["4,5", "6,7"]),
    (3, 1, [], [None, None, None]),
])
def test_each_local_worker_gets_its_own_gpus(workers, per_run, gpus, want):
    from sweeps.launcher import gpu_slices, visible_gpus

    assert gpu_slices(gpus, workers, per_run) == want
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]


def test_more_workers_than_gpus_is_bad_input():
    from sweeps.launcher import gpu_slices
    from vla_core.errors import BadInput

    with pytest.raises(BadInput, match="need 8 GPUs, this node has 4"):
        gpu_slices(["0", "1", "2", "3"], 8, 1)


def test_slurm_resources_per_size_from_spec_and_flags(tmp_path, sweep_dataset):
    from sweeps.launcher import WorkerJob, resource_groups, submitit_parameters

    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset, slurm={
        "partition": "cpu", "time_min": 120, "mem_gb": 8,
        "per_size": {"2e5": {"partition": "gpu", "gpus_per_node": 1, "mem_gb": 32}}})
    sw = Sweep.open(spec, tmp_path / "sw")
    groups = resource_groups(sw, {"account": "lab"})
    assert sorted((g[1], g[0]["partition"]) for g in groups) == [(["100000.0"], "cpu"), (["200000.0"], "gpu")]
    big = next(g for g in groups if g[1] == ["200000.0"])[0]
    p = submitit_parameters(big, workers=3)
    assert p == {"timeout_min": 120, "slurm_partition": "gpu", "gpus_per_node": 1, "mem_gb": 32,
                 "slurm_account": "lab", "slurm_array_parallelism": 3}
    # Requeue on preemption: submitit calls checkpoint() and resubmits what it returns.
    job = WorkerJob("t@abc", str(tmp_path), ["200000.0"])
    again = job.checkpoint()
    assert isinstance(again.function, WorkerJob) and again.function.sizes == ["200000.0"]


def test_sweep_started_by_an_older_version_continues_with_its_keys(tmp_path, sweep_dataset, fake_env, runs_of, capsys):
    """A study named by the sweep alone, keys without a code version (as before generations): kept on request."""
    from sweeps.data_source import data_dims
    from sweeps.plan import plan_runs
    from sweeps.store import Queue

    d = tmp_path / "sw"
    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset)
    sw = Sweep.open(spec, d)
    old = plan_runs(sw.spec, data_dims(sw.local_data()), None)
    legacy = Queue("t", None, d)
    legacy.enqueue([{"run_key": r.key, "params": {"run_key": r.key}, "attrs": {"config": r.config, "size": r.size,
                                                                                 "samples": r.samples, "seed": r.seed}}
                    for r in old])
    assert _run(spec, d) == 2
    assert "started before spec fingerprints" in capsys.readouterr().err
    assert _run(spec, d, "--allow-code-change") == 0
    df = pd.read_csv(d / "results.csv")
    assert set(df["run_key"]) == {r.key for r in old} and set(df["state"]) == {"completed"}
    assert _run(spec, d, "--allow-code-change") == 0  # nothing runs twice
    assert sum(1 for ev, *_ in runs_of(d) if ev == "finish") == 4
