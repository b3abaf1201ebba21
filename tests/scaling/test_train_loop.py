"""The Fabric loop's parts: launch environments (torchrun, SLURM), per-rank data shards, config sections,
clipping of true gradients under 16-bit loss scaling, and the progress bar."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scaling.config import from_mapping

TORCHRUN = {"TORCHELASTIC_RUN_ID": "job", "RANK": "13", "WORLD_SIZE": "32", "LOCAL_RANK": "5",
            "LOCAL_WORLD_SIZE": "8", "GROUP_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
SLURM = {"SLURM_NTASKS": "32", "SLURM_PROCID": "13", "SLURM_LOCALID": "5", "SLURM_NODEID": "1",
         "SLURM_NNODES": "4", "SLURM_NTASKS_PER_NODE": "8", "SLURM_JOB_NAME": "scaling", "SLURM_JOB_ID": "42",
         "SLURM_NODELIST": "node[1-4]", "MASTER_PORT": "29500"}


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith(("SLURM_", "TORCHELASTIC", "PMI_", "OMPI_")) or key in (
                "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK"):
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.mark.parametrize("environment", [TORCHRUN, SLURM], ids=["torchrun", "slurm"])
def test_launcher_environment_gives_ranks_world_size_and_shards(clean_env, environment):
    """4 nodes x 8 devices: process 13 is node 1, local rank 5, and trains its own micro-batches."""
    from scaling.datamodule import TrainBatches, plan_accumulation
    from scaling.train import _env_rank
    from scaling.trainer import make_fabric

    for key, value in environment.items():
        clean_env.setenv(key, value)
    cfg = from_mapping({"data.source": "d", "hardware.devices": 8, "hardware.num_nodes": 4, "hardware.strategy": "ddp",
                        "hardware.accelerator": "cpu", "optim.batch_size": 256, "model.precision": "32-true"})
    fabric = make_fabric(cfg)  # not launched: no process group is started
    assert (fabric.global_rank, fabric.world_size, fabric.node_rank, fabric.local_rank) == (13, 32, 1, 5)
    assert _env_rank() == 13  # train()'s own messages come from rank 0 only
    micro, accumulate = plan_accumulation(cfg.optim.batch_size, fabric.world_size, None)
    assert (micro, accumulate) == (8, 1)
    indices = np.arange(1100, dtype=np.int64)  # steps 0-3 full, step 4 short
    shards = [TrainBatches(None, indices, batch_size=256, micro_batch_size=micro, accumulate=accumulate, rank=r,
                           world_size=32, chunk=1) for r in range(32)]
    for step in (0, 3):
        mine = shards[13].micro_indices(step)[0]
        np.testing.assert_array_equal(mine, indices[step * 256 + 13 * 8: step * 256 + 14 * 8])
        union = np.sort(np.concatenate([s.micro_indices(step)[0] for s in shards]))
        np.testing.assert_array_equal(union, indices[step * 256:(step + 1) * 256])


def test_sections_nest_in_yaml_and_decide_what_may_change_on_resume(tmp_path):
    import yaml

    from scaling.config import SECTIONS, field_names, resolve, resumable_fields

    every = [f"{section}.{name}" for section, names in SECTIONS.items() for name in names]
    assert sorted(every + ["out", "run_id", "seed"]) == sorted(field_names())  # each field in exactly one section
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": {"source": "d", "samples": 640}, "optim": {"lr": 1e-3},
                                    "hardware": {"devices": 2, "strategy": "fsdp"}, "optim.batch_size": 32}))
    cfg = resolve(path, {"optim.lr": "2e-3"})  # a flag overrides a nested key
    assert (cfg.data.source, cfg.data.samples, cfg.optim.lr, cfg.hardware.devices, cfg.hardware.strategy,
            cfg.optim.batch_size) == (
        "d", 640, 2e-3, 2, "fsdp", 32)
    assert {"hardware.devices", "hardware.strategy", "hardware.num_workers", "checkpointing.every_steps",
            "logging.logger", "evaluation.episodes"} <= resumable_fields()
    assert not {"optim.lr", "data.samples", "model.size", "model.precision", "optim.batch_size", "seed",
                "schedule.warmup_frac", "schedule.branch_from", "validation.samples"} & resumable_fields()
    path.write_text(yaml.safe_dump({"data": "d", "optim": {"learning_rate": 1}}))
    from vla_core.errors import BadInput

    with pytest.raises(BadInput, match="unknown key optim.learning_rate"):
        resolve(path)


def test_fp16_loss_scaling_clips_true_gradients(one_thread):
    """Under 16-mixed, the norm clipped (and logged) is the true gradient's, not the loss-scaled one."""
    from lightning.fabric import Fabric

    from scaling.trainer import _precision_plugin

    def grad_norm(plugin) -> float:
        fabric = Fabric(accelerator="cpu", devices=1, plugins=[plugin])
        torch.manual_seed(0)
        model = fabric.setup_module(torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 1)))
        opt = fabric.setup_optimizers(torch.optim.AdamW(model.parameters()))
        x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
        fabric.backward(model(x).pow(2).mean())
        return float(fabric.clip_gradients(model, opt, max_norm=math.inf, error_if_nonfinite=False))

    plugin = _precision_plugin("16-mixed", "cpu", fsdp=False)
    assert plugin.scaler is not None and plugin.scaler.get_scale() == 65536.0
    reference = grad_norm(_precision_plugin("32-true", "cpu", fsdp=False))
    assert grad_norm(plugin) == pytest.approx(reference, rel=2e-2)  # fp16 compute, unscaled norm


