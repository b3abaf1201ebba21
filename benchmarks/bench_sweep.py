"""Sweep benchmark: how much of a sweep's wall time is spent inside runs, and each run's start-up cost.

    python -m benchmarks.bench_sweep [--spec sweeps/smoke.yaml] [--workers 2] [--json] [--no-compare]

Runs the spec (real ``scaling train`` runs) in a temporary folder, with each worker's warm fork server
(``sweeps.forkserver``) and then, for comparison, with a fresh process per run (``SWEEP_FORKSERVER=0``),
and reports for each:

- ``runs_phase_s``: from the start to the writing of results.csv (when the last worker is done);
  ``finalize_s``: the rest (the fit, with its bootstrap, and the report). The finalize is CPU-bound
  and single-process: on a machine loaded by others its wall time swings widely (10 s to 150 s seen
  for the same fit), which is what once made one variant's total look 3.3x longer.
- ``share_in_runs``: sum over runs of the run processes' wall time / (runs phase x workers).
  The rest is the sweep's own overhead: planning, data generation, queue and waiting.
- ``share_in_training``: the same with the time ``train()`` itself reports (result ``wall_seconds``).
- ``startup_s`` per run: from the worker's claim of the point to the end of the run's first training
  step (goal: median <= 1 s): the worker's time on the point - train()'s wall time + the first step's
  time from ``metrics.csv`` (seconds since train() started, as result.json's ``wall_seconds``). An upper
  bound: it also counts the run process's exit and the worker's reading of result.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _first_step_seconds(run_dir: Path) -> float | None:
    """``wall_seconds`` of the first training row of metrics.csv (seconds since train() started)."""
    try:
        with open(run_dir / "metrics.csv") as f:
            for row in csv.DictReader(f):
                if row.get("train_loss") and row.get("wall_seconds"):
                    return float(row["wall_seconds"])
    except OSError:
        return None
    return None


def bench(spec: Path, workers: int, forkserver: bool = True) -> dict:
    """Run the sweep and return the figures."""
    from sweeps.spec import load_spec
    from sweeps.sweep import Sweep

    name = load_spec(spec).name
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        d = Path(tmp) / name
        t0 = time.time()
        env = {**os.environ, "SWEEP_FORKSERVER": "1" if forkserver else "0"}
        env.pop("SWEEP_RUN_COMMAND", None)
        proc = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", "run", str(spec), "--dir", str(d),
                               "--workers", str(workers), "--no-progress"], capture_output=True, text=True,
                              env=env)
        wall = time.time() - t0
        results_csv = d / "results.csv"
        runs_phase = results_csv.stat().st_mtime - t0 if results_csv.exists() else wall
        if proc.returncode not in (0, 1):
            raise SystemExit(f"bench_sweep: sweep failed: {proc.stderr.strip()[-500:]}")
        q = Sweep.open(spec, d).existing_queue()  # the study of this spec and code (<name>@<id>)
        process, training, startup = [], [], []
        for state, t in q.point_states().values():
            a = t.user_attrs
            if state != "completed":
                continue
            process.append(float(a.get("process_seconds") or 0.0))
            training.append(float(a["result"].get("wall_seconds") or 0.0))
            first = _first_step_seconds(Path(a["run_dir"]))
            if first is not None:
                startup.append(float(a.get("sweep_seconds") or 0.0) - training[-1] + first)
        counts = q.counts()
    return {
        "spec": str(spec), "workers": workers, "forkserver": forkserver,
        "load_average": round(os.getloadavg()[0], 2), "runs": counts["total"], "completed": counts["completed"],
        "sweep_wall_s": round(wall, 2), "runs_phase_s": round(runs_phase, 2), "finalize_s": round(wall - runs_phase, 2),
        "share_in_runs": round(sum(process) / (runs_phase * workers), 3),
        "share_in_training": round(sum(training) / (runs_phase * workers), 3),
        "startup_s_median": round(statistics.median(startup), 2) if startup else None,
        "startup_s_max": round(max(startup), 2) if startup else None,
        "startup_goal_s": 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", type=Path, default=REPO / "sweeps" / "smoke.yaml", help="sweep spec to run")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-compare", action="store_true", help="skip the fresh-process-per-run comparison")
    args = p.parse_args(argv)
    # Warm the page cache first, so that whichever variant runs first does not pay for cold files.
    subprocess.run([sys.executable, "-c", "import lightning, pandas, pyarrow.parquet"], check=True)
    outs = [bench(args.spec, args.workers, forkserver=True)]
    if not args.no_compare:
        outs.append(bench(args.spec, args.workers, forkserver=False))
    if args.json:
        print(json.dumps(outs))
    else:
        for out in outs:
            print(f"--- {'warm fork server per worker' if out['forkserver'] else 'fresh process per run'}")
            for k, v in out.items():
                print(f"{k:>20}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
