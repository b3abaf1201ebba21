"""`train(cfg) -> RunResult`: one training run, from a RunConfig to RUN_DIR/result.json.

Order matters for speed and for clear errors: everything that can reject bad input (the dataset, the
model shape, the batch split, a resume/branch mismatch) runs before Lightning is imported.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from scaling.config import RunConfig, from_mapping, load_run_config, resumable_fields
from scaling.result import RunResult
from vla_core.errors import BadInput

# Fields (dotted, `RunConfig.flat`) that may change between the first start of a run and its resumption
# (by section).
_RESUMABLE_CHANGES = resumable_fields()
# Fields a branched run must share with the run whose stable-phase checkpoint it starts from.
_BRANCH_SAME = ("data.source", "model.size", "model.family", "optim.batch_size", "seed", "optim.lr", "model.chunk",
                "model.head", "model.patch_size", "model.keypoints", "model.film", "model.mup_base_width",
                "optim.weight_decay", "optim.beta1", "optim.beta2", "model.precision")


def _say(msg: str) -> None:
    if _env_rank() == 0:
        sys.stderr.write(f"scaling train: {msg}\n")
        sys.stderr.flush()


def _env_rank() -> int:
    """Global rank from the launcher's environment (0 before any launch)."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key):
            return int(os.environ[key])
    local = int(os.environ.get("LOCAL_RANK", 0))
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return node * int(os.environ.get("LOCAL_WORLD_SIZE", 1)) + local if node else local


def model_config(cfg: RunConfig, source):
    """The `ModelConfig` of this run's model (`scaling.model.family.run_model`; the benchmarks build the VLA from it).

    Raises:
        BadInput: a family whose models have no `ModelConfig` (any but vla).
    """
    from scaling.model import ModelConfig
    from scaling.model.family import dims_of, run_model

    config = run_model(cfg, dims_of(source)).config
    if not isinstance(config, ModelConfig):
        raise BadInput(f"train: family {cfg.model.family} has no vla ModelConfig "
                       "(only the built-in vla family has one)")
    return config


def _check_same(old: dict, new: dict, keys, what: str) -> None:
    for key in keys:
        if old.get(key) != new.get(key):
            raise BadInput(f"{what}: {key} is {old.get(key)!r} there but {new.get(key)!r} now; "
                           f"use a new --out or the same settings")


def _resume_point(cfg: RunConfig, accumulate: int) -> tuple[str | None, int]:
    """(checkpoint to resume or branch from, its step); prints what it does."""
    from scaling.checkpointing import read_checkpoint_meta

    last = cfg.run_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        meta = read_checkpoint_meta(last)
        _check_accumulation(meta, accumulate, str(last))
        _say(f"resuming from {last} (step {meta['global_step']}/{cfg.steps})")
        return str(last), meta["global_step"]
    if cfg.schedule.branch_from:
        path = Path(cfg.schedule.branch_from)
        if not path.is_file():
            raise BadInput(f"train: --schedule.branch-from {path}: checkpoint not found")
        if cfg.schedule.name != "wsd":
            raise BadInput("train: --schedule.branch-from needs --schedule.name wsd (a cooldown from a stable phase)")
        meta = read_checkpoint_meta(path)
        # A checkpoint from before a field existed ran with that field's default; an old checkpoint
        # records the flat names, read through `scaling.config.LEGACY`.
        old = from_mapping({"data": cfg.data.source, **meta.get("run_config", {})}, source=str(path)).flat()
        _check_same(old, cfg.flat(), _BRANCH_SAME, f"--schedule.branch-from {path}")
        _check_accumulation(meta, accumulate, str(path))
        from scaling.schedules import wsd_decay_start

        step, start = meta["global_step"], wsd_decay_start(cfg.steps, cfg.schedule.wsd_decay_frac)
        if step > start or step < cfg.warmup_steps:
            raise BadInput(f"train: --schedule.branch-from {path} is at step {step}, outside this run's stable phase "
                           f"[{cfg.warmup_steps}, {start}] of {cfg.steps} steps")
        _say(f"branching from {path} (step {step}/{cfg.steps}, cooldown from step {start})")
        return str(path), step
    return None, 0


