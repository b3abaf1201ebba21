"""The code version a run was made with: the package version, plus the git commit when run from a checkout.

Recorded in every ``result.json`` (``versions.code``) and in every sweep point, so that a sweep never
silently reuses a run made by other code (``scaling sweep run --allow-code-change`` says it may).
No torch here: sweeps and the CLI read it cheaply.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

PACKAGE = "vla-scaling"


def package_version() -> str:
    """The installed package's version (``unknown`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit (12 hex digits) of the checkout holding this package, or None (installed from a wheel, no git)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit[:12] if out.returncode == 0 and commit else None


def code_version() -> str:
    """``<package version>+g<commit>`` from a git checkout, else the package version (e.g. ``0.1.0+g1a2b3c4d5e6f``).

    Uncommitted edits are not part of it (they would change it on every keystroke); commit before a study.
    """
    commit = git_commit()
    return f"{package_version()}+g{commit}" if commit else package_version()
