"""Action heads on the readout states (B, k, A, d): discrete bins, MSE regression, flow matching.

Each head has `loss(h, batch) -> (loss, metrics)` and `predict(h) -> (B, k, A)` actions in
[-1, 1]. Hidden (width x width) matrices live in `hidden`, the last projection in `out`; muP
(`scaling.model.mup`) keys its learning rates on those names. Under muP the output is multiplied
by base_width / d_model (Yang et al. 2022, Tensor Programs V: the "MuReadout" multiplier).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaling.model.accounting import FLOW_TIME_FEATURES
from scaling.model.config import ModelConfig


def output_multiplier(cfg: ModelConfig) -> float:
    """base_width / width under muP, else 1."""
    return cfg.mup_base_width / cfg.d_model if cfg.mup_base_width else 1.0


def bin_centres(bins: int) -> torch.Tensor:
    """(bins,) centres of `bins` uniform bins over [-1, 1] (as the data's ActionTokenizer decodes)."""
    return -1.0 + (torch.arange(bins, dtype=torch.float32) + 0.5) * (2.0 / bins)


class DiscreteHead(nn.Module):
    """Cross-entropy over uniform action bins: one shared Linear(d, bins) per readout token."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.out = nn.Linear(cfg.d_model, cfg.action_bins)
        self.mult = output_multiplier(cfg)
        self.register_buffer("centres", bin_centres(cfg.action_bins), persistent=False)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h) * self.mult  # (B, k, A, bins)

    def loss(self, h: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        logits = self.logits(h).float()  # (B, k, A, bins); float32 for a stable log-softmax
        target = batch["action_tokens"]  # (B, k, A)
        # Mean over every (sample, step, dimension): nats per action dimension.
        nll = F.cross_entropy(logits.flatten(0, 2), target.flatten())
        with torch.no_grad():
            pred = self.centres[logits.argmax(-1)]  # (B, k, A)
            metrics = {"nll": nll.detach(),
                       "token_acc": (logits.argmax(-1) == target).float().mean(),
                       "action_mse": F.mse_loss(pred, batch["actions"].float())}
        return nll, metrics

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        return self.centres[self.logits(h).argmax(-1)]  # (B, k, A) bin centres


class MSEHead(nn.Module):
    """Continuous regression: one Linear(d, 1) per readout token, mean squared error."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.out = nn.Linear(cfg.d_model, 1)
        self.mult = output_multiplier(cfg)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h).squeeze(-1) * self.mult  # (B, k, A, 1) -> (B, k, A)

    def loss(self, h: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        mse = F.mse_loss(self(h).float(), batch["actions"].float())
        return mse, {"mse": mse.detach(), "action_mse": mse.detach()}

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        return self(h).float().clamp(-1.0, 1.0)  # (B, k, A)


def time_features(t: torch.Tensor, n: int = FLOW_TIME_FEATURES) -> torch.Tensor:
    """(...,) flow times in [0, 1] -> (..., n) sinusoidal features (no parameters)."""
    freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), n // 2, device=t.device))
    angles = t.unsqueeze(-1) * freqs  # (..., n/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FlowHead(nn.Module):
    """Flow matching (Lipman et al. 2023; the action expert of pi0, Black et al. 2024), small.

    A two-layer MLP per readout token sees the token's state, the whole noisy action chunk and the
    time, and predicts that token's velocity, so the chunk's dimensions are denoised jointly.
    Path x_t = (1 - t) * noise + t * action, target velocity action - noise; inference integrates
    from noise at t = 0 to t = 1 in `flow_steps` Euler steps.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, self.R = cfg.d_model, cfg.n_readout
        self.hidden = nn.ModuleList([nn.Linear(d + self.R + FLOW_TIME_FEATURES, d), nn.Linear(d, d)])
        self.out = nn.Linear(d, 1)
        self.mult = output_multiplier(cfg)
        self.steps = cfg.flow_steps

    def velocity(self, h: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B, k, A, d = h.shape
        noisy = x.reshape(B, 1, k * A).expand(B, k * A, k * A)  # (B, kA, kA) chunk per token
        time = time_features(t).reshape(B, 1, -1).expand(B, k * A, FLOW_TIME_FEATURES)  # (B, kA, F)
        z = torch.cat([h.reshape(B, k * A, d), noisy.to(h.dtype), time.to(h.dtype)],
                      dim=-1)  # (B, kA, d + kA + time features)
        for layer in self.hidden:
            z = F.gelu(layer(z))  # (B, kA, d)
        return (self.out(z) * self.mult).reshape(B, k, A)  # (B, kA, 1) -> (B, k, A)

    def loss(self, h: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        action = batch["actions"].float()  # (B, k, A)
        noise = torch.randn_like(action)
        t = torch.rand(action.shape[0], device=action.device)  # (B,)
        x_t = (1 - t.view(-1, 1, 1)) * noise + t.view(-1, 1, 1) * action
        fm = F.mse_loss(self.velocity(h, x_t, t).float(), action - noise)
        return fm, {"flow_mse": fm.detach()}

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        B, k, A, _ = h.shape
        x = torch.randn(B, k, A, device=h.device)  # t = 0: pure noise (global RNG: seed to repeat)
        for i in range(self.steps):  # Euler from noise (t=0) to data (t=1)
            t = torch.full((B,), i / self.steps, device=h.device)
            x = x + self.velocity(h, x, t).float() / self.steps
        return x.clamp(-1.0, 1.0)


HEAD_CLASSES = {"discrete": DiscreteHead, "mse": MSEHead, "flow": FlowHead}
