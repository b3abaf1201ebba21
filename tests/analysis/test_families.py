"""Two model families in one results table: never pooled, each fitted on its own, the difference of their
exponents tested by bootstrap (equal laws: the interval covers 0; different: it excludes 0), and the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.families import compare, exponent_difference, fit_by_family, fit_file
from analysis.forms import FORMS
from analysis.result import FitResult
from vla_core import schema
from vla_core.errors import BadInput

from synthetic_tables import TRUE, synthetic_frame

GRID = FORMS["chinchilla"].grid[::9]
# The conv family's law: alpha 0.5 against 0.34, its A set so both reducible terms meet at N = 1e7.
STEEPER = dict(TRUE, alpha=0.5, A=TRUE["A"] * 1e7 ** (0.5 - TRUE["alpha"]))


def _two_families(conv_params=TRUE) -> pd.DataFrame:
    vla = synthetic_frame(noise=0.01, seed=1, n_sizes=5, n_budgets=5).assign(family="vla", phase="main")
    conv = synthetic_frame(conv_params, noise=0.01, seed=2, n_sizes=5, n_budgets=5).assign(family="conv", phase="main")
    blind = pd.DataFrame([{**vla.iloc[-1].to_dict(), "val_loss": 5.0, "phase": "blind"},
                          {**conv.iloc[-1].to_dict(), "val_loss": 6.0, "phase": "blind"}])
    return pd.concat([vla, conv, blind], ignore_index=True)


@pytest.fixture(scope="module")
def equal():
    return fit_by_family(_two_families(), bootstrap=200, grid=GRID)


@pytest.fixture(scope="module")
def different():
    return fit_by_family(_two_families(STEEPER), bootstrap=200, grid=GRID)


def test_a_table_of_two_families_is_never_fitted_pooled(tmp_path):
    import analysis

    with pytest.raises(BadInput, match=r"2 model families \(vla, conv\).*--by family"):
        analysis.fit(_two_families(), bootstrap=0)
    one = _two_families()
    one = one[one["family"] == "conv"]
    assert analysis.fit(one, bootstrap=0, grid=GRID).n_points == 25  # one family: an ordinary fit


def test_each_family_is_fitted_on_its_own_rows_with_its_own_resamples(equal):
    assert list(equal.fits) == ["vla", "conv"]  # the built-in family is the reference, first
    for name, f in equal.fits.items():
        assert f.n_points == 25 and f.notes[0].startswith(f"the rows of family {name} only")
    assert {f.observed["blind_loss"] for f in equal.fits.values()} == {5.0, 6.0}  # each its own blind run
    seeds = [f.bootstrap["seed"] for f in equal.fits.values()]
    assert seeds[0] != seeds[1]  # independent resamples: the difference's draws are product draws
    import analysis

    df = _two_families()
    alone = analysis.fit(df[df["family"] == "conv"], bootstrap=0, grid=GRID)  # the same law as fitted alone
    assert alone.params == pytest.approx(equal.fits["conv"].params)


def test_equal_exponents_differ_within_the_noise(equal):
    diffs = {d["exponent"]: d for d in equal.comparison["differences"]}
    assert set(diffs) == {"alpha", "beta"}
    for d in diffs.values():
        lo, hi = d["ci"]
        assert lo < 0 < hi and not d["beyond_noise"] and d["better"] is None
        assert d["p_value"] > 0.05 and d["n"] == 200 and d["family"] == "conv" and d["reference"] == "vla"
    assert "Within the noise" in equal.comparison["verdict"] and "scales better over" in equal.comparison["verdict"]
    assert equal.comparison["verdict"].count("within the noise") == 2


def test_a_steeper_family_is_found_beyond_the_noise(different):
    d = {d["exponent"]: d for d in different.comparison["differences"]}
    a = d["alpha"]
    assert a["value"] == pytest.approx(different.fits["conv"].params["alpha"] - different.fits["vla"].params["alpha"])
    assert 0.05 < a["ci"][0] < a["value"] < a["ci"][1] and a["beyond_noise"] and a["better"] == "conv"
    assert a["p_value"] < 0.05
    assert not d["beta"]["beyond_noise"]  # the same beta: still within the noise
    v = different.comparison["verdict"]
    assert v.startswith("conv scales better over N 1e+07 to 1e+09 and D 1e+08 to 1e+11")
    assert "conv's loss falls faster with N" in v and "beyond the noise" in v and "with D the two are within" in v


def test_the_difference_is_read_off_each_fits_bootstrap_refits(different):
    vla, conv = different.fits["vla"], different.fits["conv"]
    i = vla.bootstrap["names"].index("alpha")
    a, b = (np.asarray(f.bootstrap["samples"])[:, i] for f in (vla, conv))
    d = exponent_difference(vla, conv, "alpha")
    assert d["ci"] == pytest.approx(list(np.percentile(b - a, [2.5, 97.5])))
    flipped = exponent_difference(conv, vla, "alpha")  # the other way round: the mirror image
    assert flipped["ci"] == pytest.approx([-d["ci"][1], -d["ci"][0]]) and flipped["p_value"] == d["p_value"]


def test_an_exponent_at_its_domain_edge_gets_no_verdict(different):
    vla = different.fits["vla"]
    edged = FitResult(**{**vla.__dict__, "at_bound": {"alpha": "lower"}})
    out = compare({"vla": edged, "conv": different.fits["conv"]})
    alpha = next(d for d in out["differences"] if d["exponent"] == "alpha")
    assert not alpha["determined"] and not alpha["beyond_noise"] and alpha["better"] is None
    assert "no verdict" in out["verdict"] and any("edge of its domain" in w for w in out["warnings"])


def test_without_a_bootstrap_nothing_is_tested():
    res = fit_by_family(_two_families(STEEPER), bootstrap=0, holdout_frac=0, grid=GRID)
    assert all(d["ci"] is None and d["p_value"] is None for d in res.comparison["differences"])
    assert res.comparison["verdict"].startswith("No verdict") and "not tested" in res.comparison["verdict"]


def test_saved_files_keep_their_contracts(different, tmp_path):
    path = different.save(tmp_path / "families.json")
    doc = json.loads(path.read_text())
    assert schema.problems("families", doc) == []
    for name in ("vla", "conv"):
        assert doc["families"][name]["fit"] == fit_file(name)
        back = FitResult.load(tmp_path / fit_file(name))  # each family's fit is a fit.json of its own
        assert back.params == pytest.approx(different.fits[name].params)
    assert schema.problems("families", {**doc, "differences": "x"})  # the validator bites


def test_fit_by_family_names_the_family_that_cannot_be_fitted():
    df = _two_families()
    df = df[(df["family"] == "vla") | (df["n_params"] == df["n_params"].min())]  # conv: one size left
    with pytest.raises(BadInput, match=r"^DataFrame: family conv: 5 runs, too few"):
        fit_by_family(df, bootstrap=0, grid=GRID)
    with pytest.raises(BadInput, match="no column 'family'"):
        fit_by_family(df.drop(columns="family"), bootstrap=0)


def test_cli_fit_by_family_and_the_refusal_to_pool(tmp_path, capsys):
    from sweeps.cli import main

    table = tmp_path / "results.csv"
    _two_families(STEEPER).to_csv(table, index=False)
    assert main(["fit", str(table), "--out", str(tmp_path / "fit.json"), "--bootstrap", "40"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 model families" in err and "Traceback" not in err
    assert not (tmp_path / "fit.json").exists()
    assert main(["fit", str(table), "--by", "family", "--approach", "2", "--out", str(tmp_path / "a.json")]) == 2
    assert "--by family" in capsys.readouterr().err
    out = tmp_path / "families.json"
    assert main(["fit", str(table), "--by", "family", "--bootstrap", "40", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "which family scales better" in printed and "verdict: conv scales better" in printed
    assert {p.name for p in tmp_path.glob("*.json")} == {"families.json", "fit_vla.json", "fit_conv.json"}
    cfg = tmp_path / "run.yaml"  # a run config from one family's fit trains that family
    assert main(["optimal", str(tmp_path / "fit_conv.json"), "--flops", "1e20", "--emit-config", str(cfg)]) == 0
    import yaml

    assert yaml.safe_load(cfg.read_text())["model"]["family"] == "conv"


def test_report_shows_both_families_and_which_scales_better(equal, tmp_path):
    import analysis

    path = analysis.write_report(_two_families(), tmp_path / "rep", families=equal)
    page = path.read_text()
    assert "<h2>Which family scales better</h2>" in page and "within the noise" in page
    assert "Within the noise, neither conv nor vla scales better" in page
    for name in ("families_vs_n.png", "families_vs_d.png", "families_vs_compute.png", "loss_vs_n_conv.png",
                 "loss_vs_d_vla.png"):
        assert f'src="{name}"' in page and (path.parent / name).read_bytes()[:4] == b"\x89PNG"
    assert {"families.json", "fit_vla.json", "fit_conv.json"} <= {p.name for p in path.parent.glob("*.json")}
    assert not (path.parent / "fit.json").exists()  # no pooled law anywhere


def test_report_of_a_two_family_table_fits_them_itself(tmp_path):
    import analysis

    page = analysis.write_report(_two_families(STEEPER), tmp_path / "rep", bootstrap=40, grid=GRID).read_text()
    assert "conv scales better" in page and "beyond the noise" in page


def test_families_vs_draws_each_familys_runs_at_its_largest_d_and_its_law(equal):
    from matplotlib.figure import Figure

    from analysis import plots
    from analysis.table import load_table

    df = _two_families()
    tables = {n: load_table(df[df["family"] == n]) for n in ("vla", "conv")}
    ax = plots.families_vs(tables, equal.fits, "N", ax=Figure().add_subplot())
    labels = ax.get_legend_handles_labels()[1]
    assert labels[:2] == ["vla: runs at D = 1e+11", "vla: its law (alpha = 0.34)"]
    assert "conv: blind baseline (6)" in labels
    runs = [c for c in ax.collections]
    assert [len(c.get_offsets()) for c in runs] == [5, 5]  # the five sizes at the largest D, per family

