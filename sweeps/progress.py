"""One live sweep-level line: runs and FLOPs done of total, ETA, failures.

Each run keeps its own progress bar in its log; this line is the sweep's view, redrawn in place on
a terminal and printed every 30 s otherwise (CI logs).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweeps.store import Queue

DONE = ("completed", "diverged", "pruned", "failed")


def progress_line(q: "Queue", started: float, flops_at_start: float = 0.0) -> str:
    """``runs 3/8 | FLOPs 1.2e12/4.0e12 (30%) | ETA 2m10s | failed 0 | running 2``."""
    states = q.point_states()
    total = len(states)
    done = sum(1 for s, _ in states.values() if s in DONE)
    flops_total = sum(float(t.user_attrs.get("flops") or 0) for _, t in states.values())
    flops_done = sum(float(t.user_attrs.get("flops") or 0) for s, t in states.values() if s in DONE)
    failed = sum(1 for s, _ in states.values() if s == "failed")
    running = sum(1 for s, _ in states.values() if s == "running")
    elapsed = time.time() - started
    # ETA from this session's FLOP rate (FLOPs finished before we started do not count as speed).
    rate = (flops_done - flops_at_start) / elapsed if elapsed > 0 else 0.0
    eta = "?" if rate <= 0 else _fmt((flops_total - flops_done) / rate)
    pct = 100.0 * flops_done / flops_total if flops_total else 0.0
    return (f"sweep {q.name.split('@')[0]}: runs {done}/{total} | FLOPs {flops_done:.2g}/{flops_total:.2g} ({pct:.0f}%) | "
            f"ETA {eta} | failed {failed} | running {running}")


def _fmt(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Redraws :func:`progress_line` at most once a second (every 30 s when not a terminal)."""

    def __init__(self, q: "Queue", enabled: bool = True, stream=None) -> None:
        self.q = q
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.time()
        self.last = 0.0
        self.flops0 = 0.0
        if enabled:
            states = q.point_states()
            self.flops0 = sum(float(t.user_attrs.get("flops") or 0) for s, t in states.values() if s in DONE)

    def update(self, force: bool = False) -> None:
        """Redraw if enough time has passed."""
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self.last < (1.0 if self.tty else 30.0):
            return
        self.last = now
        line = progress_line(self.q, self.started, self.flops0)
        self.stream.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self.update(force=True)
            if self.tty:
                self.stream.write("\n")
