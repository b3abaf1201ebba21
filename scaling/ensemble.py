"""`scaling train --seeds 0,1,2,3`: the seeds of one configuration, trained together in one process.

Each member is the run that ``scaling train --seed S --out OUT/seed-S`` would be:

- its own initialisation (the global seed set to S just before its model is built, as a solo run
  does) and its own random stream afterwards (a flow head's noise), swapped in around its work;
- its own data order, ``train_indices(D, seed=S)`` through the same `TrainBatches` (a resumed member
  starts at its checkpoint's step of the same sequence);
- its own AdamW state, its gradients clipped by its own norm, the configuration's schedule;
- its own RUN_DIR ``OUT/seed-S``: config.yaml (seed S), metrics.csv, result.json and, at the end,
  checkpoints/last.ckpt in the solo format, so the folder is the solo run's and a rerun of
  ``scaling train --config OUT/seed-S/config.yaml`` finds it finished.

Inside each optimizer step the members step one after another, each through the very operations of
its solo run, so its losses equal the solo run's to the last bit (tests/scaling/test_ensemble.py).
Batched weights (`torch.func.stack_module_state` with `vmap`) were measured slower on CPUs: at batch
32 a step's time grows with its samples, not with its operations, and vmap's batched matmuls and
grouped convolutions cost more than the loop saves (`benchmarks/bench_ensemble.py` records both).

Checkpoints: ``OUT/checkpoints/ensemble.ckpt`` holds every unfinished member at one step (one file,
written atomically, so members never disagree on where to resume; removed once every member it held
has its result, so a later ``--seeds`` may add members to the folder); stable-phase checkpoints
(``checkpoint_at``) go into each member's folder in the solo format, so solo runs and ensembles alike
branch from them (``--seeds`` with ``--branch-from .../seed-{seed}/checkpoints/stable-N.ckpt``). A member
that diverges writes its result.json at once and stops; the others go on. Running the same command
again resumes; members whose result.json is there are left alone.

One process on one device: DDP and FSDP are refused, and so is 16-mixed on GPUs (its loss scaler would
be shared by the members, so one member's overflow would skip the others' steps).
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.errors import BadInput
from scaling.config import RunConfig, load_run_config
from scaling.result import RunResult

ENSEMBLE_CKPT = "ensemble.ckpt"
"""The ensemble's checkpoint, in OUT/checkpoints/: {"global_step", "seeds", "members": {"S": one
member's checkpoint in the solo format (`scaling.checkpointing.checkpoint_payload`)}}."""
SEED_PLACEHOLDER = "{seed}"
"""Written in ``--branch-from`` with ``--seeds``: each member branches from its own checkpoint."""
_SEED = re.compile(r"^[0-9]+$")


def parse_seeds(text: Any) -> tuple[int, ...]:
    """``"0,1,2,3"`` -> (0, 1, 2, 3): distinct non-negative integers separated by commas, in that order.

    Raises:
        BadInput: anything else (empty, a sign, a fraction, a repeated seed).
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not all(_SEED.match(p) for p in parts):
        raise BadInput(f"train: --seeds takes distinct non-negative integers separated by commas "
                       f"(e.g. 0,1,2,3), got {text!r}")
    seeds = tuple(int(p) for p in parts)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise BadInput(f"train: --seeds {text}: seed {repeated[0]} is given twice (each member needs its own seed)")
    return seeds


def member_dir(out: str | Path, seed: int) -> Path:
    """A member's RUN_DIR under the ensemble's --out."""
    return Path(out) / f"seed-{seed}"


def member_config(cfg: RunConfig, seed: int) -> RunConfig:
    """The solo run a member is: `cfg` with seed `seed`, its own folder and run id, its own branch point."""
    changes: dict[str, Any] = {"seed": seed, "out": str(member_dir(cfg.out, seed)),
                               "run_id": f"{cfg.name}-seed-{seed}"}
    if cfg.branch_from:
        changes["branch_from"] = cfg.branch_from.replace(SEED_PLACEHOLDER, str(seed))
    return cfg.replace(**changes)


def check_supported(cfg: RunConfig) -> None:
    """Refuse what an ensemble cannot run, before anything slow happens.

    Raises:
        BadInput: more than one device or node, a DDP/FSDP strategy, W&B too old for one run per member,
            or --branch-from without ``{seed}``.
    """
    if cfg.devices * cfg.num_nodes > 1 or cfg.strategy in ("ddp", "fsdp"):
        raise BadInput(f"train: --seeds trains its members in one process on one device, so --devices "
                       f"{cfg.devices} --num-nodes {cfg.num_nodes} --strategy {cfg.strategy} is not supported "
                       "with it; run the seeds as separate runs, or drop those flags")
    if cfg.logger == "wandb" and _version("wandb") < (0, 19, 10):
        raise BadInput(f"train: --seeds with --logger wandb needs wandb >= 0.19.10 (one W&B run per member in one "
                       f"process), this is {'.'.join(map(str, _version('wandb'))) or 'not installed'}; "
                       "use --logger csv or upgrade wandb")
    if cfg.branch_from and SEED_PLACEHOLDER not in cfg.branch_from:
        raise BadInput(f"train: --branch-from {cfg.branch_from} with --seeds: write {SEED_PLACEHOLDER} where the "
                       "seed goes in the path (each member branches from its own checkpoint)")


def _version(package: str) -> tuple[int, ...]:
    """An installed package's release as numbers ((0, 19, 10)); () when it is not installed."""
    import importlib.metadata as md

    try:
        text = md.version(package)
    except md.PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


