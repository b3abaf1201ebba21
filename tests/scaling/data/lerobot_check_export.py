"""Scratch-venv check (not a test): our export loads in LeRobot 0.4.4 and its QUANTILES / QUANTILE10 normalisers accept it."""
import sys, numpy as np, torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.configs.types import NormalizationMode, PolicyFeature, FeatureType
from lerobot.processor.normalize_processor import NormalizerProcessorStep
ds = LeRobotDataset("local/ours", root=sys.argv[1])
print(len(ds), ds.meta.stats["action"].keys())
feats = {"action": PolicyFeature(type=FeatureType.ACTION, shape=tuple(ds.meta.features["action"]["shape"])),
         "observation.state": PolicyFeature(type=FeatureType.STATE, shape=tuple(ds.meta.features["observation.state"]["shape"]))}
for mode in (NormalizationMode.QUANTILES, NormalizationMode.QUANTILE10):
    step = NormalizerProcessorStep(features=feats, norm_map={FeatureType.ACTION: mode, FeatureType.STATE: mode}, stats=ds.meta.stats)
    a = torch.stack([ds[i]["action"] for i in range(len(ds))])
    out = step._normalize_action(a, inverse=False) if hasattr(step, "_normalize_action") else None
    print(mode, None if out is None else (float(out.min()), float(out.max())))
