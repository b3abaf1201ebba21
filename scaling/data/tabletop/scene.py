"""The tabletop world: objects, zones, the agent and its kinematics (nothing about pixels).

Coordinates are in table units, ``[0, 1]^2``, with x to the right and y *down* (image order), so
"top" means small y. The agent is a top-down gripper: it hovers above the objects (no collisions),
closes to grasp the top-most object under it, carries it, and opens to put it down; an object put
down on another object is stacked on it (snapped to its centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Saturated object colours (RGB uint8); zones use pale tints of the same colours.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (240, 205, 30),
    "purple": (150, 60, 200),
    "orange": (250, 135, 25),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
# Four silhouettes that stay distinct at ~7 pixels across (64 px images).
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross")

OBJECT_RADIUS = 0.055  # table units; an object spans ~7 px at 64 px
GRASP_RADIUS = 0.06  # agent-object centre distance within which closing grasps it
STACK_RADIUS = 0.06  # an object released this close to a top object is stacked on it
MAX_SPEED = 0.07  # table units per step at |action| = 1 (~4.5 px at 64 px)
AGENT_LO, AGENT_HI = 0.03, 0.97  # the agent (and what it carries) stays on the table

PROPRIO_DIM = 4  # agent x, agent y, gripper closed (0/1), holding something (0/1)
ACTION_DIM = 3  # dx, dy (fraction of MAX_SPEED), gripper command (> 0 closes)
ACTION_LOW, ACTION_HIGH = -1.0, 1.0


@dataclass(frozen=True)
class Zone:
    """An axis-aligned placement region of the table."""

    name: str
    """Stable identifier ("top-left", ..., "center")."""
    lo: tuple[float, float]
    """(x, y) of the upper-left corner (table units)."""
    hi: tuple[float, float]
    """(x, y) of the lower-right corner (table units)."""

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        """Whether ``point`` (2,) lies inside the zone shrunk by ``margin`` on each side."""
        return bool(
            self.lo[0] + margin <= point[0] <= self.hi[0] - margin
            and self.lo[1] + margin <= point[1] <= self.hi[1] - margin
        )

    @property
    def center(self) -> np.ndarray:
        """(2,) centre of the zone."""
        return (np.asarray(self.lo) + np.asarray(self.hi)) / 2


_Z = 0.25  # side of a corner zone
# Fixed layout: four coloured corner pads (colours drawn per scene) and an uncoloured centre pad.
CORNER_ZONES: tuple[Zone, ...] = (
    Zone("top-left", (0.0, 0.0), (_Z, _Z)),
    Zone("top-right", (1 - _Z, 0.0), (1.0, _Z)),
    Zone("bottom-left", (0.0, 1 - _Z), (_Z, 1.0)),
    Zone("bottom-right", (1 - _Z, 1 - _Z), (1.0, 1.0)),
)
CENTER_ZONE = Zone("center", (0.38, 0.38), (0.62, 0.62))
ZONES: dict[str, Zone] = {z.name: z for z in (*CORNER_ZONES, CENTER_ZONE)}


@dataclass(eq=False)  # identity semantics: renderers key weak caches on the scene object
class Scene:
    """Mutable state of one episode's table.

    Attributes:
        colours: (n,) int index into ``COLOUR_NAMES`` per object.
        shapes: (n,) int index into ``SHAPES`` per object.
        pos: (n, 2) float64 object centres (table units).
        on: (n,) int index of the object each one is stacked on, -1 when on the table.
        zone_colours: colour index of each of the four ``CORNER_ZONES``.
        agent: (2,) float64 agent position (table units).
        closed: whether the gripper is closed.
        held: index of the carried object, -1 when none.
        version: counter bumped on every grasp and release (resting objects changed).
    """

    colours: np.ndarray
    shapes: np.ndarray
    pos: np.ndarray
    on: np.ndarray
    zone_colours: tuple[int, ...]
    agent: np.ndarray
    closed: bool = False
    held: int = -1
    version: int = 0

    @property
    def n(self) -> int:
        """Number of objects."""
        return int(self.pos.shape[0])

    def is_top(self, i: int) -> bool:
        """Whether nothing is stacked on object ``i``."""
        return not bool(np.any(self.on == i))

    def levels(self) -> np.ndarray:
        """(n,) stack height of each object (0 = on the table); the draw order."""
        lv = np.zeros(self.n, dtype=np.int64)
        if bool(np.all(self.on < 0)):
            return lv
        for i in range(self.n):
            j, h = int(self.on[i]), 0
            while j >= 0 and h <= self.n:  # h bound guards against a (never built) cycle
                j, h = int(self.on[j]), h + 1
            lv[i] = h
        return lv

    def zone_of_colour(self, colour: int) -> Zone | None:
        """The corner zone painted ``colour``, or None."""
        for zone, c in zip(CORNER_ZONES, self.zone_colours):
            if c == colour:
                return zone
        return None

    def zone_colour(self, zone: Zone) -> int | None:
        """Colour index of a corner zone (None for the centre)."""
        for z, c in zip(CORNER_ZONES, self.zone_colours):
            if z.name == zone.name:
                return int(c)
        return None

    def proprio(self) -> np.ndarray:
        """(4,) float32: agent x, agent y, gripper closed, holding."""
        return np.array(
            [self.agent[0], self.agent[1], float(self.closed), float(self.held >= 0)], dtype=np.float32
        )

    def step(self, action: np.ndarray) -> None:
        """Apply one action (3,): move by ``action[:2] * MAX_SPEED``, then open/close the gripper.

        Non-finite entries count as 0 and everything is clipped to [-1, 1], so any policy output
        leaves the scene valid. Closing grasps; opening releases (and maybe stacks).
        """
        # Python floats: for three numbers this is several times faster than small numpy ops.
        raw = np.asarray(action, dtype=np.float64).ravel()[:ACTION_DIM].tolist()
        a = [v if math.isfinite(v) else 0.0 for v in raw]
        dx, dy, grip = (min(1.0, max(-1.0, v)) for v in a)
        x = min(AGENT_HI, max(AGENT_LO, float(self.agent[0]) + dx * MAX_SPEED))
        y = min(AGENT_HI, max(AGENT_LO, float(self.agent[1]) + dy * MAX_SPEED))
        self.agent = np.array([x, y])
        want_closed = grip > 0
        if want_closed and not self.closed:
            self.closed = True
            self._grasp()
        elif not want_closed and self.closed:
            self.closed = False
            self._release()
        if self.held >= 0:
            self.pos[self.held] = self.agent

    def grasp_candidate(self, point: np.ndarray) -> int:
        """The object a gripper closing at ``point`` would take: top-most, then nearest; -1 if none."""
        d = np.linalg.norm(self.pos - point, axis=1)
        best, key = -1, None
        levels = self.levels()
        for i in np.flatnonzero(d < GRASP_RADIUS):
            if i == self.held or not self.is_top(int(i)):
                continue
            k = (-levels[i], d[i])
            if key is None or k < key:
                best, key = int(i), k
        return best

    def _grasp(self) -> None:
        i = self.grasp_candidate(self.agent)
        if i >= 0:
            self.held = i
            self.on[i] = -1
            self.version += 1

    def _release(self) -> None:
        if self.held < 0:
            return
        i, self.held = self.held, -1
        self.version += 1
        self.pos[i] = self.agent
        d = np.linalg.norm(self.pos - self.pos[i], axis=1)
        d[i] = np.inf
        for j in np.argsort(d):
            if d[j] >= STACK_RADIUS:
                break
            if self.is_top(int(j)):
                self.on[i] = int(j)
                self.pos[i] = self.pos[j]
                return

    def describe(self) -> list[dict]:
        """JSON-friendly list of objects: colour, shape and current position (table units)."""
        return [
            {"colour": COLOUR_NAMES[c], "shape": SHAPES[s], "x": round(float(p[0]), 4), "y": round(float(p[1]), 4)}
            for c, s, p in zip(self.colours, self.shapes, self.pos)
        ]


_ZONE_MARGIN = 0.05  # objects start at least this far outside every zone (table units)
_MIN_SEP = 0.16  # minimum centre distance between objects at the start
_ZONE_LO = np.array([z.lo for z in ZONES.values()]) - _ZONE_MARGIN  # (5, 2)
_ZONE_HI = np.array([z.hi for z in ZONES.values()]) + _ZONE_MARGIN  # (5, 2)


def sample_scene(rng: np.random.Generator, *, n_objects: int, pair_colour: int | None = None) -> Scene | None:
    """Draw a scene: distinct (colour, shape) objects, spaced out and off the zones.

    Args:
        rng: the episode's generator.
        n_objects: how many objects (1..6).
        pair_colour: if given, exactly two objects have this colour (for "all <colour>" tasks).

    Returns:
        The scene, or None when rejection sampling of positions failed (the caller redraws).
    """
    combos = [(c, s) for c in range(len(COLOUR_NAMES)) for s in range(len(SHAPES))]
    if pair_colour is None:
        pick = rng.permutation(len(combos))[:n_objects]  # rng.choice(replace=False) is 3x slower
        chosen = [combos[k] for k in pick]
    else:
        shapes2 = rng.permutation(len(SHAPES))[:2]
        rest = [cs for cs in combos if cs[0] != pair_colour]
        pick = rng.permutation(len(rest))[: n_objects - 2]
        chosen = [(pair_colour, int(s)) for s in shapes2] + [rest[k] for k in pick]
        chosen = [chosen[k] for k in rng.permutation(len(chosen))]
    # Rejection sampling, vectorised: draw candidates, drop those near a zone, then accept greedily
    # (in draw order) those far enough from the ones already accepted.
    cand = rng.uniform(0.08, 0.92, size=(96, 2))  # ~40% land off the zones; a failure is redrawn
    near_zone = ((cand[:, None, :] > _ZONE_LO) & (cand[:, None, :] < _ZONE_HI)).all(axis=2).any(axis=1)
    accepted: list[tuple[float, float]] = []
    for px, py in cand[~near_zone].tolist():
        if all((px - qx) ** 2 + (py - qy) ** 2 >= _MIN_SEP**2 for qx, qy in accepted):
            accepted.append((px, py))
            if len(accepted) == n_objects:
                break
    else:
        return None
    pos = np.array(accepted, dtype=np.float64)
    zone_colours = tuple(rng.permutation(len(COLOUR_NAMES))[: len(CORNER_ZONES)].tolist())
    return Scene(
        colours=np.array([c for c, _ in chosen], dtype=np.int64),
        shapes=np.array([s for _, s in chosen], dtype=np.int64),
        pos=pos,
        on=np.full(n_objects, -1, dtype=np.int64),
        zone_colours=zone_colours,
        agent=rng.uniform(0.1, 0.9, size=2),
    )
