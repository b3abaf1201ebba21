"""The sweep's progress line counts the logged share of running runs, so long first runs show an ETA."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from sweeps.progress import progress_line, run_fraction

HEADER = "step,samples,train_loss,lr,grad_norm,val_loss,action_mse,samples_per_second,wall_seconds\n"


def _run(d: Path, rows: list[tuple[int, int]]) -> Path:
    """A run folder whose metrics.csv has training rows (step, samples), each followed by a
    validation row without a sample count, as the trainer writes them."""
    d.mkdir(parents=True)
    (d / "metrics.csv").write_text(HEADER + "".join(f"{s},{n},2.5,0.001,1.0,,,100.0,1.0\n{s},,,,,2.4,,,\n"
                                                    for s, n in rows))
    return d / "metrics.csv"


def test_fraction_of_a_run_from_its_start(tmp_path):
    m = _run(tmp_path / "a", [(1, 32), (10, 320), (15, 480)])
    assert run_fraction(m, 0, 1000) == pytest.approx(0.48)


def test_fraction_of_a_branched_cooldown_counts_from_its_branch_step(tmp_path):
    # A cooldown branched at 3,200 samples (step 100 of batch 32) logs from step 101 on.
    m = _run(tmp_path / "b", [(101, 3232), (110, 3520), (120, 3840)])
    assert run_fraction(m, 3200, 800) == pytest.approx((3840 - 3200) / (4000 - 3200))


def test_fraction_is_zero_when_nothing_is_readable(tmp_path):
    assert run_fraction(tmp_path / "missing" / "metrics.csv", 0, 100) == 0.0
    (tmp_path / "header-only.csv").write_text(HEADER)
    assert run_fraction(tmp_path / "header-only.csv", 0, 100) == 0.0


def test_progress_line_has_an_eta_before_any_run_finished(tmp_path):
    runs = tmp_path / "runs"
    _run(runs / "k1", [(1, 32), (16, 512)])   # half done
    attrs = {"flops": 1e12, "flops_per_sample": 1e12 / 1024, "samples": 1024}
    states = {"k1": ("running", SimpleNamespace(user_attrs=attrs)),
              "k2": ("waiting", SimpleNamespace(user_attrs=attrs))}
    q = SimpleNamespace(name="demo@1", point_states=lambda: states)
    started = time.time() - 60
    without = progress_line(q, started)
    assert "(0%)" in without and "ETA ?" in without
    line = progress_line(q, started, runs_dir=runs)
    # the running run counts in the runs as in the FLOPs: half of one of two
    assert "runs 0.5/2" in line and "(25%)" in line and "ETA ?" not in line
    assert "runs 0/2" in without


def test_fraction_reads_the_newest_row_of_a_long_log(tmp_path):
    m = _run(tmp_path / "long", [(s, 32 * s) for s in range(1, 301)])  # ~20 kB: only its tail is read
    assert m.stat().st_size > 4096
    assert run_fraction(m, 0, 32 * 600) == pytest.approx(0.5)


def test_a_resumed_sweeps_eta_does_not_count_earlier_progress_as_speed(tmp_path):
    """A point handed back half trained (waiting) when the sweep restarts, then running again from its
    checkpoint: its logged half is done work, not this session's speed."""
    from sweeps.progress import Progress

    runs = tmp_path / "runs"
    _run(runs / "k1", [(1, 32), (16, 512)])  # half done before this session
    attrs = {"flops": 1e12, "flops_per_sample": 1e12 / 1024, "samples": 1024}
    states = {"k1": ("waiting", SimpleNamespace(user_attrs=attrs)),
              "k2": ("waiting", SimpleNamespace(user_attrs=attrs))}
    q = SimpleNamespace(name="demo@1", point_states=lambda: states)
    progress = Progress(q, stream=open(tmp_path / "log", "w"), runs_dir=runs)
    assert progress.flops0 == pytest.approx(0.5e12)
    states["k1"] = ("running", SimpleNamespace(user_attrs=attrs))  # claimed again, nothing new logged yet
    line = progress_line(q, progress.started - 60, progress.flops0, runs)
    assert "(25%)" in line and "ETA ?" in line
