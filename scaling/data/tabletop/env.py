"""`TabletopEnv`: one episode at a time, gym-like (reset(seed) -> obs, step(action) -> obs, success, done).

Seeding: an episode is a pure function of one ``numpy.random.SeedSequence``. Data generation uses
branch 0 of the user's seed and closed-loop evaluation branch 1 (`episode_seed`), so evaluation
episodes are never training episodes, and episode i of seed s depends on nothing but (s, i).
"""

from __future__ import annotations

import functools

import numpy as np

from scaling.data.tabletop.expert import ScriptedExpert
from scaling.data.tabletop.render import Renderer
from scaling.data.tabletop.scene import COLOUR_NAMES, CORNER_ZONES, Scene
from scaling.data.tabletop.tasks import FAMILY_NAMES, Task, check_objects, is_success, sample_task
from vla_core.errors import BadInput

TRAIN_BRANCH = 0  # SeedSequence spawn-key branch of generated (training) episodes
EVAL_BRANCH = 1  # ... of closed-loop evaluation episodes (held out from generation)
DEFAULT_MAX_STEPS = 60  # steps; the clean expert needs at most ~45 on the longest task


def episode_seed(seed: int, index: int, branch: int = TRAIN_BRANCH) -> np.random.SeedSequence:
    """The SeedSequence of episode ``index`` of ``seed``'s ``branch``.

    Equal to ``SeedSequence(seed).spawn(branch + 1)[branch].spawn(index + 1)[index]`` but O(1).
    """
    return np.random.SeedSequence(int(seed), spawn_key=(int(branch), int(index)))


@functools.lru_cache(maxsize=8)
def get_renderer(image_size: int) -> Renderer:
    """One shared renderer per image size (sprites are computed once)."""
    return Renderer(image_size)


def check_families(families) -> tuple[str, ...]:
    """Validate a family selection (None = all); raises BadInput naming an unknown family."""
    if families is None:
        return FAMILY_NAMES
    fams = tuple(families)
    unknown = [f for f in fams if f not in FAMILY_NAMES]
    if unknown or not fams:
        raise BadInput(f"tabletop families: unknown {unknown or 'empty selection'}; known: {', '.join(FAMILY_NAMES)}")
    return fams


class TabletopEnv:
    """The tabletop environment.

    Args:
        image_size: rendered image side (pixels), 16..512.
        max_steps: episode step limit.
        families: task families to sample (None = all of them).
        objects: objects per scene, "LO-HI" or (LO, HI) (None = 3-5; see `tasks.check_objects`).
    """

    def __init__(self, image_size: int = 64, max_steps: int = DEFAULT_MAX_STEPS, families=None,
                 objects=None) -> None:
        if not 16 <= int(image_size) <= 512:
            raise BadInput(f"tabletop image_size: {image_size} is outside 16..512 pixels")
        if int(max_steps) < 1:
            raise BadInput(f"tabletop max_steps: {max_steps} must be positive")
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        self.families = check_families(families)
        self.objects = check_objects(objects)
        self.renderer = get_renderer(self.image_size)
        self.scene: Scene | None = None
        self.task: Task | None = None
        self.steps = 0
        self.success = False
        self._expert: ScriptedExpert | None = None

    @property
    def instruction(self) -> str:
        """The current episode's instruction."""
        return self.task.instruction

    def reset(self, seed: int | np.random.SeedSequence) -> dict:
        """Start the episode ``seed`` (an int or a SeedSequence) and return its first observation."""
        self.start(seed)
        return self.observe()

    def start(self, seed: int | np.random.SeedSequence) -> None:
        """`reset` without rendering the first observation (generation draws into its own buffer)."""
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
        # One stream: the scene and task draws come first, the expert's noise draws after them,
        # so the scene never depends on the noise level.
        rng = np.random.default_rng(ss)
        self.scene, self.task = sample_task(rng, self.families, self.objects)
        self._expert_rng = rng
        self._expert = None
        self.initial_objects = self.scene.describe()
        self.steps, self.success = 0, False

    def render(self, out: np.ndarray | None = None) -> np.ndarray:
        """(S, S, 3) uint8 frame of the current scene (drawn into ``out`` when given)."""
        return self.renderer.render(self.scene, out)

    def observe(self) -> dict:
        """{"image": (S, S, 3) uint8, "proprio": (4,) float32, "instruction": str}."""
        return {"image": self.render(), "proprio": self.scene.proprio(), "instruction": self.task.instruction}

    def step(self, action: np.ndarray) -> tuple[dict, bool, bool]:
        """Apply ``action`` (3,) and return (observation, success, done)."""
        if self.scene is None:
            raise RuntimeError("TabletopEnv.step called before reset")
        self.scene.step(action)
        self.steps += 1
        self.success = is_success(self.task, self.scene)
        done = self.success or self.steps >= self.max_steps
        return self.observe(), self.success, done

    def expert_action(self, noise: float = 0.0) -> np.ndarray:
        """(3,) float32 scripted-expert action for the current state (privileged: reads the scene).

        The expert is created on first use after a reset, with this episode's expert noise stream.
        """
        if self._expert is None or self._expert.noise != float(noise):
            self._expert = ScriptedExpert(self.task, noise, self._expert_rng)
        return self._expert.act(self.scene)

    def expert_clean(self) -> tuple[list[float], list[float]]:
        """The last `expert_action`'s clean action and per-dimension noise std (see `ScriptedExpert.act`)."""
        return self._expert.clean, self._expert.clean_std

    def describe(self) -> dict:
        """JSON-friendly description of the episode (family, objects at reset, zone colours)."""
        return {
            "family": self.task.family,
            "objects": self.initial_objects,
            "zones": {z.name: COLOUR_NAMES[c] for z, c in zip(CORNER_ZONES, self.scene.zone_colours)},
            "task_objects": [int(i) for i in self.task.objects],
            "task_zone": self.task.zone,
            "task_param": self.task.param,
        }
