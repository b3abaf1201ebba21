"""Parameter and FLOP accounting for the VLA, as pure functions of a `ModelConfig` (no torch).

Definitions (tests check them against the real module and `torch.utils.flop_counter`):

- Total parameters: exactly `sum(p.numel() for p in VLA(cfg).parameters())`.
- Non-embedding parameters: as Kaplan et al. (2020) exclude vocabulary and position embeddings,
  we exclude every parameter that maps raw inputs into the residual stream: the instruction token
  table, the patch projection, the proprioception projection, the position table and the learned
  readout tokens, and (when `keypoints` > 0) the keypoint conv stem, its (x, y) projection,
  its channel embeddings and (`film`) the map from the instruction to the stem's FiLM scales and
  shifts. What remains: the transformer blocks, the final norm and the action head.
- Training FLOPs per sample: multiply-adds of every matmul counted as 2*m*n*k, attention scores
  (Q K^T) and the weighted sum (A V) included, for the forward pass plus the backward pass. The
  backward pass costs two matmuls per forward matmul (gradient of input and of weight), except
  the patch and proprioception projections and the keypoint stem's first convolution, whose
  inputs are data and need no gradient (one matmul each). Convolutions count as the matmuls they
  are (2 * output pixels * out channels * in channels * kernel area). Norms, softmax, activations and
  the loss are elementwise and not counted, as in `FlopCounterMode` and in Kaplan's C ~ 6ND.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the config module sits above (config -> presets -> solver -> here)
    from scaling.model.config import ModelConfig

FLOW_TIME_FEATURES = 32
"""Sinusoidal features of the flow-matching time, fed to the flow head (fixed, no parameters)."""


def embedding_params(cfg: ModelConfig) -> dict[str, int]:
    """Parameters of the input maps, by module (see the module docstring)."""
    patch_in = cfg.patch_size * cfg.patch_size * cfg.image_channels
    return {
        "patch": patch_in * cfg.d_model + cfg.d_model,              # Linear(p*p*C, d)
        "token": cfg.vocab_size * cfg.d_model,                      # Embedding(V, d)
        "proprio": cfg.proprio_dim * cfg.d_model + cfg.d_model,     # Linear(P, d)
        "position": (cfg.n_patches + cfg.max_instr_len) * cfg.d_model,
        "readout": cfg.n_readout * cfg.d_model,
        **({"keypoints": _keypoint_params(cfg)} if cfg.keypoints else {}),
    }


def _keypoint_params(cfg: ModelConfig) -> int:
    K, C, d = cfg.keypoints, cfg.image_channels, cfg.d_model
    convs = (C * K * 9 + K) + (K * K * 9 + K) + (K * K + K)  # 3x3 stride 2, 3x3, 1x1
    film = (d * 4 * K + 4 * K) if cfg.film else 0  # Linear(d, 4K): scale and shift of 2 hidden convs
    return convs + (2 * d + d) + K * d + film  # + Linear(2, d) + channel embeddings


def _keypoint_flops(cfg: ModelConfig) -> tuple[int, int]:
    """(forward FLOPs of the keypoint stem, the part of them on the data-input convolution)."""
    if not cfg.keypoints:
        return 0, 0
    K, C, d, cells = cfg.keypoints, cfg.image_channels, cfg.d_model, cfg.stem_size ** 2
    first = 2 * cells * K * C * 9
    film = 2 * d * 4 * K if cfg.film else 0  # one (d -> 4K) matmul per sample on the instruction
    return first + 2 * cells * K * K * 9 + 2 * cells * K * K + 2 * K * 2 * d + film, first


def block_params(cfg: ModelConfig) -> int:
    """Parameters of one pre-norm transformer block (biases everywhere)."""
    d, f = cfg.d_model, cfg.d_ff
    norms = 2 * (2 * d)                          # two LayerNorms, weight + bias
    attention = (3 * d * d + 3 * d) + (d * d + d)  # qkv + output projection
    mlp = (d * f + f) + (f * d + d)              # fc1 + fc2
    return norms + attention + mlp


def head_params(cfg: ModelConfig) -> int:
    """Parameters of the action head."""
    d = cfg.d_model
    if cfg.head == "discrete":
        return d * cfg.action_bins + cfg.action_bins
    if cfg.head == "mse":
        return d + 1
    flow_in = d + cfg.n_readout + FLOW_TIME_FEATURES  # token state + noisy chunk + time
    return (flow_in * d + d) + (d * d + d) + (d + 1)


def count_params(cfg: ModelConfig) -> tuple[int, int]:
    """(total, non-embedding) parameter counts of `VLA(cfg)`, exact."""
    non_embedding = cfg.n_layers * block_params(cfg) + 2 * cfg.d_model + head_params(cfg)
    return non_embedding + sum(embedding_params(cfg).values()), non_embedding


def forward_flops(cfg: ModelConfig) -> dict[str, int]:
    """Forward matmul FLOPs per sample, by part (2 * m * n * k per matmul)."""
    d, f, T = cfg.d_model, cfg.d_ff, cfg.seq_len
    patch_in = cfg.patch_size * cfg.patch_size * cfg.image_channels
    per_layer = (2 * T * d * 3 * d          # qkv projection
                 + 2 * T * T * d            # scores Q K^T, all heads together
                 + 2 * T * T * d            # weighted values A V
                 + 2 * T * d * d            # output projection
                 + 2 * 2 * T * d * f)       # fc1 + fc2
    R = cfg.n_readout
    if cfg.head == "discrete":
        head = 2 * R * d * cfg.action_bins
    elif cfg.head == "mse":
        head = 2 * R * d
    else:
        head = 2 * R * ((d + R + FLOW_TIME_FEATURES) * d + d * d + d)
    return {
        "patch": 2 * cfg.n_patches * patch_in * d,
        "proprio": 2 * cfg.proprio_dim * d,
        **({"keypoints": _keypoint_flops(cfg)[0]} if cfg.keypoints else {}),
        "blocks": cfg.n_layers * per_layer,
        "head": head,
    }


def flops_per_sample(cfg: ModelConfig) -> int:
    """Training FLOPs per sample: forward + backward (see the module docstring), exact."""
    fwd = forward_flops(cfg)
    # backward computes only the weight gradient of the maps whose inputs are data
    data_inputs = fwd["patch"] + fwd["proprio"] + _keypoint_flops(cfg)[1]
    return 3 * sum(fwd.values()) - data_inputs


def attention_fraction(cfg: ModelConfig) -> float:
    """Share of the training FLOPs spent on Q K^T and A V (the part 6ND leaves out)."""
    attention = 3 * cfg.n_layers * 4 * cfg.seq_len * cfg.seq_len * cfg.d_model
    return attention / flops_per_sample(cfg)


def approx_6nd(cfg: ModelConfig, non_embedding: bool = True) -> int:
    """Kaplan's C ~ 6 * N * tokens per sample, N non-embedding by default (for comparison)."""
    total, nonembed = count_params(cfg)
    return 6 * (nonembed if non_embedding else total) * cfg.seq_len


def describe(cfg: ModelConfig) -> dict:
    """The model shape as recorded in result.json (flat, JSON-safe)."""
    total, nonembed = count_params(cfg)
    return {
        "d_model": cfg.d_model,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "d_ff": cfg.d_ff,
        "head_dim": cfg.head_dim,
        "seq_len": cfg.seq_len,
        "n_patches": cfg.n_patches,
        "keypoints": cfg.keypoints,
        "film": cfg.film,
        "patch_size": cfg.patch_size,
        "image_size": cfg.image_size,
        "max_instr_len": cfg.max_instr_len,
        "vocab_size": cfg.vocab_size,
        "proprio_dim": cfg.proprio_dim,
        "action_dim": cfg.action_dim,
        "action_bins": cfg.action_bins,
        "chunk": cfg.chunk,
        "head": cfg.head,
        "mup_base_width": cfg.mup_base_width,
        "n_params": total,
        "n_params_nonembed": nonembed,
        "flops_per_sample": flops_per_sample(cfg),
    }
