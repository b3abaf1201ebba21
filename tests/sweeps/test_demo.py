"""`make demo`'s own estimate: the plan's timed runs scheduled on the workers as the queue hands them out."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sweeps.demo import PROMISE_S, SMALL, SPEC, schedule_seconds
from sweeps.spec import load_spec


def _run(key, seconds, flops=None, depends_on=None):
    return SimpleNamespace(key=key, est_seconds=seconds, flops=seconds if flops is None else flops,
                           depends_on=depends_on)


def test_independent_runs_fill_both_workers_largest_first():
    runs = [_run(k, s) for k, s in (("a", 5), ("b", 4), ("c", 3), ("d", 3), ("e", 3))]
    # LPT: a | b, then c on b's worker at 4, d on a's at 5, e on c's at 7 -> 10
    assert schedule_seconds(runs, 2) == pytest.approx(10)
    assert schedule_seconds(runs, 1) == pytest.approx(18)


def test_a_cooldown_waits_for_its_stable_phase():
    runs = [_run("main", 10), _run("cool", 2, flops=20, depends_on="main"), _run("other", 1)]
    # "cool" has the most FLOPs but cannot start before "main" ends at 10; the idle worker waits
    assert schedule_seconds(runs, 2) == pytest.approx(12)


def test_a_dependency_already_finished_does_not_block():
    assert schedule_seconds([_run("cool", 2, depends_on="gone")], 2) == pytest.approx(2)


def test_the_small_spec_is_the_quickstart_made_smaller():
    full, small = load_spec(SPEC), load_spec(SMALL)
    assert small.train_dict == full.train_dict and small.wsd == full.wsd
    assert max(small.samples) < max(full.samples) and len(small.models) < len(full.models)
    assert small.data.identity() != full.data.identity() or small.name != full.name  # its own folder
    assert PROMISE_S == 15 * 60
