"""One run as an OS process, at the bottom of the worker layer: its command, its tie to the worker, its result.

Each run is ``python -m sweeps.cli train --config RUN_DIR/run.yaml`` in its own process. Tests may
swap the command with the environment variable ``SWEEP_RUN_COMMAND`` (a command prefix; ``--config
PATH`` is appended). Used by the sweep worker, for every point it runs.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

RUN_COMMAND_ENV = "SWEEP_RUN_COMMAND"


def die_with_parent() -> None:
    """In the child before exec: the run is killed if its worker dies (no two processes train into one folder)."""
    # Linux prctl(PR_SET_PDEATHSIG, SIGKILL): the run is killed if its worker dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def run_command(config_path: Path) -> list[str]:
    """The command that trains one run (``scaling train``, or the test override)."""
    return train_command(["--config", str(config_path)])


def train_command(args: list[str]) -> list[str]:
    """``scaling train ARGS`` as a fresh process (or the test override, ARGS appended)."""
    override = os.environ.get(RUN_COMMAND_ENV)
    base = shlex.split(override) if override else [sys.executable, "-m", "sweeps.cli", "train"]
    return [*base, *args]


def run_env(run_dir: Path, *, group: str, job_type: str) -> dict[str, str]:
    """The environment of one run process: the worker's, with W&B offline unless ``WANDB_MODE`` says
    otherwise (no account, no network; ``wandb sync`` later), quiet unless ``WANDB_SILENT`` says
    otherwise (the run's output goes to train.log: no banners, no colour codes), its files in the run's
    folder and filed under the sweep. An empty variable counts as unset (W&B refuses an empty one)."""
    env = dict(os.environ)
    for key, default in (("WANDB_MODE", "offline"), ("WANDB_SILENT", "true")):
        if not env.get(key, "").strip():
            env[key] = default
    env.update(WANDB_RUN_GROUP=group, WANDB_JOB_TYPE=job_type, WANDB_DIR=str(run_dir))
    return env


def finished_result(run_dir: Path) -> dict | None:
    """``RUN_DIR/result.json`` of a run that ended completed or diverged, else None."""
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return result if result.get("status") in ("completed", "diverged") else None


def flatten_result(result: dict) -> dict:
    """A result.json dict as one flat row (model shape flattened, nested values as JSON strings)."""
    row: dict[str, Any] = {}
    for k, v in result.items():
        if k == "model" and isinstance(v, dict):
            for mk in ("d_model", "n_layers", "n_heads"):
                if mk in v:
                    row[mk] = v[mk]
        elif k == "input_reliance" and isinstance(v, dict):  # one column per probed input
            for ik, iv in v.items():
                row[f"reliance_{ik}"] = iv
        elif isinstance(v, (dict, list)):
            row[k] = json.dumps(v, sort_keys=True)
        else:
            row[k] = v
    return row