@dataclass
class _Member:
    """One member's run while the ensemble trains."""

    cfg: RunConfig
    indices: np.ndarray
    payload: dict | None = None  # the checkpoint it starts from (freed once loaded)
    state: Any = None  # scaling.trainer.RunState
    model: Any = None
    wrapped: Any = None
    optimizer: Any = None
    names: list = field(default_factory=list)
    loggers: Any = None
    batches: Any = None
    rng: tuple = ()
    loss_sum: Any = None
    loss_count: int = 0
    grad_norm: Any = None


def train_ensemble(cfg: RunConfig, seeds) -> list[RunResult]:
    """Train `cfg` once per seed in `seeds`, together; returns the members' results in that order.

    Writes OUT/seed-S/{config.yaml,metrics.csv,result.json,checkpoints/} per member and, until they all
    have their results, OUT/checkpoints/ensemble.ckpt. Running it again resumes (with the same unfinished
    seeds); finished members are returned as saved and new seeds start from step 0.

    Raises:
        BadInput: what `check_supported` refuses, 16-mixed on a GPU, anything `train` refuses, a checkpoint
            that does not hold the members asked for, members that would resume from different steps.
    """
    from scaling.train import _finished, _say

    t_start = time.time()
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise BadInput("train: --seeds needs at least one seed")
    check_supported(cfg)
    from scaling.trainer import _accelerator, resolved_precision

    if resolved_precision(cfg, _accelerator(cfg)) == "16-mixed":
        raise BadInput("train: --seeds with --precision 16-mixed on a GPU: the members would share one loss "
                       "scaler; use bf16-mixed or 32-true, or train the seeds as separate runs")
    configs = {s: member_config(cfg, s) for s in seeds}
    results = {s: _finished(c) for s, c in configs.items()}
    for s, done in results.items():
        if done is not None:
            _say(f"{configs[s].run_dir / 'result.json'} exists ({done.status}); nothing to do for seed {s}")
    todo = [configs[s] for s in seeds if results[s] is None]
    if todo:
        for member, result in _train_members(cfg, todo, t_start):
            results[member.cfg.seed] = result
    return [results[s] for s in seeds]


