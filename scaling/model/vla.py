"""The VLA: a pre-norm transformer over image patches, instruction, proprioception and readout tokens.

Trained from scratch. Sequence (per sample, `cfg.seq_len` tokens):
  [n_patches image patches | max_instr_len instruction tokens | keypoints | 1 proprio | chunk*A readout]
(the keypoint tokens only when `cfg.keypoints` > 0: soft-argmax positions from a small conv stem).
Attention is bidirectional; padded instruction tokens (id 0) are masked out as keys. The action
head reads the final states of the readout tokens, one per future step and action dimension.
Parameter and FLOP counts: `scaling.model.accounting` (pure Python, tested against this module).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaling.model.config import ModelConfig
from scaling.model.heads import HEAD_CLASSES

INIT_STD = 0.02
"""Standard deviation of weight init at the base width (GPT-2 / nanoGPT)."""
ATTENTION = "auto"
"""Attention kernel: "sdpa" (`F.scaled_dot_product_attention`), "math" (`math_attention`: explicit
matmuls and a float32 softmax), or "auto": "math" on CPUs under reduced-precision autocast, where torch's
fused CPU kernel (flash attention; its bf16 backward was the slowest op of a training step) measured
slower (docs/throughput.md), else "sdpa". Both compute the same function (tests/scaling/test_attention.py)."""


def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor,
                   scale: float | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T * scale, keys where `keep`) v as plain matmuls; q, k, v (B, nh, T, hd), keep (B, T).

    Same function as `F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :],
    scale=scale)`: the logits and softmax in float32 (under autocast the matmuls run in its dtype)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.matmul(q, k.transpose(-2, -1)).float() * scale  # (B, nh, T, T)
    logits = logits.masked_fill(~keep[:, None, None, :], float("-inf"))
    att = logits.softmax(dim=-1)
    if dropout_p:
        att = F.dropout(att, dropout_p)
    return torch.matmul(att.to(v.dtype), v)  # (B, nh, T, hd)


def use_math_attention(x: torch.Tensor) -> bool:
    """Whether `SelfAttention` takes `math_attention` for input `x` (see `ATTENTION`)."""
    if ATTENTION != "auto":
        return ATTENTION == "math"
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") in (torch.bfloat16, torch.float16))


class Embedding(nn.Module):
    """Batch -> token sequence (B, T, d) and key mask (B, T), True where a token may be attended."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.p, C, d = cfg.patch_size, cfg.image_channels, cfg.d_model
        self.patch = nn.Linear(self.p * self.p * C, d)  # ViT patch embedding as a matmul
        self.token = nn.Embedding(cfg.vocab_size, d)
        self.proprio = nn.Linear(cfg.proprio_dim, d)
        self.position = nn.Parameter(torch.zeros(cfg.n_patches + cfg.max_instr_len, d))
        self.readout = nn.Parameter(torch.zeros(cfg.n_readout, d))  # learned, so no position
        self.register_buffer("mean", torch.tensor(cfg.image_mean), persistent=False)  # (C,)
        self.register_buffer("std", torch.tensor(cfg.image_std), persistent=False)  # (C,)
        self.n_keypoints = cfg.keypoints
        if cfg.keypoints:
            K = cfg.keypoints
            self.stem = nn.Sequential(
                nn.Conv2d(C, K, 3, stride=2, padding=1), nn.GELU(),
                nn.Conv2d(K, K, 3, padding=1), nn.GELU(),
                nn.Conv2d(K, K, 1))
            self.keypoint = nn.Linear(2, d)  # soft-argmax (x, y) -> token
            self.keypoint_id = nn.Parameter(torch.zeros(K, d))  # which channel: learned, no position
            # FiLM: (scale, shift) of both hidden convolutions from the mean instruction embedding.
            # Zero init (VLA.reset_parameters) makes it the identity at step 0.
            self.film = nn.Linear(d, 4 * K) if cfg.film else None
            g = cfg.stem_size
            grid = torch.linspace(-1.0, 1.0, g)
            self.register_buffer("grid_x", grid.repeat(g), persistent=False)  # (g*g,) x of each cell
            self.register_buffer("grid_y", grid.repeat_interleave(g), persistent=False)

    def keypoints(self, image: torch.Tensor, instruction: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, W, C) uint8 -> (B, K, 2) soft-argmax (x, y) in [-1, 1] of each stem channel.

        With FiLM, `instruction` (B, L) ids (0 = padding) conditions the stem. Elementwise weighted
        sums rather than a matmul, so the FLOP accounting (which counts matmuls and convolutions
        only, like torch's FlopCounterMode) leaves them out."""
        x = (image.float() / 255.0 - self.mean) / self.std
        x = x.permute(0, 3, 1, 2).to(self.stem[0].weight.dtype)  # (B, C, H, W)
        if self.film is None:
            f = self.stem(x)  # (B, K, g, g)
        else:
            if instruction is None:
                raise ValueError("a FiLM stem needs the instruction")
            real = (instruction != 0).unsqueeze(-1)  # (B, L, 1)
            # Its own lookup, not the sequence's: reusing that one sums the two gradients in another
            # order, and the committed FiLM rows would not re-run to the digit (0.7% apart at 400k).
            words = (self.token(instruction) * real).sum(1) / real.sum(1).clamp(min=1)  # (B, d) mean
            # Standardised (no parameters): token embeddings start at std 0.02, and FiLM should not
            # have to grow its weights 50x before the instruction can move the stem.
            words = F.layer_norm(words, words.shape[-1:])
            g1, b1, g2, b2 = self.film(words).unsqueeze(-1).unsqueeze(-1).chunk(4, dim=1)  # 4 x (B, K, 1, 1)
            conv1, act, conv2, _, conv3 = self.stem
            h = act(conv1(x) * (1 + g1) + b1)
            f = conv3(act(conv2(h) * (1 + g2) + b2))  # (B, K, g, g)
        w = torch.softmax(f.flatten(2).float(), dim=-1)  # (B, K, g*g), fp32 for the expectation
        return torch.stack([(w * self.grid_x).sum(-1), (w * self.grid_y).sum(-1)], dim=-1)

    def patches(self, image: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) uint8 -> (B, n_patches, p*p*C) standardised pixels."""
        B, H, W, C = image.shape
        x = (image.float() / 255.0 - self.mean) / self.std  # (B, H, W, C)
        x = x.view(B, H // self.p, self.p, W // self.p, self.p, C)  # (B, gh, p, gw, p, C)
        return x.permute(0, 1, 3, 2, 4, 5).reshape(B, -1, self.p * self.p * C)  # (B, n, p*p*C)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        instr = batch["instruction"]  # (B, L) ids, 0 = padding
        B, L = instr.shape
        image = self.patch(self.patches(batch["image"]))  # (B, n_patches, d)
        prefix = torch.cat([image, self.token(instr)], dim=1) + self.position[: image.shape[1] + L]
        proprio = self.proprio(batch["proprio"].to(prefix.dtype)).unsqueeze(1)  # (B, 1, d)
        readout = self.readout.expand(B, -1, -1).to(prefix.dtype)  # (B, R, d)
        parts = [prefix]
        if self.n_keypoints:
            points = self.keypoint(self.keypoints(batch["image"], instr).to(prefix.dtype))  # (B, K, d)
            parts.append(points + self.keypoint_id.to(prefix.dtype))
        x = torch.cat([*parts, proprio, readout], dim=1)  # (B, T, d)
        # Built out of place: under vmap over stacked weights (benchmarks/bench_ensemble.py) each member has
        # its own instructions, and vmap refuses an in-place write of batched values into an unbatched tensor.
        n_image, n_after = image.shape[1], x.shape[1] - image.shape[1] - L
        keep = torch.cat([instr.new_ones(B, n_image, dtype=torch.bool), instr != 0,
                          instr.new_ones(B, n_after, dtype=torch.bool)], dim=1)
        return x, keep


class SelfAttention(nn.Module):
    """Multi-head bidirectional self-attention with a key padding mask."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        # muP: 1/head_dim (not 1/sqrt) keeps attention logits O(1) as widths grow (TP-V, sec. 4).
        self.scale = 1.0 / cfg.head_dim if cfg.mup_base_width else None

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, d)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)
                   for t in (q, k, v))  # (B, nh, T, hd)
        dropout = self.dropout if self.training else 0.0
        if use_math_attention(x):
            y = math_attention(q, k, v, keep, self.scale, dropout)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=keep[:, None, None, :],  # (B, 1, 1, T) broadcast over heads/queries
                dropout_p=dropout, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, nh, T, hd) -> (B, T, d)


