"""The model's two attention kernels, one training step each, at the run's precision.

    python -m benchmarks.bench_attention [--sizes 1m,3m] [--batch 32] [--steps 8] [--threads N]

`scaling.model.vla.ATTENTION` picks "sdpa" (torch's fused kernel) or "math" (explicit matmuls, float32
softmax); "auto" takes "math" on CPUs under bf16/fp16 autocast. This measures both in fp32 and under bf16
autocast (cache on, as the Fabric loop runs it): a step is forward + backward + clipping + AdamW; the
kernels alternate step by step in one process (one warm-up step each), so load on a shared machine hits
both alike (`--clock cpu --threads 1`: CPU time, for a machine loaded by others). Prints the median
step's samples/s of each and the ratio math / sdpa (>1: math is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(size: str, batch: int, steps: int, dtype: str, data: str, clock=time.perf_counter) -> dict:
    import torch

    import scaling.model.vla as vla
    from scaling.config import from_mapping
    from scaling.data import open_source
    from scaling.model import VLA
    from scaling.train import model_config

    source = open_source(data)
    model_cfg = model_config(from_mapping({"data.source": data, "model.size": size}), source)
    torch.manual_seed(0)
    model = VLA(model_cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch_t = {k: torch.from_numpy(v) for k, v in source.get_batch(source.train_indices(batch)).items()}
    autocast = dtype == "bf16"
    seconds: dict[str, list[float]] = {"sdpa": [], "math": []}
    saved = vla.ATTENTION
    try:
        for step in range(2 * (steps + 1)):
            kernel = ("sdpa", "math")[step % 2]
            vla.ATTENTION = kernel
            t0 = clock()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss, _ = model(batch_t)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step >= 2:  # the first step of each kernel warms up oneDNN
                seconds[kernel].append(clock() - t0)
    finally:
        vla.ATTENTION = saved
    sps = {k: batch / statistics.median(v) for k, v in seconds.items()}
    return {"size": size, "dtype": dtype, "seq_len": model_cfg.seq_len, "d_model": model_cfg.d_model,
            "n_heads": model_cfg.n_heads, "samples_per_second": sps, "math_over_sdpa": sps["math"] / sps["sdpa"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1m,3m")
    p.add_argument("--dtypes", default="fp32,bf16")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="step time: wall clock, or this process's CPU time (user + system; with --threads 1 "
                        "the load of other processes on a shared machine barely moves it)")
    args = p.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    import torch

    from scaling.data.testing import make_tiny_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    data = str(make_tiny_dataset(Path(tempfile.mkdtemp()) / "tiny", episodes=16, image_size=32))
    rows = [measure(s, args.batch, args.steps, d, data, clock)
            for s in args.sizes.split(",") for d in args.dtypes.split(",")]
    print(f"{torch.get_num_threads()} threads, batch {args.batch}, median {args.clock} time of {args.steps} "
          f"interleaved steps each; load average {os.getloadavg()[0]:.1f}")
    for r in rows:
        s = r["samples_per_second"]
        print(f"  {r['size']:>4} {r['dtype']:>4} (T={r['seq_len']}, d={r['d_model']}, heads={r['n_heads']}): "
              f"sdpa {s['sdpa']:7.1f}  math {s['math']:7.1f} samples/s  math/sdpa {r['math_over_sdpa']:.2f}")
    out = ROOT / "benchmarks" / "results" / "bench_attention.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "batch": args.batch, "clock": args.clock,
                               "load_average": os.getloadavg(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
