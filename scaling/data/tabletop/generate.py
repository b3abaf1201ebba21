"""Expert demonstrations from the tabletop environment, as `Episode`s, serially or in processes.

Episode i of ``generate_episodes(..., seed=s)`` is a function of (s, i) and the generation
options only, so the same call twice yields identical data, ``start`` resumes or shards a run,
and asking for more episodes extends the same set.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator

import numpy as np

from scaling.data.episode import Episode
from scaling.data.tabletop.env import DEFAULT_MAX_STEPS, TRAIN_BRANCH, TabletopEnv, check_families, episode_seed
from scaling.data.tabletop.scene import ACTION_DIM, PROPRIO_DIM
from scaling.data.tabletop.tasks import is_success
from vla_core.errors import BadInput

GENERATOR_VERSION = "tabletop-1"  # bump when the same (seed, index) would give different data


def generate_episode(
    env: TabletopEnv, seed: int, index: int, *, noise: float = 0.1, branch: int = TRAIN_BRANCH
) -> Episode:
    """Roll out the noisy scripted expert for episode ``index`` of ``seed`` in ``env``.

    Frames are rendered straight into the episode buffer: image t and proprio t are the state
    *before* action t, so (image_t, proprio_t, instruction) -> action_t is the learning target.
    The expert's clean actions and noise stds come along (`Episode.clean_actions`) for the
    dataset's loss floor.
    """
    env.start(episode_seed(seed, index, branch))
    s, t_max = env.image_size, env.max_steps
    images = np.empty((t_max, s, s, 3), dtype=np.uint8)  # (T_max, H, W, 3)
    proprio = np.empty((t_max, PROPRIO_DIM), dtype=np.float32)
    actions = np.empty((t_max, ACTION_DIM), dtype=np.float32)
    clean = np.empty((t_max, ACTION_DIM), dtype=np.float64)
    clean_std = np.empty((t_max, ACTION_DIM), dtype=np.float64)
    done, t = False, 0
    while not done:
        env.render(out=images[t])
        proprio[t] = env.scene.proprio()
        actions[t] = env.expert_action(noise)
        clean[t], clean_std[t] = env.expert_clean()
        env.scene.step(actions[t])
        env.steps = t = t + 1
        env.success = success = is_success(env.task, env.scene)  # env.step would also render
        done = success or t >= t_max
    return Episode(
        images=images[:t].copy() if t < t_max else images,
        proprio=proprio[:t].copy(),
        actions=actions[:t].copy(),
        instruction=env.task.instruction,
        task=env.task.family,
        success=bool(env.success),
        source="tabletop",
        seed=int(seed),
        meta={"episode_index": int(index), "noise": float(noise), "generator_version": GENERATOR_VERSION,
              "max_steps": int(t_max), **env.describe()},
        clean_actions=clean[:t].copy(),
        action_noise_std=clean_std[:t].copy(),
    )


def _check(n_episodes: int, seed: int, image_size: int, noise: float, start: int, workers: int) -> None:
    if int(n_episodes) < 1:
        raise BadInput(f"tabletop episodes: {n_episodes} must be a positive count")
    if int(start) < 0:
        raise BadInput(f"tabletop start: {start} must be >= 0")
    if not 0.0 <= float(noise) <= 1.0:
        raise BadInput(f"tabletop noise: {noise} is outside [0, 1]")
    if int(workers) < 1:
        raise BadInput(f"tabletop workers: {workers} must be a positive count")
    if int(seed) < 0:
        raise BadInput(f"tabletop seed: {seed} must be >= 0")
    if not 16 <= int(image_size) <= 512:
        raise BadInput(f"tabletop image_size: {image_size} is outside 16..512 pixels")


def _chunk(args: tuple) -> list[Episode]:
    """Worker: episodes [lo, hi) (top-level so the spawn start method can pickle it)."""
    lo, hi, seed, image_size, noise, max_steps, families, objects = args
    env = TabletopEnv(image_size, max_steps, families, objects)
    return [generate_episode(env, seed, i, noise=noise) for i in range(lo, hi)]


def generate_episodes(
    n_episodes: int,
    *,
    seed: int = 0,
    image_size: int = 64,
    noise: float = 0.1,
    start: int = 0,
    workers: int = 1,
    max_steps: int = DEFAULT_MAX_STEPS,
    families=None,
    objects=None,
) -> Iterator[Episode]:
    """Yield episodes ``start .. start + n_episodes - 1`` of generation ``seed``, in order.

    Args:
        n_episodes: how many episodes (positive).
        seed: generation seed (>= 0); the training branch of its SeedSequence is used.
        image_size: image side (pixels).
        noise: expert noise level in [0, 1] (see `ScriptedExpert`); stored in each episode's meta.
        start: index of the first episode (for resuming or sharding a generation).
        workers: processes; > 1 uses a spawn pool and still yields in index order.
        max_steps: episode step limit.
        families: task families to draw from (None = all); part of the episode's identity.
        objects: objects per scene, "LO-HI" or (LO, HI) (None = 3-5); part of the episode's identity.

    Raises:
        BadInput: for a non-positive count, negative seed/start, noise outside [0, 1], bad size,
            unknown family; raised by this call itself, before anything is generated.
    """
    _check(n_episodes, seed, image_size, noise, start, workers)
    fams = check_families(families)
    objs = TabletopEnv(image_size, max_steps, fams, objects).objects  # validates max_steps, objects too
    return _iterate(int(start), int(start) + int(n_episodes), int(seed), int(image_size), float(noise),
                    int(workers), int(max_steps), fams, objs)


def _iterate(lo: int, hi: int, seed: int, image_size: int, noise: float, workers: int, max_steps: int,
             fams: tuple[str, ...], objs: tuple[int, int]) -> Iterator[Episode]:
    if workers == 1:
        env = TabletopEnv(image_size, max_steps, fams, objs)
        for i in range(lo, hi):
            yield generate_episode(env, seed, i, noise=noise)
        return
    # Chunks amortise pickling; small enough that every worker gets several (load balance).
    size = max(1, min(32, (hi - lo) // (4 * workers)))
    jobs = [(a, min(a + size, hi), seed, image_size, noise, max_steps, fams, objs) for a in range(lo, hi, size)]
    # spawn, not fork: the parent may hold torch/threads, which fork does not copy safely.
    with mp.get_context("spawn").Pool(processes=min(workers, len(jobs))) as pool:
        for episodes in pool.imap(_chunk, jobs):
            yield from episodes
