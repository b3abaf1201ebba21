"""One model path (issue 26): what `sweep plan` says a run builds, training builds and records.

Every place that turns a size, the train settings and the data's dimensions into a model (training, the
planner, calibration, validation rounds, the precision probe, the benchmarks) goes through
`scaling.model.family.run_model`. These tests hold the planner to what training does:

(a) every committed study (``results/<spec stem>/results.csv`` of ``sweeps/<spec stem>.yaml``; the spec's
    ``name`` may differ) planned again gives each committed row, by run key, its N, non-embedding N and
    FLOPs per sample;
(b) every shipped spec, a planned run's config written as the worker writes run.yaml and loaded as
    ``scaling train --config`` loads it, goes through `scaling.train.train` up to the training loop: the
    model it builds, counted and its FLOPs measured by torch, and the figures its result.json records,
    are the plan's;
(c) an old spec's whole-shape override (``d_model``, ``n_layers``, ``n_heads``, folded into
    ``model.size``) and ``mup_base_width`` plan to exactly the model training builds; a partial shape over
    a solved size is refused (one way to give a shape: ``WIDTHxBLOCKSxHEADS``);
and the data's own action bins, and calibration's timings, follow the same model.

The data's dimensions come from the spec's own data recipe, the way `sweep plan` reads them
(`sweeps.data_source.generate_once`, `data_dims`), with fewer episodes (`RECIPE_EPISODES`). Episode i of a
recipe is a function of its seed and i, so the small dataset is the first episodes of the study's; its
instruction vocabulary (59 tokens) and length (9) are those of the study's whole dataset: over the
400,000 episodes of cpu_isoflop's recipe (touch and reach_zone, 1-5 objects), the last new word or longer
instruction comes at episode 386. Were they not, the committed rows would show it: the vocabulary is in N
(the embedding), the instruction length in the FLOPs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from sweeps.plan import plan_runs, resolve_models
from sweeps.points import PlannedRun, model_of
from sweeps.spec import DataSpec, SweepSpec, load_spec, parse_spec
from vla_core.errors import BadInput

from specfiles import REPO

SPECS = REPO / "sweeps"
RESULTS = REPO / "results"
SHIPPED = sorted(p.stem for p in SPECS.glob("*.yaml"))
COMMITTED = sorted(s for s in SHIPPED if (RESULTS / s / "results.csv").is_file())
RECIPE_EPISODES = 600
"""Episodes generated of a spec's recipe (fewer where the spec asks for fewer)."""


@pytest.fixture
def one_thread():
    """Tiny models on a shared machine: one intra-op thread avoids oversubscription stalls."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def recipe_data(tmp_path_factory):
    """``data(spec) -> (local data path, Dims)``: the spec's data recipe with at most `RECIPE_EPISODES`
    episodes, generated once per recipe, and its dimensions as `sweep plan` reads them."""
    from sweeps.data_source import data_dims, generate_once

    made: dict = {}

    def data(spec: SweepSpec):
        g = spec.data.generate
        assert g is not None, f"{spec.source}: not a generated dataset"
        small = dataclasses.replace(g, episodes=min(g.episodes, RECIPE_EPISODES))
        key = json.dumps(DataSpec(generate=small).identity(), sort_keys=True)
        if key not in made:
            local = generate_once(DataSpec(generate=small), tmp_path_factory.mktemp("recipe"))
            made[key] = (str(local), data_dims(str(local)))
        return made[key]

    return data


def _points(spec: SweepSpec, dims) -> dict[tuple, object]:
    """{(family or None, str(size)): ModelPoint} of the spec's ladder (validation sizes included)."""
    out = {}
    for family in spec.family_names or (None,):
        one = spec.for_family(family) if family else spec
        sizes = list(one.models) + [p.size for rnd in one.validation for p in rnd.points]
        for m in resolve_models(dataclasses.replace(one, models=tuple(dict.fromkeys(sizes))), dims):
            out[(family, str(m.size))] = m
    return out


