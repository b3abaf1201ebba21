"""Parameter and FLOP accounting against the real module and torch's own FLOP counter.

Large presets are built on the meta device (shapes only, no memory, no compute): parameter
counts and `FlopCounterMode` work from shapes alone, so even the 1e9 preset is checked exactly.
Attention runs on the math SDPA backend there, whose matmuls torch's counter sees (the fused CPU
kernel has no FLOP formula registered in torch).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from scaling.model import PRESETS, VLA, ModelConfig, approx_6nd, count_params, describe, flops_per_sample
from scaling.model.accounting import attention_fraction
from scaling.model.testing import DATA_DIMS, random_batch, tiny_config
from vla_core.errors import BadInput

HEADS = ("discrete", "mse", "flow")


def meta_model_and_batch(cfg: ModelConfig, batch_size: int = 2):
    batch = {k: v.to("meta") for k, v in random_batch(cfg, batch_size).items()}
    with torch.device("meta"):
        return VLA(cfg), batch


def counted_training_flops(model: VLA, batch: dict) -> float:
    """FLOPs of one forward + backward per sample, as torch's FlopCounterMode counts them."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        loss, _ = model.loss(batch)
        loss.backward()
    return counter.get_total_flops() / batch["image"].shape[0]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("size", list(PRESETS))
def test_count_params_exact(size, head):
    cfg = tiny_config(size, head=head, chunk=2)
    model, _ = meta_model_and_batch(cfg)
    total, nonembed = count_params(cfg)
    assert total == sum(p.numel() for p in model.parameters())
    embed = sum(p.numel() for p in model.embed.parameters())
    assert nonembed == total - embed


def flop_cases() -> list:
    """Every preset with the default head, every head at two sizes; GPU sizes are slow (~4 s)."""
    cases = [(size, "discrete") for size in PRESETS]
    cases += [(size, head) for size in ("debug", "1m") for head in HEADS if head != "discrete"]
    slow = pytest.mark.slow
    return [pytest.param(s, h, marks=slow) if PRESETS[s].device == "gpu" else (s, h) for s, h in cases]


@pytest.mark.parametrize("size, head", flop_cases())
def test_flops_match_torch_counter(size, head):
    cfg = tiny_config(size, head=head, chunk=2)
    model, batch = meta_model_and_batch(cfg)
    counted = counted_training_flops(model, batch)
    assert abs(flops_per_sample(cfg) / counted - 1) < 0.05  # the bar: within 5%
    assert flops_per_sample(cfg) == counted  # in fact exact: same matmuls, same definition


@pytest.mark.parametrize("chunk", [1, 4])
def test_flops_real_cpu_run_and_padding(chunk):
    # A real (not meta) run with padded instructions: masking does not change the matmul count.
    cfg = tiny_config("debug", chunk=chunk)
    model = VLA(cfg)
    assert counted_training_flops(model, random_batch(cfg, 3)) == flops_per_sample(cfg)


def test_6nd_is_close_for_wide_models_and_misses_attention():
    cfg = ModelConfig.from_size("30m", image_size=64, vocab_size=128, max_instr_len=16,
                                proprio_dim=4, action_dim=4)
    exact, approx = flops_per_sample(cfg), approx_6nd(cfg)
    # 6ND leaves out attention (Q K^T, A V); with the head and data inputs the rest is ~6ND.
    assert abs(exact * (1 - attention_fraction(cfg)) / approx - 1) < 0.05
    assert 0 < attention_fraction(cfg) < 0.5


def test_describe_is_json_and_consistent():
    cfg = tiny_config("1e5", head="mse")
    shape = json.loads(json.dumps(describe(cfg)))
    assert (shape["d_model"], shape["n_layers"], shape["n_heads"]) == (cfg.d_model, cfg.n_layers,
                                                                       cfg.n_heads)
    assert (shape["n_params"], shape["n_params_nonembed"]) == count_params(cfg)
    assert shape["seq_len"] == cfg.seq_len and shape["head"] == "mse"
    assert shape["flops_per_sample"] == flops_per_sample(cfg)


def test_accounting_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, scaling.model as m; m.count_params(m.ModelConfig.from_size('1m', "
            + ", ".join(f"{k}={v!r}" for k, v in DATA_DIMS.items())
            + ")); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("size, head", [("debug", "discrete"), ("1m", "discrete"), ("1m", "flow")])
def test_keypoint_stem_counts_exact(size, head):
    # The conv stem and its soft-argmax tokens: parameters from the module, FLOPs from torch's counter
    # (its convolutions, backward included, are counted; the elementwise soft-argmax is not).
    cfg = tiny_config(size, head=head, keypoints=8)
    model, batch = meta_model_and_batch(cfg)
    total, nonembed = count_params(cfg)
    assert total == sum(p.numel() for p in model.parameters())
    assert nonembed == count_params(tiny_config(size, head=head))[1]  # the stem is an input map
    assert flops_per_sample(cfg) == counted_training_flops(model, batch)
    assert cfg.seq_len == tiny_config(size, head=head).seq_len + 8


@pytest.mark.parametrize("size", ["debug", "1m"])
def test_film_stem_counts_exact(size):
    # FiLM adds one Linear(d, 4K) on the mean instruction embedding: an input map (not in
    # non-embedding N), its matmul counted forward and backward (its input carries a gradient).
    cfg = tiny_config(size, keypoints=8, film=True)
    model, batch = meta_model_and_batch(cfg)
    total, nonembed = count_params(cfg)
    assert total == sum(p.numel() for p in model.parameters())
    plain = tiny_config(size, keypoints=8)
    assert nonembed == count_params(plain)[1]
    assert total - count_params(plain)[0] == cfg.d_model * 4 * 8 + 4 * 8
    assert flops_per_sample(cfg) == counted_training_flops(model, batch)
    assert flops_per_sample(cfg) - flops_per_sample(plain) == 3 * 2 * cfg.d_model * 4 * 8


def test_film_starts_as_the_plain_stem_and_then_reads_the_instruction():
    torch.manual_seed(0)
    cfg = tiny_config("debug", keypoints=4, film=True)
    model = VLA(cfg)
    batch = random_batch(cfg, 3)
    other = batch["instruction"].flip(0)
    with torch.no_grad():  # identity at init: the instruction does not move the keypoints yet
        assert torch.equal(model.embed.keypoints(batch["image"], batch["instruction"]),
                           model.embed.keypoints(batch["image"], other))
    loss, _ = model.loss(batch)
    loss.backward()
    assert model.embed.film.weight.grad is not None and float(model.embed.film.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        torch.nn.init.normal_(model.embed.film.weight, std=0.5)
        assert not torch.allclose(model.embed.keypoints(batch["image"], batch["instruction"]),
                                  model.embed.keypoints(batch["image"], other))


def test_film_needs_keypoints():
    with pytest.raises(BadInput, match="film"):
        tiny_config("debug", film=True)


def test_keypoint_real_run_counts_and_is_differentiable():
    cfg = tiny_config("debug", keypoints=4)
    model = VLA(cfg)
    batch = random_batch(cfg, 3)
    assert counted_training_flops(model, batch) == flops_per_sample(cfg)
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("embed.stem."))
    points = model.embed.keypoints(batch["image"]).detach()
    assert points.shape == (3, 4, 2) and float(points.abs().max()) <= 1.0
