"""One prepared GPU check (<= 5 minutes on 1-8 GPUs): precision, DDP, FSDP, resume and MFU of `scaling train`.

    python -m benchmarks.gpu_check [--out DIR] [--budget-steps 30] [--gpus N]
    python -m benchmarks.gpu_check --dry-run          # print the plan (no GPU needed)
    python -m benchmarks.gpu_check --cpu              # run the same plan on 2 CPU processes (gloo), tiny

Every check is one `scaling train` process (multi-device runs start their own workers), so what is
checked is exactly what users run. On one GPU:
1. `16-mixed` and `bf16-mixed` at a mid-size preset: completes, finite loss, samples/s, MFU; and
   bf16-mixed with the keypoint stem (`--keypoints 16`, the CPU specs' vision path);
2. MFU of bf16-mixed at a large preset against the device's dense bf16 peak (table) and the measured
   bf16 matmul peak;
3. two seeds trained together in one process (`--seeds 0,1`, bf16-mixed): both members complete and
   seed 0's val_loss is within 2% of the 1-GPU bf16 run's (the same run, trained beside another); and
   four seeds of a 1e5-parameter model together against one alone (the ensemble's cost on the device);
4. the conv family (bf16-mixed), `--precision auto` resolved on the device, and `--compile` (Triton):
   each completes, auto and compile within 2% of the bf16 run.
With 2+ GPUs, also (N = all GPUs, one node):
5. DDP x N and FSDP x N with bf16-mixed, and FSDP x N with 16-mixed: val_loss within 2% of the 1-GPU
   bf16 run of the same config (same global batch and samples);
6. the FSDP run's stable checkpoint loads with torch.load(weights_only=True) and resumes on 1 GPU to the
   same val_loss (a different world size and strategy).
Prints a table and writes gpu_check.json to --out (default: $OUT or ./gpu_check). Never part of CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARITY = 0.02  # the bar: val_loss of DDP/FSDP within 2% of one device


def plan(n_devices: int, steps: int, mid: str, big: str, cpu: bool) -> list[dict]:
    """The checks, in order: name, flags of `scaling train`, and what each is compared with."""
    batch = 16 if cpu else 128
    precisions = ("bf16-mixed",) if cpu else ("16-mixed", "bf16-mixed")  # fp16 autocast needs CUDA
    base = dict(size=mid, batch_size=batch, samples=batch * steps, checkpoint_at=batch * (steps // 2),
                val_samples=64 if cpu else 512, warmup=2, log_every=5, checkpoint_every=10**6)
    checks = [dict(name=f"1x {p}", flags={**base, "precision": p, "devices": 1}) for p in precisions]
    # The keypoint stem (conv + soft-argmax tokens) of the shipped CPU specs, on the device's bf16 path,
    # conditioned on the instruction (FiLM) as in sweeps/cpu_study_film.yaml.
    checks.append(dict(name="1x bf16 keypoints", flags={**base, "precision": "bf16-mixed", "devices": 1,
                                                          "keypoints": 16}))
    checks.append(dict(name="1x bf16 keypoints film", flags={**base, "precision": "bf16-mixed", "devices": 1,
                                                               "keypoints": 16, "film": True}))
    reference = "1x bf16-mixed"
    # Two seeds trained together in one process (`scaling train --seeds`): its seed 0 is the reference run.
    checks.append(dict(name="1x bf16 seeds 0,1", flags={**base, "precision": "bf16-mixed", "devices": 1,
                                                        "seeds": "0,1"}, parity=reference))
    # A second model family through the same seam (scaling.model.conv: ResNet + FiLM), `precision: auto`
    # resolved on the device, and torch.compile (Triton kernels on CUDA; skipped on CPUs: minutes of C++).
    checks.append(dict(name="1x bf16 conv", flags={**base, "precision": "bf16-mixed", "devices": 1,
                                                   "family": "conv", "size": "30k" if cpu else mid}))
    checks.append(dict(name="1x auto", flags={**base, "precision": "auto", "devices": 1}, parity=reference))
    if not cpu:
        checks.append(dict(name="1x bf16 compile", flags={**base, "precision": "bf16-mixed", "devices": 1,
                                                          "compile": True}, parity=reference))
    # Ensemble cost on the device at a size where a step is kernel launches: four seeds together against one.
    small = dict(base, size="debug" if cpu else "100k", samples=batch * steps * 4, checkpoint_at=batch * steps)
    checks.append(dict(name="1x bf16 small", flags={**small, "precision": "bf16-mixed", "devices": 1}))
    checks.append(dict(name="1x bf16 small seeds 0-3", flags={**small, "precision": "bf16-mixed", "devices": 1,
                                                              "seeds": "0,1,2,3"}, parity="1x bf16 small"))
    if n_devices >= 2:
        n = n_devices
        checks += [
            dict(name=f"ddp{n} bf16", flags={**base, "precision": "bf16-mixed", "devices": n, "strategy": "ddp"},
                 parity=reference),
            dict(name=f"fsdp{n} bf16", flags={**base, "precision": "bf16-mixed", "devices": n,
                                              "strategy": "fsdp", "eval_episodes": 2}, parity=reference),
        ]
        if not cpu:
            checks.append(dict(name=f"fsdp{n} 16-mixed", flags={**base, "precision": "16-mixed", "devices": n,
                                                              "strategy": "fsdp"}, parity=reference))
        checks.append(dict(name=f"fsdp{n}->1 resume", flags={**base, "precision": "bf16-mixed", "devices": 1},
                           resume_from=f"fsdp{n} bf16", parity=f"fsdp{n} bf16"))
    if not cpu:
        big_batch = 256
        checks.append(dict(name="mfu bf16", flags=dict(size=big, batch_size=big_batch, samples=big_batch * steps,
                                                       precision="bf16-mixed", devices=1, val_samples=256,
                                                       warmup=2, log_every=5, checkpoint_every=10**6)))
    return checks


def flag_args(flags: dict) -> list[str]:
    """`scaling train` arguments for a check's flags; booleans are switches (--film / --no-film)."""
    args = []
    for key, value in flags.items():
        name = key.replace("_", "-")
        args += ([f"--{name}" if value else f"--no-{name}"] if isinstance(value, bool) else [f"--{name}", str(value)])
    return args


