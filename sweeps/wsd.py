"""WSD branching, the compute saver (Hägele et al. 2024; Hu et al. 2024 "MiniCPM").

With several data sizes D_1 < ... < D_k per model size N, a warmup-stable-decay schedule has the
same learning rate at every step of its stable phase whatever the run's length. So per (N, seed) we
train only the longest run (D_k) in full, keeping a checkpoint at each D_i's cooldown start, and
branch a cooldown for every shorter D_i from that checkpoint (``branch_from``):

    independent:  sum_i D_i                         samples per N
    branched:     D_k + sum_{i<k} cooldown(D_i)     cooldown(D) = the last wsd_decay_frac of D's steps

Warmup is set in absolute steps (the same for every D), else the stable phases would differ.
"""

from __future__ import annotations

import math
from typing import Any

from scaling.schedules import wsd_decay_start
from sweeps.points import ModelPoint, PlannedRun, base_config, run_key
from sweeps.spec import SweepSpec


def _decay_start_samples(samples: int, batch: int, frac: float) -> int:
    # The trainer's own schedule decides where the stable phase of a run of `samples` ends; in samples.
    return wsd_decay_start(math.ceil(samples / batch), frac) * batch


def branch_runs(spec: SweepSpec, points: list[tuple[ModelPoint, int, Any]], ident: Any,
                lrs: dict | None) -> list[PlannedRun]:
    """The branched plan: per (N, seed) one full run at the largest D, cooldown branches for the rest."""
    train = spec.train_dict
    batch = int(train.get("batch_size", 64))
    frac = spec.wsd.cooldown_frac
    by_model: dict[Any, list[tuple[ModelPoint, int, Any]]] = {}
    for p in points:
        by_model.setdefault(p[0].size, []).append(p)
    runs: list[PlannedRun] = []
    for seed in spec.seeds:
        for group in by_model.values():
            group = sorted(group, key=lambda p: p[1])
            m, d_max, c_max = group[-1]
            warm = float(train.get("warmup", 0.05))
            # Absolute warmup steps, from the shortest run so every branch finishes its warmup.
            warm_steps = int(warm) if warm >= 1 else max(1, round(warm * math.ceil(group[0][1] / batch)))
            starts = {d: _decay_start_samples(d, batch, frac) for _, d, _ in group[:-1]}
            common = {"schedule": "wsd", "wsd_decay_frac": frac, "warmup": warm_steps}
            long_cfg = {**base_config(spec, m.size, d_max, seed, lrs), **common,
                        "checkpoint_at": sorted({s for s in starts.values() if s > 0})}
            long_key = run_key(long_cfg, ident)
            runs.append(PlannedRun(key=long_key, phase="main", size=m.size, n_params=m.n_params, samples=d_max,
                                   seed=seed, flops=float(m.flops_per_sample) * d_max,
                                   flops_per_sample=m.flops_per_sample, config=long_cfg, budget=c_max))
            for mm, d, c in group[:-1]:
                start = starts[d]
                cfg = {**base_config(spec, mm.size, d, seed, lrs), **common}
                branch = {"from_key": long_key, "checkpoint": f"stable-{start}.ckpt"} if start > 0 else None
                key = run_key({**cfg, "branch": branch}, ident)
                runs.append(PlannedRun(
                    key=key, phase="cooldown" if branch else "main", size=mm.size, n_params=mm.n_params,
                    samples=d, seed=seed, flops=float(mm.flops_per_sample) * (d - start),
                    flops_per_sample=mm.flops_per_sample, config=cfg, budget=c,
                    depends_on=long_key if branch else None, branch=branch,
                ))
    runs.sort(key=lambda r: (r.n_params, r.samples, r.seed, r.phase))
    return runs


def savings(runs: list[PlannedRun]) -> dict:
    """Compute of the branched plan against independent runs of every point.

    Returns:
        ``{branched_flops, independent_flops, saved_flops, saved_frac}`` (FLOPs).
    """
    branched = sum(r.flops for r in runs)
    independent = sum(float(r.flops_per_sample) * r.samples for r in runs)
    saved = independent - branched
    return {"branched_flops": branched, "independent_flops": independent, "saved_flops": saved,
            "saved_frac": saved / independent if independent else 0.0}
