"""The seams against their one written contract (vla_core/schema.py): docs, our validator, real files.

- docs/contracts.md is generated from the schema and must be up to date;
- our validator agrees with jsonschema's (someone else's implementation of the same JSON Schema) on
  valid documents and on every single-field breakage of them;
- the classes that write the files have exactly the contract's fields;
- one real sweep (sweeps/smoke.yaml, real training) is taken through result.json -> results table ->
  `scaling fit` -> `scaling optimal` -> a run config, every file validated and every hand-over compared.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweeps.cli import main
from vla_core import schema

REPO = Path(__file__).resolve().parents[1]
CONTRACTS_MD = REPO / "docs" / "contracts.md"


def test_docs_contracts_md_is_generated_from_the_schema():
    text = CONTRACTS_MD.read_text()
    assert schema.rewrite(text) == text, (
        "docs/contracts.md is stale: python -m vla_core.schema --write docs/contracts.md")
    for name in schema.CONTRACTS:  # every field of every contract is on the page
        assert all(f"| `{f}` |" in text for f in schema.field_names(name)), name


def test_writers_have_exactly_the_contract_fields():
    from analysis.result import FitResult
    from scaling.result import RunResult
    from sweeps.results import RESULT_FIELDS, SWEEP_FIELDS

    assert [f.name for f in dataclasses.fields(RunResult)] == schema.field_names("run_result")
    fit_fields = {f.name for f in dataclasses.fields(FitResult)}
    required = {f.name for f in schema.FIT_RESULT if f.required}
    assert required <= fit_fields, required - fit_fields
    # Every field FitResult writes is in the contract (add it to vla_core/schema.py, then --write the docs).
    assert fit_fields <= set(schema.field_names("fit")), fit_fields - set(schema.field_names("fit"))
    assert list(RESULT_FIELDS) + list(SWEEP_FIELDS) == schema.field_names("results_table")


@pytest.fixture(scope="module")
def examples() -> dict[str, dict]:
    """A valid document of each JSON contract, made by the real code."""
    import analysis
    from analysis.forms import FORMS
    from scaling.result import RunResult
    from tests.analysis.synthetic_tables import synthetic_frame

    values = {f.name: 1 for f in schema.RUN_RESULT if f.required}
    values.update(run_id="r", status="completed", model={"d_model": 8}, versions={"torch": "2"}, precision="32-true",
                  val_loss=3.1, success_rate=None, mfu=None, success_note="no simulator", blind=False,
                  input_reliance={"image": 0.2, "instruction": None, "proprio": 0.0})
    fit = analysis.fit(synthetic_frame(noise=0.005, n_sizes=4, n_budgets=4), bootstrap=8,
                       grid=FORMS["chinchilla"].grid[::9])  # every 9th start: same basin, a fraction of the time
    return {"run_result": RunResult(**values).to_dict(), "fit": fit.to_dict(),
            "optimal": analysis.optimal(fit, 1e19)}


def _breakages(name: str, doc: dict):
    """(what, broken document): each field dropped, nulled, retyped, out of its choices or its range."""
    for f in schema.fields(name):
        if f.name not in doc:
            continue
        cases = {"null": None, "retyped": [1] if f.type == "object" else {}}
        if f.enum:
            cases["not in enum"] = "bogus"
        if f.minimum is not None:
            cases["below minimum"] = f.minimum - 1
        if f.maximum is not None:
            cases["above maximum"] = f.maximum + 1
        yield f"{f.name} dropped", {k: v for k, v in doc.items() if k != f.name}
        for what, value in cases.items():
            yield f"{f.name} {what}", {**copy.deepcopy(doc), f.name: value}


@pytest.mark.parametrize("name", ["run_result", "fit", "optimal"])
def test_our_validator_agrees_with_jsonschema(name, examples):
    jsonschema = pytest.importorskip("jsonschema")
    check = jsonschema.Draft202012Validator(schema.json_schema(name))
    doc = examples[name]
    assert check.is_valid(doc) and schema.problems(name, doc) == []
    cases = list(_breakages(name, doc))
    assert len(cases) > 2 * len(doc) - 5  # dropped and retyped at least, for nearly every field
    for what, broken in cases:
        ours, theirs = schema.problems(name, broken), check.is_valid(broken)
        assert (ours == []) == theirs, (what, ours, theirs)


def test_table_contract_catches_what_a_fit_would_trip_on():
    row = {f.name: None for f in schema.RESULTS_TABLE}
    row.update(run_id="a", status="completed", n_params=1e5, flops_per_sample=6e5, flops=6e8, n_samples=1000,
               val_loss=3.0, sweep="s", run_key="k", seed=0, state="completed", phase="main", family="vla")
    ok = pd.DataFrame([row, {**row, "run_key": "w", "state": "waiting", "val_loss": None, "run_id": None}])
    schema.validate_table(ok)
    schema.validate_table(pd.read_csv(io.StringIO(ok.to_csv(index=False))))  # as read back: NaN cells, float ints
    for change, message in ((dict(val_loss=None), "val_loss is empty on a completed row"),
                            (dict(state="complete"), "state is 'complete'"),
                            (dict(phase="warmup"), "phase is 'warmup'"),
                            (dict(success_rate=1.5), "success_rate is 1.5, above 1"),
                            (dict(n_params="many"), "n_params must be integer")):
        with pytest.raises(schema.ContractError, match=message):
            schema.validate_table(pd.DataFrame([{**row, **change}]))
    with pytest.raises(schema.ContractError, match="missing column state"):
        schema.validate_table(ok.drop(columns="state"))


@pytest.mark.slow
@pytest.mark.timeout(900)  # runs the shared smoke sweep when the smoke test has not
def test_a_real_sweep_through_every_seam(smoke_sweep, tmp_path, capsys):
    """result.json -> results table -> fit.json -> optimal -> run config, each checked and each hand-over compared."""
    from scaling.config import resolve
    from scaling.result import RunResult

    d = smoke_sweep
    table = pd.read_csv(d / "results.csv")
    schema.validate_table(table)
    assert main(["sweep", "export", str(REPO / "sweeps" / "smoke.yaml"), "--dir", str(d),
                 "--out", str(tmp_path / "t.parquet")]) == 0
    parquet = pd.read_parquet(tmp_path / "t.parquet")
    schema.validate_table(parquet)
    cells = lambda df: df.drop(columns="versions").astype(object).where(df.notna(), None)  # noqa: E731  null = null
    pd.testing.assert_frame_equal(cells(parquet), cells(table), check_dtype=False)  # CSV and Parquet: one table

    # 1. Each run's result.json conforms, and its table row carries exactly what the run reported.
    for _, row in table.iterrows():
        path = d / "runs" / row["run_key"] / "result.json"
        doc = json.loads(path.read_text())
        schema.validate("run_result", doc)
        assert RunResult.load(path).to_dict() == doc
        for col in schema.RESULT_COLUMNS:
            if col.name in schema.MODEL_COLUMNS:
                want = doc["model"].get(col.name)
            elif col.name.startswith("reliance_"):
                want = (doc.get("input_reliance") or {}).get(col.name.removeprefix("reliance_"))
            else:
                want = doc.get(col.name)
            got = row[col.name]
            if col.name == "versions":
                assert json.loads(got) == want
            elif want is None:
                assert pd.isna(got), col.name
            else:
                assert got == pytest.approx(want, rel=1e-12) if isinstance(want, float) else got == want, col.name

    # 2. `scaling fit` of the exported table conforms and agrees with the fit the sweep wrote.
    fit_path = tmp_path / "fit.json"
    assert main(["fit", str(d / "results.csv"), "--bootstrap", "50", "--out", str(fit_path)]) == 0
    fit = json.loads(fit_path.read_text())
    schema.validate("fit", fit)
    swept = json.loads((d / "fit.json").read_text())
    main_rows = table[table["phase"] == "main"]
    assert (table["phase"] == "blind").sum() == 1  # the input-free baseline is in the table, never in a fit
    assert fit["n_points"] == swept["n_points"] == len(main_rows)
    for name, value in swept["params"].items():  # same table, same optimum (bootstrap moves only intervals)
        assert fit["params"][name] == pytest.approx(value, rel=1e-6), name

    # 3. `scaling optimal` conforms and is Chinchilla's closed form (Hoffmann et al. 2022, eq. 4) of the fit.
    capsys.readouterr()
    flops = 100 * table["flops"].max()
    cfg_path = tmp_path / "run.yaml"
    assert main(["optimal", str(fit_path), "--flops", str(flops), "--json", "--emit-config", str(cfg_path)]) == 0
    opt = json.loads(capsys.readouterr().out)
    schema.validate("optimal", opt)
    p, k = fit["params"], fit["k"]
    assert k == pytest.approx((main_rows["flops"] / (main_rows["n_params"] * main_rows["n_samples"])).median())
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    assert opt["n_opt"] == pytest.approx(G * (flops / k) ** (p["beta"] / (p["alpha"] + p["beta"])), rel=1e-9)
    assert opt["n_opt"] * opt["d_opt"] * k == pytest.approx(flops, rel=1e-9)

    # 4. The emitted config is a run config `scaling train` reads: the N and D just chosen.
    cfg = resolve(cfg_path, {"data.source": str(d), "out": str(tmp_path / "next")})
    assert cfg.model.size_value == pytest.approx(opt["n_opt"], rel=1e-6) and cfg.data.samples == round(opt["d_opt"])
    assert yaml.safe_load(cfg_path.read_text())["data"]["samples"] == cfg.data.samples


def test_scaling_fit_of_a_sweep_table_uses_the_design_points_only():
    """`scaling fit results.csv` must fit what the sweep's own fit.json fitted: WSD stable phases, lr-search
    trials and the blind baseline are completed runs, but not points of the design."""
    from analysis.table import load_table
    from sweeps.results import fit_table

    phases = ["main", "main", "cooldown", "stable", "lr_search", "blind"]
    df = pd.DataFrame({"state": "completed", "phase": phases, "n_params": [1e5, 2e5, 1e5, 1e5, 1e5, 2e5],
                       "n_samples": [1e3, 1e3, 2e3, 2e3, 1e3, 1e3], "val_loss": [3.0, 2.9, 2.8, 9.0, 9.0, 9.0]})
    table = load_table(df)
    assert table.loss.tolist() == [3.0, 2.9, 2.8] == fit_table(df)["val_loss"].tolist()
    assert any("'stable': 1" in n and "'lr_search': 1" in n for n in table.notes), table.notes
    assert table.blind_loss == 9.0  # the blind baseline is kept aside as the loss to beat
