"""Next-run design on simulated experiments: compute needed to pin N_opt within 10% of the truth.

Run: `python -m benchmarks.bench_suggest [--laws 20]` (several minutes: one grid fit per round).

A simulator (a known Chinchilla law plus 1% lognormal noise, as in kyo-takano's `chinchilla`
toolkit) answers every run. Three ways of buying runs start from the same 3 x 3 seed grid and grow
round by round, each round roughly doubling the compute spent so far:
  - grid: a 4 x 4 N x D grid whose corners move up by 10^0.5 in N and D each round (runs union);
  - scale (seed -> fit -> scale): fit, then an IsoFLOP triple around the fitted N_opt at 4x the
    largest compute run so far (N_opt / 2.5, N_opt, N_opt * 2.5);
  - suggest: `analysis.design.suggest`, 4 runs per round with a budget of the compute spent so far,
    model sizes on a ladder with step 10^0.25.
After every round the law is refitted and N_opt at the target compute (1e20 FLOPs) compared with the
truth. "Compute needed" is what was spent at the first round after which the estimate stays within
10% for every later round (inf: never within 8 rounds). Reported: median over random true laws, and
the ratio of suggest's compute to the grid's.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from analysis.design import suggest  # noqa: E402
from analysis.fitting import Objective, lbfgs_batch  # noqa: E402
from analysis.forms import FORMS, log_columns  # noqa: E402
from analysis.laws import chinchilla  # noqa: E402
from analysis.result import FitResult  # noqa: E402
from analysis.table import Table  # noqa: E402

F = FORMS["chinchilla"]
GRID = F.grid[::150]  # 30 starts plus the previous round's optimum (a refit moves the optimum a little)
TARGET = 1e20
ROUNDS = 8
LADDER = 10.0 ** np.arange(5.0, 11.01, 0.25)


def random_law(rng) -> dict:
    return {"E": rng.uniform(1.5, 2.5), "A": 10 ** rng.uniform(2.0, 3.0), "B": 10 ** rng.uniform(2.5, 3.5),
            "alpha": rng.uniform(0.25, 0.45), "beta": rng.uniform(0.25, 0.45)}


class Sim:
    def __init__(self, law, rng, noise=0.01):
        self.law, self.rng, self.noise, self.runs, self.prev = law, rng, noise, {}, None

    def run(self, n, d):
        key = (float(n), float(np.round(d)))
        if key not in self.runs:
            noise = np.exp(self.noise * self.rng.standard_normal())
            self.runs[key] = float(chinchilla(key[0], key[1], **self.law) * noise)

    @property
    def spent(self):
        return sum(6 * n * d for n, d in self.runs)

    def table(self):
        N, D = (np.array(v) for v in zip(*self.runs))
        return Table({"N": N, "D": D}, np.array(list(self.runs.values())), 6.0, True, "sim")

    def fit(self):
        t = self.table()
        # A warm refit, as a loop of rounds would do it: the previous optimum plus 30 grid starts, 400
        # L-BFGS iterations each (ample for a 10% criterion; the full fit's polish costs 10x more).
        grid = GRID if self.prev is None else np.vstack([self.prev[None, :], GRID])
        x, f, _, _ = lbfgs_batch(Objective(F, log_columns(t.cols), np.log(t.loss)), grid, maxiter=400)
        i = int(np.argmin(np.where(np.isfinite(f), f, np.inf)))
        pf = type("P", (), {"theta": x[i], "huber": float(f[i])})
        self.prev = pf.theta
        p = {k: float(v) for k, v in F.to_natural(pf.theta).items()}
        return t, FitResult("chinchilla", p, {}, F.exponents(p), pf.huber, t.n, {}, k=6.0)


def n_opt(params):
    return float(F.allocation(params, TARGET, 6.0)[0])


def seed(sim):
    for n in np.logspace(6, 7, 3):
        for d in np.logspace(8, 9, 3):
            sim.run(n, d)


def run_strategy(name, law, rng):
    sim = Sim(law, rng)
    seed(sim)
    truth = n_opt(law)
    history = []
    for r in range(1, ROUNDS + 1):
        if name == "grid":
            for n in np.logspace(6, 6 + 0.5 * r, 4):
                for d in np.logspace(8, 8 + 0.5 * r, 4):
                    sim.run(n, d)
        elif name == "scale":
            t, fit = sim.fit()
            c = 4 * float(t.compute.max())
            n0 = float(F.allocation(fit.params, c, 6.0)[0])
            for n in (n0 / 2.5, n0, n0 * 2.5):
                sim.run(n, c / (6 * n))
        else:
            t, fit = sim.fit()
            out = suggest(fit, t, TARGET, sim.spent, 4, sizes=LADDER)
            for run in out["runs"]:
                sim.run(run["n_params"], run["n_samples"])
        _, fit = sim.fit()
        history.append((sim.spent, abs(n_opt(fit.params) / truth - 1)))
    need = np.inf
    for i in range(len(history)):
        if all(err <= 0.1 for _, err in history[i:]):
            need = history[i][0]
            break
    return need, history


def _indexed(item):
    j, job = item
    return j, _job(job)


def _job(job):
    name, law, key = job
    return run_strategy(name, law, np.random.default_rng(list(key)))[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--laws", type=int, default=20, help="random true laws (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="processes, one law and strategy each")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    rows = {k: [] for k in ("grid", "scale", "suggest")}
    t0 = time.perf_counter()
    laws = [random_law(rng) for _ in range(a.laws)]
    jobs = [(name, law, (a.seed, i)) for i, law in enumerate(laws) for name in rows]
    if a.workers > 1:
        from multiprocessing import Pool

        with Pool(a.workers) as pool:
            results = [None] * len(jobs)
            for j, need in pool.imap_unordered(_indexed, list(enumerate(jobs))):
                results[j] = need
                print(f"  done {sum(r is not None for r in results)}/{len(jobs)}", flush=True)
    else:
        results = [_job(j) for j in jobs]
    for (name, _, (_, i)), need in zip(jobs, results):
        rows[name].append(need)
        if name == "suggest":
            print(f"law {i}: " + ", ".join(f"{k} {v[-1]:.3g}" for k, v in rows.items()), flush=True)
    print(f"\n## Compute to bring N_opt(1e20 FLOPs) within 10% of the truth ({a.laws} random laws, "
          f"{time.perf_counter() - t0:.0f} s)\n")
    print("| strategy | median FLOPs | laws never within 10% in 8 rounds |")
    print("|---|---|---|")
    for k, v in rows.items():
        v = np.array(v)
        print(f"| {k} | {np.median(v):.3g} | {int(np.isinf(v).sum())} |")
    g, s = np.array(rows["grid"]), np.array(rows["suggest"])
    ratio = np.where(np.isfinite(g), s / g, np.nan)
    print(f"\nmedian suggest / grid compute ratio (laws where the grid got there): {np.nanmedian(ratio):.3g}; "
          f"median of medians: {np.median(s) / np.median(g):.3g} (goal <= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
