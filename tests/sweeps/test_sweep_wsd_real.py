"""WSD branching with the real trainer: branched cooldowns match independent cosine runs at two points."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
import yaml

from tests.proc import run_group


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_branched_losses_match_independent_cosine(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.delenv("SWEEP_RUN_COMMAND", raising=False)
    train = {"batch_size": 32, "lr": 1e-3, "precision": "32-true", "accelerator": "cpu", "val_samples": 128,
             "progress_bar": False}
    base = {"data": str(tiny_dataset), "models": ["debug"], "samples": [256, 512], "seeds": [0], "retries": 0,
            "blind_baseline": False}
    specs = {
        "branched": {**base, "name": "wsd", "train": train, "wsd": {"cooldown_frac": 0.25}},
        "cosine": {**base, "name": "cos", "train": {**train, "schedule": "cosine"}},
    }
    losses = {}
    for kind, spec in specs.items():
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(spec))
        r = run_group([sys.executable, "-m", "sweeps.cli", "sweep", "run", str(path), "--dir", str(tmp_path / kind),
                       "--workers", "2", "--no-progress"], timeout=420)  # ends workers and runs too
        assert r.returncode == 0, r.stderr[-2000:]
        df = pd.read_csv(tmp_path / kind / "results.csv")
        losses[kind] = dict(zip(df["n_samples"], df["val_loss"]))
    assert set(losses["branched"]) == set(losses["cosine"]) == {256, 512}
    for d in (256, 512):
        assert losses["branched"][d] == pytest.approx(losses["cosine"][d], rel=0.05), (d, losses)
