"""Planning: a validated spec becomes the list of runs, each with a stable key, N, D and FLOPs.

The run key is a hash of the resolved run config (everything that changes what a run computes:
data identity, model, samples, seed, training settings, branching), so the same spec gives the same
keys on every machine and across restarts; the output folder and the local data path are left out
because they differ per machine.

Parameter counts and FLOPs come from the model a run of the spec builds, by training's own path
(`sweeps.points.model_of` -> `scaling.model.family.run_model`) on the data's own dimensions
(`scaling.model.family.Dims`): the built-in family's exact accounting, or another family's module
counted and its FLOPs per sample measured once per size.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sweeps.points import ModelPoint, PlannedRun, base_config, model_of, run_key, seed_group
from sweeps.spec import SweepSpec
from sweeps.wsd import branch_runs
from vla_core.errors import BadInput

if TYPE_CHECKING:
    from scaling.model.family import Dims

__all__ = ["ModelPoint", "PlannedRun", "run_key", "plan_runs", "resolve_models", "with_estimates",
           "totals", "format_plan"]


def resolve_models(spec: SweepSpec, dims: Dims) -> list[ModelPoint]:
    """Resolve the model ladder through the spec's model family (`sweeps.points.model_of`): exact counts,
    and FLOPs per sample from the family's accounting (vla) or measured once per size (any other family).

    Raises:
        BadInput: An unknown preset name, an impossible size, or a family that cannot build it.
    """
    points = []
    for size in spec.models:
        m = model_of(spec, size, dims)
        shape = {k: m.shape[k] for k in ("d_model", "n_layers", "n_heads") if k in m.shape}
        points.append(ModelPoint(size, m.n_params, m.n_params_nonembed, m.flops_per_sample, shape))
    points.sort(key=lambda p: p.n_params)
    return points


def _grid_points(spec: SweepSpec, models: list[ModelPoint]) -> list[tuple[ModelPoint, int, float | None]]:
    return [(m, d, None) for m in models for d in sorted(spec.samples)]


def _isoflop_points(spec: SweepSpec, models: list[ModelPoint]) -> list[tuple[ModelPoint, int, float | None]]:
    iso = spec.isoflop
    assert iso is not None
    smallest = models[0]
    cheapest = smallest.flops_per_sample * iso.min_samples
    where = spec.source or "spec"
    if iso.budgets[0] < cheapest:
        raise BadInput(
            f"{where}: design.budgets: {iso.budgets[0]:.3g} FLOPs is below the smallest model's cost "
            f"({smallest.size!r}: {smallest.flops_per_sample} FLOPs/sample x min_samples {iso.min_samples} "
            f"= {cheapest:.3g})"
        )
    out = []
    for c in iso.budgets:
        for m in models:
            d = int(c // m.flops_per_sample)  # D = C / flops_per_sample(N), whole samples
            if d < iso.min_samples or (iso.max_samples is not None and d > iso.max_samples):
                continue
            out.append((m, d, c))
    return out


def plan_runs(spec: SweepSpec, dims: Dims, lrs: dict | None = None) -> list[PlannedRun]:
    """Every run of the sweep, in a stable order (family, size, samples, seed).

    A ``families:`` spec plans each family as its own one-family spec (`SweepSpec.for_family`: the same
    design, data and seeds, its own blind baseline) and tags each run with its family.

    Args:
        spec: The validated spec.
        dims: The data's dimensions (`sweeps.data_source.data_dims`: from the dataset).
        lrs: Learning rate chosen per model size by the lr search, keyed by ``str(size)``.

    Raises:
        BadInput: An empty design, an IsoFLOP budget below the smallest model's cost, or two points
            with one key.
    """
    if spec.families:
        runs = [replace(r, family=name) for name in spec.family_names
                for r in plan_runs(spec.for_family(name), dims, lrs)]
        return _seed_groups(spec, _unique_keys(spec, runs))
    return _seed_groups(spec, _one_family(spec, dims, lrs))


def _seed_groups(spec: SweepSpec, runs: list[PlannedRun]) -> list[PlannedRun]:
    """``seeds_together``: each run of a grouped size tagged with its group, where the group has two seeds or more."""
    tagged = [replace(r, group=seed_group(r)) if spec.groups_seeds(r.n_params) else r for r in runs]
    sizes: dict[str, int] = {}
    for r in tagged:
        if r.group is not None:
            sizes[r.group] = sizes.get(r.group, 0) + 1
    return [r if r.group is None or sizes[r.group] > 1 else replace(r, group=None) for r in tagged]


def _one_family(spec: SweepSpec, dims: Dims, lrs: dict | None) -> list[PlannedRun]:
    """`plan_runs` of a one-family spec."""
    models = resolve_models(spec, dims)
    if spec.design == "suggest":
        from sweeps.suggest_design import suggested_points

        points = suggested_points(spec, models)
    else:
        points = _grid_points(spec, models) if spec.design == "grid" else _isoflop_points(spec, models)
    if not points:
        raise BadInput(f"{spec.source or 'spec'}: the design has no runs (check models, samples and budgets)")
    ident = spec.data.identity()
    runs: list[PlannedRun] = []
    checks = _validation_runs(spec, dims, ident, lrs, models)
    if spec.wsd.enabled:
        runs = branch_runs(spec, points, ident, lrs)
        return _unique_keys(spec, runs + _blind_runs(spec, runs, ident) + checks)
    for seed in spec.seeds:
        for m, d, c in points:
            cfg = base_config(spec, m.size, d, seed, lrs)
            runs.append(PlannedRun(
                key=run_key(cfg, ident), phase="main", size=m.size, n_params=m.n_params, samples=d,
                seed=seed, flops=float(m.flops_per_sample) * d, flops_per_sample=m.flops_per_sample,
                config=cfg, budget=c,
            ))
    runs.sort(key=lambda r: (r.n_params, r.samples, r.seed, r.phase))
    return _unique_keys(spec, runs + _blind_runs(spec, runs, ident) + checks)


def _validation_runs(spec: SweepSpec, dims: Dims, ident: Any, lrs: dict | None,
                     ladder: list[ModelPoint]) -> list[PlannedRun]:
    """The validation rounds' runs: each point at its round's budget, trained as the design's runs are.

    With WSD the schedule is the design's: decay over the last cooldown_frac of the run, and the
    warmup in absolute steps that the design gives a model of this size (5% of the steps of its
    shortest run), so the run differs from the design's only in its size and length.

    Raises:
        BadInput: the model family no longer builds the point the prediction was made for.
    """
    if not spec.validation:
        return []
    out = []
    train = spec.train_dict
    batch = int(train.get("batch_size", 64))
    for i, rnd in enumerate(spec.validation):
        sizes = resolve_models(replace(spec, models=tuple(p.size for p in rnd.points)), dims)
        by_size = {str(m.size): m for m in sizes}
        for p in rnd.points:
            m = by_size[str(p.size)]
            d = int(rnd.budget // m.flops_per_sample)
            where = f"{spec.source or 'spec'}: validation[{i}] size {p.size}"
            if m.n_params != p.n_params or d != p.samples:
                raise BadInput(f"{where}: the prediction was made for N = {p.n_params:,}, D = {p.samples:,}; the model "
                               f"family now builds N = {m.n_params:,}, D = {d:,} (run it with the code that wrote it)")
            common = {}
            if spec.wsd.enabled:
                warm = float(train.get("warmup", 0.05))
                shortest = _shortest_design_samples(spec, m, ladder)
                warm_steps = int(warm) if warm >= 1 else max(1, round(warm * math.ceil(shortest / batch)))
                common = {"schedule": "wsd", "wsd_decay_frac": spec.wsd.cooldown_frac, "warmup": warm_steps}
            for seed in rnd.seeds:
                cfg = {**base_config(spec, m.size, d, seed, lrs), **common}
                info = {"predicted_loss": p.predicted_loss, "predicted_lo": p.predicted_lo,
                        "predicted_hi": p.predicted_hi, "recommended": p.recommended, "fit": rnd.fit}
                out.append(PlannedRun(key=run_key(cfg, ident), phase="validation", size=m.size, n_params=m.n_params,
                                      samples=d, seed=seed, flops=float(m.flops_per_sample) * d,
                                      flops_per_sample=m.flops_per_sample, config=cfg, budget=rnd.budget,
                                      validation=info))
    return out


def _shortest_design_samples(spec: SweepSpec, m: ModelPoint, ladder: list[ModelPoint]) -> int:
    """D of the shortest design run a model of this cost would have (the WSD warmup is set from it)."""
    if spec.isoflop is not None:
        return max(int(spec.isoflop.budgets[0] // m.flops_per_sample), spec.isoflop.min_samples)
    return min(spec.samples) if spec.samples else 1


def _unique_keys(spec: SweepSpec, runs: list[PlannedRun]) -> list[PlannedRun]:
    """Refuse two points with one run key (say ``debug`` and the count it resolves to): one would wait forever."""
    seen: dict[str, PlannedRun] = {}
    for r in runs:
        if r.key in seen:
            a = seen[r.key]
            raise BadInput(f"{spec.source or 'spec'}: models {a.size!r} and {r.size!r} plan the same run "
                           f"(N = {r.n_params:,}, D = {r.samples:,}); list each model once")
        seen[r.key] = r
    return runs


def _blind_runs(spec: SweepSpec, runs: list[PlannedRun], ident: Any) -> list[PlannedRun]:
    """The input-free baseline: the largest model at the largest D with images and instruction withheld.

    It copies the settings of that main run (schedule included), so the gap between the two is what
    seeing and reading buy; it is recorded with ``phase = blind`` and never fitted.
    """
    if not spec.blind_baseline:
        return []
    mains = [r for r in runs if r.phase == "main" and r.seed == spec.seeds[0]]
    if not mains:
        return []
    top = max(mains, key=lambda r: (r.n_params, r.samples))
    cfg = {k: v for k, v in top.config.items() if k != "checkpoint_at"}
    cfg["blind"] = True
    return [replace(top, key=run_key(cfg, ident), phase="blind", config=cfg, budget=None,
                    depends_on=None, branch=None)]


def _n_val(r: PlannedRun) -> int:
    # RunConfig: val_every=0 means about 10 validations per run, each over val_samples frames.
    every = int(r.config.get("val_every", 0) or 0)
    return 10 if every == 0 else max(1, r.samples // every)


def _loglog(points: dict[int, float]):
    """Interpolate ``{flops_per_sample: y}`` in log-log space, flat beyond the ends."""
    xs = sorted(points)

    def f(x: int) -> float:
        if x <= xs[0] or len(xs) == 1:
            return points[xs[0]] if x <= xs[0] else points[xs[-1]]
        if x >= xs[-1]:
            return points[xs[-1]]
        t = (math.log(x) - math.log(xs[0])) / (math.log(xs[-1]) - math.log(xs[0]))
        return math.exp((1 - t) * math.log(points[xs[0]]) + t * math.log(points[xs[-1]]))

    return f


def with_estimates(runs: list[PlannedRun], seconds_per_flop: dict[int, float], overhead_s: float,
                   val_seconds_per_flop: dict[int, float] | None = None) -> list[PlannedRun]:
    """Attach estimated wall times from the calibration.

    Seconds per FLOP are interpolated in log space between the calibrated model sizes (small models
    use the hardware less well, so a single FLOP/s figure would be wrong at one end). A run's time is
    the process start-up, its training FLOPs at the training rate, and its validation passes.

    Args:
        seconds_per_flop: ``{flops_per_sample: seconds per training FLOP}``.
        overhead_s: Start-up of one run process (seconds).
        val_seconds_per_flop: ``{flops_per_sample: seconds of one validation pass per (fps x val_samples)}``.
    """
    if not seconds_per_flop:
        return runs
    train = _loglog(seconds_per_flop)
    val = _loglog(val_seconds_per_flop) if val_seconds_per_flop else None
    out = []
    for r in runs:
        est = overhead_s + r.flops * train(r.flops_per_sample)
        if val is not None:
            vs = int(r.config.get("val_samples", 512))
            est += _n_val(r) * val(r.flops_per_sample) * r.flops_per_sample * vs
        out.append(replace(r, est_seconds=est))
    return out


def totals(runs: list[PlannedRun]) -> dict:
    """Sweep totals: runs, FLOPs, estimated seconds (None when not calibrated)."""
    est = [r.est_seconds for r in runs]
    return {
        "runs": len(runs),
        "flops": float(sum(r.flops for r in runs)),
        "est_seconds": None if any(e is None for e in est) else float(sum(est)),  # type: ignore[arg-type]
    }


def format_plan(runs: list[PlannedRun]) -> str:
    """The plan as a fixed-width text table with a totals line (and a family column, and a total per
    family, when the spec trains several)."""
    fam_w = max((len(r.family) for r in runs if r.family), default=0)
    fam = (lambda r: f"{r.family or '':<{max(fam_w, 6)}} ") if fam_w else (lambda r: "")
    head = (f"{'key':<12}  {'phase':<8} " + (f"{'family':<{max(fam_w, 6)}} " if fam_w else "")
            + f"{'size':>10} {'N':>11} {'D':>9} {'seed':>4} {'FLOPs':>10} {'est':>8}")
    lines = [head, "-" * len(head)]
    for r in runs:
        est = "-" if r.est_seconds is None else fmt_secs(r.est_seconds)
        lines.append(
            f"{r.key:<12}  {r.phase:<8} {fam(r)}{str(r.size):>10} {r.n_params:>11,} {r.samples:>9,} {r.seed:>4} "
            f"{r.flops:>10.3g} {est:>8}"
        )
    lines.append("-" * len(head))
    if fam_w:
        for name in dict.fromkeys(r.family for r in runs):
            t = totals([r for r in runs if r.family == name])
            est = "-" if t["est_seconds"] is None else fmt_secs(t["est_seconds"])
            lines.append(f"family {name}: {t['runs']} runs, {t['flops']:.3g} FLOPs, estimated {est} (one worker)")
    t = totals(runs)
    est = "-" if t["est_seconds"] is None else fmt_secs(t["est_seconds"])
    lines.append(f"total: {t['runs']} runs, {t['flops']:.3g} FLOPs, estimated {est} (one worker)")
    groups = {r.group for r in runs if r.group is not None}
    if groups:
        grouped = sum(1 for r in runs if r.group is not None)
        lines.append(f"seeds together: {grouped} runs in {len(groups)} processes, one per point's seeds "
                     f"(each run keeps its row and key); {len(runs) - grouped} runs alone")
    return "\n".join(lines)


def fmt_secs(s: float) -> str:
    if s < 120:
        return f"{s:.0f}s"
    if s < 7200:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"