def _check_accumulation(meta: dict, accumulate: int, where: str) -> None:
    old = meta.get("accumulate")
    if old is not None and old != accumulate:
        raise BadInput(f"train: {where} used {old} accumulation steps per optimizer step, this run {accumulate}; "
                       f"keep --hardware.devices x --hardware.micro-batch-size the same to resume")


def _same_run(saved: tuple[dict, dict], cfg: RunConfig) -> bool:
    """Whether `cfg` asks for the run a config.yaml records: the same values as it resolved them (a rerun
    of config.yaml itself) or as they were asked (a rerun of the first command), hardware aside."""
    new = cfg.flat()
    return any(all(view.get(k) == new.get(k) for k in new if k not in _RESUMABLE_CHANGES) for view in saved)


def _finished(cfg: RunConfig) -> RunResult | None:
    path = cfg.run_dir / "result.json"
    if path.exists() and (cfg.run_dir / "config.yaml").exists():
        try:
            saved = load_run_config(cfg.run_dir / "config.yaml")
        except BadInput:  # another version's file: the resume check below says what differs
            return None
        if _same_run(saved, cfg):
            result = RunResult.load(path)
            if result.status in ("completed", "diverged"):
                return result
    return None


def resolved_config(cfg: RunConfig, model, saved: tuple[dict, dict] | None = None) -> tuple[RunConfig, dict]:
    """(`cfg` as this run resolves it, {dotted field: value asked} where they differ): what config.yaml records.

    Resolved: what the family pins of `model` (a `ResolvedModel`; for vla the whole shape as
    ``model.size`` "WIDTHxBLOCKSxHEADS": the solver is never asked again; a factory family keeps the
    size, its factory's input), the accelerator, the torch threads and the precision that run here
    (`scaling.trainer.resolved_hardware`). `saved`, the config.yaml of an
    earlier start, keeps what that start was asked where this one asks for what it resolved (a rerun of
    config.yaml itself).
    """
    from scaling.trainer import resolved_hardware

    pinned = {f"model.{k}": v for k, v in model.pinned.items()}
    resolved = cfg.replace(**pinned, **resolved_hardware(cfg))
    new, asked = resolved.flat(), cfg.flat()
    requested = {k: v for k, v in asked.items() if new[k] != v}
    if saved is not None:
        old_resolved, old_asked = saved
        for key, value in old_asked.items():
            if key not in requested and value != old_resolved.get(key) and asked.get(key) == old_resolved.get(key):
                requested[key] = value
    return resolved, requested


def _versions() -> dict:
    import importlib.metadata as md
    import platform

    import lightning
    import torch

    from scaling.versions import code_version

    try:
        package = md.version("vla-scaling")
    except md.PackageNotFoundError:
        package = None
    return {"torch": torch.__version__, "lightning": lightning.__version__,
            "python": platform.python_version(), "package": package, "code": code_version()}


