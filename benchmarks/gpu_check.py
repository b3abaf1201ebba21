"""One prepared GPU check (<= 5 minutes): mixed precision, FSDP and MFU of `scaling train` on CUDA.

    python -m benchmarks.gpu_check [--out DIR] [--budget-steps 30]

Runs on one CUDA device:
1. `16-mixed` and `bf16-mixed` training steps of a mid-size preset (status, loss finite, samples/s);
2. FSDP (single GPU) with bf16-mixed: trains, and its last.ckpt loads with torch.load(weights_only=True);
3. MFU of bf16-mixed at a large preset against the GPU's dense bf16 peak (H200: 989 TFLOP/s), next to
   the measured bf16 matmul peak of the device.
Prints a table and writes gpu_check.json to --out (default: $OUT or ./gpu_check).
Never part of CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path


def measured_matmul_peak(n: int = 8192, iters: int = 50) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * iters / (time.perf_counter() - t0)


def run(name: str, data: str, tmp: str, **changes) -> dict:
    """One train() run; returns the row for the table (errors become a row too)."""
    import torch

    from scaling.config import RunConfig
    from scaling.train import train

    values = dict(data=data, out=f"{tmp}/{name}", accelerator="gpu", devices=1, progress_bar=False,
                  checkpoint_every=10**9, val_samples=256, log_every=5, warmup=2)
    values.update(changes)
    t0 = time.perf_counter()
    try:
        torch.cuda.reset_peak_memory_stats()
        res = train(RunConfig(**values)).to_dict()
        row = {"check": name, "ok": res["status"] == "completed" and math.isfinite(res["train_loss"] or math.nan),
               "status": res["status"], "size": values["size"], "n_params": res["n_params"],
               "precision": res["precision"], "strategy": values.get("strategy", "auto"),
               "batch": res["global_batch_size"], "train_loss": res["train_loss"], "val_loss": res["val_loss"],
               "samples_per_second": res["samples_per_second"], "mfu": res["mfu"],
               "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}
        if values.get("strategy") == "fsdp":
            ckpt = torch.load(Path(values["out"]) / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
            row["weights_only_load"] = "state_dict" in ckpt
            row["ok"] = row["ok"] and row["weights_only_load"]
    except Exception as exc:  # noqa: BLE001 - report every check, do not stop at the first failure
        traceback.print_exc()
        row = {"check": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    row["seconds"] = time.perf_counter() - t0
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_check"))
    p.add_argument("--budget-steps", type=int, default=30, help="optimizer steps per check")
    p.add_argument("--mid-size", default="10m")
    p.add_argument("--big-size", default="300m")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine", file=sys.stderr)
        return 2
    t_all = time.perf_counter()
    from scaling.config import RunConfig
    from scaling.data.testing import make_tiny_dataset
    from scaling.module import peak_flops_per_device

    tmp = tempfile.mkdtemp(prefix="gpu_check-")
    data = str(make_tiny_dataset(Path(tmp) / "data", episodes=32, image_size=64))
    name = torch.cuda.get_device_name(0)
    table_peak = peak_flops_per_device(RunConfig(data=data, accelerator="gpu"))
    measured = measured_matmul_peak()
    steps = args.budget_steps
    rows = []
    for precision in ("16-mixed", "bf16-mixed"):
        rows.append(run(f"{precision}", data, tmp, size=args.mid_size, precision=precision,
                        batch_size=128, samples=128 * steps))
    rows.append(run("fsdp-bf16", data, tmp, size=args.mid_size, precision="bf16-mixed", strategy="fsdp",
                    batch_size=128, samples=128 * steps, checkpoint_every=10))
    rows.append(run("mfu-bf16", data, tmp, size=args.big_size, precision="bf16-mixed", batch_size=256,
                    samples=256 * steps))
    print(f"\ndevice: {name}; table bf16 peak {table_peak and table_peak / 1e12} TFLOP/s; "
          f"measured bf16 matmul {measured / 1e12:.0f} TFLOP/s")
    print(f"{'check':<12} {'ok':<5} {'size':>6} {'params':>12} {'samples/s':>10} {'MFU':>7} {'MFU(meas)':>9} "
          f"{'mem GiB':>8} {'loss':>7} {'s':>6}")
    for r in rows:
        sps = r.get("samples_per_second")
        fps_ratio = (r["mfu"] * table_peak / measured) if (r.get("mfu") and table_peak) else None
        print(f"{r['check']:<12} {str(r['ok']):<5} {str(r.get('size', '')):>6} {r.get('n_params', 0):>12,} "
              f"{(sps or 0):>10.0f} {(r.get('mfu') or 0):>7.1%} {(fps_ratio or 0):>9.1%} "
              f"{r.get('peak_mem_gib', 0):>8.2f} {(r.get('train_loss') or math.nan):>7.3f} {r['seconds']:>6.1f}"
              + (f"  {r['error']}" if "error" in r else ""))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": name, "table_peak_flops": table_peak, "measured_bf16_peak_flops": measured,
              "rows": rows, "total_seconds": time.perf_counter() - t_all}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"total {report['total_seconds']:.0f} s -> {out / 'gpu_check.json'}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
