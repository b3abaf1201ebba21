"""The training loop of one run, written out once on Lightning Fabric.

Fabric owns devices, processes, precision and sharding (its strategies, precision plugins and
`clip_gradients`); everything else is here, top to bottom, per optimizer step:

    learning rate -> forward/backward over `accumulate` micro-batches -> clip -> step ->
    log (train loss, divergence) -> validate -> checkpoint

Data: step s trains on the global batch ``indices[s*B:(s+1)*B]`` (`scaling.datamodule`), so a resumed
run sees exactly the samples it has not seen. Parameter groups (weight decay, muP rates) are decided by
parameter *name* before wrapping, so FSDP's flattened views cannot change them. Validation and
evaluation go through the wrapped module. Under FSDP, parameters and gradient reductions stay in
float32 and compute runs under autocast, as under DDP. Multi-node runs take their ranks from torchrun
or SLURM (Fabric's cluster environments); on CPU, DDP and FSDP use gloo.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scaling.config import RunConfig
from scaling.hardware import resolved_precision, run_threads
from scaling.schedules import lr_multiplier

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
SHARDING = {"full": "FULL_SHARD", "hybrid": "HYBRID_SHARD", "grad_op": "SHARD_GRAD_OP"}
# Run state carried in checkpoints (plain numbers only, so weights_only loading works).
_STATE = ("initial_loss", "val_loss", "val_loss_best", "action_mse", "train_loss", "diverged",
          "train_seconds", "timed_steps", "accumulate")


@dataclass
class RunState:
    """What the loop knows about the run; the first block is saved in checkpoints."""

    initial_loss: float | None = None
    val_loss: float | None = None
    val_loss_best: float | None = None
    action_mse: float | None = None
    train_loss: float | None = None
    diverged: bool = False
    train_seconds: float = 0.0  # wall time of timed training steps (validation/checkpoints excluded)
    timed_steps: int = 0
    accumulate: int = 1
    # Not saved as such:
    step: int = 0  # optimizer steps done
    wall_before: float = 0.0  # wall seconds of earlier (interrupted) invocations of this run
    world_size: int = 1
    precision: str = "32-true"  # the precision that actually ran
    eval_model: Any = field(default=None, repr=False)  # an unsharded copy of the model for closed-loop evaluation


def _accelerator(cfg: RunConfig) -> str:
    if cfg.accelerator != "auto":
        return cfg.accelerator
    return "gpu" if torch.cuda.is_available() else "cpu"


def resolved_hardware(cfg: RunConfig) -> dict[str, Any]:
    """What this machine makes of the run's hardware settings: the accelerator "auto" picks, the torch
    threads of each training process, the precision that runs (`resolved_precision`)."""
    accelerator = _accelerator(cfg)
    return {"accelerator": accelerator, "threads": run_threads(cfg, accelerator) or torch.get_num_threads(),
            "precision": resolved_precision(cfg, accelerator)}


def _precision_plugin(precision: str, accelerator: str, fsdp: bool):
    """Fabric's precision plugins, with the run's inputs left as they are (float targets stay float32)
    and, under FSDP, float32 parameters and gradient reductions (compute still runs under autocast)."""
    from lightning.fabric.plugins.precision import FSDPPrecision, MixedPrecision, Precision

    device = "cuda" if accelerator == "gpu" else "cpu"
    if fsdp:
        class _FSDPAutocast(FSDPPrecision):
            @property
            def mixed_precision_config(self):
                from torch.distributed.fsdp import MixedPrecision as FSDPMixed

                return FSDPMixed(param_dtype=torch.float32, reduce_dtype=torch.float32,
                                 buffer_dtype=torch.float32)

            def forward_context(self):
                dtype = AUTOCAST.get(self.precision)
                return torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)

            def convert_input(self, data):
                return data

        return _FSDPAutocast(precision)
    if precision == "32-true":
        return Precision()

    class _Autocast(MixedPrecision):
        # Fabric's autocast keeps its weight-cast cache on (the Trainer's turned it off on CPUs).
        def convert_input(self, data):
            return data

    return _Autocast(precision, device)


def _strategy(cfg: RunConfig, accelerator: str):
    if cfg.strategy == "ddp":
        from lightning.fabric.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo" if accelerator == "cpu" else None,
                           find_unused_parameters=False)
    if cfg.strategy == "fsdp":
        return _fsdp_strategy(cfg, accelerator)
    return "auto"


def _fsdp_strategy(cfg: RunConfig, accelerator: str):
    """Fabric's FSDPStrategy, one FSDP unit per block the model names in its ``fsdp_units`` (the VLA's
    transformer blocks; none named: the whole model is one unit); it wraps with an explicit device,
    which is what lets torch's FSDP run on CPU processes over gloo (Fabric refuses `"fsdp"` on CPUs)."""
    from lightning.fabric.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from scaling.model.measure import fsdp_unit_classes

    class _FSDP(FSDPStrategy):
        def setup_module(self, module):
            units = fsdp_unit_classes(module)
            wrapped = FullyShardedDataParallel(
                module, auto_wrap_policy=ModuleWrapPolicy(units) if units else None,
                mixed_precision=self.mixed_precision_config,
                sharding_strategy=self.sharding_strategy, device_id=self.root_device, use_orig_params=True,
                limit_all_gathers=True)
            return wrapped

    return _FSDP(sharding_strategy=getattr(ShardingStrategy, SHARDING[cfg.fsdp_sharding]),
                 process_group_backend="gloo" if accelerator == "cpu" else None, state_dict_type="full")


