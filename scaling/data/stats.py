"""Streaming normalisation statistics (what goes into ``stats.json``).

Per action and proprio dimension: mean, std (population), min, max, q01, q99; per image channel:
mean and std on the [0, 1] pixel scale. Everything is computed in one pass with bounded memory:

- mean/std: Chan et al.'s parallel update of (count, mean, M2) in float64, per chunk;
- min/max: exact running extrema;
- q01/q99: exact quantiles of a uniform reservoir sample (Vitter's Algorithm R) of at most
  ``reservoir_size`` rows, so they are exact whenever the dataset has at most that many frames and
  an unbiased estimate otherwise (the sampling error of a 1% quantile from 100k rows is ~0.03%);
- image channels: an exact 256-bin histogram per channel (uint8 pixels), so mean/std are exact.
"""

from __future__ import annotations

import numpy as np

QUANTILE_METHOD = "reservoir"
DEFAULT_RESERVOIR = 100_000


class VectorStats:
    """Streaming stats of (N, D) float rows.

    Args:
        dim: D, the number of dimensions.
        reservoir_size: the most rows kept for the quantiles.
        seed: seed of the reservoir's sampling (deterministic stats for a deterministic dataset).
    """

    def __init__(self, dim: int, reservoir_size: int = DEFAULT_RESERVOIR, seed: int = 0) -> None:
        self.dim = dim
        self.count = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros(dim, dtype=np.float64)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)
        self.reservoir = np.empty((reservoir_size, dim), dtype=np.float64)
        self.rng = np.random.default_rng(seed)

    def update(self, rows: np.ndarray) -> None:
        """Adds (n, D) rows; rows with NaN/inf are skipped (cleaning reports them separately)."""
        x = np.asarray(rows, dtype=np.float64).reshape(-1, self.dim)
        x = x[np.isfinite(x).all(axis=1)]
        n = x.shape[0]
        if n == 0:
            return
        # Chan et al. (1979): merge (count, mean, M2) of the chunk into the running totals.
        c_mean = x.mean(axis=0)
        c_m2 = ((x - c_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = c_mean - self.mean
        self.mean += delta * n / total
        self.m2 += c_m2 + delta**2 * self.count * n / total
        np.minimum(self.min, x.min(axis=0), out=self.min)
        np.maximum(self.max, x.max(axis=0), out=self.max)
        self._reservoir_add(x)
        self.count = total

    def _reservoir_add(self, x: np.ndarray) -> None:
        k = self.reservoir.shape[0]
        seen = self.count
        fill = max(0, min(k - seen, x.shape[0]))
        self.reservoir[seen : seen + fill] = x[:fill]
        rest = x[fill:]
        if rest.shape[0] == 0:
            return
        # Algorithm R: row number t (0-based) replaces slot j ~ U{0..t} when j < k. Fancy
        # assignment with repeated slots keeps the last write, as the sequential algorithm does.
        t = seen + fill + np.arange(rest.shape[0])
        j = (self.rng.random(rest.shape[0]) * (t + 1)).astype(np.int64)
        keep = j < k
        self.reservoir[j[keep]] = rest[keep]

    def result(self) -> dict:
        """The stats as lists (JSON-ready); zeros if no finite row was seen."""
        if self.count == 0:
            zeros = [0.0] * self.dim
            return {"mean": zeros, "std": zeros, "min": zeros, "max": zeros, "q01": zeros, "q99": zeros, "count": 0}
        sample = self.reservoir[: min(self.count, self.reservoir.shape[0])]
        q01, q99 = np.quantile(sample, [0.01, 0.99], axis=0)
        return {
            "mean": self.mean.tolist(),
            "std": np.sqrt(self.m2 / self.count).tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "q01": q01.tolist(),
            "q99": q99.tolist(),
            "count": int(self.count),
        }


class ImageStats:
    """Exact per-channel mean/std of uint8 images (reported on the [0, 1] scale).

    Keeps a 256-bin histogram per channel (``np.bincount`` on each channel's strided view):
    exact, and faster here than float sums, which need a float copy of every pixel.
    """

    def __init__(self) -> None:
        self.hist = np.zeros((3, 256), dtype=np.int64)

    def update(self, images: np.ndarray) -> None:
        """Adds (T, H, W, 3) uint8 images."""
        flat = np.asarray(images, dtype=np.uint8).reshape(-1, 3)  # (T*H*W, 3) view
        for c in range(3):
            self.hist[c] += np.bincount(flat[:, c], minlength=256)

    def quantiles(self, qs) -> np.ndarray:
        """(3, len(qs)) per-channel quantiles on the [0, 1] scale, exact from the histogram.

        Each is the smallest pixel value whose cumulative share reaches q (the inverted-CDF
        quantile, numpy's ``method="inverted_cdf"``): always a pixel value that occurs.
        """
        cdf = np.cumsum(self.hist, axis=1) / np.maximum(self.hist.sum(axis=1, keepdims=True), 1)  # (3, 256)
        # k / n and q are both correctly rounded, so a share that equals q exactly compares equal.
        idx = [[int(np.searchsorted(cdf[c], q)) for q in qs] for c in range(3)]
        return np.minimum(np.asarray(idx, dtype=np.float64), 255.0) / 255.0

    def result(self) -> dict:
        n = np.maximum(self.hist.sum(axis=1), 1).astype(np.float64)
        v = np.arange(256, dtype=np.float64) / 255.0
        mean = self.hist @ v / n
        var = np.maximum(self.hist @ (v * v) / n - mean**2, 0.0)
        return {"mean": mean.tolist(), "std": np.sqrt(var).tolist(), "scale": "0-1"}


class StatsAccumulator:
    """Accumulates stats.json for a stream of episodes (action, proprio, image)."""

    def __init__(self, action_dim: int, proprio_dim: int, seed: int = 0,
                 reservoir_size: int = DEFAULT_RESERVOIR) -> None:
        self.action = VectorStats(action_dim, reservoir_size, seed=seed)
        self.proprio = VectorStats(proprio_dim, reservoir_size, seed=seed + 1)
        self.image = ImageStats()

    def update(self, images: np.ndarray, proprio: np.ndarray, actions: np.ndarray) -> None:
        self.action.update(actions)
        self.proprio.update(proprio)
        self.image.update(images)

    def result(self) -> dict:
        return {
            "action": self.action.result(),
            "proprio": self.proprio.result(),
            "image": self.image.result(),
            "quantile_method": f"{QUANTILE_METHOD}:{self.action.reservoir.shape[0]}",
        }


def pool_stats(members: list[dict], counts: list[int]) -> dict:
    """Pools several datasets' stats.json (for a mixture) weighted by their frame counts.

    mean/std/min/max and image mean/std are exact; q01/q99 are the envelope (min of q01s, max of
    q99s) so no member's in-range actions are clipped by the pooled bounds.
    """
    w = np.asarray(counts, dtype=np.float64)
    w = w / w.sum()
    out: dict = {"quantile_method": "envelope of members"}
    for key in ("action", "proprio"):
        mean = np.array([m[key]["mean"] for m in members])
        std = np.array([m[key]["std"] for m in members])
        pooled_mean = (w[:, None] * mean).sum(axis=0)
        # Law of total variance: E[var] + Var[mean].
        pooled_var = (w[:, None] * (std**2 + (mean - pooled_mean) ** 2)).sum(axis=0)
        out[key] = {
            "mean": pooled_mean.tolist(),
            "std": np.sqrt(pooled_var).tolist(),
            "min": np.min([m[key]["min"] for m in members], axis=0).tolist(),
            "max": np.max([m[key]["max"] for m in members], axis=0).tolist(),
            "q01": np.min([m[key]["q01"] for m in members], axis=0).tolist(),
            "q99": np.max([m[key]["q99"] for m in members], axis=0).tolist(),
            "count": int(sum(counts)),
        }
    mean = np.array([m["image"]["mean"] for m in members])
    std = np.array([m["image"]["std"] for m in members])
    pooled_mean = (w[:, None] * mean).sum(axis=0)
    pooled_var = (w[:, None] * (std**2 + (mean - pooled_mean) ** 2)).sum(axis=0)
    out["image"] = {"mean": pooled_mean.tolist(), "std": np.sqrt(pooled_var).tolist(), "scale": "0-1"}
    return out
