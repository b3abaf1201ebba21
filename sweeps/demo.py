"""`make demo`: the whole product on the built-in data, from nothing to a compute-optimal choice.

Runs ``sweeps/quickstart.yaml`` (which generates its tabletop data into the sweep folder), so the
sweep writes ``runs/quickstart/results.csv``, ``fit.json`` and ``report.html``; then prints the fitted
law and the compute-optimal N and D for a budget 10x the largest run. Before training it prints the
plan's measured time estimate for this machine, and how to run the smaller spec when that exceeds
15 minutes. Run it again and finished runs are not repeated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sweeps.cli import main as cli
from vla_core.errors import BadInput

SPEC = Path(__file__).with_name("quickstart.yaml")
SMALL = Path(__file__).with_name("quickstart_small.yaml")
PROMISE_S = 15 * 60
"""What the README promises for `make demo`; an estimate above it is said before the sweep starts."""


def schedule_seconds(runs, workers: int) -> float:
    """Wall time of `runs` (each with ``est_seconds``) on `workers` workers, as the queue hands them
    out: the largest ready run first, a run ready once the run it depends on has finished."""
    done_at: dict[str, float] = {}
    free = [0.0] * max(1, workers)
    todo = sorted(runs, key=lambda r: -r.flops)
    while todo:
        t = min(free)
        pending = {r.key for r in todo}
        ready = [r for r in todo if r.depends_on not in pending and done_at.get(r.depends_on, 0.0) <= t]
        if not ready:  # every waiting run needs one still running: idle until the next one finishes
            free[free.index(t)] = min(v for v in done_at.values() if v > t)
            continue
        r = ready[0]
        todo.remove(r)
        free[free.index(t)] = done_at[r.key] = t + float(r.est_seconds or 0.0)
    return max(done_at.values(), default=0.0)


def _estimate(spec: Path, sweep_dir: Path, workers: int) -> float | None:
    """The sweep's remaining wall time on this machine from the plan's measured calibration (seconds);
    generates the data first, as the sweep would. None when the plan has no estimate."""
    from sweeps.sweep import Sweep

    sw = Sweep.open(spec, sweep_dir, None, workers)
    runs = sw.plan(calibrate=True)
    finished = {k for k, (state, _) in sw.queue.point_states().items() if state == "completed"}
    left = [r for r in runs if r.key not in finished]
    if any(r.est_seconds is None for r in left):
        return None
    return schedule_seconds(left, workers)


def main(argv: list[str] | None = None) -> int:
    """Run the quickstart sweep, then print the fit and a compute-optimal configuration."""
    ap = argparse.ArgumentParser(prog="python -m sweeps.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="sweep folder (default runs/<the spec's name>)")
    ap.add_argument("--workers", type=int, default=2, help="parallel runs (default 2, one per core)")
    ap.add_argument("--small", action="store_true",
                    help=f"run {SMALL.name} (3 sizes x 3 data sizes, about a quarter of the FLOPs) instead")
    args = ap.parse_args(argv)
    spec = SMALL if args.small else SPEC
    sweep_dir = Path(args.dir or f"runs/{spec.stem}")

    t0 = time.time()
    try:
        est = _estimate(spec, sweep_dir, args.workers)
    except BadInput as exc:
        sys.stderr.write(f"demo: {exc}\n")
        return 2
    t_plan = time.time() - t0
    if est is not None:
        shown = spec.relative_to(Path.cwd()) if spec.is_relative_to(Path.cwd()) else spec
        print(f"demo: the sweep should take about {est / 60:.1f} minutes on this machine ({args.workers} workers; "
              f"the plan's timed steps, see `scaling sweep plan {shown}`)", flush=True)
        if est > PROMISE_S and not args.small:
            print(f"demo: that is more than {PROMISE_S // 60} minutes (a slow or busy machine); for a smaller version "
                  f"stop now (Ctrl-C) and run `make demo DEMO_ARGS=--small`", flush=True)
    t1 = time.time()
    rc = cli(["sweep", "run", str(spec), "--dir", str(sweep_dir), "--workers", str(args.workers)])
    t_sweep = time.time() - t1
    if rc != 0:
        return rc
    fit_path = sweep_dir / "fit.json"
    if not fit_path.exists():
        sys.stderr.write(f"demo: the sweep finished without {fit_path}; see `scaling sweep status {spec}`\n")
        return 1

    import pandas as pd

    table = pd.read_csv(sweep_dir / "results.csv")
    done = table[table["state"] == "completed"]
    budget = 10.0 * float(done["flops"].max())
    fit = json.loads(fit_path.read_text())
    p = fit["params"]
    print()
    main_runs = done[done["phase"].isin(["main", "cooldown"])]
    blind = done[done["phase"] == "blind"]
    if len(blind) and len(main_runs):
        b, best = blind.iloc[0], main_runs.loc[main_runs["val_loss"].idxmin()]
        print(f"Blind baseline (N={int(b['n_params']):,}, D={int(b['n_samples']):,}, images and instruction "
              f"withheld): val_loss {b['val_loss']:.3f}")
        print(f"Best run (N={int(best['n_params']):,}, D={int(best['n_samples']):,}): val_loss {best['val_loss']:.3f}, "
              f"{b['val_loss'] - best['val_loss']:.3f} nats below the blind floor"
              + (f", closed-loop success {best['success_rate']:.0%}" if pd.notna(best.get("success_rate")) else ""))
    print(
        f"Fitted law ({fit['n_points']} runs): L(N, D) = {p['E']:.3f} + {p['A']:.4g}/N^{p['alpha']:.3f}"
        f" + {p['B']:.4g}/D^{p['beta']:.3f}"
    )
    print(f"Compute-optimal configuration at 10x the largest run ({budget:.3g} FLOPs):")
    rc = cli(["optimal", str(fit_path), "--flops", f"{budget:.6g}",
              "--emit-config", str(sweep_dir / "optimal_run.yaml")])
    print(f"\nReport: {sweep_dir / 'report.html'}   Results: {sweep_dir / 'results.csv'}")
    print(f"Time: data and estimate {t_plan:.0f} s, sweep with fit and report {t_sweep / 60:.1f} min"
          + (f" (estimated {est / 60:.1f})" if est is not None else "") + f", total {(time.time() - t0) / 60:.1f} min")
    return rc


if __name__ == "__main__":
    sys.exit(main())
