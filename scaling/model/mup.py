"""Optimizer parameter groups, with muP learning-rate scaling (Yang et al. 2022, Tensor Programs V).

Under muP with Adam (TP-V, Table 3, "MuReadout" variant as in the `mup` package), relative to a
base width b and model width w:
- hidden matrices (attention, MLP, flow-head MLP): init std ~ sqrt(b / w) (in `VLA`), lr * b / w;
- input maps (patch, token, proprio, positions, readout tokens) and vectors (biases, norms): lr as is;
- output layer: lr as is, output multiplied by b / w, zero init (in the heads and `VLA`);
- attention scale 1 / head_dim (in `SelfAttention`).
At w == b this is exactly the standard parametrisation, so a rate tuned at the base width transfers.
Weight decay applies to matrices only: not to biases, norms, or the input maps (embeddings).
"""

from __future__ import annotations

from torch import nn


def parameter_kind(name: str, ndim: int) -> str:
    """"input", "output", "vector" or "hidden" for a named parameter of `VLA`."""
    if name.startswith("embed."):
        return "input"
    if ndim < 2:
        return "vector"
    if name.startswith("head.out."):
        return "output"
    return "hidden"


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: per kind, with muP learning rates when `model.cfg.mup_base_width`.

    Args:
        model: a `VLA` (anything with `.cfg` and `named_parameters()` using its names).
        lr: the base learning rate (the one tuned at the base width under muP).
        weight_decay: decoupled weight decay for hidden and output matrices.

    Returns:
        Non-empty groups, each {"name", "params", "lr", "weight_decay"}; schedulers that scale
        `lr` multiplicatively keep the per-group ratios.
    """
    cfg = model.cfg
    hidden_lr = lr * cfg.mup_base_width / cfg.d_model if cfg.mup_base_width else lr
    settings = {"hidden": (hidden_lr, weight_decay), "output": (lr, weight_decay),
                "input": (lr, 0.0), "vector": (lr, 0.0)}
    buckets: dict[str, list] = {kind: [] for kind in settings}
    for name, p in model.named_parameters():
        if p.requires_grad:
            buckets[parameter_kind(name, p.dim())].append(p)
    return [{"name": kind, "params": params, "lr": settings[kind][0],
             "weight_decay": settings[kind][1]}
            for kind, params in buckets.items() if params]
