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


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """Wait for a process started with `start_new_session=True`; (exit status, stderr). On timeout its whole
    group is killed and the test fails with what it printed."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise AssertionError(f"{' '.join(map(str, proc.args[:4]))} ... did not end in {timeout} s:\n{err}") from None
    return proc.returncode, err


def wait_for(what: str, cond, timeout: float = 120, every: float = 0.2):
    """Poll `cond()` until it returns something true (returned), or fail after `timeout` s naming `what`."""
    import time

    end = time.time() + timeout
    while time.time() < end:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"waited {timeout} s for {what}")
