"""Instruction templates and synonyms: how each task family is said in words.

Every family has several phrasings, every object, zone, side and relation several names, so the
number of distinct instructions grows combinatorially (thousands), and a policy must ground words
in pixels rather than memorise a handful of strings.
"""

from __future__ import annotations

import numpy as np

from scaling.data.tabletop.scene import COLOUR_NAMES, SHAPES, Scene, Zone

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "square": ("square", "block", "cube", "box"),
    "circle": ("circle", "ball", "disc", "round piece"),
    "triangle": ("triangle", "wedge", "triangular piece"),
    "cross": ("cross", "plus", "plus sign"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLOUR_NAMES} | {"purple": ("purple", "violet")}
SIDE_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left", "left-hand"),
    "right": ("right", "right-hand"),
    "top": ("top", "upper", "far"),
    "bottom": ("bottom", "lower", "near"),
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("to the left of", "left of", "on the left side of"),
    "right": ("to the right of", "right of", "on the right side of"),
    "above": ("above", "just above", "north of"),
    "below": ("below", "just below", "south of"),
}
_CORNER_WORDS = {"top": ("top", "upper"), "bottom": ("bottom", "lower")}
_ZONE_NOUNS = ("zone", "area", "region", "pad")
_CENTER_WORDS = ("the center", "the centre", "the middle", "the middle of the table", "the center pad")

TEMPLATES: dict[str, tuple[str, ...]] = {
    "push_edge": (
        "push {x} to the {side} edge",
        "slide {x} to the {side} side of the table",
        "move {x} all the way to the {side}",
        "shove {x} toward the {side} edge",
        "put {x} at the {side} edge of the table",
        "bring {x} to the {side} border",
    ),
    "next_to": (
        "move {x} next to {y}",
        "put {x} beside {y}",
        "place {x} near {y}",
        "bring {x} close to {y}",
        "set {x} down next to {y}",
    ),
    "place_zone": (
        "place {x} in {zone}",
        "put {x} into {zone}",
        "move {x} to {zone}",
        "drop {x} in {zone}",
        "carry {x} over to {zone}",
    ),
    "stack": (
        "stack {x} on {y}",
        "put {x} on top of {y}",
        "place {x} onto {y}",
        "stack {x} on top of {y}",
        "set {x} on {y}",
    ),
    "sort": (
        "put {x} in the zone of its {colour_word}",
        "sort {x} into the matching zone",
        "move {x} to the area that matches its {colour_word}",
        "place {x} on the pad of the same {colour_word}",
        "sort {x} by {colour_word}",
    ),
    "pick_up": ("pick up {x}", "grab {x}", "lift {x}", "grasp {x}", "take {x}", "pick {x} up"),
    "touch": ("touch {x}", "go to {x}", "move the gripper to {x}", "point at {x}", "tap {x}", "hover over {x}"),
    "between": (
        "move {x} between {y} and {z}",
        "put {x} in between {y} and {z}",
        "place {x} midway between {y} and {z}",
        "set {x} halfway between {y} and {z}",
    ),
    "relative": ("move {x} {rel} {y}", "put {x} {rel} {y}", "place {x} {rel} {y}", "set {x} down {rel} {y}"),
    "all_in_zone": (
        "put all {colour} objects in {zone}",
        "move every {colour} piece to {zone}",
        "gather the {colour} things in {zone}",
        "collect all the {colour} items in {zone}",
    ),
    "reach_zone": ("move the gripper to {zone}", "go to {zone}", "hover over {zone}", "move to {zone}"),
    "pick_nearest": (
        "pick up the object closest to {y}",
        "grab whatever is nearest to {y}",
        "take the piece nearest {y}",
        "lift the thing closest to {y}",
    ),
}


def pick_word(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    """One of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def object_phrase(scene: Scene, i: int, rng: np.random.Generator) -> str:
    """'the red cube', 'the violet plus sign', ... for object ``i`` (unique by colour and shape)."""
    colour = pick_word(rng, COLOUR_WORDS[COLOUR_NAMES[scene.colours[i]]])
    return f"the {colour} {pick_word(rng, SHAPE_WORDS[SHAPES[scene.shapes[i]]])}"


def zone_phrase(scene: Scene, zone: Zone, rng: np.random.Generator) -> str:
    """A corner by position ('the upper left corner') or by colour ('the red pad'); or the centre."""
    colour = scene.zone_colour(zone)
    if colour is None:
        return pick_word(rng, _CENTER_WORDS)
    if rng.random() < 0.5:
        return f"the {pick_word(rng, COLOUR_WORDS[COLOUR_NAMES[colour]])} {pick_word(rng, _ZONE_NOUNS)}"
    vertical, horizontal = zone.name.split("-")
    v = pick_word(rng, _CORNER_WORDS[vertical])
    sep = pick_word(rng, (" ", "-"))
    return f"the {v}{sep}{horizontal} {pick_word(rng, ('corner', 'zone'))}"


def render_instruction(family: str, rng: np.random.Generator, **slots: str) -> str:
    """Fill one of ``family``'s templates (chosen by ``rng``) with the given phrases."""
    slots.setdefault("colour_word", pick_word(rng, ("colour", "color")))
    return pick_word(rng, TEMPLATES[family]).format(**slots)
