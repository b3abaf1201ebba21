"""Planning: stable keys, IsoFLOP arithmetic against the exact accounting, WSD savings, estimates."""

from __future__ import annotations

import pytest

from scaling.model.family import Dims
from sweeps.plan import plan_runs, run_key, totals, with_estimates
from sweeps.spec import parse_spec
from sweeps.wsd import savings
from vla_core.errors import BadInput

DIMS = Dims(image_size=32, vocab_size=40, max_instr_len=14, proprio_dim=4, action_dim=3)
GRID = {"name": "g", "data": "/data/x", "models": ["debug", 2e5], "samples": [256, 512], "seeds": [0, 1],
        "train": {"batch_size": 32, "lr": 1e-3}, "blind_baseline": False}


def test_keys_stable_and_distinct():
    a = plan_runs(parse_spec(GRID), DIMS)
    b = plan_runs(parse_spec(dict(GRID)), DIMS)
    assert [r.key for r in a] == [r.key for r in b]
    assert len({r.key for r in a}) == len(a) == 8
    # Any setting that changes what a run computes changes its key.
    c = plan_runs(parse_spec({**GRID, "train": {"batch_size": 32, "lr": 2e-3}}), DIMS)
    assert not {r.key for r in a} & {r.key for r in c}
    # Keys do not depend on where the sweep lives (no output folder in the key).
    assert all("out" not in r.config for r in a)
    assert run_key({"a": 1, "b": 2}, "d") == run_key({"b": 2, "a": 1}, "d")


def test_grid_counts_match_accounting():
    from scaling.model import ModelConfig, flops_per_sample

    runs = plan_runs(parse_spec(GRID), DIMS)
    cfg = ModelConfig.from_size("debug", **DIMS.__dict__)
    r = next(r for r in runs if r.size == "debug" and r.samples == 512)
    assert r.flops == flops_per_sample(cfg) * 512
    assert totals(runs)["flops"] == pytest.approx(sum(x.flops for x in runs))


def test_a_ladder_of_shapes_plans_their_exact_counts():
    """Models written as "WIDTHxBLOCKS" plan with that shape's own parameters and FLOPs, keyed apart."""
    from scaling.model import ModelConfig, count_params, flops_per_sample

    spec = parse_spec({**GRID, "models": ["16x1", "48x2"], "seeds": [0]})
    runs = plan_runs(spec, DIMS)
    for size, shape in (("16x1", (16, 1)), ("48x2", (48, 2))):
        cfg = ModelConfig.from_size(size, **DIMS.__dict__)
        assert (cfg.d_model, cfg.n_layers) == shape
        run = next(r for r in runs if r.size == size and r.samples == 512)
        assert run.n_params == count_params(cfg)[0] and run.flops == flops_per_sample(cfg) * 512
    assert len({r.key for r in runs}) == len(runs) == 4


