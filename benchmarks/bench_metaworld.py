"""Meta-World generation speed: frames/s with MuJoCo's default rendering vs the tuned CPU settings.

    python -m benchmarks.bench_metaworld [--image-size 128] [--frames 100] [--task pick-place-v3]

Prints, for each setting, render-only frames/s (the same state drawn repeatedly) and end-to-end
frames/s of expert episodes (physics + expert + rendering), per wall-clock second and per CPU
second of the process (all its threads: OSMesa's llvmpipe rasterises on threads). The GL backend
is ``MUJOCO_GL`` (OSMesa when unset and headless).
"""

from __future__ import annotations

import argparse
import os
import time

from scaling.data import metaworld_source as mw


def _rates(frames: int, wall: float, cpu: float) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second of this process, all its threads)."""
    return frames / wall, frames / max(cpu, 1e-9)


def render_fps(rollout: mw.ExpertRollout, frames: int) -> tuple[float, float]:
    """Rates of drawing the current scene (update_scene + render + read back)."""
    rollout.env.seed(0)
    rollout.env.reset()
    rollout._render()  # warm-up: first draw uploads meshes and textures
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(frames):
        rollout._render()
    return _rates(frames, time.perf_counter() - wall, time.process_time() - cpu)


def episode_fps(rollout: mw.ExpertRollout, frames: int) -> tuple[float, float]:
    """Rates of whole expert episodes (physics + expert + rendering), until ``frames`` frames are made."""
    made, index = 0, 0
    wall, cpu = time.perf_counter(), time.process_time()
    while made < frames:
        images = rollout.run(mw.episode_seed(0, rollout.task, index), mw.DEFAULT_MAX_STEPS)[0]
        made, index = made + len(images), index + 1
    return _rates(made, time.perf_counter() - wall, time.process_time() - cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128, help="image side (pixels)")
    parser.add_argument("--frames", type=int, default=100, help="frames per measurement")
    parser.add_argument("--task", default="pick-place-v3", help="Meta-World task")
    args = parser.parse_args(argv)
    mw.check_tasks([args.task])
    print(f"Meta-World {args.task}, {args.image_size}x{args.image_size} px, MUJOCO_GL={os.environ['MUJOCO_GL']}")
    print("frames/s per wall second and per CPU second (the latter is per core, robust to a shared machine)")
    print(f"{'settings':<16}{'render wall':>12}{'render cpu':>12}{'episode wall':>14}{'episode cpu':>13}")
    results = {}
    for name, settings in (("mujoco-default", mw.MUJOCO_DEFAULT_RENDER), ("tuned", mw.TUNED_RENDER)):
        rollout = mw.ExpertRollout(args.task, args.image_size, settings)
        try:
            # The default settings are ~10x slower: measure them on fewer frames.
            n = max(10, args.frames // 5) if name == "mujoco-default" else args.frames
            results[name] = (*render_fps(rollout, n), *episode_fps(rollout, n))
        finally:
            rollout.close()
        print(f"{name:<16}" + "".join(f"{v:>{w}.1f}" for v, w in zip(results[name], (12, 12, 14, 13))))
    speedup = results["tuned"][1] / results["mujoco-default"][1]
    print(f"tuned rendering is {speedup:.1f}x faster per core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
