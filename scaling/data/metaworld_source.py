"""Meta-World source: demonstrations from Meta-World's scripted expert policies (real MuJoCo physics).

For any subset of Meta-World's 50 v3 tasks this runs the task's scripted expert (``metaworld.policies``)
and records, per step, a camera image, 4-D proprioception (hand xyz + gripper opening: the first four
entries of Meta-World's observation) and the 4-D action (end-effector delta xyz + grip effort, clipped
to [-1, 1] as the environment does). An episode ends at the first step the task reports success, or
after ``max_steps``; an expert episode that never succeeds is kept and flagged ``success=False``.

Rendering is CPU-friendly: MuJoCo's defaults (shadow maps, reflections, 4x multisampling, skybox,
haze) give about 6-9 frames/s at 128 px through OSMesa; ``TUNED_RENDER`` turns them off and coarsens
the tessellation of primitive geoms, which gives about 80-90 frames/s per core for rendering and
65-75 frames/s per core end to end with physics and the expert (``benchmarks/bench_metaworld.py``).
What remains is the Sawyer arm's ~67k mesh triangles, so 64 px is only ~1.5x faster than 128 px.
The GL backend comes from ``MUJOCO_GL`` (``egl`` on a GPU machine, ``glfw`` with a display); when it
is unset and there is no display we use ``osmesa``.

Meta-World and MuJoCo are the optional ``[metaworld]`` extra: they are imported lazily, so ``TASKS``
and ``TASK_DESCRIPTIONS`` are available without them.
"""

from __future__ import annotations

import atexit
import difflib
import multiprocessing
import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaling.data.episode import Episode
from vla_core.errors import BadInput

TASK_DESCRIPTIONS: dict[str, str] = {
    "assembly-v3": "pick up the nut and place it onto the peg",
    "basketball-v3": "dunk the basketball into the basket",
    "bin-picking-v3": "grasp the puck from one bin and place it into the other bin",
    "box-close-v3": "grasp the cover and close the box with it",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-topdown-wall-v3": "press the button from the top, behind the wall",
    "button-press-v3": "press the button",
    "button-press-wall-v3": "press the button behind the wall",
    "coffee-button-v3": "push the button on the coffee machine",
    "coffee-pull-v3": "pull the mug out from under the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "rotate the dial 180 degrees",
    "disassemble-v3": "pick the nut off the peg",
    "door-close-v3": "close the door with the revolving joint",
    "door-lock-v3": "lock the door by rotating the lock clockwise",
    "door-open-v3": "open the door with the revolving joint",
    "door-unlock-v3": "unlock the door by rotating the lock counter-clockwise",
    "hand-insert-v3": "insert the gripper into the hole",
    "drawer-close-v3": "push the drawer closed",
    "drawer-open-v3": "pull the drawer open",
    "faucet-open-v3": "rotate the faucet counter-clockwise",
    "faucet-close-v3": "rotate the faucet clockwise",
    "hammer-v3": "hammer the screw on the wall",
    "handle-press-side-v3": "press the handle down sideways",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up sideways",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever down 90 degrees",
    "pick-place-wall-v3": "pick up the puck, bypass the wall and place it at the goal",
    "pick-out-of-hole-v3": "pick up the puck from the hole",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "plate-slide-v3": "slide the plate into the cabinet",
    "plate-slide-side-v3": "slide the plate sideways into the cabinet",
    "plate-slide-back-v3": "get the plate back out of the cabinet",
    "plate-slide-back-side-v3": "get the plate back out of the cabinet sideways",
    "peg-insert-side-v3": "insert the peg sideways into the hole",
    "peg-unplug-side-v3": "unplug the peg sideways",
    "soccer-v3": "kick the soccer ball into the goal",
    "stick-push-v3": "grasp the stick and push the box with it",
    "stick-pull-v3": "grasp the stick and pull the box with it",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "push the puck past the wall to the goal",
    "push-back-v3": "pull the puck back to the goal",
    "reach-v3": "reach the red goal position",
    "reach-wall-v3": "reach the goal position past the wall",
    "shelf-place-v3": "pick up the puck and place it on the shelf",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the table",
    "window-open-v3": "push the window open",
    "window-close-v3": "push the window closed",
}
"""Task name (Meta-World v3 environment name) -> instruction given to the policy."""

