"""The ``conv`` family: a convolutional behaviour-cloning policy, shipped through the family seam.

A plain factory, ``conv_policy(size, dims) -> nn.Module``, exactly what anyone's family provides
(docs/contracts.md, "Your own model family"); the framework counts it and measures its FLOPs.

The policy: a ResNet-style image encoder (a 3x3 stem, then three stages of basic residual blocks at
`width`, 2 `width` and 4 `width` channels, the last two starting with a stride-2 block; GroupNorm,
which does not couple the samples of a batch, as Diffusion Policy's ResNet encoder uses), each block
conditioned on the instruction by FiLM (a per-channel scale and shift from the mean instruction-token
embedding, as in RT-1's FiLM-EfficientNet; zero-initialised, so it starts as the identity), read out
by global average pooling and a spatial softmax (each of `width` keypoint maps' expected (x, y), the
readout of Diffusion Policy and of Levine et al. 2016), then with the proprioception and the
instruction through an MLP whose last layer scores the same action bins the transformer's discrete head
scores: cross-entropy in nats per action dimension, so the two families' losses share units.

Width and depth follow the size: `depth(target)` residual blocks per stage (1 below ~2e5 parameters,
growing as the fourth root of the target), the widest encoder whose model (with the MLP 4 x its width
wide) stays within the target, then the MLP's width (between 1 and 8 times the encoder's) that brings
the total parameter count, embeddings included, closest to the target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vla_core.errors import BadInput

IMAGE_MEAN = 0.5
"""Pixel intensity (in [0, 1]) subtracted before the stem."""
IMAGE_STD = 0.25
"""Pixel intensity spread divided out before the stem."""
MAX_WIDTH = 2048
"""Widest encoder (channels of its first stage)."""
TOLERANCE = 0.10
"""Largest relative miss of the target parameter count the width search accepts."""


def depth(target: float) -> int:
    """Residual blocks per stage for a target parameter count: 1 up to ~2e5, 2 at 1e6, 4 at 1e7, 7 at 1e8."""
    return max(1, round(1.2 * (target / 1e5) ** 0.25))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class ResBlock(nn.Module):
    """Basic residual block (two 3x3 convolutions) with FiLM from the instruction after the second norm."""

    def __init__(self, c_in: int, c_out: int, stride: int, instr_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm2 = _norm(c_out)
        self.film = nn.Linear(instr_dim, 2 * c_out)
        nn.init.zeros_(self.film.weight)  # FiLM starts as the identity (scale 1, shift 0)
        nn.init.zeros_(self.film.bias)
        self.skip = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride), _norm(c_out))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """x (B, c_in, H, W), words (B, instr_dim) -> (B, c_out, H / stride, W / stride)."""
        h = F.relu(self.norm1(self.conv1(x)))
        scale, shift = self.film(words)[:, :, None, None].chunk(2, dim=1)  # 2 x (B, c_out, 1, 1)
        h = self.norm2(self.conv2(h)) * (1 + scale) + shift
        return F.relu(h + self.skip(x))


class ConvPolicy(nn.Module):
    """Image + instruction + proprioception -> scores of every action bin, per future step and dimension.

    `forward(batch) -> (loss, metrics)`, `predict(batch) -> (B, chunk, A)` bin centres in [-1, 1]
    (the contract of docs/contracts.md).
    """

    fsdp_units = (ResBlock,)
    """FSDP wraps each residual block as one unit."""

    def __init__(self, dims, width: int, blocks: int, hidden: int | None = None) -> None:
        super().__init__()
        self.dims, self.width, self.blocks = dims, width, blocks
        self.hidden = h = 4 * width if hidden is None else hidden
        w = width
        self.token = nn.Embedding(dims.vocab_size, w)
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1), _norm(w), nn.ReLU())
        layers, c_in = [], w
        for stage, c in enumerate((w, 2 * w, 4 * w)):
            for i in range(blocks):
                layers.append(ResBlock(c_in, c, 2 if stage and not i else 1, w))
                c_in = c
        self.layers = nn.ModuleList(layers)
        self.keypoints = nn.Conv2d(4 * w, w, 1)  # one map per keypoint, read out by a spatial softmax
        features = 4 * w + 2 * w + dims.proprio_dim + w
        self.mlp = nn.Sequential(nn.Linear(features, h), nn.GELU(), nn.Linear(h, h), nn.GELU())
        self.readout = nn.Linear(h, dims.chunk * dims.action_dim * w)  # a w-vector per step and dimension
        self.out = nn.Linear(w, dims.action_bins)  # shared over steps and dimensions, as the VLA's head
        centres = -1.0 + (torch.arange(dims.action_bins, dtype=torch.float32) + 0.5) * (2.0 / dims.action_bins)
        self.register_buffer("centres", centres, persistent=False)

    def instruction(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids, 0 = padding -> (B, width): the standardised mean embedding of the real tokens."""
        real = (ids != 0).unsqueeze(-1)  # (B, L, 1)
        mean = (self.token(ids) * real).sum(1) / real.sum(1).clamp(min=1)
        return F.layer_norm(mean, mean.shape[-1:])

    def logits(self, batch: dict) -> torch.Tensor:
        """Batch -> (B, chunk, A, bins) scores of the action bins."""
        x = (batch["image"].float() / 255.0 - IMAGE_MEAN) / IMAGE_STD
        x = self.stem(x.permute(0, 3, 1, 2).to(self.token.weight.dtype))  # (B, w, H, W)
        words = self.instruction(batch["instruction"])  # (B, w)
        for layer in self.layers:
            x = layer(x, words)
        B, _, h, w = x.shape  # (B, 4 width, H/4, W/4)
        maps = torch.softmax(self.keypoints(x).flatten(2).float(), dim=-1)  # (B, K, h*w)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                                indexing="ij")
        points = torch.cat([(maps * xs.reshape(-1)).sum(-1), (maps * ys.reshape(-1)).sum(-1)], dim=-1)  # (B, 2K)
        z = torch.cat([x.mean(dim=(2, 3)), points.to(x.dtype), batch["proprio"].to(x.dtype), words.to(x.dtype)],
                      dim=-1)
        d = self.dims
        per_action = self.readout(self.mlp(z)).view(B, d.chunk, d.action_dim, self.width)
        return self.out(F.gelu(per_action))  # (B, chunk, A, bins)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """(mean cross-entropy over the action bins in nats per action dimension, metrics)."""
        logits = self.logits(batch).float()
        target = batch["action_tokens"]  # (B, chunk, A)
        nll = F.cross_entropy(logits.flatten(0, 2), target.flatten())
        with torch.no_grad():
            best = logits.argmax(-1)
            metrics = {"nll": nll.detach(), "token_acc": (best == target).float().mean(),
                       "action_mse": F.mse_loss(self.centres[best], batch["actions"].float())}
        return nll, metrics

    @torch.no_grad()
    def predict(self, batch: dict) -> torch.Tensor:
        """(B, chunk, A) the centres of the most likely bins, in [-1, 1]."""
        return self.centres[self.logits(batch).argmax(-1)]


