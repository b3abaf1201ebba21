"""The on-disk format's constants, at the bottom of ``scaling.data``: what the writer (``store``) and
the reader (``dataset``) must agree on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

FORMAT_VERSION = 1
"""Version of the dataset folder format (``manifest.json``'s ``format_version``)."""
ARRAYS = ("images", "proprio", "actions", "episode_index")
"""The memory-mapped arrays of every shard, in manifest order."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
