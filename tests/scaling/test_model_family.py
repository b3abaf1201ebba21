"""Model families through the seam (`scaling.model.family`): the built-in `vla` and `conv`, a family a
test defines, the contract's checks, and the docs' own example (docs/contracts.md, "Your own model family")."""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from scaling.model import PRESETS
from scaling.model.family import Dims, load_family, resolve_model
from scaling.model.measure import count_params, measure_training_flops
from sweeps.cli import main

REPO = Path(__file__).resolve().parents[2]
DIMS = Dims(image_size=32, vocab_size=24, max_instr_len=6, proprio_dim=5, action_dim=3, chunk=2)
_MODULES = itertools.count()


def family_module(tmp_path: Path, body: str) -> str:
    """Write `body` as a fresh module in `tmp_path` and return its (unique) name, importable from there."""
    name = f"test_family_{next(_MODULES)}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    return name


MLP_FAMILY = textwrap.dedent("""
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Block(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.fc = nn.Linear(width, width)

        def forward(self, x):
            return x + F.relu(self.fc(x))


    class Policy(nn.Module):
        fsdp_units = ("Block",)

        def __init__(self, dims, width):
            super().__init__()
            self.dims = dims
            self.words = nn.Embedding(dims.vocab_size, 8)
            self.inp = nn.Linear(3 + 8 + dims.proprio_dim, width)
            self.blocks = nn.Sequential(Block(width), Block(width))
            self.out = nn.Linear(width, dims.chunk * dims.action_dim * dims.action_bins)

        def logits(self, batch):
            image = batch["image"].float().mean(dim=(1, 2)) / 255  # (B, 3)
            words = self.words(batch["instruction"]).mean(1)
            h = self.blocks(F.relu(self.inp(torch.cat([image, words, batch["proprio"].float()], 1))))
            d = self.dims
            return self.out(h).view(-1, d.chunk, d.action_dim, d.action_bins)

        def forward(self, batch):
            loss = F.cross_entropy(self.logits(batch).float().flatten(0, 2), batch["action_tokens"].flatten())
            return loss, {"nll": loss.detach()}

        @torch.no_grad()
        def predict(self, batch):
            bins = self.dims.action_bins
            return (self.logits(batch).argmax(-1).float() + 0.5) * (2 / bins) - 1


    def count(dims, width):
        return sum(p.numel() for p in Policy(dims, width).parameters())


    def make(size, dims):
        return Policy(dims, min(range(2, 200), key=lambda w: abs(count(dims, w) - size)))
""")


def train_args(data, out, family: str, size="20k", **flags) -> list[str]:
    values = dict(data=str(data), family=family, size=size, samples=32, batch_size=8, out=str(out),
                  precision="32-true", accelerator="cpu", val_samples=16, log_every=1)
    values.update(flags)
    args = ["train", "--no-progress-bar"]
    for key, value in values.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


# ---- the built-in families ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [name for name, p in PRESETS.items() if p.device == "cpu"])
def test_vla_analytic_counts_equal_the_measured_ones_at_every_cpu_preset(size, one_thread):
    """What a factory family gets measured (FlopCounterMode, forward + backward; parameters of the module)
    is what the built-in family's accounting says, exactly."""
    model = resolve_model("vla", size, DIMS)
    module = model.build()
    assert model.flops_source == "analytic"
    assert measure_training_flops(module, DIMS) == model.flops_per_sample
    assert count_params(module) == (model.n_params, model.n_params_nonembed)


