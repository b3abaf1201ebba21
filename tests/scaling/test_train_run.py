"""train(cfg): result.json, metrics.csv, weights-only checkpoints, divergence, bad inputs, sharding."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from scaling.config import RunConfig, from_mapping
from vla_core.errors import BadInput

# The test machine is shared; one thread per process is fastest there (a fixture restores it afterwards).
pytestmark = pytest.mark.usefixtures("one_thread")


def run_config(data, out, **changes) -> RunConfig:
    """A small CPU run; `changes` by dotted name (``**{"model.keypoints": 4}``)."""
    values = {"data.source": str(data), "data.samples": 48, "model.size": "debug", "model.precision": "32-true",
              "optim.batch_size": 8, "out": str(out), "hardware.accelerator": "cpu",
              "logging.progress_bar": False, "logging.every_steps": 1, "checkpointing.every_steps": 2,
              "validation.samples": 32, "schedule.warmup_steps": 2}
    values.update(changes)
    return from_mapping(values)


@pytest.mark.slow
def test_train_writes_result_metrics_and_weights_only_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    from scaling.train import train
    from tests.scaling.test_train_config import CONTRACT_FIELDS

    monkeypatch.setenv("SCALING_PEAK_FLOPS", "1e11")  # a measured CPU peak makes MFU defined

    cfg = run_config(tiny_dataset, tmp_path / "run")
    result = train(cfg)
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    assert list(data) == CONTRACT_FIELDS
    assert data["status"] == "completed" and data["n_samples"] == 48 and data["world_size"] == 1
    assert data["run_id"] == "run" and data["precision"] == "32-true" and data["global_batch_size"] == 8
    from scaling.data import open_source

    train_frames = open_source(str(tiny_dataset)).n_train_frames
    assert 0 < data["n_unique_samples"] <= min(48, train_frames)
    assert data["epochs"] == pytest.approx(48 / train_frames)
    assert data["flops"] == data["flops_per_sample"] * 48
    assert data["val_loss"] > 0 and data["val_loss_best"] <= data["val_loss"] and data["action_mse"] > 0
    assert data["success_rate"] is None and data["samples_per_second"] > 0
    assert data["mfu"] == pytest.approx(data["samples_per_second"] * data["flops_per_sample"] / 1e11)
    assert set(data["versions"]) == {"torch", "lightning", "python", "package", "code"}
    from scaling.versions import code_version

    assert data["versions"]["code"] == code_version()  # what sweeps compare before reusing a run
    assert data["peak_flops"] == 1e11  # the peak MFU divided by
    assert result.val_loss == data["val_loss"]
    with open(tmp_path / "run" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    train_steps = [int(r["step"]) for r in rows if r["train_loss"]]
    assert train_steps == list(range(1, 7))  # one row per logged step
    assert any(r["val_loss"] for r in rows)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6 and "state_dict" in ckpt and ckpt["scaling"]["run_config"]["data"]["samples"] == 48
    # The resolved config is there, and running the same config again is a no-op returning the result.
    assert (tmp_path / "run" / "config.yaml").exists()
    assert train(cfg).to_dict() == result.to_dict()


@pytest.mark.slow
def test_huge_lr_ends_as_diverged_not_a_crash(tiny_dataset, tmp_path):
    from scaling.train import train

    cfg = run_config(tiny_dataset, tmp_path / "div", **{
        "data.samples": 160, "optim.lr": 50.0, "optim.grad_clip": 0, "schedule.warmup_steps": 0,
        "optim.weight_decay": 0.0, "checkpointing.every_steps": 100})
    result = train(cfg)
    assert result.status == "diverged", result
    rows = (tmp_path / "div" / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 2  # it trained, logged, then stopped
    assert result.n_samples < 160
    assert json.loads((tmp_path / "div" / "result.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("changes, message", [
    ({"data.source": "/nonexistent/dataset"}, "nonexistent"),
    ({"model.size": "30x2x4"}, "divide the width"),
    ({"model.size": "gigantic-preset"}, "gigantic-preset"),
    ({"model.size": 10}, "size"),
    ({"hardware.devices": 3}, "not divisible by the world size"),
    ({"hardware.micro_batch_size": 3}, "does not divide"),
    ({"hardware.strategy": "fsdp", "hardware.compile": True},
     "--hardware.compile is not supported with --hardware.strategy fsdp"),
    ({"model.patch_size": 5}, "does not divide"),
    ({"model.keypoints": -1}, "keypoints"),
    ({"model.film": True}, "film conditions the keypoint stem"),
])
def test_bad_input_is_rejected_before_training(tiny_dataset, tmp_path, changes, message):
    from scaling.train import train

    with pytest.raises(BadInput, match=message):
        train(run_config(changes.pop("data.source", tiny_dataset), tmp_path / "bad", **changes))
    assert not (tmp_path / "bad" / "result.json").exists()


def test_micro_batches_shard_each_step_without_overlap():
    from scaling.datamodule import TrainBatches, plan_accumulation

    indices = np.arange(100, dtype=np.int64)
    micro, accumulate = plan_accumulation(16, 2, 4)
    assert (micro, accumulate) == (4, 2)
    shards = [TrainBatches(None, indices, batch_size=16, micro_batch_size=micro, accumulate=accumulate, rank=r,
                           world_size=2, chunk=1) for r in range(2)]
    assert shards[0].steps == 7  # ceil(100 / 16)
    for step in range(7):
        parts = [p for s in shards for p in s.micro_indices(step)]
        joined = np.sort(np.concatenate(parts))
        np.testing.assert_array_equal(joined, indices[step * 16:(step + 1) * 16])
    # The short last step (4 samples over 4 slots) still gives every slot one sample.
    assert all(len(p) == 1 for s in shards for p in s.micro_indices(6))


def test_loader_from_a_checkpoint_step_skips_done_steps(tiny_dataset):
    from scaling.data import open_source
    from scaling.datamodule import TrainBatches, loader

    source = open_source(str(tiny_dataset))
    idx = source.train_indices(40)
    ds = TrainBatches(source, idx, batch_size=8, micro_batch_size=8, accumulate=1, rank=0, world_size=1, chunk=1,
                      start_step=3)
    batches = list(loader(ds))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0]["image"].numpy(), source.get_batch(idx[24:32])["image"])


def test_patch_size_and_keypoints_reach_the_model(tiny_dataset, tmp_path):
    # The model-family settings a spec sets (sweeps/cpu_study.yaml) build the model they name, and
    # the planner counts the same parameters and FLOPs as the built model.
    from scaling.data import open_source
    from scaling.model import count_params, flops_per_sample
    from scaling.model.vla import VLA
    from scaling.train import model_config

    cfg = run_config(tiny_dataset, tmp_path / "kp", **{"model.patch_size": 8, "model.keypoints": 4, "model.film": True})
    mcfg = model_config(cfg, open_source(str(tiny_dataset)))
    assert mcfg.patch_size == 8 and mcfg.keypoints == 4 and mcfg.film
    assert VLA(mcfg).embed.film is not None
    model = VLA(mcfg)
    assert count_params(mcfg)[0] == sum(p.numel() for p in model.parameters())
    plain = model_config(run_config(tiny_dataset, tmp_path / "p"), open_source(str(tiny_dataset)))
    assert mcfg.seq_len == plain.seq_len - plain.n_patches + mcfg.n_patches + 4
    assert flops_per_sample(mcfg) != flops_per_sample(plain)
