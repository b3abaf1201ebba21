"""`MetricsCSV`: the run's per-step metrics as RUN_DIR/metrics.csv (written by global rank 0 only).

One row per logged step; fixed leading columns, metrics the run has not logged yet are empty.
Rows are appended and flushed as they come (a killed run keeps what it logged); a resumed run
first drops rows past the step it resumes from, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any

from vla_core.atomic import write_atomic

COLUMNS = ("step", "samples", "train_loss", "lr", "grad_norm", "val_loss", "action_mse",
           "samples_per_second", "wall_seconds")


class MetricsCSV:
    """Append-only CSV of metrics with fixed columns (extra keys are ignored).

    Args:
        path: RUN_DIR/metrics.csv.
        resume_step: keep only existing rows with step <= this (None = start a new file).
        t0: the `time.time()` that `wall_seconds` counts from (the trainer passes train()'s start, so
            a row's wall_seconds includes the run's set-up: imports, data, model); default: now.
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None, t0: float | None = None) -> None:
        self.path = Path(path)
        self._t0 = time.time() if t0 is None else t0
        self._resume_step = resume_step
        self._ready = False

    def _prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[list[str]] = []
        if self._resume_step is not None and self.path.exists():
            with self.path.open(newline="") as fh:
                rows = list(csv.reader(fh))
            kept = [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= self._resume_step]
        buf = io.StringIO(newline="")
        writer = csv.writer(buf)
        writer.writerow(COLUMNS)
        writer.writerows(kept)
        write_atomic(self.path, buf.getvalue())
        self._ready = True

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Append one row (the first call also trims rows a resumed run will write again)."""
        if not self._ready:
            self._prepare()
        row = {"step": step, "wall_seconds": round(time.time() - self._t0, 3), **metrics}
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow(["" if row.get(c) is None else row[c] for c in COLUMNS])
