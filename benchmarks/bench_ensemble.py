"""Seeds trained together (`scaling train --seeds`) against separate runs, on the same cores.

    taskset -c 0 python -m benchmarks.bench_ensemble [--quick] [--sizes 15k,100k,500k,1m] [--ks 1,2,4,8]
        [--precisions 32-true,bf16-mixed] [--steps 12] [--repeats 2] [--threads 1] [--no-end-to-end]

Prints a table per precision and writes benchmarks/results/bench_ensemble.json (`--out`). The
goal is for one CPU thread (`taskset -c 0`, `--threads 1`, the defaults' thread count): four seeds
together cost at most 1.5x one seed at 1e5 parameters and 2.5x at 1e6. Per size, precision and k:

- `cost`: what k seeds together cost in units of one seed, k x the solo run's samples/s / the
  ensemble's (its members' samples/s summed), both as `train()` and `train_ensemble` record them (timed
  training steps only). k separate runs on the same cores cost k at best: a core runs one step at a time.
- `end to end` (k > 1): wall seconds of k `scaling train --seed S` processes started together on the
  benchmark's cores, over those of one `scaling train --seeds 0,...` process (start-up, data,
  validation and result writing included, so it depends on `--steps`).
- Bare loops (no Fabric; the same data path, AdamW groups, per-member clipping and schedule), each in
  units of one model's bare step: `loop` steps the k models one after another (what the ensemble
  does); `vmap` steps batched weights (`torch.func.stack_module_state`, `functional_call` under `vmap`,
  AdamW over the stacked weights: the same update as k AdamWs; attention as explicit matmuls, since
  torch's fused CPU kernel has no vmap rule and would fall back to a per-sample loop); `bound` is one
  model at k x the batch, a floor no batching of k models' weights can go under, because at these
  sizes and batch 32 a step's time grows with its samples, not with its operations.

The variants are interleaved repeat by repeat, best of `--repeats` each, since the machine may be shared.
The default model family is the CPU study's (`--patch-size 8 --keypoints 16`, 32x32 images, batch 32).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vla_core.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"100k": 1.5, "1m": 2.5}
"""The goal: at k = 4 on one thread, the cost of four seeds together (x one seed) at these sizes."""
BARE = ("loop", "vmap", "bound")


def run_config(args, size: str, precision: str, out: str, **changes):
    """The RunConfig every measured run shares: one batch per step, validation and checkpoints only at the end."""
    from scaling.config import from_mapping

    values = {"data": {"source": args.data, "samples": args.batch * args.steps}, "out": out,
              "model": {"size": size, "precision": precision}, "optim.batch_size": args.batch,
              "hardware": {"accelerator": "cpu", "threads": args.threads, "peak_flops": 1e12},
              "logging.progress_bar": False, "checkpointing": {"every_steps": 10**9, "every_minutes": 0},
              "validation": {"samples": 32, "every_samples": 10**12}, **args.family}
    values.update(changes)  # dotted names
    return from_mapping(values)


def solo_sps(args, size: str, precision: str, tmp: str) -> float:
    """samples/s of one `train()` run (its timed steps)."""
    from scaling.train import train

    return train(run_config(args, size, precision, tempfile.mkdtemp(dir=tmp))).samples_per_second


def ensemble_sps(args, size: str, precision: str, k: int, tmp: str) -> float:
    """samples/s of `train_ensemble` with seeds 0..k-1: its members' figures summed."""
    from scaling.ensemble import train_ensemble

    results = train_ensemble(run_config(args, size, precision, tempfile.mkdtemp(dir=tmp)), range(k))
    return sum(r.samples_per_second for r in results)


