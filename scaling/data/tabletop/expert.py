"""The scripted expert: follows a task's reference plan, closed-loop, with a tunable noise level.

Noise makes demonstrations of different quality (and sets the irreducible part of the behaviour
cloning loss): Gaussian noise of std ``noise`` on the movement actions (in action units, i.e.
fractions of the top speed), and with probability ``min(1, 2 * noise)`` per carried move a detour
through a suboptimal waypoint. Being closed-loop, it corrects the drift the noise causes.
"""

from __future__ import annotations

import math

import numpy as np

from scaling.data.tabletop.scene import MAX_SPEED, Scene
from scaling.data.tabletop.tasks import Op, Task

PLACE_TOL = 0.04  # an object released this close to its goal point completes a 'place' op


def _move(agent: np.ndarray, target) -> tuple[list[float], bool]:
    """[dx, dy] movement action towards ``target`` at top speed, and whether it gets there this step.

    Scaled by the largest component, so the path is a straight line and no component exceeds 1.
    Python floats: for two numbers they are several times faster than numpy.
    """
    dx, dy = float(target[0]) - float(agent[0]), float(target[1]) - float(agent[1])
    span = max(abs(dx), abs(dy))
    scale = max(MAX_SPEED, span)
    return [dx / scale, dy / scale], span <= MAX_SPEED


class ScriptedExpert:
    """Expert for one episode.

    Args:
        task: the episode's task (its ``plan`` is followed).
        noise: action-noise std (action units) and detour probability / 2; 0 is the clean expert.
        rng: generator for the noise (the episode's expert stream, so episodes are reproducible).
    """

    def __init__(self, task: Task, noise: float = 0.0, rng: np.random.Generator | None = None) -> None:
        self.task = task
        self.noise = float(noise)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.clean: list[float] = [0.0, 0.0, 0.0]  # of the last `act` call (see there)
        self.clean_std: list[float] = [0.0, 0.0, 0.0]
        # Detour waypoints per op index, drawn up front so the plan is fixed for the episode.
        self._via: dict[int, np.ndarray] = {}
        if self.noise > 0:
            for k, op in enumerate(task.plan):
                if op.kind == "place" and self.rng.random() < min(1.0, 2 * self.noise):
                    self._via[k] = self.rng.uniform(0.15, 0.85, size=2)

    def _done(self, op: Op, scene: Scene) -> bool:
        if op.kind == "reach":
            return False  # reach ops end the episode (touch / reach_zone) when they succeed
        if op.kind == "pick":
            return scene.held == op.obj
        x, y = scene.pos[op.obj].tolist()
        return scene.held != op.obj and math.hypot(x - op.point[0], y - op.point[1]) < PLACE_TOL

    def act(self, scene: Scene) -> np.ndarray:
        """(3,) float32 action in [-1, 1] for the current ``scene``.

        Also sets ``clean`` (the action before the noise: [dx, dy, grip], movement not yet clipped)
        and ``clean_std`` (the noise std of each dimension at this step), which the generator
        records for the dataset's loss floor; the action is clip(clean + N(0, clean_std^2), -1, 1).
        """
        k = next((k for k, op in enumerate(self.task.plan) if not self._done(op, scene)), None)
        if k is None:  # plan complete: stay put, keep the gripper as it is
            grip = 1.0 if scene.closed else -1.0
            self.clean, self.clean_std = [0.0, 0.0, grip], [0.0, 0.0, 0.0]
            return np.array([0.0, 0.0, grip], dtype=np.float32)
        op = self.task.plan[k]
        if op.kind == "reach":
            target = scene.pos[op.obj] if op.obj >= 0 else np.asarray(op.point)
            move, _ = _move(scene.agent, target)
            grip = -1.0
        elif scene.held == op.obj:  # carrying the right object ('place'; 'pick' is done by now)
            via = self._via.get(k)
            move, arrive = _move(scene.agent, via if via is not None else op.point)
            if via is not None:
                if arrive:
                    del self._via[k]
                grip = 1.0
            else:
                grip = -1.0 if arrive else 1.0
        elif scene.held >= 0:  # carrying something else: put it down here
            move, grip = [0.0, 0.0], -1.0
        else:
            move, arrive = _move(scene.agent, scene.pos[op.obj])
            # Close on arrival; if closed on nothing (a missed grasp), open first to retry.
            grip = 1.0 if (arrive and not scene.closed) else -1.0
        # Python lists, not arrays: this runs once per generated frame.
        self.clean = [move[0], move[1], grip]
        self.clean_std = [self.noise, self.noise, 0.0]
        if self.noise > 0:
            jitter = self.rng.normal(0.0, self.noise, size=2).tolist()
            move = [move[0] + jitter[0], move[1] + jitter[1]]
        dx, dy = (min(1.0, max(-1.0, v)) for v in move)
        return np.array([dx, dy, grip], dtype=np.float32)
