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

``scaling train --members A.yaml,B.yaml --out DIR`` trains whole run configurations together instead, each
in the folder its file names (one configuration apart from `MEMBER_FIELDS`), the ensemble's checkpoint in
DIR: how a sweep's ``seeds_together`` runs the seeds of one point (`sweeps.worker.run_group`).

One process on one device: DDP and FSDP are refused, and so is 16-mixed on GPUs (its loss scaler would
be shared by the members, so one member's overflow would skip the others' steps).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaling.config import RunConfig, load_run_config
from scaling.result import RunResult
from vla_core.errors import BadInput

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
    if cfg.schedule.branch_from:
        changes["schedule.branch_from"] = cfg.schedule.branch_from.replace(SEED_PLACEHOLDER, str(seed))
    return cfg.replace(**changes)


def check_supported(cfg: RunConfig) -> None:
    """Refuse what an ensemble cannot run, before anything slow happens.

    Raises:
        BadInput: more than one device or node, a DDP/FSDP strategy, W&B too old for one run per member,
            or --branch-from without ``{seed}``.
    """
    hw = cfg.hardware
    if hw.devices * hw.num_nodes > 1 or hw.strategy in ("ddp", "fsdp"):
        raise BadInput(f"train: --seeds trains its members in one process on one device, so --hardware.devices "
                       f"{hw.devices} --hardware.num-nodes {hw.num_nodes} --hardware.strategy {hw.strategy} is not "
                       "supported with it; run the seeds as separate runs, or drop those flags")
    if cfg.logging.logger == "wandb" and _version("wandb") < (0, 19, 10):
        raise BadInput(f"train: --seeds with --logging.logger wandb needs wandb >= 0.19.10 (one W&B run per "
                       f"member in one process), this is {'.'.join(map(str, _version('wandb'))) or 'not installed'}; "
                       "use --logging.logger csv or upgrade wandb")
    if cfg.schedule.branch_from and SEED_PLACEHOLDER not in cfg.schedule.branch_from:
        raise BadInput(f"train: --schedule.branch-from {cfg.schedule.branch_from} with --seeds: write "
                       f"{SEED_PLACEHOLDER} where the seed goes in the path (each member branches from its own "
                       "checkpoint)")


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
    run: Any = None  # scaling.trainer.Run