_WRAPPERS = ("_forward_module", "_fsdp_wrapped_module", "_orig_mod", "_checkpoint_wrapped_module")


def clean_name(name: str) -> str:
    """A parameter's name as in the bare model, whatever wrappers (Fabric, DDP, FSDP, compile) add.

    Whole name components only, and DDP's ``module`` only in front: a family's own submodule may be
    called ``encoder_module`` or ``module``."""
    parts = [p for p in name.split(".") if p not in _WRAPPERS]
    while len(parts) > 1 and parts[0] == "module":
        parts.pop(0)
    return ".".join(parts)


def group_plan(model: torch.nn.Module, cfg: RunConfig) -> list[dict]:
    """AdamW group settings and member names, decided on the bare `model` (call it before wrapping): the
    model's own ``param_groups(lr, weight_decay)`` (the VLA's muP rates), else weight decay on matrices
    outside embeddings (`scaling.model.measure.generic_param_groups`).

    FSDP (use_orig_params) turns every parameter into a 1-D view and renames the modules it wraps,
    so a decision by `p.dim()` after wrapping would put every matrix among the vectors (no weight
    decay, no muP rate).
    """
    from scaling.model.measure import generic_param_groups

    own = getattr(model, "param_groups", None)
    groups = own(cfg.lr, cfg.weight_decay) if callable(own) else generic_param_groups(model, cfg.lr, cfg.weight_decay)
    names = {id(p): n for n, p in model.named_parameters()}
    return [{**{k: v for k, v in g.items() if k != "params"}, "param_names": [names[id(p)] for p in g["params"]]}
            for g in groups]


def optimizer_groups(plan: list[dict], wrapped: torch.nn.Module) -> list[dict]:
    """The planned groups with `wrapped`'s parameters, found by name; each keeps its `peak_lr`."""
    params = {clean_name(n): p for n, p in wrapped.named_parameters()}
    return [{**{k: v for k, v in g.items() if k != "param_names"},
             "params": [params[n] for n in g["param_names"]], "peak_lr": g["lr"]} for g in plan]