def test_every_committed_study_has_its_spec():
    """Guards the mapping (a) relies on: a results folder is named after the spec file that made it."""
    folders = sorted(p.parent.name for p in RESULTS.glob("*/results.csv"))
    assert folders and folders == COMMITTED


@pytest.mark.parametrize("stem", COMMITTED)
def test_committed_rows_are_what_the_plan_says(stem, recipe_data):
    """(a) Each committed row's N, non-embedding N and FLOPs per sample are those of the model the plan
    builds for its size (and family), and its run key is planned with that model: validation rows too,
    and the IsoFLOP study's, whose keys hash D = C // FLOPs per sample, so they match only where the
    FLOPs do (the committed-keys test, `test_committed_grid_rows_still_rerun_by_key`, covers grids only)."""
    spec = load_spec(SPECS / f"{stem}.yaml")
    _, dims = recipe_data(spec)
    runs: dict[str, PlannedRun] = {r.key: r for r in plan_runs(spec, dims)}
    points = _points(spec, dims)
    rows = pd.read_csv(RESULTS / stem / "results.csv", dtype={"size": str})
    assert len(rows)
    by_size = []
    for row in rows.itertuples():
        family = getattr(row, "family", None) if spec.families else None
        point = points[(family, row.size)]
        planned = runs.get(row.run_key)
        if planned is None:
            by_size.append(row.run_key)
        else:
            assert (planned.size, planned.family) == (point.size, family), row.run_key
            assert (planned.n_params, planned.flops_per_sample) == (point.n_params, point.flops_per_sample)
        got = (int(row.n_params), int(row.n_params_nonembed), int(row.flops_per_sample))
        assert got == (point.n_params, point.n_params_nonembed, point.flops_per_sample), \
            f"{stem} row {row.run_key} ({row.phase}, size {row.size}): committed (N, N non-embedding, FLOPs/sample) " \
            f"{got}, planned {(point.n_params, point.n_params_nonembed, point.flops_per_sample)}"
    assert not by_size, f"{stem}: rows whose key the plan no longer makes: {by_size[:5]}"


def _run_yaml(spec: SweepSpec, run: PlannedRun, local: str, sweep_dir: Path) -> Path:
    """run.yaml of `run` as the worker writes it (`sweeps.worker._run_config` of the queued point)."""
    from sweeps.generation import point as _point
    from sweeps.store import Claim
    from sweeps.worker import WorkerSettings, _run_config

    point = _point(run, SimpleNamespace(spec_fingerprint=spec.fingerprint(), code_version="test", number=0))
    # As the queue hands it to a worker: the point's attrs and key, through the ledger's JSON.
    attrs = json.loads(json.dumps({**point["attrs"], "run_key": point["run_key"]}))
    run_dir = sweep_dir / "runs" / run.key
    run_dir.mkdir(parents=True)
    settings = WorkerSettings(sweep_dir=sweep_dir, data=local, sweep=spec.name)
    path = run_dir / "run.yaml"
    path.write_text(yaml.safe_dump(_run_config(Claim(0, 0, run.key, attrs), settings, run_dir), sort_keys=True))
    return path


class _AtTheLoop(Exception):
    """Raised by the stand-in training loop: everything before it ran as in a real run."""


def _trained_model(run_yaml: Path, monkeypatch):
    """(the ResolvedModel `scaling.train.train` hands the training loop, result.json, the run's Dims), for
    ``scaling train --config run_yaml``; the loop itself is replaced by a stop (a failed run's result.json
    records the model's figures as a completed one does)."""
    import scaling.trainer
    from scaling.config import resolve
    from scaling.model.family import dims_of
    from scaling.train import train

    seen = {}

    def fit(cfg, source, model, *args, **kwargs):
        seen.update(model=model, dims=dims_of(source, cfg.model.chunk))
        raise _AtTheLoop

    monkeypatch.setattr(scaling.trainer, "fit", fit)
    cfg = resolve(run_yaml)
    assert cfg.model.precision != "auto", "the worker writes the precision its size resolved to"
    with pytest.raises(_AtTheLoop):
        train(cfg)
    return seen["model"], json.loads((cfg.run_dir / "result.json").read_text()), seen["dims"]


