"""`scaling train --seeds`: each member of an ensemble is its solo run (data order, losses, results),
resumes as one, branches per seed, and the ensemble refuses what it cannot run with one line and exit 2.

Members step in a loop through the operations of their solo runs (`scaling.ensemble`), so the
comparisons are exact: any difference means a member saw another member's data, random stream or
optimizer state."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from scaling.config import RunConfig, from_mapping
from scaling.datamodule import TrainBatches
from sweeps.cli import main
from vla_core.errors import BadInput

pytestmark = pytest.mark.usefixtures("one_thread")
SEEDS = (2, 1)  # not sorted: members are matched to seeds, not to positions
COLUMNS = ("step", "samples", "train_loss", "lr", "grad_norm", "val_loss", "action_mse")


def run_config(data, out, **changes) -> RunConfig:
    """A small WSD run; `changes` by dotted name (``**{"model.head": "mse"}``) or ``seed=``."""
    values = {"data.source": str(data), "data.samples": 96, "model.size": "debug", "model.precision": "32-true",
              "model.head": "flow", "optim.batch_size": 8, "out": str(out), "hardware.accelerator": "cpu",
              "hardware.peak_flops": 1e11, "logging.progress_bar": False, "logging.every_steps": 1,
              "checkpointing.every_steps": 4, "validation.samples": 16, "schedule.warmup_steps": 2,
              "schedule.name": "wsd", "schedule.checkpoint_at_samples": (48,)}
    values.update(changes)
    return from_mapping(values)


class Drawn:
    """Records the training indices of every `TrainBatches` made, in order of creation."""

    def __init__(self, monkeypatch) -> None:
        self.made: list[TrainBatches] = []
        init, micro = TrainBatches.__init__, TrainBatches.micro_indices

        def recording_init(batches, *args, **kwargs):
            init(batches, *args, **kwargs)
            batches.drawn = []
            self.made.append(batches)

        def recording_micro(batches, step):
            parts = micro(batches, step)
            batches.drawn.append(np.concatenate(parts))
            return parts

        monkeypatch.setattr(TrainBatches, "__init__", recording_init)
        monkeypatch.setattr(TrainBatches, "micro_indices", recording_micro)

    def take(self) -> list[np.ndarray]:
        """The indices each TrainBatches made since the last call drew, concatenated over its steps."""
        out = [np.concatenate(b.drawn) if b.drawn else np.zeros(0, dtype=np.int64) for b in self.made]
        self.made = []
        return out


def metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{c: row[c] for c in COLUMNS} for row in csv.DictReader(fh)]


def result(run_dir) -> dict:
    return json.loads((run_dir / "result.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory, one_thread):
    """An ensemble of SEEDS and the solo run of its second seed, with the indices each drew; the flow head,
    so that a member's random stream (noise in every step) is compared too."""
    from scaling.ensemble import train_ensemble
    from scaling.train import train

    tmp = tmp_path_factory.mktemp("ensemble")
    with pytest.MonkeyPatch.context() as mp:
        drawn = Drawn(mp)
        results = train_ensemble(run_config(tiny_dataset, tmp / "ens"), SEEDS)
        ensemble_drawn = drawn.take()
        solo = train(run_config(tiny_dataset, tmp / "solo", seed=SEEDS[1]))
        solo_drawn = drawn.take()
    return {"dir": tmp, "results": results, "drawn": ensemble_drawn, "solo": solo, "solo_drawn": solo_drawn}


def test_member_sees_exactly_its_solo_runs_data_order(runs, tiny_dataset):
    from scaling.data import open_source

    source = open_source(str(tiny_dataset))
    assert len(runs["drawn"]) == len(SEEDS)
    for seed, drawn in zip(SEEDS, runs["drawn"]):
        np.testing.assert_array_equal(drawn, source.train_indices(96, seed=seed))
    np.testing.assert_array_equal(runs["drawn"][1], runs["solo_drawn"][0])
    assert not np.array_equal(runs["drawn"][0], runs["drawn"][1])


