"""The shipped smoke sweep end to end with the real `scaling train` (data generation, runs, table, fit)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vla_core.schema import validate

SMOKE = Path(__file__).resolve().parents[2] / "sweeps" / "smoke.yaml"


@pytest.mark.slow
@pytest.mark.timeout(900)  # the shared smoke sweep: about 2 minutes on 2 idle cores
def test_smoke_sweep_end_to_end(smoke_sweep):
    d = smoke_sweep
    df = pd.read_csv(d / "results.csv")
    assert set(df["state"]) == {"completed"} and df["run_key"].is_unique
    assert (df["val_loss"] > 0).all() and (df["n_params"] > 0).all() and df["d_model"].notna().all()
    main = df[df["phase"] == "main"]  # 3 sizes x 2 data sizes, and the input-free baseline beside them
    assert len(main) == 6 and set(main["n_samples"]) == {256, 512} and main["n_params"].nunique() == 3
    (blind,) = df[df["phase"] == "blind"].itertuples()
    assert (blind.n_params, blind.n_samples) == (main["n_params"].max(), 512)
    for key in df["run_key"]:  # each run is a real run folder with its own resolved config
        res = json.loads((d / "runs" / key / "result.json").read_text())
        assert res["status"] == "completed" and res["run_id"] == key
        assert (d / "runs" / key / "config.yaml").is_file()
    status = subprocess.run([sys.executable, "-m", "sweeps.cli", "sweep", "status", str(SMOKE), "--dir", str(d),
                             "--json"], capture_output=True, text=True)
    counts = json.loads(status.stdout)
    assert counts["total"] == counts["completed"] == len(df)
    # 3 sizes x 2 data sizes: a real sweep goes through a real fit (5 parameters, 6 runs) and a report.
    assert not (d / "fit_skipped.txt").exists(), (d / "fit_skipped.txt").read_text()
    fit = json.loads((d / "fit.json").read_text())
    validate("fit", fit)
    assert fit["n_points"] == 6 and fit["form"] == "chinchilla"
    assert all(math.isfinite(v) for v in fit["params"].values()), fit["params"]
    assert (d / "report.html").is_file()
