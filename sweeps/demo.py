"""`make demo`: the whole product on the built-in data, from nothing to a compute-optimal choice.

Runs ``sweeps/quickstart.yaml`` (which generates its tabletop data into the sweep folder), so the
sweep writes ``runs/quickstart/results.csv``, ``fit.json`` and ``report.html``; then prints the fitted
law and the compute-optimal N and D for a budget 10x the largest run. Run it again and finished
runs are not repeated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sweeps.cli import main as cli

SPEC = Path(__file__).with_name("quickstart.yaml")


def main(argv: list[str] | None = None) -> int:
    """Run the quickstart sweep, then print the fit and a compute-optimal configuration."""
    ap = argparse.ArgumentParser(prog="python -m sweeps.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="runs/quickstart", help="sweep folder (default runs/quickstart)")
    ap.add_argument("--workers", type=int, default=2, help="parallel runs (default 2, one per core)")
    args = ap.parse_args(argv)
    sweep_dir = Path(args.dir)

    rc = cli(["sweep", "run", str(SPEC), "--dir", str(sweep_dir), "--workers", str(args.workers)])
    if rc != 0:
        return rc
    fit_path = sweep_dir / "fit.json"
    if not fit_path.exists():
        sys.stderr.write(f"demo: the sweep finished without {fit_path}; see `scaling sweep status {SPEC}`\n")
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
    return rc


if __name__ == "__main__":
    sys.exit(main())
