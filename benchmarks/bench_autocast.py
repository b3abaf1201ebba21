"""bf16 autocast on CPU with and without the weight-cast cache, one training step of the 1m preset.

    python -m benchmarks.bench_autocast [--size 1m] [--batch 64] [--steps 10] [--threads 1]

The training loop uses torch's default (cache on); this measures it against ``cache_enabled=False``.
Each step is forward + backward + AdamW under `torch.autocast("cpu", bfloat16)`;
the two settings alternate step by step in one process, so load on the machine hits both alike.
Prints samples/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1m")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    from scaling.config import from_mapping
    from scaling.data import open_source
    from scaling.data.testing import make_tiny_dataset
    from scaling.model import VLA
    from scaling.train import model_config

    torch.set_num_threads(args.threads)
    data = make_tiny_dataset(Path(tempfile.mkdtemp()) / "d", episodes=16, image_size=64, seed=0)
    source = open_source(str(data))
    cfg = from_mapping({"data.source": str(data), "model.size": args.size})
    model = VLA(model_config(cfg, source)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    idx = source.train_indices(args.batch)
    batch = {k: torch.from_numpy(v) for k, v in source.get_batch(idx).items()}
    seconds = {True: 0.0, False: 0.0}
    for step in range(2 * args.steps + 2):
        cache = bool(step % 2)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache):
            loss, _ = model(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= 2:  # the first step of each setting warms up oneDNN
            seconds[cache] += time.perf_counter() - t0
    sps = {k: args.steps * args.batch / v for k, v in seconds.items()}
    print(f"{args.size} bf16 autocast, batch {args.batch}, {args.threads} thread(s): cache off {sps[False]:.1f} "
          f"samples/s, cache on {sps[True]:.1f} samples/s, ratio {sps[True] / sps[False]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
