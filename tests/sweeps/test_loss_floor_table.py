"""The results table carries each run's loss_floor (result.json -> worker row -> table -> CSV)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from scaling.result import RunResult
from sweeps import results
from sweeps.runproc import flatten_result
from vla_core import schema


def _result_json(run_id: str, **changes) -> dict:
    values = dict(run_id=run_id, status="completed", n_params=1000, n_params_nonembed=900, model={"d_model": 8,
                  "n_layers": 1, "n_heads": 1}, flops_per_sample=6000, flops=6e5, n_samples=100,
                  n_unique_samples=100, epochs=1.0, lr=1e-3, global_batch_size=10, precision="32-true",
                  world_size=1, val_loss=2.5, val_loss_best=2.5, train_loss=2.4, action_mse=0.1,
                  success_rate=None, wall_seconds=1.0, samples_per_second=100.0, mfu=None, versions={})
    values.update(changes)
    return RunResult(**values).to_dict()


class _Queue:
    """The part of `sweeps.store.Queue` that `results.table` reads: finished points and their attrs."""

    name = "floor"
    storage = None

    def __init__(self, results_by_key: dict[str, dict]) -> None:
        self._points = {k: ("completed", SimpleNamespace(user_attrs={
            "result": flatten_result(r), "state": "completed", "seed": 0, "phase": "main", "size": "1e3",
            "samples": r["n_samples"], "n_params": r["n_params"]})) for k, r in results_by_key.items()}

    def info(self) -> dict:
        return {"sweep": self.name}

    def point_states(self) -> dict:
        return self._points


def test_results_table_has_a_loss_floor_column_from_result_json(tmp_path):
    assert "loss_floor" in results.RESULT_FIELDS
    old = _result_json("b")
    del old["loss_floor"]  # a run finished before result.json carried the floor
    q = _Queue({"a": _result_json("a", loss_floor=1.1863), "b": old, "c": _result_json("c", loss_floor=None)})
    df = results.table(q)
    floors = dict(zip(df["run_key"], df["loss_floor"]))
    assert floors["a"] == 1.1863 and pd.isna(floors["b"]) and pd.isna(floors["c"])
    schema.validate_table(df)
    back = pd.read_csv(results.write_table(df, tmp_path / "results.csv"))
    assert dict(zip(back["run_key"], back["loss_floor"]))["a"] == 1.1863
    # The column sits with the run-result columns, before the sweep's own.
    cols = list(df.columns)
    assert cols.index("loss_floor") < cols.index("sweep")
