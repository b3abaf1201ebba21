"""RunConfig: sections, YAML + flag overrides (nested, dotted and old flat forms), one flag per field,
unknown keys with a did-you-mean, bad values; schedules; result."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from scaling import schedules
from scaling.config import LEGACY, SECTIONS, RunConfig, field_docs, field_names, from_mapping, resolve, to_legacy
from scaling.result import RunResult, result_fields
from vla_core.errors import BadInput
from vla_core.schema import field_names as field_names_of
from vla_core.schema import fields as contract_fields

CONTRACT_FIELDS = field_names_of("run_result")  # the contract, written once in vla_core/schema.py


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    values = {"data": {"source": "d", "samples": 5000}, "model": {"size": "1e6"}, "optim": {"lr": 1e-3},
              "schedule": {"checkpoint_at_samples": [100, 200], "warmup_frac": 0.1}}
    path.write_text(yaml.safe_dump(values))
    cfg = resolve(path, {"optim.lr": "2e-3", "optim.batch_size": "32", "data.samples": None,
                         "schedule.warmup_steps": "7"})
    assert cfg.optim.lr == 2e-3 and cfg.optim.batch_size == 32 and cfg.data.samples == 5000
    assert cfg.model.size_value == 1e6 and cfg.schedule.checkpoint_at_samples == (100, 200)
    assert cfg.steps == math.ceil(5000 / 32)
    # A later layer's warmup in steps replaces the file's fraction (one warmup, two units).
    assert (cfg.schedule.warmup_frac, cfg.schedule.warmup_steps, cfg.warmup_steps) == (None, 7, 7)
    assert resolve(path).warmup_steps == round(0.1 * math.ceil(5000 / 64))


def _old(**values) -> dict:
    return {"data": "d", **values}


@pytest.mark.parametrize("old, new", [
    (_old(lr=1e-3, batch_size=32), {"data": {"source": "d"}, "optim": {"lr": 1e-3, "batch_size": 32}}),
    (_old(warmup=0.1), {"data.source": "d", "schedule.warmup_frac": 0.1}),
    (_old(warmup=100), {"data.source": "d", "schedule": {"warmup_steps": 100}}),
    (_old(val_every=512, val_samples=64, eval_episodes=3, eval_seed=5),
     {"data.source": "d", "validation": {"every_samples": 512, "samples": 64},
      "evaluation": {"episodes": 3, "seed": 5}}),
    (_old(log_every=5, checkpoint_every=50, checkpoint_minutes=2.5, checkpoint_at=[10, 20]),
     {"data.source": "d", "logging.every_steps": 5, "checkpointing": {"every_steps": 50, "every_minutes": 2.5},
      "schedule.checkpoint_at_samples": [10, 20]}),
    (_old(size="debug", d_model=64, n_layers=3, n_heads=4), {"data.source": "d", "model.size": "64x3x4"}),
    (_old(size=123456, d_model=64, n_layers=3, n_heads=4), {"data.source": "d", "model.size": "64x3x4"}),
    (_old(size="debug", n_layers=5), {"data.source": "d", "model.size": "32x5x2"}),
    (_old(size="48x2", d_model=96), {"data.source": "d", "model.size": "96x2x12"}),
    (_old(schedule="wsd", branch_from="x.ckpt", precision="32-true", seed=3),
     {"data.source": "d", "schedule": {"name": "wsd", "branch_from": "x.ckpt"}, "model.precision": "32-true",
      "seed": 3}),
    # The old nested form (sections of the single-dataclass config).
    ({"dataset": {"data": "d", "val_every": 64}, "optim": {"precision": "32-true", "checkpoint_at": [8]}},
     {"data.source": "d", "validation.every_samples": 64, "model.precision": "32-true",
      "schedule.checkpoint_at_samples": [8]}),
])
def test_old_flat_names_load_as_their_new_fields(old, new):
    """Old flat files, flags and train: blocks map mechanically to the sections (`LEGACY`)."""
    assert from_mapping(old) == from_mapping(new)


def test_the_flat_legacy_view_round_trips():
    """The old flat view (what run keys hash) maps back to the same config, for every field."""
    cfg = from_mapping({"data.source": "d", "model.size": "64x3x4", "schedule.warmup_steps": 9,
                        "schedule.checkpoint_at_samples": [4], "hardware.threads": 2})
    flat = cfg.flat_legacy()
    assert set(flat) == set(LEGACY) - {"d_model", "n_layers", "n_heads"}
    assert flat["warmup"] == 9 and flat["size"] == "64x3x4" and flat["checkpoint_at"] == [4]
    assert from_mapping(flat) == cfg
    assert to_legacy(cfg.to_dict()) == flat


def test_nested_dotted_and_flat_yaml_load_identically(tmp_path):
    cfg = from_mapping({"data.source": "d", "optim.lr": 2e-3, "schedule.warmup_steps": 4, "logging.every_steps": 3})
    forms = {"nested": cfg.to_dict(), "dotted": cfg.flat(), "flat": cfg.flat_legacy()}
    for name, doc in forms.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
        assert resolve(tmp_path / f"{name}.yaml") == cfg, name


def test_every_field_has_a_flag_and_flags_round_trip(tmp_path):
    """One flag per field, --SECTION.NAME, generated from the dataclasses: every field set by its flag
    gives the config set by the mapping; the old flat flags still work."""
    from scaling.train_cli import overrides_of, register
    from sweeps.cli import CLIParser

    parser = CLIParser(prog="scaling")
    register(parser.add_subparsers(dest="command", parser_class=CLIParser))
    cfg = from_mapping({"data.source": "d", "out": str(tmp_path / "r"), "run_id": "x", "seed": 4,
                        "model": {"size": "48x2", "chunk": 2, "head": "mse", "patch_size": 4, "keypoints": 8,
                                  "film": True, "mup_base_width": 16, "precision": "32-true", "family": "vla"},
                        "data": {"samples": 96, "blind": True},
                        "optim": {"lr": 1e-3, "batch_size": 8, "weight_decay": 0.2, "beta1": 0.8, "beta2": 0.9,
                                  "grad_clip": 0.5, "divergence_factor": 4.0},
                        "schedule": {"name": "wsd", "min_lr_ratio": 0.2, "warmup_steps": 3, "wsd_decay_frac": 0.3,
                                     "checkpoint_at_samples": [16, 32], "branch_from": "b.ckpt"},
                        "hardware": {"devices": 2, "num_nodes": 1, "strategy": "ddp", "accelerator": "cpu",
                                     "micro_batch_size": 4, "num_workers": 1, "threads": 2, "compile": True,
                                     "fsdp_sharding": "hybrid", "peak_flops": 1e12},
                        "validation": {"every_samples": 32, "samples": 16},
                        "evaluation": {"episodes": 2, "seed": 7},
                        "logging": {"every_steps": 2, "logger": "csv", "wandb_project": "p", "wandb_mode": "offline",
                                    "wandb_group": "g", "wandb_job_type": "j", "progress_bar": False},
                        "checkpointing": {"every_steps": 9, "every_minutes": 1.5}})
    argv = ["train"]
    for name, value in cfg.flat().items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            argv += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    train = parser._subparsers._group_actions[0].choices["train"]
    assert set(train._option_string_actions) >= {"--" + n.replace("_", "-") for n in field_names()}
    args = parser.parse_args(argv)
    assert resolve(None, overrides_of(args)) == cfg
    old = parser.parse_args(["train", "--data", "d", "--lr", "1e-3", "--warmup", "5", "--d-model", "64",
                             "--n-layers", "3", "--n-heads", "4", "--no-progress-bar", "--val-every", "64"])
    assert resolve(None, overrides_of(old)) == from_mapping(
        {"data.source": "d", "optim.lr": 1e-3, "schedule.warmup_steps": 5, "model.size": "64x3x4",
         "logging.progress_bar": False, "validation.every_samples": 64})


def test_help_lists_the_sections(capsys):
    from sweeps.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for section in SECTIONS:
        assert f"\n{section}:" in out, section
    assert "--optim.lr" in out and "--schedule.warmup-steps" in out and "\n  --lr " not in out


def test_inline_mixture_flag_is_parsed(tmp_path):
    flag = '{"mixture": [{"path": "a", "weight": 3}, {"path": "b", "weight": 1}]}'
    cfg = resolve(None, {"data.source": flag, "out": str(tmp_path / "r")})
    assert cfg.data.source == {"mixture": [{"path": "a", "weight": 3}, {"path": "b", "weight": 1}]}
    assert resolve(None, {"data": flag, "out": str(tmp_path / "r")}) == cfg  # the old flag
    with pytest.raises(BadInput, match="mixture spec"):
        resolve(None, {"data.source": '{"mixture": [', "out": str(tmp_path / "r")})


def test_resolved_config_round_trips(tmp_path):
    cfg = from_mapping({"data": {"source": "d", "samples": 100}, "out": str(tmp_path / "r"),
                        "schedule": {"checkpoint_at_samples": (10,)}})
    assert isinstance(cfg, RunConfig)
    path = cfg.save(tmp_path / "r" / "config.yaml")
    assert resolve(path) == cfg
    assert not list(path.parent.glob("*.tmp*"))


def test_every_field_has_a_docstring():
    docs = field_docs()
    assert set(field_names()) <= set(docs), set(field_names()) - set(docs)


def test_unknown_key_has_did_you_mean(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data: d\nbatch_sise: 8\n")
    with pytest.raises(BadInput, match=r"run.yaml: unknown key 'batch_sise' \(did you mean batch_size\?\)"):
        resolve(path)
    path.write_text("data: {source: d}\noptim: {batch_sise: 8}\n")
    with pytest.raises(BadInput, match=r"run.yaml: unknown key optim.batch_sise \(did you mean batch_size\?\)"):
        resolve(path)


@pytest.mark.parametrize("changes, message", [
    ({"data.samples": 0}, "--data.samples must be a positive"),
    ({"optim.batch_size": -4}, "--optim.batch-size must be a positive"),
    ({"model.size": "-1e6"}, "--model.size must be a positive"),
    ({"model.precision": "bf16"}, "did you mean bf16-mixed"),
    ({"schedule.name": "linear"}, "--schedule.name must be one of"),
    ({"data.samples": "many"}, "data.samples must be int"),
    ({"schedule.warmup_frac": 1.5}, "warmup-frac must be in"),
    ({"schedule": {"warmup_frac": 0.1, "warmup_steps": 3}}, "not both"),
    ({"model.size": "1e6", "n_layers": 3}, "WIDTHxBLOCKSxHEADS"),
    ({"data": None}, "--data.source is required"),
])
def test_bad_values(changes, message):
    with pytest.raises(BadInput, match=message):
        resolve(None, {"data": "d", **changes} if "data" not in changes else changes)


def test_cli_bad_input_exits_2(capsys):
    import argparse

    from scaling.train_cli import register
    from sweeps.cli import CLIParser

    parser = CLIParser(prog="scaling")
    register(parser.add_subparsers(dest="command", parser_class=CLIParser))
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["train", "--data.source", "d", "--optim.batch-sise", "8"])
    assert exc.value.code == 2
    assert "did you mean --optim.batch-size" in capsys.readouterr().err
    args = parser.parse_args(["train", "--data.source", "d", "--data.samples", "0"])
    assert isinstance(args, argparse.Namespace)
    with pytest.raises(BadInput, match="--data.samples must be a positive"):
        args.func(args)


def test_cosine_schedule_ends_at_min_ratio():
    total, warm = 100, 10
    values = [schedules.cosine(s, total, warm, 0.1) for s in range(total)]
    assert values[0] == pytest.approx(0.1) and values[warm - 1] == pytest.approx(1.0)
    assert values[warm] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[warm:], values[warm + 1:]))


def test_wsd_schedule_stable_then_sqrt_cooldown():
    total, warm = 100, 5
    values = [schedules.wsd(s, total, warm, 0.0, 0.2) for s in range(total)]
    start = schedules.wsd_decay_start(total, 0.2)
    assert start == 80
    assert all(v == 1.0 for v in values[warm:start])
    assert values[-1] == pytest.approx(0.0)
    mid = start + (total - 1 - start) // 2
    progress = (mid - start) / (total - 1 - start)
    assert values[mid] == pytest.approx(1 - math.sqrt(progress))
    # Same stable phase whatever the run length: a branch point is shared by longer runs.
    longer = [schedules.wsd(s, 200, warm, 0.0, 0.2) for s in range(start)]
    assert longer == values[:start]


def test_result_has_exactly_the_contract_fields(tmp_path):
    assert result_fields() == CONTRACT_FIELDS
    values = {f.name: 0 for f in contract_fields("run_result") if f.required}  # optional ones keep their defaults
    values.update(run_id="r", status="completed", model={"d_model": 8}, versions={}, val_loss=float("nan"),
                  global_batch_size=1, world_size=1, precision="32-true")
    path = RunResult(**values).save(tmp_path / "result.json")
    data = json.loads(path.read_text())
    assert list(data) == CONTRACT_FIELDS and data["val_loss"] is None
    assert RunResult.load(path).run_id == "r"


@pytest.mark.parametrize("argv, message", [
    (["--data.source", "/nonexistent/ds"], "/nonexistent/ds"),
    (["--data.samples", "-5"], "--data.samples must be a positive"),
    (["--model.size", "nonsense-size"], "nonsense-size"),
    (["--model.size", "30x2x4"], "divide the width"),
    (["--d-model", "30", "--n-heads", "4"], "divide the width"),
])
def test_scaling_train_bad_input_is_one_line_exit_2(tiny_dataset, tmp_path, capsys, argv, message):
    from sweeps.cli import main

    base = ["train", "--data.source", str(tiny_dataset), "--out", str(tmp_path / "r"), "--model.size", "debug"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
