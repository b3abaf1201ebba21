"""Task families: what to do, how it is said, how success is judged, and one way to do it.

Each family has a sampler (scene, rng) -> Task or None (None: this scene does not suit, redraw)
and a success predicate (task, scene) -> bool. A task carries a reference plan (`Op`s with goal
points chosen clear of other objects) that the scripted expert follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaling.data.tabletop import instructions as words
from scaling.data.tabletop.scene import ZONES, Scene, sample_scene
from vla_core.errors import BadInput

EDGE = 0.15  # an object is "at the left edge" when x < EDGE (and likewise for the other sides)
NEXT_TO = (0.08, 0.2)  # centre distance range that counts as "next to" (not on top, not far)
BETWEEN_TOL = 0.07  # distance from the midpoint that counts as "between"
REL_RANGE = (0.1, 0.3)  # offset along the relation axis that counts as "left of" etc.
REL_LATERAL = 0.08  # allowed offset across the relation axis
TOUCH = 0.05  # agent-object distance that counts as touching
START_GAP = 0.25  # the agent starts at least this far from its first target (object or point)
CLEARANCE = 0.13  # goal points keep this far from other objects (no accidental stacking)
_SIDES = ("left", "right", "top", "bottom")
_REL_DIR = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "above": (0.0, -1.0), "below": (0.0, 1.0)}


@dataclass(frozen=True)
class Op:
    """One step of a reference plan."""

    kind: str
    """'reach' (agent to point), 'pick' (grasp obj, keep it) or 'place' (carry obj to point, release)."""
    obj: int = -1
    """Object index for 'pick' and 'place'."""
    point: tuple[float, float] = (0.0, 0.0)
    """Goal point (table units) for 'reach' and 'place'."""


@dataclass(frozen=True)
class Task:
    """One language-conditioned task in one scene."""

    family: str
    """Task family name (a key of FAMILIES)."""
    instruction: str
    """The instruction, as the policy reads it."""
    objects: tuple[int, ...] = ()
    """Objects the task is about: the one to move first, then reference objects."""
    zone: str | None = None
    """Zone name for zone tasks."""
    param: str | None = None
    """Side, relation or colour name, by family."""
    plan: tuple[Op, ...] = ()
    """Reference plan the scripted expert follows."""


# ---- geometry helpers -------------------------------------------------------------------------


def _choose(scene: Scene, cands: list, moving: int, *, extra: tuple = (), keep=None) -> tuple | None:
    """The candidate nearest to the moving object that is on the table, clear, and passes ``keep``.

    Clear means at least CLEARANCE from every other object and from the ``extra`` points (goals
    already promised to other objects).
    """
    c = np.clip(np.asarray(cands, dtype=np.float64).reshape(-1, 2), 0.06, 0.94)  # (m, 2)
    others = np.concatenate([np.delete(scene.pos, moving, axis=0), np.asarray(extra, dtype=np.float64).reshape(-1, 2)])
    if len(others):
        gap = np.sqrt(((c[:, None, :] - others[None, :, :]) ** 2).sum(-1)).min(axis=1)  # (m,)
        c = c[gap >= CLEARANCE]
    if keep is not None:
        c = c[[bool(keep(p)) for p in c]] if len(c) else c
    if not len(c):
        return None
    best = c[int(np.argmin(((c - scene.pos[moving]) ** 2).sum(-1)))]
    return (float(best[0]), float(best[1]))


def _zone_grid(zone_name: str) -> list:
    z = ZONES[zone_name]
    xs = np.linspace(z.lo[0] + 0.06, z.hi[0] - 0.06, 3)
    ys = np.linspace(z.lo[1] + 0.06, z.hi[1] - 0.06, 3)
    return [(x, y) for y in ys for x in xs]


def _two(rng: np.random.Generator, n: int, k: int = 2) -> list[int]:
    return rng.permutation(n)[:k].tolist()


# ---- samplers (scene, rng) -> Task | None ------------------------------------------------------


def _push_edge(scene: Scene, rng: np.random.Generator) -> Task | None:
    x = int(rng.integers(scene.n))
    side = _SIDES[int(rng.integers(4))]
    px, py = scene.pos[x]
    offs = np.linspace(-0.15, 0.15, 7)
    cands = {
        "left": [(0.08, py + o) for o in offs], "right": [(0.92, py + o) for o in offs],
        "top": [(px + o, 0.08) for o in offs], "bottom": [(px + o, 0.92) for o in offs],
    }[side]
    goal = _choose(scene, cands, x)
    if goal is None:
        return None
    text = words.render_instruction(
        "push_edge", rng, x=words.object_phrase(scene, x, rng), side=words.pick_word(rng, words.SIDE_WORDS[side]))
    return Task("push_edge", text, (x,), param=side, plan=(Op("place", x, goal),))


def _next_to(scene: Scene, rng: np.random.Generator) -> Task | None:
    x, y = _two(rng, scene.n)
    if np.linalg.norm(scene.pos[x] - scene.pos[y]) < 0.25:
        return None
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    cands = [scene.pos[y] + 0.14 * np.array([np.cos(a), np.sin(a)]) for a in ang]
    lo, hi = NEXT_TO[0] + 0.02, NEXT_TO[1] - 0.02  # margins absorb the expert's placement noise
    goal = _choose(scene, cands, x, keep=lambda c: lo < np.linalg.norm(c - scene.pos[y]) < hi)
    if goal is None:
        return None
    text = words.render_instruction(
        "next_to", rng, x=words.object_phrase(scene, x, rng), y=words.object_phrase(scene, y, rng))
    return Task("next_to", text, (x, y), plan=(Op("place", x, goal),))


def _place_zone(scene: Scene, rng: np.random.Generator) -> Task | None:
    x = int(rng.integers(scene.n))
    zone = list(ZONES)[int(rng.integers(len(ZONES)))]
    goal = _choose(scene, _zone_grid(zone), x)
    if goal is None:
        return None
    text = words.render_instruction(
        "place_zone", rng, x=words.object_phrase(scene, x, rng), zone=words.zone_phrase(scene, ZONES[zone], rng))
    return Task("place_zone", text, (x,), zone=zone, plan=(Op("place", x, goal),))


def _stack(scene: Scene, rng: np.random.Generator) -> Task | None:
    x, y = _two(rng, scene.n)
    goal = (float(scene.pos[y][0]), float(scene.pos[y][1]))
    text = words.render_instruction(
        "stack", rng, x=words.object_phrase(scene, x, rng), y=words.object_phrase(scene, y, rng))
    return Task("stack", text, (x, y), plan=(Op("place", x, goal),))


def _sort(scene: Scene, rng: np.random.Generator) -> Task | None:
    x = int(rng.integers(scene.n))
    zone = scene.zone_of_colour(int(scene.colours[x]))
    if zone is None:
        return None
    goal = _choose(scene, _zone_grid(zone.name), x)
    if goal is None:
        return None
    text = words.render_instruction("sort", rng, x=words.object_phrase(scene, x, rng))
    return Task("sort", text, (x,), zone=zone.name, plan=(Op("place", x, goal),))


def _pick_up(scene: Scene, rng: np.random.Generator) -> Task | None:
    x = int(rng.integers(scene.n))
    text = words.render_instruction("pick_up", rng, x=words.object_phrase(scene, x, rng))
    return Task("pick_up", text, (x,), plan=(Op("pick", x),))


def _touch(scene: Scene, rng: np.random.Generator) -> Task | None:
    x = int(rng.integers(scene.n))
    text = words.render_instruction("touch", rng, x=words.object_phrase(scene, x, rng))
    return Task("touch", text, (x,), plan=(Op("reach", x, tuple(float(v) for v in scene.pos[x])),))


def _between(scene: Scene, rng: np.random.Generator) -> Task | None:
    x, y, z = _two(rng, scene.n, 3)
    if np.linalg.norm(scene.pos[y] - scene.pos[z]) < 0.3:
        return None
    mid = (scene.pos[y] + scene.pos[z]) / 2
    cands = [mid + np.array(o) for o in ((0, 0), (0.03, 0), (-0.03, 0), (0, 0.03), (0, -0.03))]
    goal = _choose(scene, cands, x)
    if goal is None:
        return None
    text = words.render_instruction("between", rng, x=words.object_phrase(scene, x, rng),
                                    y=words.object_phrase(scene, y, rng), z=words.object_phrase(scene, z, rng))
    return Task("between", text, (x, y, z), plan=(Op("place", x, goal),))


def _relative(scene: Scene, rng: np.random.Generator) -> Task | None:
    x, y = _two(rng, scene.n)
    rel = list(_REL_DIR)[int(rng.integers(4))]
    d = np.array(_REL_DIR[rel])
    perp = d[::-1]
    cands = [scene.pos[y] + a * d + b * perp for a in (0.17, 0.22, 0.14) for b in (0.0, 0.03, -0.03)]

    def keep(c: np.ndarray) -> bool:  # clipping to the table may have broken the relation
        off = c - scene.pos[y]
        return REL_RANGE[0] + 0.02 <= off @ d <= REL_RANGE[1] - 0.02 and abs(off @ perp) <= REL_LATERAL - 0.03

    goal = _choose(scene, cands, x, keep=keep)
    if goal is None:
        return None
    text = words.render_instruction(
        "relative", rng, x=words.object_phrase(scene, x, rng),
        rel=words.pick_word(rng, words.RELATION_WORDS[rel]), y=words.object_phrase(scene, y, rng))
    return Task("relative", text, (x, y), param=rel, plan=(Op("place", x, goal),))


def _all_in_zone(scene: Scene, rng: np.random.Generator) -> Task | None:
    counts = np.bincount(scene.colours, minlength=len(words.COLOUR_NAMES))
    colours = np.flatnonzero(counts >= 2)
    if len(colours) == 0:
        return None
    colour = int(colours[0])
    zone = list(ZONES)[int(rng.integers(len(ZONES)))]
    members = [int(i) for i in np.flatnonzero(scene.colours == colour)]
    # Nearest object first: the shorter tour, and each goal avoids the previous goals.
    members.sort(key=lambda i: float(np.linalg.norm(scene.pos[i] - scene.agent)))
    plan, goals = [], []
    for i in members:
        goal = _choose(scene, _zone_grid(zone), i, extra=tuple(goals))
        if goal is None:
            return None
        goals.append(goal)
        plan.append(Op("place", i, goal))
    name = words.COLOUR_NAMES[colour]
    text = words.render_instruction("all_in_zone", rng, colour=words.pick_word(rng, words.COLOUR_WORDS[name]),
                                    zone=words.zone_phrase(scene, ZONES[zone], rng))
    return Task("all_in_zone", text, tuple(members), zone=zone, param=name, plan=tuple(plan))


def _reach_zone(scene: Scene, rng: np.random.Generator) -> Task | None:
    zone = list(ZONES)[int(rng.integers(len(ZONES)))]
    goal = tuple(float(v) for v in ZONES[zone].center)
    text = words.render_instruction("reach_zone", rng, zone=words.zone_phrase(scene, ZONES[zone], rng))
    return Task("reach_zone", text, (), zone=zone, plan=(Op("reach", -1, goal),))


def _pick_nearest(scene: Scene, rng: np.random.Generator) -> Task | None:
    y = int(rng.integers(scene.n))
    d = np.linalg.norm(scene.pos - scene.pos[y], axis=1)
    d[y] = np.inf
    order = np.argsort(d)
    if d[order[1]] - d[order[0]] < 0.05:  # the nearest must be unambiguous
        return None
    x = int(order[0])
    text = words.render_instruction("pick_nearest", rng, y=words.object_phrase(scene, y, rng))
    return Task("pick_nearest", text, (x, y), plan=(Op("pick", x),))


# ---- success predicates (task, scene) -> bool --------------------------------------------------


def _placed(scene: Scene, i: int) -> bool:
    return scene.held != i


def _ok_push_edge(t: Task, s: Scene) -> bool:
    x, y = s.pos[t.objects[0]]
    at = {"left": x < EDGE, "right": x > 1 - EDGE, "top": y < EDGE, "bottom": y > 1 - EDGE}[t.param]
    return at and _placed(s, t.objects[0])


def _ok_next_to(t: Task, s: Scene) -> bool:
    x, y = t.objects
    d = float(np.linalg.norm(s.pos[x] - s.pos[y]))
    return NEXT_TO[0] <= d <= NEXT_TO[1] and _placed(s, x) and s.on[x] == -1


def _ok_zone(t: Task, s: Scene) -> bool:
    # place_zone and sort name one object; all_in_zone names every object of the colour.
    return all(ZONES[t.zone].contains(s.pos[i]) and _placed(s, i) for i in t.objects)


def _ok_stack(t: Task, s: Scene) -> bool:
    x, y = t.objects
    return int(s.on[x]) == y and _placed(s, x)


def _ok_held(t: Task, s: Scene) -> bool:
    return s.held == t.objects[0]


def _ok_touch(t: Task, s: Scene) -> bool:
    return float(np.linalg.norm(s.agent - s.pos[t.objects[0]])) < TOUCH


def _ok_between(t: Task, s: Scene) -> bool:
    x, y, z = t.objects
    mid = (s.pos[y] + s.pos[z]) / 2
    return float(np.linalg.norm(s.pos[x] - mid)) < BETWEEN_TOL and _placed(s, x)


def _ok_relative(t: Task, s: Scene) -> bool:
    x, y = t.objects
    d = np.array(_REL_DIR[t.param])
    off = s.pos[x] - s.pos[y]
    along, across = float(off @ d), float(abs(off @ d[::-1]))
    return REL_RANGE[0] <= along <= REL_RANGE[1] and across <= REL_LATERAL and _placed(s, x) and s.on[x] == -1


def _ok_reach_zone(t: Task, s: Scene) -> bool:
    return ZONES[t.zone].contains(s.agent, margin=0.02)


FAMILIES: dict[str, tuple[Callable, Callable]] = {
    "push_edge": (_push_edge, _ok_push_edge),
    "next_to": (_next_to, _ok_next_to),
    "place_zone": (_place_zone, _ok_zone),
    "stack": (_stack, _ok_stack),
    "sort": (_sort, _ok_zone),
    "pick_up": (_pick_up, _ok_held),
    "touch": (_touch, _ok_touch),
    "between": (_between, _ok_between),
    "relative": (_relative, _ok_relative),
    "all_in_zone": (_all_in_zone, _ok_zone),
    "reach_zone": (_reach_zone, _ok_reach_zone),
    "pick_nearest": (_pick_nearest, _ok_held),
}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)

DEFAULT_OBJECTS: tuple[int, int] = (3, 5)
"""Objects per scene, (fewest, most), drawn uniformly per episode unless a generation says otherwise."""
MAX_OBJECTS = 6
# Fewest objects a family's scenes need (a relation needs two objects, 'between' three, a
# nearest-object question two candidates besides the reference); a smaller range is raised to it.
MIN_OBJECTS: dict[str, int] = {"next_to": 2, "stack": 2, "relative": 2, "all_in_zone": 2,
                               "pick_nearest": 3, "between": 3}


def check_objects(objects) -> tuple[int, int]:
    """(fewest, most) objects per scene from None (the default 3-5), "LO-HI", "N" or a pair.

    Raises:
        BadInput: anything but 1 <= LO <= HI <= 6.
    """
    if objects is None:
        return DEFAULT_OBJECTS
    try:
        if isinstance(objects, str):
            parts = [int(p) for p in objects.strip().split("-")]
        elif isinstance(objects, int) and not isinstance(objects, bool):
            parts = [objects]
        else:
            parts = [int(p) for p in objects]
        lo, hi = (parts[0], parts[0]) if len(parts) == 1 else parts
        if not 1 <= lo <= hi <= MAX_OBJECTS:
            raise ValueError
    except (TypeError, ValueError):
        raise BadInput(f"tabletop objects: {objects!r} is not LO-HI with 1 <= LO <= HI <= {MAX_OBJECTS}, "
                       f"e.g. 1-5") from None
    return int(lo), int(hi)


def is_success(task: Task, scene: Scene) -> bool:
    """Whether ``scene`` satisfies ``task``."""
    return bool(FAMILIES[task.family][1](task, scene))


def sample_task(rng: np.random.Generator, families: tuple[str, ...] = FAMILY_NAMES,
                objects: tuple[int, int] = DEFAULT_OBJECTS) -> tuple[Scene, Task]:
    """Draw a family, then scenes until one suits it and does not already satisfy the task.

    Args:
        rng: the episode's generator (everything here is a function of its state).
        families: the families to draw from, uniformly.
        objects: (fewest, most) objects per scene, each count equally likely (raised to what the
            family needs, `MIN_OBJECTS`); the default draws exactly as generator versions before it.

    Returns:
        (scene, task).
    """
    family = families[int(rng.integers(len(families)))]
    sampler = FAMILIES[family][0]
    need = MIN_OBJECTS.get(family, 1)
    lo, hi = max(objects[0], need), max(objects[1], need)
    for _ in range(1000):
        pair = int(rng.integers(len(words.COLOUR_NAMES))) if family == "all_in_zone" else None
        scene = sample_scene(rng, n_objects=int(rng.integers(lo, hi + 1)), pair_colour=pair)
        if scene is None:
            continue
        # A scene is costlier to draw than a task: try a few tasks (and agent starts) per scene.
        for _ in range(8):
            task = sampler(scene, rng)
            if task is not None and not is_success(task, scene):
                # The agent starts away from its first target, so no episode is a one-step freebie.
                first = task.plan[0]
                target = scene.pos[first.obj] if first.obj >= 0 else np.asarray(first.point)
                if np.linalg.norm(scene.agent - target) >= START_GAP:
                    return scene, task
            scene.agent = rng.uniform(0.1, 0.9, size=2)
    raise RuntimeError(f"tabletop: could not sample a {family!r} task in 1000 scenes")  # pragma: no cover
