"""The results table: one row per point, read from the sweep's storage alone (no shared disk).

Columns: the run-result fields (``docs/contracts.md``; the model shape flattened as ``d_model``,
``n_layers``, ``n_heads``; ``versions`` as a JSON string) plus ``sweep``, ``run_key``, ``seed``,
``state`` (completed | failed | diverged | pruned | running | waiting), ``phase`` (main | stable |
cooldown | lr_search), ``size`` as written in the spec, ``reason`` for failures. Points not finished
yet carry the planned N, D and FLOPs so the table always has every point.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.atomic import write_atomic
from analysis.errors import BadInput

if TYPE_CHECKING:  # pandas is imported lazily by the functions below
    import pandas as pd

    from sweeps.store import Queue

RESULT_FIELDS = (
    "run_id", "status", "n_params", "n_params_nonembed", "d_model", "n_layers", "n_heads",
    "flops_per_sample", "flops", "n_samples", "n_unique_samples", "epochs", "lr", "global_batch_size",
    "precision", "world_size", "val_loss", "val_loss_best", "train_loss", "action_mse", "success_rate",
    "wall_seconds", "samples_per_second", "mfu", "versions", "success_note",
    "reliance_image", "reliance_instruction", "reliance_proprio",
)
SWEEP_FIELDS = ("sweep", "run_key", "seed", "state", "phase", "size", "budget", "reason", "attempts")


def flatten_result(result: dict) -> dict:
    """A result.json dict as one flat row (model shape flattened, nested values as JSON strings)."""
    row: dict[str, Any] = {}
    for k, v in result.items():
        if k == "model" and isinstance(v, dict):
            for mk in ("d_model", "n_layers", "n_heads"):
                if mk in v:
                    row[mk] = v[mk]
        elif k == "input_reliance" and isinstance(v, dict):  # one column per probed input
            for ik, iv in v.items():
                row[f"reliance_{ik}"] = iv
        elif isinstance(v, (dict, list)):
            row[k] = json.dumps(v, sort_keys=True)
        else:
            row[k] = v
    return row


def rows(q: "Queue") -> list[dict]:
    """Every point of the sweep as a row, in plan order (N, D, seed)."""
    out = []
    for key, (state, t) in q.point_states().items():
        a = t.user_attrs
        row: dict[str, Any] = {f: None for f in RESULT_FIELDS}
        row.update(n_params=a.get("n_params"), n_samples=a.get("samples"), flops=a.get("flops"),
                   flops_per_sample=a.get("flops_per_sample"), lr=(a.get("config") or {}).get("lr"))
        row.update(a.get("result") or {})
        row.update(sweep=q.name, run_key=key, seed=a.get("seed"), state=state, phase=a.get("phase", "main"),
                   size=str(a.get("size")), budget=a.get("budget"), reason=a.get("reason"), attempts=a.get("attempts"))
        out.append(row)
    out.sort(key=lambda r: (r["phase"] != "main", r["n_params"] or 0, r["n_samples"] or 0, r["seed"] or 0, r["run_key"]))
    return out


def table(q: "Queue") -> "pd.DataFrame":
    """The results table as a DataFrame (columns: result fields, then sweep fields)."""
    import pandas as pd

    from sweeps.lr_search import lr_rows

    data = rows(q) + lr_rows(q.name, q.storage, q.info().get("lr_models") or [])
    cols = list(RESULT_FIELDS) + [c for c in SWEEP_FIELDS if c not in RESULT_FIELDS]
    extra = sorted({k for r in data for k in r} - set(cols))
    return pd.DataFrame(data, columns=cols + extra)


def write_table(df: "pd.DataFrame", out: str | Path) -> Path:
    """Write the table as CSV or Parquet (by extension), atomically."""
    path = Path(out)
    if path.suffix not in (".csv", ".parquet"):
        raise BadInput(f"--out {out}: use a .csv or .parquet file name")
    if path.suffix == ".csv":
        return write_atomic(path, df.to_csv(index=False))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return write_atomic(path, buf.getvalue())


def fit_table(df: "pd.DataFrame", include_diverged: bool = False) -> "pd.DataFrame":
    """The rows a scaling-law fit uses: design points that completed (diverged left out by default)."""
    keep = {"completed", "diverged"} if include_diverged else {"completed"}
    return df[df["state"].isin(keep) & df["phase"].isin(["main", "cooldown"])].reset_index(drop=True)
