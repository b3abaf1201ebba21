"""The MFU ceiling that this CPU's matmul library allows at the model's own matrix shapes.

    python -m benchmarks.bench_gemm [--sizes 1m,3m] [--threads 1] [--patch-size 8 --keypoints 16]

MFU divides by the peak of a large square matmul (`scaling.hardware`, 2,048 x 2,048). A training step
of a small model is made of much smaller and thinner matmuls (batch x tokens rows, a few hundred
columns, and weight gradients that reduce over all the rows). This benchmark asks how fast those
matmuls can go on their own, so that an MFU target can be judged against what the library gives:

1. one real training step of the model (bare PyTorch: forward and loss under CPU bf16 autocast,
   backward) runs under a dispatch mode that records every matmul it makes (aten mm, addmm, bmm,
   baddbmm: operand shapes, strides and dtypes, as autocast hands them over). Under CPU autocast the
   model's attention is explicit matmuls too (`scaling.model.vla.use_math_attention`), so the
   recorded FLOPs are the accounting's (`scaling.model.flops_per_sample`; a conv stem's are not
   matmuls). bf16 only: in fp32 attention is one fused kernel that a matmul recorder cannot see;
2. each distinct matmul is replayed alone on random operands of the same shapes, strides and dtypes,
   best of `--repeats` timings of at least `--min-seconds` each;
3. the GEMM-only step time is the sum of those times (times how often the step makes each), and
   ceiling MFU = the step's matmul FLOPs / GEMM-only time / the fastest dtype's peak. It is the MFU
   a step would reach if everything but its matmuls were free and its matmuls ran as fast as they do
   alone; the step's real MFU (measured here too, same loop) is below it.

Prints a table and writes benchmarks/results/bench_gemm.json (`--out`). Take it on a quiet core
(`taskset -c 0`); the ratios inside one run are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from vla_core.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
MATMULS = ("mm", "addmm", "bmm", "baddbmm")
"""aten overloads recorded (their default overloads): every matmul a Linear, attention or head makes."""


def _flops(name: str, shapes: tuple) -> int:
    """Multiply-add FLOPs (2 per MAC) of one recorded matmul."""
    if name in ("mm", "addmm"):
        a, b = shapes[-2], shapes[-1]  # addmm(bias, a, b)
        return 2 * a[0] * a[1] * b[1]
    a, b = shapes[-2], shapes[-1]  # bmm(a, b) / baddbmm(c, a, b): (n, m, k) @ (n, k, p)
    return 2 * a[0] * a[1] * a[2] * b[2]


def record_step(model, batch: dict) -> Counter:
    """Counter of (name, shapes, strides, dtypes) -> calls, for one bf16-autocast forward + backward."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: Counter = Counter()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in MATMULS:
                ts = [a for a in args if isinstance(a, torch.Tensor)]
                seen[(name, tuple(tuple(t.shape) for t in ts), tuple(tuple(t.stride()) for t in ts),
                      tuple(str(t.dtype).removeprefix("torch.") for t in ts))] += 1
            return func(*args, **(kwargs or {}))

    with Record():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = model.loss(batch)
        loss.backward()
    return seen


def time_matmul(key: tuple, repeats: int, min_seconds: float) -> float:
    """Best seconds per call of the recorded matmul `key`, alone, on random operands like its own."""
    import torch

    name, shapes, strides, dtypes = key
    g = torch.Generator().manual_seed(0)
    ops = []
    for shape, stride, dtype in zip(shapes, strides, dtypes):
        size = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 0
        base = torch.randn(max(size, 1), generator=g).to(getattr(torch, dtype))
        ops.append(base.as_strided(shape, stride))
    fn = getattr(torch.ops.aten, name).default
    with torch.no_grad():
        fn(*ops)  # warm-up: oneDNN picks and JITs its kernel on the first call
        best = float("inf")
        for _ in range(repeats):
            count, t0 = 0, time.perf_counter()
            while count == 0 or time.perf_counter() - t0 < min_seconds:
                fn(*ops)
                count += 1
            best = min(best, (time.perf_counter() - t0) / count)
    return best


