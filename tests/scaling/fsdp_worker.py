"""Launched by the tests on 2 CPU processes (gloo): wraps a `VLA` with the run's own FSDP strategy and
precision plugin, and writes what the optimizer and FSDP were given to OUT/rank<r>.json.

    python -m tests.scaling.fsdp_worker DATA OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(data: str, out: str) -> None:
    from lightning.fabric import Fabric

    from scaling.config import from_mapping
    from scaling.data import open_source
    from scaling.model import VLA, param_groups
    from scaling.train import model_config
    from scaling.trainer import _fsdp_strategy, _precision_plugin, clean_name, group_plan, optimizer_groups

    torch.set_num_threads(1)
    cfg = from_mapping({"data.source": data, "model.size": "64x2x2", "model.mup_base_width": 32,
                        "hardware": {"strategy": "fsdp", "devices": 2, "accelerator": "cpu"},
                        "model.precision": "bf16-mixed"})
    fabric = Fabric(accelerator="cpu", devices=2, strategy=_fsdp_strategy(cfg, "cpu"),
                    plugins=[_precision_plugin("bf16-mixed", "cpu", fsdp=True)])
    fabric.launch()
    torch.manual_seed(0)
    model = VLA(model_config(cfg, open_source(data)))
    expected = {g["name"]: sorted(n for n, p in model.named_parameters() if any(p is q for q in g["params"]))
                for g in param_groups(model, cfg.optim.lr, cfg.optim.weight_decay)}
    settings = {g["name"]: (g["lr"], g["weight_decay"])
                for g in param_groups(model, cfg.optim.lr, cfg.optim.weight_decay)}
    plan = group_plan(model, cfg)
    wrapped = fabric.setup_module(model)
    groups = optimizer_groups(plan, wrapped)
    names = {id(p): clean_name(n) for n, p in wrapped.named_parameters()}
    got = {g["name"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    # What deciding by shape after wrapping would give.
    by_shape = {}
    for name, p in wrapped.named_parameters():
        kind = "vector" if p.dim() < 2 else "matrix"
        by_shape.setdefault(kind, []).append(clean_name(name))
    inner = wrapped._forward_module
    report = {"rank": fabric.global_rank, "world_size": fabric.world_size, "expected": expected, "got": got,
              "settings": {g["name"]: [g["lr"], g["weight_decay"]] for g in groups},
              "expected_settings": {k: list(v) for k, v in settings.items()},
              "by_shape_kinds": sorted(by_shape), "wrapper": type(inner).__name__,
              "reduce_dtype": str(inner.mixed_precision.reduce_dtype),
              "param_dtype": str(inner.mixed_precision.param_dtype),
              "sharding": str(inner.sharding_strategy)}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"rank{fabric.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
