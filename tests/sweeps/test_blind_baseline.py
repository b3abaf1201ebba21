"""The blind baseline every sweep carries, and `sweep run --only KEY` for re-running single rows."""

from __future__ import annotations

import pytest

from scaling.model.family import Dims
from sweeps.plan import plan_runs
from sweeps.spec import parse_spec
from sweeps.sweep import select_runs
from vla_core.errors import BadInput

DIMS = Dims(image_size=32, vocab_size=40, max_instr_len=14, proprio_dim=4, action_dim=3)
GRID = {"name": "g", "data": "/data/x", "models": ["debug", 2e5], "samples": [256, 512], "seeds": [0, 1],
        "train": {"batch_size": 32, "lr": 1e-3}}


def _top_main(runs, seed=0):
    mains = [r for r in runs if r.phase == "main" and r.seed == seed]
    return max(mains, key=lambda r: (r.n_params, r.samples))


@pytest.mark.parametrize("wsd", [False, True])
def test_one_blind_run_at_largest_n_and_d(wsd):
    raw = {**GRID, "wsd": {"enabled": wsd, "cooldown_frac": 0.25}}
    runs = plan_runs(parse_spec(raw), DIMS)
    blind = [r for r in runs if r.phase == "blind"]
    assert len(blind) == 1
    b, top = blind[0], _top_main(runs)
    # Same model, same D, same training settings (schedule included) as the largest main run...
    assert (b.n_params, b.samples, b.seed, b.flops) == (top.n_params, top.samples, 0, top.flops)
    assert {k: v for k, v in b.config.items() if k not in ("blind", "checkpoint_at")} == \
        {k: v for k, v in top.config.items() if k != "checkpoint_at"}
    # ...with the inputs withheld, under its own key, branching from nothing.
    assert b.config["blind"] is True and "blind" not in top.config
    assert b.key not in {r.key for r in runs if r is not b}
    assert b.depends_on is None and b.branch is None and b.budget is None


def test_blind_baseline_can_be_switched_off_and_is_validated():
    runs = plan_runs(parse_spec({**GRID, "blind_baseline": False}), DIMS)
    assert not [r for r in runs if r.phase == "blind"]
    with pytest.raises(BadInput, match="blind_baseline must be true or false"):
        parse_spec({**GRID, "blind_baseline": "no"})


def test_blind_rows_are_never_fitted():
    pd = pytest.importorskip("pandas")
    from sweeps.results import fit_table

    df = pd.DataFrame({"state": ["completed"] * 3, "phase": ["main", "cooldown", "blind"],
                       "n_params": [1, 2, 3], "n_samples": [1, 2, 3], "val_loss": [3.0, 2.9, 3.1]})
    assert list(fit_table(df)["phase"]) == ["main", "cooldown"]


def test_only_selects_keys_and_their_stable_phases():
    runs = plan_runs(parse_spec({**GRID, "seeds": [0], "samples": [256, 512, 1024],
                                 "wsd": {"cooldown_frac": 0.25}}), DIMS)
    cool = next(r for r in runs if r.phase == "cooldown")
    picked = select_runs(runs, {cool.key})
    assert {r.key for r in picked} == {cool.key, cool.depends_on}
    blind = next(r for r in runs if r.phase == "blind")
    assert [r.key for r in select_runs(runs, {blind.key})] == [blind.key]
    with pytest.raises(BadInput, match="--only: nokey not planned"):
        select_runs(runs, {"nokey"})
