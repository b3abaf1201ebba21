"""Shared fixtures: a tiny dataset on disk, and the shipped smoke sweep, each built once per session."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

from tests.proc import run_group

try:  # Property tests: no example database on disk, no per-example deadline (the machine is shared),
    # and the failing example's replay blob printed with the failure.
    from hypothesis import settings

    settings.register_profile("suite", max_examples=60, deadline=None, database=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))
except ImportError:  # hypothesis is in the dev extra; its tests skip without it
    pass

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "sweeps" / "smoke.yaml"


@pytest.fixture
def replay_seed(request) -> int:
    """A seed for a randomized test: fresh each run, or TEST_SEED=n to replay one. Printed, so a failure
    shows the line that replays it (pytest prints a failing test's captured output)."""
    seed = int(os.environ.get("TEST_SEED") or secrets.randbelow(2**32))
    print(f"replay: TEST_SEED={seed} python -m pytest '{request.node.nodeid}'")
    return seed


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Path of a tiny dataset (8 episodes, 32x32 images; tabletop when available, else synthetic)."""
    from scaling.data.testing import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny", episodes=8, image_size=32, seed=0)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Path:
    """The folder of `scaling sweep run sweeps/smoke.yaml --workers 2` with the real trainer (about 2 minutes
    on 2 cores): 3 sizes x 2 data sizes, results.csv, fit.json, report.html. Run once, shared by the
    smoke test and the seam test; only slow tests ask for it."""
    d = tmp_path_factory.mktemp("smoke") / "smoke"
    env = {k: v for k, v in os.environ.items() if k != "SWEEP_RUN_COMMAND"}  # the real `scaling train`
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    run = run_group([sys.executable, "-m", "sweeps.cli", "sweep", "run", str(SMOKE), "--dir", str(d),
                     "--workers", "2", "--no-progress"], env=env, timeout=840)
    assert run.returncode == 0, run.stderr[-2000:]
    return d
