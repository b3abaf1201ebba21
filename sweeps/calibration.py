"""A short measured calibration for ``sweep plan``'s time estimates (not a guess).

Times a few real training steps (forward, backward, AdamW) of the smallest and the largest model of
the plan on real batches of the sweep's data, in this process, and measures the start-up cost of a
run process (``python -m sweeps.cli train --help``: interpreter, torch and Lightning imports). The
result is cached in ``SWEEP_DIR/calibration.json`` keyed by the model shapes and batch size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from analysis.atomic import write_atomic
from sweeps.points import DataDims, PlannedRun
from sweeps.spec import SweepSpec

STEPS = 3
"""Timed optimizer steps per calibrated model (after one untimed warm-up step)."""


def _time_steps(model_cfg, source: Any, batch_size: int, val_samples: int, steps: int = STEPS) -> tuple[float, float]:
    """(seconds per optimizer step, seconds per validation pass) of ``model_cfg`` on real batches."""
    import numpy as np
    import torch

    from scaling.model import VLA

    torch.manual_seed(0)
    model = VLA(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    idx = source.train_indices(batch_size * (steps + 1), seed=0)
    chunk = getattr(model_cfg, "chunk", 1)

    def step(i: int) -> None:
        raw = source.get_batch(idx[i * batch_size:(i + 1) * batch_size], chunk=chunk)
        batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
        loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)  # warm-up: allocator, kernels
    times = []
    for i in range(1, steps + 1):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
    train_s = sorted(times)[len(times) // 2]  # median: robust to one step hit by another process
    # One validation pass as the trainer makes it: forward only over val_samples frames.
    vidx = source.val_indices(val_samples)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(vidx), batch_size):
            raw = source.get_batch(vidx[i:i + batch_size], chunk=chunk)
            model.loss({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()})
    return train_s, time.perf_counter() - t0


def _startup_seconds() -> float:
    """Wall time of a process that imports what a run imports (interpreter, torch, Lightning, trainer)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, lightning.fabric, scaling.train, scaling.trainer"],
                   capture_output=True, check=False)
    return time.perf_counter() - t0


def calibrate(spec: SweepSpec, local_data: Any, dims: DataDims, runs: list[PlannedRun], sweep_dir: Path) -> dict:
    """Measure seconds per FLOP at the smallest and largest model of ``runs``, and the per-run overhead.

    Returns:
        ``{"seconds_per_flop": {flops_per_sample: s/FLOP}, "overhead_s": float, "models": [...]}``.
    """
    from scaling.data import open_source
    from scaling.model import ModelConfig

    train = spec.train_dict
    batch = int(train.get("batch_size", 64))
    extra = spec.model_options
    ends = {}
    for r in (min(runs, key=lambda r: r.flops_per_sample), max(runs, key=lambda r: r.flops_per_sample)):
        ends[r.flops_per_sample] = r.size
    cache_key = {"sizes": sorted(map(str, ends.values())), "batch": batch, "val": train.get("val_samples", 512), "dims": dims.__dict__, "extra": extra}
    cache = sweep_dir / "calibration.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("key") == cache_key:
            return cached
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    source = open_source(local_data)
    spf, vspf = {}, {}
    val_samples = int(train.get("val_samples", 512))
    for fps, size in ends.items():
        cfg = ModelConfig.from_size(size, image_size=dims.image_size, vocab_size=dims.vocab_size,
                                    max_instr_len=dims.max_instr_len, proprio_dim=dims.proprio_dim,
                                    action_dim=dims.action_dim, **extra)
        sec, val_s = _time_steps(cfg, source, batch, val_samples)
        spf[str(fps)] = sec / (fps * batch)  # seconds per training FLOP at this size
        vspf[str(fps)] = val_s / (fps * val_samples)  # seconds per validation pass, per sample-FLOP
    out = {"key": cache_key, "seconds_per_flop": spf, "val_seconds_per_flop": vspf, "overhead_s": _startup_seconds(),
           "models": [str(s) for s in ends.values()], "measured_at": time.time()}
    write_atomic(cache, json.dumps(out, indent=1))
    return out
