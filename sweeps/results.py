"""The results table: one row per point, read from the sweep's storage alone (no shared disk).

Columns: the run-result fields (``docs/contracts.md``; the model shape flattened as ``d_model``,
``n_layers``, ``n_heads``; ``versions`` as a JSON string) plus ``sweep``, ``run_key``, ``seed``,
``state`` (completed | failed | diverged | pruned | running | waiting), ``phase`` (main | stable |
cooldown | lr_search), ``size`` as written in the spec, ``reason`` for failures, ``spec_fingerprint``
and ``generation`` (the spec that planned the point), ``code_version`` (the code that made the run),
``flops_6nd`` (6 x non-embedding N x D, beside the exact ``flops``), ``family`` (the run's model
family, on every row). Points not finished
yet carry the planned N, D and FLOPs so the table always has every point.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vla_core import schema
from vla_core.atomic import write_atomic
from vla_core.errors import BadInput

if TYPE_CHECKING:  # pandas is imported lazily by the functions below
    import pandas as pd

    from sweeps.store import Queue

# The columns are those of the contract (vla_core/schema.py, rendered in docs/contracts.md).
RESULT_FIELDS = tuple(f.name for f in schema.RESULT_COLUMNS)
SWEEP_FIELDS = tuple(f.name for f in schema.SWEEP_COLUMNS)
VALIDATION_FIELDS = ("predicted_loss", "predicted_lo", "predicted_hi", "recommended")


def rows(q: Queue) -> list[dict]:
    """Every point of the sweep as a row, in plan order (N, D, seed)."""
    out = []
    sweep = q.info().get("sweep") or q.name
    for key, (state, t) in q.point_states().items():
        a = t.user_attrs
        row: dict[str, Any] = {f: None for f in RESULT_FIELDS}
        row.update(n_params=a.get("n_params"), n_samples=a.get("samples"), flops=a.get("flops"),
                   flops_per_sample=a.get("flops_per_sample"), lr=(a.get("config") or {}).get("lr"))
        row.update(a.get("result") or {})
        # Kaplan's 6ND (non-embedding N) beside the exact FLOPs, as the README promises.
        if row.get("n_params_nonembed") and row.get("n_samples"):
            row["flops_6nd"] = 6.0 * float(row["n_params_nonembed"]) * float(row["n_samples"])
        made_by = (a.get("result") or {}).get("versions")
        made_by = json.loads(made_by).get("code") if isinstance(made_by, str) else None
        family = a.get("family") or (a.get("config") or {}).get("family") or schema.DEFAULT_FAMILY
        row.update(sweep=sweep, run_key=key, seed=a.get("seed"), state=state, phase=a.get("phase", "main"),
                   size=str(a.get("size")), family=family, budget=a.get("budget"), reason=a.get("reason"),
                   attempts=a.get("attempts"), spec_fingerprint=a.get("spec_fingerprint"),
                   generation=a.get("generation"), code_version=made_by or a.get("code_version"),
                   reused_from=a.get("reused_from"))
        if a.get("phase") == "validation":
            row.update({k: a.get(k) for k in VALIDATION_FIELDS})
        out.append(row)
    out.sort(key=lambda r: (r["phase"] != "main", r["n_params"] or 0, r["n_samples"] or 0, r["seed"] or 0,
                            r["run_key"]))
    return out


def table(q: Queue) -> pd.DataFrame:
    """The results table as a DataFrame (columns: result fields, then sweep fields)."""
    import pandas as pd

    data = rows(q)
    cols = list(RESULT_FIELDS) + [c for c in SWEEP_FIELDS if c not in RESULT_FIELDS]
    extra = sorted({k for r in data for k in r} - set(cols))
    return pd.DataFrame(data, columns=cols + extra)


def check_out(out: str | Path) -> Path:
    """``--out`` of a table: a .csv or .parquet file name, not a folder, in a folder that exists."""
    path = Path(out)
    if path.is_dir():
        raise BadInput(f"--out {out}: is a folder; give a file name (results.csv or results.parquet)")
    if path.suffix not in (".csv", ".parquet"):
        raise BadInput(f"--out {out}: use a .csv or .parquet file name")
    return path


def write_table(df: pd.DataFrame, out: str | Path) -> Path:
    """Write the table as CSV or Parquet (by extension), atomically, after checking it against its contract."""
    path = check_out(out)
    schema.validate_table(df)
    if path.suffix == ".csv":
        return write_atomic(path, df.to_csv(index=False))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return write_atomic(path, buf.getvalue())


def fit_table(df: pd.DataFrame, include_diverged: bool = False) -> pd.DataFrame:
    """The rows a scaling-law fit uses: design points that completed (diverged left out by default)."""
    keep = {"completed", "diverged"} if include_diverged else {"completed"}
    return df[df["state"].isin(keep) & df["phase"].isin(schema.FITTED_PHASES)].reset_index(drop=True)