def test_member_learning_curve_and_result_are_its_solo_runs(runs):
    member, solo = runs["dir"] / "ens" / f"seed-{SEEDS[1]}", runs["dir"] / "solo"
    rows = metrics(member)
    assert rows == metrics(solo)  # every logged loss, gradient norm and validation figure, to the digit
    assert len([r for r in rows if r["train_loss"]]) == 12
    mine, theirs = result(member), runs["solo"].to_dict()
    timing = {"run_id", "wall_seconds", "samples_per_second", "mfu"}
    assert {k: v for k, v in mine.items() if k not in timing and not k.startswith("peak_flops_")} == \
        {k: v for k, v in theirs.items() if k not in timing and not k.startswith("peak_flops_")}
    assert mine["run_id"] == f"ens-seed-{SEEDS[1]}" and mine["status"] == "completed"
    # The other member trained on its own: another curve.
    assert metrics(runs["dir"] / "ens" / f"seed-{SEEDS[0]}") != rows
    assert [r.run_id for r in runs["results"]] == [f"ens-seed-{s}" for s in SEEDS]


def test_member_folder_is_a_finished_solo_run(runs, tiny_dataset, capsys):
    """config.yaml records the member's seed; the solo command on it and the ensemble again do nothing."""
    from scaling.config import resolve
    from scaling.ensemble import train_ensemble
    from scaling.train import train

    member = runs["dir"] / "ens" / f"seed-{SEEDS[0]}"
    cfg = resolve(member / "config.yaml")
    assert cfg.seed == SEEDS[0] and cfg.out == str(member)
    assert train(cfg).to_dict() == result(member)
    again = train_ensemble(run_config(tiny_dataset, runs["dir"] / "ens"), SEEDS)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in runs["results"]]
    assert capsys.readouterr().err.count("nothing to do") == 3


def test_resume_from_ensemble_checkpoint_reproduces_the_uninterrupted_ensemble(tiny_dataset, tmp_path, monkeypatch,
                                                                                capsys):
    """The discrete head: a resumed run draws its random stream afresh (as a solo run does), and this head
    draws nothing, so resuming is exact."""
    import scaling.checkpointing as checkpointing
    from scaling.ensemble import train_ensemble

    reference = train_ensemble(run_config(tiny_dataset, tmp_path / "ref", **{"model.head": "discrete"}), SEEDS)
    write = checkpointing.write_checkpoint

    def write_then_stop(path, payload):
        write(path, payload)
        if path.name == "ensemble.ckpt":
            raise KeyboardInterrupt  # as a kill right after the first ensemble checkpoint

    monkeypatch.setattr(checkpointing, "write_checkpoint", write_then_stop)
    cfg = run_config(tiny_dataset, tmp_path / "ens", **{"model.head": "discrete"})
    with pytest.raises(KeyboardInterrupt):
        train_ensemble(cfg, SEEDS)
    monkeypatch.setattr(checkpointing, "write_checkpoint", write)
    with pytest.raises(BadInput, match="holds unfinished seeds 2, 1 at one step; resume with exactly those"):
        train_ensemble(cfg, SEEDS[:1])  # the member left out would lose its progress
    drawn = Drawn(monkeypatch)
    results = train_ensemble(cfg, SEEDS)
    assert "resuming from" in capsys.readouterr().err
    for seed, ref, resumed, indices in zip(SEEDS, reference, results, drawn.take()):
        assert len(indices) == 96 - 4 * 8  # only what the checkpoint at step 4 had not seen
        assert metrics(tmp_path / "ens" / f"seed-{seed}") == metrics(tmp_path / "ref" / f"seed-{seed}")
        assert resumed.val_loss == ref.val_loss and resumed.train_loss == ref.train_loss
    # Finished: the ensemble checkpoint is gone, so another seed may join the folder and starts from step 0.
    assert not (tmp_path / "ens" / "checkpoints" / "ensemble.ckpt").exists()
    more = train_ensemble(cfg, (*SEEDS, 0))
    assert [r.to_dict() for r in more[:2]] == [r.to_dict() for r in results]
    assert more[2].status == "completed" and len(drawn.take()) == 1


def test_ensemble_branches_from_each_members_stable_checkpoint(runs, tiny_dataset, tmp_path):
    """A WSD cooldown of the whole ensemble, each member from its own stable checkpoint: the same as the
    solo cooldown of that seed."""
    from scaling.ensemble import train_ensemble
    from scaling.train import train

    stable = runs["dir"] / "ens" / "seed-{seed}" / "checkpoints" / "stable-48.ckpt"
    cooled = train_ensemble(run_config(tiny_dataset, tmp_path / "ens",
                                        **{"data.samples": 64, "schedule.branch_from": str(stable)}), SEEDS)
    solo = train(run_config(tiny_dataset, tmp_path / "solo", seed=SEEDS[1], **{
        "data.samples": 64, "schedule.branch_from": str(stable).replace("{seed}", str(SEEDS[1]))}))
    assert [r.status for r in cooled] == ["completed"] * 2 and cooled[1].val_loss == solo.val_loss
    rows = metrics(tmp_path / "ens" / f"seed-{SEEDS[1]}")
    assert rows == metrics(tmp_path / "solo") and rows[0]["step"] == "7"


