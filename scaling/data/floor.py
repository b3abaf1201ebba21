"""The loss floor: the lowest validation loss the discrete action head can reach on noisy expert data.

A generator that adds Gaussian noise to a clean expert action mu (the tabletop expert: std
``noise`` on the two movement dimensions, none on the gripper) makes every action token random
even given everything the policy sees, because the noise is drawn after the observation. For one
frame and action dimension the best possible prediction of the token is its true distribution

    p_k = P(edge_k <= mu + eps < edge_{k+1}),  eps ~ N(0, sigma^2),

with the tokenizer's bin edges (`ActionTokenizer.edges`, outer bins open because actions are
clipped into them), and its expected cross-entropy is the entropy H = -sum_k p_k log p_k. The
model's val_loss is the token NLL averaged over every (frame, chunk step, dimension), so

    loss_floor = mean over dimensions d of (mean over frames t of H(mu_td, sigma_td)),

a dimension without noise contributing 0. Why it is a lower bound, for any policy:

- given the observation, the noise is independent of it, and knowing mu (and the latent choices
  behind it, e.g. the expert's hidden detour waypoints) can only lower the entropy, so H is at most
  the Bayes loss of a policy that sees only the observation; only a predictor that knows mu
  reaches the floor, so a real policy's expected loss stays above it (a finite validation set can
  dip below it by its sampling error);
- a clip of the noisy action to bounds no tighter than the tokenizer's q01..q99 range (the
  tabletop expert clips to [-1, 1], inside which the quantiles of its clipped actions lie) moves
  nothing between bins, so it is already in p_k;
- a chunk of future actions (chunk > 1) only adds entropy: each future target a_{t+j} is at
  least as uncertain given obs_t as given its own state (that state depends on noise the policy
  has not seen yet), so the chunked loss is bounded by the same per-frame entropies averaged over
  the chunk's target frames. That average weights the frames near an episode's end more (targets
  past the end repeat its last action); the tabletop expert's last steps are slow, unclipped
  approaches, noisier than its average frame, so the reweighting only raises the average (checked
  for chunks 2-16 at noise 0.02 and 0.1) and the one-step value computed here is a lower bound
  for any chunk.

The floor is an average over all frames of the dataset, the population value that a validation
loss (a sample of held-out frames) estimates. It is exact up to the float32 rounding of
normalised actions and tails beyond ``_TAIL`` standard deviations (mass < 1e-23).
"""

from __future__ import annotations

import math

import numpy as np

from scaling.data.tokenizers import ActionTokenizer

METHOD = ("Mean over frames and action dimensions of the entropy of the action bin of the expert's clean "
          "action plus its Gaussian noise, from the normal CDF at the tokenizer's bin edges (outer bins "
          "open): the Bayes loss of the noise alone, a lower bound on the discrete head's val_loss.")
"""``loss_floor_method`` of a dataset whose generator recorded its clean actions and their noise."""
UNKNOWN = ("Not known: the source does not record its clean actions and their noise (imported, cleaned "
           "or mixed data).")
"""``loss_floor_method`` where ``loss_floor`` is null."""

_TAIL = 10.0  # standard deviations each side of mu whose edges are evaluated; beyond, mass < 1e-23
_BLOCK = 1 << 15  # frames per vectorised block (bounds the (block, window) arrays to a few MB)


def bin_entropy(mu: np.ndarray, sigma: float, edges: np.ndarray) -> np.ndarray:
    """(n,) entropy in nats of the bin of ``mu + eps``, eps ~ N(0, sigma^2), for each of ``mu``.

    Args:
        mu: (n,) clean values in raw units.
        sigma: the noise std (raw units); 0 gives zeros.
        edges: (bins - 1,) ascending, uniformly spaced interior bin edges; the outer bins are open.
    """
    from scipy.special import entr, ndtr

    mu = np.asarray(mu, dtype=np.float64).reshape(-1)
    if sigma <= 0 or mu.size == 0:
        return np.zeros(mu.size)
    edges = np.asarray(edges, dtype=np.float64)
    n_edges = edges.size
    if n_edges == 0:
        return np.zeros(mu.size)
    step = (edges[-1] - edges[0]) / (n_edges - 1) if n_edges > 1 else 1.0
    # Only the edges within _TAIL sigma of mu carry mass; the window's outermost cells then hold
    # the (negligible) tails of all the bins beyond it.
    window = min(n_edges, int(math.ceil(2 * _TAIL * sigma / step)) + 2)
    out = np.empty(mu.size)
    offsets = np.arange(window)
    for lo in range(0, mu.size, _BLOCK):
        m = mu[lo:lo + _BLOCK]
        first = np.floor((m - _TAIL * sigma - edges[0]) / step).astype(np.int64)
        first = np.clip(first, 0, n_edges - window)
        cdf = ndtr((edges[first[:, None] + offsets[None, :]] - m[:, None]) / sigma)  # (b, window)
        p = np.diff(cdf, axis=1, prepend=0.0, append=1.0)  # (b, window + 1) bin masses
        out[lo:lo + _BLOCK] = entr(np.clip(p, 0.0, 1.0)).sum(axis=1)
    return out


class FloorAccumulator:
    """Sums of per-frame bin entropies, per action dimension, over blocks of (clean action, noise std).

    Args:
        tokenizer: the dataset's action tokenizer (its bins are the head's classes).
    """

    def __init__(self, tokenizer: ActionTokenizer) -> None:
        self.edges = tokenizer.edges()  # (A, bins - 1)
        self.sums = np.zeros(tokenizer.action_dim)
        self.frames = 0

    def add(self, clean: np.ndarray, std: np.ndarray) -> None:
        """Adds (n, A) clean actions and (n, A) noise stds (raw units; 0 = no noise)."""
        clean = np.asarray(clean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        if clean.shape != std.shape or clean.ndim != 2 or clean.shape[1] != self.sums.size:
            raise ValueError(f"clean {clean.shape} and std {std.shape} must both be (n, {self.sums.size})")
        if not (np.all(np.isfinite(clean)) and np.all(np.isfinite(std)) and np.all(std >= 0)):
            raise ValueError("clean actions and noise stds must be finite, stds >= 0")
        for d in range(self.sums.size):
            for s in np.unique(std[:, d]):  # a few distinct noise levels: one vectorised pass each
                if s > 0:
                    self.sums[d] += bin_entropy(clean[std[:, d] == s, d], float(s), self.edges[d]).sum()
        self.frames += clean.shape[0]

    def per_dim(self) -> np.ndarray:
        """(A,) mean entropy per frame of each dimension (nats)."""
        return self.sums / max(self.frames, 1)

    def result(self) -> float:
        """The floor: the per-dimension means averaged over dimensions, as val_loss averages (nats)."""
        return float(self.per_dim().mean())


def loss_floor(clean: np.ndarray, std: np.ndarray, tokenizer: ActionTokenizer) -> float:
    """The floor of frames with (n, A) clean actions and (n, A) noise stds under ``tokenizer`` (nats)."""
    acc = FloorAccumulator(tokenizer)
    acc.add(clean, std)
    return acc.result()