def train(cfg: RunConfig) -> RunResult | None:
    """Train one model on exactly cfg.data.samples samples; returns the result (None on ranks > 0).

    Writes RUN_DIR/config.yaml, RUN_DIR/metrics.csv, RUN_DIR/checkpoints/{last,stable-*}.ckpt and
    RUN_DIR/result.json. Running it again after an interruption resumes from last.ckpt; running it
    again after it finished returns the saved result.

    Raises:
        BadInput: missing dataset, impossible size or batch split, a run directory holding another run.
    """
    t_start = time.time()
    done = _finished(cfg)
    if done is not None:
        _say(f"{cfg.run_dir / 'result.json'} exists ({done.status}); nothing to do")
        return done
    from scaling.data import open_source
    from scaling.datamodule import plan_accumulation

    source = open_source(cfg.data.source)
    if cfg.data.blind:  # the input-free baseline: same model and data, images and instruction withheld
        from scaling.data.blind import BlindSource
        source = BlindSource(source)
    from scaling.model.family import dims_of, run_model

    model = run_model(cfg, dims_of(source))  # the one path from settings to a model (planner and calibration too)
    if cfg.hardware.fsdp_sharding == "hybrid" and cfg.hardware.strategy == "fsdp" and cfg.hardware.num_nodes < 2:
        _say("--hardware.fsdp-sharding hybrid on one node shards within it and replicates nothing (same as full)")
    if cfg.hardware.compile and cfg.hardware.strategy == "fsdp":
        raise BadInput("train: --hardware.compile is not supported with --hardware.strategy fsdp yet "
                       "(use ddp, or no compile)")
    n_params, n_nonembed, fps = model.n_params, model.n_params_nonembed, model.flops_per_sample
    world_size = cfg.hardware.devices * cfg.hardware.num_nodes
    micro, accumulate = plan_accumulation(cfg.optim.batch_size, world_size, cfg.hardware.micro_batch_size)
    cfg_path = cfg.run_dir / "config.yaml"
    saved = load_run_config(cfg_path) if cfg_path.exists() else None
    if saved is not None and (cfg.run_dir / "checkpoints" / "last.ckpt").exists() and not _same_run(saved, cfg):
        old = saved[1]  # as asked: the message names what the user changed
        _check_same(old, cfg.flat(), [k for k in old if k not in _RESUMABLE_CHANGES], str(cfg_path))
    ckpt_path, start_step = _resume_point(cfg, accumulate)
    if saved is not None and ckpt_path is None:
        ck = cfg.checkpointing
        every = f"{ck.every_steps} steps" + (f" and every {ck.every_minutes:g} minutes" if ck.every_minutes else "")
        _say(f"no checkpoint in {cfg.run_dir / 'checkpoints'} yet: starting from step 0 (one is saved every {every})")
    if _env_rank() == 0:
        resolved, requested = resolved_config(cfg, model, saved)
        resolved.save(cfg_path, requested=requested)

    indices = source.train_indices(cfg.data.samples, seed=cfg.seed)  # (D,) nested subset, epochs repeat
    if len(indices) != cfg.data.samples:
        raise RuntimeError(f"train_indices returned {len(indices)} indices for {cfg.data.samples} samples")
    n_train_frames = int(source.n_train_frames)
    if cfg.data.samples > n_train_frames:
        _say(f"D={cfg.data.samples} exceeds the {n_train_frames} unique training frames: "
             f"{cfg.data.samples / n_train_frames:.2f} epochs of repeated data")
    _say(f"{n_params:,} parameters ({n_nonembed:,} non-embedding), {cfg.steps} steps of {cfg.optim.batch_size} "
         f"samples, {fps * cfg.data.samples:.3g} FLOPs (family {model.family}, FLOPs per sample {model.flops_source})")

    from scaling.trainer import fit

    try:
        outcome = fit(cfg, source, model, indices, micro, accumulate, ckpt_path, start_step, t_start)
    except Exception:
        if _env_rank() == 0:
            _failed_result(cfg, model, world_size, t_start,
                           _loss_floor(source)).save(cfg.run_dir / "result.json")
        raise
    if outcome is None:
        return None
    result = run_result(cfg, model, source, indices, outcome, t_start)
    result.save(cfg.run_dir / "result.json")
    return result


