"""``clean``: a copy of a dataset without its flagged episodes and idle segments, and a report of why.

The flags themselves live in ``scaling.data.quality`` (the writer computes them too).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scaling.data.episode import Episode
from scaling.data.quality import DROP_REASONS, flag_table, idle_mask, quality_report
from scaling.data.store import open_dataset, write_dataset

__all__ = ["clean_dataset", "idle_mask", "flag_table", "quality_report", "DROP_REASONS"]


def clean_dataset(src: str | Path, out: str | Path, *, keep_failed: bool = False,
                  action_bound: float | None = None, overwrite: bool = False) -> dict:
    """Writes a cleaned copy of ``src`` to ``out`` (atomically) and returns the report.

    Returns:
        dict with episodes/frames in and out, ``dropped`` {reason: count} (each episode counted
        under its first reason in DROP_REASONS order), ``idle_frames_trimmed`` and ``episodes_trimmed``.
    """
    ds = open_dataset(src)
    flags = flag_table(ds.episodes, ds.manifest, keep_failed=keep_failed, action_bound=action_bound)
    reason = np.full(ds.n_episodes, "", dtype=object)
    for name in reversed(DROP_REASONS):  # reversed so the first reason in order wins
        reason[flags[name]] = name
    report = {
        "source": str(src), "out": str(out),
        "episodes_in": ds.n_episodes, "frames_in": ds.n_frames,
        "dropped": {name: int((reason == name).sum()) for name in DROP_REASONS},
        "idle_frames_trimmed": 0, "episodes_trimmed": 0,
    }

    def kept() -> Iterator[Episode]:
        for i in range(ds.n_episodes):
            if reason[i]:
                continue
            ep = ds.episode(i)
            idle = idle_mask(ep.images, ep.proprio)
            if idle.any():
                keep = ~idle
                report["idle_frames_trimmed"] += int(idle.sum())
                report["episodes_trimmed"] += 1
                ep.images, ep.proprio, ep.actions = ep.images[keep], ep.proprio[keep], ep.actions[keep]
            yield ep

    manifest = ds.manifest
    meta = dict(manifest.get("meta") or {})
    meta["cleaned_from"] = str(Path(src).resolve())
    if action_bound is not None:
        meta["action_bounds"] = [-abs(action_bound), abs(action_bound)]
    path = write_dataset(kept(), out, seed=manifest.get("seed"), generator=manifest.get("generator", "unknown"),
                         generator_version=manifest.get("generator_version", "unknown"),
                         shard_frames=manifest.get("shard_frames"), overwrite=overwrite, meta=meta)
    res = open_dataset(path)
    report.update(episodes_out=res.n_episodes, frames_out=res.n_frames)
    return report
