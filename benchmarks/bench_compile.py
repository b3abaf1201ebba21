"""Does `torch.compile` pay on this machine, at the shipped specs' sizes?

    python -m benchmarks.bench_compile [--sizes 30k,1m] [--precisions 32-true,bf16-mixed]
                                       [--patch-size 8 --keypoints 16] [--steps 40] [--threads 1]

For each size and precision, `train()` runs eagerly and with `compile=True`, interleaved (eager,
compiled, eager, compiled, ...), every run a fresh process, as in a sweep. Each compiled run shares
one `TORCHINDUCTOR_CACHE_DIR`, as the runs of a sweep do, so the first compiled run pays a cold
compile and the later ones a warm one. Figures:

- samples/s of training steps (the first step, which holds the compile, is not timed; best of the
  repeats) and their ratio compiled / eager;
- the compile cost: the compiled run's wall time minus the eager run's time for the same work
  (`wall_seconds` counts from `train()`'s start, compile included), cold (first) and warm (best
  later);
- the break-even: how many samples a run must train before the faster steps repay the warm compile
  (none when compiled steps are not faster).

Defaults are the shipped CPU specs' model family (patches of 8 px, 16 keypoint tokens, 1 thread).
Writes benchmarks/results/bench_compile.json (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(data: str, size: str, precision: str, compile_: bool, args, out: str) -> dict:
    """One `train()` run in a fresh process, as a sweep runs it (a compiled run finds only the shared
    on-disk inductor cache, not this process's in-memory one)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_compile", "--one", json.dumps(
        {"data": data, "size": size, "precision": precision, "compile": compile_, "out": out}),
        "--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads),
        "--patch-size", str(args.patch_size), "--keypoints", str(args.keypoints)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def one(spec: dict, args) -> dict:
    """Child mode: the run `spec` names, in this process."""
    from scaling.config import from_mapping
    from scaling.train import train

    cfg = from_mapping({"data.source": spec["data"], "model.size": spec["size"], "model.precision": spec["precision"],
                        "hardware.compile": spec["compile"], "out": spec["out"],
                        "data.samples": args.batch * args.steps, "optim.batch_size": args.batch,
                        "model.patch_size": args.patch_size, "model.keypoints": args.keypoints,
                        "logging.progress_bar": False, "checkpointing.every_steps": 10**9, "validation.samples": 64,
                        "validation.every_samples": 10**12, "hardware.accelerator": "cpu", "logging.logger": "csv"})
    res = train(cfg).to_dict()
    return {"samples_per_second": res["samples_per_second"], "wall_seconds": res["wall_seconds"],
            "val_loss": res["val_loss"], "n_params": res["n_params"]}


def measure(data: str, size: str, precision: str, args, tmp: str) -> dict:
    """Interleaved eager/compiled pairs of one size and precision, and what they say."""
    eager, compiled = [], []
    for rep in range(args.repeats):
        eager.append(run_once(data, size, precision, False, args, f"{tmp}/{size}-{precision}-e{rep}"))
        compiled.append(run_once(data, size, precision, True, args, f"{tmp}/{size}-{precision}-c{rep}"))
    e_sps = max(r["samples_per_second"] for r in eager)
    c_sps = max(r["samples_per_second"] for r in compiled)
    e_wall = min(r["wall_seconds"] for r in eager)
    cold = compiled[0]["wall_seconds"] - e_wall
    warm = min(r["wall_seconds"] for r in compiled[1:]) - e_wall if len(compiled) > 1 else None
    gain = 1.0 / e_sps - 1.0 / c_sps  # seconds saved per sample
    paid = warm if warm is not None else cold
    return {"size": size, "precision": precision, "n_params": eager[0]["n_params"],
            "eager_samples_per_second": e_sps, "compiled_samples_per_second": c_sps,
            "speedup": c_sps / e_sps, "compile_seconds_cold": cold, "compile_seconds_warm": warm,
            "break_even_samples": paid / gain if gain > 0 and paid > 0 else (0.0 if gain > 0 else None),
            "val_loss_eager": eager[0]["val_loss"], "val_loss_compiled": compiled[0]["val_loss"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_compile", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="dataset (default: a small tabletop dataset in a temp dir)")
    p.add_argument("--sizes", default="30k,1m", help="comma-separated sizes")
    p.add_argument("--precisions", default="32-true,bf16-mixed", help="comma-separated precisions")
    p.add_argument("--patch-size", type=int, default=8, help="patch size of the model family")
    p.add_argument("--keypoints", type=int, default=16, help="keypoint tokens of the model family")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--steps", type=int, default=40, help="steps per run (the first holds the compile)")
    p.add_argument("--repeats", type=int, default=3, help="eager/compiled pairs per cell (>= 2 for a warm figure)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_compile.json"),
                   help="where the JSON report goes")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(json.loads(args.one), args)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            from scaling.data.testing import make_tiny_dataset

            args.data = str(make_tiny_dataset(Path(tmp) / "data", episodes=64, image_size=32))
        # One inductor cache for every compiled run, as a sweep shares one: first cold, then warm.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{tmp}/inductor"
        rows = [measure(args.data, s, pr, args, tmp) for s in args.sizes.split(",")
                for pr in args.precisions.split(",")]
    from scaling.hardware import cpu_signature

    report = {"cpu": cpu_signature(args.threads), "threads": args.threads, "batch": args.batch,
              "steps": args.steps, "repeats": args.repeats, "patch_size": args.patch_size,
              "keypoints": args.keypoints, "torch": torch.__version__, "load_average": os.getloadavg(),
              "rows": rows}
    print(f"{report['cpu']['cpu']}; {args.threads} thread(s); torch {torch.__version__}; "
          f"patch {args.patch_size}, keypoints {args.keypoints}, batch {args.batch}, {args.steps} steps")
    print(f"{'size':>5} {'precision':>10} {'eager/s':>8} {'compiled/s':>10} {'speedup':>7} "
          f"{'cold s':>7} {'warm s':>7} {'break-even samples':>19}")
    for r in rows:
        warm = "-" if r["compile_seconds_warm"] is None else f"{r['compile_seconds_warm']:.1f}"
        be = "never" if r["break_even_samples"] is None else f"{r['break_even_samples']:,.0f}"
        print(f"{r['size']:>5} {r['precision']:>10} {r['eager_samples_per_second']:>8.1f} "
              f"{r['compiled_samples_per_second']:>10.1f} {r['speedup']:>7.2f} {r['compile_seconds_cold']:>7.1f} "
              f"{warm:>7} {be:>19}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    tmp_out.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
