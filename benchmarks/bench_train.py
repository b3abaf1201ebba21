"""Training throughput on this CPU: precisions, MFU, `precision: auto`, `train()` against a bare loop.

    python -m benchmarks.bench_train [--quick] [--sizes 1m,3m] [--steps 10] [--ladder] [--threads N]

Prints a table and writes benchmarks/results/bench_train.json (`--out`). `--patch-size 8 --keypoints 16`
measures the CPU specs' model family instead of the default one. Figures (ratios from one run, the
variants interleaved repeat by repeat, best of `--repeats` each, since the machine may be shared):

- peaks: this CPU's measured dense matmul FLOP/s per dtype at the run's thread count
  (`scaling.hardware`, measured fresh here); MFU = flops_per_sample x samples/s / the FASTEST
  dtype's peak, whatever precision ran;
- per size (default 1m and 3m), samples/s and MFU of
  - `train()` in 32-true and in bf16-mixed (the loop as it is),
  - a bare PyTorch loop doing the same work (same model, batch, data path, optimizer, clipping and
    schedule) in 32-true and in bf16 autocast as train()'s Fabric loop runs it (weight cache on, the
    model's "auto" attention kernel: explicit math under CPU autocast), and in bf16 with torch's SDPA
    kernel (the "(before)" variant; on CPUs its bf16 flash-attention backward is the slowest op of a step);
  - `precision: auto` (resolved by a fresh probe) against the better of train()'s two precisions
    (goal: >= 0.95);
  - train() / bare loop of the same precision (goal: >= 0.95);
- with `--ladder`: samples/s and peak resident memory per CPU preset (one subprocess per size).
Start-up from a sweep's claim to the first step: `python -m benchmarks.bench_sweep`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE_VARIANTS = {
    # name: (precision, autocast weight cache, attention kernel: `scaling.model.vla.ATTENTION`)
    "bare 32-true": ("32-true", True, "auto"),
    "bare bf16-mixed": ("bf16-mixed", True, "auto"),  # as train()'s Fabric loop: cache on, math attention
    "bare bf16, SDPA attention (before)": ("bf16-mixed", True, "sdpa"),
}


def bare_loop(data: str, size: str, batch: int, steps: int, precision: str, cache: bool = True,
              attention: str = "auto", family: dict | None = None) -> float:
    """samples/s of a plain PyTorch loop doing what one training step of `train` does."""
    import torch

    from scaling.config import from_mapping
    from scaling.data import open_source
    from scaling.model import VLA, param_groups
    from scaling.schedules import lr_multiplier
    from scaling.train import model_config

    cfg = from_mapping({"data.source": data, "model.size": size, "data.samples": batch * steps,
                        "optim.batch_size": batch, "model.precision": precision, **(family or {})})
    source = open_source(data)
    torch.manual_seed(cfg.seed)
    model = VLA(model_config(cfg, source)).train()
    groups = param_groups(model, cfg.optim.lr, cfg.optim.weight_decay)
    peaks = [g["lr"] for g in groups]
    opt = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                            weight_decay=cfg.optim.weight_decay)
    idx = source.train_indices(cfg.data.samples, seed=cfg.seed)
    autocast = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    @contextlib.contextmanager
    def kernel():
        import scaling.model.vla as vla

        saved, vla.ATTENTION = vla.ATTENTION, attention
        try:
            yield
        finally:
            vla.ATTENTION = saved
    elapsed, t_last = 0.0, None
    for step in range(cfg.steps):
        arrays = source.get_batch(idx[step * batch:(step + 1) * batch], chunk=cfg.model.chunk)
        b = {k: torch.from_numpy(v) for k, v in arrays.items()}
        with kernel(), torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None,
                                      cache_enabled=cache):
            loss, _ = model(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        mult = lr_multiplier(cfg.schedule.name, step, cfg.steps, cfg.warmup_steps, cfg.schedule.min_lr_ratio)
        for g, peak in zip(opt.param_groups, peaks):
            g["lr"] = peak * mult
        opt.step()
        opt.zero_grad(set_to_none=True)
        now = time.perf_counter()
        if t_last is not None:  # like train(): the first step (warm-up) is not timed
            elapsed += now - t_last
        t_last = now
    return (cfg.steps - 1) * batch / elapsed


def train_run(data: str, size: str, batch: int, steps: int, precision: str, out: str,
              family: dict | None = None) -> dict:
    """`train()` on the same settings; returns its result dict."""
    from scaling.config import from_mapping
    from scaling.train import train

    cfg = from_mapping({"data.source": data, "model.size": size, "data.samples": batch * steps,
                        "optim.batch_size": batch, "model.precision": precision, "out": out,
                        "logging.progress_bar": False, "checkpointing.every_steps": 10**9, "validation.samples": 64,
                        "validation.every_samples": 10**12, "hardware.accelerator": "cpu", **(family or {})})
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


def precision_table(args, size: str, peak: float, tmp: str) -> dict:
    """samples/s and MFU of every variant at `size`, the auto choice, and the overhead ratios."""
    from scaling.config import from_mapping
    from scaling.data import open_source
    from scaling.hardware import resolve_precision
    from scaling.model.family import dims_of, run_model

    cfg = from_mapping({"data.source": args.data, "model.size": size, "data.samples": args.batch * args.steps,
                        "optim.batch_size": args.batch, **args.family})
    model = run_model(cfg, dims_of(open_source(args.data)))  # the model train() builds for these settings
    fps = model.flops_per_sample
    best: dict[str, float] = {}
    for rep in range(args.repeats):  # interleaved, best of each: the machine may be shared
        for precision in ("32-true", "bf16-mixed"):
            res = train_run(args.data, size, args.batch, args.steps, precision, f"{tmp}/{size}-{precision}-{rep}",
                            args.family)
            name = f"train() {precision}"
            best[name] = max(best.get(name, 0.0), res["samples_per_second"])
        for name, (precision, cache, attention) in BARE_VARIANTS.items():
            sps = bare_loop(args.data, size, args.batch, args.steps, precision, cache, attention, args.family)
            best[name] = max(best.get(name, 0.0), sps)
    chosen, why = resolve_precision("auto", "cpu", None, model=model, batch_size=args.batch)
    better = max(best["train() 32-true"], best["train() bf16-mixed"])
    return {
        "size": size, "n_params": model.n_params, "flops_per_sample": fps,
        "samples_per_second": best,
        "mfu": {k: v * fps / peak for k, v in best.items()},
        "auto": {"precision": chosen, "why": why,
                 "ratio_to_better": best[f"train() {chosen}"] / better},
        "train_over_bare": {"32-true": best["train() 32-true"] / best["bare 32-true"],
                            "bf16-mixed": best["train() bf16-mixed"] / best["bare bf16-mixed"]},
        "bf16_over_sdpa": best["train() bf16-mixed"] / best["bare bf16, SDPA attention (before)"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="dataset (default: a tiny tabletop dataset in a temp dir)")
    p.add_argument("--sizes", default="1m,3m", help="comma-separated sizes of the precision table")
    p.add_argument("--batch", type=int, default=32, help="global batch")
    p.add_argument("--steps", type=int, default=10, help="steps per measurement (the first is not timed)")
    p.add_argument("--repeats", type=int, default=2, help="best of this many interleaved runs each")
    p.add_argument("--ladder", action="store_true", help="also the per-size ladder (one subprocess each)")
    p.add_argument("--ladder-batch", type=int, default=8)
    p.add_argument("--ladder-steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--precision", default="bf16-mixed", help="precision of the ladder")
    p.add_argument("--patch-size", type=int, default=None, help="patch size of the precision table's models "
                   "(default: the model family's)")
    p.add_argument("--keypoints", type=int, default=0, help="keypoint tokens of the precision table's models "
                   "(the CPU specs use --patch-size 8 --keypoints 16)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_train.json"),
                   help="where the JSON report goes")
    p.add_argument("--quick", action="store_true", help="1m only, fewer steps, one repeat")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.family = {"model.keypoints": args.keypoints,
                   **({"model.patch_size": args.patch_size} if args.patch_size else {})}
    if args.data is None:
        from scaling.data.testing import make_tiny_dataset

        args.data = str(make_tiny_dataset(Path(tempfile.mkdtemp()) / "tiny", episodes=16, image_size=32))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # children
    if args.one:
        one(args)
        return 0
    import torch

    from scaling import hardware

    if args.quick:
        args.sizes, args.steps, args.repeats = "1m", min(args.steps, 6), 1
    os.environ["SCALING_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-train-cache-")  # measure afresh
    threads = torch.get_num_threads()
    peaks, source = hardware.cpu_peaks(threads)
    peak = hardware.mfu_peak("cpu", threads)
    report: dict = {"threads": threads, "cpu": hardware.cpu_signature(threads), "batch": args.batch,
                    "model_family": args.family,
                    "steps": args.steps, "repeats": args.repeats, "load_average_start": os.getloadavg(),
                    "peak_flops": peaks, "peak_source": source, "mfu_peak": peak.value, "mfu_dtype": peak.dtype}
    with tempfile.TemporaryDirectory() as tmp:
        report["sizes"] = [precision_table(args, size, peak.value, tmp) for size in args.sizes.split(",")]
    if args.ladder:
        from scaling.model import CPU_LADDER

        report["ladder"] = [child(s, args) for s in CPU_LADDER]
        for row in report["ladder"]:
            row["mfu"] = row["samples_per_second"] * row["flops_per_sample"] / peak.value
    report["load_average_end"] = os.getloadavg()
    _print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    tmp_out.replace(out)
    return 0


def _print(report: dict) -> None:
    cpu = report["cpu"]
    print(f"{cpu['cpu']}, flags {' '.join(cpu['flags'])}; {report['threads']} threads; load average "
          f"{report['load_average_start'][0]:.1f} -> {report['load_average_end'][0]:.1f}")
    print("matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in report["peak_flops"].items())
          + f"; MFU against {report['mfu_dtype']}")
    if report["model_family"].get("keypoints") or report["model_family"].get("patch_size"):
        print("model family: " + ", ".join(f"{k} {v}" for k, v in report["model_family"].items()))
    for row in report["sizes"]:
        print(f"\n{row['size']} ({row['n_params']:,} parameters, {row['flops_per_sample']:.3g} FLOPs/sample), "
              f"batch {report['batch']}:")
        for name, sps in row["samples_per_second"].items():
            print(f"  {name:<38} {sps:>8.1f} samples/s  MFU {row['mfu'][name]:6.1%}")
        a = row["auto"]
        print(f"  precision auto -> {a['precision']}: {a['ratio_to_better']:.3f} of the better (goal >= 0.95)")
        t = row["train_over_bare"]
        print(f"  train() / bare loop: 32-true {t['32-true']:.3f}, bf16-mixed {t['bf16-mixed']:.3f} (goal >= 0.95)")
        print(f"  train() bf16 / bare bf16 with SDPA attention (the kernel before): {row['bf16_over_sdpa']:.2f}x "
              f"(goal: 2x the bf16 of before)")
    if report.get("ladder"):
        print(f"\n{'size':>6} {'params':>10} {'samples/s':>10} {'MFU':>7} {'peak RSS':>9}")
        for r in report["ladder"]:
            print(f"{r['size']:>6} {r['n_params']:>10,} {r['samples_per_second']:>10.1f} {r['mfu']:>7.1%} "
                  f"{r['peak_rss_bytes'] / 2**20:>7.0f}MB")


if __name__ == "__main__":
    sys.exit(main())
