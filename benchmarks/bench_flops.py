"""Model accounting benchmark: parameters and training FLOPs per sample for every preset.

    python -m benchmarks.bench_flops [--image-size 64] [--vocab-size 64] [--max-instr-len 16]
        [--proprio-dim 4] [--action-dim 3] [--chunk 1] [--head discrete] [--json] [--time]

For each preset: the solved shape, total and non-embedding parameters, the exact training FLOPs
per sample (`flops_per_sample`), Kaplan's 6 N D approximation (N non-embedding, D tokens per
sample), and torch's own count (`FlopCounterMode` on one forward + backward; models are built on
the meta device, so even the 1e9 preset costs no memory; attention on the math SDPA backend,
whose matmuls the counter sees). With `--time`, CPU ladder presets also run real forward +
backward passes at batch 8 and report achieved GFLOP/s from the exact count.
Defaults are the tabletop dataset's dimensions (64 px, 3-D actions, 4-D proprioception).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from scaling.config import from_mapping
from scaling.model import PRESETS, VLA, ModelConfig, approx_6nd, count_params, flops_per_sample
from scaling.model.accounting import attention_fraction
from scaling.model.family import Dims, run_model
from scaling.model.testing import random_batch


def torch_counted_flops(cfg: ModelConfig, batch_size: int = 2) -> float:
    """Training FLOPs per sample as torch's FlopCounterMode counts them (meta device)."""
    batch = {k: v.to("meta") for k, v in random_batch(cfg, batch_size).items()}
    with torch.device("meta"):
        model = VLA(cfg)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.loss(batch)[0].backward()
    return counter.get_total_flops() / batch_size


def timed_gflops(cfg: ModelConfig, batch_size: int = 8, steps: int = 3) -> float:
    """Achieved training GFLOP/s on this CPU (fp32, default SDPA kernel), from the exact count."""
    model, batch = VLA(cfg), random_batch(cfg, batch_size)
    model.loss(batch)[0].backward()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        model.loss(batch)[0].backward()
    return flops_per_sample(cfg) * batch_size * steps / (time.perf_counter() - start) / 1e9


def row(name: str, cfg: ModelConfig, timed: bool) -> dict:
    total, nonembed = count_params(cfg)
    exact, counted = flops_per_sample(cfg), torch_counted_flops(cfg)
    return {
        "preset": name, "d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
        "seq_len": cfg.seq_len, "n_params": total, "n_params_nonembed": nonembed,
        "flops_per_sample": exact, "approx_6nd": approx_6nd(cfg), "torch_counted": counted,
        "exact_vs_torch": exact / counted, "exact_vs_6nd": exact / approx_6nd(cfg),
        "attention_share": attention_fraction(cfg),
        "gflops_per_s": timed_gflops(cfg) if timed and PRESETS[name].device == "cpu" else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=64)
    parser.add_argument("--max-instr-len", type=int, default=16)
    parser.add_argument("--proprio-dim", type=int, default=4)
    parser.add_argument("--action-dim", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=1)
    parser.add_argument("--head", default="discrete", choices=["discrete", "mse", "flow"])
    parser.add_argument("--json", action="store_true", help="one JSON object per preset")
    parser.add_argument("--time", action="store_true", help="also time real CPU passes")
    args = parser.parse_args(argv)
    dims = Dims(image_size=args.image_size, vocab_size=args.vocab_size, max_instr_len=args.max_instr_len,
                proprio_dim=args.proprio_dim, action_dim=args.action_dim)
    # Each preset as `scaling train --size NAME --chunk --head` builds it on data of these dims.
    rows = [row(name, run_model(from_mapping({"data.source": "(bench)", "model.size": name, "model.chunk": args.chunk,
                                              "model.head": args.head}), dims).config,
                args.time) for name in PRESETS]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"data dims: {dims.to_dict() | {'chunk': args.chunk, 'head': args.head}}")
    print(f"{'preset':>6} {'shape d x L / h':>16} {'T':>4} {'params':>10} {'non-emb':>10} "
          f"{'FLOPs/sample':>12} {'6ND':>10} {'torch':>10} {'ex/torch':>8} {'ex/6ND':>6} "
          f"{'attn':>5} {'GFLOP/s':>7}")
    for r in rows:
        gf = f"{r['gflops_per_s']:7.1f}" if r["gflops_per_s"] is not None else f"{'-':>7}"
        shape = f"{r['d_model']}x{r['n_layers']}/{r['n_heads']}"
        print(f"{r['preset']:>6} {shape:>16} {r['seq_len']:4d} {r['n_params']:10.4g} "
              f"{r['n_params_nonembed']:10.4g} {r['flops_per_sample']:12.4g} "
              f"{r['approx_6nd']:10.4g} {r['torch_counted']:10.4g} {r['exact_vs_torch']:8.4f} "
              f"{r['exact_vs_6nd']:6.3f} {r['attention_share']:5.1%} {gf}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