class MLP(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.mlp = SelfAttention(cfg), MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), keep))
        return x + self.drop(self.mlp(self.ln2(x)))


class VLA(nn.Module):
    """Vision-language-action transformer; `loss(batch)` for training, `predict(batch)` for control.

    The batch is a dict of tensors as `DataSource.get_batch` returns them (docs/contracts.md):
    image uint8 (B, H, W, C), proprio float (B, P), instruction int64 (B, L) padded with 0,
    action_tokens int64 (B, k, A), actions float (B, k, A) in [-1, 1].
    """

    fsdp_units = (Block,)
    """FSDP wraps each transformer block as one unit (`scaling.model.measure.fsdp_unit_classes`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embedding(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = HEAD_CLASSES[cfg.head](cfg)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init; residual projections scaled by 1/sqrt(2 n_layers); under muP hidden
        matrices get std 0.02 * sqrt(base / width) and the output layer starts at zero."""
        cfg = self.cfg
        ratio = cfg.mup_base_width / cfg.d_model if cfg.mup_base_width else 1.0
        for name, p in self.named_parameters():
            if p.dim() == 1 and name.endswith("weight"):  # norm gains
                nn.init.ones_(p)
            elif p.dim() == 1:  # biases
                nn.init.zeros_(p)
            elif name.startswith("embed.stem."):  # conv stem: unit-gain fan-in init, or the soft-argmax starts flat
                nn.init.kaiming_normal_(p, nonlinearity="linear")
            elif name.startswith("embed.film."):  # FiLM starts as the identity (scale 1, shift 0)
                nn.init.zeros_(p)
            elif name.startswith("embed."):  # input maps: width-independent
                nn.init.normal_(p, std=INIT_STD)
            elif name.startswith("head.out.") and cfg.mup_base_width:
                nn.init.zeros_(p)
            else:  # hidden matrices (blocks, flow-head MLP) and the SP output layer
                residual = name.endswith(("attn.proj.weight", "mlp.fc2.weight"))
                std = INIT_STD * math.sqrt(ratio) / (math.sqrt(2 * cfg.n_layers) if residual else 1)
                nn.init.normal_(p, std=std)

    def encode(self, batch: dict) -> torch.Tensor:
        """Batch -> (B, k, A, d) final states of the readout tokens."""
        x, keep = self.embed(batch)  # (B, T, d), (B, T)
        for block in self.blocks:
            x = block(x, keep)
        h = self.norm(x[:, -self.cfg.n_readout:])  # (B, k*A, d)
        return h.view(h.shape[0], self.cfg.chunk, self.cfg.action_dim, -1)  # (B, k, A, d)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """(scalar loss, metrics); discrete: mean cross-entropy in nats per action dimension."""
        return self.head.loss(self.encode(batch), batch)

    def forward(self, batch: dict, predict: bool = False):
        """`loss(batch)`, or `predict(batch)` when `predict`: every pass goes through `forward`, so
        DDP/FSDP wrappers (which gather sharded weights in their `forward`) see validation too."""
        return self.predict(batch) if predict else self.loss(batch)

    @torch.no_grad()
    def predict(self, batch: dict) -> torch.Tensor:
        """(B, chunk, A) normalised continuous actions in [-1, 1]."""
        return self.head.predict(self.encode(batch))

    def n_params_nonembed(self) -> int:
        """Parameters outside the input maps (`scaling.model.accounting`): more than the embedding tables."""
        from scaling.model.accounting import count_params

        return count_params(self.cfg)[1]

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups with muP learning rates (`scaling.model.mup.param_groups`)."""
        from scaling.model.mup import param_groups

        return param_groups(self, lr, weight_decay)
