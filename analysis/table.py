"""Reading a results table (CSV or Parquet, or a DataFrame) and checking it before any fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vla_core.errors import BadInput
from vla_core.schema import DEFAULT_FAMILY, FITTED_PHASES

DEFAULT_COLUMNS = {"N": "n_params", "D": "n_samples", "loss": "val_loss", "C": "flops", "U": "n_unique_samples"}
"""Results-table column for each quantity (docs/contracts.md): parameters, samples, loss, FLOPs, unique samples."""
TRAINING_COLUMNS = ("lr", "global_batch_size", "precision", "schedule", "warmup", "weight_decay", "spec", "sweep",
                    "family")
"""Results-table columns that describe how the runs were trained; fit.json carries them."""
FAMILY_COLUMN = "family"
"""Results-table column of each run's model family (docs/contracts.md)."""
_TRUE = {"true", "1", "yes", "y", "t", "1.0"}
_DONE = {"completed", "complete", "success", "succeeded", "finished", "done", "ok"}


@dataclass(frozen=True)
class Table:
    """The checked columns of a results table, one entry per kept run."""

    cols: dict[str, np.ndarray]
    """Positive columns by quantity: "N" (parameters), "D" (samples), "C" (FLOPs), "U" (unique samples)."""
    loss: np.ndarray
    """Observed loss per run, (n,)."""
    k: float
    """FLOPs per parameter per sample: median of flops / (N D) when the table has FLOPs, else 6."""
    k_measured: bool
    """Whether `k` was measured from the table (True) or assumed (False: 6)."""
    source: str
    """Where the table came from (path or "DataFrame")."""
    names: dict[str, str] = field(default_factory=dict)
    """The table's column name for each quantity used."""
    notes: tuple[str, ...] = ()
    """What was done to the table on the way in (rows dropped, and why)."""
    frame: pd.DataFrame | None = field(default=None, repr=False)
    """The kept rows, all columns (for approaches that need extra columns, e.g. an IsoFLOP budget)."""
    blind_loss: float | None = None
    """Loss of the input-free baseline (rows with phase "blind", never fitted; their median), if any."""
    blind_success: float | None = None
    """Success rate of the input-free baseline (median over blind rows), if any: the floor of success."""

    def observed(self, holdout_frac: float = 0.2) -> dict:
        """The range the fit saw, and what an extrapolation from it is measured against.

        Keys (all numbers, absent when the table cannot say): loss_min; flops_min / flops_max, n_min /
        n_max, d_min / d_max (the fitted runs' extent); blind_loss / blind_success (the input-free
        baseline); unique_samples (distinct frames of the data the runs trained on: median of
        D / epochs over the runs); seed_sd (pooled standard deviation of log loss between runs that
        repeat one (N, D), i.e. the relative spread between seeds, over the top fifth of compute);
        fps_c0, fps_c1, fps_err (training FLOPs per sample as c0 + c1 N, least squares over the runs,
        and its largest relative error: what a model of N parameters costs per sample, a fixed cost
        such as an image stem included);
        backtest_reach (log10 of how far the backtest extrapolated: median compute of the held-out
        top `holdout_frac` of runs over the largest compute left in).
        """
        out = {"loss_min": float(self.loss.min()), "flops_max": float(self.compute.max()),
               "flops_min": float(self.compute.min())}
        for q, key in (("N", "n"), ("D", "d")):
            if q in self.cols:
                out[f"{key}_min"] = float(self.cols[q].min())
                out[f"{key}_max"] = float(self.cols[q].max())
        if self.blind_loss is not None:
            out["blind_loss"] = float(self.blind_loss)
        if self.blind_success is not None:
            out["blind_success"] = float(self.blind_success)
        out.update(self._data_extent())
        out.update(self._flops_model())
        n, c = self.n, self.compute
        h = int(np.ceil(holdout_frac * n)) if holdout_frac > 0 else 0
        if 0 < h < n:
            order = np.argsort(c, kind="stable")
            reach = float(np.log10(np.median(c[order[n - h:]]) / c[order[: n - h]].max()))
            if reach > 0:
                out["backtest_reach"] = reach
        return out

    def _data_extent(self) -> dict:
        """unique_samples and seed_sd (see `observed`), where the table's columns allow."""
        out: dict = {}
        f = self.frame
        if f is None or "D" not in self.cols:
            return out
        if "epochs" in f.columns:
            ep = pd.to_numeric(f["epochs"], errors="coerce").to_numpy(float)
            ok = np.isfinite(ep) & (ep > 0)
            if ok.any():
                out["unique_samples"] = float(np.median(self.cols["D"][ok] / ep[ok]))
        if "N" in self.cols:
            key = np.stack([self.cols["N"], self.cols["D"]], axis=1)
            _, group = np.unique(key, axis=0, return_inverse=True)
            group = group.ravel()
            size = np.bincount(group)
            if (size > 1).any():
                # Seeds part further with compute (when a run learns to see varies by seed), so the
                # spread is pooled over the repeated configurations of the top fifth of compute.
                y = np.log(self.loss)
                mean = np.bincount(group, weights=y) / size
                c = np.bincount(group, weights=self.compute) / size
                top = (size > 1) & (c >= np.quantile(c[size > 1], 0.8))
                keep = top[group]
                ss = float(((y[keep] - mean[group][keep]) ** 2).sum())
                dof = int((size[top] - 1).sum())
                out["seed_sd"] = float(np.sqrt(ss / dof))
        return out

    def _flops_model(self) -> dict:
        """fps_c0, fps_c1, fps_err: FLOPs per sample as c0 + c1 N (see `observed`), from the FLOPs column."""
        if not self.k_measured or "N" not in self.cols or "D" not in self.cols or "C" not in self.cols:
            return {}
        N, fps = self.cols["N"], self.cols["C"] / self.cols["D"]
        if np.unique(N).size < 2:
            return {}
        # Relative least squares: every size's cost matters equally, not only the largest's.
        X = np.stack([np.ones_like(N), N], axis=1) / fps[:, None]
        c0, c1 = np.linalg.lstsq(X, np.ones_like(N), rcond=None)[0]
        if not (c1 > 0 and c0 >= 0):
            c0, c1 = 0.0, float(np.median(fps / N))  # no fixed cost visible: FLOPs per sample ~ k N
        err = float(np.max(np.abs(c0 + c1 * N - fps) / fps))
        return {"fps_c0": float(c0), "fps_c1": float(c1), "fps_err": err}

    def training(self) -> dict:
        """Training settings of the fitted runs (lr, global_batch_size, precision, ...) where the table has them.

        One value when every run shares it; otherwise the value per model size N ({"by_n": {N: v}}),
        since sweeps tune the learning rate per size; a spec file named in a `spec` column is kept
        as a pointer.
        """
        if self.frame is None:
            return {}
        out: dict = {}
        for c in TRAINING_COLUMNS:
            if c not in self.frame.columns:
                continue
            v = self.frame[c].dropna()
            if v.empty:
                continue
            vals = v.unique()
            if len(vals) == 1:
                out[c] = _plain(vals[0])
            elif "N" in self.cols and c != "spec":
                by = {}
                for n, val in zip(self.cols["N"], self.frame[c]):
                    if pd.notna(val):
                        by.setdefault(int(round(n)), _plain(val))
                out[c] = {"by_n": {str(k): by[k] for k in sorted(by)}}
        return out

    @property
    def n(self) -> int:
        """Number of runs."""
        return int(self.loss.shape[0])

    @property
    def compute(self) -> np.ndarray:
        """Training FLOPs per run: the FLOPs column, else k * N * D."""
        if "C" in self.cols:
            return self.cols["C"]
        if "N" in self.cols and "D" in self.cols:
            return self.k * self.cols["N"] * self.cols["D"]
        return next(iter(self.cols.values()))  # one-variable table: its own variable orders the runs


