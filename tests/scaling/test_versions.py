"""The code version: package version plus the git commit of the checkout, checked against git itself."""

from __future__ import annotations

import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from scaling import versions

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_code_version_is_package_version_and_commit():
    versions.git_commit.cache_clear()  # cached per process; HEAD may have moved since
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert versions.code_version() == f"{version('vla-scaling')}+g{head[:12]}"


def test_without_git_it_is_the_package_version(monkeypatch):
    monkeypatch.setattr(versions, "git_commit", lambda: None)
    assert versions.code_version() == version("vla-scaling")