def _train_members(cfg: RunConfig, todo: list[RunConfig], t_start: float):
    """(member, result) of every member in `todo`, trained together (results saved as they come)."""
    from scaling.data import open_source
    from scaling.datamodule import plan_accumulation
    from scaling.model.family import dims_of, run_model
    from scaling.train import _failed_result, _loss_floor, _say, peak_flops_per_device, resolved_config, run_result

    source = open_source(cfg.data)
    if cfg.blind:
        from scaling.data.blind import BlindSource
        source = BlindSource(source)
    model = run_model(cfg, dims_of(source))
    micro, accumulate = plan_accumulation(cfg.batch_size, 1, cfg.micro_batch_size)
    ckpt_file = cfg.run_dir / "checkpoints" / ENSEMBLE_CKPT
    saved = _check_configs(todo, resuming=ckpt_file.exists())
    start_step, payloads = _resume_points(cfg, todo, accumulate, ckpt_file)
    for c in todo:
        resolved, requested = resolved_config(c, model, saved[c.seed])
        resolved.save(c.run_dir / "config.yaml", requested=requested)
    members = []
    for c in todo:
        indices = source.train_indices(c.samples, seed=c.seed)
        if len(indices) != c.samples:
            raise RuntimeError(f"train_indices returned {len(indices)} indices for {c.samples} samples")
        members.append(_Member(cfg=c, indices=indices, payload=payloads[c.seed]))
    n_train_frames = int(source.n_train_frames)
    if cfg.samples > n_train_frames:
        _say(f"D={cfg.samples} exceeds the {n_train_frames} unique training frames: "
             f"{cfg.samples / n_train_frames:.2f} epochs of repeated data")
    _say(f"{len(todo)} seeds ({', '.join(str(c.seed) for c in todo)}) together, each {model.n_params:,} parameters "
         f"({model.n_params_nonembed:,} non-embedding), {cfg.steps} steps of {cfg.batch_size} samples, "
         f"{model.flops_per_sample * cfg.samples:.3g} FLOPs (family {model.family})")
    finished: list = []
    peak: list = []  # the device's peak FLOP/s, measured once for every member

    def finish(member: _Member) -> None:
        if not peak:
            peak.append(peak_flops_per_device(cfg, member.state.precision))
        with _own_rng(member):  # evaluation and the probe draw from the member's stream, as in its solo run
            result = run_result(member.cfg, model, source, member.indices, member.state, t_start, peak[0])
        result.save(member.cfg.run_dir / "result.json")
        finished.append((member, result))

    try:
        _fit(cfg, source, model, members, micro, accumulate, start_step, t_start, ckpt_file, finish)
    except Exception:
        done = {m.cfg.seed for m, _ in finished}
        for m in members:
            if m.cfg.seed not in done:
                _failed_result(m.cfg, model, 1, t_start, _loss_floor(source)).save(m.cfg.run_dir / "result.json")
        raise
    # Every member it held has its result (and its own last.ckpt): a later --seeds may start new members here.
    ckpt_file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the folder goes too, where nothing else is in it
        ckpt_file.parent.rmdir()
    return finished


def _check_configs(todo: list[RunConfig], resuming: bool) -> dict[int, tuple | None]:
    """{seed: the member's config.yaml as saved, or None}; a member that resumes must be the same run.

    Raises:
        BadInput: a resumed member asks for another run than its config.yaml records (as `train` checks)."""
    from scaling.train import _RESUMABLE_CHANGES, _check_same, _same_run

    saved = {}
    for c in todo:
        path = c.run_dir / "config.yaml"
        saved[c.seed] = load_run_config(path) if path.exists() else None
        if saved[c.seed] is not None and resuming and not _same_run(saved[c.seed], c):
            old = saved[c.seed][1]
            _check_same(old, c.to_dict(), [k for k in old if k not in _RESUMABLE_CHANGES], str(path))
    return saved


def _resume_points(cfg: RunConfig, todo: list[RunConfig], accumulate: int,
                   ckpt_file: Path) -> tuple[int, dict[int, dict | None]]:
    """(the step every member starts at, {seed: the checkpoint dict it starts from, or None})."""
    import torch

    from scaling.train import _check_accumulation, _finished, _resume_point, _say

    if ckpt_file.exists():
        ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
        held = ckpt.get("members", {})
        missing = [c.seed for c in todo if str(c.seed) not in held]
        asked = {str(c.seed) for c in todo}
        # A member left out now would lose its progress at the next save: resume all or none.
        left_out = [s for s in held if s not in asked and _finished(member_config(cfg, int(s))) is None]
        if missing or left_out:
            raise BadInput(f"train: {ckpt_file} holds unfinished seeds "
                           f"{', '.join(s for s in held if s in asked or s in left_out) or 'none'} at one step; "
                           f"resume with exactly those (--seeds), or use a new --out")
        step = int(ckpt["global_step"])
        for c in todo:
            _check_accumulation(held[str(c.seed)].get("scaling", {}), accumulate, str(ckpt_file))
        _say(f"resuming from {ckpt_file} (step {step}/{cfg.steps}, seeds {', '.join(str(c.seed) for c in todo)})")
        return step, {c.seed: held[str(c.seed)] for c in todo}
    points = {c.seed: _resume_point(c, accumulate) for c in todo}  # a member's own last.ckpt, or its branch point
    steps = sorted({step for _, step in points.values()})
    if len(steps) > 1:
        where = ", ".join(f"seed {s} at step {step}" for s, (_, step) in points.items())
        raise BadInput(f"train: the members would start at different steps ({where}); members of an ensemble "
                       "share their steps: give checkpoints of one step, or train the seeds as separate runs")
    payloads = {s: (torch.load(path, map_location="cpu", weights_only=True) if path else None)
                for s, (path, _) in points.items()}
    return steps[0], payloads


