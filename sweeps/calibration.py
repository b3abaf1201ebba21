"""A short measured calibration for ``sweep plan``'s time estimates (not a guess).

Times real training steps (forward, backward, AdamW) of the smallest and the largest model of the
plan on real batches of the sweep's data, in this process, as a run of the spec makes them: with the
spec's torch thread count (``train.threads``; all cores when unset, as a run then gets) and its
precision on CPU (``bf16-mixed`` under bf16 autocast; ``auto`` times both and keeps the faster, as the
run's own probe does). Steps repeat until each model has ``MIN_SECONDS`` of them, so a tiny model is
not timed from three 10 ms steps. It also measures the start-up cost of a run process (interpreter,
torch and Lightning imports). The result is cached in ``SWEEP_DIR/calibration.json`` keyed by all of
that. A machine busy with other work makes every estimate slower than the run will be on a quiet one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.points import PlannedRun
from sweeps.spec import SweepSpec
from vla_core.atomic import write_atomic

if TYPE_CHECKING:
    from scaling.model.family import Dims

STEPS = 3
"""At least this many timed optimizer steps per calibrated model (after one untimed warm-up step)."""
MAX_STEPS = 50
"""At most this many timed steps per model and precision."""
MIN_SECONDS = 0.5
"""Time steps until they add up to this much (each model, each precision timed)."""
METHOD = "timed-steps-v2"
"""Names the way of timing in the cache key, so estimates measured the older way are measured again."""


def _time_steps(resolved, source: Any, batch_size: int, val_samples: int, *, chunk: int = 1, bf16: bool = False,
                steps: int = STEPS, max_steps: int = MAX_STEPS,
                min_seconds: float = MIN_SECONDS) -> tuple[float, float]:
    """(seconds per optimizer step, seconds per validation pass) of the model ``resolved`` (a
    `scaling.model.family.ResolvedModel`) on real batches of ``chunk`` actions.

    Times at least ``steps`` and at most ``max_steps`` steps, stopping once they add up to
    ``min_seconds``; ``bf16`` runs forward and loss under CPU bf16 autocast, as ``bf16-mixed`` does.
    """
    import contextlib

    import numpy as np
    import torch

    torch.manual_seed(0)
    model = resolved.build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    idx = source.train_indices(batch_size * (max_steps + 1), seed=0)

    def cast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step(i: int) -> None:
        raw = source.get_batch(idx[i * batch_size:(i + 1) * batch_size], chunk=chunk)
        batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
        with cast():
            loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)  # warm-up: allocator, kernels
    times: list[float] = []
    while len(times) < max_steps and (len(times) < steps or sum(times) < min_seconds):
        t0 = time.perf_counter()
        step(len(times) + 1)
        times.append(time.perf_counter() - t0)
    train_s = sorted(times)[len(times) // 2]  # median: robust to a step hit by another process
    # One validation pass as the trainer makes it: forward only over val_samples frames.
    vidx = source.val_indices(val_samples)
    t0 = time.perf_counter()
    with torch.no_grad(), cast():
        for i in range(0, len(vidx), batch_size):
            raw = source.get_batch(vidx[i:i + batch_size], chunk=chunk)
            model.loss({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()})
    return train_s, time.perf_counter() - t0


def _run_settings(runs: list[PlannedRun], local_data: Any) -> tuple[int, tuple[bool, ...]]:
    """(torch threads, bf16-autocast settings to time) of a run of this plan on this CPU, by the rules
    the run itself applies (`scaling.hardware.run_threads`, `resolved_precision`); ``auto``: both."""
    from scaling.config import from_mapping
    from scaling.hardware import PRECISION_DTYPE, resolved_precision, run_threads

    cfg = from_mapping({**runs[0].config, "data": str(local_data)})  # the train settings all runs share
    threads = run_threads(cfg, "cpu") or (os.cpu_count() or 1)  # None: torch's default, all cores
    precision = resolved_precision(cfg, "cpu")
    if precision == "auto":
        return threads, (False, True)
    return threads, (PRECISION_DTYPE[precision] == "bfloat16",)


def _startup_seconds() -> float:
    """Wall time of a process that imports what a run imports (interpreter, torch, Lightning, trainer)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, lightning.fabric, scaling.train, scaling.trainer"],
                   capture_output=True, check=False)
    return time.perf_counter() - t0


def calibrate(spec: SweepSpec, local_data: Any, dims: Dims, runs: list[PlannedRun], sweep_dir: Path,
              cache_name: str = "calibration.json") -> dict:
    """Measure seconds per FLOP at the smallest and largest model of ``runs``, and the per-run overhead.

    The timings are cached in ``sweep_dir / cache_name`` (one file per family of a ``families:`` spec).

    Returns:
        ``{"seconds_per_flop": {flops_per_sample: s/FLOP}, "overhead_s": float, "models": [...]}``.
    """
    from scaling.data import open_source
    from sweeps.points import model_of

    train = spec.train_dict
    batch = int(train.get("batch_size", 64))
    ends = {}
    for r in (min(runs, key=lambda r: r.flops_per_sample), max(runs, key=lambda r: r.flops_per_sample)):
        ends[r.flops_per_sample] = r.size
    # The models as a run of the spec builds them (the training path): what is timed, and what the cache
    # is keyed by (shape, options, chunk, family, counts), so a changed option is measured again.
    models = {fps: model_of(spec, size, dims) for fps, size in ends.items()}
    threads, precisions = _run_settings(runs, local_data)
    cache_key = {"sizes": sorted(map(str, ends.values())), "batch": batch, "val": train.get("val_samples", 512),
                 "dims": dims.to_dict(), "models": [m.describe() for m in models.values()], "threads": threads,
                 "bf16": list(precisions), "method": METHOD}
    cache = sweep_dir / cache_name
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("key") == cache_key:
            return cached
    import torch

    source = open_source(local_data)
    spf, vspf = {}, {}
    val_samples = int(train.get("val_samples", 512))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for fps, model in models.items():
            # `auto` runs whichever precision is faster at this size: keep the faster timing.
            sec, val_s = min(_time_steps(model, source, batch, val_samples, chunk=int(train.get("chunk", 1)), bf16=b)
                             for b in precisions)
            spf[str(fps)] = sec / (fps * batch)  # seconds per training FLOP at this size
            vspf[str(fps)] = val_s / (fps * val_samples)  # seconds per validation pass, per sample-FLOP
    finally:
        torch.set_num_threads(before)
    out = {"key": cache_key, "seconds_per_flop": spf, "val_seconds_per_flop": vspf, "overhead_s": _startup_seconds(),
           "models": [str(s) for s in ends.values()], "threads": threads, "measured_at": time.time()}
    write_atomic(cache, json.dumps(out, indent=1))
    return out
