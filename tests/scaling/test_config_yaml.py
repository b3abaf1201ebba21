"""RUN_DIR/config.yaml is fully resolved (exact size and shape, accelerator, threads, precision), keeps what
was asked under `requested`, reruns as the same run in either form, and says so when a run starts over.

The training loop itself is stubbed (`scaling.trainer.fit` returns None, as on a rank > 0): everything
checked here happens before the first step, so these tests take a second each."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from scaling.config import RunConfig, load_run_config, resolve
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
    values = dict(data=str(data), size="30k", samples=16, batch_size=8, out=str(out), precision="16-mixed",
                  progress_bar=False)
    values.update(changes)
    return RunConfig(**values)


def _model(cfg: RunConfig):
    from scaling.data import open_source
    from scaling.train import model_config

    return model_config(cfg, open_source(cfg.data))


def test_config_yaml_is_resolved_and_keeps_what_was_asked(tiny_dataset, tmp_path, no_training, monkeypatch):
    from scaling.model import count_params
    from scaling.train import train

    cfg = _asked(tiny_dataset, tmp_path / "run")
    assert train(cfg) is None and no_training
    doc = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    model = _model(cfg)
    assert doc["size"] == count_params(model)[0] and isinstance(doc["size"], int)
    assert (doc["d_model"], doc["n_layers"], doc["n_heads"]) == (model.d_model, model.n_layers, model.n_heads)
    cuda = torch.cuda.is_available()
    assert doc["accelerator"] == ("gpu" if cuda else "cpu")
    assert doc["threads"] == torch.get_num_threads()  # 1 here (the one_thread fixture): what the run used
    assert doc["precision"] == ("16-mixed" if cuda else "bf16-mixed")  # fp16 autocast is a GPU feature
    asked = {"size": "30k", "d_model": None, "n_layers": None, "n_heads": None, "accelerator": "auto",
             "threads": None}
    if not cuda:
        asked["precision"] = "16-mixed"
    assert doc["requested"] == asked

    # The file reruns the same model without asking the size solver again (the solver may change).
    import scaling.model.config as model_config_module

    def no_solver(*a, **k):
        raise AssertionError("the size solver ran for a resolved config")

    monkeypatch.setattr(model_config_module, "resolve_size", no_solver)
    again = resolve(tmp_path / "run" / "config.yaml")  # `requested` is skipped when the file is loaded
    assert _model(again) == model
    assert load_run_config(tmp_path / "run" / "config.yaml") == (again.to_dict(), cfg.to_dict())


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
    assert yaml.safe_load(path.read_text())["requested"]["size"] == "30k"
    # Hardware may change on resume; what the run computes may not, in either form.
    train(cfg.replace(threads=2, accelerator="cpu"))
    with pytest.raises(BadInput, match="lr is 0.0003 there but 0.001 now"):
        train(cfg.replace(lr=1e-3))
    with pytest.raises(BadInput, match="size is '30k' there but '100k' now"):
        train(cfg.replace(size="100k"))
    # Finished: either form returns the result without training.
    _finish(run)
    calls = len(no_training)
    assert train(cfg).status == "completed" and train(resolve(path)).status == "completed"
    assert len(no_training) == calls


def test_a_run_that_starts_over_says_so(tiny_dataset, tmp_path, no_training, capsys):
    """Killed before its first checkpoint: the rerun starts from step 0 and says why, not silently."""
    from scaling.train import train

    cfg = _asked(tiny_dataset, tmp_path / "run", checkpoint_every=200, checkpoint_minutes=10)
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
