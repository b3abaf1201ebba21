"""FSDP and DDP on 2 CPU processes (gloo), against one process.

FSDP runs on CPUs, evaluates, groups parameters by name (not by their flattened shape) and reduces
gradients in float32; a checkpoint resumes under another strategy; 16-mixed on a CPU runs bf16-mixed
and records so; a time-based checkpoint survives a kill before the step interval.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scaling.test_train_distributed import ROOT, cli_args, env, kill_at_first_checkpoint, train_losses

# Every test here trains (subprocesses over gloo): each is marked slow on its own, so that a fast
# test added to this file is not hidden (tests/test_suite_hygiene.py).


def _run(args, what: str) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{what}:\n{done.stderr[-3000:]}"
    return done


def _result(run_dir) -> dict:
    return json.loads((Path(run_dir) / "result.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """The same config trained on 1 process, DDP x2 and FSDP x2; each keeps a step-4 checkpoint."""
    root = tmp_path_factory.mktemp("strategies")
    flags = dict(samples=64, checkpoint_at=32, val_samples=32)
    _run(cli_args(tiny_dataset, root / "one", **flags), "one process")
    _run(cli_args(tiny_dataset, root / "ddp", devices=2, strategy="ddp", **flags), "ddp x2")
    _run(cli_args(tiny_dataset, root / "fsdp", devices=2, strategy="fsdp", eval_episodes=2, **flags), "fsdp x2")
    return root


@pytest.mark.slow
def test_fsdp_and_ddp_match_one_process_on_val_loss(runs):
    one, ddp, fsdp = (_result(runs / name) for name in ("one", "ddp", "fsdp"))
    assert ddp["world_size"] == fsdp["world_size"] == 2 and one["world_size"] == 1
    for r in (one, ddp, fsdp):
        assert r["status"] == "completed" and r["n_samples"] == 64 and r["val_loss"] is not None
    # The same global batches and float32 arithmetic: only reduction order differs (goal: within 2%).
    assert ddp["val_loss"] == pytest.approx(one["val_loss"], rel=2e-3)
    assert fsdp["val_loss"] == pytest.approx(one["val_loss"], rel=2e-3)
    assert fsdp["val_loss"] == pytest.approx(ddp["val_loss"], rel=2e-3)
    assert fsdp["action_mse"] == pytest.approx(one["action_mse"], rel=1e-2)
    a, b, c = (train_losses(runs / name) for name in ("one", "ddp", "fsdp"))
    assert sorted(a) == sorted(b) == sorted(c) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=2e-4) and c[step] == pytest.approx(a[step], rel=2e-4)


@pytest.mark.slow
def test_fsdp_runs_closed_loop_evaluation_and_saves_weights_only(runs, tiny_dataset):
    import torch

    from scaling.data import open_source
    from scaling.evaluation import is_tabletop

    fsdp = _result(runs / "fsdp")
    if is_tabletop(open_source(str(tiny_dataset))):  # closed-loop evaluation under FSDP too
        assert fsdp["success_rate"] is not None and 0.0 <= fsdp["success_rate"] <= 1.0
    ckpt = torch.load(runs / "fsdp" / "checkpoints" / "last.ckpt", weights_only=True)
    one = torch.load(runs / "one" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8 and set(ckpt["state_dict"]) == set(one["state_dict"])
    for name, tensor in one["state_dict"].items():  # full, unsharded tensors of the bare model's shapes
        assert ckpt["state_dict"][name].shape == tensor.shape, name
    assert set(ckpt["optimizer_states"][0]["state"]) == set(one["optimizer_states"][0]["state"])


@pytest.mark.slow
@pytest.mark.parametrize("source, strategy", [("fsdp", "ddp"), ("one", "fsdp")])
def test_checkpoint_resumes_across_strategies(runs, tiny_dataset, tmp_path, source, strategy):
    """A run interrupted at step 4 under one strategy finishes under another with the same result."""
    run_dir = tmp_path / f"{source}-to-{strategy}"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(runs / source / "checkpoints" / "stable-32.ckpt", run_dir / "checkpoints" / "last.ckpt")
    devices = 1 if strategy == "auto" else 2
    done = _run(cli_args(tiny_dataset, run_dir, samples=64, checkpoint_at=32, val_samples=32, devices=devices,
                         strategy=strategy), f"{source} -> {strategy}")
    assert "(step 4/8)" in done.stderr
    resumed, reference = _result(run_dir), _result(runs / source)
    assert resumed["world_size"] == devices and resumed["n_samples"] == 64
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], rel=2e-3)
    assert sorted(train_losses(run_dir)) == list(range(5, 9))  # a fresh folder: the steps it trained


@pytest.mark.slow
def test_fsdp_keeps_parameter_groups_and_reduces_in_float32(tiny_dataset, tmp_path):
    """Weight decay and muP rates by name, not by FSDP's flattened shapes; gradients all-reduced in fp32."""
    out = tmp_path / "worker"
    _run([sys.executable, "-m", "tests.scaling.fsdp_worker", str(tiny_dataset), str(out)], "fsdp worker")
    for rank in (0, 1):
        report = json.loads((out / f"rank{rank}.json").read_text())
        assert report["wrapper"] == "FullyShardedDataParallel" and report["world_size"] == 2
        assert report["by_shape_kinds"] == ["vector"]  # what a decision by p.dim() after wrapping sees
        assert report["got"] == report["expected"]
        assert len(report["got"]["hidden"]) > 0 and len(report["got"]["output"]) == 1
        assert report["settings"] == report["expected_settings"]
        assert report["settings"]["hidden"][0] == pytest.approx(3e-4 * 32 / 64)  # muP hidden rate
        assert report["reduce_dtype"] == report["param_dtype"] == "torch.float32"


@pytest.mark.slow
def test_sixteen_bit_on_cpu_records_what_ran(tiny_dataset, tmp_path):
    from tests.scaling.test_train_distributed import in_process

    result = in_process(tiny_dataset, tmp_path / "fp16", samples=16, precision="16-mixed")
    assert result.status == "completed" and result.precision == "bf16-mixed"
    assert _result(tmp_path / "fp16")["precision"] == "bf16-mixed"


@pytest.mark.slow
def test_time_based_checkpoint_survives_a_kill_before_the_step_interval(tiny_dataset, tmp_path):
    """With checkpoint_every far away, last.ckpt still appears after checkpoint_minutes, and resumes."""
    run_dir = tmp_path / "timed"
    flags = dict(samples=800, checkpoint_every=10**6, checkpoint_minutes=0.002)  # ~0.1 s
    kill_at_first_checkpoint(cli_args(tiny_dataset, run_dir, **flags), run_dir)
    again = _run(cli_args(tiny_dataset, run_dir, **flags), "resume")
    assert "resuming from" in again.stderr and "/100)" in again.stderr
    assert _result(run_dir)["n_samples"] == 800
    assert sorted(train_losses(run_dir)) == list(range(1, 101))