def _plain(v):
    """A numpy scalar as a plain Python value (for JSON)."""
    return v.item() if hasattr(v, "item") else v


def read_frame(source) -> tuple[pd.DataFrame, str]:
    """A DataFrame from a DataFrame, a .csv or a .parquet path."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "DataFrame"
    path = Path(source)
    if not path.is_file():
        raise BadInput(f"{path}: no such results file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path), str(path)
        return pd.read_csv(path), str(path)
    except (ValueError, OSError, ImportError) as exc:
        raise BadInput(
            f"{path}: cannot read as a table ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        ) from None


def family_column(df: pd.DataFrame, col: str = FAMILY_COLUMN) -> pd.Series:
    """Each row's model family: the column's value, `DEFAULT_FAMILY` where the table has no such column
    or the cell is empty (a table without the column holds the built-in family only)."""
    if col not in df.columns:
        return pd.Series(DEFAULT_FAMILY, index=df.index, dtype=object)
    v = df[col].astype(object).where(df[col].notna(), DEFAULT_FAMILY).astype(str).str.strip()
    return v.where(v != "", DEFAULT_FAMILY)


def families_in(df: pd.DataFrame, col: str = FAMILY_COLUMN) -> list[str]:
    """The distinct model families of a table, `DEFAULT_FAMILY` first when present, then by name."""
    names = set(family_column(df, col))
    return sorted(names, key=lambda n: (n != DEFAULT_FAMILY, n))


def _rows(mask: np.ndarray) -> str:
    bad = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in bad[:8])
    return f"row{'s' if bad.size > 1 else ''} {shown}{' ...' if bad.size > 8 else ''} (0-based data rows)"


def _fitted_rows(df: pd.DataFrame, name: str, loss_col: str | None, all_states: bool, exclude_col: str | None):
    """The rows a law is fitted to: no blind baselines, no flagged rows, completed runs, a sweep's design points.

    Returns (rows, notes on what was left out, the blind baselines' median loss and success or None).
    """
    notes = []
    blind = blind_success = None
    if "phase" in df.columns:
        is_blind = df["phase"].astype(str).str.strip().str.lower().eq("blind")
        if is_blind.any():
            lc = loss_col or DEFAULT_COLUMNS["loss"]
            if lc in df.columns:
                bl = pd.to_numeric(df.loc[is_blind, lc], errors="coerce").dropna()
                blind = float(bl.median()) if len(bl) else None
            if "success_rate" in df.columns:
                bs = pd.to_numeric(df.loc[is_blind, "success_rate"], errors="coerce").dropna()
                blind_success = float(bs.median()) if len(bs) else None
            notes.append(f"left out {int(is_blind.sum())} blind-baseline run(s) (phase blind: no inputs, never fitted)"
                         + (f"; their loss {blind:.4g} is the reference to beat" if blind is not None else ""))
            df = df[~is_blind].reset_index(drop=True)
    if exclude_col is not None:
        if exclude_col not in df.columns:
            raise BadInput(f"{name}: no column {exclude_col!r} (--exclude-col); "
                           f"available: {', '.join(map(str, df.columns))}")
        flag = df[exclude_col].astype(str).str.strip().str.lower().isin(_TRUE)
        if flag.any():
            notes.append(f"left out {int(flag.sum())} of {len(df)} rows flagged in {exclude_col!r}")
            df = df[~flag].reset_index(drop=True)
    for sc in ("state", "status"):
        if sc in df.columns and not all_states:
            done = df[sc].astype(str).str.strip().str.lower().isin(_DONE)
            if (~done).any():
                counts = df.loc[~done, sc].astype(str).value_counts().to_dict()
                notes.append(f"dropped {int((~done).sum())} of {len(df)} runs whose {sc} is not completed: {counts}")
                df = df[done].reset_index(drop=True)
    if "phase" in df.columns:  # a sweep's table: fit its design points only (vla_core/schema.py)
        fitted = df["phase"].isna() | df["phase"].astype(str).str.strip().str.lower().isin(FITTED_PHASES)
        if (~fitted).any():
            counts = df.loc[~fitted, "phase"].astype(str).value_counts().to_dict()
            notes.append(f"left out {int((~fitted).sum())} runs that are not design points, by phase: {counts}")
            df = df[fitted].reset_index(drop=True)
    return df, notes, blind, blind_success


def load_table(source, *, need=("N", "D"), n_col: str | None = None, d_col: str | None = None,
               loss_col: str | None = None, c_col: str | None = None, u_col: str | None = None,
               n_params: int = 0, all_states: bool = False, exclude_col: str | None = None) -> Table:
    """Read and check a results table.

    Args:
        source: DataFrame or path to a CSV / Parquet file.
        need: quantities the caller needs among "N", "D", "C", "U" (the loss is always needed).
        n_col, d_col, loss_col, c_col, u_col: column names (defaults: `DEFAULT_COLUMNS`).
        n_params: parameters of the law to be fitted; fewer runs than this is bad input.
        all_states: keep runs whose `state`/`status` is not completed (default: drop them, with a note).
        exclude_col: column flagging rows to leave out (true/1/yes), e.g. an outlier flag.

    Rows whose `phase` is "blind" (the input-free baseline) are never fitted; their loss is kept
    as `Table.blind_loss`, the reference a useful model must beat.

    Raises:
        BadInput: missing column (lists the available ones), non-numeric, NaN or non-positive
            values (names the rows), too few runs, a single N or D for a two-variable law, rows of
            more than one model family (`FAMILY_COLUMN`: never pooled into one law).
    """
    df, name = read_frame(source)
    families = families_in(df)
    if len(families) > 1:
        raise BadInput(f"{name}: its runs are of {len(families)} model families ({', '.join(families)}); one law "
                       "fitted to them pooled describes none of them: fit each on its own (`scaling fit --by "
                       "family`; `scaling report` does so by itself)")
    df, notes, blind, blind_success = _fitted_rows(df, name, loss_col, all_states, exclude_col)
    given = {"N": n_col, "D": d_col, "loss": loss_col, "C": c_col, "U": u_col}
    flags = {"N": "--n-col", "D": "--d-col", "loss": "--loss-col", "C": "--c-col", "U": "--u-col"}
    names = {q: (given[q] or DEFAULT_COLUMNS[q]) for q in given}
    avail = ", ".join(map(str, df.columns))
    derive_c = "C" in need and names["C"] not in df.columns and given["C"] is None and \
        names["N"] in df.columns and names["D"] in df.columns
    if derive_c:
        need = (*[q for q in need if q != "C"], "N", "D")
        notes.append(f"no {names['C']!r} column: compute taken as 6 N D")
    for q in ("loss", *need):
        if q == "C" and names["C"] not in df.columns and given["C"] is None and "C" not in need:
            continue  # compute falls back to k N D
        if names[q] not in df.columns:
            raise BadInput(f"{name}: no column {names[q]!r} ({flags[q]}); available: {avail}")
    if len(df) == 0:
        raise BadInput(f"{name}: no completed runs to fit")
    wanted = ["loss", *need]
    if names["C"] in df.columns and "C" not in wanted:
        wanted.append("C")
    cols = {}
    for q in wanted:
        if names[q] not in df.columns:
            continue
        v = pd.to_numeric(df[names[q]], errors="coerce").to_numpy(float)
        bad = ~np.isfinite(v) | (v <= 0)
        if bad.any():
            raise BadInput(f"{name}: column {names[q]!r} has NaN, non-numeric or non-positive values in {_rows(bad)}")
        cols[q] = v
    loss = cols.pop("loss")
    if loss.size < max(n_params, 1) + 1:
        raise BadInput(f"{name}: {loss.size} runs, too few to fit a law with {n_params} parameters "
                       f"(need at least {n_params + 1})")
    if "N" in need and "D" in need:
        for q in ("N", "D"):
            if np.unique(cols[q]).size < 2:
                raise BadInput(f"{name}: column {names[q]!r} has a single value; "
                               "a law in N and D needs several of each")
    k, measured = 6.0, False
    if "C" in cols and "N" in cols and "D" in cols:
        k, measured = float(np.median(cols["C"] / (cols["N"] * cols["D"]))), True
    if derive_c:
        cols["C"] = 6.0 * cols["N"] * cols["D"]
    used = {q: names[q] for q in ("N", "D", "C", "U", "loss") if q in cols or q == "loss"}
    return Table(cols, loss, k, measured, name, used, tuple(notes), df, blind, blind_success)
