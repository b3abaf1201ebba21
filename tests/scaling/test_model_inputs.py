"""Every input of the VLA reaches its output: image, instruction and proprioception.

The learning tests in test_model_vla.py use random batches in which every sample differs in every
input, so a model with its image path cut off still fits them (instruction and proprio tell the
samples apart). These tests fail when any one input is disconnected, ignored or mixed across samples.
"""

from __future__ import annotations

import math

import pytest
import torch

from scaling.model import VLA, param_groups
from scaling.model.testing import random_batch, tiny_config

HEADS = ("discrete", "mse", "flow")
INPUTS = ("image", "instruction", "proprio")

pytestmark = pytest.mark.usefixtures("one_thread")


def _vary(batch: dict, name: str, sample: int, vocab_size: int) -> dict:
    """A copy of `batch` whose input `name` differs in `sample` only (every pixel, token or value)."""
    out = {k: v.clone() for k, v in batch.items()}
    if name == "image":
        out["image"][sample] = 255 - out["image"][sample]
    elif name == "instruction":  # same length (padding), every real token moved to another id in [1, V)
        ids = out["instruction"][sample]
        ids[ids != 0] = ids[ids != 0] % (vocab_size - 1) + 1
    else:
        out["proprio"][sample] += 1.0
    return out


@pytest.mark.parametrize("head", HEADS)
def test_loss_has_gradient_in_every_input_of_every_sample(head):
    torch.manual_seed(0)
    cfg = tiny_config("debug", head=head, patch_size=8)
    model = VLA(cfg)
    batch = random_batch(cfg, 3)
    image = batch["image"].float().requires_grad_()  # (B, H, W, C): pixels as a leaf we can differentiate
    proprio = batch["proprio"].clone().requires_grad_()
    loss, _ = model.loss({**batch, "image": image, "proprio": proprio})
    loss.backward()
    p = cfg.patch_size
    for b in range(3):
        # Every patch of every image matters (not only the first, not only an average).
        per_patch = image.grad[b].abs().view(cfg.image_size // p, p, cfg.image_size // p, p, 3).sum((1, 3, 4))
        assert (per_patch > 0).all(), f"sample {b}: patches without gradient\n{per_patch}"
        assert (proprio.grad[b] != 0).all(), f"sample {b}: proprio {proprio.grad[b]}"
    # Instruction tokens are ids: their gradient lands on the embedding rows of the ids used (never padding).
    rows = model.embed.token.weight.grad.abs().sum(1)  # (V,)
    used = batch["instruction"].unique()
    assert (rows[used[used != 0]] > 0).all() and rows[0] == 0


@pytest.mark.parametrize("name", INPUTS)
def test_changing_one_input_of_one_sample_changes_that_sample_only(name):
    cfg = tiny_config("debug", head="mse", patch_size=8)
    model = VLA(cfg).eval()
    batch = random_batch(cfg, 3)
    changed = _vary(batch, name, 1, cfg.vocab_size)
    before, after = model.predict(batch), model.predict(changed)  # (B, k, A) continuous actions
    assert (before[1] - after[1]).abs().max() > 1e-4, f"{name}: the prediction ignores it"
    # No leakage across the batch: the other samples' predictions do not move.
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", INPUTS)
def test_learns_targets_that_only_one_input_tells_apart(name):
    """Two samples equal in everything but `name`, with different target bins in every dimension.

    Without `name` the best the model can do is 1/2 on each target: cross-entropy ln 2 = 0.693 nats per
    dimension. With it, a debug model fits both within 60 steps (about 0.05 nats when every input
    works); the bar of ln(2) / 3 leaves room for noise and fails for a disconnected input.
    """
    torch.manual_seed(0)
    cfg = tiny_config("debug", patch_size=8)
    model = VLA(cfg)
    batch = random_batch(cfg, 2, seed=3)
    for key in INPUTS:  # sample 1 := sample 0 in every input, then make only `name` differ
        batch[key][1] = batch[key][0]
    batch = _vary(batch, name, 1, cfg.vocab_size)
    tokens = torch.tensor([40, 200]).view(2, 1, 1).expand_as(batch["action_tokens"]).contiguous()
    batch["action_tokens"] = tokens
    batch["actions"] = -1.0 + (tokens.float() + 0.5) * (2.0 / cfg.action_bins)
    opt = torch.optim.AdamW(param_groups(model, lr=3e-3, weight_decay=0.0))
    for _ in range(60):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = model.loss(batch)[0].item()
    assert final < math.log(2) / 3, f"{name}: loss {final:.3f} nats, ln 2 = 0.693 is the floor without it"