def _check_training_builds_the_plan(spec: SweepSpec, run: PlannedRun, local: str, dims, tmp_path, monkeypatch):
    """The run's model as training builds it is the plan's: config, N, non-embedding N, measured FLOPs."""
    from scaling.model.measure import count_params, measure_training_flops

    planned = model_of(spec.for_family(run.family) if run.family else spec, run.size, dims)
    assert (planned.n_params, planned.flops_per_sample) == (run.n_params, run.flops_per_sample)
    model, result, run_dims = _trained_model(_run_yaml(spec, run, local, tmp_path / run.key), monkeypatch)
    assert model.config == planned.config, f"{spec.source} {run.key}: training builds another model"
    want = (run.n_params, planned.n_params_nonembed, run.flops_per_sample)
    assert (result["n_params"], result["n_params_nonembed"], result["flops_per_sample"]) == want
    module = model.build()
    assert count_params(module, model.family) == want[:2]
    assert measure_training_flops(module, run_dims, model.family) == run.flops_per_sample
    return model


def _settled(spec: SweepSpec, runs: list[PlannedRun], local: str) -> list[PlannedRun]:
    """The runs with the precision the spec records per size (`precision: auto`), as `sweep run` queues them."""
    from sweeps.auto_precision import settle

    return settle(spec, runs, local, write=False)[1]


@pytest.mark.parametrize("stem", SHIPPED)
def test_training_builds_what_every_shipped_spec_plans(stem, recipe_data, tmp_path, monkeypatch, one_thread):
    """(b) One run of every shipped spec (one per family of a ``families:`` spec), trained up to its
    loop from the run.yaml the worker writes: the model and the figures result.json records are planned."""
    spec = load_spec(SPECS / f"{stem}.yaml")
    local, dims = recipe_data(spec)
    runs = [r for r in plan_runs(spec, dims) if r.phase == "main" and r.branch is None]
    firsts = {}
    for r in runs:  # the smallest model of each family: the cheapest to build
        if r.family not in firsts or r.n_params < firsts[r.family].n_params:
            firsts[r.family] = r
    assert len(firsts) == max(1, len(spec.family_names))
    for run in _settled(spec, list(firsts.values()), local):
        _check_training_builds_the_plan(spec, run, local, dims, tmp_path, monkeypatch)


OVERRIDES = {
    "shape": {"d_model": 40, "n_layers": 3, "n_heads": 5},
    "mup": {"mup_base_width": 16},
}


@pytest.mark.parametrize("train", [{"n_layers": 3}, {"d_model": 32}])
def test_a_partial_shape_over_solved_sizes_is_refused(train, recipe_data, tmp_path):
    """The old partial shape overrides cannot be folded into one shape string over a size the solver
    shapes from the data: planning says so, naming the spec (before: the solver's shape, overridden)."""
    raw = yaml.safe_load((SPECS / "quickstart_small.yaml").read_text())
    raw["train"].update(train)
    raw["blind_baseline"] = False
    spec = parse_spec(raw, str(tmp_path / "spec.yaml"))
    _, dims = recipe_data(spec)
    with pytest.raises(BadInput, match="WIDTHxBLOCKSxHEADS"):
        plan_runs(spec, dims)


