"""Did the recommendation hold? Validation rows (``phase = validation``) against their predictions.

A validation round is a held-out budget at which the tool recommended a size (``recommended``
true) and alternatives were run at the same compute; each row carries the loss the tool printed
before the run (``predicted_loss``) and its interval (``predicted_lo``, ``predicted_hi``). This
module reads them back: which size won, whether each interval covered what happened.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_TRUE = {"true", "1", "1.0", "yes", "t"}


def validation_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The completed validation rows of a results table (empty when it has none)."""
    if "phase" not in df.columns:
        return df.iloc[0:0]
    v = df[df["phase"].astype(str) == "validation"]
    for sc in ("state", "status"):
        if sc in v.columns:
            v = v[v[sc].astype(str).isin(("completed",))]
    return v[pd.to_numeric(v["val_loss"], errors="coerce").notna()] if "val_loss" in v.columns else v.iloc[0:0]


def summarize(df: pd.DataFrame, loss_col: str = "val_loss") -> list[dict]:
    """One summary per validation round (budget), sizes ordered by N.

    Returns:
        [{"budget", "sizes": [{"n_params", "samples", "size", "recommended", "losses", "mean",
        "predicted_loss", "predicted_lo", "predicted_hi", "covered" (runs inside the interval),
        "mean_covered"}], "winner" (n_params of the lowest mean loss), "recommended_won",
        "margin" (recommended mean - best other mean; negative when it won), "seed_sd" (pooled between
        seeds where a size ran several, else None), "decisive" (|margin| beyond twice its standard error
        from that spread; None without repeats), "covered", "runs"}]
    """
    v = validation_rows(df)
    out = []
    if v.empty:
        return out
    for budget, g in v.groupby(pd.to_numeric(v["budget"], errors="coerce")):
        sizes = []
        for n, h in g.groupby("n_params"):
            loss = pd.to_numeric(h[loss_col], errors="coerce").to_numpy(float)
            lo, mid, hi = (float(pd.to_numeric(h[c]).iloc[0])
                           for c in ("predicted_lo", "predicted_loss", "predicted_hi"))
            rec = str(h["recommended"].iloc[0]).strip().lower() in _TRUE
            sizes.append({"n_params": int(n), "samples": int(h["n_samples"].iloc[0]), "size": str(h["size"].iloc[0]),
                          "recommended": rec, "losses": [float(x) for x in loss], "mean": float(loss.mean()),
                          "predicted_loss": mid, "predicted_lo": lo, "predicted_hi": hi,
                          "covered": int(((loss >= lo) & (loss <= hi)).sum()),
                          "mean_covered": bool(lo <= loss.mean() <= hi)})
        best = min(sizes, key=lambda s: s["mean"])
        rec = next((s for s in sizes if s["recommended"]), None)
        others = [s for s in sizes if not s["recommended"]]
        rival = min(others, key=lambda s: s["mean"]) if others else None
        sd = _pooled_sd([s["losses"] for s in sizes])
        margin = float(rec["mean"] - rival["mean"]) if rec is not None and rival is not None else None
        noise = (2.0 * sd * np.sqrt(1.0 / len(rec["losses"]) + 1.0 / len(rival["losses"]))
                 if sd is not None and margin is not None else None)
        out.append({"budget": float(budget), "sizes": sizes, "winner": best["n_params"],
                    "recommended_won": bool(rec is not None and rec is best), "margin": margin,
                    "seed_sd": sd, "decisive": None if noise is None else bool(abs(margin) > noise),
                    "covered": int(sum(s["covered"] for s in sizes)),
                    "runs": int(sum(len(s["losses"]) for s in sizes))})
    return out


def _pooled_sd(groups: list[list[float]]) -> float | None:
    """Pooled standard deviation between seeds over the sizes run with more than one (None: no repeats)."""
    ss = sum(float(((np.asarray(g) - np.mean(g)) ** 2).sum()) for g in groups if len(g) > 1)
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    return float(np.sqrt(ss / dof)) if dof else None