def test_vla_through_the_seam_is_the_model_of_before():
    """The short name reaches the same config, counts and pinned shape as `ModelConfig.from_size`."""
    from scaling.model import ModelConfig, flops_per_sample
    from scaling.model import count_params as analytic

    model = resolve_model("vla", "300k", DIMS, {"keypoints": 4, "film": True})
    cfg = ModelConfig.from_size("300k", image_size=32, vocab_size=24, max_instr_len=6, proprio_dim=5, action_dim=3,
                                chunk=2, keypoints=4, film=True)
    assert model.config == cfg and (model.n_params, model.n_params_nonembed) == analytic(cfg)
    assert model.flops_per_sample == flops_per_sample(cfg)
    assert model.pinned == {"size": f"{cfg.d_model}x{cfg.n_layers}x{cfg.n_heads}"}  # the whole shape, one string
    assert resolve_model("vla", model.pinned["size"], DIMS, {"keypoints": 4, "film": True}).config == cfg
    assert resolve_model("vla", model.size_name, DIMS, {"keypoints": 4, "film": True}).config == cfg


def _layer_flops(module: torch.nn.Module, batch: dict) -> int:
    """Training FLOPs of one step from the layers' own shapes (hooks, no FlopCounterMode): 2 x MACs of every
    convolution and linear layer forward, twice that backward (input and weight gradients), except the
    first convolution, whose input is the image (no input gradient)."""
    total, first = [0], [True]

    def hook(layer, inputs, out):
        if isinstance(layer, torch.nn.Conv2d):
            macs = out.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        else:
            macs = out.numel() * layer.in_features
        total[0] += 2 * macs * (2 if first[0] else 3)
        first[0] = False

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        loss, _ = module(batch)
    finally:
        for h in handles:
            h.remove()
    return total[0]


@pytest.mark.parametrize("size", ["30k", "3e5"])
def test_conv_family_measured_flops_are_its_layers(size, one_thread):
    """The conv family's measured FLOPs per sample equal a count from its layers' shapes, and its
    parameters are within 10% of the size, with width and depth growing with it."""
    from scaling.model.conv import ConvPolicy
    from scaling.model.measure import contract_batch

    model = resolve_model("conv", size, DIMS)
    assert model.flops_source == "measured" and model.family == "conv"
    assert abs(model.n_params / float(size.replace("k", "e3")) - 1) <= 0.10
    policy = model.build().policy
    assert isinstance(policy, ConvPolicy)
    assert model.flops_per_sample == _layer_flops(policy, contract_batch(DIMS)) // 2
    with torch.device("meta"):
        bigger = ConvPolicy(DIMS, 2 * policy.width, policy.blocks + 1)
    assert sum(p.numel() for p in bigger.parameters()) > model.n_params
    assert model.n_params - model.n_params_nonembed == DIMS.vocab_size * policy.width  # the token table


def test_conv_width_and_depth_follow_the_size():
    from scaling.model.conv import shape_for

    shapes = [shape_for(int(n), DIMS) for n in (1e4, 3e4, 1e5, 3e5, 1e6, 3e6)]
    widths, depths = [w for w, _, _ in shapes], [b for _, b, _ in shapes]
    assert widths == sorted(widths) and depths == sorted(depths) and depths[0] < depths[-1]