def test_members_from_config_files_are_the_seeds_ensemble(runs, tiny_dataset, tmp_path, capsys):
    """`scaling train --members` (how a sweep's seeds_together runs a group): whole configs, each member in
    a folder of its own choosing, equal to the `--seeds` ensemble's members."""
    files = []
    for seed in SEEDS:
        cfg = run_config(tiny_dataset, tmp_path / f"point-{seed}", seed=seed)
        path = tmp_path / f"run-{seed}.yaml"
        path.write_text(yaml.safe_dump(cfg.to_dict()))
        files.append(str(path))
    rc = main(["train", "--members", ",".join(files), "--out", str(tmp_path / "group")])
    assert rc == 0, capsys.readouterr().err
    for seed, solo in zip(SEEDS, runs["results"]):
        assert result(tmp_path / f"point-{seed}")["val_loss"] == solo.val_loss
        assert metrics(tmp_path / f"point-{seed}") == metrics(runs["dir"] / "ens" / f"seed-{seed}")
    assert not (tmp_path / "group" / "checkpoints" / "ensemble.ckpt").exists()


@pytest.mark.parametrize("change, flags, message", [
    ({"optim.lr": 2e-3}, [], "differs from"),
    ({"seed": 1}, [], "two members have one seed"),
    ({}, ["--optim.lr", "0.1"], "drop --optim.lr"),
    ({}, ["--lr", "0.1"], "drop --lr"),
    ({}, ["--seeds", "0,1"], "drop --seeds"),
    ({}, ["--no-out"], "needs --out"),
])
def test_what_members_cannot_be_exits_2_with_one_line(change, flags, message, tiny_dataset, tmp_path, capsys):
    a = run_config(tiny_dataset, tmp_path / "a", seed=1)
    b = run_config(tiny_dataset, tmp_path / "b", seed=2).replace(**change)
    for name, cfg in (("a", a), ("b", b)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    out = [] if "--no-out" in flags else ["--out", str(tmp_path / "group")]
    rc = main(["train", "--members", f"{tmp_path / 'a.yaml'},{tmp_path / 'b.yaml'}", *out,
               *[f for f in flags if f != "--no-out"]])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "group").exists() and not (tmp_path / "a").exists()


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0,1", "--hardware.devices", "2"], "one process on one device"),
    (["--seeds", "0,1", "--hardware.strategy", "fsdp"], "one process on one device"),
    (["--seeds", "0,1", "--hardware.strategy", "ddp"], "one process on one device"),
    (["--seeds", "0,1", "--hardware.accelerator", "gpu", "--model.precision", "16-mixed"], "share one loss scaler"),
    (["--seeds", "0,x"], "non-negative integers"),
    (["--seeds=-1,2"], "non-negative integers"),
    (["--seeds", ""], "non-negative integers"),
    (["--seeds", "1,,2"], "non-negative integers"),
    (["--seeds", "3,1,3"], "seed 3 is given twice"),
    (["--seeds", "0,1", "--seed", "4"], "--seeds or --seed"),
    (["--seeds", "0,1", "--schedule.branch-from", "run/checkpoints/stable-8.ckpt", "--schedule.name", "wsd"],
     "{seed}"),
])
def test_what_an_ensemble_cannot_run_exits_2_with_one_line(flags, message, tiny_dataset, tmp_path, capsys):
    rc = main(["train", "--data.source", str(tiny_dataset), "--out", str(tmp_path / "ens"), "--model.size", "debug",
               "--no-logging.progress-bar", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ens").exists()  # refused before anything was written


@pytest.mark.slow
def test_each_member_logs_to_its_own_wandb_run(tiny_dataset, tmp_path, monkeypatch):
    from scaling.ensemble import train_ensemble

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # any network use would fail
    cfg = run_config(tiny_dataset, tmp_path / "ens", **{"data.samples": 16, "logging.logger": "wandb"})
    results = train_ensemble(cfg, SEEDS)
    assert [r.status for r in results] == ["completed"] * 2
    for seed in SEEDS:
        runs = list((tmp_path / "ens" / f"seed-{seed}" / "wandb").glob(f"offline-run-*-ens-seed-{seed}"))
        assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
