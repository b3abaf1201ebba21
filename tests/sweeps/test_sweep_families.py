"""`families:` makes the model family an axis of the design: both families on the same data, grid and
seeds, their keys naming the family (a one-family spec's keys and fingerprint unchanged), a family
column in the results table, one fit per family and their comparison at the end of the sweep."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from scaling.model.family import Dims
from sweeps import results
from sweeps.cli import main
from sweeps.plan import format_plan, plan_runs
from sweeps.spec import MODEL_OPTION_KEYS, load_spec, parse_spec
from vla_core import schema

from specfiles import REPO, write_spec

DIMS = Dims(image_size=32, vocab_size=64, max_instr_len=16, proprio_dim=8, action_dim=7)
STUDY = REPO / "sweeps" / "cpu_families.yaml"


def _raw(**changes) -> dict:
    raw = {"name": "fam", "data": "/d", "models": ["15k", "30k"], "samples": [1000, 2000],
           "families": {"vla": {"keypoints": 16}, "conv": {}}, "train": {"batch_size": 16, "lr": 1e-3}}
    raw.update(changes)
    return raw


def test_the_study_plans_both_families_on_one_grid():
    spec = load_spec(STUDY)
    runs = plan_runs(spec, DIMS)
    assert len(runs) == len({r.key for r in runs}) == 2 * (3 * 4 + 1)  # 3 N x 4 D and a blind run per family
    grid = {}
    for r in runs:
        assert r.family == r.config["family"] and r.family in ("vla", "conv")
        grid.setdefault(r.family, set()).add((str(r.size), r.samples, r.seed, r.phase))
        if r.family == "vla":  # the transformer's own options reach its runs only
            assert (r.config["patch_size"], r.config["keypoints"]) == (8, 16)
        else:
            assert "patch_size" not in r.config and "keypoints" not in r.config
        assert (r.config["lr"], r.config["batch_size"], r.config["schedule"]) == (1e-3, 32, "wsd")
    assert grid["vla"] == grid["conv"]  # the same sizes, data sizes, seeds and phases
    assert sum(r.phase == "blind" for r in runs) == 2
    assert [r.family for r in runs] == ["vla"] * 13 + ["conv"] * 13


def test_a_run_key_names_its_family_only_under_families():
    spec = parse_spec(_raw())
    keys = {(r.family, str(r.size), r.samples, r.phase): r.key for r in plan_runs(spec, DIMS)}
    alone = parse_spec(_raw(families=None, train={"batch_size": 16, "lr": 1e-3, "keypoints": 16}))
    assert "families" not in alone.canonical()  # a one-family spec: the fingerprint it always had
    for r in plan_runs(alone, DIMS):
        assert r.family is None and "family" not in r.config
        assert r.key != keys[("vla", str(r.size), r.samples, r.phase)]  # the same run, keyed without its family
    as_conv = parse_spec(_raw(families=None, train={"batch_size": 16, "lr": 1e-3, "family": "conv"}))
    conv_keys = {(str(r.size), r.samples, r.phase): r.key for r in plan_runs(as_conv, DIMS)}
    assert conv_keys == {k[1:]: v for k, v in keys.items() if k[0] == "conv"}  # train.family: conv's very runs
    assert spec.canonical()["families"] == {"vla": {"keypoints": 16}, "conv": {}}
    assert spec.fingerprint() != parse_spec(_raw(families=["vla", "conv"], train={"lr": 1e-3})).fingerprint()


def test_sweep_plan_shows_the_family_column_and_a_total_per_family():
    text = format_plan(plan_runs(parse_spec(_raw()), DIMS))
    head = text.splitlines()[0].split()
    assert head[:4] == ["key", "phase", "family", "size"]
    assert "family vla: 5 runs" in text and "family conv: 5 runs" in text and "total: 10 runs" in text
    plain = format_plan(plan_runs(parse_spec(_raw(families=None)), DIMS))
    assert "family" not in plain


def test_estimates_are_calibrated_per_family(tmp_path, monkeypatch):
    from sweeps import calibration
    from sweeps.sweep import Sweep

    spec = parse_spec(_raw())
    runs = plan_runs(spec, DIMS)
    seen = []

    def fake(sub, local, dims, part, sweep_dir, cache_name="calibration.json"):
        family = sub.train_dict["family"]
        seen.append((family, cache_name, {r.family for r in part}))
        rate = {"vla": 1e-9, "conv": 3e-9}[family]
        return {"seconds_per_flop": {str(r.flops_per_sample): rate for r in part}, "overhead_s": 0.0}

    monkeypatch.setattr(calibration, "calibrate", fake)
    out = Sweep(spec, tmp_path)._estimated(runs, "/d", DIMS)
    assert seen == [("vla", "calibration_vla.json", {"vla"}), ("conv", "calibration_conv.json", {"conv"})]
    assert [r.key for r in out] == [r.key for r in runs]
    for r in out:
        assert r.est_seconds == pytest.approx(r.flops * {"vla": 1e-9, "conv": 3e-9}[r.family])


@pytest.mark.parametrize("change, says", [
    (dict(families=["vla", "transformr"]), "families: unknown family 'transformr'"),
    (dict(families=["vla", "conv", "vla"]), "'vla' is listed twice"),
    (dict(families=["conv"]), "lists 1 family; for one family set train.family"),
    (dict(families=["vla", "conv"], train={"family": "conv"}), "either train.family (one family) or families:"),
    (dict(models=["48x2", "30k"]), "models[0]: '48x2' is not a parameter count"),
    (dict(models=["debug", "30k"]), "models[0]: 'debug' is not a parameter count"),
    (dict(train={"keypoints": 16}), "train.keypoints shapes one family's model"),
    (dict(lr_search={"trials": 2}, train={}), "lr_search is not supported with families:"),
    (dict(train={"precision": "auto"}), "train.precision: auto is not supported with families:"),
    (dict(families={"vla": {"size": 3}, "conv": {}}), "families.vla: size is set by the sweep per run"),
    (dict(families={"vla": {"keypoint": 3}, "conv": {}}),
     "unknown RunConfig field 'keypoint' (did you mean 'keypoints'?)"),
    (dict(families={"vla": {"lr": -1}, "conv": {}}), "families.vla"),
    (dict(families="vla,conv"), "expected a list of family names"),
])
def test_bad_families_exit_2_with_one_line(change, says, tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_raw(**change)))
    assert main(["sweep", "plan", str(path), "--no-calibrate"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert says in err, err


def test_a_preset_size_with_the_conv_family_exits_2(tmp_path, sweep_dataset, capsys):
    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset, models=["48x2", 2e5],
                      train={"family": "conv", "batch_size": 16, "lr": 1e-3})
    assert main(["sweep", "plan", str(spec), "--no-calibrate", "--dir", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'48x2' is not a parameter count" in err


def test_model_option_keys_are_the_familys_options():
    from scaling.model.family import DEFAULT, OPTION_DEFAULTS

    assert MODEL_OPTION_KEYS == tuple(OPTION_DEFAULTS) and schema.DEFAULT_FAMILY == DEFAULT


class _Queue:
    """What `results.table` reads of a queue: each point's state and attrs."""

    name = "fam"
    storage = None

    def __init__(self, attrs: dict[str, dict]) -> None:
        self._points = {k: ("waiting", SimpleNamespace(user_attrs={"seed": 0, "phase": "main", "size": "30k",
                                                                    "samples": 100, "n_params": 30000, **a}))
                        for k, a in attrs.items()}

    def info(self) -> dict:
        return {"sweep": self.name}

    def point_states(self) -> dict:
        return self._points


