"""ModelConfig validation, presets, size parsing and the size solver."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.model import CPU_LADDER, PRESETS, ModelConfig, count_params, parse_size, shape_for_params
from scaling.model.config import default_patch_size
from scaling.model.testing import DATA_DIMS, tiny_config
from vla_core.errors import BadInput

# Two data shapes: the test one, and a tabletop-like 64 px dataset with 4-step action chunks.
DIMS = {
    "tiny32": {**DATA_DIMS, "patch_size": 4},
    "table64": dict(image_size=64, patch_size=8, vocab_size=128, max_instr_len=16, proprio_dim=4,
                    action_dim=4, chunk=4),
}


def shape(**kw) -> dict:
    base = dict(d_model=32, n_layers=2, n_heads=2, patch_size=4, **DATA_DIMS)
    return {**base, **kw}


def test_defaults_and_derived_fields():
    cfg = ModelConfig(**shape())
    assert cfg.d_ff == 4 * 32 and cfg.head == "discrete" and cfg.action_bins == 256
    assert cfg.n_patches == (32 // 4) ** 2
    assert cfg.seq_len == cfg.n_patches + DATA_DIMS["max_instr_len"] + 1 + DATA_DIMS["action_dim"]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("bad, words", [
    (dict(n_heads=3), "n_heads=3 does not divide d_model=32"),
    (dict(patch_size=5), "patch_size=5 does not divide image_size=32"),
    (dict(d_model=0), "d_model must be a positive integer"),
    (dict(n_layers=-1), "n_layers must be a positive integer"),
    (dict(chunk=0), "chunk must be a positive integer"),
    (dict(head="diffusion"), "head must be one of"),
    (dict(dropout=1.5), "dropout"),
    (dict(vocab_size=1), "vocab_size"),
    (dict(mup_base_width=0), "mup_base_width"),
    (dict(image_mean=(0.5, 0.5)), "image_mean needs 3 values"),
    (dict(image_std=(0.2, 0.0, 0.2)), "image_std must be positive"),
])
def test_bad_config_raises_one_line(bad, words):
    with pytest.raises(BadInput, match=words) as info:
        ModelConfig(**shape(**bad))
    assert "\n" not in str(info.value)


def test_from_dict_unknown_key_did_you_mean():
    with pytest.raises(BadInput, match="did you mean 'n_layers'"):
        ModelConfig.from_dict({**shape(), "n_layer": 3})


@pytest.mark.parametrize("size, target", [("1e6", 1e6), ("2.5m", 2.5e6), (3e5, 3e5), (100000, 1e5),
                                          ("30K", 3e4), ("1b", 1e9), ("1m", 1e6)])
def test_parse_size(size, target):
    assert parse_size(size).target == pytest.approx(target)


@pytest.mark.parametrize("size, shape", [("48x2", (48, 2, 6)), ("112x3", (112, 3, 14)), (" 8 X 6 ", (8, 6, 1)),
                                         ("160x4", (160, 4, 10))])
def test_size_as_a_shape(size, shape):
    """"WIDTHxBLOCKS" pins the shape (the solver's head rule), whatever its parameter count."""
    cfg = ModelConfig.from_size(size, **DATA_DIMS)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads) == shape
    preset = parse_size(size)
    assert preset.target is None and (preset.d_model, preset.n_layers, preset.n_heads) == shape


@pytest.mark.parametrize("size", ["12x2", "48x0", "0x3", "136x2"])
def test_bad_shape(size):
    with pytest.raises(BadInput, match="multiple of the head width") as info:
        parse_size(size)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("size, words", [
    ("deubg", "did you mean 'debug'"), ("huge", "unknown preset"), (0, "positive"),
    (-5, "positive"), ("0", "positive"), (float("nan"), "positive"), (True, "preset name"),
])
def test_bad_size(size, words):
    with pytest.raises(BadInput, match=words):
        tiny_config(size)


def test_too_small_to_build():
    with pytest.raises(BadInput, match="smaller than the smallest model"):
        tiny_config(100)


def test_presets_span_two_decades_on_cpu_and_reach_1e9():
    targets = [PRESETS[name].target for name in CPU_LADDER]
    assert targets == sorted(targets) and targets[-1] / targets[0] >= 100
    assert max(p.target or 0 for p in PRESETS.values()) >= 1e9
    assert PRESETS["debug"].target is None