class _Loggers:
    """metrics.csv always; W&B (offline unless told otherwise) when cfg.logger == "wandb". Rank 0 only.
    `concurrent`: one of several runs logging from this process (an ensemble's members), each its own W&B run."""

    def __init__(self, cfg: RunConfig, resume_step: int | None, t_start: float | None = None,
                 concurrent: bool = False) -> None:
        from scaling.metrics_csv import MetricsCSV

        self.csv = MetricsCSV(cfg.run_dir / "metrics.csv", resume_step=resume_step, t0=t_start)
        self.wandb = None
        if cfg.logger == "wandb":
            import wandb

            # A stable id per run directory, so a resumed run continues the same W&B run.
            run_id = "".join(c if c.isalnum() or c in "-_" else "-" for c in cfg.name)[:64]
            self.wandb = wandb.init(
                project=cfg.wandb_project, name=cfg.name, id=run_id, dir=str(cfg.run_dir), resume="allow",
                group=cfg.wandb_group or os.environ.get("WANDB_RUN_GROUP"), job_type=cfg.wandb_job_type,
                mode=cfg.wandb_mode or os.environ.get("WANDB_MODE") or "offline", config=cfg.to_dict(),
                **({"reinit": "create_new"} if concurrent else {}))

    def log(self, metrics: dict, step: int) -> None:
        clean = {k: v for k, v in metrics.items() if v is not None}
        self.csv.log_metrics(clean, step=step)
        if self.wandb is not None:
            self.wandb.log(clean, step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def make_fabric(cfg: RunConfig):
    """Fabric for the run's devices, strategy and precision (not launched yet). Ranks and world size
    come from the environment: torchrun's variables, SLURM's (srun), or Fabric's own launcher."""
    from lightning.fabric import Fabric

    accelerator = _accelerator(cfg)
    precision = resolved_precision(cfg, accelerator)
    return Fabric(accelerator=accelerator, devices=cfg.devices, num_nodes=cfg.num_nodes,
                  strategy=_strategy(cfg, accelerator),
                  plugins=[_precision_plugin(precision, accelerator, cfg.strategy == "fsdp")])


def fit(cfg: RunConfig, source, resolved, indices: np.ndarray, micro: int, accumulate: int,
        ckpt_path: str | None, start_step: int, t_start: float) -> RunState | None:
    """Train, validate and checkpoint the model `resolved` (a `scaling.model.family.ResolvedModel`);
    returns the run's state on global rank 0, None on other ranks."""
    from lightning.fabric.utilities.seed import seed_everything

    from scaling.checkpointing import load_checkpoint, save_checkpoint
    from scaling.datamodule import TrainBatches, loader, val_batches

    fabric = make_fabric(cfg)
    accelerator = "gpu" if fabric.device.type == "cuda" else "cpu"
    precision = resolved_precision(cfg, accelerator)
    fabric.launch()
    if fabric.world_size != cfg.devices * cfg.num_nodes:
        raise RuntimeError(f"world size {fabric.world_size} != devices x nodes {cfg.devices * cfg.num_nodes}")
    if accelerator == "gpu":
        torch.set_float32_matmul_precision("high")
    threads = run_threads(cfg, accelerator)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(cfg.seed, workers=True, verbose=False)
    rank, world, zero = fabric.global_rank, fabric.world_size, fabric.is_global_zero
    if zero and precision != cfg.precision:
        sys.stderr.write(f"scaling train: --precision {cfg.precision} runs as {precision} on {accelerator} "
                         f"(recorded so in result.json)\n")
    state = RunState(accumulate=accumulate, world_size=world, precision=precision, step=start_step)

    # Same construction order as before (seed, then validation data, then the model): same init.
    val = val_batches(source, cfg.val_samples, max(micro, 64), rank, world, cfg.chunk)
    model = resolved.build()
    plan = group_plan(model, cfg)
    names = [n for g in plan for n in g["param_names"]]  # optimizer order
    wrapped = fabric.setup_module(torch.compile(model) if cfg.compile else model)
    groups = optimizer_groups(plan, wrapped)
    fused = accelerator == "gpu" and precision != "16-mixed"  # GradScaler cannot unscale fused AdamW to clip
    optimizer = fabric.setup_optimizers(torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay, fused=fused or None))
    inner = wrapped._forward_module  # the DDP/FSDP module (or the model): what state dicts are taken of
    if ckpt_path:
        meta = load_checkpoint(ckpt_path, inner, optimizer.optimizer, names)
        for k in _STATE:
            if k in meta:
                setattr(state, k, meta[k])
        state.diverged = False  # a resumed run decides afresh
        state.wall_before = float(meta.get("wall_seconds", 0.0))
        state.accumulate = accumulate

    steps = cfg.steps
    warmup = min(cfg.warmup_steps(), steps)
    every = round(cfg.val_every / cfg.batch_size) if cfg.val_every else math.ceil(steps / 10)
    val_every = max(1, every)
    ckpt_dir = cfg.run_dir / "checkpoints"
    keep_at = tuple(sorted(set(cfg.checkpoint_at)))
    loggers = _Loggers(cfg, start_step if ckpt_path else None, t_start) if zero else None
    bar = _progress(cfg, steps, start_step) if zero else None

    def lr_at(step: int) -> float:
        return lr_multiplier(cfg.schedule, step, steps, warmup, cfg.min_lr_ratio, cfg.wsd_decay_frac)

    def samples(step: int) -> int:
        return min(step * cfg.batch_size, cfg.samples)

    def save(path) -> None:
        meta = {**{k: getattr(state, k) for k in _STATE},
                "wall_seconds": state.wall_before + time.time() - t_start,
                "run_config": cfg.to_dict(), "model_config": resolved.to_dict(), "precision": precision}
        save_checkpoint(path, inner, optimizer.optimizer, state.step, meta, is_rank_zero=zero,
                        barrier=fabric.barrier)

    batches = iter(loader(TrainBatches(source, indices, batch_size=cfg.batch_size, micro_batch_size=micro,
                                       accumulate=accumulate, rank=rank, world_size=world, chunk=cfg.chunk,
                                       start_step=start_step), cfg.num_workers))
    loss_sum, loss_count, t_last, t_saved = torch.zeros((), device=fabric.device), 0, None, time.time()
    wrapped.train()
    for step in range(start_step, steps):
        # 1. learning rate: a pure function of the step (scaling.schedules)
        mult = lr_at(step)
        for g in optimizer.param_groups:
            g["lr"] = g["peak_lr"] * mult
        # 2. forward/backward over this rank's micro-batches; gradients sync on the last one only
        for a in range(accumulate):
            batch = fabric.to_device(next(batches))
            with fabric.no_backward_sync(wrapped, enabled=world > 1 and a < accumulate - 1):
                loss, _ = wrapped(batch)
                fabric.backward(loss / accumulate)
            loss_sum += loss.detach().float()
            loss_count += 1
        # 3. clip true (unscaled) gradients; the norm is taken before clipping, over every shard
        grad_norm = fabric.clip_gradients(wrapped, optimizer, max_norm=cfg.grad_clip or math.inf,
                                          error_if_nonfinite=False)
        # 4. step
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step = done = step + 1
        now = time.perf_counter()
        if t_last is not None:  # the first step of an invocation (warm-up, compile) is not timed
            state.train_seconds += now - t_last
            state.timed_steps += 1
        last = done >= steps
        # 5. log: mean train loss over ranks; the same divergence decision on every rank
        if done % cfg.log_every == 0 or done == 1 or last:
            mean = float(fabric.all_reduce(loss_sum / max(loss_count, 1), reduce_op="mean"))
            loss_sum, loss_count = torch.zeros((), device=fabric.device), 0
            state.train_loss = mean
            if state.initial_loss is None:
                state.initial_loss = mean  # loss of the first step
            limit = cfg.divergence_factor * state.initial_loss
            if not math.isfinite(mean) or (done > warmup and mean > limit):
                state.diverged = True
            if zero:
                metrics = {"train_loss": mean, "lr": cfg.lr * lr_at(step), "grad_norm": float(grad_norm),
                           "samples": samples(done)}
                if state.timed_steps:
                    metrics["samples_per_second"] = state.timed_steps * cfg.batch_size / max(state.train_seconds,
                                                                                               1e-9)
                loggers.log(metrics, done)
                if bar is not None:
                    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
        # 6. validate
        if not state.diverged and (done % val_every == 0 or last):
            validate(fabric, wrapped, val, source.action_tokenizer, state)
            if zero:
                loggers.log({"val_loss": state.val_loss, "action_mse": state.action_mse}, done)
        # 7. checkpoint: stable-phase points for WSD branching; last.ckpt every N steps or M minutes
        if not state.diverged:
            for at in keep_at:
                if samples(step) < at <= samples(done):
                    save(ckpt_dir / f"stable-{at}.ckpt")
            due = done % cfg.checkpoint_every == 0 or time.time() - t_saved >= 60 * cfg.checkpoint_minutes
            if world > 1:
                due = fabric.broadcast(due)  # clocks differ per rank: rank 0 decides
            if due and not last:
                save(ckpt_dir / "last.ckpt")
                t_saved = time.time()
        if bar is not None:
            if loss_count and time.time() - bar.last_print_t >= bar.mininterval:
                # The bar redraws now: show the mean loss since the last log step (this rank's), not the
                # last logged one. One host sync per redraw (at most every mininterval), not per step.
                bar.set_postfix(loss=f"{float(loss_sum) / loss_count:.4f}", refresh=False)
            bar.update(1)
        t_last = time.perf_counter()  # validation and checkpoint time fall outside every timed interval
        if state.diverged:
            break
    if bar is not None:
        bar.close()
    if not state.diverged:
        save(ckpt_dir / "last.ckpt")
        # For closed-loop evaluation and the input-reliance probe (a gathered copy under FSDP).
        state.eval_model = _unsharded(cfg, model, inner, resolved)
    if zero:
        loggers.close()
    return state if zero else None


