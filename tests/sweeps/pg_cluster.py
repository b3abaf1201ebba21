"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temporary folder, loopback only,
password authentication, stopped with ``pg_ctl stop`` (it knows the server's pid from its data folder).

As root (CI containers) the server runs as the ``postgres`` user (else ``nobody``): initdb refuses root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "s3cret-pw"
USER = "sweep"


def pg_bin(name: str) -> str | None:
    """A PostgreSQL program from PATH or Debian's versioned folder, None if absent."""
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running server: its folder, port and the command prefix that runs its programs as its user."""

    base: Path
    port: int
    prefix: list[str]

    @property
    def data(self) -> Path:
        return self.base / "data"

    def url(self, password: str = PASSWORD) -> str:
        """The plain ``postgresql://`` URL the README documents (no driver named)."""
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``pg_ctl -D DATA ARGS`` as the server's user."""
        return subprocess.run([*self.prefix, pg_bin("pg_ctl"), "-D", str(self.data), *args], capture_output=True,
                              text=True, check=check, env={**os.environ, "LC_ALL": "C"}, timeout=120)

    def start(self) -> None:
        self.ctl("-l", str(self.base / "log"), "-w", "-o",
                 f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` ends every client's session, as a restart does."""
        self.ctl("-m", mode, "-w", "stop", check=False)

    def restart(self, downtime_s: float) -> None:
        """Stop the server, stay down ``downtime_s`` seconds, start it again on the same port."""
        self.stop("fast")
        time.sleep(downtime_s)
        self.start()


def start(base: Path) -> Server:
    """initdb and start a server in ``base`` on a free loopback port (retried if another process takes it)."""
    base.mkdir(parents=True, exist_ok=True)
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as an unprivileged user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            user = pwd.getpwnam("nobody")
        os.chown(base, user.pw_uid, user.pw_gid)
        prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"]
    pwfile = base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    os.chown(pwfile, os.stat(base).st_uid, os.stat(base).st_gid)
    subprocess.run([*prefix, pg_bin("initdb"), "-D", str(base / "data"), "-A", "scram-sha-256", "-U", USER,
                    f"--pwfile={pwfile}", "--no-sync"], check=True, capture_output=True,
                   env={**os.environ, "LC_ALL": "C"}, timeout=120)
    for attempt in range(5):
        server = Server(base, _free_port(), prefix)
        try:
            server.start()
            return server
        except subprocess.CalledProcessError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")
