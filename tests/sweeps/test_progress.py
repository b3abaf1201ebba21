"""The sweep's progress line counts the logged share of running runs, so long first runs show an ETA."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from sweeps.progress import progress_line, run_fraction

HEADER = "step,samples,train_loss,lr,grad_norm,val_loss,action_mse,samples_per_second,wall_seconds\n"


def _run(d: Path, samples: int, rows: list[tuple[int, int]]) -> Path:
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"data: x\nsamples: {samples}\nbranch_from: null\n")
    (d / "metrics.csv").write_text(HEADER + "".join(f"{s},{n},2.5,0.001,1.0,,,100.0,1.0\n" for s, n in rows))
    return d


def test_fraction_of_a_run_from_its_start(tmp_path):
    d = _run(tmp_path / "a", 1000, [(1, 32), (10, 320), (15, 480)])
    assert run_fraction(d) == pytest.approx(0.48)


def test_fraction_of_a_branched_cooldown_counts_from_its_branch_step(tmp_path):
    # A cooldown branched at 3,200 samples (step 100 of batch 32) logs from step 101 on.
    d = _run(tmp_path / "b", 4000, [(101, 3232), (110, 3520), (120, 3840)])
    assert run_fraction(d) == pytest.approx((3840 - 3200) / (4000 - 3200))


def test_fraction_is_zero_when_nothing_is_readable(tmp_path):
    assert run_fraction(tmp_path / "missing") == 0.0
    d = tmp_path / "header-only"
    d.mkdir()
    (d / "config.yaml").write_text("samples: 100\n")
    (d / "metrics.csv").write_text(HEADER)
    assert run_fraction(d) == 0.0


def test_progress_line_has_an_eta_before_any_run_finished(tmp_path):
    runs = tmp_path / "runs"
    _run(runs / "k1", 1024, [(1, 32), (16, 512)])   # half done
    states = {"k1": ("running", SimpleNamespace(user_attrs={"flops": 1e12})),
              "k2": ("waiting", SimpleNamespace(user_attrs={"flops": 1e12}))}
    q = SimpleNamespace(name="demo@1", point_states=lambda: states)
    started = time.time() - 60
    without = progress_line(q, started)
    assert "(0%)" in without and "ETA ?" in without
    line = progress_line(q, started, runs_dir=runs)
    assert "runs 0/2" in line and "(25%)" in line and "ETA ?" not in line
