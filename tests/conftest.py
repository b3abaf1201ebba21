"""Shared fixtures: a tiny dataset on disk, built once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Path of a tiny dataset (8 episodes, 32x32 images; tabletop when available, else synthetic)."""
    from scaling.data.testing import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny", episodes=8, image_size=32, seed=0)
