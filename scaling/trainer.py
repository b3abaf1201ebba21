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
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scaling.config import RunConfig
from scaling.hardware import resolved_precision, run_threads
from scaling.schedules import lr_multiplier
from vla_core.errors import Stopped

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
    if cfg.hardware.accelerator != "auto":
        return cfg.hardware.accelerator
    return "gpu" if torch.cuda.is_available() else "cpu"


def resolved_hardware(cfg: RunConfig) -> dict[str, Any]:
    """What this machine makes of the run's hardware settings: the accelerator "auto" picks, the torch
    threads of each training process, the precision that runs (`resolved_precision`), by dotted field."""
    accelerator = _accelerator(cfg)
    return {"hardware.accelerator": accelerator,
            "hardware.threads": run_threads(cfg, accelerator) or torch.get_num_threads(),
            "model.precision": resolved_precision(cfg, accelerator)}


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
        # Fabric's autocast with torch's weight-cast cache on (`benchmarks/bench_autocast.py`); inputs as given.
        def convert_input(self, data):
            return data

    return _Autocast(precision, device)


def _strategy(cfg: RunConfig, accelerator: str):
    if cfg.hardware.strategy == "ddp":
        from lightning.fabric.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo" if accelerator == "cpu" else None,
                           find_unused_parameters=False)
    if cfg.hardware.strategy == "fsdp":
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

    return _FSDP(sharding_strategy=getattr(ShardingStrategy, SHARDING[cfg.hardware.fsdp_sharding]),
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
    lr, decay = cfg.optim.lr, cfg.optim.weight_decay
    groups = own(lr, decay) if callable(own) else generic_param_groups(model, lr, decay)
    names = {id(p): n for n, p in model.named_parameters()}
    return [{**{k: v for k, v in g.items() if k != "params"}, "param_names": [names[id(p)] for p in g["params"]]}
            for g in groups]


def optimizer_groups(plan: list[dict], wrapped: torch.nn.Module) -> list[dict]:
    """The planned groups with `wrapped`'s parameters, found by name; each keeps its `peak_lr`."""
    params = {clean_name(n): p for n, p in wrapped.named_parameters()}
    return [{**{k: v for k, v in g.items() if k != "param_names"},
             "params": [params[n] for n in g["param_names"]], "peak_lr": g["lr"]} for g in plan]


class _Loggers:
    """metrics.csv always; W&B (offline unless told otherwise) when cfg.logging.logger == "wandb". Rank 0 only.
    `concurrent`: one of several runs logging from this process (an ensemble's members), each its own W&B run."""

    def __init__(self, cfg: RunConfig, resume_step: int | None, t_start: float | None = None,
                 concurrent: bool = False) -> None:
        from scaling.metrics_csv import MetricsCSV

        self.csv = MetricsCSV(cfg.run_dir / "metrics.csv", resume_step=resume_step, t0=t_start)
        self.wandb = None
        if cfg.logging.logger == "wandb":
            import wandb

            # A stable id per run directory, so a resumed run continues the same W&B run.
            run_id = "".join(c if c.isalnum() or c in "-_" else "-" for c in cfg.name)[:64]
            self.wandb = wandb.init(
                project=cfg.logging.wandb_project, name=cfg.name, id=run_id, dir=str(cfg.run_dir), resume="allow",
                group=cfg.logging.wandb_group or os.environ.get("WANDB_RUN_GROUP"), job_type=cfg.logging.wandb_job_type,
                mode=cfg.logging.wandb_mode or os.environ.get("WANDB_MODE") or "offline", config=cfg.to_dict(),
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
    return Fabric(accelerator=accelerator, devices=cfg.hardware.devices, num_nodes=cfg.hardware.num_nodes,
                  strategy=_strategy(cfg, accelerator),
                  plugins=[_precision_plugin(precision, accelerator, cfg.hardware.strategy == "fsdp")])


@dataclass
class Run:
    """One model the loop trains: a run alone, or one member of an ensemble (`scaling.ensemble`)."""

    cfg: RunConfig
    state: RunState
    model: Any
    wrapped: Any
    optimizer: Any
    names: list
    loggers: Any
    """`_Loggers` on global rank 0, None elsewhere."""
    batches: Any
    rng: tuple | None = None
    """Its own torch random streams (CPU, CUDA) while other runs train beside it; None for a run alone."""
    loss_sum: Any = None
    loss_count: int = 0
    grad_norm: Any = None

    @property
    def inner(self):
        """The DDP/FSDP module (or the model): what state dicts are taken of."""
        return self.wrapped._forward_module


def launch(cfg: RunConfig):
    """(Fabric launched for the run's devices, the precision that runs): threads set, a precision that
    differs from the one asked for said once."""
    fabric = make_fabric(cfg)
    accelerator = "gpu" if fabric.device.type == "cuda" else "cpu"
    precision = resolved_precision(cfg, accelerator)
    fabric.launch()
    if fabric.world_size != cfg.hardware.devices * cfg.hardware.num_nodes:
        raise RuntimeError(f"world size {fabric.world_size} != devices x nodes "
                           f"{cfg.hardware.devices * cfg.hardware.num_nodes}")
    if accelerator == "gpu":
        torch.set_float32_matmul_precision("high")
    threads = run_threads(cfg, accelerator)
    if threads:
        torch.set_num_threads(threads)
    if fabric.is_global_zero and precision != cfg.model.precision:
        sys.stderr.write(f"scaling train: --model.precision {cfg.model.precision} runs as {precision} on {accelerator} "
                         f"(recorded so in result.json)\n")
    return fabric, precision


def start_run(fabric, cfg: RunConfig, resolved, source, indices: np.ndarray, micro: int, accumulate: int,
              start_step: int, precision: str, t_start: float, val: list | None, restore=None,
              concurrent: bool = False) -> tuple[Run, list]:
    """Build one run as its process would alone: its seed, then (the first time, `val` None) the validation
    data, then its model, optimizer, checkpoint (`restore(inner, optimizer, names)` -> its meta, or None),
    loggers and data order. Returns (the run, the validation data)."""
    from lightning.fabric.utilities.seed import seed_everything

    from scaling.datamodule import TrainBatches, loader, val_batches

    seed_everything(cfg.seed, workers=True, verbose=False)
    rank, world = fabric.global_rank, fabric.world_size
    if val is None:
        val = val_batches(source, cfg.validation.samples, max(micro, 64), rank, world, cfg.model.chunk)
    state = RunState(accumulate=accumulate, world_size=world, precision=precision, step=start_step)
    model = resolved.build()
    plan = group_plan(model, cfg)
    names = [n for g in plan for n in g["param_names"]]  # optimizer order
    wrapped = fabric.setup_module(torch.compile(model) if cfg.hardware.compile else model)
    fused = fabric.device.type == "cuda" and precision != "16-mixed"  # GradScaler cannot unscale fused AdamW
    optimizer = fabric.setup_optimizers(torch.optim.AdamW(
        optimizer_groups(plan, wrapped), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2),
        weight_decay=cfg.optim.weight_decay,
        fused=fused or None))
    meta = restore(wrapped._forward_module, optimizer.optimizer, names) if restore is not None else None
    if meta is not None:
        for k in _STATE:
            if k in meta:
                setattr(state, k, meta[k])
        state.diverged = False  # a resumed run decides afresh
        state.wall_before = float(meta.get("wall_seconds", 0.0))
        state.accumulate = accumulate
    loggers = (_Loggers(cfg, start_step if meta is not None or start_step > 0 else None, t_start, concurrent)
               if fabric.is_global_zero else None)
    batches = iter(loader(TrainBatches(source, indices, batch_size=cfg.optim.batch_size, micro_batch_size=micro,
                                       accumulate=accumulate, rank=rank, world_size=world, chunk=cfg.model.chunk,
                                       start_step=start_step), cfg.hardware.num_workers))
    run = Run(cfg=cfg, state=state, model=model, wrapped=wrapped, optimizer=optimizer, names=names, loggers=loggers,
              batches=batches, loss_sum=torch.zeros((), device=fabric.device))
    wrapped.train()
    if concurrent:  # taken after the loader's iterator, which draws its base seed from the global stream
        run.rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if fabric.device.type == "cuda" else None)
    return run, val