def command(data: str, out: Path, flags: dict, accelerator: str) -> list[str]:
    return [sys.executable, "-m", "sweeps.cli", "train", "--no-progress-bar", "--data", data, "--out", str(out),
            "--accelerator", accelerator, *flag_args(flags)]


def run_check(check: dict, data: str, tmp: Path, accelerator: str, done: dict) -> dict:
    """One `scaling train` process; returns its row (errors become a row too)."""
    out = tmp / check["name"].replace(" ", "_").replace(">", "")
    if "resume_from" in check:  # start from the other run's stable (mid-run) checkpoint
        source = tmp / check["resume_from"].replace(" ", "_")
        stable = next((source / "checkpoints").glob("stable-*.ckpt"), None)
        if stable is not None:
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            shutil.copy(stable, out / "checkpoints" / "last.ckpt")
    t0 = time.perf_counter()
    proc = subprocess.run(command(data, out, check["flags"], accelerator), cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    row = {"check": check["name"], "seconds": round(time.perf_counter() - t0, 1), **{
        k: check["flags"].get(k) for k in ("size", "precision", "devices", "strategy")}}
    seeds = str(check["flags"]["seeds"]).split(",") if "seeds" in check["flags"] else []
    results = [out / f"seed-{s}" / "result.json" for s in seeds] or [out / "result.json"]  # an ensemble's members
    if proc.returncode != 0 or not all(r.exists() for r in results):
        row.update(ok=False, error=proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "failed")
        return row
    res = json.loads(results[0].read_text())
    row.update({k: res[k] for k in ("status", "n_params", "precision", "world_size", "train_loss", "val_loss",
                                    "samples_per_second", "mfu", "peak_flops", "success_rate")})
    row["ok"] = res["status"] == "completed" and math.isfinite(res["val_loss"] or math.nan)
    if seeds:
        members = [json.loads(r.read_text()) for r in results]
        row["samples_per_second"] = sum(m["samples_per_second"] or 0 for m in members)  # the ensemble's
        row["ok"] = row["ok"] and all(m["status"] == "completed" for m in members)
    if "resume_from" in check:
        row["resumed"] = "resuming from" in proc.stderr
        row["ok"] = row["ok"] and row["resumed"]
    if check["flags"].get("strategy") == "fsdp":
        import torch

        ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
        row["weights_only_load"] = "state_dict" in ckpt
        row["ok"] = row["ok"] and row["weights_only_load"]
        if check["flags"].get("eval_episodes"):
            row["ok"] = row["ok"] and res["success_rate"] is not None
    ref = done.get(check.get("parity", ""))
    if ref and ref.get("val_loss") and row.get("val_loss"):
        row["val_loss_vs_ref"] = row["val_loss"] / ref["val_loss"] - 1
        row["ok"] = row["ok"] and abs(row["val_loss_vs_ref"]) <= PARITY
    return row


def measured_matmul_peak(n: int = 8192, iters: int = 50) -> float:
    """Dense bf16 matmul FLOP/s on the first CUDA device."""
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_check"), help="folder for gpu_check.json")
    p.add_argument("--budget-steps", type=int, default=30, help="optimizer steps per check")
    p.add_argument("--mid-size", default="10m", help="preset of the precision/strategy checks")
    p.add_argument("--big-size", default="300m", help="preset of the MFU check")
    p.add_argument("--gpus", type=int, default=None, help="devices for the DDP/FSDP checks (default: all)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (no GPU needed)")
    p.add_argument("--cpu", action="store_true", help="run the plan on 2 CPU processes over gloo (tiny sizes)")
    args = p.parse_args(argv)
    import torch

    cpu = args.cpu
    n = 2 if cpu else (args.gpus or torch.cuda.device_count())
    checks = plan(max(n, 2) if args.dry_run else n, args.budget_steps if not cpu else 8,
                  "debug" if cpu else args.mid_size, args.big_size, cpu)
    if args.dry_run:
        for c in checks:
            extra = f"  (resume from {c['resume_from']})" if "resume_from" in c else ""
            extra += f"  (val_loss within {PARITY:.0%} of {c['parity']})" if "parity" in c else ""
            print(f"{c['name']:<20} scaling train " + " ".join(flag_args(c["flags"])) + extra)
        return 0
    if not cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine (or --cpu, --dry-run)", file=sys.stderr)
        return 2
    t_all = time.perf_counter()
    from scaling.data.testing import make_tiny_dataset

    tmp = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    data = str(make_tiny_dataset(tmp / "data", episodes=8 if cpu else 32, image_size=32 if cpu else 64))
    name = "cpu (gloo)" if cpu else torch.cuda.get_device_name(0)
    measured = None if cpu else measured_matmul_peak()
    rows: dict[str, dict] = {}
    for check in checks:
        rows[check["name"]] = run_check(check, data, tmp, "cpu" if cpu else "gpu", rows)
        r = rows[check["name"]]
        print(f"{r['check']:<20} ok={r['ok']!s:<5} val_loss={r.get('val_loss') or math.nan:.4f} "
              f"vs_ref={r.get('val_loss_vs_ref', math.nan):+.2%} samples/s={r.get('samples_per_second') or 0:.0f} "
              f"mfu={r.get('mfu') or 0:.1%} {r['seconds']:.0f}s" + (f"  {r['error']}" if "error" in r else ""),
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"device": name, "devices": n, "measured_bf16_peak_flops": measured, "rows": list(rows.values()),
              "total_seconds": time.perf_counter() - t_all}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    if measured:
        print(f"device: {name} x{n}; measured bf16 matmul {measured / 1e12:.0f} TFLOP/s")
    print(f"total {report['total_seconds']:.0f} s -> {out / 'gpu_check.json'}")
    return 0 if all(r["ok"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
