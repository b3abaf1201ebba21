"""A spec's ``reuse:``: points recorded from the rows of committed results tables instead of trained.

A run key is the hash of a run's resolved config and data (`sweeps.points.run_key`), so a point that a
committed study already made under the same key is the same run: a study that extends another (more
seeds, more sizes) plans it again and, with ``reuse:``, takes its row instead of paying for it again.
The row keeps the code version that made it; ``reused_from`` names the table it came from. A row's
re-run (``sweep run SPEC --only KEY``) never reuses: it trains the point, which is how a reused row is
checked against the code of the day.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from vla_core.errors import BadInput

if TYPE_CHECKING:
    from sweeps.points import PlannedRun
    from sweeps.spec import SweepSpec
    from sweeps.store import Queue

__all__ = ["committed_rows", "record_reused"]


def _plain(v: Any) -> Any:
    """A pandas cell as a JSON value: NaN -> None, numpy scalars -> Python."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def committed_rows(spec: SweepSpec) -> dict[str, tuple[str, dict]]:
    """Completed rows of the spec's ``reuse`` tables by run key: ``{key: (table as the spec writes it, row)}``;
    the first table that has a key wins.

    Raises:
        BadInput: a table that is missing or unreadable, or has no run_key column.
    """
    import pandas as pd

    out: dict[str, tuple[str, dict]] = {}
    for path, name in zip(spec.reuse_paths(), spec.reuse):
        try:
            df = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise BadInput(f"reuse: cannot read {name}: {exc}") from None
        for col in ("run_key", "state", "phase", "n_params", "n_samples", "seed"):
            if col not in df.columns:
                raise BadInput(f"reuse: {name} has no {col} column (not a sweep's results table)")
        for rec in df[df["state"] == "completed"].to_dict("records"):
            out.setdefault(str(rec["run_key"]), (str(name), {k: _plain(v) for k, v in rec.items()}))
    return out


def _check_same(run: PlannedRun, path: str, row: dict) -> None:
    """Refuse a row whose key matches but whose N, D, seed or phase do not (a hash collision or a hand edit)."""
    want = {"n_params": run.n_params, "n_samples": run.samples, "seed": run.seed, "phase": run.phase}
    for col, value in want.items():
        got = row.get(col)
        same = got == value if isinstance(value, str) else got is not None and int(got) == int(value)
        if not same:
            raise BadInput(f"reuse: {path} row {run.key} has {col}={got!r}, the spec plans {value!r}; "
                           "remove the table from reuse: or re-run that row")


def record_reused(q: Queue, runs: list[PlannedRun], spec: SweepSpec) -> int:
    """Record every waiting point of ``runs`` whose key has a completed row in the spec's ``reuse`` tables as
    completed from that row (its result fields; ``reused_from``: the table as the spec writes it); returns
    how many were recorded.

    Run under the sweep's lock, so a worker never claims a point that is being recorded.
    """
    from optuna.trial import TrialState

    from sweeps.results import RESULT_FIELDS

    if not spec.reuse:
        return 0
    rows = committed_rows(spec)
    planned = {r.key: r for r in runs}
    done = 0
    with q.lock():
        for t in q.trials((TrialState.WAITING,)):
            key = t.user_attrs.get("run_key")
            if key not in rows or key not in planned:
                continue
            path, row = rows[key]
            _check_same(planned[key], path, row)
            result = {f: row[f] for f in RESULT_FIELDS if f in row and row[f] is not None}
            val = result.get("val_loss")
            if not isinstance(val, (int, float)) or not math.isfinite(val):
                continue
            if not q.storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                continue
            attrs = {"result": result, "state": "completed", "reused_from": path,
                     "attempts": row.get("attempts")}
            q.finish(t._trial_id, TrialState.COMPLETE, json.loads(json.dumps(attrs)), float(val))
            done += 1
    return done
