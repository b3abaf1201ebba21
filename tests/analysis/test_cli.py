"""`scaling fit | optimal | report` through the one `scaling` command (sweeps.cli.main)."""

import json

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
    run = yaml.safe_load(cfg.read_text())
    assert isinstance(run["size"], float) and isinstance(run["samples"], int)
    assert run["size"] == pytest.approx(o["n_opt"], rel=1e-6)


@pytest.mark.parametrize("argv, match", [
    (["fit", "{dir}/missing.csv", "--out", "{dir}/f.json"], "missing.csv: no such results file"),
    (["fit", "{res}", "--loss-col", "loss", "--out", "{dir}/f.json"], "no column 'loss' (--loss-col); available: n_params"),
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
