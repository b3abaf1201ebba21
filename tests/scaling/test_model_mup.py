"""muP: parameter groups, and the coordinate check (Yang et al. 2022, TP-V, fig. 5 style)."""

from __future__ import annotations

import pytest
import torch

from scaling.model import VLA, ModelConfig, param_groups
from scaling.model.testing import DATA_DIMS, random_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def config(width: int, base: int | None, head: str = "discrete") -> ModelConfig:
    return ModelConfig(d_model=width, n_layers=2, n_heads=width // 16, patch_size=8,
                       mup_base_width=base, head=head, **DATA_DIMS)


@pytest.mark.parametrize("head", ["discrete", "mse", "flow"])
def test_param_groups_cover_every_parameter_once(head):
    model = VLA(config(64, base=16, head=head))
    groups = param_groups(model, lr=1e-3, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    by_name = {g["name"]: g for g in groups}
    assert by_name["hidden"]["lr"] == pytest.approx(1e-3 * 16 / 64)  # Adam muP: lr * base / width
    assert by_name["output"]["lr"] == by_name["input"]["lr"] == by_name["vector"]["lr"] == 1e-3
    # No weight decay on norms, biases or embeddings (input maps).
    assert by_name["vector"]["weight_decay"] == by_name["input"]["weight_decay"] == 0.0
    assert all(p.dim() == 1 for p in by_name["vector"]["params"])
    assert {id(p) for p in model.embed.parameters()} == {id(p) for p in by_name["input"]["params"]}
    assert by_name["hidden"]["weight_decay"] == 0.1
    torch.optim.AdamW(groups)  # the trainer passes them straight to AdamW


def test_standard_parametrisation_keeps_lr_and_equals_mup_at_base_width():
    groups = param_groups(VLA(config(64, base=None)), lr=2e-3, weight_decay=0.0)
    assert {g["lr"] for g in groups} == {2e-3}
    assert {g["lr"] for g in param_groups(VLA(config(64, base=64)), 2e-3, 0.0)} == {2e-3}


def logit_scale_after_training(width: int, base: int | None, steps: int = 4) -> float:
    """Std of the output logits after a few Adam steps at a fixed learning rate."""
    torch.manual_seed(0)
    cfg = config(width, base)
    model, batch = VLA(cfg), random_batch(cfg, 8)
    opt = torch.optim.AdamW(param_groups(model, lr=1e-2, weight_decay=0.0))
    for _ in range(steps):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model.head.logits(model.encode(batch)).std().item()


def test_coordinate_check():
    widths = (32, 64, 128, 256)
    mup = [logit_scale_after_training(w, base=32) for w in widths]
    sp = [logit_scale_after_training(w, base=None) for w in widths]
    # muP: output scale roughly constant across an 8x range of widths.
    assert max(mup) / min(mup) < 1.5, mup
    # Standard parametrisation with the same lr: the output grows with width.
    assert max(sp[1:]) / sp[0] > 2.5, sp
