"""`precision: auto`, resolved once per model size when a sweep is planned, and recorded in its spec.

`auto` is the fastest correct precision for the device (`scaling.hardware.resolve_precision`); on a CPU
that is a timed probe, so its answer can change with the machine's load. Were each run to resolve it,
two runs of one size could train in different precisions, and a row re-run by key could train in
another precision than the row it reproduces. So a sweep resolves it once per model size, as
`scaling train` would on this machine (`scaling.train_cli.auto_precision`), the first time
`scaling sweep run` plans that size, and writes the answer into the spec as its ``auto_precision:``
block (`scaling sweep plan` prints what it would write and writes nothing) (as `sweep validate` writes
its rounds). Every later plan, on any machine, reads it from there; each point carries it in the
ledger, and the worker writes it into the run's config, so the run resolves nothing. The run keys
keep ``auto`` (they hash the spec's settings), so committed keys stay valid; the spec's fingerprint
leaves the block out.

A size already in the ledger (another machine enqueued it first) takes the ledger's precision. Runs
for GPUs (``accelerator: gpu``) planned on a machine without one are left to resolve where they run:
on a GPU `auto` depends on the GPU model only (bf16-mixed where it supports bf16, else 16-mixed),
never on load.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from sweeps.points import PlannedRun
from sweeps.spec import SweepSpec, parse_spec
from vla_core.atomic import write_atomic
from vla_core.errors import BadInput

if TYPE_CHECKING:
    from sweeps.store import Queue

HEADER = ("# What `precision: auto` resolved to per model size (`scaling sweep run` writes it when it first\n"
          "# plans a size): every run of that size, and a row re-run by key, trains in it.\n")


def needed(spec: SweepSpec) -> bool:
    """Whether the spec's runs train in ``precision: auto``."""
    return spec.train_dict.get("precision") == "auto"


def _resolvable_here(accelerator: str) -> bool:
    """Whether this machine can resolve `auto` for runs on ``accelerator`` (runs for GPUs need one here)."""
    if accelerator not in ("gpu", "cuda"):
        return True
    import torch

    return torch.cuda.is_available()


def resolve_here(runs: list[PlannedRun], local_data: Any, skip: set[str]) -> dict[str, tuple[str, str]]:
    """``{str(size): (precision, why)}``: `auto` resolved on this machine for each size of ``runs`` not
    in ``skip``, from the first run of that size (sizes share the settings that decide it)."""
    from scaling.config import from_mapping
    from scaling.train_cli import auto_precision

    out: dict[str, tuple[str, str]] = {}
    for r in runs:
        size = str(r.size)
        if size in skip or size in out:
            continue
        cfg = from_mapping({**r.config, "data": local_data}, source=f"size {size}")
        if _resolvable_here(cfg.hardware.accelerator):
            out[size] = auto_precision(cfg)
    return out


def _inline(precisions: dict[str, str]) -> str:
    """The block as one line, for messages."""
    return "auto_precision: {" + ", ".join(f"{json.dumps(size)}: {p}" for size, p in precisions.items()) + "}"


def _block(precisions: dict[str, str], width: int = 100) -> str:
    """The block's text: the header, then one flow mapping wrapped at ``width`` characters."""
    lead = "auto_precision: {"
    items = [f"{json.dumps(size)}: {p}" for size, p in precisions.items()]
    lines, line = [], lead
    for i, item in enumerate(items):
        item += "," if i < len(items) - 1 else ""
        fresh = line == lead or not line.strip()
        if not fresh and len(line) + 1 + len(item) > width:
            lines.append(line)
            line, fresh = " " * len(lead), True
        line += ("" if fresh else " ") + item
    return HEADER + "\n".join(lines + [line + "}"]) + "\n"


def _with_block(text: str, precisions: dict[str, str]) -> str:
    """The spec's text with its ``auto_precision:`` block replaced, or added before any validation
    block (which `sweep validate` keeps last), else at the end."""
    from sweeps.validation import HEADER as VALIDATION_HEADER

    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.startswith("auto_precision:")), None)
    if start is not None:
        end = start + 1
        while end < len(lines) and lines[end][:1] in (" ", "\t"):  # the block's continuation lines
            end += 1
        head = "".join(lines[:start])
        if head.endswith(HEADER):
            head = head[: -len(HEADER)]
        return head + _block(precisions) + "".join(lines[end:])
    m = re.search(r"^validation:", text, flags=re.M)
    if m is None:
        return text.rstrip("\n") + "\n" + _block(precisions)
    cut = text.rfind(VALIDATION_HEADER, 0, m.start())
    cut = m.start() if cut < 0 else cut
    return text[:cut] + _block(precisions) + text[cut:]


