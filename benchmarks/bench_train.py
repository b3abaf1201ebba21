"""Training throughput: `train()` against a bare PyTorch loop, MFU on this CPU, peak memory, the ladder.

    python -m benchmarks.bench_train [--quick] [--sizes 30k,100k,...] [--steps 20]

Prints a table and writes benchmarks/results/bench_train.json. Figures:
- overhead: samples/s of `scaling.train.train` / samples/s of a bare loop (same model, batch,
  precision, data path, optimizer, clipping and schedule); goal >= 0.95;
- peak: this machine's measured dense matmul FLOP/s (bf16 and fp32), since Lightning has no CPU
  peak table; MFU = flops_per_sample x samples/s / peak at the largest CPU preset (aim >= 30%);
- ladder: samples/s and peak resident memory (one subprocess per size, so memory is per run);
- start-up: process start to the first logged training step of `scaling train`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype_name: str, n: int = 2048, seconds: float = 2.0) -> float:
    """Measured dense matmul FLOP/s for square n x n matrices in `dtype_name` (bfloat16 | float32)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)  # warm-up (oneDNN kernel selection)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.matmul(a, b)
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - t0)


def bare_loop(data: str, size: str, batch: int, steps: int, precision: str) -> float:
    """samples/s of a plain PyTorch loop doing what one training step of `train` does."""
    import torch

    from scaling.config import RunConfig
    from scaling.data import open_source
    from scaling.model import VLA, param_groups
    from scaling.schedules import lr_multiplier
    from scaling.train import model_config

    cfg = RunConfig(data=data, size=size, samples=batch * steps, batch_size=batch, precision=precision)
    source = open_source(data)
    torch.manual_seed(cfg.seed)
    model = VLA(model_config(cfg, source)).train()
    groups = param_groups(model, cfg.lr, cfg.weight_decay)
    peaks = [g["lr"] for g in groups]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    idx = source.train_indices(cfg.samples, seed=cfg.seed)
    autocast = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    elapsed, t_last = 0.0, None
    for step in range(cfg.steps):
        arrays = source.get_batch(idx[step * batch:(step + 1) * batch], chunk=cfg.chunk)
        b = {k: torch.from_numpy(v) for k, v in arrays.items()}
        with torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None):
            loss, _ = model(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        mult = lr_multiplier(cfg.schedule, step, cfg.steps, cfg.warmup_steps(), cfg.min_lr_ratio)
        for g, peak in zip(opt.param_groups, peaks):
            g["lr"] = peak * mult
        opt.step()
        opt.zero_grad(set_to_none=True)
        now = time.perf_counter()
        if t_last is not None:  # like train(): the first step (warm-up) is not timed
            elapsed += now - t_last
        t_last = now
    return (cfg.steps - 1) * batch / elapsed


def train_run(data: str, size: str, batch: int, steps: int, precision: str, out: str) -> dict:
    """`train()` on the same settings; returns its result dict."""
    from scaling.config import RunConfig
    from scaling.train import train

    cfg = RunConfig(data=data, size=size, samples=batch * steps, batch_size=batch, precision=precision, out=out,
                    progress_bar=False, checkpoint_every=10**9, val_samples=64, val_every=10**12,
                    accelerator="cpu")
    return train(cfg).to_dict()


def one(args) -> None:
    """Child mode: one train() run, printing its figures and peak RSS as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        res = train_run(args.data, args.one, args.batch, args.steps, args.precision, f"{tmp}/run")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(json.dumps({"size": args.one, "n_params": res["n_params"], "flops_per_sample": res["flops_per_sample"],
                      "samples_per_second": res["samples_per_second"], "peak_rss_bytes": rss}))


def child(size: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_train", "--one", size, "--data", args.data,
           "--batch", str(args.ladder_batch), "--steps", str(args.ladder_steps), "--precision", args.precision]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def startup_seconds(data: str, tmp: str) -> float:
    """Process start to the first logged training step of `scaling train` (debug size)."""
    run = Path(tmp) / "startup"
    cmd = [sys.executable, "-m", "sweeps.cli", "train", "--data", data, "--size", "debug", "--samples", "64",
           "--batch-size", "8", "--out", str(run), "--log-every", "1", "--no-progress-bar"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run / "metrics.csv"
    while proc.poll() is None and not (metrics.exists() and len(metrics.read_text().splitlines()) > 1):
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    proc.wait()
    return elapsed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="dataset (default: a tiny tabletop dataset in a temp dir)")
    p.add_argument("--size", default="1m", help="size for the overhead comparison")
    p.add_argument("--sizes", default=None, help="comma-separated ladder (default: the CPU ladder)")
    p.add_argument("--batch", type=int, default=32, help="global batch of the overhead comparison")
    p.add_argument("--steps", type=int, default=20, help="steps of the overhead comparison")
    p.add_argument("--repeats", type=int, default=2, help="overhead: best of this many interleaved runs each")
    p.add_argument("--ladder-batch", type=int, default=8)
    p.add_argument("--ladder-steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--precision", default="bf16-mixed")
    p.add_argument("--quick", action="store_true", help="fewer steps, ladder up to 1m")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.data is None:
        from scaling.data.testing import make_tiny_dataset

        args.data = str(make_tiny_dataset(Path(tempfile.mkdtemp()) / "tiny", episodes=16, image_size=32))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # children and the start-up run
    if args.one:
        one(args)
        return 0
    from scaling.model import CPU_LADDER

    if args.quick:
        args.steps = min(args.steps, 10)
    sizes = args.sizes.split(",") if args.sizes else [s for s in CPU_LADDER
                                                      if not args.quick or s in ("30k", "100k", "300k", "1m")]
    report: dict = {"threads": __import__("torch").get_num_threads(), "precision": args.precision,
                    "batch": args.batch, "steps": args.steps, "ladder_batch": args.ladder_batch,
                    "ladder_steps": args.ladder_steps, "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        report["startup_seconds"] = startup_seconds(args.data, tmp)
        bare, ours = 0.0, 0.0
        for i in range(args.repeats):  # interleaved, best of each: the machine may be shared
            bare = max(bare, bare_loop(args.data, args.size, args.batch, args.steps, args.precision))
            ours = max(ours, train_run(args.data, args.size, args.batch, args.steps, args.precision,
                                       f"{tmp}/overhead{i}")["samples_per_second"])
    report["overhead"] = {"size": args.size, "bare_samples_per_second": bare,
                          "train_samples_per_second": ours, "ratio": ours / bare}
    report["peak_flops"] = {"bfloat16": matmul_peak("bfloat16"), "float32": matmul_peak("float32")}
    peak = report["peak_flops"]["bfloat16" if args.precision == "bf16-mixed" else "float32"]
    ladder = [child(s, args) for s in sizes]
    for row in ladder:
        row["mfu"] = row["samples_per_second"] * row["flops_per_sample"] / peak
    report["ladder"] = ladder
    print(f"threads {report['threads']}, load average {report['load_average'][0]:.1f}")
    print(f"start-up to first step: {report['startup_seconds']:.2f} s")
    o = report["overhead"]
    print(f"overhead at {o['size']}: bare {o['bare_samples_per_second']:.1f} samples/s, train() "
          f"{o['train_samples_per_second']:.1f} samples/s, ratio {o['ratio']:.3f}")
    print(f"measured matmul peak: bf16 {report['peak_flops']['bfloat16'] / 1e9:.1f} GFLOP/s, "
          f"fp32 {report['peak_flops']['float32'] / 1e9:.1f} GFLOP/s")
    print(f"{'size':>6} {'params':>10} {'samples/s':>10} {'MFU':>7} {'peak RSS':>9}")
    for r in ladder:
        print(f"{r['size']:>6} {r['n_params']:>10,} {r['samples_per_second']:>10.1f} {r['mfu']:>7.1%} "
              f"{r['peak_rss_bytes'] / 2**20:>7.0f}MB")
    out = ROOT / "benchmarks" / "results" / "bench_train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
