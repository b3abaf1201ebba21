"""Robot data: sources (tabletop, Meta-World, LeRobot), one sharded on-disk format, loaders.

The public entry points are re-exported lazily so ``import scaling.data`` stays cheap:

- ``Episode``: one demonstration (``scaling.data.episode``).
- ``write_dataset`` / ``open_dataset``: the on-disk format (``scaling.data.store``).
- ``open_source``: a dataset path or a weighted mixture as one ``DataSource`` (``scaling.data.mixture``).
"""

from __future__ import annotations

import importlib
from typing import Any

from scaling.data.episode import Episode

_LAZY = {
    "write_dataset": "scaling.data.store",
    "open_dataset": "scaling.data.store",
    "Dataset": "scaling.data.dataset",
    "open_source": "scaling.data.mixture",
    "MixtureSource": "scaling.data.mixture",
}

__all__ = ["Episode", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scaling.data' has no attribute {name!r}")
