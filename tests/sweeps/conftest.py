"""Fixtures for the sweep tests: a tiny dataset, spec files, and the fake-trainer environment."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import pg_cluster
import slurm_cluster
from specfiles import REPO, write_spec  # noqa: F401  (re-exported for the fixtures below)

FAKE_TRAIN = Path(__file__).resolve().parent / "fake_train.py"


@pytest.fixture(scope="session")
def sweep_dataset(tmp_path_factory) -> Path:
    """A tiny synthetic dataset (fast to write; the engine tests never train on it)."""
    from scaling.data.store import write_dataset
    from scaling.data.testing import synthetic_episodes

    out = tmp_path_factory.mktemp("sweepdata") / "tiny"
    return write_dataset(synthetic_episodes(6, image_size=16), out, seed=0, generator="synthetic",
                         generator_version="1", meta={"action_bounds": [-1.0, 1.0]})


@pytest.fixture
def fake_env(monkeypatch) -> dict:
    """Environment that swaps ``scaling train`` for the fake trainer (also for subprocesses)."""
    env = {
        "SWEEP_RUN_COMMAND": f"{sys.executable} {FAKE_TRAIN}",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "WANDB_MODE": "disabled",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return dict(os.environ)


@pytest.fixture
def spec_file(tmp_path, sweep_dataset):
    """Factory: ``spec_file(**overrides)`` writes a 4-point grid spec on the tiny dataset."""
    return lambda **kw: write_spec(tmp_path / "spec.yaml", sweep_dataset, **kw)


@pytest.fixture
def runs_of():
    """``runs_of(sweep_dir)``: the fake trainer's invocation lines."""
    return invocations


def invocations(sweep_dir: Path) -> list[list[str]]:
    """The fake trainer's start/resume/finish lines, split."""
    log = sweep_dir / "invocations.log"
    return [ln.split() for ln in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def slurm(monkeypatch):
    """A fresh single-node SLURM cluster (``tests/sweeps/slurm_cluster.py``), ``SLURM_CONF`` set for this
    test and its subprocesses; every job cancelled and every daemon stopped (by pid) afterwards.
    Skipped where slurm-wlm or munge is not installed, or without root (slurmd starts jobs as their user)."""
    missing = slurm_cluster.missing_binaries()
    if missing:
        pytest.skip(f"SLURM binaries not found: {', '.join(missing)} (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("a test SLURM cluster needs root: slurmd runs jobs as the user who submitted them")
    cluster = slurm_cluster.start(Path(tempfile.mkdtemp(prefix="sweep-slurm-")))
    try:
        for k, v in cluster.env.items():
            monkeypatch.setenv(k, v)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg():
    """A throwaway PostgreSQL server (``tests/sweeps/pg_cluster.py``) that a test may restart; stopped and
    removed afterwards. Skipped where initdb and pg_ctl are not installed."""
    if not pg_cluster.pg_bin("initdb") or not pg_cluster.pg_bin("pg_ctl"):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found (apt-get install postgresql)")
    server = pg_cluster.start(Path(tempfile.mkdtemp(prefix="sweep-pg-")))
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.base, ignore_errors=True)