def run_result(cfg: RunConfig, model, source, indices: np.ndarray, state, t_start: float, peak=None) -> RunResult:
    """The result of a run that trained (`state`: its `scaling.trainer.RunState`): completed or diverged,
    closed-loop success and the input probe where it completed, throughput, MFU. Used by `train` and by
    each member of an ensemble (`scaling.ensemble`), which measures the device's `peak` once for all."""
    n_train_frames = int(source.n_train_frames)
    n_params, n_nonembed, fps = model.n_params, model.n_params_nonembed, model.flops_per_sample
    status = "diverged" if state.diverged else "completed"
    n_seen = min(state.step * cfg.optim.batch_size, cfg.data.samples)
    from scaling.evaluation import evaluate_success, not_evaluated_reason

    success, per_task, note = None, None, not_evaluated_reason(source, cfg.evaluation.episodes)
    if status != "completed":
        note = f"not evaluated: the run {status}"
    elif note is None:
        scored = evaluate_success(state.eval_model, source, cfg.evaluation.episodes, seed=cfg.evaluation.seed,
                                  precision=state.precision)
        if scored is not None:
            success, per_task = scored["success_rate"], scored["per_task"]
    reliance = None
    if status == "completed" and cfg.validation.samples > 0 and state.eval_model is not None:
        from scaling.probe import input_reliance

        reliance = input_reliance(state.eval_model, source, cfg.validation.samples)
    sps = state.timed_steps * cfg.optim.batch_size / state.train_seconds if state.timed_steps else None
    if peak is None:
        peak = peak_flops_per_device(cfg, state.precision)  # hardware.Peak(value, dtype, source)
    result = RunResult(
        run_id=cfg.name, status=status, n_params=n_params, n_params_nonembed=n_nonembed,
        model=model.describe(), flops_per_sample=fps, flops=float(fps) * n_seen, n_samples=n_seen,
        n_unique_samples=int(np.unique(indices[:n_seen]).size), epochs=n_seen / max(n_train_frames, 1),
        lr=cfg.optim.lr, global_batch_size=cfg.optim.batch_size, precision=state.precision, world_size=state.world_size,
        val_loss=state.val_loss, val_loss_best=state.val_loss_best, train_loss=state.train_loss,
        action_mse=state.action_mse, success_rate=success, success_per_task=per_task,
        wall_seconds=state.wall_before + time.time() - t_start, samples_per_second=sps,
        mfu=(sps * fps / (peak.value * state.world_size)) if (sps and peak.value) else None, versions=_versions(),
        success_note=note, blind=cfg.data.blind, input_reliance=reliance,
        peak_flops=peak.value, peak_flops_source=peak.source, peak_flops_load=peak.load,
        peak_flops_age_s=peak.age_s, loss_floor=_loss_floor(source), seed=cfg.seed)
    return result


def _loss_floor(source) -> float | None:
    """The data's loss floor (`scaling.data.floor`) from its manifest; None when the source has none."""
    value = getattr(source, "loss_floor", None)
    return None if value is None else float(value)


def peak_flops_per_device(cfg: RunConfig, precision: str | None = None):
    """The MFU denominator of one device (`scaling.hardware.mfu_peak`): the peak FLOP/s of the fastest
    dtype it offers (the run's own `peak_flops` first, then $SCALING_PEAK_FLOPS, the vendor table for
    GPUs, a cached matmul probe at the run's thread count for CPUs). `precision` is not used: MFU
    divides by the device's best, whatever the run chose (docs/throughput.md)."""
    from scaling.hardware import mfu_peak

    return mfu_peak(cfg.hardware.accelerator, cfg.hardware.threads, override=cfg.hardware.peak_flops)


def _failed_result(cfg, model, world_size, t_start, loss_floor: float | None = None) -> RunResult:
    try:
        versions = _versions()
    except Exception:  # noqa: BLE001 - the failure report must not fail
        versions = {}
    return RunResult(
        run_id=cfg.name, status="failed", n_params=model.n_params, n_params_nonembed=model.n_params_nonembed,
        model=model.describe(), flops_per_sample=model.flops_per_sample, flops=0.0, n_samples=0, n_unique_samples=0,
        epochs=0.0, lr=cfg.optim.lr, global_batch_size=cfg.optim.batch_size, precision=cfg.model.precision,
        world_size=world_size, val_loss=None, val_loss_best=None, train_loss=None, action_mse=None,
        success_rate=None, wall_seconds=time.time() - t_start, samples_per_second=None, mfu=None,
        versions=versions, peak_flops=None, loss_floor=loss_floor, seed=cfg.seed)


__all__ = ["train", "run_result", "model_config", "resolved_config", "peak_flops_per_device"]
