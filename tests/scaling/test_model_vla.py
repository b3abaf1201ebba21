"""The VLA module: every preset builds and runs, every head learns, masking and outputs behave."""

from __future__ import annotations

import math

import pytest
import torch

from scaling.model import CPU_LADDER, PRESETS, VLA, param_groups
from scaling.model.heads import bin_centres
from scaling.model.testing import random_batch, tiny_config

HEADS = ("discrete", "mse", "flow")
# Real forward/backward on CPU up to 1e6 parameters; larger presets run the same code on the
# meta device (shapes only), which still catches any shape error.
REAL = ("debug",) + tuple(name for name in CPU_LADDER if PRESETS[name].target <= 1e6)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size", list(PRESETS))
def test_every_preset_builds_and_runs_forward_backward(size):
    cfg = tiny_config(size, chunk=2)
    device = "cpu" if size in REAL else "meta"
    batch = {k: v.to(device) for k, v in random_batch(cfg, 2).items()}
    with torch.device(device):
        model = VLA(cfg)
    loss, metrics = model.loss(batch)
    loss.backward()
    assert loss.shape == () and {"nll", "token_acc", "action_mse"} <= set(metrics)
    assert all(p.grad is not None for p in model.parameters())
    if device == "cpu":
        assert math.isfinite(loss.item())


def _fixed_batch_setup(head: str):
    """A debug-size model with `head` (chunk 2), a fixed random batch of 4, and its AdamW."""
    torch.manual_seed(0)
    cfg = tiny_config("debug", head=head, chunk=2, patch_size=8)
    model, batch = VLA(cfg), random_batch(cfg, 4, seed=1)
    return model, batch, torch.optim.AdamW(param_groups(model, lr=3e-3, weight_decay=0.0))


@pytest.mark.parametrize("head", HEADS)
def test_each_head_learns_a_fixed_batch(head):
    model, batch, opt = _fixed_batch_setup(head)

    def loss_at_seed() -> float:
        torch.manual_seed(123)  # the flow loss samples noise and time: a fixed batch fixes them too
        return model.loss(batch)[0].item()

    before = loss_at_seed()
    for _ in range(12):
        torch.manual_seed(123)
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss_at_seed() < 0.7 * before


def test_discrete_loss_is_nats_per_dimension_at_init():
    cfg = tiny_config("debug", mup_base_width=16)  # muP zero-inits the head: uniform logits
    loss, _ = VLA(cfg).loss(random_batch(cfg))
    assert loss.item() == pytest.approx(math.log(cfg.action_bins), rel=1e-5)


@pytest.mark.parametrize("head", HEADS)
def test_predict_shape_and_range(head):
    cfg = tiny_config("debug", head=head, chunk=3)
    model = VLA(cfg).eval()
    actions = model.predict(random_batch(cfg, 5))
    assert actions.shape == (5, 3, cfg.action_dim) and actions.dtype == torch.float32
    assert actions.abs().max() <= 1.0
    if head == "discrete":  # argmax bin centres, as the data's ActionTokenizer decodes
        assert torch.isin(actions, bin_centres(cfg.action_bins)).all()


def test_padding_is_masked():
    # Padded positions look up embedding row 0; with their keys masked, changing that row must
    # not change the readout states.
    cfg = tiny_config("debug")
    model = VLA(cfg).eval()
    batch = random_batch(cfg, 4)
    batch["instruction"][:, -2:] = 0  # every sample has padding
    before = model.encode(batch)
    with torch.no_grad():
        model.embed.token.weight[0].add_(5.0)
    assert torch.allclose(model.encode(batch), before, atol=1e-5)


def test_real_tokens_matter():
    cfg = tiny_config("debug")
    model = VLA(cfg).eval()
    batch = random_batch(cfg, 2)
    changed = {**batch, "instruction": batch["instruction"].clone()}
    first = changed["instruction"][:, 0]  # never padding: every instruction has a token
    changed["instruction"][:, 0] = first % (cfg.vocab_size - 1) + 1  # another id in [1, V)
    assert not torch.allclose(model.encode(changed), model.encode(batch))


def test_bf16_autocast_on_cpu():
    cfg = tiny_config("debug", chunk=2)
    model, batch = VLA(cfg), random_batch(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.loss(batch)
    loss.backward()
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())


def test_state_dict_round_trip_weights_only(tmp_path):
    cfg = tiny_config("debug", head="flow")
    model = VLA(cfg)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    clone = VLA(cfg)
    clone.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    batch = random_batch(cfg)
    torch.manual_seed(0)
    a = model.predict(batch)
    torch.manual_seed(0)
    assert torch.equal(a, clone.predict(batch))


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_predictions_approach_targets_after_training(head):
    # The samplers point the right way: Euler integration of the learned flow (noise -> data),
    # argmax bins, regression; all fit a fixed batch of 4 well after 300 steps.
    model, batch, opt = _fixed_batch_setup(head)
    error = lambda: (model.predict(batch) - batch["actions"]).pow(2).mean().item()  # noqa: E731
    before = error()
    for _ in range(300):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert error() < 0.4 * before
