"""Spec validation: every error is one line naming the key, and the CLI exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sweeps.cli import main
from sweeps.spec import load_spec, parse_spec
from vla_core.errors import BadInput

BASE = {"name": "s", "data": "d", "models": ["debug"], "samples": [64]}


def _err(raw) -> str:
    with pytest.raises(BadInput) as exc:
        parse_spec(raw, "spec.yaml")
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_unknown_top_level_key_suggests():
    assert "did you mean 'samples'" in _err({**BASE, "sampels": [1]})


def test_unknown_train_field_suggests():
    assert "did you mean 'batch_size'" in _err({**BASE, "train": {"batch_sise": 8}})


def test_reserved_train_field():
    assert "train.samples" in _err({**BASE, "train": {"samples": 8}})


def test_empty_grid():
    assert "empty list" in _err({**BASE, "samples": []})
    assert "empty list" in _err({**BASE, "models": []})


def test_missing_and_bad_values():
    assert "missing required key 'models'" in _err({"name": "s", "data": "d"})
    assert "must be > 0" in _err({**BASE, "samples": [0]})
    assert "did you mean 'isoflop'" in _err({**BASE, "design": "isoflops"})
    assert "budgets" in _err({**BASE, "design": {"kind": "isoflop"}})
    assert "exactly one" in _err({**BASE, "data": {"path": "a", "mixture": []}})


def test_numbers_written_as_strings_are_accepted():
    spec = parse_spec({**BASE, "models": ["1e6", "debug"], "samples": ["1e3"]})
    assert spec.models == (1e6, "debug") and spec.samples == (1000,)


def test_isoflop_spec():
    spec = parse_spec({"name": "i", "data": "d", "models": ["debug"],
                       "design": {"kind": "isoflop", "budgets": [3e12, 1e12], "min_samples": 64}})
    assert spec.isoflop.budgets == (1e12, 3e12) and spec.isoflop.min_samples == 64


SPECS = Path(__file__).resolve().parents[2] / "sweeps"
SHIPPED = sorted(p.stem for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_parse(name):
    """Every spec in sweeps/ parses, and each of its model sizes is a valid size (preset, count or shape)."""
    from scaling.model import parse_size

    spec = load_spec(SPECS / f"{name}.yaml")
    assert spec.name
    for size in spec.models:
        parse_size(size)


def test_the_shipped_spec_list_is_not_empty():
    """Guards the glob above: a moved folder would otherwise leave the parse test with no cases."""
    assert {"smoke", "quickstart", "isoflop", "cpu_study_film_4seeds"} <= set(SHIPPED)


def test_cli_exit_2_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "modles": ["debug"]}))
    assert main(["sweep", "plan", str(bad), "--dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "modles" in err and "did you mean 'models'" in err


def test_cli_missing_file(tmp_path, capsys):
    assert main(["sweep", "status", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_sqlite_refused_with_workers(tmp_path, capsys, spec_file):
    spec = spec_file()
    rc = main(["sweep", "run", str(spec), "--dir", str(tmp_path / "d"), "--workers", "2",
               "--storage", f"sqlite:///{tmp_path}/s.db"])
    assert rc == 2 and "SQLite" in capsys.readouterr().err


def test_isoflop_budget_below_smallest_model(tmp_path, capsys, spec_file):
    spec = spec_file(samples=None, design={"kind": "isoflop", "budgets": [1.0e3], "min_samples": 16})
    text = spec.read_text().replace("samples: null\n", "")
    spec.write_text(text)
    assert main(["sweep", "plan", str(spec), "--dir", str(tmp_path / "d"), "--no-calibrate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "below the smallest model's cost" in err


def test_train_in_new_names_plans_the_keys_of_the_old_names():
    """A ``train:`` block in section or dotted names is kept in the old flat names (`scaling.config.to_legacy`),
    so it fingerprints and keys its runs as the same settings written in the old names, and a committed
    spec (old names) keys its runs as it always did."""
    from sweeps.points import base_config, run_key

    old = {"batch_size": 32, "lr": 1e-3, "precision": "32-true", "threads": 1, "warmup": 100, "val_samples": 64,
           "eval_episodes": 2, "log_every": 5, "checkpoint_every": 50, "progress_bar": False}
    new = {"optim": {"batch_size": 32, "lr": 1e-3}, "model.precision": "32-true", "hardware": {"threads": 1},
           "schedule": {"warmup_steps": 100}, "validation.samples": 64, "evaluation": {"episodes": 2},
           "logging": {"every_steps": 5, "progress_bar": False}, "checkpointing.every_steps": 50}
    a, b = parse_spec({**BASE, "train": old}), parse_spec({**BASE, "train": new})
    assert a.train_dict == b.train_dict == old and a.fingerprint() == b.fingerprint()
    assert run_key(base_config(a, "debug", 64, 0, None), "d") == run_key(base_config(b, "debug", 64, 0, None), "d")
    frac = parse_spec({**BASE, "train": {"schedule.warmup_frac": 0.1}})
    assert frac.train_dict == {"warmup": 0.1}
    with pytest.raises(BadInput, match="not both"):
        parse_spec({**BASE, "train": {"schedule": {"warmup_frac": 0.1, "warmup_steps": 3}}})
