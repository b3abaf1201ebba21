"""RUN_DIR/config.yaml is fully resolved (exact shape, accelerator, threads, precision), nested by section,
keeps what was asked under `requested`, reruns as the same run in either form, and says so when a run
starts over; an old flat config.yaml (size count, d_model/n_layers/n_heads, flat `requested`) is still the
same run.

The training loop itself is stubbed (`scaling.trainer.fit` returns None, as on a rank > 0): everything
checked here happens before the first step, so these tests take a second each."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from scaling.config import RunConfig, from_mapping, load_run_config, resolve
from scaling.result import RunResult
from vla_core.errors import BadInput
from vla_core.schema import fields as contract_fields

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_training(monkeypatch):
    """`train` runs up to the loop and stops there; returns the list of configs `fit` was called with."""
    import scaling.trainer

    calls = []
    monkeypatch.setattr(scaling.trainer, "fit", lambda cfg, *a, **k: calls.append(cfg))
    return calls


def _asked(data, out, **changes) -> RunConfig:
    values = {"data": {"source": str(data), "samples": 16}, "model": {"size": "30k", "precision": "16-mixed"},
              "optim": {"batch_size": 8}, "out": str(out), "logging": {"progress_bar": False}}
    values.update(changes)
    return from_mapping(values)


def _model(cfg: RunConfig):
    from scaling.data import open_source
    from scaling.train import model_config

    return model_config(cfg, open_source(cfg.data.source))


def test_config_yaml_is_resolved_and_keeps_what_was_asked(tiny_dataset, tmp_path, no_training, monkeypatch):
    from scaling.model import count_params
    from scaling.train import train

    cfg = _asked(tiny_dataset, tmp_path / "run")
    assert train(cfg) is None and no_training
    doc = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    model = _model(cfg)
    assert list(doc)[:3] == ["out", "run_id", "seed"] and "optim" in doc and "lr" not in doc
    assert doc["model"]["size"] == f"{model.d_model}x{model.n_layers}x{model.n_heads}"
    assert count_params(_model(resolve(tmp_path / "run" / "config.yaml")))[0] == count_params(model)[0]
    cuda = torch.cuda.is_available()
    assert doc["hardware"]["accelerator"] == ("gpu" if cuda else "cpu")
    assert doc["hardware"]["threads"] == torch.get_num_threads()  # 1 here (one_thread): what the run used
    assert doc["model"]["precision"] == ("16-mixed" if cuda else "bf16-mixed")  # fp16 autocast: GPUs only
    asked = {"model": {"size": "30k"}, "hardware": {"accelerator": "auto", "threads": None}}
    if not cuda:
        asked["model"]["precision"] = "16-mixed"
    assert doc["requested"] == asked

    # The file reruns the same model without asking the size solver again (the solver may change).
    import scaling.model.config as model_config_module

    def no_solver(*a, **k):
        raise AssertionError("the size solver ran for a resolved config")

    monkeypatch.setattr(model_config_module, "resolve_size", no_solver)
    again = resolve(tmp_path / "run" / "config.yaml")  # `requested` is skipped when the file is loaded
    assert _model(again) == model
    assert load_run_config(tmp_path / "run" / "config.yaml") == (again.flat(), cfg.flat())


def _finish(run_dir, status="completed") -> None:
    values = {f.name: 0 for f in contract_fields("run_result") if f.required}
    values.update(run_id="run", status=status, model={"d_model": 8}, versions={}, global_batch_size=8,
                  world_size=1, precision="32-true", val_loss=1.5)
    RunResult(**values).save(run_dir / "result.json")


def test_rerun_of_the_command_or_of_config_yaml_is_the_same_run(tiny_dataset, tmp_path, no_training, capsys):
    from scaling.train import train

    run = tmp_path / "run"
    cfg = _asked(tiny_dataset, run)
    train(cfg)
    path = run / "config.yaml"
    # Interrupted after a checkpoint: rerunning the first command or the file itself resumes.
    (run / "checkpoints").mkdir()
    torch.save({"global_step": 1, "scaling": {"accumulate": 1}}, run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    train(cfg)
    train(resolve(path))
    assert capsys.readouterr().err.count("resuming from") == 2
    # The rerun of the file keeps the first command's request on record.
    assert yaml.safe_load(path.read_text())["requested"]["model"]["size"] == "30k"
    # Hardware (and evaluation, logging, checkpointing) may change on resume; what the run computes
    # (data, model, optim, schedule, validation) may not, in either form.
    train(cfg.replace(hardware={"threads": 2, "accelerator": "cpu"}, evaluation={"seed": 3},
                      checkpointing={"every_steps": 7}, logging={"every_steps": 3}))
    with pytest.raises(BadInput, match="optim.lr is 0.0003 there but 0.001 now"):
        train(cfg.replace(optim={"lr": 1e-3}))
    with pytest.raises(BadInput, match="model.size is '30k' there but '100k' now"):
        train(cfg.replace(model={"size": "100k"}))
    with pytest.raises(BadInput, match="schedule.warmup_frac"):
        train(cfg.replace(schedule={"warmup_steps": 1}))
    with pytest.raises(BadInput, match="validation.samples"):
        train(cfg.replace(validation={"samples": 8}))
    # Finished: either form returns the result without training.
    _finish(run)
    calls = len(no_training)
    assert train(cfg).status == "completed" and train(resolve(path)).status == "completed"
    assert len(no_training) == calls


def test_a_run_that_starts_over_says_so(tiny_dataset, tmp_path, no_training, capsys):
    """Killed before its first checkpoint: the rerun starts from step 0 and says why, not silently."""
    from scaling.train import train

    cfg = _asked(tiny_dataset, tmp_path / "run", checkpointing={"every_steps": 200, "every_minutes": 10})
    train(cfg)
    assert "starting from step 0" not in capsys.readouterr().err  # a first start is not a restart
    train(cfg)
    err = capsys.readouterr().err
    assert "no checkpoint in" in err and "starting from step 0" in err
    assert "every 200 steps and every 10 minutes" in err


def test_old_config_yaml_without_requested_still_reruns(tiny_dataset, tmp_path, no_training):
    """Runs written before config.yaml was resolved (as asked, no `requested`) are still the same run."""
    from scaling.train import train

    cfg = _asked(tiny_dataset, tmp_path / "run")
    cfg.save(tmp_path / "run" / "config.yaml")
    _finish(tmp_path / "run")
    assert train(cfg).status == "completed" and not no_training
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "completed"


def _old_flat(cfg: RunConfig) -> dict:
    """`cfg` as the single-dataclass config wrote it: one flat mapping of the old names."""
    return cfg.flat_legacy()


def test_old_flat_config_yaml_as_asked_still_reruns(tiny_dataset, tmp_path, no_training):
    """An old flat config.yaml (before sections) is the same run as the sectioned config it maps to."""
    from scaling.train import train

    cfg = _asked(tiny_dataset, tmp_path / "run")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(_old_flat(cfg), sort_keys=False))
    assert resolve(tmp_path / "run" / "config.yaml") == cfg
    _finish(tmp_path / "run")
    assert train(cfg).status == "completed" and not no_training


def test_old_resolved_flat_config_yaml_loads_and_resumes(tiny_dataset, tmp_path, no_training, capsys):
    """An old resolved config.yaml, as the single-dataclass config wrote it (the exact count as ``size``,
    the shape as d_model/n_layers/n_heads, a flat ``requested`` with None shape entries): the shape folds
    into ``model.size``, the request is put back, and the run resumes as the same run."""
    from scaling.train import train

    cfg = _asked(tiny_dataset, tmp_path / "run")
    model = _model(cfg)
    from scaling.model import count_params

    old = {**_old_flat(cfg), "size": count_params(model)[0], "d_model": model.d_model, "n_layers": model.n_layers,
           "n_heads": model.n_heads, "accelerator": "cpu", "threads": 1, "precision": "bf16-mixed",
           "warmup": 0.05, "checkpoint_at": [], "val_every": 0, "log_every": 10, "checkpoint_every": 200,
           "checkpoint_minutes": 10.0,
           "requested": {"size": "30k", "d_model": None, "n_layers": None, "n_heads": None, "accelerator": "auto",
                         "threads": None, "precision": "16-mixed"}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    resolved, asked = load_run_config(run / "config.yaml")
    assert resolved["model.size"] == f"{model.d_model}x{model.n_layers}x{model.n_heads}"
    assert asked == cfg.flat()
    assert _model(resolve(run / "config.yaml")) == model
    (run / "checkpoints").mkdir()
    torch.save({"global_step": 1, "scaling": {"accumulate": 1}}, run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    train(cfg)
    assert "resuming from" in capsys.readouterr().err
