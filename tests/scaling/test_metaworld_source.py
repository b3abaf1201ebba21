"""Meta-World source: real MuJoCo physics and the scripted experts (skipped without the extra)."""

from __future__ import annotations

import numpy as np
import pytest

# Imported first: it picks the GL backend (OSMesa when headless) before mujoco is imported.
from scaling.data import metaworld_source as mw
from tests.scaling.metaworld_skip import skip_without_metaworld

skip_without_metaworld(module_level=True)

pytestmark = pytest.mark.metaworld

SMALL = dict(image_size=32, max_steps=50)  # reach-v3's expert needs ~35-55 steps


@pytest.fixture(scope="module")
def reach_episodes():
    return list(mw.generate_episodes(["reach-v3"], 2, seed=0, **SMALL))


def test_shapes_dtypes_and_fields(reach_episodes):
    assert len(reach_episodes) == 2
    for ep in reach_episodes:
        t = len(ep)
        assert 1 <= t <= SMALL["max_steps"]
        assert ep.images.shape == (t, 32, 32, 3) and ep.images.dtype == np.uint8
        assert ep.proprio.shape == (t, 4) and ep.proprio.dtype == np.float32
        assert ep.actions.shape == (t, 4) and ep.actions.dtype == np.float32
        assert np.all(np.abs(ep.actions) <= 1.0)
        assert ep.source == "metaworld" and ep.task == "reach-v3"
        assert ep.instruction == mw.TASK_DESCRIPTIONS["reach-v3"]
        assert ep.images.std() > 5  # a real rendered scene, not a blank frame
        assert not np.array_equal(ep.images[0], ep.images[-1])  # the arm moved in view
        # proprio is the hand position: it moves towards the goal over the episode
        assert np.linalg.norm(ep.proprio[-1, :3] - ep.proprio[0, :3]) > 0.01
    # two episodes, two different placements of the goal
    assert reach_episodes[0].meta["rand_vec"] != reach_episodes[1].meta["rand_vec"]


def test_success_flag_matches_episode_end(reach_episodes):
    for ep in reach_episodes:
        steps = ep.meta["steps_to_success"]
        assert ep.success == (steps is not None)
        if ep.success:
            assert steps == len(ep)  # the episode ends at the first successful step
        else:
            assert len(ep) == SMALL["max_steps"]
    assert any(ep.success for ep in reach_episodes)
    # a horizon far too short for the expert: the episode is kept and flagged as failed
    (short,) = mw.generate_episodes(["reach-v3"], 1, seed=0, max_steps=3, image_size=SMALL["image_size"])
    assert not short.success and len(short) == 3 and short.meta["steps_to_success"] is None


def test_deterministic_and_independent_of_history(reach_episodes):
    """Episode 1 replayed on a fresh environment equals episode 1 made after episode 0."""
    rollout = mw.ExpertRollout("reach-v3", SMALL["image_size"])
    try:
        images, proprio, actions, info = rollout.run(mw.episode_seed(0, "reach-v3", 1), SMALL["max_steps"])
        other_seed = rollout.run(mw.episode_seed(1, "reach-v3", 1), 2)[3]
    finally:
        rollout.close()
    np.testing.assert_array_equal(images, reach_episodes[1].images)
    np.testing.assert_array_equal(proprio, reach_episodes[1].proprio)
    np.testing.assert_array_equal(actions, reach_episodes[1].actions)
    assert info["rand_vec"] == reach_episodes[1].meta["rand_vec"]
    assert other_seed["rand_vec"] != info["rand_vec"]  # another base seed, another scene
    assert mw.episode_seed(0, "reach-v3", 1) == reach_episodes[1].seed


@pytest.mark.slow
def test_workers_give_the_same_episodes(reach_episodes):
    parallel = list(mw.generate_episodes(["reach-v3"], 2, seed=0, workers=2, **SMALL))
    assert len(parallel) == 2
    for a, b in zip(reach_episodes, parallel):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.actions, b.actions)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["push-v3", "pick-place-v3", "drawer-open-v3"])
def test_experts_succeed(task):
    episodes = list(mw.generate_episodes([task], 3, seed=0, image_size=32))
    assert sum(ep.success for ep in episodes) >= 2


@pytest.mark.slow
def test_metaworld_dataset_round_trips_through_lerobot(reach_episodes, tmp_path):
    import json

    from scaling.data.lerobot import export_lerobot, import_lerobot
    from scaling.data.store import open_dataset, write_dataset

    src = write_dataset(reach_episodes, tmp_path / "mw", seed=0, generator="metaworld", generator_version="test")
    out = export_lerobot(src, tmp_path / "lr")
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 80 and info["features"]["observation.state"]["names"][-1] == "gripper"
    back = open_dataset(import_lerobot(out, tmp_path / "back"))
    for a, b in zip(reach_episodes, back.iter_episodes()):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.actions, b.actions)
        assert (b.task, b.source, b.success) == (a.task, "metaworld", a.success)


@pytest.mark.slow
def test_mujoco_imported_first_without_backend_is_a_clear_error():
    """Headless, MUJOCO_GL unset, mujoco imported before us: one clear line, not a GL crash."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    code = ("import mujoco\nfrom scaling.data import metaworld_source as mw\nfrom vla_core.errors import BadInput\n"
            "try:\n    next(mw.generate_episodes(['reach-v3'], 1, image_size=16, max_steps=1))\n"
            "except BadInput as exc:\n    print('BadInput:', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "BadInput: MuJoCo cannot make an offscreen GL context" in out.stdout, out.stderr[-2000:]
    assert "MUJOCO_GL=osmesa" in out.stdout
