"""`VLAModule`: the LightningModule that trains one `VLA` on exactly the run's steps.

Per optimizer step: the learning rate comes from `scaling.schedules` (a pure function of the step),
the global gradient norm is clipped and kept, and every `log_every` steps the mean training loss,
lr and grad-norm are written to the loggers. Validation (held-out loss and de-normalised action MSE)
runs inside the training loop every `val_every` samples and at the last step, so it needs no
Lightning validation loop and works the same under DDP and FSDP. Divergence (NaN/inf, or loss above
`divergence_factor` x the initial loss after warmup) stops the trainer cleanly.
"""

from __future__ import annotations

import math
import time
import lightning.pytorch as pl
import torch

from scaling.config import RunConfig
from scaling.schedules import lr_multiplier


class VLAModule(pl.LightningModule):
    """Wraps `scaling.model.VLA` with AdamW, the run's schedule, validation and divergence checks.

    Args:
        model_cfg: the `ModelConfig` to build.
        cfg: the run's `RunConfig`.
        action_tokenizer: the dataset's ActionTokenizer (`unnormalize` for action MSE in raw units).
        val_data: this rank's validation micro-batches (`scaling.datamodule.val_batches`).
    """

    def __init__(self, model_cfg, cfg: RunConfig, action_tokenizer=None, val_data: list | None = None) -> None:
        super().__init__()
        from scaling.model import VLA

        self.model_cfg, self.cfg = model_cfg, cfg
        self.model = VLA(model_cfg)
        self.action_tokenizer = action_tokenizer
        self.val_data = val_data or []
        self.total_steps = cfg.steps
        self.warmup_steps = min(cfg.warmup_steps(), self.total_steps)
        every = round(cfg.val_every / cfg.batch_size) if cfg.val_every else math.ceil(self.total_steps / 10)
        self.val_every_steps = max(1, every)
        # Run state, saved in checkpoints (plain numbers only, so weights_only loading works).
        self.initial_loss: float | None = None
        self.val_loss: float | None = None
        self.val_loss_best: float | None = None
        self.action_mse: float | None = None
        self.train_loss: float | None = None
        self.diverged = False
        self.accumulate = 1  # micro-batches per optimizer step on one rank (set by the trainer)
        self.wall_before = 0.0  # wall seconds spent by earlier (interrupted) invocations of this run
        self.t_start = time.time()  # start of this invocation
        self.train_seconds = 0.0  # wall time of timed training steps (validation/checkpoints excluded)
        self.timed_steps = 0
        # Per-process bookkeeping.
        self.excluded_seconds = 0.0  # time spent in validation / checkpoints since the last step end
        self._last_end: float | None = None
        self._seen_step = -1
        self._loss_sum = torch.zeros(())
        self._loss_count = 0
        self._grad_norm: torch.Tensor | None = None

    # ---- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self):
        from scaling.model import param_groups

        groups = param_groups(self.model, self.cfg.lr, self.cfg.weight_decay)
        for g in groups:
            g["peak_lr"] = g["lr"]  # schedule multiplies this per step
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(self.cfg.beta1, self.cfg.beta2),
                                 weight_decay=self.cfg.weight_decay, fused=fused or None)

    def lr_at(self, step: int) -> float:
        """Multiplier of the peak lr at optimizer step `step` (0-based)."""
        c = self.cfg
        return lr_multiplier(c.schedule, step, self.total_steps, self.warmup_steps, c.min_lr_ratio,
                             c.wsd_decay_frac)

    def on_before_optimizer_step(self, optimizer) -> None:
        mult = self.lr_at(self.trainer.global_step)
        for g in optimizer.param_groups:
            g["lr"] = g.get("peak_lr", g["lr"]) * mult

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip = self.cfg.grad_clip or math.inf
        wrapped = self.trainer.strategy.model
        if hasattr(wrapped, "clip_grad_norm_"):  # FSDP: the norm needs every shard
            self._grad_norm = wrapped.clip_grad_norm_(clip)
        else:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            self._grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)

    def on_train_start(self) -> None:
        self._seen_step = self.trainer.global_step  # > 0 when resuming

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self.model(batch)
        self._loss_sum = self._loss_sum.to(loss.device) + loss.detach().float()
        self._loss_count += 1
        return loss

    # ---- per-step bookkeeping: logging, validation, divergence, throughput ------------------
    def after_batch(self) -> None:
        """Called by `StepEnd` after each micro-batch, before any checkpoint of that step is saved
        (so a checkpoint never holds a step whose metrics were not yet written)."""
        step = self.trainer.global_step  # optimizer steps done
        if step == self._seen_step:
            return  # mid-accumulation: no optimizer step on this micro-batch
        self._seen_step = step
        now = time.perf_counter()
        if self._last_end is not None:
            self.train_seconds += now - self._last_end - self.excluded_seconds
            self.timed_steps += 1
        self.excluded_seconds = 0.0
        last = step >= self.total_steps
        if step % self.cfg.log_every == 0 or step == 1 or last:
            self._log_train(step)
        if not self.diverged and (step % self.val_every_steps == 0 or last):
            self.validate()
            self._log({"val_loss": self.val_loss, "action_mse": self.action_mse}, step)
        self._last_end = time.perf_counter()  # validation time falls outside every timed interval

    def _log_train(self, step: int) -> None:
        mean = self._loss_sum / max(self._loss_count, 1)
        mean = self.trainer.strategy.reduce(mean, reduce_op="mean")  # same decision on every rank
        value = float(mean)
        self._loss_sum, self._loss_count = torch.zeros((), device=mean.device), 0
        self.train_loss = value
        if self.initial_loss is None:
            self.initial_loss = value  # loss of the first step (mean over ranks)
        limit = self.cfg.divergence_factor * (self.initial_loss or math.inf)
        if not math.isfinite(value) or (step > self.warmup_steps and value > limit):
            self.diverged = True
            self.trainer.should_stop = True
        done = min(step * self.cfg.batch_size, self.cfg.samples)
        metrics = {"train_loss": value, "lr": self.cfg.lr * self.lr_at(max(step - 1, 0)),
                   "grad_norm": float(self._grad_norm) if self._grad_norm is not None else None,
                   "samples": done}
        if self.timed_steps:
            metrics["samples_per_second"] = self.timed_steps * self.cfg.batch_size / max(self.train_seconds, 1e-9)
        self._log(metrics, step)
        self.log("loss", value, prog_bar=True, logger=False, on_step=True, rank_zero_only=True)

    def _log(self, metrics: dict[str, float | None], step: int) -> None:
        clean = {k: v for k, v in metrics.items() if v is not None}
        if self.trainer.is_global_zero:
            for lg in self.loggers:
                lg.log_metrics(clean, step=step)

    @torch.no_grad()
    def validate(self) -> None:
        """Held-out loss (nats per action dim for the discrete head) and raw-unit action MSE."""
        if not self.val_data:
            return
        was_training = self.model.training
        self.model.eval()
        dev = self.device
        totals = torch.zeros(3, device=dev, dtype=torch.float64)  # loss*n, sq_err sum, n
        n_err = torch.zeros((), device=dev, dtype=torch.float64)
        with self.trainer.precision_plugin.forward_context():
            for batch in self.val_data:
                w = float(batch["_weight"])
                b = {k: v.to(dev, non_blocking=True) for k, v in batch.items() if k != "_weight"}
                loss, _ = self.model.loss(b)
                if w == 0:
                    continue  # padding batch: ran only so every rank does the same collectives
                totals[0] += float(loss) * w
                totals[2] += w
                if self.action_tokenizer is not None:
                    pred = self.model.predict(b).float().cpu().numpy()  # (b, chunk, A) in [-1, 1]
                    raw = self.action_tokenizer.unnormalize(pred)
                    err = (raw - b["actions_raw"].float().cpu().numpy()) ** 2
                    totals[1] += float(err.sum())
                    n_err += err.size
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        n_err = self.trainer.strategy.reduce(n_err, reduce_op="sum")
        if was_training:
            self.model.train()
        if float(totals[2]) > 0:
            self.val_loss = float(totals[0] / totals[2])
            if math.isfinite(self.val_loss) and (self.val_loss_best is None or self.val_loss < self.val_loss_best):
                self.val_loss_best = self.val_loss
        if float(n_err) > 0:
            self.action_mse = float(totals[1] / n_err)

    # ---- checkpoint state ---------------------------------------------------------------------
    _STATE = ("initial_loss", "val_loss", "val_loss_best", "action_mse", "train_loss", "diverged",
              "train_seconds", "timed_steps", "accumulate")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["scaling"] = {
            **{k: getattr(self, k) for k in self._STATE},
            "wall_seconds": self.wall_before + time.time() - self.t_start,
            "run_config": self.cfg.to_dict(),
            "model_config": self.model_cfg.to_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("scaling", {})
        for k in self._STATE:
            if k in state:
                setattr(self, k, state[k])
        self.diverged = False  # a resumed run decides afresh
        self.wall_before = float(state.get("wall_seconds", 0.0))


class StepEnd(pl.Callback):
    """Runs `VLAModule.after_batch`; listed before the Checkpointer so metrics precede the save."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pl_module.after_batch()


def peak_flops_per_device(cfg: RunConfig) -> float | None:
    """Dense bf16 peak FLOP/s of one device: config, $SCALING_PEAK_FLOPS, or a table of known GPUs."""
    import os

    if cfg.peak_flops:
        return float(cfg.peak_flops)
    if os.environ.get("SCALING_PEAK_FLOPS"):
        return float(os.environ["SCALING_PEAK_FLOPS"])
    if not torch.cuda.is_available() or cfg.accelerator == "cpu":
        return None
    name = torch.cuda.get_device_name(0).upper()
    # Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets.
    table = [("H200", 989e12), ("H100 PCIE", 756e12), ("H100", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("A10G", 70e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12),
             ("V100", 125e12), ("4090", 165e12), ("3090", 71e12)]
    for key, value in table:
        if key in name:
            return value
    return None


__all__ = ["StepEnd", "VLAModule", "peak_flops_per_device"]
