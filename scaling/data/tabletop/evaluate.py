"""Closed-loop evaluation: run a batched policy on held-out tabletop episodes in lockstep.

A policy is any callable ``policy(obs) -> (B, 3)`` actions (or a chunk (B, k, 3), whose first step
is executed), where ``obs`` holds the B still-running episodes: ``image`` uint8 (B, H, W, 3),
``proprio`` float32 (B, 4) in raw units, ``instruction`` list[str], ``task`` list[str] (family
names), and ``envs`` (the `TabletopEnv` objects: privileged state, for the scripted expert only;
a learned policy must ignore it). B shrinks as episodes finish.
Episodes come from the evaluation branch of the seed (`EVAL_BRANCH`), disjoint from generation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from scaling.data.tabletop.env import DEFAULT_MAX_STEPS, EVAL_BRANCH, TabletopEnv, check_families, episode_seed
from scaling.data.tabletop.scene import ACTION_DIM
from scaling.data.tabletop.tasks import is_success
from vla_core.errors import BadInput

Policy = Callable[[dict], np.ndarray]


class ExpertPolicy:
    """The scripted expert as a batched policy (reads ``obs["envs"]``).

    Args:
        noise: expert noise level (0 = clean).
    """

    def __init__(self, noise: float = 0.0) -> None:
        self.noise = float(noise)

    def __call__(self, obs: dict) -> np.ndarray:
        return np.stack([env.expert_action(self.noise) for env in obs["envs"]])  # (B, 3)


class RandomPolicy:
    """Uniform random actions in [-1, 1]^3: the floor any learned policy should beat.

    Args:
        seed: seed of its generator.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: dict) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(len(obs["instruction"]), ACTION_DIM)).astype(np.float32)


expert_policy = ExpertPolicy(0.0)


def _observe(envs: list[TabletopEnv]) -> dict:
    return {
        "image": np.stack([e.render() for e in envs]),  # (B, H, W, 3) uint8
        "proprio": np.stack([e.scene.proprio() for e in envs]),  # (B, 4) float32
        "instruction": [e.task.instruction for e in envs],
        "task": [e.task.family for e in envs],
        "envs": list(envs),
    }


def evaluate_policy(
    policy: Policy,
    n_episodes: int,
    *,
    seed: int = 0,
    image_size: int = 64,
    max_steps: int = DEFAULT_MAX_STEPS,
    batch_size: int = 64,
    families=None,
    objects=None,
) -> dict:
    """Success rate of ``policy`` over ``n_episodes`` held-out episodes.

    Args:
        policy: batched callable, see the module docstring.
        n_episodes: number of evaluation episodes (positive).
        seed: evaluation seed; episodes come from its evaluation branch, never from generation's.
        image_size: image side (pixels); must match what the policy was trained on.
        max_steps: step limit per episode.
        batch_size: episodes run in lockstep per policy call (bounds memory).
        families: task families (None = all).
        objects: objects per scene, "LO-HI" (None = the generator's default, 3-5).

    Returns:
        {"success_rate": float, "n_episodes": int, "per_task": {family: success rate},
         "per_task_episodes": {family: count}, "mean_steps": float}.
    """
    if int(n_episodes) < 1:
        raise BadInput(f"evaluate_policy n_episodes: {n_episodes} must be a positive count")
    if int(batch_size) < 1:
        raise BadInput(f"evaluate_policy batch_size: {batch_size} must be a positive count")
    fams = check_families(families)
    successes: dict[str, list[bool]] = defaultdict(list)
    steps: list[int] = []
    for lo in range(0, int(n_episodes), int(batch_size)):
        envs = [TabletopEnv(image_size, max_steps, fams, objects) for _ in range(lo, min(lo + batch_size, n_episodes))]
        for k, env in enumerate(envs):
            env.start(episode_seed(seed, lo + k, EVAL_BRANCH))
        active = list(envs)
        while active:
            actions = np.asarray(policy(_observe(active)), dtype=np.float32)
            if actions.ndim == 3:  # an action chunk (B, k, A): execute its first step, re-plan next step
                actions = actions[:, 0]
            if actions.shape != (len(active), ACTION_DIM):
                raise ValueError(f"policy returned shape {actions.shape}, expected {(len(active), ACTION_DIM)}")
            still = []
            for env, action in zip(active, actions):
                env.scene.step(action)  # env.step would render a frame we do not need yet
                env.steps += 1
                env.success = is_success(env.task, env.scene)
                if env.success or env.steps >= env.max_steps:
                    successes[env.task.family].append(env.success)
                    steps.append(env.steps)
                else:
                    still.append(env)
            active = still
    total = [s for v in successes.values() for s in v]
    return {
        "success_rate": float(np.mean(total)),
        "n_episodes": len(total),
        "per_task": {f: float(np.mean(v)) for f, v in sorted(successes.items())},
        "per_task_episodes": {f: len(v) for f, v in sorted(successes.items())},
        "mean_steps": float(np.mean(steps)),
    }
