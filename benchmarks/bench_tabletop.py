"""Tabletop throughput: generation frames/s (one worker, rendering included) and evaluation steps/s.

    python -m benchmarks.bench_tabletop [--episodes 1000] [--image-size 64] [--eval-episodes 256]

Reports wall-clock rates and CPU-time rates (frames per CPU-second of this process): on a shared
machine the wall rate understates what one core does, the CPU rate does not. The target is
>= 2,000 generated frames/s on one core at 64 px.
"""

from __future__ import annotations

import argparse
import time

from scaling.data.tabletop import ExpertPolicy, RandomPolicy, evaluate_policy, generate_episodes


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_generation(n_episodes: int, image_size: int, noise: float) -> dict:
    """Frames/s of ``generate_episodes`` with one worker."""
    eps, wall, cpu = _timed(lambda: list(generate_episodes(n_episodes, seed=0, image_size=image_size, noise=noise)))
    frames = sum(len(e) for e in eps)
    return {"episodes": n_episodes, "frames": frames, "frames_per_s": frames / wall, "frames_per_cpu_s": frames / cpu,
            "mean_length": frames / n_episodes, "expert_success": sum(e.success for e in eps) / n_episodes}


def bench_evaluation(policy, n_episodes: int, image_size: int) -> dict:
    """Environment steps/s of ``evaluate_policy`` (batched observations rendered every step)."""
    res, wall, cpu = _timed(lambda: evaluate_policy(policy, n_episodes, seed=0, image_size=image_size))
    steps = res["mean_steps"] * res["n_episodes"]
    return {"steps": int(steps), "steps_per_s": steps / wall, "steps_per_cpu_s": steps / cpu,
            "success_rate": res["success_rate"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--eval-episodes", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--noise", type=float, default=0.1)
    args = ap.parse_args()
    g = bench_generation(args.episodes, args.image_size, args.noise)
    print(f"generation ({args.image_size}px, 1 worker, noise {args.noise}): {g['frames']} frames in "
          f"{g['episodes']} episodes (mean length {g['mean_length']:.1f}, expert success {g['expert_success']:.3f})")
    print(f"  {g['frames_per_s']:,.0f} frames/s wall, {g['frames_per_cpu_s']:,.0f} frames/CPU-s "
          f"(target >= 2,000) -> {'OK' if g['frames_per_cpu_s'] >= 2000 else 'BELOW TARGET'}")
    for name, policy in (("expert", ExpertPolicy()), ("random", RandomPolicy(0))):
        e = bench_evaluation(policy, args.eval_episodes, args.image_size)
        print(f"evaluation, {name} policy: {e['steps']} steps, {e['steps_per_s']:,.0f} steps/s wall, "
              f"{e['steps_per_cpu_s']:,.0f} steps/CPU-s, success rate {e['success_rate']:.3f}")


if __name__ == "__main__":
    main()
