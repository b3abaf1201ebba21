"""Run a command as its own process group, so that a timeout ends all of it (workers, runs), not only the
launcher: `subprocess.run(timeout=...)` kills the direct child and leaves its children running."""

from __future__ import annotations

import os
import signal
import subprocess


def run_group(args: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)`, killing the
    whole process group on timeout before raising `subprocess.TimeoutExpired`."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)