def _cli(args, size: str, precision: str, out: str, seed_flags: list[str]) -> list[str]:
    cfg = run_config(args, size, precision, out)
    names = ("data.source", "model.size", "data.samples", "optim.batch_size", "model.precision", "out",
             "hardware.accelerator", "hardware.threads", "checkpointing.every_steps", "checkpointing.every_minutes",
             "validation.samples", "validation.every_samples", "hardware.peak_flops", "model.keypoints",
             "model.patch_size")
    flat = cfg.flat()
    flags = {name.replace("_", "-"): flat[name] for name in names if flat[name] is not None}
    cmd = [sys.executable, "-m", "sweeps.cli", "train", "--no-logging.progress-bar", *seed_flags]
    for key, value in flags.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def end_to_end(args, size: str, precision: str, k: int, tmp: str) -> dict:
    """Wall seconds of k separate `scaling train` processes started together, and of one `--seeds` process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}

    def wall(commands: list[list[str]]) -> float:
        t0 = time.perf_counter()
        procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c in commands]
        for p in procs:
            _, err = p.communicate(timeout=3600)
            if p.returncode:
                raise RuntimeError(err[-2000:])
        return time.perf_counter() - t0

    base = tempfile.mkdtemp(dir=tmp)
    separate = wall([_cli(args, size, precision, f"{base}/solo-{s}", ["--seed", str(s)]) for s in range(k)])
    together = wall([_cli(args, size, precision, f"{base}/ensemble", ["--seeds", ",".join(map(str, range(k)))])])
    return {"separate_seconds": separate, "ensemble_seconds": together, "speedup": separate / together}


@contextlib.contextmanager
def _attention(kind: str):
    import scaling.model.vla as vla

    saved, vla.ATTENTION = vla.ATTENTION, kind
    try:
        yield
    finally:
        vla.ATTENTION = saved


class Bare:
    """A bare training loop (no Fabric) of `mode`: "solo" (one model), "loop" or "vmap" (k models, each its
    own seed and data order), "bound" (one model at k x the batch). `step(s)` runs optimizer step s."""

    def __init__(self, args, size: str, precision: str, k: int, mode: str, **changes) -> None:
        import copy

        import torch
        from torch.func import functional_call, stack_module_state, vmap

        from scaling.data import open_source
        from scaling.model import VLA
        from scaling.schedules import lr_multiplier
        from scaling.train import model_config
        from scaling.trainer import group_plan

        self.cfg = cfg = run_config(args, size, precision, "unused", **changes)
        self.source = source = open_source(args.data)
        self.mode, self.lr_multiplier = mode, lr_multiplier
        n_models = 1 if mode in ("solo", "bound") else k
        self.batch = args.batch * (k if mode == "bound" else 1)
        self.models = []
        for seed in range(n_models):
            torch.manual_seed(seed)
            self.models.append(VLA(model_config(cfg, source)).train())
        self.indices = [source.train_indices(self.batch * args.steps, seed=seed) for seed in range(n_models)]
        plan = group_plan(self.models[0], cfg)
        autocast = {"bf16-mixed": torch.bfloat16}.get(precision)

        def optimizer(named: dict) -> torch.optim.AdamW:
            groups = [{"params": [named[n] for n in g["param_names"]], "lr": g["lr"], "peak_lr": g["lr"],
                       "weight_decay": g["weight_decay"]} for g in plan]
            return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
                                     weight_decay=cfg.optim.weight_decay)

        def context():
            return torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None)

        if mode == "vmap":
            params, buffers = stack_module_state(self.models)
            self.params = {n: p.detach().requires_grad_() for n, p in params.items()}
            base = copy.deepcopy(self.models[0]).to("meta")
            self.opts = [optimizer(self.params)]

            def member_loss(p, b, data):
                return functional_call(base, (p, b), (data,))[0]

            def work(data: list[dict]) -> None:
                stacked = {key: torch.stack([d[key] for d in data]) for key in data[0]}
                with context(), _attention("math"):
                    losses = vmap(member_loss)(self.params, buffers, stacked)  # (k,)
                losses.sum().backward()
                grads = [p.grad for p in self.params.values()]
                norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (k,) per member
                coef = (cfg.optim.grad_clip / (norms + 1e-6)).clamp(max=1.0)
                for g in grads:
                    g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
        else:
            self.opts = [optimizer(dict(m.named_parameters())) for m in self.models]

            def work(data: list[dict]) -> None:
                for model, d in zip(self.models, data):
                    with context():
                        loss, _ = model(d)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        self.work = work

    def step(self, step: int) -> None:
        """Optimizer step `step`: each model's own batch, forward, backward, clipping, the schedule, AdamW."""
        import torch

        b, cfg = self.batch, self.cfg
        self.work([{key: torch.from_numpy(v) for key, v in
                    self.source.get_batch(idx[step * b:(step + 1) * b], chunk=cfg.model.chunk).items()}
                   for idx in self.indices])
        mult = self.lr_multiplier(cfg.schedule.name, step, cfg.steps, cfg.warmup_steps, cfg.schedule.min_lr_ratio)
        for opt in self.opts:
            for g in opt.param_groups:
                g["lr"] = g["peak_lr"] * mult
            opt.step()
            opt.zero_grad(set_to_none=True)

    def weights(self) -> list[dict]:
        """Each model's weights by name (a vmap ensemble's stacked weights split per member)."""
        if self.mode == "vmap":
            return [{n: p[i].detach() for n, p in self.params.items()} for i in range(len(self.models))]
        return [{n: p.detach() for n, p in m.named_parameters()} for m in self.models]


def bare_seconds(args, size: str, precision: str, k: int, mode: str) -> float:
    """Mean seconds per optimizer step (the first not timed) of `Bare(args, size, precision, k, mode)`."""
    bare = Bare(args, size, precision, k, mode)
    elapsed, t_last = 0.0, None
    for step in range(args.steps):
        bare.step(step)
        now = time.perf_counter()
        if t_last is not None:
            elapsed += now - t_last
        t_last = now
    return elapsed / (args.steps - 1)


