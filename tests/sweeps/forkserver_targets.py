"""Test-only run entry points for `sweeps.forkserver` (called as ``module:function`` with the argv list)."""

import os
import sys
import time


def echo(argv):
    """Print argv, cwd, an env value and whether torch was already imported; exit with argv[0]."""
    print("argv", argv, "cwd", os.getcwd(), "env", os.environ.get("FS_TEST"), "torch", "torch" in sys.modules)
    print("to stderr", file=sys.stderr)
    return int(argv[0])


def relaunch(argv):
    """Print the command Lightning's DDP launcher would relaunch this process with."""
    import __main__

    print("relaunch", [sys.executable, "-m", __main__.__spec__.name, *sys.argv[1:]])
    return 0


def sleep(argv):
    """Write our pid to argv[0], then sleep argv[1] seconds."""
    with open(argv[0], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(argv[1]))
    return 0


def crash(argv):
    raise RuntimeError("boom " + argv[0])


def threads(argv):
    """Print torch's intra-op thread count and the matmul time of a small product (the pool works)."""
    import torch

    a = torch.randn(256, 256)
    t = time.perf_counter()
    (a @ a).sum().item()
    print("threads", torch.get_num_threads(), "matmul_s", time.perf_counter() - t)
    return 0


def train_imports(argv):
    """Run ``scaling train ARGV[1:]`` in-process, then write the modules it imported to ARGV[0] (JSON)."""
    import json

    from sweeps.cli import main

    before = set(sys.modules)
    rc = main(argv[1:])
    with open(argv[0], "w") as f:
        json.dump(sorted(set(sys.modules) - before), f)
    return rc