@pytest.mark.parametrize("name", OVERRIDES)
def test_model_overrides_plan_what_training_builds(name, recipe_data, tmp_path, monkeypatch, one_thread):
    """(c) A spec with shape overrides or muP plans, at every size, exactly the model training builds,
    and that model carries the override (it is honoured on both sides, not ignored on both)."""
    raw = yaml.safe_load((SPECS / "quickstart_small.yaml").read_text())
    raw["train"].update(OVERRIDES[name])
    raw["blind_baseline"] = False
    spec = parse_spec(raw, str(tmp_path / "spec.yaml"))
    plain = load_spec(SPECS / "quickstart_small.yaml")
    local, dims = recipe_data(spec)
    runs = [r for r in plan_runs(spec, dims) if r.phase == "main" and r.branch is None]
    assert {str(r.size) for r in runs} == {str(s) for s in spec.models}
    before = {str(m.size): m for m in resolve_models(plain, dims)}
    for run in runs:
        model = _check_training_builds_the_plan(spec, run, local, dims, tmp_path, monkeypatch)
        for key, value in OVERRIDES[name].items():
            assert getattr(model.config, key) == value
        if name != "mup":  # muP changes the initialisation and the learning rates, not the counts
            assert (run.n_params, run.flops_per_sample) != (before[str(run.size)].n_params,
                                                            before[str(run.size)].flops_per_sample)


def test_the_data_s_own_action_bins_plan_what_training_builds(recipe_data, tmp_path, monkeypatch, one_thread):
    """The data's dimensions are read once, as a run reads them (`dims_of`): a dataset whose action
    tokenizer has other than 256 bins plans the discrete head training builds (the planner once assumed
    256 bins whatever the data's)."""
    import shutil

    local, _ = recipe_data(load_spec(SPECS / "smoke.yaml"))
    data = Path(shutil.copytree(local, tmp_path / "bins64"))
    tok = json.loads((data / "tokenizer.json").read_text())
    tok["action"]["bins"] = 64
    (data / "tokenizer.json").write_text(json.dumps(tok))
    from sweeps.data_source import data_dims

    dims = data_dims(str(data))
    assert dims.action_bins == 64
    raw = {"name": "bins", "data": str(data), "models": ["15k", "30k"], "samples": [64], "blind_baseline": False,
           "train": {"batch_size": 8, "precision": "32-true", "accelerator": "cpu"}}
    spec = parse_spec(raw, str(tmp_path / "spec.yaml"))
    for run in plan_runs(spec, dims):
        model = _check_training_builds_the_plan(spec, run, str(data), dims, tmp_path, monkeypatch)
        assert model.config.action_bins == 64
        assert run.n_params != model_of(spec, run.size, dataclasses.replace(dims, action_bins=256)).n_params


def test_calibration_times_the_model_a_run_builds(recipe_data, tmp_path, monkeypatch):
    """Calibration times the model `sweep plan` planned (the training path's), and measures again when a
    model option changes the model (its cache once knew only chunk, head, keypoints, film and patch_size:
    a spec given ``n_layers`` kept the old shape's timings)."""
    from sweeps import calibration

    local, dims = recipe_data(load_spec(SPECS / "smoke.yaml"))
    timed = []

    def time_steps(model, source, batch, val_samples, **kw):
        timed.append(model.config)
        return 0.01, 0.01

    monkeypatch.setattr(calibration, "_time_steps", time_steps)
    monkeypatch.setattr(calibration, "_startup_seconds", lambda: 1.0)
    raw = {"name": "cal", "data": local, "models": ["30k"], "samples": [64], "blind_baseline": False,
           "train": {"batch_size": 4, "threads": 1, "precision": "32-true", "val_samples": 8, "keypoints": 4}}
    for train in ({}, {"d_model": 40, "n_layers": 5, "n_heads": 5}, {"d_model": 48, "n_layers": 2, "n_heads": 6},
                  {"mup_base_width": 16}):
        spec = parse_spec({**raw, "train": {**raw["train"], **train}})
        runs = plan_runs(spec, dims)
        before = len(timed)
        out = calibration.calibrate(spec, local, dims, runs, tmp_path)
        assert len(timed) == before + 1, f"{train}: the timings of another model were reused"
        assert timed[-1] == model_of(spec, "30k", dims).config
        assert list(out["seconds_per_flop"]) == [str(runs[0].flops_per_sample)]
        assert calibration.calibrate(spec, local, dims, runs, tmp_path) == out and len(timed) == before + 1