@contextmanager
def own_rng(run: Run):
    """Work with the run's own torch random streams (where it trains beside others); keep where they end."""
    if run.rng is None:
        yield
        return
    cpu, cuda = run.rng
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)
    try:
        yield
    finally:
        run.rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if cuda is not None else None)


def run_meta(run: Run, resolved, precision: str, t_start: float) -> dict:
    """What a checkpoint of `run` records beside its weights and optimizer state."""
    return {**{k: getattr(run.state, k) for k in _STATE},
            "wall_seconds": run.state.wall_before + time.time() - t_start,
            "run_config": run.cfg.to_dict(), "model_config": resolved.to_dict(), "precision": precision}


def save_run(fabric, run: Run, path, resolved, precision: str, t_start: float) -> None:
    """`run`'s checkpoint at `path` (collective under DDP/FSDP)."""
    from scaling.checkpointing import save_checkpoint

    save_checkpoint(path, run.inner, run.optimizer.optimizer, run.state.step,
                    run_meta(run, resolved, precision, t_start),
                    is_rank_zero=fabric.is_global_zero, barrier=fabric.barrier)


def _optimizer_step(fabric, run: Run, cfg: RunConfig, mult: float) -> None:
    """One optimizer step of `run`: lr, forward/backward over its micro-batches (gradients synced on the
    last one only), true (unscaled) gradients clipped by their norm over every shard, step."""
    for g in run.optimizer.param_groups:
        g["lr"] = g["peak_lr"] * mult
    accumulate = run.state.accumulate
    for a in range(accumulate):
        batch = fabric.to_device(next(run.batches))
        with fabric.no_backward_sync(run.wrapped, enabled=fabric.world_size > 1 and a < accumulate - 1):
            loss, _ = run.wrapped(batch)
            fabric.backward(loss / accumulate)
        run.loss_sum += loss.detach().float()
        run.loss_count += 1
    run.grad_norm = fabric.clip_gradients(run.wrapped, run.optimizer, max_norm=cfg.optim.grad_clip or math.inf,
                                          error_if_nonfinite=False)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)


