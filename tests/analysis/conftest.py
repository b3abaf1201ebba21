"""Fixtures for the analysis tests (helpers live in synthetic_tables.py)."""

from __future__ import annotations

import pytest

from synthetic_tables import synthetic_frame


@pytest.fixture
def synthetic():
    """Factory: synthetic_frame(**kwargs)."""
    return synthetic_frame


@pytest.fixture
def coarse_grid():
    """Every 9th start of Chinchilla's 4,500-point grid (500 starts): same basins, a fraction of the time."""
    from analysis.forms import FORMS

    return FORMS["chinchilla"].grid[::9]