def measure(args, size: str, precision: str, tmp: str) -> list[dict]:
    """One row per k at this size and precision."""
    from scaling.data import open_source
    from scaling.model.family import dims_of, run_model

    model = run_model(run_config(args, size, precision, "unused"), dims_of(open_source(args.data)))
    best: dict = {}

    def keep(key, value: float, higher: bool) -> None:
        old = best.get(key)
        best[key] = value if old is None else (max if higher else min)(old, value)

    for _ in range(args.repeats):  # interleaved, best of each
        keep("solo", solo_sps(args, size, precision, tmp), True)
        if args.bare:
            keep(("bare", "solo"), bare_seconds(args, size, precision, 1, "solo"), False)
        for k in args.ks:
            keep(("ensemble", k), ensemble_sps(args, size, precision, k, tmp), True)
            if args.bare and k > 1:
                for mode in BARE:
                    keep((mode, k), bare_seconds(args, size, precision, k, mode), False)
    rows = []
    for k in args.ks:
        row = {"size": size, "n_params": model.n_params, "precision": precision, "k": k,
               "solo_samples_per_second": best["solo"], "ensemble_samples_per_second": best[("ensemble", k)],
               "cost": k * best["solo"] / best[("ensemble", k)]}
        if args.bare and k > 1:
            row.update({f"{mode}_cost": best[(mode, k)] / best[("bare", "solo")] for mode in BARE})
        if args.end_to_end and k > 1:
            row["end_to_end"] = end_to_end(args, size, precision, k, tmp)
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    bare = "  ".join(f"{m} {row[m + '_cost']:5.2f}x" for m in BARE if m + "_cost" in row)
    e2e = row.get("end_to_end")
    e2e = (f"  end to end: separate {e2e['separate_seconds']:.1f} s / together {e2e['ensemble_seconds']:.1f} s "
           f"= {e2e['speedup']:.2f}x") if e2e else ""
    return (f"{row['size']:>5} {row['n_params']:>9,} {row['precision']:<10} k={row['k']}: "
            f"{row['ensemble_samples_per_second']:8.1f} samples/s together, cost {row['cost']:5.2f}x one seed "
            f"(separate runs: {row['k']}x)  {bare}{e2e}")


def goals(rows: list[dict]) -> dict:
    """The goal per size and precision where it was measured: k = 4's cost against its bound."""
    out = {}
    for row in rows:
        if row["k"] == 4 and row["size"] in GOALS:
            out[f"{row['size']} {row['precision']}"] = {"cost": row["cost"], "goal": GOALS[row["size"]],
                                                         "met": row["cost"] <= GOALS[row["size"]],
                                                         "bound_cost": row.get("bound_cost")}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="dataset (default: a tiny tabletop dataset in a temp dir)")
    p.add_argument("--sizes", default="15k,100k,500k,1m", help="comma-separated model sizes")
    p.add_argument("--ks", default="1,2,4,8", help="comma-separated ensemble sizes")
    p.add_argument("--precisions", default="32-true,bf16-mixed", help="comma-separated precisions")
    p.add_argument("--batch", type=int, default=32, help="global batch per member")
    p.add_argument("--steps", type=int, default=12, help="steps per measurement (the first is not timed)")
    p.add_argument("--repeats", type=int, default=2, help="best of this many interleaved runs each")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (the goal's: 1)")
    p.add_argument("--patch-size", type=int, default=8, help="patch size (0: the model family's default)")
    p.add_argument("--keypoints", type=int, default=16, help="keypoint tokens (the CPU study's: 16)")
    p.add_argument("--no-bare", dest="bare", action="store_false", help="skip the bare loop/vmap/bound loops")
    p.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                   help="skip the separate processes against one --seeds process")
    p.add_argument("--quick", action="store_true", help="15k, k = 1 and 2, 32-true, 4 steps, one repeat")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_ensemble.json"),
                   help="where the JSON report goes")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.ks, args.precisions, args.steps, args.repeats = "15k", "1,2", "32-true", 4, 1
    args.ks = [int(k) for k in args.ks.split(",")]
    args.family = {"model.keypoints": args.keypoints,
                   **({"model.patch_size": args.patch_size} if args.patch_size else {})}
    if args.data is None:
        from scaling.data.testing import make_tiny_dataset

        args.data = str(make_tiny_dataset(Path(tempfile.mkdtemp()) / "tiny", episodes=16, image_size=32))
    import torch

    from scaling import hardware

    torch.set_num_threads(args.threads)
    report: dict = {"threads": args.threads, "cpu": hardware.cpu_signature(args.threads),
                    "cores": sorted(os.sched_getaffinity(0)), "batch": args.batch, "steps": args.steps,
                    "repeats": args.repeats, "model_family": args.family, "load_average_start": os.getloadavg()}
    print(f"{report['cpu']['cpu']}; {args.threads} thread(s) on cores {report['cores']}; load average "
          f"{report['load_average_start'][0]:.1f}; batch {args.batch} per member, {args.steps} steps", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precisions.split(","):
            for size in args.sizes.split(","):
                rows += measure(args, size, precision, tmp)
    report.update(rows=rows, goals=goals(rows), load_average_end=os.getloadavg())
    for name, g in report["goals"].items():
        bound = f"; one model at 4x the batch: {g['bound_cost']:.2f}x" if g.get("bound_cost") else ""
        print(f"goal {name}: four seeds cost {g['cost']:.2f}x one seed (goal <= {g['goal']}x: "
              f"{'met' if g['met'] else 'missed'}{bound})")
    write_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
