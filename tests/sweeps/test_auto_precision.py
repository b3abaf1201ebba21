"""`precision: auto` is resolved once per model size when a sweep is planned and recorded in the spec,
so a row re-run by key trains in the precision it first ran; the requeue limit comes from the spec."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweeps.cli import main

AUTO = {"batch_size": 16, "lr": 1e-3, "precision": "auto", "accelerator": "cpu"}
SPECS = Path(__file__).resolve().parents[2] / "sweeps"
RESULTS = SPECS.parent / "results"


def _resolver(monkeypatch, answers):
    """Make this machine's `auto` answer ``answers(call number)``; returns the list of calls (model widths)."""
    from scaling import hardware

    calls: list[int] = []

    def resolve(precision, accelerator="auto", threads=None, *, model=None, batch_size=32, dims=None):
        calls.append(model.config.d_model)
        return answers(len(calls)), "test resolver"

    monkeypatch.setattr(hardware, "resolve_precision", resolve)
    return calls


def _run_yaml_precisions(d: Path) -> set[str]:
    return {yaml.safe_load(p.read_text())["model"]["precision"] for p in (d / "runs").glob("*/run.yaml")}


def test_a_row_rerun_by_key_trains_the_precision_first_resolved(tmp_path, spec_file, fake_env, monkeypatch):
    spec = spec_file(train=AUTO)
    calls = _resolver(monkeypatch, lambda n: "bf16-mixed")
    first = tmp_path / "first"
    assert main(["sweep", "run", str(spec), "--dir", str(first), "--no-progress"]) == 0
    assert len(calls) == 2  # once per model size, not once per run (4 runs)
    assert yaml.safe_load(spec.read_text())["auto_precision"] == {"100000.0": "bf16-mixed", "200000.0": "bf16-mixed"}
    assert json.loads((first / "sweep.json").read_text())["auto_precision"] == {"100000.0": "bf16-mixed",
                                                                               "200000.0": "bf16-mixed"}
    rows = pd.read_csv(first / "results.csv")
    assert set(rows["precision"]) == {"bf16-mixed"} and _run_yaml_precisions(first) == {"bf16-mixed"}

    # Another machine, under another load: its own `auto` would now say 32-true.
    calls = _resolver(monkeypatch, lambda n: "32-true")
    key = rows.loc[rows["n_params"].idxmax(), "run_key"]
    again = tmp_path / "again"
    assert main(["sweep", "run", str(spec), "--dir", str(again), "--only", key, "--no-progress"]) == 0
    assert calls == []  # nothing resolved again: the spec says
    row = pd.read_csv(again / "results.csv")
    assert row["run_key"].tolist() == [key] and row["precision"].tolist() == ["bf16-mixed"]
    assert _run_yaml_precisions(again) == {"bf16-mixed"}