def test_isoflop_d_is_budget_over_flops_per_sample():
    spec = parse_spec({"name": "i", "data": "/d", "models": ["30k", "debug", "100k"],
                       "design": {"kind": "isoflop", "budgets": [1e12, 4e12], "min_samples": 32}})
    runs = [r for r in plan_runs(spec, DIMS) if r.phase != "blind"]  # the baseline belongs to no budget
    assert {r.budget for r in runs} == {1e12, 4e12}
    for r in runs:
        assert r.samples == int(r.budget // r.flops_per_sample)
        assert r.flops <= r.budget < r.flops + r.flops_per_sample


def test_isoflop_budget_below_cost_is_bad_input():
    spec = parse_spec({"name": "i", "data": "/d", "models": ["debug"],
                       "design": {"kind": "isoflop", "budgets": [1e6], "min_samples": 32}})
    with pytest.raises(BadInput, match="below the smallest model's cost"):
        plan_runs(spec, DIMS)


def test_wsd_branching_saves_compute():
    spec = parse_spec({**GRID, "seeds": [0], "samples": [256, 512, 1024], "wsd": {"cooldown_frac": 0.25}})
    runs = plan_runs(spec, DIMS)
    assert len(runs) == 6
    full = [r for r in runs if r.phase == "main"]
    cool = [r for r in runs if r.phase == "cooldown"]
    assert {r.samples for r in full} == {1024} and len(cool) == 4
    for r in cool:
        parent = next(f for f in full if f.key == r.depends_on)
        start = int(r.branch["checkpoint"].split("-")[1].split(".")[0])
        assert start in parent.config["checkpoint_at"] and r.config["schedule"] == "wsd"
        assert r.flops == pytest.approx(r.flops_per_sample * (r.samples - start))
        assert r.config["warmup"] == parent.config["warmup"] >= 1  # absolute steps: same stable phase
    s = savings(runs)
    # Per model: independent 256+512+1024 = 1792 samples; branched 1024 + 0.25*(256+512) = 1216.
    assert s["saved_frac"] == pytest.approx(1 - 1216 / 1792, abs=0.01)


def test_estimates_interpolate_between_calibrated_sizes():
    runs = plan_runs(parse_spec(GRID), DIMS)
    lo, hi = min(r.flops_per_sample for r in runs), max(r.flops_per_sample for r in runs)
    est = with_estimates(runs, {lo: 1e-9, hi: 1e-10}, overhead_s=2.0)
    for r in est:
        spf = 1e-9 if r.flops_per_sample == lo else 1e-10
        assert r.est_seconds == pytest.approx(2.0 + r.flops * spf)
    assert totals(est)["est_seconds"] == pytest.approx(sum(r.est_seconds for r in est))


def test_two_points_with_one_key_are_refused():
    """Guard behind the spec's duplicate check: a point planned twice would wait forever in the queue."""
    from sweeps.plan import _unique_keys
    from sweeps.points import PlannedRun
    from sweeps.spec import parse_spec

    spec = parse_spec({"name": "t", "data": "d", "models": ["debug"], "samples": [64]})
    run = PlannedRun(key="abc", phase="main", size="debug", n_params=10, samples=64, seed=0, flops=1.0,
                     flops_per_sample=1, config={})
    assert _unique_keys(spec, [run]) == [run]
    with pytest.raises(BadInput, match="plan the same run"):
        _unique_keys(spec, [run, run])


def test_calibration_times_steps_as_the_spec_runs_them(tiny_dataset, tmp_path, monkeypatch):
    """The plan's estimate is timed with the spec's torch threads and precision (`auto`: both, the
    faster kept), and a fast model is timed for MIN_SECONDS, not three steps (a busy machine or the
    wrong thread count once made a 1.5e4-parameter model's estimate 20x slow)."""
    import torch

    from sweeps import calibration
    from sweeps.data_source import data_dims
    from sweeps.plan import plan_runs

    dims = data_dims(str(tiny_dataset))
    raw = {"name": "c", "data": str(tiny_dataset), "models": ["debug"], "samples": [64], "blind_baseline": False,
           "train": {"batch_size": 4, "threads": 1, "precision": "auto", "val_samples": 8}}
    spec = parse_spec(raw)
    runs = plan_runs(spec, dims)
    seen, real = [], calibration._time_steps

    def spy(cfg, source, batch, val_samples, *, bf16=False, **kw):
        seen.append((torch.get_num_threads(), bf16))
        return real(cfg, source, batch, val_samples, bf16=bf16, min_seconds=0.05, **kw)

    monkeypatch.setattr(calibration, "_time_steps", spy)
    monkeypatch.setattr(calibration, "_startup_seconds", lambda: 1.0)
    before = torch.get_num_threads()
    out = calibration.calibrate(spec, tiny_dataset, dims, runs, tmp_path)
    assert seen == [(1, False), (1, True)]  # one model (smallest = largest), both precisions, 1 thread
    assert torch.get_num_threads() == before and out["threads"] == 1
    assert calibration.calibrate(spec, tiny_dataset, dims, runs, tmp_path) == out  # cached
    assert len(seen) == 2
    # A fixed precision times only that one.
    seen.clear()
    fixed = parse_spec({**raw, "train": {**raw["train"], "precision": "32-true"}})
    calibration.calibrate(fixed, tiny_dataset, dims, plan_runs(fixed, dims), tmp_path)
    assert seen == [(1, False)]  # and measured again: the precision is in the cache key


def test_timed_steps_run_until_min_seconds(tiny_dataset):
    from scaling.data import open_source
    from scaling.model.family import dims_of, resolve_model
    from sweeps import calibration

    src = open_source(tiny_dataset)
    cfg = resolve_model("vla", "debug", dims_of(src))
    calls = []
    real = src.get_batch

    class Counting:
        def __getattr__(self, name):
            return getattr(src, name)

        def get_batch(self, idx, chunk=1):
            calls.append(len(idx))
            return real(idx, chunk=chunk)

    calibration._time_steps(cfg, Counting(), 2, 4, steps=3, max_steps=5, min_seconds=60.0)
    assert len(calls) == 1 + 5 + 2  # warm-up + max_steps (60 s never reached) + val batches of 2
    calls.clear()
    calibration._time_steps(cfg, Counting(), 2, 4, steps=3, max_steps=5, min_seconds=0.0)
    assert len(calls) == 1 + 3 + 2