def step_seconds(model, batch: dict, steps: int) -> float:
    """Median seconds of a bare bf16 training step (forward, loss, backward, AdamW) of `model` on `batch`."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def size_report(args, size: str, peak: float) -> dict:
    import numpy as np
    import torch

    from scaling.config import from_mapping
    from scaling.data import open_source
    from scaling.model import VLA, flops_per_sample
    from scaling.train import model_config

    source = open_source(args.data)
    cfg = from_mapping({"data.source": args.data, "model.size": size, "data.samples": args.batch,
                        "optim.batch_size": args.batch, **args.family})
    model_cfg = model_config(cfg, source)
    torch.manual_seed(0)
    model = VLA(model_cfg)
    raw = source.get_batch(source.train_indices(args.batch, seed=0))
    batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
    calls = record_step(model, batch)
    model.zero_grad(set_to_none=True)
    rows, gemm_s, gemm_flops = [], 0.0, 0
    for key, n in sorted(calls.items(), key=lambda kv: -_flops(kv[0][0], kv[0][1]) * kv[1]):
        sec = time_matmul(key, args.repeats, args.min_seconds)
        f = _flops(key[0], key[1])
        rows.append({"op": key[0], "shapes": key[1], "strides": key[2], "dtypes": key[3], "calls": n,
                     "flops": f, "seconds": sec, "flops_per_second": f / sec})
        gemm_s += n * sec
        gemm_flops += n * f
    step_s = step_seconds(model, batch, args.steps)
    fps = flops_per_sample(model_cfg)
    return {
        "size": size, "d_model": model_cfg.d_model, "n_layers": model_cfg.n_layers, "seq_len": model_cfg.seq_len,
        "flops_per_sample": fps, "matmul_flops_per_step": gemm_flops,
        "matmul_share_of_accounted_flops": gemm_flops / (fps * args.batch),
        "gemm_only_step_seconds": gemm_s, "step_seconds": step_s,
        "gemm_share_of_step_time": gemm_s / step_s,
        "gemm_flops_per_second": gemm_flops / gemm_s,
        "ceiling_mfu": gemm_flops / gemm_s / peak,
        "step_mfu": fps * args.batch / step_s / peak,
        "matmuls": rows,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="dataset (default: a tiny tabletop dataset in a temp dir)")
    p.add_argument("--sizes", default="1m,3m", help="comma-separated model sizes")
    p.add_argument("--batch", type=int, default=32, help="samples per step")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--patch-size", type=int, default=None, help="patch size (default: the model family's)")
    p.add_argument("--keypoints", type=int, default=0, help="keypoint tokens (the CPU specs use 16, with "
                   "--patch-size 8)")
    p.add_argument("--repeats", type=int, default=3, help="best of this many timings per matmul")
    p.add_argument("--min-seconds", type=float, default=0.05, help="each timing runs at least this long")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (median) for the real MFU")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_gemm.json"))
    args = p.parse_args(argv)
    args.family = {"model.keypoints": args.keypoints,
                   **({"model.patch_size": args.patch_size} if args.patch_size else {})}
    import torch

    from scaling import hardware

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data is None:
        from scaling.data.testing import make_tiny_dataset

        args.data = str(make_tiny_dataset(Path(tempfile.mkdtemp()) / "tiny", episodes=16, image_size=32))
    os.environ["SCALING_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-gemm-cache-")  # the peak measured afresh
    threads = torch.get_num_threads()
    peaks, source = hardware.cpu_peaks(threads)
    peak = hardware.mfu_peak("cpu", threads)
    report = {"threads": threads, "cpu": hardware.cpu_signature(threads), "precision": "bf16-mixed",
              "batch": args.batch, "model_family": args.family, "load_average_start": os.getloadavg(),
              "peak_flops": peaks, "peak_source": source, "mfu_peak": peak.value, "mfu_dtype": peak.dtype,
              "sizes": [size_report(args, s, peak.value) for s in args.sizes.split(",")],
              "load_average_end": os.getloadavg()}
    for r in report["sizes"]:
        print(f"{r['size']:>5} (d{r['d_model']} x L{r['n_layers']}, {r['seq_len']} tokens, bf16-mixed, "
              f"{threads} thread(s)): matmuls alone {r['gemm_flops_per_second'] / 1e9:,.0f} GFLOP/s -> ceiling MFU "
              f"{r['ceiling_mfu']:.1%}; the real step {r['step_mfu']:.1%} (matmuls alone would take "
              f"{r['gemm_share_of_step_time']:.0%} of its time); peak {peak.value / 1e9:,.0f} GFLOP/s ({peak.dtype})")
        for m in r["matmuls"][:6]:
            print(f"        {m['op']:<7} {' x '.join(str(list(s)) for s in m['shapes'])} {m['dtypes'][0]:<9} "
                  f"x{m['calls']:<3} {m['flops_per_second'] / 1e9:8,.0f} GFLOP/s")
    write_atomic(args.out, json.dumps(report, indent=2) + "\n")  # makes the folder too
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
