"""`reuse:` in a spec: a point whose run key has a completed row in a committed results table is recorded
from that row instead of trained (`sweeps.reuse`); `--only` still trains; a mismatched row is refused."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from sweeps.cli import main
from sweeps.spec import load_spec

from specfiles import write_spec

ROW_COLS = ("val_loss", "train_loss", "n_params", "n_samples", "seed", "phase", "flops", "code_version")


def _run(spec, d, *extra) -> int:
    return main(["sweep", "run", str(spec), "--dir", str(d), "--workers", "1", "--no-progress", *extra])


@pytest.fixture
def first(tmp_path, spec_file, fake_env):
    """A finished one-seed sweep and its table (the committed study a later spec reuses)."""
    spec = spec_file(seeds=[0])
    d = tmp_path / "first"
    assert _run(spec, d) == 0
    # The fake trainer reports the target size as N; the real one counts N, as the plan does.
    from sweeps.data_source import data_dims
    from sweeps.plan import plan_runs

    parsed = load_spec(spec)
    counted = {r.key: r.n_params for r in plan_runs(parsed, data_dims(parsed.data.path))}
    table = pd.read_csv(d / "results.csv")
    table["n_params"] = table["run_key"].map(counted)
    table.to_csv(d / "results.csv", index=False)
    return d / "results.csv"


def test_reused_points_are_recorded_from_their_rows_and_only_the_new_seeds_train(tmp_path, sweep_dataset, first,
                                                                               runs_of, capsys):
    spec = write_spec(tmp_path / "reuse.yaml", sweep_dataset, seeds=[0, 1], reuse=[str(first)])
    plain = write_spec(tmp_path / "plain.yaml", sweep_dataset, seeds=[0, 1])
    assert load_spec(spec).fingerprint() == load_spec(plain).fingerprint()  # how, not what
    d = tmp_path / "second"
    assert _run(spec, d) == 0
    assert "4 points recorded from committed rows" in capsys.readouterr().err
    started = Counter(k for ev, k, *_ in runs_of(d) if ev == "start")
    old = pd.read_csv(first).set_index("run_key")
    new = pd.read_csv(d / "results.csv").set_index("run_key")
    assert len(new) == 8 and set(new["state"]) == {"completed"}
    reused = new[new["reused_from"].notna()]
    assert sorted(reused.index) == sorted(old.index) and set(reused["seed"]) == {0}
    assert set(reused["reused_from"]) == {str(first)}
    assert not set(started) & set(reused.index)  # never trained again
    assert set(started) == set(new.index) - set(old.index)  # seed 1 trained
    for col in ROW_COLS:
        assert list(reused[col]) == list(old.loc[reused.index, col]), col
    # The rows are this spec's now: its fingerprint, not the first spec's.
    assert set(new["spec_fingerprint"]) == {load_spec(spec).fingerprint()}


def test_a_reused_row_re_run_by_key_is_trained(tmp_path, spec_file, first, runs_of):
    key = pd.read_csv(first)["run_key"].iloc[0]
    spec = spec_file(seeds=[0], reuse=[str(first)])
    d = tmp_path / "check"
    assert _run(spec, d, "--only", key) == 0
    assert [k for ev, k, *_ in runs_of(d) if ev == "start"] == [key]
    row = pd.read_csv(d / "results.csv").set_index("run_key").loc[key]
    assert pd.isna(row["reused_from"]) and row["state"] == "completed"


def test_a_missing_table_or_a_row_that_is_not_the_planned_run_is_refused_with_exit_2(tmp_path, spec_file, first,
                                                                                       fake_env, capsys):
    spec = spec_file(seeds=[0], reuse=[str(tmp_path / "nowhere.csv")])
    assert _run(spec, tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert "reuse: cannot read" in err and "nowhere.csv" in err and "Traceback" not in err

    edited = pd.read_csv(first)
    edited.loc[0, "n_samples"] = 999  # a hand edit: the key no longer names this row's run
    bad = tmp_path / "edited.csv"
    edited.to_csv(bad, index=False)
    assert _run(spec_file(seeds=[0], reuse=[str(bad)]), tmp_path / "b") == 2
    err = capsys.readouterr().err
    assert f"row {edited.loc[0, 'run_key']} has n_samples=999" in err


def test_reuse_paths_are_relative_to_the_spec_and_an_empty_list_is_none(tmp_path, sweep_dataset):
    (tmp_path / "sub").mkdir()
    spec = load_spec(write_spec(tmp_path / "sub" / "s.yaml", sweep_dataset, reuse=["../r/results.csv"]))
    assert spec.reuse == ("../r/results.csv",)
    assert spec.reuse_paths() == (str(tmp_path / "sub" / "../r/results.csv"),)
    assert load_spec(write_spec(tmp_path / "e.yaml", sweep_dataset, reuse=[])).reuse == ()


def test_the_plan_counts_the_reused_runs_and_what_is_left_to_train(tmp_path, sweep_dataset, first, capsys):
    spec = write_spec(tmp_path / "p.yaml", sweep_dataset, seeds=[0, 1], reuse=[str(first)])
    assert main(["sweep", "plan", str(spec), "--dir", str(tmp_path / "p"), "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert f"reuse: 4 of 8 runs have a completed row in {first}" in out and "to train: 4 runs" in out
    assert not (tmp_path / "p" / "optuna.journal").exists()  # a plan records nothing
