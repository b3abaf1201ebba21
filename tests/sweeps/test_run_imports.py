"""What a run imports, and when (issue 13, start-up near zero).

- The run's entry modules (`python -m sweeps.cli train` and what the sweep worker and fork server
  import) load neither Lightning nor what Lightning pulls in (torchmetrics with scipy.signal and
  matplotlib, torch._dynamo, TensorBoard) nor W&B at import: only `train()` does, and a csv run never
  imports W&B or TensorBoard.
- A run forked from the fork server imports none of our modules, Lightning, pandas, pyarrow or
  torch.distributed: the server's PRELOAD has them all, so forked runs pay nothing for imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweeps.forkserver import PRELOAD, ForkServer

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("lightning", "torchmetrics", "torch._dynamo", "scipy.signal", "matplotlib", "tensorboard", "tensorboardX",
         "wandb", "sympy")
ENTRY_MODULES = ("sweeps.cli", "scaling.train_cli", "scaling.train", "scaling.trainer", "sweeps.runproc",
                 "sweeps.worker", "sweeps.forkserver")
# Top-level packages (and torch subpackages) a forked run must find already imported by the server.
PRELOADED = ("vla_core", "scaling", "sweeps", "analysis", "lightning", "lightning_utilities", "torchmetrics",
             "pandas", "pyarrow", "wandb", "tensorboard", "tensorboardX", "scipy", "matplotlib", "sympy")
PRELOADED_TORCH = ("torch.distributed", "torch._dynamo", "torch.utils.serialization")


def test_run_entry_modules_import_no_lightning_nor_loggers():
    script = (f"import sys\nfor m in {ENTRY_MODULES!r}: __import__(m)\n"
              f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"imported at module level by {ENTRY_MODULES}: {out.stdout.strip()}"


def _late(name: str) -> bool:
    return name.split(".")[0] in PRELOADED or any(name == p or name.startswith(p + ".") for p in PRELOADED_TORCH)


@pytest.mark.slow
def test_a_forked_run_imports_nothing_the_server_should_have(tmp_path, tiny_dataset):
    cfg = {"data": str(tiny_dataset), "size": "10k", "samples": 64, "batch_size": 32, "precision": "32-true",
           "accelerator": "cpu", "val_samples": 32, "eval_episodes": 0, "logger": "csv", "progress_bar": False,
           "out": str(tmp_path / "run")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    server = ForkServer(preload=PRELOAD, cwd=str(REPO)).start()
    try:
        log, new = tmp_path / "train.log", tmp_path / "new.json"
        rc = server.run([str(new), "train", "--config", str(tmp_path / "run.yaml")], log,
                        entry="tests.sweeps.forkserver_targets:train_imports").wait(timeout=300)
    finally:
        server.close()
    assert rc == 0, log.read_text()[-2000:]
    late = [m for m in json.loads(new.read_text()) if _late(m)]
    assert not late, f"imported by a forked run, not by the fork server's PRELOAD: {late}"
