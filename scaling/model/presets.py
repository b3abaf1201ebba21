"""Named model sizes, as data.

A ladder preset is a target total parameter count; the shape comes from the size solver for the
run's own data dimensions, so "1m" has about 1e6 parameters on any dataset (within 10%). `debug`
is a fixed tiny shape for tests. A size may also be a shape written "WIDTHxBLOCKS" ("48x2"): that
width and depth, the solver's head rule, and whatever parameter count they make; or "WIDTHxBLOCKSxHEADS"
("48x2x6"), the whole shape (what a run's resolved config.yaml pins). A study pins its
ladder that way when the solver would pick poor shapes for its options.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from scaling.model.solver import head_dim_for, shape_for_params
from vla_core.errors import BadInput


@dataclass(frozen=True)
class Preset:
    """One named size: either a fixed shape or a target parameter count for the solver."""

    target: float | None = None
    """Total parameters the solver aims at (None for a fixed shape)."""
    d_model: int | None = None
    """Fixed width (features), with n_layers and n_heads; None when solved."""
    n_layers: int | None = None
    """Fixed depth (blocks)."""
    n_heads: int | None = None
    """Fixed attention heads."""
    device: str = "cpu"
    """Where the size is meant to train: "cpu" (the CPU ladder, tests) or "gpu"."""


PRESETS: dict[str, Preset] = {
    "debug": Preset(d_model=32, n_layers=2, n_heads=2),
    # CPU ladder: three decades, half-decade steps.
    "30k": Preset(target=3e4),
    "100k": Preset(target=1e5),
    "300k": Preset(target=3e5),
    "1m": Preset(target=1e6),
    "3m": Preset(target=3e6),
    "10m": Preset(target=1e7),
    "30m": Preset(target=3e7),
    # GPU sizes.
    "100m": Preset(target=1e8, device="gpu"),
    "300m": Preset(target=3e8, device="gpu"),
    "1b": Preset(target=1e9, device="gpu"),
}

CPU_LADDER = tuple(name for name, p in PRESETS.items() if p.target and p.device == "cpu")
"""The CPU ladder preset names, smallest first."""

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}
_SHAPE = re.compile(r"^\s*([0-9]+)\s*x\s*([0-9]+)\s*(?:x\s*([0-9]+)\s*)?$", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbg]?)\s*$", re.IGNORECASE)


def parse_size(size: str | float | int) -> Preset:
    """A preset name, a number (1e6), a number string ("1e6", "2.5m") or a shape ("48x2") -> Preset.

    Raises:
        BadInput: unknown name (with a did-you-mean), a non-positive number, or a shape whose width
            is not a multiple of its head width (8 below 128, 16 below 256, 32 below 1024, else 64).
    """
    if isinstance(size, bool):
        raise BadInput(f"model size: expected a preset name or a parameter count, got {size!r}")
    if isinstance(size, (int, float)):
        target = float(size)
    elif isinstance(size, str) and size.strip().lower() in PRESETS:
        return PRESETS[size.strip().lower()]
    elif isinstance(size, str) and (match := _SHAPE.match(size)):
        heads = None if match.group(3) is None else int(match.group(3))
        return _shape_preset(size, int(match.group(1)), int(match.group(2)), heads)
    elif isinstance(size, str) and (match := _NUMBER.match(size)):
        target = float(match.group(1)) * _SUFFIX[match.group(2).lower()]
    else:
        hint = difflib.get_close_matches(str(size).strip().lower(), list(PRESETS), n=1)
        raise BadInput(f"model size: unknown preset {size!r}"
                       + (f" (did you mean {hint[0]!r}?)" if hint else "")
                       + f"; presets: {', '.join(PRESETS)}; or a parameter count like 1e6, or a shape like 48x2")
    if not target > 0 or target == float("inf"):
        raise BadInput(f"model size: parameter count must be positive and finite, got {size!r}")
    return Preset(target=target)


def _shape_preset(size: str, width: int, blocks: int, heads: int | None = None) -> Preset:
    """A fixed shape from "WIDTHxBLOCKS", with the solver's head width for that width, or from
    "WIDTHxBLOCKSxHEADS" (heads dividing the width: what a run's resolved config.yaml pins)."""
    if heads is not None:
        if heads < 1 or blocks < 1 or width < heads or width % heads:
            raise BadInput(f"model size {size!r}: a shape WIDTHxBLOCKSxHEADS needs at least one block and "
                           "heads that divide the width")
        return Preset(d_model=width, n_layers=blocks, n_heads=heads)
    head = head_dim_for(max(width, 1))
    if width < head or width % head or blocks < 1:
        raise BadInput(f"model size {size!r}: a shape is WIDTHxBLOCKS with at least one block and a width "
                       f"that is a multiple of the head width {head} (e.g. {max(head, width - width % head)}x"
                       f"{max(blocks, 1)})")
    return Preset(d_model=width, n_layers=blocks, n_heads=width // head)


def resolve_size(size: str | float | int, config_cls, **data) -> dict[str, int]:
    """{d_model, n_layers, n_heads} for a size, given the config class and its other fields in `data`."""
    preset = parse_size(size)
    if preset.target is None:
        return {"d_model": preset.d_model, "n_layers": preset.n_layers, "n_heads": preset.n_heads}
    d_model, n_layers, n_heads = shape_for_params(preset.target, config_cls, **data)
    return {"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads}
