"""Top-down RGB rendering of a `Scene` with precomputed sprite masks (no per-pixel Python loops).

A frame is a copy of a cached background (table + zone pads) into which a handful of boolean
sprite masks are painted with one fancy-indexed assignment each, so a 64x64 frame costs tens of
microseconds. The canvas is padded by the largest sprite's half-width, so sprites never need
clipping at the table's border.
"""

from __future__ import annotations

import weakref

import numpy as np

from scaling.data.tabletop.scene import (
    CENTER_ZONE,
    COLOUR_NAMES,
    COLOURS,
    CORNER_ZONES,
    OBJECT_RADIUS,
    SHAPES,
    Scene,
    Zone,
)

BACKGROUND = np.array([232, 228, 218], dtype=np.uint8)  # warm grey table top
CENTER_PAD = np.array([250, 250, 250], dtype=np.uint8)
AGENT_COLOUR = np.array([25, 25, 25], dtype=np.uint8)
AGENT_RING = {False: (0.072, 0.095), True: (0.05, 0.095)}  # (inner, outer) radius, open/closed gripper
STACKED_SCALE = 0.7  # a stacked object is drawn smaller so the one below shows as a rim
_SUPERSAMPLE = 4


def _coverage(size: int, half: float, inside) -> np.ndarray:
    """(size, size) bool: pixels whose supersampled coverage by ``inside(u, v)`` is >= 1/2.

    Offsets are in units of ``half`` (so the shape functions work on [-1, 1]^2).
    """
    k = size // 2
    sub = (np.arange(size * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - 0.5 - k  # pixel-centre offsets
    v, u = np.meshgrid(sub / half, sub / half, indexing="ij")
    cov = inside(u, v).reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))
    return cov >= 0.5


def _flat_offsets(mask: np.ndarray, width: int) -> np.ndarray:
    """int64 offsets of a centred sprite's pixels in a row-major canvas ``width`` pixels wide."""
    k = mask.shape[0] // 2
    rows, cols = np.nonzero(mask)
    return (rows - k) * width + (cols - k)


_SHAPE_FN = {
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.82,
    "circle": lambda u, v: u**2 + v**2 <= 1.0,
    # Apex up; y grows downwards in image order.
    "triangle": lambda u, v: (v <= 0.8) & (v >= -1.0 + 1.8 * np.abs(u)),
    "cross": lambda u, v: ((np.abs(u) <= 0.36) | (np.abs(v) <= 0.36)) & (np.maximum(np.abs(u), np.abs(v)) <= 1.0),
}
assert tuple(_SHAPE_FN) == SHAPES


