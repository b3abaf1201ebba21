"""Scratch-venv check (not a test): our export loads in LeRobot 0.4.4, and every normalisation mode works
on it before and after LeRobot's own edit tools (delete_episodes, split_dataset) rebuild its stats.

    python lerobot_check_export.py EXPORT_DIR SCRATCH_DIR

EXPORT_DIR is one of our exports (`scaling data export-lerobot`) with at least 3 episodes; SCRATCH_DIR
must not exist (the edited copies go there). LeRobot's edit tools rebuild meta/stats.json from the
per-episode stats of meta/episodes alone, so the quantile modes survive an edit only if every
episode row carries q01..q99. Exits 1 on the first failure. Nothing is downloaded.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lerobot.configs.types import FeatureType, NormalizationMode, PolicyFeature
from lerobot.datasets.dataset_tools import delete_episodes, split_dataset
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.processor.normalize_processor import NormalizerProcessorStep

MODES = (NormalizationMode.MEAN_STD, NormalizationMode.MIN_MAX, NormalizationMode.QUANTILES,
         NormalizationMode.QUANTILE10)
QUANTILES = ("q01", "q10", "q50", "q90", "q99")


def check(ds: LeRobotDataset, label: str) -> None:
    """Every mode normalises the action, the state and the camera of every frame to finite values."""
    feats = ds.meta.features
    camera = next(k for k, f in feats.items() if f["dtype"] in ("image", "video"))
    policy = {"action": PolicyFeature(type=FeatureType.ACTION, shape=tuple(feats["action"]["shape"])),
              "observation.state": PolicyFeature(type=FeatureType.STATE,
                                                 shape=tuple(feats["observation.state"]["shape"])),
              camera: PolicyFeature(type=FeatureType.VISUAL, shape=(3, *feats[camera]["shape"][:2]))}
    for key in ("action", "observation.state", camera):
        missing = [q for q in QUANTILES if q not in ds.meta.stats.get(key, {})]
        assert not missing, f"{label}: stats.json of {key} lacks {missing}"
    items = [ds[i] for i in range(len(ds))]
    action = torch.stack([it["action"] for it in items])
    obs = {"observation.state": torch.stack([it["observation.state"] for it in items]),
           camera: torch.stack([it[camera] for it in items])}
    for mode in MODES:
        step = NormalizerProcessorStep(features=policy, stats=ds.meta.stats,
                                       norm_map={FeatureType.ACTION: mode, FeatureType.STATE: mode,
                                                 FeatureType.VISUAL: mode})
        a = step._normalize_action(action, inverse=False)
        o = step._normalize_observation(obs, inverse=False)
        for name, t in (("action", a), ("state", o["observation.state"]), ("camera", o[camera])):
            assert torch.isfinite(t).all(), f"{label} {mode.value} {name}: non-finite"
        back = step._normalize_action(a, inverse=True)
        assert torch.allclose(back, action, atol=1e-4), f"{label} {mode.value}: the inverse does not undo it"
        print(f"{label:>22} {mode.value:>10}: action [{float(a.min()):+.3f}, {float(a.max()):+.3f}]  "
              f"state [{float(o['observation.state'].min()):+.3f}, {float(o['observation.state'].max()):+.3f}]  "
              f"camera [{float(o[camera].min()):+.3f}, {float(o[camera].max()):+.3f}]")


def rebuilt_stats_agree(src: Path, edited: LeRobotDataset, kept: list[int], label: str) -> None:
    """The edited stats.json quantiles are LeRobot's count-weighted mean of the kept episodes' quantiles."""
    rows = pd.concat(pd.read_parquet(p) for p in sorted((src / "meta" / "episodes").glob("*/*.parquet")))
    rows = rows.set_index("episode_index").loc[kept]
    counts = np.array([int(np.ravel(c)[0]) for c in rows["stats/action/count"]], dtype=np.float64)
    for q in QUANTILES:
        per_episode = np.stack([np.asarray(v, dtype=np.float64) for v in rows[f"stats/action/{q}"]])
        want = (per_episode * counts[:, None]).sum(0) / counts.sum()
        np.testing.assert_allclose(np.asarray(edited.meta.stats["action"][q]), want, rtol=1e-6, err_msg=label)
    print(f"{label:>22}: stats.json q01..q99 = the count-weighted mean of {len(kept)} episodes' own quantiles")


def main(export: str, scratch: str) -> None:
    export_dir, scratch_dir = Path(export), Path(scratch)
    ds = LeRobotDataset("local/ours", root=export_dir)
    n = ds.meta.total_episodes
    assert n >= 3, "needs at least 3 episodes"
    print(f"loaded {export_dir}: {n} episodes, {len(ds)} frames; stats keys {sorted(ds.meta.stats['action'])}")
    check(ds, "export")

    edited = delete_episodes(ds, [0], output_dir=scratch_dir / "deleted", repo_id="local/deleted")
    assert edited.meta.total_episodes == n - 1
    check(edited, "after delete_episodes")
    rebuilt_stats_agree(export_dir, edited, list(range(1, n)), "after delete_episodes")

    parts = split_dataset(ds, {"train": [0, 2], "val": list(range(3, n)) or [1]}, output_dir=scratch_dir / "split")
    for name, part in parts.items():
        check(part, f"after split_dataset:{name}")
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:3])
