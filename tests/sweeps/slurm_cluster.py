"""A throwaway single-node SLURM cluster for the tests: munged, slurmctld and slurmd from Debian's
slurm-wlm, every file in one temporary folder, each daemon started in the foreground (so its pid is
ours) and stopped by that pid.

The node is this machine (its CPUs and memory, as ``slurmd -C`` reports them) in one partition
``debug``; ``DefMemPerCPU`` gives each task a share of the memory so that array tasks run side by
side; ``JobRequeue=1`` lets SLURM requeue batch jobs. No slurmdbd: ``sacct`` does not work here, so
the launcher must (and does) follow its jobs through ``squeue`` and ``scontrol``.

Clients find the cluster through ``SLURM_CONF`` (see :attr:`Cluster.env`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun")
PARTITION = "debug"


def missing_binaries() -> list[str]:
    """The cluster's programs that this machine lacks (empty: a cluster can start)."""
    return [b for b in DAEMONS if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def node_resources() -> tuple[int, int]:
    """This machine's CPUs and memory (MB) as slurmd sees them."""
    out = subprocess.run([_bin("slurmd"), "-C"], capture_output=True, text=True, timeout=30).stdout
    cpus = int(re.search(r"CPUs=(\d+)", out).group(1))
    mem = int(re.search(r"RealMemory=(\d+)", out).group(1))
    return cpus, mem


@dataclass
class Cluster:
    """A running cluster: its folder, client environment and daemons."""

    base: Path
    conf: Path
    node: str
    cpus: int
    mem_mb: int
    procs: dict = field(default_factory=dict)

    @property
    def env(self) -> dict:
        """What a client (sbatch, squeue, the launcher) needs in its environment."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **self.env})
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def job(self, job_id: str) -> dict:
        """``scontrol show job -o`` of one job (or array task) as a dict; {} once SLURM forgot it."""
        r = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        if r.returncode != 0:
            return {}
        return dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)

    def jobs(self) -> list[str]:
        """Ids of the jobs (array tasks expanded) SLURM still lists as pending or running."""
        out = self.run("squeue", "-h", "-r", "-o", "%i", check=False).stdout
        return [ln.strip() for ln in out.splitlines() if ln.strip()]

    def logs(self) -> str:
        """The daemons' logs (for a failing test's message)."""
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.base.glob("*.log")))

    def stop(self) -> None:
        """Cancel every job, wait for them to end, then stop the daemons (by pid) and remove the folder."""
        if self.procs.get("slurmctld") is not None and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", str(os.getuid()), check=False)
            end = time.time() + 60
            while self.jobs() and time.time() < end:
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def _conf(base: Path, node: str, cpus: int, mem_mb: int, ports: list[int]) -> str:
    # Tasks ask for 1 CPU by default and this share of memory each, so every CPU can hold a task.
    per_cpu = max(100, mem_mb // (2 * cpus))
    return f"""\
ClusterName=sweeptest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={base}/munge.socket,cred_expire=10
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={base}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU={per_cpu}
JobRequeue=1
ReturnToService=2
KillWait=5
MinJobAge=600
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def start(base: Path, timeout: float = 90) -> Cluster:
    """Start munged, slurmctld and slurmd with all their state in ``base``; wait until the node is idle.

    Raises:
        RuntimeError: A daemon exited or the node did not come up (the message has the logs).
    """
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)  # munged refuses a key or socket in a folder others may write
    for sub in ("state", "spool"):
        (base / sub).mkdir(exist_ok=True)
    (base / "plugstack.conf").write_text("")
    key = base / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    node = socket.gethostname().split(".")[0]
    cpus, mem_mb = node_resources()
    conf = base / "slurm.conf"
    conf.write_text(_conf(base, node, cpus, mem_mb, _free_ports(2)))
    cluster = Cluster(base, conf, node, cpus, mem_mb)
    env = {**os.environ, **cluster.env}
    out = open(base / "daemons.out", "ab")
    try:
        cluster.procs["munged"] = subprocess.Popen(
            [_bin("munged"), "-F", "-f", f"--socket={base}/munge.socket", f"--key-file={key}",
             f"--log-file={base}/munged.log", f"--pid-file={base}/munged.pid", f"--seed-file={base}/munged.seed"],
            stdout=out, stderr=subprocess.STDOUT)
        _wait(lambda: (base / "munge.socket").exists(), cluster, "munged", 20)
        # -i: ignore state left in the folder (there is none: a fresh cluster every time)
        cluster.procs["slurmctld"] = subprocess.Popen([_bin("slurmctld"), "-D", "-i", "-f", str(conf)],
                                                      stdout=out, stderr=subprocess.STDOUT, env=env)
        _wait(lambda: "UP" in cluster.run("scontrol", "ping", check=False).stdout, cluster, "slurmctld", timeout)
        cluster.procs["slurmd"] = subprocess.Popen([_bin("slurmd"), "-D", "-f", str(conf), "-N", node],
                                                   stdout=out, stderr=subprocess.STDOUT, env=env)
        _wait(lambda: "idle" in cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout, cluster, "slurmd",
              timeout)
    except BaseException:
        cluster.stop()
        raise
    finally:
        out.close()
    return cluster


def _wait(ready, cluster: Cluster, name: str, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if ready():
            return
        dead = [n for n, p in cluster.procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while starting {name}:\n{cluster.logs()}"
                               f"\n{(cluster.base / 'daemons.out').read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not come up in {timeout:.0f} s:\n{cluster.logs()}")
