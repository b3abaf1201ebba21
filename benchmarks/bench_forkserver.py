"""One run started the two ways a sweep worker can: forked from a warm fork server, or as a fresh process.

    python -m benchmarks.bench_forkserver [--size 100k] [--samples 512] [--pairs 5] [--json]

The same `scaling train --config run.yaml` (the smoke sweep's settings: 32-true, CPU, csv logger) runs
`--pairs` times each way, the two ways alternating pair by pair in one process, so load on a shared
machine hits both alike. Per run:

- ``startup_s``: from the request to start the run (the worker's claim is done) to the end of its first
  training step: the run's wall time outside train() (process start, imports, exit) plus the first
  step's ``wall_seconds`` in metrics.csv. An upper bound: it includes the process's exit.
- ``samples_per_second``: train()'s own figure (training steps only);
- ``cpu_s``: CPU seconds of the run process (user + system), which load from other processes does
  not inflate the way it inflates wall time.

Prints medians per way and their ratios (fork server / fresh). Goal: start-up median <= 1 s,
and the same samples/s (ratio ~1).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _first_step_seconds(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("train_loss") and row.get("wall_seconds"):
                return float(row["wall_seconds"])
    raise RuntimeError(f"no training row in {run_dir / 'metrics.csv'}")


def one_run(way: str, server, cfg: dict, run_dir: Path) -> dict:
    from sweeps.runproc import die_with_parent, run_command

    run_dir.mkdir(parents=True)
    cfg_path = run_dir / "run.yaml"
    cfg_path.write_text(yaml.safe_dump({**cfg, "out": str(run_dir)}))
    env = {k: v for k, v in os.environ.items() if k != "SWEEP_RUN_COMMAND"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    if way == "forkserver":
        rc = server.run(["train", "--config", str(cfg_path)], run_dir / "train.log", env=env).wait()
        cpu = None  # the run is the server's child, not ours: its CPU time is not in our RUSAGE_CHILDREN
    else:
        with open(run_dir / "train.log", "ab") as log:
            rc = subprocess.Popen(run_command(cfg_path), stdout=log, stderr=subprocess.STDOUT, env=env,
                                  preexec_fn=die_with_parent).wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"bench_forkserver: {way} run failed ({rc}): {(run_dir / 'train.log').read_text()[-800:]}")
    result = json.loads((run_dir / "result.json").read_text())
    return {"way": way, "wall_s": wall, "startup_s": wall - result["wall_seconds"] + _first_step_seconds(run_dir),
            "samples_per_second": result["samples_per_second"], "cpu_s": cpu}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="100k")
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from scaling.data.testing import make_tiny_dataset
    from sweeps.forkserver import ForkServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-forkserver-"))
    data = make_tiny_dataset(tmp / "data", episodes=8, image_size=32, seed=0)
    cfg = {"data": str(data), "size": args.size, "samples": args.samples, "batch_size": 32, "lr": 1e-3,
           "precision": "32-true", "accelerator": "cpu", "val_samples": 128, "eval_episodes": 0,
           "logger": "csv", "progress_bar": False}
    server = ForkServer(cwd=str(ROOT)).start()
    t0 = time.perf_counter()
    server.wait_ready()
    server_import_s = time.perf_counter() - t0
    rows = []
    try:
        # A warm-up run each way (page cache, the machine's cached matmul peak), not counted.
        for i in range(args.pairs + 1):
            for way in (("forkserver", "fresh") if i % 2 else ("fresh", "forkserver")):
                row = one_run(way, server, cfg, tmp / f"{way}-{i}")
                if i:
                    rows.append(row)
    finally:
        server.close()
    med = {way: {k: statistics.median(r[k] for r in rows if r["way"] == way)
                 for k in ("startup_s", "samples_per_second", "wall_s")} for way in ("forkserver", "fresh")}
    out = {"size": args.size, "samples": args.samples, "pairs": args.pairs, "load_average": os.getloadavg(),
           "server_import_s": server_import_s, "median": med,
           "startup_ratio": med["forkserver"]["startup_s"] / med["fresh"]["startup_s"],
           "samples_per_second_ratio": med["forkserver"]["samples_per_second"] / med["fresh"]["samples_per_second"],
           "startup_goal_s": 1.0, "runs": rows}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.size}, {args.samples} samples, {args.pairs} interleaved pairs (medians); load average "
              f"{out['load_average'][0]:.1f}; server imports {server_import_s:.1f} s (once per worker)")
        for way, m in med.items():
            print(f"  {way:>10}: start-up {m['startup_s']:5.2f} s  samples/s {m['samples_per_second']:7.1f}  "
                  f"run wall {m['wall_s']:5.2f} s")
        print(f"  fork server / fresh: start-up {out['startup_ratio']:.2f}, samples/s "
              f"{out['samples_per_second_ratio']:.2f} (goal: start-up <= 1 s, samples/s ratio ~1)")
    res = ROOT / "benchmarks" / "results" / "bench_forkserver.json"
    res.parent.mkdir(parents=True, exist_ok=True)
    res.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
