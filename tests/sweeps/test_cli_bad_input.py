"""Every bad input a user reported exits 2 with one line on stderr, creates nothing, and shows no password."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from sweeps.cli import main

from specfiles import REPO, write_spec


def _bad(capsys, argv: list[str]) -> str:
    """Run ``scaling argv``: exit 2, one line on stderr, no traceback; returns that line."""
    rc = _call(argv)
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _call(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse errors
        return int(exc.code)


@pytest.mark.parametrize("url, says", [
    ("foo://bar", "unknown database 'foo'"),
    ("mysql://u@localhost/db", "driver is not installed"),
    ("sqlite:////nonexistent/x.db", "folder /nonexistent does not exist"),
    ("", "--storage is empty"),
    ("postgresql://alice:s3cretpw@127.0.0.1:1/db", "cannot open"),
    ("postgres://alice:s3cretpw@127.0.0.1:1/db", "cannot open"),
    ("postgresql+psycopg2://alice:s3cretpw@127.0.0.1:1/db", "cannot open"),
    ("http://[::1", "not a valid database URL"),
])
def test_storage_urls_exit_2_and_mask_the_password(url, says, tmp_path, spec_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = _bad(capsys, ["sweep", "status", str(spec_file()), "--storage", url])
    assert says in line
    assert "s3cretpw" not in line
    if "s3cretpw" in url:
        assert "alice:***@" in line
    assert not (tmp_path / "runs").exists()


def test_storage_that_is_a_folder(tmp_path, spec_file, capsys):
    line = _bad(capsys, ["sweep", "status", str(spec_file()), "--storage", str(tmp_path)])
    assert "is a folder" in line


def test_storage_from_the_environment_is_checked_too(tmp_path, spec_file, capsys, monkeypatch):
    monkeypatch.setenv("SCALING_STORAGE", "postgresql://alice:s3cretpw@127.0.0.1:1/db")
    line = _bad(capsys, ["sweep", "status", str(spec_file())])
    assert "cannot open" in line and "s3cretpw" not in line


def test_train_negative_seed(tmp_path, capsys):
    line = _bad(capsys, ["train", "--data", str(tmp_path), "--seed", "-1", "--out", str(tmp_path / "r")])
    assert "--seed must be >= 0" in line


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A results table and its fit.json, fitted once for the module (the fit takes seconds)."""
    sys.path.insert(0, str(REPO / "tests" / "analysis"))
    from synthetic_tables import synthetic_frame

    base = tmp_path_factory.mktemp("fitted")
    table = base / "results.csv"
    synthetic_frame(noise=0.005, n_sizes=4, n_budgets=4).to_csv(table, index=False)
    assert main(["fit", str(table), "--bootstrap", "0", "--out", str(base / "fit.json")]) == 0
    return table, base / "fit.json"


def test_fit_out_is_a_folder(tmp_path, fitted, capsys):
    line = _bad(capsys, ["fit", str(fitted[0]), "--bootstrap", "0", "--out", str(tmp_path)])
    assert "is a folder" in line


def test_optimal_emit_config_is_a_folder(tmp_path, fitted, capsys):
    line = _bad(capsys, ["optimal", str(fitted[1]), "--flops", "1e18", "--emit-config", str(tmp_path)])
    assert "--emit-config" in line and "is a folder" in line


@pytest.mark.parametrize("override, says", [
    ({"retries": -3}, "retries must be >= 0"),
    ({"wsd": {"enabled": "false"}}, "wsd.enabled: expected true or false"),
    ({"models": ["debug", "debug"]}, "'debug' is listed twice"),
    ({"models": [1e5, 100000]}, "listed twice"),
    ({"samples": [64, 64]}, "listed twice"),
    ({"seeds": [-1]}, "seeds must be >= 0"),
    ({"train": {"batch_size": 0, "lr": 1e-3}}, "train.batch_size must be a positive number"),
    ({"train": {"lr": "fast"}}, "train.lr must be float"),
    ({"slurm": {"mem_gb": -4}}, "slurm.mem_gb: must be > 0"),
])
def test_spec_values_refused_at_plan_time(override, says, tmp_path, sweep_dataset, capsys):
    spec = write_spec(tmp_path / "spec.yaml", sweep_dataset, **override)
    line = _bad(capsys, ["sweep", "plan", str(spec), "--no-calibrate"])
    assert says in line, line


def test_did_you_mean_only_suggests_the_sub_commands_own_flags(tmp_path, spec_file, capsys):
    line = _bad(capsys, ["sweep", "plan", str(spec_file()), "--worker", "2"])
    assert "unrecognized arguments: --worker 2" in line and "--workers" not in line
    line = _bad(capsys, ["sweep", "run", str(spec_file()), "--retry-faild"])
    assert "did you mean --retry-failed?" in line
    line = _bad(capsys, ["data", "generate", "tabletop", "--episodes", "2", "--out", str(tmp_path / "d"),
                         "--colour", "red"])
    assert "--u-col" not in line and "--colour" in line


def test_status_and_export_of_a_never_run_sweep_create_nothing(tmp_path, spec_file, capsys):
    spec = spec_file()
    where = tmp_path / "typo"
    line = _bad(capsys, ["sweep", "status", str(spec), "--dir", str(where)])
    assert "no sweep here" in line
    line = _bad(capsys, ["sweep", "export", str(spec), "--dir", str(where), "--out", str(tmp_path / "r.csv")])
    assert "no sweep here" in line
    assert not where.exists() and not (tmp_path / "r.csv").exists()


def test_export_out_is_a_folder(tmp_path, spec_file, capsys):
    line = _bad(capsys, ["sweep", "export", str(spec_file()), "--dir", str(tmp_path / "x"), "--out", str(tmp_path)])
    assert "is a folder" in line


def test_launcher_slurm_without_slurm(tmp_path, spec_file, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on PATH
    line = _bad(capsys, ["sweep", "run", str(spec_file()), "--dir", str(tmp_path / "s"), "--launcher", "slurm"])
    assert "no SLURM here" in line
    assert not (tmp_path / "s").exists()


def test_slurm_flags_without_slurm_launcher(tmp_path, spec_file, capsys):
    line = _bad(capsys, ["sweep", "run", str(spec_file()), "--dir", str(tmp_path / "s"), "--partition", "gpu"])
    assert "need --launcher slurm" in line


def test_numpy_overflow_warning_does_not_reach_the_terminal(tmp_path, fitted, monkeypatch):
    """A fit that overflows exp (as the fitter's far-off starts do) prints no RuntimeWarning."""
    import numpy as np

    import analysis.workflow as workflow
    from analysis import FitResult

    def noisy_fit(*a, **kw):
        np.exp(np.array([1000.0]))  # RuntimeWarning: overflow encountered in exp
        return FitResult.load(fitted[1])

    monkeypatch.setattr(workflow, "fit", noisy_fit)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        assert main(["fit", str(fitted[0]), "--bootstrap", "0", "--out", str(tmp_path / "f.json")]) == 0
    assert not [w for w in seen if "overflow" in str(w.message)]
    with warnings.catch_warnings(record=True) as seen:  # the filter is scoped to the command
        warnings.simplefilter("default")
        np.exp(np.array([1000.0]))
    assert seen


@pytest.mark.parametrize("argv", [["sweep", "--help"], ["data", "inspect", "{data}"]])
def test_broken_pipe_is_quiet(argv, sweep_dataset):
    """``scaling ... | head``: the reader closes the pipe first; no BrokenPipeError traceback."""
    argv = [a.replace("{data}", str(sweep_dataset)) for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "sweeps.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 0