def train_ensemble(cfg: RunConfig, seeds) -> list[RunResult]:
    """Train `cfg` once per seed in `seeds`, together; returns the members' results in that order.

    Writes OUT/seed-S/{config.yaml,metrics.csv,result.json,checkpoints/} per member and, until they all
    have their results, OUT/checkpoints/ensemble.ckpt. Running it again resumes (with the same unfinished
    seeds); finished members are returned as saved and new seeds start from step 0.

    Raises:
        BadInput: what `check_supported` refuses, 16-mixed on a GPU, anything `train` refuses, a checkpoint
            that does not hold the members asked for, members that would resume from different steps.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise BadInput("train: --seeds needs at least one seed")
    check_supported(cfg)
    return train_members(cfg, [member_config(cfg, s) for s in seeds])


MEMBER_FIELDS = ("seed", "out", "run_id", "schedule.branch_from")
"""The settings in which the members of one ensemble may differ: everything else is one configuration."""


def members_from_files(paths, out: str | Path) -> tuple[RunConfig, list[RunConfig]]:
    """(the ensemble's config, its members) from one config file per member (`scaling train --members`).

    Each file is a whole run's configuration (a sweep writes one per point, RUN_DIR/run.yaml); the members
    must be one configuration apart from `MEMBER_FIELDS`, each in its own folder. The ensemble's config is
    the first member's with ``out`` set to `out`, where the ensemble's own checkpoint goes.

    Raises:
        BadInput: an unreadable file, members that differ in another setting, two members with one seed
            or one folder.
    """
    from scaling.config import resolve

    configs = [resolve(p, {}) for p in paths]
    if not configs:
        raise BadInput("train: --members needs at least one config file")
    first = configs[0].flat()
    for path, c in zip(paths[1:], configs[1:]):
        other = c.flat()
        differ = sorted(k for k in first if k not in MEMBER_FIELDS and first[k] != other.get(k))
        if differ:
            raise BadInput(f"train: --members: {path} differs from {paths[0]} in {', '.join(differ)}; the members of "
                           f"an ensemble are one configuration apart from {', '.join(MEMBER_FIELDS)}")
    for what, values in (("seed", [c.seed for c in configs]), ("out", [str(c.run_dir.resolve()) for c in configs])):
        if len(set(values)) < len(values):
            raise BadInput(f"train: --members: two members have one {what} ({values}); each needs its own")
    cfg = configs[0].replace(out=str(out))
    check_supported(cfg.replace(**{"schedule.branch_from": None}))
    if Path(out).resolve() in {c.run_dir.resolve() for c in configs}:
        raise BadInput(f"train: --members --out {out} is a member's folder; give the ensemble its own")
    return cfg, configs


def train_members(cfg: RunConfig, configs: list[RunConfig]) -> list[RunResult]:
    """Train the member runs `configs` together (one configuration apart from `MEMBER_FIELDS`; `cfg` is the
    configuration, its OUT holds the ensemble's checkpoint); returns their results in that order.

    Each member writes its own RUN_DIR as its solo run would. Running it again resumes; finished members
    are returned as saved.

    Raises:
        BadInput: as `train_ensemble`.
    """
    from scaling.train import _finished, _say

    t_start = time.time()
    check_supported(cfg.replace(**{"schedule.branch_from": None}))
    from scaling.trainer import _accelerator, resolved_precision

    if resolved_precision(cfg, _accelerator(cfg)) == "16-mixed":
        raise BadInput("train: --seeds with --precision 16-mixed on a GPU: the members would share one loss "
                       "scaler; use bf16-mixed or 32-true, or train the seeds as separate runs")
    seeds = tuple(c.seed for c in configs)
    configs = {c.seed: c for c in configs}
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

    source = open_source(cfg.data.source)
    if cfg.data.blind:
        from scaling.data.blind import BlindSource
        source = BlindSource(source)
    model = run_model(cfg, dims_of(source))
    micro, accumulate = plan_accumulation(cfg.optim.batch_size, 1, cfg.hardware.micro_batch_size)
    ckpt_file = cfg.run_dir / "checkpoints" / ENSEMBLE_CKPT
    saved = _check_configs(todo, resuming=ckpt_file.exists())
    start_step, payloads = _resume_points(cfg, todo, accumulate, ckpt_file)
    for c in todo:
        resolved, requested = resolved_config(c, model, saved[c.seed])
        resolved.save(c.run_dir / "config.yaml", requested=requested)
    members = []
    for c in todo:
        indices = source.train_indices(c.data.samples, seed=c.seed)
        if len(indices) != c.data.samples:
            raise RuntimeError(f"train_indices returned {len(indices)} indices for {c.data.samples} samples")
        members.append(_Member(cfg=c, indices=indices, payload=payloads[c.seed]))
    n_train_frames = int(source.n_train_frames)
    if cfg.data.samples > n_train_frames:
        _say(f"D={cfg.data.samples} exceeds the {n_train_frames} unique training frames: "
             f"{cfg.data.samples / n_train_frames:.2f} epochs of repeated data")
    _say(f"{len(todo)} seeds ({', '.join(str(c.seed) for c in todo)}) together, each {model.n_params:,} parameters "
         f"({model.n_params_nonembed:,} non-embedding), {cfg.steps} steps of {cfg.optim.batch_size} samples, "
         f"{model.flops_per_sample * cfg.data.samples:.3g} FLOPs (family {model.family})")
    from scaling.trainer import own_rng

    finished: list = []
    peak: list = []  # the device's peak FLOP/s, measured once for every member

    def finish(member: _Member) -> None:
        if not peak:
            peak.append(peak_flops_per_device(cfg, member.run.state.precision))
        with own_rng(member.run):  # evaluation and the probe draw from the member's stream, as in its solo run
            result = run_result(member.cfg, model, source, member.indices, member.run.state, t_start, peak[0])
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
            _check_same(old, c.flat(), [k for k in old if k not in _RESUMABLE_CHANGES], str(path))
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
        outs = ckpt.get("outs", {})
        left_out = [s for s in held if s not in asked and _finished(
            member_config(cfg, int(s)) if s not in outs else cfg.replace(out=outs[s], seed=int(s))) is None]
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


def _fit(cfg: RunConfig, source, resolved, members: list[_Member], micro: int, accumulate: int, start_step: int,
         t_start: float, ckpt_file: Path, finish) -> None:
    """The members trained by `scaling.trainer.train_loop`, each built as its run alone would be; the ensemble's
    periodic checkpoint is one file holding every member still training. `finish(member)` is called once per
    member, when it diverges or after the last step."""
    from scaling.checkpointing import checkpoint_payload, restore_checkpoint, write_checkpoint
    from scaling.trainer import launch, run_meta, start_run, train_loop

    fabric, precision = launch(cfg)
    val = None
    by_run = {}
    for m in members:
        def restore(inner, optimizer, names, payload=m.payload):
            return restore_checkpoint(payload, inner, optimizer, names) if payload is not None else None

        m.run, val = start_run(fabric, m.cfg, resolved, source, m.indices, micro, accumulate, start_step, precision,
                               t_start, val, restore, concurrent=True)
        m.payload = None
        by_run[id(m.run)] = m

    def save_ensemble(active, step: int) -> None:
        write_checkpoint(ckpt_file, {
            "global_step": step, "seeds": [r.cfg.seed for r in active],
            "outs": {str(r.cfg.seed): str(r.cfg.out) for r in active},
            "members": {str(r.cfg.seed): checkpoint_payload(r.inner, r.optimizer.optimizer, step,
                                                            run_meta(r, resolved, precision, t_start))
                        for r in active}})

    train_loop(fabric, cfg, resolved, source, [m.run for m in members], val, start_step, t_start,
               save_due=save_ensemble, finish=lambda run: finish(by_run[id(run)]))


__all__ = ["ENSEMBLE_CKPT", "MEMBER_FIELDS", "SEED_PLACEHOLDER", "check_supported", "member_config", "member_dir",
           "members_from_files", "parse_seeds", "train_ensemble", "train_members"]