TASKS: list[str] = list(TASK_DESCRIPTIONS)
"""All 50 Meta-World v3 task names, in Meta-World's own order."""

GENERATOR_VERSION = "1"
"""Bumped whenever the same seed would give different episodes (camera, horizon, settings...)."""

CAMERA = "corner4"
"""Fixed camera looking at the workspace from the front corner (the view LeRobot's Meta-World env uses)."""

DEFAULT_MAX_STEPS = 500
"""Meta-World's own horizon (``max_path_length``); the experts succeed well within it (median ~80)."""


@dataclass(frozen=True)
class RenderSettings:
    """What the offscreen renderer draws; the defaults are the fast CPU settings.

    True (or ``multisamples=None``, ``coarse_geometry=False``) keeps the model's own value (MuJoCo's
    default); False turns the effect off.
    """

    shadows: bool = False
    """Shadow maps; each light re-renders the scene into a shadow map (costly in software GL)."""
    reflections: bool = False
    """Planar reflections of the floor/table (renders the scene a second time)."""
    skybox: bool = False
    """Draw the skybox texture behind the scene."""
    haze: bool = False
    """Horizon haze blended over the scene."""
    multisamples: int | None = 0
    """Offscreen multisample anti-aliasing samples (MuJoCo's default is 4); None keeps the model's."""
    coarse_geometry: bool = True
    """Tessellate primitive geoms (spheres, capsules, cylinders) with 8 slices/stacks instead of 28/16."""


TUNED_RENDER = RenderSettings()
"""Fast settings: no shadows, reflections, skybox, haze or multisampling; coarse primitives."""

MUJOCO_DEFAULT_RENDER = RenderSettings(
    shadows=True, reflections=True, skybox=True, haze=True, multisamples=None, coarse_geometry=False
)
"""MuJoCo's (and Meta-World's) own rendering settings, kept for the benchmark's comparison."""


