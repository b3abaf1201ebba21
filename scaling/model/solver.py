"""Turn a target parameter count into a model shape by a fixed depth rule.

The rule:
- a preferred depth that grows smoothly with the target, `preferred_depth(N) = 2.2 (N / 1e5)^(1/4)`,
  at least 2 (2 blocks at 1e5 parameters, 4 at 1e6, 7 at 1e7, 12 at 1e8, 22 at 1e9); the width follows
  from the target, so width/depth runs from ~25 at 1e5 to ~90 at 1e9, inside the range where Kaplan
  et al. (2020) found the loss flat in the aspect ratio (about 20 to 200);
- head width 8 below d_model 128, 16 below 256, 32 below 1024, 64 from 1024 (GPT-style heads at scale, still
  at least one head at the smallest widths); d_model is a multiple of the head width;
- among all (width, depth) pairs on that grid whose total parameter count (embeddings included,
  for the given data dimensions) lies within `TOLERANCE` of the target, take the one whose depth is
  closest to the preferred depth (in log space). If no pair is that close, the closest count wins,
  and a pair more than 10% off is an error.

Why a depth rule and not a fixed aspect ratio: at small targets the data-dependent embeddings
dominate, and a fixed width/depth of 64 forced depth 1 at some sizes and 5-7 at neighbouring ones
(30k: 16 x 7, 50k: 48 x 1, 300k: 64 x 5), so a ladder of sizes changed shape erratically and the
loss curve in N measured the shapes as much as the size. Depth >= 2 also lets the readout tokens
find an object (attention) and then read it (a second block).
"""

from __future__ import annotations

import math

from scaling.model.accounting import count_params
from vla_core.errors import BadInput

DEPTH_AT_1E5 = 2.2
"""Preferred depth (blocks) at 1e5 parameters; it grows as the fourth root of the target."""
MIN_DEPTH = 2
"""Smallest preferred depth (blocks)."""
TOLERANCE = 0.10
"""Relative distance to the target inside which the aspect ratio decides."""
MAX_ERROR = 0.10
"""Largest accepted relative distance between the built and the target parameter count."""
MAX_LAYERS = 96
MAX_WIDTH = 16384


def head_dim_for(d_model: int) -> int:
    """Head width (features) used by the solver at a given model width."""
    if d_model < 128:
        return 8
    if d_model < 256:
        return 16
    return 32 if d_model < 1024 else 64


def _widths() -> list[int]:
    """Every width on the solver's grid, ascending."""
    out, d = [], 8
    while d <= MAX_WIDTH:
        out.append(d)
        d += head_dim_for(d)
        while d % head_dim_for(d):
            d += 1
    return out


_WIDTHS = _widths()


def preferred_depth(target: float) -> float:
    """The depth (blocks, fractional) the solver aims at for a target parameter count."""
    return max(float(MIN_DEPTH), DEPTH_AT_1E5 * (target / 1e5) ** 0.25)


def _counter(config_cls, data: dict):
    """Total parameters of the shape (d_model, n_layers) with the head rule, for these data fields."""
    def count(d_model: int, n_layers: int) -> int:
        cfg = config_cls(d_model=d_model, n_layers=n_layers, n_heads=d_model // head_dim_for(d_model), **data)
        return count_params(cfg)[0]

    return count


def _nearest_widths(n_layers: int, target: float, _count) -> list[int]:
    """The grid widths just below and just above the target at this depth (binary search)."""
    lo, hi = 0, len(_WIDTHS) - 1
    if _count(_WIDTHS[hi], n_layers) < target:
        return [_WIDTHS[hi]]
    while lo < hi:  # smallest index whose count reaches the target (counts grow with width)
        mid = (lo + hi) // 2
        if _count(_WIDTHS[mid], n_layers) >= target:
            hi = mid
        else:
            lo = mid + 1
    return _WIDTHS[max(lo - 1, 0): lo + 1]


def shape_for_params(target: float, config_cls, **data) -> tuple[int, int, int]:
    """(d_model, n_layers, n_heads) whose total parameter count is closest to `target` under the rule.

    Args:
        target: wanted total parameter count (embeddings included).
        config_cls: the config class to count with (`ModelConfig`; passed in so that the solver
            sits below the config module that calls it: `scaling.model.shape_for_params` binds it).
        **data: the other `ModelConfig` fields (image_size, patch_size, vocab_size,
            max_instr_len, proprio_dim, action_dim, chunk, head, ...).

    Raises:
        BadInput: a non-positive or non-finite target, or one no shape reaches within 10%
            (too small for these data dimensions, or beyond the largest grid shape).
    """
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise BadInput(f"model size: target parameter count must be a positive number, got {target!r}")
    _count = _counter(config_cls, data)
    candidates = []  # (relative error, depth distance, d_model, n_layers)
    depth = preferred_depth(target)
    for n_layers in range(1, MAX_LAYERS + 1):
        for d_model in _nearest_widths(n_layers, target, _count):
            err = abs(_count(d_model, n_layers) / target - 1.0)
            candidates.append((err, abs(math.log(n_layers / depth)), d_model, n_layers))
        if _count(_WIDTHS[0], n_layers) > target * (1 + MAX_ERROR):
            break  # deeper models only grow
    close = [c for c in candidates if c[0] <= TOLERANCE]
    err, _, d_model, n_layers = (min(close, key=lambda c: (c[1], c[0])) if close
                                 else min(candidates))
    if err > MAX_ERROR:
        smallest = _count(_WIDTHS[0], 1)
        why = (f"smaller than the smallest model ({smallest:,} parameters) for these data dimensions"
               if target < smallest else "out of reach of the size solver")
        raise BadInput(f"model size: {target:.3g} parameters is {why}")
    return d_model, n_layers, d_model // head_dim_for(d_model)
