"""End-to-end checks of `scaling train` (slow, marked one by one): DDP on CPU, resume after kill -9, accumulation,
W&B offline, WSD branching, closed-loop evaluation."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scaling.config import from_mapping

# One intra-op thread for the in-process runs (a shared machine), set and restored by a fixture: a
# module-level torch.set_num_threads(1) would change every test that runs after this file.
pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


def cli_args(data, out, **flags) -> list[str]:
    values = {"data.source": str(data), "model.size": "debug", "optim.batch_size": 8, "out": str(out),
              "model.precision": "32-true", "hardware.accelerator": "cpu", "logging.every_steps": 1,
              "validation.samples": 16, "schedule.warmup_steps": 2}
    values.update(flags)  # dotted names, or the old flat flags (`scaling.config.LEGACY`)
    args = [sys.executable, "-m", "sweeps.cli", "train", "--no-logging.progress-bar"]
    for key, value in values.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def kill_at_first_checkpoint(args: list[str], run_dir) -> None:
    """Start `scaling train args`, SIGKILL it as soon as last.ckpt exists, and check it was cut short."""
    proc = subprocess.Popen(args, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (Path(run_dir) / "result.json").exists(), "the run ended before it could be killed"


def train_losses(run_dir) -> dict[int, float]:
    with open(Path(run_dir) / "metrics.csv") as fh:
        return {int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(fh) if r["train_loss"]}


def in_process(data, out, **changes):
    from scaling.train import train

    values = {"data.source": str(data), "model.size": "debug", "data.samples": 48, "optim.batch_size": 8,
              "out": str(out), "model.precision": "32-true", "hardware.accelerator": "cpu",
              "logging.progress_bar": False, "logging.every_steps": 1, "validation.samples": 16,
              "schedule.warmup_steps": 2}
    values.update(changes)  # dotted names, or the old flat names (`scaling.config.LEGACY`)
    return train(from_mapping(values))


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(tiny_dataset, tmp_path):
    one = subprocess.run(cli_args(tiny_dataset, tmp_path / "one", samples=64), env=env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(cli_args(tiny_dataset, tmp_path / "two", samples=64, devices=2, strategy="ddp"),
                         env=env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["world_size"] == 2 and result["n_samples"] == 64 and result["global_batch_size"] == 8
    a, b = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=2e-4, abs=2e-4), step
    # Validation is sharded over the ranks and reduced: the held-out loss must agree too.
    ref = json.loads((tmp_path / "one" / "result.json").read_text())
    assert result["val_loss"] == pytest.approx(ref["val_loss"], rel=2e-3)
    assert result["action_mse"] == pytest.approx(ref["action_mse"], rel=1e-2)


@pytest.mark.slow
def test_gradient_accumulation_keeps_the_global_batch(tiny_dataset, tmp_path):
    full = in_process(tiny_dataset, tmp_path / "full")
    accum = in_process(tiny_dataset, tmp_path / "accum", micro_batch_size=2)
    a, b = train_losses(tmp_path / "full"), train_losses(tmp_path / "accum")
    assert sorted(a) == sorted(b)
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=2e-4, abs=2e-4)
    assert accum.val_loss == pytest.approx(full.val_loss, rel=1e-3)


@pytest.mark.slow
def test_resume_after_kill_9_finishes_the_same_budget(tiny_dataset, tmp_path):
    flags = dict(samples=1600, checkpoint_every=10)
    reference = subprocess.run(cli_args(tiny_dataset, tmp_path / "ref", **flags), env=env(), cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-2000:]

    run_dir = tmp_path / "killed"
    kill_at_first_checkpoint(cli_args(tiny_dataset, run_dir, **flags), run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"

    again = subprocess.run(cli_args(tiny_dataset, run_dir, **flags), env=env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {last} (step " in again.stderr and "/200)" in again.stderr
    result = json.loads((run_dir / "result.json").read_text())
    ref = json.loads((tmp_path / "ref" / "result.json").read_text())
    assert result["status"] == "completed" and result["n_samples"] == ref["n_samples"] == 1600
    assert sorted(train_losses(run_dir)) == list(range(1, 201))  # each step logged once
    assert result["train_loss"] == pytest.approx(ref["train_loss"], rel=0.02)
    assert result["val_loss"] == pytest.approx(ref["val_loss"], rel=0.02)


@pytest.mark.slow
def test_sigterm_to_rank_0_of_ddp_saves_and_stops_both_ranks(tiny_dataset, tmp_path):
    """The launcher signals rank 0 only; rank 0 decides for both (a broadcast each step), so both save and
    end, none waits forever in a collective, and the same command resumes the whole budget."""
    run_dir = tmp_path / "ddp"
    args = cli_args(tiny_dataset, run_dir, samples=800, devices=2, strategy="ddp", checkpoint_every=1000,
                    checkpoint_minutes=0)
    proc = subprocess.Popen(args, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (train_losses(run_dir) if (run_dir / "metrics.csv").exists() else {}).get(5):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be stopped"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "scaling: stopped:" in err and "SIGTERM at step" in err
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 5 <= step < 100 and not (run_dir / "result.json").exists()
    again = subprocess.run(args, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"(step {step}/100)" in again.stderr
    assert sorted(train_losses(run_dir)) == list(range(1, 101))
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_wandb_offline_writes_under_the_run_dir(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # any network use would fail
    result = in_process(tiny_dataset, tmp_path / "wb", samples=16, logger="wandb", wandb_group="sweep-x",
                        precision="bf16-mixed")
    assert result.status == "completed" and result.precision == "bf16-mixed"
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())


@pytest.mark.slow
def test_wsd_branch_from_stable_checkpoint(tiny_dataset, tmp_path):
    long = in_process(tiny_dataset, tmp_path / "long", samples=160, schedule="wsd", checkpoint_at=(64,))
    stable = tmp_path / "long" / "checkpoints" / "stable-64.ckpt"
    assert long.status == "completed" and stable.exists()
    assert torch.load(stable, weights_only=True)["global_step"] == 8
    branch = in_process(tiny_dataset, tmp_path / "branch", samples=80, schedule="wsd", branch_from=str(stable))
    assert branch.status == "completed" and branch.n_samples == 80
    steps = sorted(train_losses(tmp_path / "branch"))
    assert steps[0] == 9 and steps[-1] == 10  # continues after the branch point, cools down to step 10


@pytest.mark.slow
def test_closed_loop_success_rate(tiny_dataset, tmp_path):
    from scaling.data import open_source
    from scaling.evaluation import is_tabletop

    if not is_tabletop(open_source(str(tiny_dataset))):
        pytest.skip("tiny dataset is synthetic (no tabletop generator)")
    result = in_process(tiny_dataset, tmp_path / "ev", samples=16, eval_episodes=4)
    assert result.success_rate is not None and 0.0 <= result.success_rate <= 1.0
    # The breakdown per family (the tiny data is drawn from every family; 4 episodes meet some of them).
    from scaling.data.tabletop.env import check_families

    per = result.success_per_task
    assert per and set(per) <= set(check_families(None)) and all(0.0 <= v <= 1.0 for v in per.values())


@pytest.mark.slow
def test_mixture_spec_from_yaml_config(tiny_dataset, tmp_path):
    import yaml

    from scaling.config import resolve
    from scaling.data.testing import make_tiny_dataset
    from scaling.train import train

    other = make_tiny_dataset(tmp_path / "other", episodes=4, image_size=32, seed=1)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"mixture": [{"path": str(tiny_dataset), "weight": 3}, {"path": str(other), "weight": 1}]},
        "model": {"size": "debug", "precision": "32-true"}, "data.samples": 16, "optim.batch_size": 8,
        "hardware.accelerator": "cpu", "logging.progress_bar": False, "validation.samples": 16}))
    cfg = resolve(path, {"out": str(tmp_path / "mix")})
    result = train(cfg)
    assert result.status == "completed" and result.n_samples == 16
    from scaling.config import load_run_config

    path = tmp_path / "mix" / "config.yaml"
    assert load_run_config(path)[1] == cfg.flat()  # what was asked, on record beside the resolved values
    assert train(resolve(path)).to_dict() == result.to_dict()  # the resolved file is the same run: nothing to do


def test_mup_scales_hidden_learning_rates(tiny_dataset, tmp_path):
    from scaling.data import open_source
    from scaling.model import VLA
    from scaling.train import model_config
    from scaling.trainer import group_plan, optimizer_groups

    cfg = from_mapping({"data.source": str(tiny_dataset), "model.size": "64x2x2", "model.mup_base_width": 32,
                        "optim.lr": 1e-3})
    model = VLA(model_config(cfg, open_source(str(tiny_dataset))))
    groups = {g["name"]: g["peak_lr"] for g in optimizer_groups(group_plan(model, cfg), model)}
    assert groups["hidden"] == pytest.approx(1e-3 * 32 / 64) and groups["input"] == pytest.approx(1e-3)