@contextlib.contextmanager
def _own_rng(member: _Member):
    """Run with the member's own torch random stream (CPU, and CUDA where used); keep where it ends."""
    import torch

    cpu, cuda = member.rng
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)
    try:
        yield
    finally:
        member.rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if cuda is not None else None)


def _fit(cfg: RunConfig, source, resolved, members: list[_Member], micro: int, accumulate: int, start_step: int,
         t_start: float, ckpt_file: Path, finish) -> None:
    """The training loop of `scaling.trainer.fit`, per step over the members still training; `finish(member)`
    is called once per member, when it diverges or after the last step."""
    import torch
    from lightning.fabric.utilities.seed import seed_everything

    from scaling.checkpointing import checkpoint_payload, restore_checkpoint, save_checkpoint, write_checkpoint
    from scaling.datamodule import TrainBatches, loader, val_batches
    from scaling.schedules import lr_multiplier
    from scaling.trainer import (_STATE, RunState, _Loggers, _progress, group_plan, make_fabric, optimizer_groups,
                                 resolved_precision, run_threads, validate)

    fabric = make_fabric(cfg)
    accelerator = "gpu" if fabric.device.type == "cuda" else "cpu"
    precision = resolved_precision(cfg, accelerator)  # never 16-mixed here: `train_ensemble` refused it
    fabric.launch()
    if accelerator == "gpu":
        torch.set_float32_matmul_precision("high")
    threads = run_threads(cfg, accelerator)
    if threads:
        torch.set_num_threads(threads)
    if precision != cfg.precision:
        sys.stderr.write(f"scaling train: --precision {cfg.precision} runs as {precision} on {accelerator} "
                         f"(recorded so in result.json)\n")
    cuda = fabric.device.type == "cuda"
    resumed = start_step > 0 or any(m.payload is not None for m in members)
    val = None
    for m in members:
        # As a solo run: its seed, then (the first time) the validation data, then its model.
        seed_everything(m.cfg.seed, workers=True, verbose=False)
        if val is None:
            val = val_batches(source, cfg.val_samples, max(micro, 64), 0, 1, cfg.chunk)
        m.state = RunState(accumulate=accumulate, world_size=1, precision=precision, step=start_step)
        m.model = resolved.build()
        plan = group_plan(m.model, cfg)
        m.names = [n for g in plan for n in g["param_names"]]
        m.wrapped = fabric.setup_module(torch.compile(m.model) if cfg.compile else m.model)
        m.optimizer = fabric.setup_optimizers(torch.optim.AdamW(
            optimizer_groups(plan, m.wrapped), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
            weight_decay=cfg.weight_decay, fused=cuda or None))
        if m.payload is not None:
            meta = restore_checkpoint(m.payload, m.wrapped._forward_module, m.optimizer.optimizer, m.names)
            for k in _STATE:
                if k in meta:
                    setattr(m.state, k, meta[k])
            m.state.diverged = False  # a resumed run decides afresh
            m.state.wall_before = float(meta.get("wall_seconds", 0.0))
            m.state.accumulate = accumulate
            m.payload = None
        m.loggers = _Loggers(m.cfg, start_step if resumed else None, t_start, concurrent=True)
        m.batches = iter(loader(TrainBatches(source, m.indices, batch_size=cfg.batch_size, micro_batch_size=micro,
                                             accumulate=accumulate, rank=0, world_size=1, chunk=cfg.chunk,
                                             start_step=start_step), cfg.num_workers))
        m.loss_sum, m.loss_count = torch.zeros((), device=fabric.device), 0
        # Taken after the loader's iterator, which draws its base seed from the global stream, as in fit.
        m.rng = (torch.get_rng_state(), torch.cuda.get_rng_state() if cuda else None)

    steps = cfg.steps
    warmup = min(cfg.warmup_steps(), steps)
    every = round(cfg.val_every / cfg.batch_size) if cfg.val_every else math.ceil(steps / 10)
    val_every = max(1, every)
    keep_at = tuple(sorted(set(cfg.checkpoint_at)))

    def lr_at(step: int) -> float:
        return lr_multiplier(cfg.schedule, step, steps, warmup, cfg.min_lr_ratio, cfg.wsd_decay_frac)

    def samples(step: int) -> int:
        return min(step * cfg.batch_size, cfg.samples)

    def meta(m: _Member) -> dict:
        return {**{k: getattr(m.state, k) for k in _STATE},
                "wall_seconds": m.state.wall_before + time.time() - t_start,
                "run_config": m.cfg.to_dict(), "model_config": resolved.to_dict(), "precision": precision}

    def save_ensemble(step: int) -> None:
        write_checkpoint(ckpt_file, {
            "global_step": step, "seeds": [m.cfg.seed for m in active],
            "members": {str(m.cfg.seed): checkpoint_payload(m.wrapped._forward_module, m.optimizer.optimizer,
                                                            step, meta(m)) for m in active}})

    def save_member(m: _Member, path: Path) -> None:
        save_checkpoint(path, m.wrapped._forward_module, m.optimizer.optimizer, m.state.step, meta(m),
                        is_rank_zero=True, barrier=lambda: None)

    active = list(members)
    bar = _progress(cfg, steps, start_step)
    t_last, t_saved = None, time.time()
    for step in range(start_step, steps):
        mult = lr_at(step)
        for m in active:
            with _own_rng(m):
                for g in m.optimizer.param_groups:
                    g["lr"] = g["peak_lr"] * mult
                for _ in range(accumulate):
                    loss, _ = m.wrapped(fabric.to_device(next(m.batches)))
                    fabric.backward(loss / accumulate)
                    m.loss_sum += loss.detach().float()
                    m.loss_count += 1
                # Each member clips by its own norm, as its solo run does.
                m.grad_norm = fabric.clip_gradients(m.wrapped, m.optimizer, max_norm=cfg.grad_clip or math.inf,
                                                    error_if_nonfinite=False)
                m.optimizer.step()
                m.optimizer.zero_grad(set_to_none=True)
            m.state.step = step + 1
        done = step + 1
        now = time.perf_counter()
        if t_last is not None:  # a member's samples/s is the ensemble's pace: its batch per ensemble step
            for m in active:
                m.state.train_seconds += now - t_last
                m.state.timed_steps += 1
        last = done >= steps
        for m in active:
            if done % cfg.log_every == 0 or done == 1 or last:
                mean = float(m.loss_sum / max(m.loss_count, 1))
                m.loss_sum, m.loss_count = torch.zeros((), device=fabric.device), 0
                m.state.train_loss = mean
                if m.state.initial_loss is None:
                    m.state.initial_loss = mean
                if not math.isfinite(mean) or (done > warmup and mean > cfg.divergence_factor * m.state.initial_loss):
                    m.state.diverged = True
                metrics = {"train_loss": mean, "lr": cfg.lr * mult, "grad_norm": float(m.grad_norm),
                           "samples": samples(done)}
                if m.state.timed_steps:
                    metrics["samples_per_second"] = (m.state.timed_steps * cfg.batch_size
                                                     / max(m.state.train_seconds, 1e-9))
                m.loggers.log(metrics, done)
            if not m.state.diverged and (done % val_every == 0 or last):
                with _own_rng(m):
                    validate(fabric, m.wrapped, val, source.action_tokenizer, m.state)
                m.loggers.log({"val_loss": m.state.val_loss, "action_mse": m.state.action_mse}, done)
        for m in [m for m in active if m.state.diverged]:
            active.remove(m)
            m.loggers.close()
            finish(m)
        for m in active:
            for at in keep_at:
                if samples(step) < at <= samples(done):
                    save_member(m, m.cfg.run_dir / "checkpoints" / f"stable-{at}.ckpt")
        due = done % cfg.checkpoint_every == 0 or time.time() - t_saved >= 60 * cfg.checkpoint_minutes
        if active and due and not last:
            save_ensemble(done)
            t_saved = time.time()
        if bar is not None:
            if active:
                bar.set_postfix(loss=f"{np.mean([m.state.train_loss for m in active]):.4f}", refresh=False)
            bar.update(1)
        t_last = time.perf_counter()  # validation and checkpoint time fall outside every timed interval
        if not active:
            break
    if bar is not None:
        bar.close()
    if active:
        # The end as a checkpoint too: a failure while the members are evaluated resumes without training.
        save_ensemble(steps)
    for m in active:
        save_member(m, m.cfg.run_dir / "checkpoints" / "last.ckpt")
        m.state.eval_model = m.model
        m.loggers.close()
        finish(m)


__all__ = ["ENSEMBLE_CKPT", "SEED_PLACEHOLDER", "check_supported", "member_config", "member_dir", "parse_seeds",
           "train_ensemble"]
