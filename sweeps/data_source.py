"""The sweep's data, made local: a dataset path, a mixture, or data generated once into the sweep folder."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeps.spec import DataSpec
from vla_core.errors import BadInput

if TYPE_CHECKING:
    from scaling.model.family import Dims


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``; the kernel releases it when the holder dies (kill -9 safe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def generate_once(data: DataSpec, sweep_dir: Path) -> Path:
    """Generate the spec's data into ``SWEEP_DIR/data`` unless it is already there.

    Runs ``scaling data generate`` as a subprocess under a file lock, so concurrent ``sweep run``
    processes on one machine generate it once; the data package writes to a temporary name and
    renames, so a killed generation leaves nothing half-written.
    """
    g = data.generate
    assert g is not None
    out = sweep_dir / "data"
    if (out / "manifest.json").is_file():
        return out
    with file_lock(sweep_dir / ".data.lock"):
        if (out / "manifest.json").is_file():
            return out
        cmd = [
            sys.executable, "-m", "sweeps.cli", "data", "generate", g.source,
            "--episodes", str(g.episodes), "--seed", str(g.seed), "--image-size", str(g.image_size),
            "--out", str(out),
        ]
        for k, v in g.extra:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            err = BadInput if proc.returncode == 2 else RuntimeError
            raise err(f"data.generate: `scaling data generate {g.source}` failed: {last}")
    return out


def local_data(data: DataSpec, sweep_dir: Path) -> Any:
    """The ``data`` value for each run's RunConfig on this machine (a path or a mixture dict)."""
    if data.generate is not None:
        return str(generate_once(data, sweep_dir).resolve())
    if data.mixture:
        return {"mixture": [{"path": p, "weight": w} for p, w in data.mixture]}
    if not Path(str(data.path)).exists():
        raise BadInput(f"data.path: dataset {data.path} not found")
    return str(data.path)


def data_dims(local: Any) -> Dims:
    """The data's dimensions, read from the dataset itself as a run reads them (`scaling.model.family.dims_of`:
    image side, proprioception, actions, instruction vocabulary and length, action bins)."""
    from scaling.data import open_source  # lazy: numpy + the data package
    from scaling.model.family import dims_of

    return dims_of(open_source(local))