def configure_gl() -> str:
    """Pick the GL backend before MuJoCo is imported; returns the ``MUJOCO_GL`` in effect.

    MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported. We respect a value the user set
    (``egl`` for headless GPUs, ``glfw`` with a display); without one and without a display, software
    OSMesa is the only backend that works everywhere (CI installs libosmesa6).
    """
    if "MUJOCO_GL" not in os.environ and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["MUJOCO_GL"] = "osmesa"
    backend = os.environ.get("MUJOCO_GL", "")
    if backend in ("osmesa", "egl"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


configure_gl()  # at import, so that whoever imports mujoco next (us, metaworld, a test) gets it


def check_tasks(tasks: list[str]) -> list[str]:
    """Validate task names; raise BadInput (one line, with close names) for an unknown one."""
    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = [str(t).strip() for t in tasks]
    if not tasks:
        raise BadInput("metaworld tasks: the list is empty; give at least one, e.g. reach-v3")
    for name in tasks:
        if name not in TASK_DESCRIPTIONS:
            # "reach" is a common slip for "reach-v3"; try the versioned name first.
            close = difflib.get_close_matches(name, TASKS, n=3, cutoff=0.5)
            if f"{name}-v3" in TASK_DESCRIPTIONS:
                close = [f"{name}-v3", *[c for c in close if c != f"{name}-v3"]][:3]
            hint = ", ".join(close) if close else ", ".join(TASKS[:3]) + ", ..."
            raise BadInput(f"metaworld task {name!r} is unknown; close names: {hint} ({len(TASKS)} tasks)")
    dupes = sorted({t for t in tasks if tasks.count(t) > 1})
    if dupes:
        raise BadInput(f"metaworld tasks: {', '.join(dupes)} listed more than once")
    return tasks


def episode_seed(seed: int, task: str, index: int) -> int:
    """The seed of episode ``index`` of ``task``: independent of which other tasks/episodes are made."""
    return int(np.random.SeedSequence([int(seed), TASKS.index(task), int(index)]).generate_state(1)[0])


def _import_backend() -> tuple[Any, Any, Any]:
    """Import mujoco and Meta-World lazily (optional extra); returns (mujoco, env dict, policy map)."""
    configure_gl()
    try:
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as exc:  # the extra is not installed
        raise BadInput(
            f"metaworld source needs the [metaworld] extra (pip install 'vla-scaling[metaworld]'): {exc}"
        ) from exc
    return mujoco, ALL_V3_ENVIRONMENTS, ENV_POLICY_MAP


class ExpertRollout:
    """One task's environment, scripted expert and offscreen renderer, reused across episodes."""

    def __init__(self, task: str, image_size: int, render: RenderSettings = TUNED_RENDER):
        mujoco, envs, policies = _import_backend()
        self.task, self.image_size = task, image_size
        env = envs[task]()
        # Goal-observable multi-task mode, as Meta-World's MT benchmarks and its expert policies expect
        # (the experts read the goal from the last 3 observation entries). Each reset draws a fresh
        # object/goal placement ("rand_vec") from env.np_random, so env.seed() fixes the episode.
        env._partially_observable = False
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        del env.sawyer_observation_space  # cached property; recomputed for the observable goal
        env._set_task_called = True
        self.env, self.policy, self._mujoco = env, policies[task](), mujoco
        self.renderer = _make_renderer(mujoco, env.model, image_size, render)

    def run(self, seed: int, max_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """One expert episode; returns images (T,H,W,3) uint8, proprio (T,4), actions (T,4), info."""
        env = self.env
        env.max_path_length = max_steps  # the env refuses to step past its horizon
        env.seed(seed)
        obs, _ = env.reset()
        # reset() leaves the goal marker where the previous episode put it until the first step()
        # moves it: place it now so that frame 0 does not depend on earlier episodes.
        for site in env._target_site_config:
            env._set_pos_site(*site)
        self._mujoco.mj_forward(env.model, env.data)
        images, proprio, actions = [], [], []
        steps_to_success = None
        for t in range(max_steps):
            images.append(self._render())
            proprio.append(obs[:4])  # hand xyz (m) + gripper opening (normalised)
            with warnings.catch_warnings():  # "Constant(s) may be too high": the env clips, as we do
                warnings.simplefilter("ignore")
                action = np.clip(self.policy.get_action(obs), -1.0, 1.0)
            actions.append(action)
            obs, _reward, _terminated, _truncated, info = env.step(action)
            if info["success"]:
                steps_to_success = t + 1
                break
        info = {"steps_to_success": steps_to_success, "rand_vec": [float(v) for v in env._last_rand_vec]}
        return (
            np.stack(images),
            np.asarray(proprio, dtype=np.float32),
            np.asarray(actions, dtype=np.float32),
            info,
        )

    def _render(self) -> np.ndarray:
        self.renderer.update_scene(self.env.data, camera=CAMERA)
        # The corner cameras of Meta-World's scene are mounted upside down: rotate by 180 degrees.
        return np.ascontiguousarray(self.renderer.render()[::-1, ::-1])

    def close(self) -> None:
        """Free the GL context and the environment."""
        self.renderer.close()
        self.env.close()


def _make_renderer(mujoco: Any, model: Any, image_size: int, render: RenderSettings) -> Any:
    """An offscreen renderer of (image_size, image_size) with the given settings applied."""
    # Model-level settings are read when the GL context and buffers are made: set them first.
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), image_size)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), image_size)
    if not render.shadows:
        model.vis.quality.shadowsize = 0
    if render.multisamples is not None:
        model.vis.quality.offsamples = render.multisamples
    if render.coarse_geometry:
        model.vis.quality.numslices = 8
        model.vis.quality.numstacks = 8
        model.vis.quality.numquads = 1
    try:
        renderer = mujoco.Renderer(model, image_size, image_size)
    except mujoco.FatalError as exc:  # e.g. mujoco was imported before configure_gl() ran, headless
        raise BadInput(
            f"MuJoCo cannot make an offscreen GL context with MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r} "
            f"({str(exc).splitlines()[0]}); set MUJOCO_GL=osmesa (CPU) or egl (GPU) before starting Python"
        ) from None
    flags = mujoco.mjtRndFlag
    for flag, on in (
        (flags.mjRND_SHADOW, render.shadows),
        (flags.mjRND_REFLECTION, render.reflections),
        (flags.mjRND_SKYBOX, render.skybox),
        (flags.mjRND_HAZE, render.haze),
    ):
        if not on:
            renderer.scene.flags[flag] = 0
    return renderer


