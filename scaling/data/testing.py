"""Test helpers: synthetic episodes and a tiny dataset on disk (used by every package's tests)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from scaling.data.episode import Episode

_WORDS = ("red", "blue", "green", "cube", "ball", "left", "right", "the", "to", "of")


def synthetic_episodes(n: int, *, length: int = 10, image_size: int = 16, seed: int = 0,
                       proprio_dim: int = 4, action_dim: int = 3, tasks: Sequence[str] = ("push", "reach"),
                       source: str = "synthetic", success_rate: float = 1.0) -> Iterator[Episode]:
    """Yields ``n`` valid random episodes (deterministic per ``seed``) for storage tests.

    Each episode draws its own ``default_rng([seed, i])``, so episode i is the same whatever ``n``
    (a longer stream extends a shorter one, as real generators do). Actions lie in [-1, 1].
    """
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        task = tasks[i % len(tasks)]
        words = rng.choice(_WORDS, size=3, replace=False)
        yield Episode(
            images=rng.integers(0, 256, size=(length, image_size, image_size, 3), dtype=np.uint8),
            proprio=np.cumsum(rng.normal(0, 0.1, size=(length, proprio_dim)), axis=0).astype(np.float32),
            actions=rng.uniform(-1, 1, size=(length, action_dim)).astype(np.float32),
            instruction=f"{task} the {words[0]} {words[1]}, then {words[2]}.",
            task=task,
            success=bool(rng.random() < success_rate),
            source=source,
            seed=seed * 1_000_003 + i,
            meta={"synthetic": True},
        )


def make_tiny_dataset(path: str | Path, *, episodes: int = 8, image_size: int = 32, seed: int = 0) -> Path:
    """Writes a tiny dataset at ``path`` and returns it.

    Uses the real tabletop generator when ``scaling.data.tabletop`` is importable, else
    ``synthetic_episodes`` (length 10). Either way it has ``episodes`` episodes.
    """
    from scaling.data.store import write_dataset

    try:
        from scaling.data import tabletop
        gen = tabletop.generate_episodes  # noqa: F841 - probe that the generator exists
    except (ImportError, AttributeError):
        tabletop = None
    if tabletop is not None:
        eps = tabletop.generate_episodes(episodes, seed=seed, image_size=image_size)
        version = str(getattr(tabletop, "__version__", getattr(tabletop, "GENERATOR_VERSION", "unknown")))
        meta = {"action_bounds": [float(tabletop.ACTION_LOW), float(tabletop.ACTION_HIGH)]}
        return write_dataset(eps, path, seed=seed, generator="tabletop", generator_version=version, meta=meta)
    eps = synthetic_episodes(episodes, image_size=image_size, seed=seed)
    return write_dataset(eps, path, seed=seed, generator="synthetic", generator_version="1",
                         meta={"action_bounds": [-1.0, 1.0]})
