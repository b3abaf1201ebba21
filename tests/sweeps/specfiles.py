"""Spec-file helpers shared by the sweep tests (a module of its own: importing `conftest` by name
picks whichever test folder's conftest was imported first when the whole suite runs)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def write_spec(path: Path, data: Path, **overrides) -> Path:
    """Write a small grid spec (4 points) with ``overrides`` merged at the top level."""
    spec = {
        "name": "t",
        "data": str(data),
        "models": [1e5, 2e5],
        "samples": [64, 128],
        "seeds": [0],
        "train": {"batch_size": 16, "lr": 1e-3},
        "retries": 1,
        "blind_baseline": False,  # engine tests count runs; the baseline has tests of its own
    }
    spec.update(overrides)
    path.write_text(yaml.safe_dump(spec))
    return path
