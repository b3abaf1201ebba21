"""Tiny configs and synthetic batches for tests and benchmarks of the model (no data on disk)."""

from __future__ import annotations

import torch

from scaling.model.config import ModelConfig

DATA_DIMS = dict(image_size=32, vocab_size=24, max_instr_len=6, proprio_dim=5, action_dim=3)
"""Small data dimensions shaped like a tabletop dataset at 32x32 pixels."""


def tiny_config(size: str | float = "debug", **overrides) -> ModelConfig:
    """`ModelConfig.from_size(size)` on `DATA_DIMS`, any field overridable."""
    dims = {**DATA_DIMS, **overrides}
    return ModelConfig.from_size(size, **dims)


def random_batch(cfg: ModelConfig, batch_size: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch as `DataSource.get_batch` returns it (as tensors), random but valid for `cfg`.

    Instructions have random lengths (at least one token) padded with 0; `actions` are the bin
    centres of `action_tokens`, so the discrete and continuous targets agree.
    """
    g = torch.Generator().manual_seed(seed)
    B, L = batch_size, cfg.max_instr_len
    instruction = torch.randint(1, cfg.vocab_size, (B, L), generator=g)
    lengths = torch.randint(1, L + 1, (B, 1), generator=g)
    instruction[torch.arange(L).expand(B, L) >= lengths] = 0  # (B, L), 0 = padding
    tokens = torch.randint(0, cfg.action_bins, (B, cfg.chunk, cfg.action_dim), generator=g)
    return {
        "image": torch.randint(0, 256, (B, cfg.image_size, cfg.image_size, cfg.image_channels),
                               dtype=torch.uint8, generator=g),
        "proprio": torch.randn(B, cfg.proprio_dim, generator=g),
        "instruction": instruction,
        "action_tokens": tokens,
        "actions": -1.0 + (tokens.float() + 0.5) * (2.0 / cfg.action_bins),
    }