# ---- the contract ---------------------------------------------------------------------------------
DEFECTS = {
    "module not found": ("", "no_such_family_module_xyz:make", "module 'no_such_family_module_xyz' not found"),
    "attribute missing": (MLP_FAMILY, "{mod}:nope", "has no attribute 'nope'"),
    "not callable": (MLP_FAMILY + "\nWIDTH = 3\n", "{mod}:WIDTH", "is not callable"),
    "wrong size": (MLP_FAMILY + "\ndef too_big(size, dims):\n    return make(2 * size, dims)\n", "{mod}:too_big",
                   "built"),
    "forward not (loss, metrics)": (MLP_FAMILY + textwrap.dedent("""
        class LossOnly(Policy):
            def forward(self, batch):
                return super().forward(batch)[0]


        def loss_only(size, dims):
            return LossOnly(dims, make(size, dims).inp.out_features)
        """), "{mod}:loss_only", "must return (loss, metrics)"),
    "predict out of range": (MLP_FAMILY + textwrap.dedent("""
        class Wide(Policy):
            @torch.no_grad()
            def predict(self, batch):
                return torch.full_like(super().predict(batch), 1.5)  # raw units, not normalised


        def wide(size, dims):
            return Wide(dims, make(size, dims).inp.out_features)
        """), "{mod}:wide", "in [-1, 1]"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_family_defect_exits_2_with_one_line(defect, tiny_dataset, tmp_path, monkeypatch, capsys):
    body, family, message = DEFECTS[defect]
    monkeypatch.chdir(tmp_path)  # the current directory is searched
    family = family.format(mod=family_module(tmp_path, body) if body else "")
    assert main(train_args(tiny_dataset, tmp_path / "run", family)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err and f"family {family}" in err, err
    if defect == "wrong size":
        assert re.search(r"built [\d,]+ parameters", err)
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before anything was written


def test_a_module_may_say_its_own_non_embedding_count(tmp_path, monkeypatch):
    from vla_core.errors import BadInput

    monkeypatch.chdir(tmp_path)
    mod = family_module(tmp_path, MLP_FAMILY + textwrap.dedent("""
        class Own(Policy):
            def n_params_nonembed(self):  # the output layer counted as an embedding too, say
                return sum(p.numel() for p in self.parameters()) - self.words.weight.numel() - self.out.weight.numel()


        class Wrong(Policy):
            def n_params_nonembed(self):
                return -1


        def own(size, dims):
            return Own(dims, make(size, dims).inp.out_features)


        def wrong(size, dims):
            return Wrong(dims, make(size, dims).inp.out_features)
        """))
    plain, own = resolve_model(f"{mod}:make", "20k", DIMS), resolve_model(f"{mod}:own", "20k", DIMS)
    head = own.build().policy.out.weight.numel()
    assert plain.n_params == own.n_params and own.n_params_nonembed == plain.n_params_nonembed - head
    assert plain.n_params - plain.n_params_nonembed == DIMS.vocab_size * 8  # the nn.Embedding alone
    with pytest.raises(BadInput, match=r"n_params_nonembed\(\) must be an integer"):
        resolve_model(f"{mod}:wrong", "20k", DIMS)


def test_vla_options_are_refused_for_another_family():
    from vla_core.errors import BadInput

    with pytest.raises(BadInput, match="keypoints is an option of the vla family"):
        resolve_model("conv", "30k", DIMS, {"keypoints": 4})
    with pytest.raises(BadInput, match="not a parameter count"):
        resolve_model("conv", "48x2", DIMS)
    with pytest.raises(BadInput, match="MODULE:ATTR"):
        load_family("not a family")


# ---- a family defined here: train, resume, DDP-free paths -----------------------------------------
def test_own_family_trains_resumes_and_records_its_counts(tiny_dataset, tmp_path, monkeypatch, capsys, one_thread):
    """A family from a module in the current folder: the run records the exact count, the measured FLOPs
    and their source; re-running finishes nothing twice; a run resumed from a mid-run checkpoint ends
    where the uninterrupted one did; its config.yaml is the same run."""
    from scaling.config import resolve
    from scaling.train import train

    monkeypatch.chdir(tmp_path)
    family = f"{family_module(tmp_path, MLP_FAMILY)}:make"
    run = tmp_path / "run"
    assert main(train_args(tiny_dataset, run, family, checkpoint_at=16, eval_episodes=1)) == 0
    result = json.loads((run / "result.json").read_text())
    model = resolve_model(family, "20k", Dims(**{k: result["model"][k] for k in
                                                 ("image_size", "proprio_dim", "action_dim", "vocab_size",
                                                  "max_instr_len", "action_bins", "chunk")}))
    assert result["status"] == "completed" and result["n_params"] == model.n_params
    assert abs(result["n_params"] / 20_000 - 1) <= 0.15
    assert result["model"]["family"] == family and result["model"]["flops_source"] == "measured"
    assert result["flops_per_sample"] == model.flops_per_sample
    from scaling.model.measure import contract_batch

    policy = model.build().policy
    with FlopCounterMode(display=False) as counter:  # the figure is torch's own count, per sample
        loss, _ = policy(contract_batch(Dims(**model.config["dims"]), 4))
        loss.backward()
    assert counter.get_total_flops() == 4 * result["flops_per_sample"]
    assert result["input_reliance"] is not None
    capsys.readouterr()

    # Resume from the step-2 checkpoint: the same last steps, the same final loss.
    (run / "checkpoints" / "stable-16.ckpt").replace(run / "checkpoints" / "last.ckpt")
    (run / "result.json").unlink()
    assert main(train_args(tiny_dataset, run, family, checkpoint_at=16, eval_episodes=1)) == 0
    assert "resuming from" in capsys.readouterr().err
    again = json.loads((run / "result.json").read_text())
    assert again["val_loss"] == pytest.approx(result["val_loss"], rel=1e-5)
    assert again["train_loss"] == pytest.approx(result["train_loss"], rel=1e-5)
    # The resolved config.yaml keeps the size (the factory's input) and is the same run: nothing to do.
    assert train(resolve(run / "config.yaml")).to_dict() == again


def test_own_family_param_groups_and_fsdp_units(tmp_path, monkeypatch):
    """Weight decay on matrices only (embeddings and vectors excluded), and the FSDP units a family names
    by class name; names survive the wrappers' prefixes (a submodule named `..._module` included)."""
    from scaling.config import from_mapping
    from scaling.model.measure import fsdp_unit_classes
    from scaling.trainer import clean_name, group_plan

    monkeypatch.chdir(tmp_path)
    model = resolve_model(f"{family_module(tmp_path, MLP_FAMILY)}:make", "20k", DIMS).build()
    plan = {g["name"]: g for g in group_plan(model, from_mapping({"data.source": "d", "optim.weight_decay": 0.1}))}
    assert plan["input"]["param_names"] == ["policy.words.weight"] and plan["input"]["weight_decay"] == 0
    assert all(n.endswith(".weight") for n in plan["hidden"]["param_names"]) and plan["hidden"]["weight_decay"] == 0.1
    assert all(n.endswith(".bias") for n in plan["vector"]["param_names"])
    assert {c.__name__ for c in fsdp_unit_classes(model)} == {"Block"}
    assert clean_name("_forward_module._fsdp_wrapped_module.policy.enc_module.0._fsdp_wrapped_module.w") == \
        "policy.enc_module.0.w"
    assert clean_name("_forward_module.module.policy.module.w") == "policy.module.w"


# ---- the docs' example, as written ----------------------------------------------------------------
def doc_example() -> tuple[str, str]:
    """(the Python family, the spec) of docs/contracts.md's "Your own model family", as written there."""
    text = (REPO / "docs" / "contracts.md").read_text()
    section = text.split("## Your own model family", 1)[1].split("\n## ", 1)[0]
    blocks = dict(re.findall(r"```(python|yaml)\n(.*?)```", section, flags=re.S))
    return blocks["python"], blocks["yaml"]


def test_the_docs_family_example_trains_as_written(tiny_dataset, tmp_path, monkeypatch, capsys, one_thread):
    import yaml

    code, spec = doc_example()
    (tmp_path / "my_policy.py").write_text(code)
    from scaling.config import to_legacy

    family = to_legacy(yaml.safe_load(spec)["train"])["family"]  # the spec's train: block, in any form
    assert family == "my_policy:make"
    monkeypatch.chdir(tmp_path)
    for size in yaml.safe_load(spec)["models"]:
        assert main(train_args(tiny_dataset, tmp_path / f"run-{size}", family, size=size)) == 0
        result = json.loads((tmp_path / f"run-{size}" / "result.json").read_text())
        assert result["status"] == "completed" and result["model"]["flops_source"] == "measured"
        assert abs(result["n_params"] / float(size.replace("k", "e3")) - 1) <= 0.15