@pytest.mark.parametrize("dims", list(DIMS))
@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.target])
def test_ladder_presets_within_10_percent(name, dims):
    cfg = ModelConfig.from_size(name, **DIMS[dims])
    total, nonembed = count_params(cfg)
    assert abs(total / PRESETS[name].target - 1) <= 0.10
    assert 0 < nonembed < total


@pytest.mark.parametrize("dims", list(DIMS))
@pytest.mark.parametrize("target", np.geomspace(2e4, 1e9, 16).round(-2).tolist())
def test_solver_within_10_percent(target, dims):
    d_model, n_layers, n_heads = shape_for_params(target, **DIMS[dims])
    cfg = ModelConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads, **DIMS[dims])
    assert abs(count_params(cfg)[0] / target - 1) <= 0.10
    assert d_model % n_heads == 0 and d_model // n_heads in (8, 16, 32, 64)


def test_solver_follows_aspect_ratio_at_scale():
    # Above ~1e7 parameters width/depth stays in Kaplan's flat range and both grow with the target.
    shapes = [shape_for_params(t, **DIMS["table64"]) for t in (1e7, 1e8, 1e9)]
    for d_model, n_layers, _ in shapes:
        assert 40 <= d_model / n_layers <= 100
    assert [s[0] for s in shapes] == sorted(s[0] for s in shapes)
    assert [s[1] for s in shapes] == sorted(s[1] for s in shapes)


def test_solver_ladder_is_smooth_at_cpu_scale():
    # The depth rule: >= 2 blocks from ~4e4 parameters on, depth and width never shrink as the
    # target grows along the CPU study's ladder (a fixed aspect ratio gives 16x7, 48x1, 64x5 there).
    from scaling.model.solver import preferred_depth

    dims = dict(image_size=32, patch_size=4, vocab_size=59, max_instr_len=9, proprio_dim=4, action_dim=3)
    shapes = [shape_for_params(t, **dims) for t in (4e4, 8e4, 2e5, 5e5, 1e6, 3e6)]
    assert [s[:2] for s in shapes] == [(32, 2), (48, 2), (80, 2), (112, 3), (144, 4), (224, 5)]
    assert preferred_depth(1e3) == 2 and round(preferred_depth(1e5), 2) == 2.2
    assert round(preferred_depth(1e9)) == 22

def test_from_size_overrides_and_default_patch():
    cfg = tiny_config("1e5", head="flow", chunk=2, mup_base_width=32, dropout=0.1)
    assert (cfg.head, cfg.chunk, cfg.mup_base_width, cfg.dropout) == ("flow", 2, 32, 0.1)
    assert cfg.patch_size == default_patch_size(32) == 4
    assert default_patch_size(64) == 8 and default_patch_size(224) == 28 and default_patch_size(96) == 12


def test_ladder_shapes_are_stable_on_tabletop_dimensions():
    # Golden shapes: a silent change to the solver would make new runs incomparable with old ones.
    dims = dict(image_size=64, patch_size=8, vocab_size=64, max_instr_len=16, proprio_dim=4,
                action_dim=3)
    golden = {"30k": (24, 2, 3), "100k": (40, 4, 5), "300k": (80, 3, 10), "1m": (144, 4, 9),
              "3m": (224, 5, 14), "10m": (352, 7, 11), "30m": (512, 9, 16), "100m": (832, 12, 26),
              "300m": (1216, 16, 19), "1b": (1920, 22, 30)}
    for name, shape in golden.items():
        cfg = ModelConfig.from_size(name, **dims)
        assert (cfg.d_model, cfg.n_layers, cfg.n_heads) == shape, name


def test_image_normalisation_from_dataset_stats():
    from scaling.model import image_normalisation

    stats = {"image": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.0, 0.3], "scale": "0-1"}}
    norm = image_normalisation(stats)
    assert norm == {"image_mean": (0.4, 0.5, 0.6), "image_std": (0.2, 1e-3, 0.3)}
    assert tiny_config("debug", **norm).image_std == (0.2, 1e-3, 0.3)
    assert image_normalisation({}) == {} and image_normalisation(None) == {}
