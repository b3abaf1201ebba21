"""Three concurrent `sweep run` processes on one throwaway PostgreSQL cluster (loopback, temp folder)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from pg_cluster import PASSWORD


@pytest.fixture
def postgres_url(pg):
    """The plain URL the README documents (no driver named) of a throwaway server (the `pg` fixture)."""
    return pg.url()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_three_concurrent_sweep_runs_on_postgres(tmp_path, spec_file, fake_env, runs_of, postgres_url):
    spec = spec_file(seeds=[0, 1, 2])  # 12 points
    dirs = [tmp_path / f"machine{i}" for i in range(3)]  # no shared disk: each "machine" its own folder
    # Two machines name the database on the command line, the third through SCALING_STORAGE.
    procs = [subprocess.Popen([sys.executable, "-m", "sweeps.cli", "sweep", "run", str(spec), "--dir", str(d),
                               *(["--storage", postgres_url] if i < 2 else []), "--no-progress"],
                              env=fake_env if i < 2 else {**fake_env, "SCALING_STORAGE": postgres_url},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i, d in enumerate(dirs)]
    for p in procs:
        _, err = p.communicate(timeout=500)
        assert p.returncode == 0, err
    finishes = Counter(k for d in dirs for ev, k, *_ in runs_of(d) if ev == "finish")
    assert len(finishes) == 12 and max(finishes.values()) == 1, finishes  # nothing missing, no duplicate
    assert sum(1 for d in dirs if runs_of(d)) >= 2  # the machines really shared the work
    for f in (p for d in dirs for p in d.rglob("*") if p.is_file()):  # no file holds the password
        assert PASSWORD.encode() not in f.read_bytes(), f
    # Export from the database alone, from a folder that has never seen the sweep.
    out = tmp_path / "elsewhere" / "results.csv"
    r = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", "export", str(spec), "--dir",
                        str(tmp_path / "elsewhere"), "--storage", postgres_url, "--out", str(out)],
                       env=fake_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert len(df) == 12 and df["run_key"].is_unique and set(df["state"]) == {"completed"}
    assert set(df["run_key"]) == set(finishes)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_two_machines_share_one_lr_search_on_postgres(tmp_path, spec_file, fake_env, runs_of, postgres_url):
    """Two `sweep run` processes, each its own folder (no shared disk), one database: each size gets its
    `trials` trials once, under the database's advisory lock, and its runs once, with its best trial's lr."""
    import optuna

    from sweeps.lr_search import study_name
    from sweeps.sweep import Sweep

    spec = spec_file(train={"batch_size": 16}, lr_search={"trials": 4, "samples": 64, "low": 1e-4, "high": 1e-1})
    dirs = [tmp_path / f"machine{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "sweeps.cli", "sweep", "run", str(spec), "--dir", str(d),
                               "--storage", postgres_url, "--no-progress"], env=fake_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for d in dirs]
    for p in procs:
        _, err = p.communicate(timeout=500)
        assert p.returncode == 0 and "Warning" not in err, err  # asking trials of a heartbeat storage: quiet
    finishes = Counter(k for d in dirs for ev, k, *_ in runs_of(d) if ev == "finish")
    assert len(finishes) == 2 * 4 + 4 and max(finishes.values()) == 1, finishes
    q = Sweep.open(spec, dirs[0], postgres_url).existing_queue()
    df = pd.read_csv(dirs[0] / "results.csv")
    assert Counter(df["phase"]) == {"lr_search": 8, "main": 4} and set(df["state"]) == {"completed"}
    for size, rows in df.groupby("size"):
        study = optuna.load_study(study_name=study_name(q.name, size), storage=q.storage)
        assert len(study.trials) == 4
        trials = rows[rows["phase"] == "lr_search"]
        best = trials.sort_values("val_loss").iloc[0]["lr"]
        assert rows[rows["phase"] == "main"]["lr"].tolist() == pytest.approx([best, best])
