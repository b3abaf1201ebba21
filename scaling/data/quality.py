"""Data-quality flags: what ``clean`` drops or trims, computed per episode when a dataset is written.

Flags (computed per episode at write time and stored in ``episodes.parquet``, so ``inspect`` shows
them without reading the shards; ``clean`` drops on exactly the same flags):

- ``nonfinite``: NaN or inf in proprio or actions -> dropped;
- ``failed``: the (expert) episode did not succeed -> dropped (``keep_failed`` keeps them);
- ``duplicate``: same content hash (images, proprio, actions, instruction, task) as an earlier
  episode -> the later copies are dropped;
- ``out_of_bounds``: an action outside the bounds (``--action-bound`` or the manifest's
  ``meta.action_bounds``; checked only when bounds are known) -> dropped;
- idle frames: runs of at least ``MIN_IDLE_RUN`` consecutive frames where nothing moves (image and
  proprio identical to the previous frame) -> trimmed, keeping the frame that starts the stillness.
"""

from __future__ import annotations

import numpy as np

MIN_IDLE_RUN = 3
_PROPRIO_ATOL = 1e-6
DROP_REASONS = ("nonfinite", "failed", "duplicate", "out_of_bounds")


def idle_mask(images: np.ndarray, proprio: np.ndarray, min_run: int = MIN_IDLE_RUN) -> np.ndarray:
    """(T,) bool, True for frames inside a static run of >= ``min_run`` unchanged frames."""
    t = images.shape[0]
    static = np.zeros(t, dtype=bool)
    if t > 1:
        same_img = (images[1:] == images[:-1]).reshape(t - 1, -1).all(axis=1)
        with np.errstate(invalid="ignore"):
            same_pos = (np.abs(proprio[1:] - proprio[:-1]) <= _PROPRIO_ATOL).all(axis=1)
        static[1:] = same_img & same_pos
    out = np.zeros(t, dtype=bool)
    start = None
    for i in range(t + 1):  # run-length scan; T is an episode length (hundreds), so a loop is fine
        if i < t and static[i]:
            start = i if start is None else start
        elif start is not None:
            if i - start >= min_run:
                out[start:i] = True
            start = None
    return out


def episode_flags(images: np.ndarray, proprio: np.ndarray, actions: np.ndarray) -> dict:
    """Per-episode quality columns stored in episodes.parquet."""
    finite = bool(np.isfinite(proprio).all() and np.isfinite(actions).all())
    a = actions[np.isfinite(actions)]
    return {
        "nonfinite": not finite,
        "idle_frames": int(idle_mask(images, proprio).sum()),
        "action_min": float(a.min()) if a.size else float("nan"),
        "action_max": float(a.max()) if a.size else float("nan"),
    }


def _bounds(manifest: dict, action_bound: float | None) -> tuple[float, float] | None:
    if action_bound is not None:
        return (-abs(action_bound), abs(action_bound))
    b = (manifest.get("meta") or {}).get("action_bounds")
    if b is None:
        return None
    return (float(np.min(b[0])), float(np.max(b[1])))


def flag_table(table, manifest: dict, *, keep_failed: bool = False,
               action_bound: float | None = None) -> dict[str, np.ndarray]:
    """(E,) bool arrays per drop reason, from the episodes table (a pandas DataFrame)."""
    n = len(table)
    bounds = _bounds(manifest, action_bound)
    dup = table["content_hash"].duplicated(keep="first").to_numpy()
    oob = np.zeros(n, dtype=bool)
    if bounds is not None:
        # A small tolerance: float32 storage of a value exactly at the bound is not a violation.
        tol = 1e-6 * max(1.0, abs(bounds[0]), abs(bounds[1]))
        oob = ((table["action_min"] < bounds[0] - tol) | (table["action_max"] > bounds[1] + tol)).to_numpy()
    failed = ~table["success"].to_numpy(dtype=bool)
    return {
        "nonfinite": table["nonfinite"].to_numpy(dtype=bool),
        "failed": np.zeros(n, dtype=bool) if keep_failed else failed,
        "duplicate": dup,
        "out_of_bounds": oob,
    }


def quality_report(table, manifest: dict, *, action_bound: float | None = None) -> dict:
    """Counts of every flag (what ``inspect`` shows; nothing is dropped)."""
    flags = flag_table(table, manifest, action_bound=action_bound)
    idle = table["idle_frames"].to_numpy()
    return {
        **{k: int(v.sum()) for k, v in flags.items()},
        "idle_episodes": int((idle > 0).sum()),
        "idle_frames": int(idle.sum()),
        "action_bounds": _bounds(manifest, action_bound),
    }