def test_sweep_plan_prints_the_precision_of_each_size(tmp_path, spec_file, capsys, monkeypatch):
    spec = spec_file(train=AUTO)
    _resolver(monkeypatch, lambda n: "32-true" if n == 1 else "bf16-mixed")  # sizes resolve smallest first
    before = spec.read_text()
    assert main(["sweep", "plan", str(spec), "--dir", str(tmp_path / "d"), "--no-calibrate"]) == 0
    out, err = capsys.readouterr()
    said = f"precision auto, per size (auto_precision: in {spec}): 100000.0 32-true, 200000.0 bf16-mixed"
    assert said in out, out
    assert ("precision auto for size 200000.0: bf16-mixed (test resolver); to be recorded in "
            f"{spec} when the sweep first runs") in err, err
    assert spec.read_text() == before  # a plan writes nothing
    from sweeps.sweep import Sweep

    _resolver(monkeypatch, lambda n: "32-true" if n == 1 else "bf16-mixed")
    Sweep.open(spec, tmp_path / "d").plan(record=True)  # as the sweep's first enqueue does
    assert "auto_precision:" in spec.read_text()
    # Planned again where `auto` says otherwise: the recorded answer, and the runs carry it.
    calls = _resolver(monkeypatch, lambda n: "16-mixed")
    assert main(["sweep", "plan", str(spec), "--dir", str(tmp_path / "d"), "--no-calibrate", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert calls == [] and {(r["size"], r["precision"]) for r in runs} == {(1e5, "32-true"), (2e5, "bf16-mixed")}
    assert {r["config"]["precision"] for r in runs} == {"auto"}  # what the keys hash: unchanged


def test_a_size_already_in_the_ledger_keeps_its_precision(tmp_path, spec_file, fake_env, monkeypatch):
    """Machines sharing one PostgreSQL ledger each have their own copy of the spec: the first to enqueue
    a size decides it for the others."""
    from sweeps.sweep import Sweep

    spec = spec_file(train=AUTO)
    original = spec.read_text()
    _resolver(monkeypatch, lambda n: "bf16-mixed")
    Sweep.open(spec, tmp_path / "d").enqueue()
    spec.write_text(original)  # the second machine's copy, without the block
    calls = _resolver(monkeypatch, lambda n: "32-true")
    sw = Sweep.open(spec, tmp_path / "d")
    sw.enqueue()
    assert calls == [] and dict(sw.spec.auto_precision) == {"100000.0": "bf16-mixed", "200000.0": "bf16-mixed"}
    assert yaml.safe_load(spec.read_text())["auto_precision"]["200000.0"] == "bf16-mixed"


def test_the_block_goes_before_the_validation_rounds_and_keeps_the_rest(tmp_path):
    from sweeps.auto_precision import record
    from sweeps.spec import load_spec
    from sweeps.validation import HEADER, append_round

    spec = tmp_path / "s.yaml"
    text = ("name: s  # kept\ndata: d\nmodels: [debug, 2e5]\nsamples: [64]\ntrain: {precision: auto}\n" + HEADER +
            "validation:\n- budget: 1.0e+12\n  fit: f.json\n  seeds: [0]\n  points:\n"
            "  - {size: 16x2, n_params: 10, samples: 5, predicted_loss: 2.0, predicted_lo: 1.9, predicted_hi: 2.1, "
            "recommended: true}\n")
    spec.write_text(text)
    fingerprint = load_spec(spec).fingerprint()
    assert record(spec, {"debug": "32-true", "16x2": "32-true"}) == {"debug": "32-true", "16x2": "32-true"}
    assert record(spec, {"200000.0": "bf16-mixed", "debug": "bf16-mixed"}) == {
        "debug": "32-true", "16x2": "32-true", "200000.0": "bf16-mixed"}  # a recorded size keeps its answer
    out = spec.read_text()
    assert out.startswith("name: s  # kept\n") and out.count("auto_precision:") == 1
    assert out.index("auto_precision:") < out.index(HEADER) < out.index("validation:")
    loaded = load_spec(spec)
    assert loaded.fingerprint() == fingerprint and len(loaded.validation) == 1
    append_round(spec, loaded, {"budget": 2e12, "fit": "f.json", "seeds": [0], "points": [
        {"size": "16x2", "n_params": 10, "samples": 5, "predicted_loss": 2.0, "predicted_lo": 1.9,
         "predicted_hi": 2.1, "recommended": True}]})  # `sweep validate` still finds its block last
    again = load_spec(spec)
    assert len(again.validation) == 2 and dict(again.auto_precision)["200000.0"] == "bf16-mixed"


@pytest.mark.parametrize("extra, says", [
    ({"auto_precision": {"1e5": "32-true"}}, "auto_precision: only for train.precision: auto"),
    ({"train": AUTO, "auto_precision": {"1e5": "fp32"}}, "auto_precision.1e5: 'fp32' is not one of"),
    ({"train": AUTO, "auto_precision": ["32-true"]}, "auto_precision: expected a mapping"),
    ({"slurm": {"max_requeues": -1}}, "slurm.max_requeues: must be >= 0"),
    ({"slurm": {"max_requeues": "often"}}, "slurm.max_requeues: expected a number"),
    ({"slurm": {"max_requeues": 1.5}}, "slurm.max_requeues: expected an integer"),
])
def test_bad_values_exit_2_with_one_line(tmp_path, spec_file, capsys, extra, says):
    rc = main(["sweep", "plan", str(spec_file(**extra)), "--dir", str(tmp_path / "d"), "--no-calibrate"])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_the_requeue_limit_comes_from_the_spec_and_the_flag_overrides_it(tmp_path, spec_file, monkeypatch):
    from sweeps import launcher
    from sweeps.sweep import Sweep

    asked: list[int] = []

    def launch(sweep, workers, kind="local", progress=True, slurm=None, on_interrupt="cancel", max_requeues=3):
        asked.append(max_requeues)
        return launcher.LaunchReport()

    monkeypatch.setattr(launcher, "launch", launch)
    sw = Sweep.open(spec_file(slurm={"max_requeues": 5}), tmp_path / "d")
    sw.run(progress=False)
    sw.run(progress=False, max_requeues=1)
    Sweep.open(spec_file(), tmp_path / "d").run(progress=False)
    assert asked == [5, 1, launcher.DEFAULT_REQUEUES]


def test_a_requeue_refusal_lost_to_a_signal_race_is_still_reported(tmp_path):
    """submitit's raise can be swallowed (USR2 arrives while its SIGCONT handler logs) and SLURM then ends
    the task at its limit, with no result: the refusal in its log still names the requeue limit."""
    from types import SimpleNamespace

    pytest.importorskip("submitit")
    from sweeps.launcher import _task_reason

    out, err = tmp_path / "0_log.out", tmp_path / "0_log.err"
    out.write_text("submitit INFO (x) - Job not requeued because: timed-out too many times.\n")
    err.write_text("srun: forcing job termination\n")
    job = SimpleNamespace(paths=SimpleNamespace(result_pickle=tmp_path / "0_result.pkl", stdout=out, stderr=err))
    assert _task_reason(job, 2).startswith("the requeue limit was reached: timed out 3 time(s), requeued 2 (the spec's")
    out.write_text("submitit INFO (x) - Job completed successfully\n")
    assert _task_reason(job, 2) == "srun: forcing job termination"


def _committed(name: str) -> bool:
    return (RESULTS / name / "results.csv").is_file()


AUTO_STUDIES = [p.stem for p in sorted(SPECS.glob("*.yaml")) if _committed(p.stem)
                and yaml.safe_load(p.read_text()).get("auto_precision")]


@pytest.mark.parametrize("name", AUTO_STUDIES)
def test_committed_rows_ran_the_precision_their_spec_records(name):
    """A committed study's `auto_precision:` names what its rows ran, so `--only KEY` reproduces them."""
    from sweeps.spec import load_spec

    recorded = dict(load_spec(SPECS / f"{name}.yaml").auto_precision)
    rows = pd.read_csv(RESULTS / name / "results.csv")
    ran = {(str(s), p) for s, p in zip(rows["size"], rows["precision"])}
    assert ran == set(recorded.items())


def test_committed_auto_studies_are_covered():
    """Guards the list above: the committed studies that ran `precision: auto` record it."""
    assert {"cpu_study_2seeds", "cpu_study_4seeds", "cpu_isoflop"} <= set(AUTO_STUDIES)


GRID_STUDIES = [p.stem for p in sorted(SPECS.glob("*.yaml")) if _committed(p.stem)
                and not isinstance(yaml.safe_load(p.read_text()).get("design", "grid"), dict)]


@pytest.mark.parametrize("name", GRID_STUDIES)
def test_committed_grid_rows_still_rerun_by_key(name):
    """Every committed row of a grid study is still planned under its key (a grid's keys hash the runs'
    settings, never the data's dimensions, so any dimensions plan them)."""
    from scaling.model.family import Dims
    from sweeps.plan import plan_runs
    from sweeps.spec import load_spec

    dims = Dims(image_size=32, vocab_size=64, max_instr_len=16, proprio_dim=8, action_dim=7)
    keys = {r.key for r in plan_runs(load_spec(SPECS / f"{name}.yaml"), dims)}
    committed = set(pd.read_csv(RESULTS / name / "results.csv")["run_key"])
    assert committed and committed <= keys, sorted(committed - keys)[:5]