@torch.no_grad()
def validate(fabric, wrapped, val_data: list, action_tokenizer, state: RunState) -> None:
    """Held-out loss (nats per action dim for the discrete head) and raw-unit action MSE, over all ranks.

    Every forward pass goes through the wrapped module (FSDP gathers its shards there).
    """
    if not val_data:
        return
    wrapped.eval()
    dev = fabric.device
    totals = torch.zeros(4, device=dev, dtype=torch.float64)  # loss*n, sq_err sum, n, n_err
    for batch in val_data:
        w = float(batch["_weight"])
        b = fabric.to_device({k: v for k, v in batch.items() if k != "_weight"})
        loss, _ = wrapped(b)
        pred = wrapped(b, predict=True) if action_tokenizer is not None else None  # (b, chunk, A) in [-1, 1]
        if w == 0:
            continue  # padding batch: ran only so every rank does the same collectives
        totals[0] += float(loss) * w
        totals[2] += w
        if pred is not None:
            raw = action_tokenizer.unnormalize(pred.float().cpu().numpy())
            err = (raw - b["actions_raw"].float().cpu().numpy()) ** 2
            totals[1] += float(err.sum())
            totals[3] += err.size
    totals = fabric.all_reduce(totals, reduce_op="sum")
    wrapped.train()
    if float(totals[2]) > 0:
        state.val_loss = float(totals[0] / totals[2])
        if math.isfinite(state.val_loss) and (state.val_loss_best is None or state.val_loss < state.val_loss_best):
            state.val_loss_best = state.val_loss
    if float(totals[3]) > 0:
        state.action_mse = float(totals[1] / totals[3])


def _unsharded(cfg: RunConfig, model, inner, resolved):
    """The trained model, plain, with full weights (a gathered copy under FSDP; collective)."""
    if cfg.strategy != "fsdp":
        return model
    from scaling.checkpointing import gather_weights

    weights = gather_weights(inner)
    copy = resolved.build()
    copy.load_state_dict(weights)
    return copy.to(next(model.parameters()).device)


def _progress(cfg: RunConfig, steps: int, start_step: int):
    if not cfg.progress_bar:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, initial=start_step, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True,
                leave=True)


__all__ = ["RunState", "make_fabric", "fit", "validate", "group_plan", "optimizer_groups", "clean_name", "resolved_precision", "resolved_hardware", "run_threads"]