def test_every_row_of_the_table_names_its_family(tmp_path):
    q = _Queue({"a": {"family": "conv", "config": {"family": "conv"}},
                "b": {"family": "vla", "config": {"family": "vla"}},
                "c": {"config": {"family": "my_mod:make"}}, "d": {"config": {}}, "e": {}})
    df = results.table(q)
    assert dict(zip(df["run_key"], df["family"])) == {"a": "conv", "b": "vla", "c": "my_mod:make", "d": "vla",
                                                      "e": "vla"}
    schema.validate_table(df)
    back = pd.read_csv(results.write_table(df, tmp_path / "results.csv"))
    assert list(back["family"]) == list(df["family"])
    col = next(f for f in schema.RESULTS_TABLE if f.name == "family")
    assert not col.nullable and not col.required  # on every row a sweep writes; absent in older tables (all vla)
    with pytest.raises(schema.ContractError, match="family is null"):
        schema.validate_table(df.assign(family=None))


def test_a_families_sweep_ends_with_one_fit_per_family_and_their_comparison(tmp_path, sweep_dataset, fake_env):
    """End to end with the fake trainer (its loss depends on N and D alone, so the families' laws are
    one law): the ledger's family reaches every row, each family is fitted on its own, never pooled."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "fams", "data": str(sweep_dataset), "models": [1e5, 2e5, 4e5], "samples": [64, 128, 256],
        "families": {"vla": {"keypoints": 4}, "conv": {}}, "train": {"batch_size": 16, "lr": 1e-3}, "retries": 0}))
    d = tmp_path / "sw"
    assert main(["sweep", "run", str(spec), "--dir", str(d), "--workers", "2", "--no-progress"]) == 0
    table = pd.read_csv(d / "results.csv")
    assert len(table) == 20 and set(table["state"]) == {"completed"}
    assert table.groupby("family").size().to_dict() == {"conv": 10, "vla": 10}
    for _, row in table.iterrows():
        cfg = yaml.safe_load((d / "runs" / row["run_key"] / "run.yaml").read_text())
        assert cfg["model"]["family"] == row["family"]
    assert {p.name for p in d.glob("*.json") if p.name.startswith(("fit", "families"))} == \
        {"fit_vla.json", "fit_conv.json", "families.json"}
    doc = json.loads((d / "families.json").read_text())
    assert schema.problems("families", doc) == [] and doc["reference"] == "vla"
    assert {x["exponent"] for x in doc["differences"]} == {"alpha", "beta"}
    assert "Which family scales better" in (d / "report.html").read_text()
    assert not (d / "fit_skipped.txt").exists()
