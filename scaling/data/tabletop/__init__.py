"""The built-in tabletop source: a procedural, language-conditioned 2-D manipulation world.

numpy only. Public API:

- `generate_episodes(n, seed=, image_size=, noise=, start=, workers=)`: expert demonstrations as
  `scaling.data.episode.Episode` (source "tabletop", task = family name).
- `TabletopEnv`: reset(seed) -> obs, step(action) -> (obs, success, done).
- `evaluate_policy(policy, n_episodes, seed=, ...)`: closed-loop success rate on held-out episodes
  with a batched policy; `expert_policy`, `ExpertPolicy`, `RandomPolicy` as references.
- `FAMILY_NAMES`: the task families; `PROPRIO_DIM`, `ACTION_DIM`: feature sizes.
"""

from scaling.data.tabletop.env import EVAL_BRANCH, TRAIN_BRANCH, TabletopEnv, episode_seed
from scaling.data.tabletop.evaluate import ExpertPolicy, RandomPolicy, evaluate_policy, expert_policy
from scaling.data.tabletop.generate import GENERATOR_VERSION, generate_episode, generate_episodes
from scaling.data.tabletop.scene import ACTION_DIM, ACTION_HIGH, ACTION_LOW, PROPRIO_DIM
from scaling.data.tabletop.tasks import FAMILY_NAMES

__all__ = [
    "ACTION_DIM", "ACTION_HIGH", "ACTION_LOW", "EVAL_BRANCH", "FAMILY_NAMES", "GENERATOR_VERSION",
    "PROPRIO_DIM", "TRAIN_BRANCH", "ExpertPolicy", "RandomPolicy", "TabletopEnv", "episode_seed",
    "evaluate_policy", "expert_policy", "generate_episode", "generate_episodes",
]