def _count(dims, width: int, blocks: int, hidden: int | None = None) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation work
        return sum(p.numel() for p in ConvPolicy(dims, width, blocks, hidden).parameters())


def _first(lo: int, hi: int, reaches) -> int:
    """The smallest integer in [lo, hi] for which `reaches` holds (it holds from some point on), else hi."""
    while lo < hi:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def shape_for(size: int, dims) -> tuple[int, int, int]:
    """(width, blocks per stage, MLP width) of the conv policy closest to `size` total parameters.

    Raises:
        BadInput: nothing within `TOLERANCE` of the size (too small for these data dimensions, or too large).
    """
    blocks = depth(size)
    over = _first(1, MAX_WIDTH + 1, lambda w: w > MAX_WIDTH or _count(dims, w, blocks) > size)
    width = max(over - 1, 1)  # the widest encoder within the size with the default MLP
    over = _first(width, 8 * width, lambda h: _count(dims, width, blocks, h) >= size)
    hidden = min({max(over - 1, width), over}, key=lambda h: abs(_count(dims, width, blocks, h) - size))
    got = _count(dims, width, blocks, hidden)
    if abs(got / size - 1) > TOLERANCE:
        smallest = _count(dims, 1, 1, 1)
        why = (f"below the smallest conv policy ({smallest:,} parameters) for these data dimensions"
               if size < smallest else f"out of reach (the nearest has {got:,} parameters)")
        raise BadInput(f"family conv: size {size:,} is {why}")
    return width, blocks, hidden


def conv_policy(size: int, dims) -> ConvPolicy:
    """The family's factory: a `ConvPolicy` of about `size` parameters for data of `dims`."""
    return ConvPolicy(dims, *shape_for(int(size), dims))


__all__ = ["ConvPolicy", "ResBlock", "conv_policy", "depth", "shape_for"]
