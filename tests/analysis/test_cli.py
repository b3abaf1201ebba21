"""`scaling fit | optimal | report` through the one `scaling` command (sweeps.cli.main)."""

import json

import numpy as np
import pytest
import yaml

from sweeps.cli import main

from synthetic_tables import synthetic_frame


@pytest.fixture
def results(tmp_path):
    p = tmp_path / "results.csv"
    synthetic_frame(noise=0.005, n_sizes=5, n_budgets=5).to_csv(p, index=False)
    return p


def test_fit_then_optimal_then_emit_config(results, tmp_path, capsys):
    fit_json = tmp_path / "fit.json"
    assert main(["fit", str(results), "--bootstrap", "30", "--out", str(fit_json)]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "backtest" in out and "wrote" in out
    d = json.loads(fit_json.read_text())
    for key in ("form", "params", "ci", "exponents", "huber", "n_points", "backtest", "warnings"):
        assert key in d
    assert set(d["backtest"]) >= {"holdout", "are_mean", "are_max"}
    assert d["k_measured"] and d["n_points"] == 25

    cfg = tmp_path / "run.yaml"
    assert main(["optimal", str(fit_json), "--flops", "1e19", "--json", "--emit-config", str(cfg)]) == 0
    o = json.loads(capsys.readouterr().out)
    assert {"flops", "n_opt", "d_opt", "loss", "ci"} <= set(o)
    assert o["ci"]["n_opt"][0] <= o["n_opt"] <= o["ci"]["n_opt"][1]
    assert o["n_opt"] * o["d_opt"] * d["k"] == pytest.approx(1e19)
    # Against Chinchilla's closed form (Hoffmann et al. 2022, eq. 4), not only the budget identity:
    # N_opt = G (C/k)^a, G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta / (alpha + beta).
    p = d["params"]
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    a = p["beta"] / (p["alpha"] + p["beta"])
    assert o["n_opt"] == pytest.approx(G * (1e19 / d["k"]) ** a, rel=1e-9)
    assert d["exponents"]["a"] == pytest.approx(a, rel=1e-12)
    run = yaml.safe_load(cfg.read_text())
    assert isinstance(run["model"]["size"], float) and isinstance(run["data"]["samples"], int)
    assert run["model"]["size"] == pytest.approx(o["n_opt"], rel=1e-6)


@pytest.mark.parametrize("argv, match", [
    (["fit", "{dir}/missing.csv", "--out", "{dir}/f.json"], "missing.csv: no such results file"),
    (["fit", "{res}", "--loss-col", "loss", "--out", "{dir}/f.json"],
     "no column 'loss' (--loss-col); available: n_params"),
    (["fit", "{res}", "--form", "nope", "--out", "{dir}/f.json"], "--form 'nope': unknown form"),
    (["optimal", "{dir}/nofit.json", "--flops", "1e18"], "no such fit file"),
    (["report", "{dir}", "--out", "{dir}/rep"], "without results.csv"),
])
def test_bad_input_is_one_line_and_exit_2(argv, match, results, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [a.format(dir=empty, res=results) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and "Traceback" not in err


@pytest.mark.slow
def test_report_on_a_sweep_directory(results, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", str(results.parent), "--bootstrap", "20", "--out", str(out)]) == 0
    assert (out / "report.html").is_file() and (out / "fit.json").is_file()
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "expected a JSON object, found a list"),
    ('{"form": "chinchilla", "params": {"E": 1.8, "A": 400, "B": 1500, "beta": 0.36}}', "'params' lacks 'alpha'"),
    ('{"form": "chinchilla", "params": {"E": 1.8, "A": 400, "B": 1500, "alpha": "x", "beta": 0.36}}',
     "params.alpha must be a finite number"),
    ('{"form": "nope", "params": {}}', "unknown form 'nope'"),
    ('{"params": {}}', "no 'form'"),
    ('{"form": "chinchilla", "params": [1, 2]}', "'params' must be an object"),
    ('{"form": "chinchilla", "params": {"E": 1.8, "A": 400, "B": 1500, "alpha": 0.34, "beta": 0.36}, "k": -1}',
     "'k' (FLOPs per parameter per sample) must be a positive number"),
    ('{"form": "chinchilla", "params": {"E": 1.8, "A": 400, "B": 1500, "alpha": 0.34, "beta": 0.36}, "ci": {"E": 3}}',
     "ci.E must be [lo, hi]"),
    ('{"form": "chinchilla", "params": {"E": 1.8, "A": 400, "B": 1500, "alpha": 0.34, "beta": 0.36}, '
     '"bootstrap": {"names": ["E"], "samples": [[1, 2]]}}', "bootstrap.samples must be rows of 1 numbers"),
    ('{"form": "power_n", "params": {"E": 1.8, "A": 400, "alpha": 0.3}}', "needs a law in both N and D"),
    ("{not json", "not valid JSON"),
    ('"text"', "expected a JSON object, found a str"),
])
def test_malformed_fit_json_exits_2_with_one_line(content, match, tmp_path, capsys):
    p = tmp_path / "fit.json"
    p.write_text(content)
    assert main(["optimal", str(p), "--flops", "1e18"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and "Traceback" not in err, err


def test_emit_config_carries_the_runs_training_settings_and_warns_far_out(tmp_path, capsys):
    df = synthetic_frame(noise=0.005, n_sizes=5, n_budgets=5)
    df["lr"] = np.where(df.n_params < 1e8, 2e-3, 1e-3)  # tuned per size, as sweeps do
    df["global_batch_size"] = 32
    df["precision"] = "32-true"
    src = tmp_path / "r.csv"
    df.to_csv(src, index=False)
    fit_json, cfg = tmp_path / "fit.json", tmp_path / "run.yaml"
    assert main(["fit", str(src), "--bootstrap", "0", "--holdout-frac", "0", "--out", str(fit_json)]) == 0
    d = json.loads(fit_json.read_text())
    assert d["training"]["global_batch_size"] == 32 and d["training"]["precision"] == "32-true"
    assert set(d["training"]["lr"]["by_n"].values()) == {2e-3, 1e-3}
    capsys.readouterr()
    big = 1e4 * d["observed"]["flops_max"]
    assert main(["optimal", str(fit_json), "--flops", str(big), "--emit-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "1e+04x the largest fitted run" in err and "below every observed loss" in err
    run = yaml.safe_load(cfg.read_text())
    assert run["optim"]["batch_size"] == 32 and run["model"]["precision"] == "32-true"
    assert run["optim"]["lr"] == 1e-3  # N_opt >> 1e8
    assert "WARNING" in cfg.read_text() and "FLOPs)" in cfg.read_text()
