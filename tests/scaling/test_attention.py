"""The model's two attention kernels compute one function: `math_attention` against torch's SDPA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import scaling.model.vla as vla
from scaling.model import VLA
from scaling.model.testing import random_batch, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("scale", [None, 1 / 16])
def test_math_attention_equals_sdpa_with_padding_masks_fp32(scale):
    g = torch.Generator().manual_seed(0)
    B, H, T, D = 3, 2, 11, 16
    q, k, v = (torch.randn(B, H, T, D, generator=g, requires_grad=True) for _ in range(3))
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[0, 3:7] = False  # padding in the middle, at the end, none
    keep[1, -4:] = False
    grad = torch.randn(B, H, T, D, generator=g)
    outs = []
    for fn in (lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :], scale=scale),
               lambda: vla.math_attention(q, k, v, keep, scale)):
        y = fn()
        dq, dk, dv = torch.autograd.grad(y, (q, k, v), grad)
        outs.append((y, dq, dk, dv))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # Masked keys get no weight: their values' gradient is exactly zero.
    assert outs[1][3][0, :, 3:7].abs().max() == 0 and outs[1][3][1, :, -4:].abs().max() == 0


@pytest.mark.parametrize("mup", [False, True])
def test_model_loss_and_gradients_agree_across_kernels_fp32(monkeypatch, mup):
    cfg = tiny_config("debug", chunk=2, mup_base_width=32 if mup else None)
    batch = random_batch(cfg, 4, seed=1)
    assert (batch["instruction"] == 0).any()  # the padding mask is exercised
    results = []
    for kernel in ("sdpa", "math"):
        monkeypatch.setattr(vla, "ATTENTION", kernel)
        torch.manual_seed(0)
        model = VLA(cfg)
        loss, _ = model.loss(batch)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for name, g in results[0][1].items():
        torch.testing.assert_close(g, results[1][1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_auto_takes_math_only_under_cpu_reduced_precision_autocast(monkeypatch):
    monkeypatch.setattr(vla, "ATTENTION", "auto")
    x = torch.zeros(1)
    assert not vla.use_math_attention(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert vla.use_math_attention(x)
    monkeypatch.setattr(vla, "ATTENTION", "sdpa")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not vla.use_math_attention(x)
    monkeypatch.setattr(vla, "ATTENTION", "math")
    assert vla.use_math_attention(x)


def test_bf16_autocast_loss_close_across_kernels(monkeypatch):
    cfg = tiny_config("debug", chunk=2)
    batch = random_batch(cfg, 4, seed=2)
    losses = []
    for kernel in ("sdpa", "math"):
        monkeypatch.setattr(vla, "ATTENTION", kernel)
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses.append(VLA(cfg).loss(batch)[0].float().item())
    assert abs(losses[0] - losses[1]) < 2e-2 * abs(losses[0])