def _log(fabric, run: Run, cfg: RunConfig, done: int, warmup: int, lr: float) -> None:
    """Mean train loss over ranks since the last log; the same divergence decision on every rank."""
    mean = float(fabric.all_reduce(run.loss_sum / max(run.loss_count, 1), reduce_op="mean"))
    run.loss_sum, run.loss_count = torch.zeros((), device=fabric.device), 0
    state = run.state
    state.train_loss = mean
    if state.initial_loss is None:
        state.initial_loss = mean  # loss of the first step
    if not math.isfinite(mean) or (done > warmup and mean > cfg.optim.divergence_factor * state.initial_loss):
        state.diverged = True
    if run.loggers is not None:
        metrics = {"train_loss": mean, "lr": lr, "grad_norm": float(run.grad_norm),
                   "samples": min(done * cfg.optim.batch_size, cfg.data.samples)}
        if state.timed_steps:
            metrics["samples_per_second"] = state.timed_steps * cfg.optim.batch_size / max(state.train_seconds, 1e-9)
        run.loggers.log(metrics, done)


@contextmanager
def _sigterm_saves():
    """While the loop runs, SIGTERM (a sweep worker stopping, SLURM preempting or cancelling the job) asks it to
    finish the step in progress, save its checkpoint and stop, instead of losing the steps since the last
    checkpoint; yields a function that says whether it was asked. A second SIGTERM ends the process at once,
    as does one outside the loop (the handler before it is put back). Off the main thread (no signals there),
    never asked."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    asked: list[int] = []

    def handler(signum, frame) -> None:
        if asked:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        asked.append(signum)

    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGTERM, before)


def train_loop(fabric, cfg: RunConfig, resolved, source, runs: list[Run], val: list, start_step: int, t_start: float,
               save_due=None, finish=None) -> None:
    """Train `runs` (one configuration; several: an ensemble's members, stepped one after another, each
    through the operations of its run alone) from `start_step` to the end, per optimizer step:

        learning rate -> forward/backward over the micro-batches -> clip -> step ->
        log (train loss, divergence) -> validate -> checkpoint

    A run that diverges stops there (`finish(run)`); the others go on. Checkpoints: stable-phase points
    (``checkpoint_at``) per run; every ``checkpoint_every`` steps or ``checkpoint_minutes``, `save_due(runs,
    step)` (default: each run's last.ckpt); at the end each run's last.ckpt, then `finish(run)`.

    SIGTERM while it runs: the step in progress ends, its checkpoint is saved (`save_due`), and `Stopped`
    is raised (`_sigterm_saves`).
    """
    with _sigterm_saves() as asked:
        _loop(fabric, cfg, resolved, source, runs, val, start_step, t_start, save_due, finish, asked)


def _loop(fabric, cfg: RunConfig, resolved, source, runs: list[Run], val: list, start_step: int, t_start: float,
          save_due, finish, asked) -> None:
    """The loop of `train_loop`; `asked()` says whether SIGTERM asked it to stop."""
    precision = runs[0].state.precision
    ckpt = {id(r): r.cfg.run_dir / "checkpoints" for r in runs}

    def save_last(active: list[Run], step: int) -> None:
        for r in active:
            save_run(fabric, r, ckpt[id(r)] / "last.ckpt", resolved, precision, t_start)

    save_due = save_due or save_last
    steps = cfg.steps
    warmup = min(cfg.warmup_steps, steps)
    every = cfg.validation.every_samples
    val_every = max(1, round(every / cfg.optim.batch_size) if every else math.ceil(steps / 10))
    keep_at = tuple(sorted(set(cfg.schedule.checkpoint_at_samples)))
    sched, ck, batch, samples = cfg.schedule, cfg.checkpointing, cfg.optim.batch_size, cfg.data.samples
    bar = _progress(cfg, steps, start_step) if fabric.is_global_zero else None
    active = list(runs)
    t_last, t_saved = None, time.time()
    for step in range(start_step, steps):
        mult = lr_multiplier(sched.name, step, steps, warmup, sched.min_lr_ratio, sched.wsd_decay_frac)
        for r in active:
            with own_rng(r):
                _optimizer_step(fabric, r, cfg, mult)
            r.state.step = step + 1
        done, now = step + 1, time.perf_counter()
        if t_last is not None:  # the first step of an invocation (warm-up, compile) is not timed
            for r in active:
                r.state.train_seconds += now - t_last
                r.state.timed_steps += 1
        last = done >= steps
        for r in active:
            if done % cfg.logging.every_steps == 0 or done == 1 or last:
                _log(fabric, r, cfg, done, warmup, cfg.optim.lr * mult)
            if not r.state.diverged and (done % val_every == 0 or last):
                with own_rng(r):
                    validate(fabric, r.wrapped, val, source.action_tokenizer, r.state)
                if r.loggers is not None:
                    r.loggers.log({"val_loss": r.state.val_loss, "action_mse": r.state.action_mse}, done)
        for r in [r for r in active if r.state.diverged]:
            active.remove(r)
            _close(r, finish)
        for r in active:  # stable-phase points for WSD branching
            for at in keep_at:
                if min(step * batch, samples) < at <= min(done * batch, samples):
                    save_run(fabric, r, ckpt[id(r)] / f"stable-{at}.ckpt", resolved, precision, t_start)
        due = done % ck.every_steps == 0 or time.time() - t_saved >= 60 * ck.every_minutes
        stop = asked()
        if fabric.world_size > 1:
            due, stop = fabric.broadcast((due, stop))  # clocks and signals differ per rank: rank 0 decides
        if active and (due or stop) and not last:
            save_due(active, done)
            t_saved = time.time()
        if active and stop and not last:
            if bar is not None:
                bar.close()
            raise Stopped(f"{cfg.run_dir}: SIGTERM at step {done} of {steps}; its checkpoint is saved there, "
                          "and the same command resumes it")
        _redraw(bar, active)
        t_last = time.perf_counter()  # validation and checkpoint time fall outside every timed interval
        if not active:
            break
    if bar is not None:
        bar.close()
    if active and save_due is not save_last:
        save_due(active, steps)  # the end as one checkpoint too: a failure while the runs are evaluated resumes
    save_last(active, steps)
    stop = asked()
    if fabric.world_size > 1:
        stop = fabric.broadcast(stop)
    if active and stop:  # asked during the last step: the end is saved, evaluation is left to the resume
        raise Stopped(f"{cfg.run_dir}: SIGTERM after the last step; its checkpoint is saved, and the same command "
                      "evaluates it")
    for r in active:
        # For closed-loop evaluation and the input-reliance probe (a gathered copy under FSDP).
        r.state.eval_model = _unsharded(cfg, r.model, r.inner, resolved)
        _close(r, finish)


def _close(run: Run, finish) -> None:
    if run.loggers is not None:
        run.loggers.close()
    if finish is not None:
        finish(run)


def _redraw(bar, active: list[Run]) -> None:
    """Advance the progress bar; when it redraws, show the mean train loss since the last log step (this
    rank's; one host sync per redraw, at most every mininterval)."""
    if bar is None:
        return
    if active and time.time() - bar.last_print_t >= bar.mininterval:
        means = [float(r.loss_sum) / r.loss_count if r.loss_count else r.state.train_loss for r in active]
        means = [m for m in means if m is not None]
        if means:
            bar.set_postfix(loss=f"{sum(means) / len(means):.4f}", refresh=False)
    bar.update(1)


def fit(cfg: RunConfig, source, resolved, indices: np.ndarray, micro: int, accumulate: int,
        ckpt_path: str | None, start_step: int, t_start: float) -> RunState | None:
    """Train, validate and checkpoint the model `resolved` (a `scaling.model.family.ResolvedModel`);
    returns the run's state on global rank 0, None on other ranks."""
    from scaling.checkpointing import load_checkpoint

    fabric, precision = launch(cfg)

    def restore(inner, optimizer, names):
        return load_checkpoint(ckpt_path, inner, optimizer, names) if ckpt_path else None

    run, val = start_run(fabric, cfg, resolved, source, indices, micro, accumulate, start_step, precision, t_start,
                         None, restore)
    train_loop(fabric, cfg, resolved, source, [run], val, start_step, t_start)
    return run.state if fabric.is_global_zero else None


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
    if cfg.hardware.strategy != "fsdp":
        return model
    from scaling.checkpointing import gather_weights

    weights = gather_weights(inner)
    copy = resolved.build()
    copy.load_state_dict(weights)
    return copy.to(next(model.parameters()).device)


def _progress(cfg: RunConfig, steps: int, start_step: int):
    if not cfg.logging.progress_bar:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, initial=start_step, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True,
                leave=True)


__all__ = ["Run", "RunState", "launch", "make_fabric", "fit", "own_rng", "run_meta", "save_run", "start_run",
           "train_loop", "validate", "group_plan", "optimizer_groups", "clean_name", "resolved_precision",
           "resolved_hardware", "run_threads"]
