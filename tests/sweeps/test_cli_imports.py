"""The command line stays light: `scaling --help`, `scaling train --help` and `scaling fit` never import
torch or Lightning (only a training run pays for them)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_help_and_fit_never_import_torch(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    n = np.repeat([1e5, 3e5, 1e6, 3e6], 4)
    d = np.tile([1e4, 3e4, 1e5, 3e5], 4)
    loss = 1.5 + 40 / n**0.3 + 60 / d**0.3 + rng.normal(0, 0.002, n.size)
    csv = tmp_path / "results.csv"
    csv.write_text("n_params,n_samples,val_loss\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(n, d, loss)))
    script = textwrap.dedent(f"""
        import sys
        from sweeps.cli import main
        for argv in (["--help"], ["train", "--help"], ["sweep", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
        assert main(["fit", {str(csv)!r}, "--bootstrap", "20", "--out", {str(tmp_path / 'fit.json')!r}]) == 0
        heavy = [m for m in ("torch", "lightning", "torchmetrics") if m in sys.modules]
        assert not heavy, heavy
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "fit.json").exists()
