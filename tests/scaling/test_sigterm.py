"""SIGTERM while a run trains (a sweep worker stopping, SLURM preempting or cancelling the job): the step in
progress ends, the checkpoint is saved at that step, the command exits 143 with one line, and the same
command resumes to the uninterrupted run's results. The discrete head draws no noise, so resuming is exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from sweeps.cli import main
from tests.scaling.test_ensemble import metrics, run_config
from vla_core.errors import Stopped

pytestmark = pytest.mark.usefixtures("one_thread")
# 10 steps of 8 samples, checkpoints only at the end (or on SIGTERM), the discrete head.
CHANGES = {"data.samples": 80, "model.head": "discrete", "schedule.name": "cosine",
           "schedule.checkpoint_at_samples": (), "checkpointing.every_steps": 1000, "checkpointing.every_minutes": 0}


def config(data, out):
    return run_config(data, out, **CHANGES)


@pytest.fixture
def sigterm_at(monkeypatch):
    """`arm(n)`: one SIGTERM to this process once the loop has logged step `n`, as a worker's stop arrives
    mid-run; `arm` returns the function that disarms it."""
    import scaling.trainer as trainer

    log = trainer._log

    def arm(n: int):
        sent: list[int] = []

        def log_then_signal(fabric, run, cfg, done, *args):
            log(fabric, run, cfg, done, *args)
            if done == n and not sent:
                sent.append(done)
                os.kill(os.getpid(), signal.SIGTERM)

        monkeypatch.setattr(trainer, "_log", log_then_signal)
        return lambda: monkeypatch.setattr(trainer, "_log", log)

    return arm


@pytest.mark.slow
def test_sigterm_saves_the_step_exits_143_and_the_same_command_resumes(tiny_dataset, tmp_path, sigterm_at, capsys):
    from scaling.train import train

    reference = train(config(tiny_dataset, tmp_path / "ref"))
    run = tmp_path / "run"
    path = config(tiny_dataset, run).save(tmp_path / "run.yaml")
    handler_before = signal.getsignal(signal.SIGTERM)
    disarm = sigterm_at(3)
    assert main(["train", "--config", str(path)]) == 143
    stopped = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("scaling: stopped:")]
    assert len(stopped) == 1 and "SIGTERM at step 3 of 10" in stopped[0], stopped
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert not (run / "result.json").exists()  # stopped, not failed: nothing recorded
    assert signal.getsignal(signal.SIGTERM) is handler_before  # outside the loop SIGTERM is what it was

    disarm()
    assert main(["train", "--config", str(path)]) == 0
    assert "resuming from" in capsys.readouterr().err
    assert metrics(run) == metrics(tmp_path / "ref")  # every logged figure, to the digit
    resumed = json.loads((run / "result.json").read_text())
    assert resumed["status"] == "completed"
    assert (resumed["val_loss"], resumed["train_loss"]) == (reference.val_loss, reference.train_loss)


@pytest.mark.slow
def test_sigterm_stops_an_ensemble_at_its_checkpoint_and_it_resumes(tiny_dataset, tmp_path, sigterm_at):
    from scaling.ensemble import train_ensemble

    seeds = (1, 0)
    reference = train_ensemble(config(tiny_dataset, tmp_path / "ref"), seeds)
    cfg = config(tiny_dataset, tmp_path / "ens")
    disarm = sigterm_at(4)
    with pytest.raises(Stopped, match="SIGTERM at step 4 of 10"):
        train_ensemble(cfg, seeds)
    assert (tmp_path / "ens" / "checkpoints" / "ensemble.ckpt").exists()
    assert not [s for s in seeds if (tmp_path / "ens" / f"seed-{s}" / "result.json").exists()]
    disarm()
    results = train_ensemble(cfg, seeds)
    for seed, ref, got in zip(seeds, reference, results):
        assert metrics(tmp_path / "ens" / f"seed-{seed}") == metrics(tmp_path / "ref" / f"seed-{seed}")
        assert (got.status, got.val_loss, got.train_loss) == ("completed", ref.val_loss, ref.train_loss)


def test_a_second_sigterm_ends_the_process_at_once():
    """A stop that cannot wait for the step (the worker's second signal) is not swallowed."""
    code = ("import os, signal, time\n"
            "from scaling.trainer import _sigterm_saves\n"
            "with _sigterm_saves() as asked:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    assert asked()\n"
            "    print('asked', flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(30)\n"
            "print('still alive')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGTERM, (r.returncode, r.stderr[-500:])
    assert r.stdout == "asked\n"