@contextmanager
def _folder_lock(folder: Path):
    """An exclusive ``flock`` on a folder (the spec's: no lock file left beside it), released on exit or death."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record(spec_path: str | Path, new: dict[str, str]) -> dict[str, str]:
    """Add ``new`` (size -> precision) to the spec file's ``auto_precision:`` block; returns the block as
    the file then holds it.

    Under a lock on the spec's folder the file is read again first: a size that another command
    recorded meanwhile keeps its precision (the first to record a size wins). The rest of the file is
    kept as written, and the result must parse to the same spec with the block added.

    Raises:
        BadInput: the file could not be written, or the block could not be placed in it.
    """
    path = Path(spec_path)
    try:
        with _folder_lock(path.parent):
            text = path.read_text()
            before = parse_spec(yaml.safe_load(text), str(path))
            precisions = {**new, **dict(before.auto_precision)}
            ordered = {s: precisions[s] for s in [*dict(before.auto_precision), *new]}
            if ordered == dict(before.auto_precision):
                return ordered
            out = _with_block(text, ordered)
            try:
                after = parse_spec(yaml.safe_load(out), str(path))
            except (BadInput, yaml.YAMLError):
                after = None
            if after is None or dict(after.auto_precision) != ordered or after.fingerprint() != before.fingerprint():
                raise BadInput(f"{path}: could not add the auto_precision block to it; add it by hand: "
                               f"{_inline(ordered)}")
            write_atomic(path, out)
    except OSError as exc:
        raise BadInput(f"{path}: cannot record the resolved precisions in it ({exc.strerror or exc}); make it "
                       f"writable or add them by hand: {_inline(new)}") from None
    return ordered


def in_ledger(q: Queue) -> dict[str, str]:
    """Model size -> the precision its points in the ledger carry (enqueued by whichever machine came first)."""
    out: dict[str, str] = {}
    for _, t in q.point_states().values():
        p = t.user_attrs.get("precision")
        if p:
            out.setdefault(str(t.user_attrs.get("size")), p)
    return out


def settle(spec: SweepSpec, runs: list[PlannedRun], local_data: Any,
           ledger: dict[str, str] | None = None, write: bool = True) -> tuple[SweepSpec, list[PlannedRun], list[str]]:
    """Give each run of a ``precision: auto`` spec the precision of its size.

    Sizes the spec records keep theirs; a size the ledger has (``ledger``: size -> precision of points
    already enqueued) takes that; the rest are resolved on this machine (:func:`resolve_here`). What is
    new is written into the spec file when ``write`` (:func:`record`; in memory only for a spec without
    a file, or when not ``write``: `sweep plan` shows what would be recorded and writes nothing).

    Returns:
        (the spec with its block as recorded, the runs with ``precision`` set where known, one line per
        size resolved or adopted now, saying why).
    """
    if not needed(spec):
        return spec, runs, []
    recorded = dict(spec.auto_precision)
    sizes = {str(r.size) for r in runs}
    adopted = {s: p for s, p in (ledger or {}).items() if s in sizes and s not in recorded}
    fresh = resolve_here(runs, local_data, set(recorded) | set(adopted))
    new = {**adopted, **{s: p for s, (p, _) in fresh.items()}}
    if new:
        final = record(spec.source, new) if spec.source and write else {**new, **recorded}
        spec = replace(spec, auto_precision=tuple(final.items()))
    precisions = dict(spec.auto_precision)
    whys = {**{s: "the precision its points in the ledger carry" for s in adopted},
            **{s: why for s, (_, why) in fresh.items()}}
    notes = [f"{s}: {precisions[s]} ({whys[s] if precisions[s] == p else 'recorded meanwhile by another command'})"
             for s, p in new.items()]
    return spec, [replace(r, precision=precisions.get(str(r.size))) for r in runs], notes


def summary(spec: SweepSpec, runs: list[PlannedRun]) -> str | None:
    """One line for `sweep plan`: the precision each size trains in (None unless the spec says auto)."""
    if not needed(spec):
        return None
    by_size: dict[str, str | None] = {}
    for r in sorted(runs, key=lambda r: r.n_params):
        by_size.setdefault(str(r.size), r.precision)
    parts = [f"{s} {p or 'resolved where it runs (GPU)'}" for s, p in by_size.items()]
    where = f" (auto_precision: in {spec.source})" if spec.source else ""
    return f"precision auto, per size{where}: " + ", ".join(parts)
