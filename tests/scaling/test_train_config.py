"""RunConfig: YAML + flag overrides, unknown keys with a did-you-mean, bad values; schedules; result."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from scaling import schedules
from scaling.config import RunConfig, field_docs, field_names, resolve
from scaling.result import RunResult, result_fields
from vla_core.errors import BadInput
from vla_core.schema import field_names as field_names_of
from vla_core.schema import fields as contract_fields

CONTRACT_FIELDS = field_names_of("run_result")  # the contract, written once in vla_core/schema.py


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    values = {"data": "d", "size": "1e6", "samples": 5000, "lr": 1e-3, "checkpoint_at": [100, 200]}
    path.write_text(yaml.safe_dump(values))
    cfg = resolve(path, {"lr": "2e-3", "batch_size": "32", "samples": None})
    assert cfg.lr == 2e-3 and cfg.batch_size == 32 and cfg.samples == 5000
    assert cfg.size_value == 1e6 and cfg.checkpoint_at == (100, 200)
    assert cfg.steps == math.ceil(5000 / 32)


def test_inline_mixture_flag_is_parsed(tmp_path):
    flag = '{"mixture": [{"path": "a", "weight": 3}, {"path": "b", "weight": 1}]}'
    cfg = resolve(None, {"data": flag, "out": str(tmp_path / "r")})
    assert cfg.data == {"mixture": [{"path": "a", "weight": 3}, {"path": "b", "weight": 1}]}
    with pytest.raises(BadInput, match="mixture spec"):
        resolve(None, {"data": '{"mixture": [', "out": str(tmp_path / "r")})


def test_resolved_config_round_trips(tmp_path):
    cfg = RunConfig(data="d", size="debug", samples=100, out=str(tmp_path / "r"), checkpoint_at=(10,))
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


@pytest.mark.parametrize("changes, message", [
    ({"samples": 0}, "--samples must be a positive"),
    ({"batch_size": -4}, "--batch-size must be a positive"),
    ({"size": "-1e6"}, "--size must be a positive"),
    ({"precision": "bf16"}, "did you mean bf16-mixed"),
    ({"schedule": "linear"}, "--schedule must be one of"),
    ({"samples": "many"}, "samples must be int"),
    ({"data": None}, "--data is required"),
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
        parser.parse_args(["train", "--data", "d", "--batch-sise", "8"])
    assert exc.value.code == 2
    assert "did you mean --batch-size" in capsys.readouterr().err
    args = parser.parse_args(["train", "--data", "d", "--samples", "0"])
    assert isinstance(args, argparse.Namespace)
    with pytest.raises(BadInput, match="--samples must be a positive"):
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
    (["--data", "/nonexistent/ds"], "/nonexistent/ds"),
    (["--samples", "-5"], "--samples must be a positive"),
    (["--size", "nonsense-size"], "nonsense-size"),
    (["--d-model", "30", "--n-heads", "4"], "does not divide"),
])
def test_scaling_train_bad_input_is_one_line_exit_2(tiny_dataset, tmp_path, capsys, argv, message):
    from sweeps.cli import main

    base = ["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--size", "debug"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