class Renderer:
    """Renders scenes at one image size.

    Args:
        image_size: side of the square RGB image (pixels).
    """

    def __init__(self, image_size: int = 64) -> None:
        self.size = int(image_size)
        s = self.size
        self._k_agent = int(np.ceil(AGENT_RING[True][1] * s)) + 1
        self.pad = self._k_agent + 1
        k_obj = int(np.ceil(OBJECT_RADIUS * s)) + 1
        self._k_obj = k_obj
        r = OBJECT_RADIUS * s
        # sprites[stacked][shape] -> (2k+1, 2k+1) bool mask
        self._sprites = {
            stacked: [_coverage(2 * k_obj + 1, r * (STACKED_SCALE if stacked else 1.0), _SHAPE_FN[n]) for n in SHAPES]
            for stacked in (False, True)
        }
        ka = self._k_agent
        # At small sizes the ring would be under a pixel thick and break up: keep it >= 1.5 px.
        rings = {closed: (min(a, b - 1.5 / s), b) for closed, (a, b) in AGENT_RING.items()}
        self._agent = {
            closed: _coverage(2 * ka + 1, s, lambda u, v, a=a, b=b: (u**2 + v**2 >= a**2) & (u**2 + v**2 <= b**2))
            for closed, (a, b) in rings.items()
        }
        width = s + 2 * self.pad
        self._offsets = {st: [_flat_offsets(m, width) for m in ms] for st, ms in self._sprites.items()}
        self._agent_offsets = {c: _flat_offsets(m, width) for c, m in self._agent.items()}
        self._colours = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.uint8)  # (C, 3)
        self._backgrounds: dict[tuple[int, ...], np.ndarray] = {}
        # scene -> (version, padded layer); weak keys, so finished episodes free their layers.
        self._layers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def background(self, zone_colours: tuple[int, ...]) -> np.ndarray:
        """(S + 2 pad, S + 2 pad, 3) uint8 padded table with its zone pads (cached per colouring)."""
        bg = self._backgrounds.get(zone_colours)
        if bg is None:
            s, p = self.size, self.pad
            bg = np.empty((s + 2 * p, s + 2 * p, 3), dtype=np.uint8)
            bg[:] = BACKGROUND
            for zone, c in zip(CORNER_ZONES, zone_colours):
                tint = 0.45 * self._colours[c].astype(np.float64) + 0.55 * BACKGROUND
                self._paint_zone(bg, zone, tint.round().astype(np.uint8), (0.8 * tint).round().astype(np.uint8))
            self._paint_zone(bg, CENTER_ZONE, CENTER_PAD, np.array([190, 190, 190], dtype=np.uint8))
            if len(self._backgrounds) > 512:  # 6P4 = 360 colourings; bound the cache anyway
                self._backgrounds.clear()
            self._backgrounds[zone_colours] = bg
        return bg

    def _paint_zone(self, bg: np.ndarray, zone: Zone, fill: np.ndarray, edge: np.ndarray) -> None:
        s, p = self.size, self.pad
        x0, y0 = (int(round(v * s)) + p for v in zone.lo)
        x1, y1 = (int(round(v * s)) + p for v in zone.hi)
        bg[y0:y1, x0:x1] = edge  # a 1-px darker border makes the pad readable at 64 px
        bg[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = fill

    def _resting_layer(self, scene: Scene) -> np.ndarray:
        """Padded table + zones + every object not carried, cached until ``scene.version`` changes.

        Resting objects only change on grasp or release, so most frames reuse this layer and
        paint just the carried object and the agent.
        """
        cached = self._layers.get(scene)
        if cached is not None and cached[0] == scene.version:
            return cached[1]
        canvas = self.background(scene.zone_colours).copy()
        flat = canvas.reshape(-1, 3)
        w = canvas.shape[1]
        xy = np.floor(scene.pos * self.size).astype(np.int64) + self.pad  # (n, 2) centre pixels
        base = (xy[:, 1] * w + xy[:, 0]).tolist()
        levels = scene.levels()
        stacked = (levels > 0).tolist()
        for i in np.argsort(levels, kind="stable").tolist():  # lower objects first
            if i != scene.held:
                flat[base[i] + self._offsets[stacked[i]][scene.shapes[i]]] = self._colours[scene.colours[i]]
        self._layers[scene] = (scene.version, canvas)
        return canvas

    def render(self, scene: Scene, out: np.ndarray | None = None) -> np.ndarray:
        """Draw ``scene``: table, zones, objects by stack height, the carried one, then the agent.

        Args:
            scene: what to draw.
            out: optional (S, S, 3) uint8 array to draw into (e.g. a row of an episode buffer).

        Returns:
            (S, S, 3) uint8 image (``out`` when given).
        """
        canvas = self._resting_layer(scene).copy()
        flat = canvas.reshape(-1, 3)  # (W*W, 3) view: a sprite is one fancy-indexed assignment
        w = canvas.shape[1]
        if scene.held >= 0:  # the carried object is drawn last, inside the gripper ring
            h = scene.held
            hx, hy = (np.floor(scene.pos[h] * self.size).astype(np.int64) + self.pad).tolist()
            flat[hy * w + hx + self._offsets[False][scene.shapes[h]]] = self._colours[scene.colours[h]]
        ax, ay = (np.floor(scene.agent * self.size).astype(np.int64) + self.pad).tolist()
        flat[ay * w + ax + self._agent_offsets[scene.closed]] = AGENT_COLOUR
        p, s = self.pad, self.size
        if out is None:
            return canvas[p : p + s, p : p + s].copy()
        out[...] = canvas[p : p + s, p : p + s]
        return out