# One small cache per process: building a task's model and GL context costs ~0.3-1 s, about as much
# as an episode, so repeated calls (and a worker's many episodes) reuse them. Least recently used
# entries are closed beyond _CACHE_SIZE, which bounds memory when many tasks are generated.
_CACHE_SIZE = 8
_ROLLOUTS: OrderedDict[tuple[str, int], ExpertRollout] = OrderedDict()


def _rollout_for(task: str, image_size: int) -> ExpertRollout:
    key = (task, image_size)
    if key in _ROLLOUTS:
        _ROLLOUTS.move_to_end(key)
    else:
        _ROLLOUTS[key] = ExpertRollout(task, image_size)
        while len(_ROLLOUTS) > _CACHE_SIZE:
            _ROLLOUTS.popitem(last=False)[1].close()
    return _ROLLOUTS[key]


@atexit.register
def _close_rollouts() -> None:
    """Close the cached GL contexts at exit, while their modules still exist: left to the
    interpreter's teardown, mujoco's finalisers run after osmesa's functions are gone and print
    "Exception ignored ... TypeError" after an otherwise clean run."""
    while _ROLLOUTS:
        _ROLLOUTS.popitem()[1].close()


def _make_episode(job: tuple[str, int, int, int, int]) -> Episode:
    """Worker entry point: job = (task, index within task, episode seed, image_size, max_steps)."""
    task, index, ep_seed, image_size, max_steps = job
    images, proprio, actions, info = _rollout_for(task, image_size).run(ep_seed, max_steps)
    return Episode(
        images=images,
        proprio=proprio,
        actions=actions,
        instruction=TASK_DESCRIPTIONS[task],
        task=task,
        success=info["steps_to_success"] is not None,
        source="metaworld",
        seed=ep_seed,
        meta={"episode_in_task": index, "camera": CAMERA, "max_steps": max_steps, **info},
    )


def generate_episodes(
    tasks: list[str],
    episodes_per_task: int,
    *,
    seed: int = 0,
    image_size: int = 128,
    max_steps: int = DEFAULT_MAX_STEPS,
    workers: int = 1,
) -> Iterator[Episode]:
    """Expert demonstrations for the given Meta-World tasks, task by task, in a deterministic order.

    Args:
        tasks: Meta-World v3 task names (see ``TASKS``), e.g. ``["reach-v3", "push-v3"]``.
        episodes_per_task: episodes to record for each task (> 0).
        seed: base seed; episode ``i`` of a task gets ``episode_seed(seed, task, i)``, so the output
            is the same for any number of workers and any task subset.
        image_size: side of the square RGB camera image (pixels).
        max_steps: episode horizon (environment steps); an expert that has not succeeded by then is
            recorded with ``success=False``.
        workers: processes rendering in parallel (each holds its own environments and GL contexts).

    Yields:
        ``Episode`` with images (T, image_size, image_size, 3) uint8, proprio (T, 4) float32,
        actions (T, 4) float32, ``source="metaworld"`` and ``task`` the task name.

    Raises:
        BadInput: unknown task name, non-positive count/size/steps/workers, or the extra missing.
    """
    tasks = check_tasks(tasks)
    for name, value, low in (
        ("episodes_per_task", episodes_per_task, 1),
        ("image_size", image_size, 8),
        ("max_steps", max_steps, 1),
        ("workers", workers, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise BadInput(f"metaworld {name} must be an integer >= {low}, got {value!r}")
    _import_backend()  # fail fast, before any worker starts, when the extra is missing
    jobs = [
        (task, i, episode_seed(seed, task, i), int(image_size), int(max_steps))
        for task in tasks
        for i in range(int(episodes_per_task))
    ]
    if workers == 1:
        yield from map(_make_episode, jobs)
        return
    # "spawn", not fork: a forked child would inherit the parent's GL state (unsafe with OSMesa/EGL).
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(int(workers), len(jobs))) as pool:
        yield from pool.imap(_make_episode, jobs, chunksize=1)  # ordered, so output is deterministic
