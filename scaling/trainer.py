"""The Lightning side of a run: build the Trainer (precision, strategy, loggers) and fit.

Kept apart from `scaling.train` so that module stays about the run's bookkeeping; this one is the
only place that knows Lightning's knobs. Multi-node runs take their ranks from torchrun or SLURM
(Lightning's cluster environments); on CPU, DDP uses gloo.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch

from scaling.config import RunConfig

# Lightning's info lines and warnings that do not apply to this loop (batches are built
# vectorised in the main process; the loader is resumable through its own state).
_QUIET = (".*does not have many workers.*", ".*has `__len__` defined.*",
          ".*resuming from a checkpoint that ended before.*",
          ".*`training_step` returned `None`.*", ".*Checkpoint directory .* exists and is not empty.*",
          ".*The number of training batches .* is smaller than the logging interval.*",
          ".*is not a Tensor.*", ".*Found .* module.* in eval mode.*", ".*`isinstance\\(treespec, LeafSpec\\)`.*")


def _strategy(cfg: RunConfig, accelerator: str):
    if cfg.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        backend = "gloo" if accelerator == "cpu" else None
        return DDPStrategy(process_group_backend=backend, find_unused_parameters=False)
    if cfg.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from scaling.model.vla import Block

        # One FSDP unit per transformer block; full (unsharded) state dicts keep checkpoints
        # loadable with torch.load(weights_only=True) anywhere.
        return FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full")
    return "auto"


def _accelerator(cfg: RunConfig) -> str:
    if cfg.accelerator != "auto":
        return cfg.accelerator
    return "gpu" if torch.cuda.is_available() else "cpu"


def _loggers(cfg: RunConfig, resume_step: int | None):
    from scaling.metrics_csv import MetricsCSV

    loggers = [MetricsCSV(cfg.run_dir / "metrics.csv", resume_step=resume_step)]
    if cfg.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        mode = cfg.wandb_mode or os.environ.get("WANDB_MODE") or "offline"
        # A stable id per run directory, so a resumed run continues the same W&B run.
        run_id = "".join(c if c.isalnum() or c in "-_" else "-" for c in cfg.name)[:64]
        loggers.append(WandbLogger(project=cfg.wandb_project, name=cfg.name, id=run_id, save_dir=str(cfg.run_dir),
                                   group=cfg.wandb_group or os.environ.get("WANDB_RUN_GROUP"),
                                   job_type=cfg.wandb_job_type, mode=mode,
                                   resume="allow", config=cfg.to_dict(), log_model=False))
    return loggers


def fit(cfg: RunConfig, source, model_cfg, indices: np.ndarray, micro: int, accumulate: int,
        ckpt_path: str | None, start_step: int, t_start: float):
    """Run Lightning's fit; returns (module, trainer) on global rank 0, None on other ranks."""
    import lightning.pytorch as pl

    from scaling.checkpointing import Checkpointer
    from scaling.datamodule import ResumableLoader, TrainBatches, val_batches
    from scaling.module import StepEnd, VLAModule

    for pattern in _QUIET:
        warnings.filterwarnings("ignore", pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    accelerator = _accelerator(cfg)
    if accelerator == "gpu":
        torch.set_float32_matmul_precision("high")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif accelerator == "cpu" and cfg.devices > 1:  # CPU processes share the cores: no oversubscription
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.devices))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    checkpointer = Checkpointer(cfg.run_dir / "checkpoints", cfg.checkpoint_every, cfg.batch_size, cfg.samples,
                                cfg.checkpoint_at)
    trainer = pl.Trainer(
        accelerator=accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg, accelerator), precision=cfg.precision,
        max_steps=cfg.steps, max_epochs=1, accumulate_grad_batches=accumulate,
        gradient_clip_val=cfg.grad_clip or None, limit_val_batches=0, num_sanity_val_steps=0,
        logger=_loggers(cfg, start_step if ckpt_path else None), callbacks=[StepEnd(), checkpointer],
        enable_checkpointing=False, enable_progress_bar=cfg.progress_bar, enable_model_summary=False,
        use_distributed_sampler=False, default_root_dir=str(cfg.run_dir), log_every_n_steps=cfg.log_every,
    )
    if trainer.world_size != cfg.devices * cfg.num_nodes:
        raise RuntimeError(f"world size {trainer.world_size} != devices x nodes {cfg.devices * cfg.num_nodes}")
    rank, world = trainer.global_rank, trainer.world_size
    dataset = TrainBatches(source, indices, batch_size=cfg.batch_size, micro_batch_size=micro,
                           accumulate=accumulate, rank=rank, world_size=world, chunk=cfg.chunk)
    loader = ResumableLoader(dataset, lambda: trainer.global_step, num_workers=cfg.num_workers)
    val = val_batches(source, cfg.val_samples, max(micro, 64), rank, world, cfg.chunk)
    module = VLAModule(model_cfg, cfg, source.action_tokenizer, val)
    module.accumulate, module.t_start = accumulate, t_start
    trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path, weights_only=True)
    if not trainer.is_global_zero:
        return None
    return module, trainer
