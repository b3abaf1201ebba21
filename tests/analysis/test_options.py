"""`FitOptions`: one object of fit options, the CLI's flags built from its fields."""

import argparse
import dataclasses

import pytest

import analysis
from analysis.forms import FORMS
from analysis.options import FitOptions, add_flags, cli_fields, from_args, resolve
from sweeps.cli import main

from synthetic_tables import synthetic_frame

GRID = FORMS["chinchilla"].grid[::45]


@pytest.mark.parametrize("command", ["fit", "report", "suggest"])
def test_every_flag_is_a_field_and_parses_back_to_its_options(command):
    p = argparse.ArgumentParser()
    add_flags(p, command)
    defaults = from_args(p.parse_args([]), command)
    assert defaults == FitOptions()
    flags = {a.option_strings[0]: a.dest for a in p._actions if a.option_strings and a.dest != "help"}
    assert set(flags.values()) == {f.name for f in cli_fields(command)}
    assert set(flags.values()) <= {f.name for f in dataclasses.fields(FitOptions)}
    argv = ["--seed", "7", "--bootstrap", "12", "--huber-delta", "0.01", "--form", "kaplan", "--all-states"]
    o = from_args(p.parse_args(argv), command)
    assert (o.seed, o.bootstrap, o.delta, o.form, o.all_states) == (7, 12, 0.01, "kaplan", True)


def test_fit_takes_options_or_their_fields_by_name():
    df = synthetic_frame(noise=0.005, n_sizes=4, n_budgets=4)
    by_name = analysis.fit(df, bootstrap=0, holdout_frac=0, grid=GRID, success_col=None, compare=False)
    by_object = analysis.fit(df, options=FitOptions(bootstrap=0, holdout_frac=0, grid=GRID, success_col=None,
                                                    compare=False))
    assert by_name.to_dict() == by_object.to_dict()
    with pytest.raises(TypeError):
        analysis.fit(df, bootstrp=0)


def test_resolve_keeps_the_options_form_unless_one_is_given():
    o = FitOptions(form="kaplan", seed=3)
    assert resolve(o, form=None).form == "kaplan"
    assert resolve(o, form="power_n", seed=4) == FitOptions(form="power_n", seed=4)


def test_report_reads_the_same_options_as_fit(tmp_path, monkeypatch):
    """`scaling report` passes every option it parses to the report (no separate keyword list)."""
    import analysis.report as report

    seen = {}

    def fake(src, out, *, options=None, **kw):
        seen["options"] = options
        return tmp_path / "report.html"

    monkeypatch.setattr(report, "write_report", fake)
    p = tmp_path / "results.csv"
    synthetic_frame(noise=0.005, n_sizes=4, n_budgets=4).to_csv(p, index=False)
    assert main(["report", str(p), "--out", str(tmp_path / "rep"), "--loss-floor", "1.5", "--u-col", "u",
                 "--seed", "5"]) == 0
    assert seen["options"] == FitOptions(loss_floor=1.5, u_col="u", seed=5)
