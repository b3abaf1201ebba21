"""Test-only stand-in for ``scaling train`` (swapped in through ``SWEEP_RUN_COMMAND``).

It behaves like a run where the engine can see it: reads ``--config``, trains ``FAKE_STEPS`` steps of
``FAKE_STEP_S`` seconds, checkpoints after each step and resumes from the checkpoint when rerun,
writes ``result.json`` atomically, and appends ``start``/``resume``/``finish`` lines to
``SWEEP_DIR/invocations.log`` so tests can count how often each point ran. Env knobs:
``FAKE_FAIL`` (substring of sizes that always fail), ``FAKE_DIVERGE`` (sizes that diverge).
"""

import json
import os
import sys
import time
from pathlib import Path

import yaml


def _log(sweep_dir: Path, line: str) -> None:
    with open(sweep_dir / "invocations.log", "a") as f:
        f.write(line + "\n")
        f.flush()


def _code_version() -> str:
    from scaling.versions import code_version  # as the real trainer records it

    return code_version()


def main() -> int:
    from scaling.config import to_legacy

    # run.yaml by section, read in the old flat names (values as written, no defaults)
    cfg = to_legacy(yaml.safe_load(Path(sys.argv[sys.argv.index("--config") + 1]).read_text()))
    out = Path(cfg["out"])
    sweep_dir = out.parent.parent
    key = out.name
    out.mkdir(parents=True, exist_ok=True)  # the W&B settings this run was given, for the tests to read
    (out / "env.json").write_text(json.dumps({k: v for k, v in os.environ.items() if k.startswith("WANDB_")}))
    ckpt = out / "checkpoints" / "last.json"
    step = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    _log(sweep_dir, f"{'resume' if step else 'start'} {key} {os.getpid()} {step}")
    size = str(cfg["size"])
    if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in size:
        print("RuntimeError: fake failure for", size, file=sys.stderr)
        return 1
    steps = int(os.environ.get("FAKE_STEPS", "4"))
    import math

    lr_penalty = (math.log10(float(cfg.get("lr", 3e-4))) + 2.5) ** 2  # best lr ~ 3e-3
    for s in range(step, steps):
        time.sleep(float(os.environ.get("FAKE_STEP_S", "0.02")))
        with open(out / "metrics.csv", "a") as m:
            if s == 0:
                m.write("step,samples,val_loss\n")
            m.write(f"{s + 1},{(s + 1) * 16},{2.0 + lr_penalty + 1.0 / (s + 1)}\n")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"step": s + 1}))
        os.replace(tmp, ckpt)
    for at in cfg.get("checkpoint_at") or []:  # WSD stable-phase checkpoints, as the real trainer keeps
        (out / "checkpoints" / f"stable-{at}.ckpt").write_text("{}")
    if cfg.get("branch_from") and not Path(cfg["branch_from"]).is_file():
        print(f"BadInput: --branch-from {cfg['branch_from']}: checkpoint not found", file=sys.stderr)
        return 2
    n = float(size) if size.replace(".", "").replace("e", "").replace("+", "").isdigit() else 1e5
    d = int(cfg["samples"])
    diverged = bool(os.environ.get("FAKE_DIVERGE")) and os.environ["FAKE_DIVERGE"] in size
    val = float("nan") if diverged else 1.0 + 400.0 / n ** 0.34 + 410.0 / d ** 0.28 + lr_penalty
    result = {
        "run_id": key, "status": "diverged" if diverged else "completed", "n_params": int(n),
        "n_params_nonembed": int(0.9 * n), "model": {"d_model": 32, "n_layers": 2, "n_heads": 2},
        "flops_per_sample": int(6 * n), "flops": 6 * n * d, "n_samples": d, "n_unique_samples": d,
        "epochs": 1.0, "lr": cfg.get("lr", 3e-4), "global_batch_size": cfg.get("batch_size", 64),
        "precision": cfg.get("precision") or "32-true", "world_size": 1, "val_loss": None if diverged else val,
        "val_loss_best": None if diverged else val, "train_loss": val, "action_mse": 0.1,
        "success_rate": None, "wall_seconds": 0.1, "samples_per_second": 1000.0, "mfu": None,
        "versions": {"fake": "1", "code": os.environ.get("FAKE_CODE_VERSION") or _code_version()},
    }
    tmp = out / ".result.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, out / "result.json")
    _log(sweep_dir, f"finish {key} {os.getpid()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
