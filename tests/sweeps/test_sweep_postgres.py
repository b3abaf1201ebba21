"""Three concurrent `sweep run` processes on one throwaway PostgreSQL cluster (loopback, temp folder)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

PASSWORD = "s3cret-pw"


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """Start a PostgreSQL cluster in a temp folder on a free loopback port; yield its URL; stop it."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    base = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as an unprivileged user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            user = pwd.getpwnam("nobody")
        os.chown(base, user.pw_uid, user.pw_gid)
        prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    data = base / "data"
    env = {**os.environ, "LC_ALL": "C"}
    run = lambda *c: subprocess.run([*prefix, *c], check=True, capture_output=True, env=env, timeout=120)  # noqa: E731
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    os.chown(pwfile, *(os.stat(base).st_uid, os.stat(base).st_gid))
    # Password authentication, so the test proves the password reaches every worker (through the
    # environment, not a command line).
    run(initdb, "-D", str(data), "-A", "scram-sha-256", "-U", "sweep", f"--pwfile={pwfile}", "--no-sync")
    # The port is free when picked but released before the server binds it, so another process may
    # take it in between: the server then fails to start, and we try another port.
    for attempt in range(5):
        port = _free_port()
        try:
            run(pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
            break
        except subprocess.CalledProcessError:
            if attempt == 4:
                raise
    try:
        # The plain form the README documents: no driver named (SQLAlchemy 2.1 would pick psycopg 3).
        yield f"postgresql://sweep:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, env=env)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_three_concurrent_sweep_runs_on_postgres(tmp_path, spec_file, fake_env, runs_of, postgres_url):
    spec = spec_file(seeds=[0, 1, 2])  # 12 points
    dirs = [tmp_path / f"machine{i}" for i in range(3)]  # no shared disk: each "machine" its own folder
    # Two machines name the database on the command line, the third through SCALING_STORAGE.
    procs = [subprocess.Popen([sys.executable, "-m", "sweeps.cli", "sweep", "run", str(spec), "--dir", str(d),
                               *(["--storage", postgres_url] if i < 2 else []), "--no-progress"],
                              env=fake_env if i < 2 else {**fake_env, "SCALING_STORAGE": postgres_url},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i, d in enumerate(dirs)]
    for p in procs:
        _, err = p.communicate(timeout=500)
        assert p.returncode == 0, err
    finishes = Counter(k for d in dirs for ev, k, *_ in runs_of(d) if ev == "finish")
    assert len(finishes) == 12 and max(finishes.values()) == 1, finishes  # nothing missing, no duplicate
    assert sum(1 for d in dirs if runs_of(d)) >= 2  # the machines really shared the work
    for f in (p for d in dirs for p in d.rglob("*") if p.is_file()):  # no file holds the password
        assert PASSWORD.encode() not in f.read_bytes(), f
    # Export from the database alone, from a folder that has never seen the sweep.
    out = tmp_path / "elsewhere" / "results.csv"
    r = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", "export", str(spec), "--dir",
                        str(tmp_path / "elsewhere"), "--storage", postgres_url, "--out", str(out)],
                       env=fake_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out)
    assert len(df) == 12 and df["run_key"].is_unique and set(df["state"]) == {"completed"}
    assert set(df["run_key"]) == set(finishes)
