"""One live sweep-level line: runs and FLOPs done of total, ETA, failures.

Each run keeps its own progress bar in its log; this line is the sweep's view, redrawn in place on
a terminal and printed every 30 s otherwise (CI logs). Unfinished runs count with the share of their
samples their metrics.csv has logged, so a sweep whose first runs are long stable phases shows
progress and an ETA before any run has finished, and a resumed sweep counts what its runs had logged
before it started as done, not as speed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweeps.store import Queue

DONE = ("completed", "diverged", "pruned", "failed")


def run_fraction(metrics: Path, start: float, samples: float) -> float:
    """Share of a run's own `samples` (counted from `start`, its branch point or 0) that its
    metrics.csv has logged: the newest row with a sample count, read from the file's tail. 0.0 when
    nothing is readable yet."""
    try:
        with open(metrics, "rb") as f:
            col = f.readline().decode().strip().split(",").index("samples")
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode(errors="replace").splitlines()[1:]  # the first may be cut short
    except (OSError, ValueError):
        return 0.0
    for line in reversed(tail):  # validation rows leave the sample count empty
        cells = line.split(",")
        if len(cells) > col and cells[col]:
            try:
                return min(1.0, max(0.0, (float(cells[col]) - start) / samples)) if samples > 0 else 0.0
            except ValueError:
                return 0.0
    return 0.0


def flops_progress(q: Queue, runs_dir: Path | None = None) -> tuple[float, float, dict, float]:
    """(FLOPs of finished points + the logged share of unfinished ones, FLOPs of all points, states,
    the summed logged share of the unfinished points: how many runs' worth of them is done).

    Unfinished means running or waiting: a point handed back (its worker stopped, or died and was
    re-queued) keeps what its run logged, which it resumes from its checkpoint."""
    states = q.point_states()
    total = sum(float(t.user_attrs.get("flops") or 0) for _, t in states.values())
    done = sum(float(t.user_attrs.get("flops") or 0) for s, t in states.values() if s in DONE)
    partial = 0.0
    if runs_dir is not None:
        for key, (s, t) in states.items():
            a = t.user_attrs
            if s in DONE or not (a.get("flops") and a.get("flops_per_sample") and a.get("samples")):
                continue
            own = float(a["flops"]) / float(a["flops_per_sample"])  # a cooldown: its samples after the branch
            share = run_fraction(runs_dir / key / "metrics.csv", float(a["samples"]) - own, own)
            done += float(a["flops"]) * share
            partial += share
    return done, total, states, partial


def progress_line(q: Queue, started: float, flops_at_start: float = 0.0, runs_dir: Path | None = None) -> str:
    """``runs 3.4/8 | FLOPs 1.2e12/4.0e12 (30%) | ETA 2m10s | failed 0 | running 2``.

    `runs_dir` (the sweep's ``runs/`` folder): count running runs' logged progress too, in the runs
    (3.4: three finished and the running ones 0.4 of a run between them) as in the FLOPs."""
    flops_done, flops_total, states, partial = flops_progress(q, runs_dir)
    total = len(states)
    done = sum(1 for s, _ in states.values() if s in DONE)
    runs = f"{done + partial:.1f}" if runs_dir is not None else str(done)
    failed = sum(1 for s, _ in states.values() if s == "failed")
    running = sum(1 for s, _ in states.values() if s == "running")
    elapsed = time.time() - started
    # ETA from this session's FLOP rate (FLOPs finished before we started do not count as speed).
    rate = (flops_done - flops_at_start) / elapsed if elapsed > 0 else 0.0
    eta = "?" if rate <= 0 else _fmt((flops_total - flops_done) / rate)
    pct = 100.0 * flops_done / flops_total if flops_total else 0.0
    return (f"sweep {q.name.split('@')[0]}: runs {runs}/{total} | "
            f"FLOPs {flops_done:.2g}/{flops_total:.2g} ({pct:.0f}%) | ETA {eta} | failed {failed} | running {running}")


def _fmt(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Redraws :func:`progress_line` at most once a second (every 30 s when not a terminal)."""

    def __init__(self, q: Queue, enabled: bool = True, stream=None, runs_dir: Path | None = None) -> None:
        self.q = q
        self.runs_dir = runs_dir
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.time()
        self.last = 0.0
        self.flops0 = 0.0
        if enabled:  # work done before this session (finished, or logged by resumed runs) is not speed
            self.flops0 = flops_progress(q, runs_dir)[0]

    def update(self, force: bool = False) -> None:
        """Redraw if enough time has passed."""
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self.last < (1.0 if self.tty else 30.0):
            return
        self.last = now
        line = progress_line(self.q, self.started, self.flops0, self.runs_dir)
        self.stream.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self.update(force=True)
            if self.tty:
                self.stream.write("\n")
