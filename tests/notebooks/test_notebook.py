"""The shipped notebook runs top to bottom on the results table the project's own sweep produced."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.slow
def test_scaling_laws_notebook_executes(monkeypatch):
    monkeypatch.setenv("BOOTSTRAP", "100")  # intervals still computed, in a few seconds
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the notebook's own inline backend, as a reader gets it
    nb = nbformat.read(NOTEBOOKS / "scaling_laws.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "N_opt" in text and "alpha" in text  # the fit summary and the chosen configuration printed
    assert [o for o in outputs if "image/png" in o.get("data", {})]  # the figures display


def test_shipped_notebook_has_its_outputs():
    """A reader on GitHub sees the figures and numbers without running anything."""
    nb = nbformat.read(NOTEBOOKS / "scaling_laws.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert [o for o in outputs if "image/png" in o.get("data", {})]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    assert not any("matplotlib.use(" in c.source for c in nb.cells)  # Agg would hide every figure


def test_shipped_results_table_is_ours():
    """The table beside the notebook is a sweep export: the results-table columns, completed runs."""
    import pandas as pd

    table = pd.read_csv(NOTEBOOKS / "data" / "quickstart_results.csv")
    for col in ("run_key", "sweep", "seed", "state", "n_params", "n_samples", "flops", "val_loss"):
        assert col in table.columns
    assert (table["state"] == "completed").sum() >= 12
    assert table["n_params"].nunique() >= 4 and table["n_samples"].nunique() >= 3
