"""Input reliance (scaling.probe) of a finished sweep's main runs at the largest D, from their checkpoints.

    python -m benchmarks.reliance_of_study SWEEP_DIR [--keys K1,K2]

For runs trained before result.json recorded `input_reliance`: loads each run's last checkpoint,
rebuilds its model from config.yaml and prints the validation-loss increase with the image, the
instruction and the proprioception shuffled across samples (nats; 0 = the input is ignored).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    ap.add_argument("--keys", default=None, help="run keys (default: every run folder with a result.json)")
    args = ap.parse_args()
    from scaling.config import from_mapping, load_yaml
    from scaling.data import open_source
    from scaling.data.blind import BlindSource
    from scaling.model.vla import VLA
    from scaling.probe import input_reliance
    from scaling.train import model_config

    torch.set_num_threads(1)
    runs = Path(args.sweep_dir) / "runs"
    keys = args.keys.split(",") if args.keys else sorted(p.name for p in runs.iterdir() if (p / "result.json").exists())
    for key in keys:
        cfg = from_mapping(load_yaml(runs / key / "config.yaml"))
        source = open_source(cfg.data.source)
        if cfg.data.blind:
            source = BlindSource(source)
        model = VLA(model_config(cfg, source))
        state = torch.load(runs / key / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
        weights = state.get("state_dict") or state.get("model")
        model.load_state_dict({k.removeprefix("model."): v for k, v in weights.items()})
        rel = input_reliance(model, source, cfg.validation.samples)
        res = json.loads((runs / key / "result.json").read_text())
        print(json.dumps({"run_key": key, "n_params": res["n_params"], "n_samples": res["n_samples"],
                          "blind": bool(cfg.data.blind), "val_loss": round(res["val_loss"], 4),
                          "reliance": {k: round(v, 4) for k, v in rel.items()}}), flush=True)


if __name__ == "__main__":
    main()