def test_precision_that_runs_is_resolved_per_device():
    from scaling.trainer import resolved_precision

    cfg = from_mapping({"data.source": "d", "model.precision": "16-mixed"})
    assert resolved_precision(cfg, "cpu") == "bf16-mixed" and resolved_precision(cfg, "gpu") == "16-mixed"
    assert resolved_precision(cfg.replace(precision="bf16-mixed"), "cpu") == "bf16-mixed"


@pytest.mark.slow
def test_progress_bar_counts_steps_and_shows_the_loss(tiny_dataset, tmp_path, capfd, one_thread, monkeypatch):
    import re

    import scaling.trainer
    from scaling.train import train

    made = scaling.trainer._progress

    def redraw_every_step(*args):  # as a bar does when steps are slower than its redraw interval
        bar = made(*args)
        bar.mininterval = 0
        return bar

    monkeypatch.setattr(scaling.trainer, "_progress", redraw_every_step)
    # Logged at steps 1 and 6 only: the bar's loss still moves in between (not frozen at the last log).
    cfg = from_mapping({"data.source": str(tiny_dataset), "model.size": "debug", "data.samples": 48,
                        "optim.batch_size": 8, "out": str(tmp_path / "bar"), "model.precision": "32-true",
                        "hardware.accelerator": "cpu", "logging.progress_bar": True, "logging.every_steps": 100,
                        "validation.samples": 16})
    train(cfg)
    err = capfd.readouterr().err
    assert "6/6" in err and "loss=" in err
    assert "0/?" not in err and "v_num" not in err and err.count("Training") == 0
    shown = [m.groups() for seg in re.split(r"[\r\n]", err) if (m := re.search(r"(\d)/6 .*loss=([0-9.]+)", seg))]
    assert len({loss for step, loss in shown if step in "2345"}) >= 3, shown


@pytest.mark.slow
def test_compile_trains_the_same_model(tiny_dataset, tmp_path, one_thread):
    """--compile: same losses as eager (fp32, within kernel-fusion rounding), compile time in wall_seconds."""
    pytest.importorskip("torch._inductor")
    from scaling.train import train

    values = dict(data=str(tiny_dataset), size="debug", samples=32, batch_size=8, precision="32-true",
                  accelerator="cpu", progress_bar=False, log_every=1, val_samples=16, warmup=1)
    eager = train(from_mapping({"out": str(tmp_path / "eager"), **values}))
    compiled = train(from_mapping({"out": str(tmp_path / "compiled"), "hardware.compile": True, **values}))
    assert compiled.status == "completed" and compiled.n_samples == 32
    assert compiled.val_loss == pytest.approx(eager.val_loss, rel=1e-3)
    assert compiled.train_loss == pytest.approx(eager.train_loss, rel=1e-3)


def test_wandb_logger_prints_no_setting_warnings_or_colour_codes(tmp_path):
    """W&B as the loop starts it (offline, into a file as in a sweep's train.log): no warning about the
    deprecated "anonymous" setting (never passed), no ANSI codes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("wandb")
    code = ("from scaling.config import from_mapping\n"
            "from scaling.trainer import _Loggers\n"
            f"cfg = from_mapping({{'data.source': 'd', 'out': {str(tmp_path / 'run')!r}, "
            "'logging': {'logger': 'wandb', 'wandb_group': 'g'}})\n"
            "loggers = _Loggers(cfg, None)\n"
            "loggers.log({'train_loss': 1.0}, step=1)\n"
            "loggers.close()\n")
    (tmp_path / "run").mkdir()
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), WANDB_API_KEY="", PYTHONPATH=str(root),
               WANDB_BASE_URL="http://127.0.0.1:9")  # the user's own W&B settings stay out; no network
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout + done.stderr
    assert "anonymous" not in out.lower() and "WARNING" not in out, out
    assert "\x1b[" not in out, out  # a file gets no colour codes
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))  # offline by default, under the run
