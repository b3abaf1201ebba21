"""Data benchmark: generation + write frames/s, and loader samples/s vs. training samples/s.

    python -m benchmarks.bench_data [--episodes 400] [--image-size 64] [--batch 64] [--no-train]

Prints the figures and writes them to benchmarks/results/bench_data.json (``--out``).

1. Generates a tabletop dataset (numpy renderer + scripted expert) through ``write_dataset``
   (sharding, hashing, stats) and reports end-to-end frames/s on one process; the same for a few
   Meta-World episodes at 128 px when the extra is installed (``--metaworld-episodes 0`` skips).
2. Loader: ``get_batch(train_indices, chunk)`` at batch 64, random access from the memory-mapped
   shards (first pass, then the same indices again), samples/s.
3. Training: ``scaling.train.train`` of the smallest preset (``debug``) on the same data, on CPU
   fp32, for the training samples/s the loader must stay well above (``--no-train`` skips).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_generate(out: Path, episodes: int, image_size: int, shard_frames: int) -> dict:
    import pyarrow.parquet  # noqa: F401 - one-off import cost kept out of the timing

    from scaling.data import tabletop
    from scaling.data.store import open_dataset, write_dataset

    t0 = time.perf_counter()
    path = write_dataset(tabletop.generate_episodes(episodes, seed=0, image_size=image_size), out, seed=0,
                         generator="tabletop", generator_version=str(tabletop.GENERATOR_VERSION),
                         shard_frames=shard_frames)
    dt = time.perf_counter() - t0
    ds = open_dataset(path)
    return {"episodes": ds.n_episodes, "frames": ds.n_frames, "shards": len(ds.manifest["shards"]),
            "seconds": round(dt, 3), "frames_per_s": round(ds.n_frames / dt, 1)}


def bench_metaworld(out: Path, episodes: int) -> dict | None:
    try:
        # Imported first (not in isort's order): it picks the GL backend before metaworld imports mujoco.
        from scaling.data import metaworld_source as mw  # noqa: I001
        import metaworld  # noqa: F401
    except ImportError:
        return None
    from scaling.data.store import open_dataset, write_dataset

    t0 = time.perf_counter()
    path = write_dataset(mw.generate_episodes(["reach-v3"], episodes, seed=0, image_size=128), out, seed=0,
                         generator="metaworld", generator_version="bench")
    dt = time.perf_counter() - t0
    ds = open_dataset(path)
    return {"episodes": ds.n_episodes, "frames": ds.n_frames, "seconds": round(dt, 3),
            "frames_per_s": round(ds.n_frames / dt, 1)}


def bench_loader(path: Path, batch: int, chunk: int, steps: int) -> dict:
    from scaling.data.store import open_dataset

    ds = open_dataset(path)
    idx = ds.train_indices(batch * steps, seed=0)
    out = {}
    for label in ("first", "repeat"):
        t0 = time.perf_counter()
        for s in range(steps):
            ds.get_batch(idx[s * batch:(s + 1) * batch], chunk=chunk)
        dt = time.perf_counter() - t0
        out[f"{label}_samples_per_s"] = round(batch * steps / dt, 1)
    out["batch"], out["chunk"] = batch, chunk
    return out


def bench_step(path: Path, batch: int, steps: int) -> dict:
    """A bare PyTorch loop (get_batch -> loss -> backward -> AdamW) of the ``debug`` model on CPU fp32."""
    import torch

    from scaling.config import from_mapping
    from scaling.data.store import open_dataset
    from scaling.model.family import dims_of, run_model

    ds = open_dataset(path)
    # the model `scaling train` builds
    resolved = run_model(from_mapping({"data.source": str(path), "model.size": "debug"}), dims_of(ds))
    torch.manual_seed(0)
    model = resolved.build()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    idx = ds.train_indices(batch * (steps + 2))
    load_s = 0.0
    for s in range(steps + 2):
        if s == 2:  # two warm-up steps (allocator, kernels) are not timed
            t0, load_s = time.perf_counter(), 0.0
        t1 = time.perf_counter()
        b = {k: torch.from_numpy(v) for k, v in ds.get_batch(idx[s * batch:(s + 1) * batch]).items()}
        load_s += time.perf_counter() - t1
        loss, _ = model.loss(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    return {"size": "debug", "n_params": resolved.n_params, "samples_per_s": round(batch * steps / dt, 1),
            "loader_share": round(load_s / dt, 4)}


def bench_train(path: Path, batch: int, samples: int, run_dir: Path) -> dict:
    from scaling.config import resolve
    from scaling.train import train

    cfg = resolve(None, {"data": str(path), "size": "debug", "samples": samples, "batch_size": batch,
                         "out": str(run_dir), "precision": "32-true", "accelerator": "cpu",
                         "progress_bar": False, "logger": "csv", "eval_episodes": 0})
    result = train(cfg)
    return {"size": "debug", "n_params": result.n_params, "samples": samples,
            "samples_per_s": round(float(result.samples_per_second), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=400)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--shard-frames", type=int, default=1024, help="small shards so random access spans many")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--no-train", dest="train", action="store_false", help="skip the training comparison")
    ap.add_argument("--metaworld-episodes", type=int, default=2, help="Meta-World episodes (0 skips)")
    ap.add_argument("--train-samples", type=int, default=2048, help="samples for scaling.train.train")
    ap.add_argument("--step-count", type=int, default=20, help="timed steps of the bare train loop")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_data.json",
                    help="where to write the JSON figures")
    args = ap.parse_args(argv)
    np.set_printoptions(precision=3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tabletop"
        gen = bench_generate(path, args.episodes, args.image_size, args.shard_frames)
        print(f"generate+write tabletop {args.image_size}px: {gen['frames']} frames in {gen['shards']} shards, "
              f"{gen['frames_per_s']:.0f} frames/s (1 process)")
        mw = bench_metaworld(Path(tmp) / "mw", args.metaworld_episodes) if args.metaworld_episodes > 0 else None
        print("generate+write metaworld 128px: " + (f"{mw['frames']} frames, {mw['frames_per_s']:.0f} frames/s"
                                                    " (1 process, includes environment start-up)"
                                                    if mw else "skipped (extra not installed or disabled)"))
        load = bench_loader(path, args.batch, args.chunk, args.steps)
        print(f"loader get_batch (batch {args.batch}, chunk {args.chunk}, mmap random access): "
              f"first pass {load['first_samples_per_s']:.0f} samples/s, "
              f"repeat {load['repeat_samples_per_s']:.0f} samples/s")
        result = {"generate": gen, "generate_metaworld": mw, "loader": load}
        if args.train:
            step = bench_step(path, args.batch, args.step_count)
            print(f"bare train loop (debug model, {step['n_params']} params, CPU fp32): {step['samples_per_s']:.0f} "
                  f"samples/s, of which get_batch takes {100 * step['loader_share']:.1f}% of the time")
            result["train_step"] = step
            tr = bench_train(path, args.batch, args.train_samples, Path(tmp) / "run")
            ratio = load["first_samples_per_s"] / max(tr["samples_per_s"], 1e-9)
            print(f"scaling.train.train (debug model, CPU fp32, whole run incl. start-up): "
                  f"{tr['samples_per_s']:.0f} samples/s -> loader is {ratio:.0f}x faster")
            result["train"] = tr
            result["loader_over_train"] = round(ratio, 2)
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)  # atomic: a reader never sees half a file
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
