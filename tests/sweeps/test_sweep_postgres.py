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
