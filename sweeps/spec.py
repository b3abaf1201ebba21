"""The sweep spec: one YAML file that says which runs a sweep makes.

A spec names its data (a dataset folder, a generator and its size, or a mixture), the model ladder
(preset names or target parameter counts), the data sizes D (samples seen), the seeds, the training
settings passed through to ``scaling train``, and a design:

- ``grid``: every model x data size x seed;
- ``isoflop``: compute budgets C_1..C_k; per budget every model of the ladder whose
  D = C / flops_per_sample(N) is at least ``min_samples`` (Chinchilla Approach 2).

Optionally ``families: [vla, conv]`` (or ``{vla: {keypoints: 16}, conv: {}}``, each family's own
``train:`` settings): the design once per model family, on the same data, sizes and seeds.
``seeds_together: true`` (or the largest size to group, in parameters) trains the seeds of each point in
one process (`scaling.ensemble`); every run keeps its row and key. ``reuse: [TABLE, ...]`` (results
tables, relative to the spec's folder) records a point whose run key has a completed row there from
that row instead of training it (`sweeps.reuse`): a study that extends another pays for its new runs only.

Example::

    name: smoke
    data: {generate: {source: tabletop, episodes: 16, seed: 0, image_size: 32}}
    models: [debug, 2.0e5]
    samples: [256, 512]
    seeds: [0]
    train: {batch_size: 16, lr: 1.0e-3, schedule: cosine}
    design: grid

Unknown keys are errors with a did-you-mean; every error is one line (``BadInput``, exit 2).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vla_core.errors import BadInput

# RunConfig fields the sweep sets itself per run; a spec's ``train:`` block must not set them.
RESERVED_TRAIN_KEYS = ("data", "size", "samples", "out", "seed", "branch_from", "checkpoint_at", "wandb_group",
                       "run_id")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class GenerateSpec:
    """Data generated once into the sweep folder by ``scaling.data`` (``scaling data generate``)."""

    source: str = "tabletop"
    """Generator name (``tabletop`` or ``metaworld``)."""
    episodes: int = 32
    """Number of episodes to generate (episodes)."""
    seed: int = 0
    """Seed of the generator."""
    image_size: int = 32
    """Side of the square camera images (pixels)."""
    extra: tuple[tuple[str, Any], ...] = ()
    """Further generator options passed through as ``--key value`` (e.g. tasks)."""


@dataclass(frozen=True)
class DataSpec:
    """Where a sweep's training data comes from: exactly one of path, generate, mixture."""

    path: str | None = None
    """A dataset folder written by ``scaling data`` (relative to the spec file)."""
    generate: GenerateSpec | None = None
    """Generate the data once into ``SWEEP_DIR/data``."""
    mixture: tuple[tuple[str, float], ...] = ()
    """Weighted dataset folders ``((path, weight), ...)``."""

    def identity(self) -> Any:
        """A machine-independent description, part of every run key (no local absolute paths)."""
        if self.generate is not None:
            g = self.generate
            return {"generate": [g.source, g.episodes, g.seed, g.image_size, list(map(list, g.extra))]}
        if self.mixture:
            return {"mixture": [[p, w] for p, w in self.mixture]}
        return {"path": self.path}


@dataclass(frozen=True)
class IsoflopSpec:
    """IsoFLOP design: fixed compute budgets, a range of model sizes per budget."""

    budgets: tuple[float, ...]
    """Training compute budgets C_1..C_k (FLOPs)."""
    min_samples: int = 1
    """Smallest D worth training (samples); smaller (N, C) pairs are left out."""
    max_samples: int | None = None
    """Largest D (samples); larger pairs are left out (None: no limit)."""


@dataclass(frozen=True)
class SuggestSpec:
    """Design ``suggest``: the runs `scaling suggest` proposes from the results so far (analysis.design)."""

    results: str
    """Results table (CSV/Parquet) of the runs so far; relative paths are read from the spec's folder."""
    target_flops: float
    """Compute C whose N_opt the new runs should pin down (FLOPs)."""
    budget_flops: float
    """Total FLOPs the new runs may cost."""
    count: int = 4
    """Runs to propose."""


@dataclass(frozen=True)
class ValidationPoint:
    """One configuration run to check a recommendation, with the prediction made before it ran."""

    size: str | float
    """Model size as the planner resolves it (a WIDTHxBLOCKS shape, as `sweep validate` writes it)."""
    n_params: int
    """Parameters of the model the prediction was made for (the planner checks it still builds this)."""
    samples: int
    """D = budget // FLOPs per sample of that model (checked against the plan)."""
    predicted_loss: float
    """What the tool printed before the run: the loss..."""
    predicted_lo: float
    """... and its 95% interval."""
    predicted_hi: float
    recommended: bool = False
    """True for the compute-optimal size the tool recommended; False for an alternative at the same compute."""


@dataclass(frozen=True)
class ValidationRound:
    """Runs at a held-out budget that test the compute-optimal answer (``phase = validation``)."""

    budget: float
    """Training FLOPs of every run of the round."""
    fit: str
    """The fit whose answer is tested (path as given to `sweep validate`)."""
    seeds: tuple[int, ...]
    """Seeds each point is run with."""
    points: tuple[ValidationPoint, ...]
    """The recommended configuration and its alternatives."""


@dataclass(frozen=True)
class LRSearchSpec:
    """Learning-rate selection per model size by Optuna TPE with median pruning (`sweeps.lr_search`): ``trials``
    short runs per size, points of the sweep's queue with ``phase = lr_search``; a size's own runs are
    planned with its best trial's lr once all its trials have ended."""

    trials: int = 6
    """Trials per model size."""
    samples: int = 512
    """Training samples per trial (the small budget)."""
    low: float = 1e-4
    """Lower end of the log-uniform learning-rate range."""
    high: float = 1e-2
    """Upper end of the log-uniform learning-rate range."""


@dataclass(frozen=True)
class WSDSpec:
    """Warmup-stable-decay branching: one stable phase per model size, one cooldown per data size."""

    enabled: bool = False
    """Branch cooldowns from a shared stable phase instead of independent runs."""
    cooldown_frac: float = 0.2
    """Fraction of each run's samples spent in the cooldown."""


SLURM_KEYS = ("partition", "account", "time_min", "mem_gb", "gpus_per_node", "cpus_per_task", "qos", "constraint")


@dataclass(frozen=True)
class SlurmSpec:
    """Resources of each SLURM array task (``--launcher slurm``), optionally per model size."""

    resources: tuple[tuple[str, Any], ...] = ()
    """Defaults for every task: partition, account, time_min (minutes), mem_gb (GB), gpus_per_node,
    cpus_per_task, qos, constraint."""
    per_size: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    """Overrides per model size as written in ``models`` (``{"1e8": {"gpus_per_node": 4}}``)."""
    max_requeues: int | None = None
    """How many times a task that reaches its time limit is requeued (``--max-requeues`` overrides it;
    None: submitit's 3). For the whole sweep, never per size."""

    def for_size(self, size: Any) -> dict[str, Any]:
        """The resources of a task running points of model ``size``."""
        return {**dict(self.resources), **dict(dict(self.per_size).get(str(size), ()))}


def parse_slurm(where: str, raw: Any) -> SlurmSpec:
    """Validate a ``slurm:`` block (or the flags' dict) into a :class:`SlurmSpec`."""
    _check_keys(where, raw, (*SLURM_KEYS, "per_size", "max_requeues"))
    per = raw.get("per_size") or {}
    if not isinstance(per, Mapping):
        raise BadInput(f"{where}.per_size: expected a mapping of model size -> resources")
    requeues = raw.get("max_requeues")
    if requeues is not None:
        requeues = _number(f"{where}.max_requeues", requeues, int, positive=False)
        if requeues < 0:
            raise BadInput(f"{where}.max_requeues: must be >= 0, got {raw['max_requeues']!r}")
    return SlurmSpec(
        resources=_slurm_values(where, {k: v for k, v in raw.items() if k not in ("per_size", "max_requeues")}),
        per_size=tuple(sorted((_size_key(s), _slurm_values(f"{where}.per_size.{s}", r)) for s, r in per.items())),
        max_requeues=requeues,
    )


def _size_key(size: Any) -> str:
    return str(_parse_model("slurm.per_size", size))


def _slurm_values(where: str, raw: Any) -> tuple[tuple[str, Any], ...]:
    _check_keys(where, raw, SLURM_KEYS)
    out = {}
    for k, v in raw.items():
        if v is None:
            continue
        if k in ("time_min", "mem_gb", "gpus_per_node", "cpus_per_task"):
            out[k] = _number(f"{where}.{k}", v, int, positive=k != "gpus_per_node")
            if out[k] < 0:
                raise BadInput(f"{where}.{k}: must be >= 0, got {v!r}")
        else:
            if not isinstance(v, str) or not v.strip():
                raise BadInput(f"{where}.{k}: expected a name, got {v!r}")
            out[k] = v
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep, validated. Build it with :func:`load_spec` or :func:`parse_spec`."""

    name: str
    """Sweep name: the Optuna study name, the W&B group and the default folder ``runs/<name>``."""
    data: DataSpec
    """Training data of every run."""
    models: tuple[str | float, ...]
    """Model ladder: preset names (``debug``) or target parameter counts (parameters)."""
    samples: tuple[int, ...] = ()
    """Data sizes D of the grid design (training samples seen)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds; every point is run once per seed."""
    train: tuple[tuple[str, Any], ...] = ()
    """Training settings passed through to ``scaling train`` (RunConfig fields)."""
    design: str = "grid"
    """``grid``, ``isoflop`` or ``suggest``."""
    isoflop: IsoflopSpec | None = None
    """The IsoFLOP budgets (design ``isoflop`` only)."""
    suggest: SuggestSpec | None = None
    """Where the proposed runs come from (design ``suggest`` only)."""
    lr_search: LRSearchSpec | None = None
    """Optional learning-rate search per model size."""
    wsd: WSDSpec = field(default_factory=WSDSpec)
    """Optional WSD branching."""
    retries: int = 2
    """Retries of a failed run before it is recorded as ``failed``."""
    slurm: SlurmSpec = field(default_factory=lambda: SlurmSpec())
    """SLURM resources of ``--launcher slurm`` (command-line flags override them)."""
    validation: tuple[ValidationRound, ...] = ()
    """Validation rounds written by `scaling sweep validate` after the design was fitted: they add rows
    with ``phase = validation`` and are left out of the fingerprint (they test the design's answer,
    they do not change what its points compute)."""
    auto_precision: tuple[tuple[str, str], ...] = ()
    """What ``train.precision: auto`` resolved to, per model size (``(str(size), precision)``), written into
    the spec by `scaling sweep plan` or `run` the first time they plan a size (``sweeps.auto_precision``):
    every run of that size, and a row re-run by key on any machine, trains in it. Left out of the
    fingerprint and of the run keys, which keep ``auto``."""
    blind_baseline: bool = True
    """Add the input-free baseline: one run at the largest N and D with the images and instruction
    withheld (``phase = blind`` in the results table, never fitted). Default: on, except for design
    ``suggest``."""
    families: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    """Model families trained on the same data and design, each with its own ``train:`` settings on top
    of the shared ones (``((name, ((key, value), ...)), ...)``): the family is an axis of the design,
    like the seeds, and every run's key includes its family. Empty: one family, ``train.family`` (default
    vla), and keys without it."""
    seeds_together: float = 0.0
    """Train the seeds of one configuration together, in one process (`scaling.ensemble`): the largest model
    size (parameters) whose seeds are grouped; ``inf`` for ``seeds_together: true``, 0 (the default) for none.
    Each member keeps its own row and run key and equals its solo run, so the setting is left out of the
    fingerprint: it changes how points are run, not what they compute."""
    reuse: tuple[str, ...] = ()
    """Committed results tables (paths as the spec writes them, relative to its folder) whose completed rows
    stand for the points of the same run key (`sweeps.reuse`): such a point is recorded from its row
    instead of trained. Left out of the fingerprint: a key is the run's config, so the row is that run."""
    source: str | None = None
    """The spec file this came from (for messages and relative paths)."""

    def reuse_paths(self) -> tuple[str, ...]:
        """``reuse`` resolved against the spec's folder (the working directory for a spec without a file)."""
        base = Path(self.source).resolve().parent if self.source else Path.cwd()
        return tuple(p if Path(p).is_absolute() else str(base / p) for p in self.reuse)

    def groups_seeds(self, n_params: int) -> bool:
        """Whether the seeds of a model of `n_params` parameters train together."""
        return len(self.seeds) > 1 and n_params <= self.seeds_together

    @property
    def train_dict(self) -> dict[str, Any]:
        """The pass-through training settings as a dict."""
        return dict(self.train)

    @property
    def family_names(self) -> tuple[str, ...]:
        """The families of ``families:`` in the spec's order (empty for a one-family spec)."""
        return tuple(name for name, _ in self.families)

    def for_family(self, name: str) -> SweepSpec:
        """The one-family spec that plans ``name``'s runs of a ``families:`` spec: the shared ``train:``
        settings, that family's own on top, and ``family: name`` (so its runs' keys name it)."""
        own = dict(dict(self.families)[name])
        train = {**self.train_dict, **own, "family": name}
        return dataclasses.replace(self, families=(), train=tuple(sorted(train.items())))

    def canonical(self) -> dict:
        """Everything that decides which runs the sweep makes, as plain JSON values (no file location).

        SLURM resources are left out: they change where runs go, not what they compute.
        """
        d = dataclasses.asdict(self)
        for k in ("source", "slurm", "data", "validation", "auto_precision", "seeds_together", "reuse"):
            d.pop(k)
        d["data"] = self.data.identity()
        d["train"] = dict(self.train)
        if self.families:
            d["families"] = {name: dict(own) for name, own in self.families}
        else:  # a one-family spec keeps the fingerprint it had before `families:` existed
            d.pop("families")
        return json.loads(json.dumps(d, sort_keys=True, default=str))

    def fingerprint(self) -> str:
        """sha256 of :meth:`canonical`, 12 hex digits: which spec planned a point."""
        blob = json.dumps(self.canonical(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 3) -> str:
    """What differs between two :meth:`SweepSpec.canonical` dicts, as ``key: old -> new; ...``."""
    a, b = _flatten(old), _flatten(new)
    diffs = [f"{k}: {_short(a.get(k, '(absent)'))} -> {_short(b.get(k, '(absent)'))}"
             for k in sorted(set(a) | set(b)) if a.get(k, _MISSING) != b.get(k, _MISSING)]
    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more if diffs else "no difference"


_MISSING = object()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _short(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 60 else text[:57] + "..."


def _check_keys(where: str, raw: Mapping[str, Any], allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    if not isinstance(raw, Mapping):
        raise BadInput(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            raise BadInput(f"{where}: unknown key {key!r}{hint}")
    for key in required:
        if key not in raw:
            raise BadInput(f"{where}: missing required key {key!r}")


def _number(where: str, value: Any, kind: type = float, positive: bool = True) -> Any:
    if isinstance(value, bool):
        raise BadInput(f"{where}: expected a number, got {value!r}")
    try:
        # YAML reads 1e6 (no dot) as a string; accept it and ints written as 1.0e6.
        num = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{where}: expected a number, got {value!r}") from None
    if positive and not num > 0:
        raise BadInput(f"{where}: must be > 0, got {value!r}")
    if kind is int:
        if num != int(num):
            raise BadInput(f"{where}: expected an integer, got {value!r}")
        return int(num)
    return num


def _bool(where: str, value: Any) -> bool:
    # YAML reads `false` as a bool, but `"false"` (quoted) or `no` in JSON-ish specs as strings:
    # bool("false") is True, so anything but a real boolean is an error.
    if isinstance(value, bool):
        return value
    raise BadInput(f"{where}: expected true or false, got {value!r}")


def _no_duplicates(where: str, values: tuple) -> None:
    seen: set = set()
    for v in values:
        key = str(v).lower() if isinstance(v, str) else float(v)
        if key in seen:
            raise BadInput(f"{where}: {v!r} is listed twice")
        seen.add(key)


def _check_train_values(where: str, train: Mapping[str, Any]) -> None:
    """The ``train:`` values, validated by RunConfig itself now rather than three times at run time."""
    try:
        from scaling.config import LEGACY, from_mapping
    except ImportError:  # training package not installed: leave validation to `scaling train`
        return
    try:
        from_mapping({**train, "data": "(spec)"}, source=f"{where}: train")
    except BadInput as exc:
        msg = re.sub(r"^train: (--)?([\w.-]+)", lambda m: "train." + m.group(2).replace("-", "_"),
                     str(exc).splitlines()[0])
        for old in train:  # name the setting as the spec writes it (a flat name, or the sectioned one)
            new = LEGACY.get(str(old))
            if new is not None and msg.startswith(f"train.{new} "):
                msg = f"train.{old}" + msg[len(f"train.{new}"):]
        raise BadInput(f"{where}: {msg}") from None


def _list(where: str, value: Any) -> list:
    if isinstance(value, (list, tuple)):
        if not value:
            raise BadInput(f"{where}: empty list, nothing to run")
        return list(value)
    return [value]


def _parse_data(where: str, raw: Any, base: Path) -> DataSpec:
    if isinstance(raw, str):
        return DataSpec(path=str((base / raw) if not Path(raw).is_absolute() else raw))
    _check_keys(where, raw, ("path", "generate", "mixture"))
    if len(raw) != 1:
        raise BadInput(f"{where}: give exactly one of path, generate, mixture")
    if "path" in raw:
        return _parse_data(where, str(raw["path"]), base)
    if "generate" in raw:
        g = raw["generate"]
        _check_keys(f"{where}.generate", g, ("source", "episodes", "seed", "image_size", "options"))
        extra = g.get("options") or {}
        _check_keys(f"{where}.generate.options", extra, tuple(extra))
        return DataSpec(generate=GenerateSpec(
            source=str(g.get("source", "tabletop")),
            episodes=_number(f"{where}.generate.episodes", g.get("episodes", 32), int),
            seed=_number(f"{where}.generate.seed", g.get("seed", 0), int, positive=False),
            image_size=_number(f"{where}.generate.image_size", g.get("image_size", 32), int),
            extra=tuple(sorted(extra.items())),
        ))
    parts = []
    for i, item in enumerate(_list(f"{where}.mixture", raw["mixture"])):
        _check_keys(f"{where}.mixture[{i}]", item, ("path", "weight"), ("path",))
        p = str(item["path"])
        p = p if Path(p).is_absolute() else str(base / p)
        parts.append((p, _number(f"{where}.mixture[{i}].weight", item.get("weight", 1.0))))
    return DataSpec(mixture=tuple(parts))


def _parse_model(where: str, value: Any) -> str | float:
    if isinstance(value, str):
        try:
            return _number(where, value)
        except BadInput:
            return value  # a preset name; checked against PRESETS when planning
    return _number(where, value)


def _legacy_train(where: str, train: Mapping[str, Any]) -> dict[str, Any]:
    """A ``train:`` block (old flat names, sections or dotted names) in the old flat names, values as written
    (`scaling.config.to_legacy`): the form plans keep and run keys hash, so a committed spec keeps its keys
    and the same settings give the same keys however they are written. Unknown keys raise BadInput."""
    try:
        from scaling.config import to_legacy
    except ImportError:  # training package not installed: leave validation to `scaling train`
        return dict(train)
    try:
        return to_legacy(train, source=where)
    except BadInput as exc:
        msg = re.sub(r"\(did you mean ([\w.]+)\?\)", r"(did you mean '\1'?)", str(exc))
        raise BadInput(msg.replace("unknown key", "unknown RunConfig field")) from None


def parse_spec(raw: Any, source: str | None = None) -> SweepSpec:
    """Validate a parsed YAML document into a :class:`SweepSpec`.

    Args:
        raw: The YAML document (a mapping).
        source: The file it came from; relative data paths are resolved against its folder.

    Raises:
        BadInput: One line naming the key and the problem.
    """
    where = source or "spec"
    top = ("name", "data", "models", "samples", "seeds", "train", "design", "lr_search", "wsd", "retries", "slurm",
           "blind_baseline", "validation", "auto_precision", "families", "seeds_together", "reuse")
    _check_keys(where, raw, top, ("name", "data", "models"))
    name = str(raw["name"])
    if not _NAME_RE.match(name):
        raise BadInput(f"{where}: name {name!r} must be letters, digits, '_', '-', '.'")
    base = Path(source).resolve().parent if source else Path.cwd()
    data = _parse_data(f"{where}: data", raw["data"], base)
    models = tuple(_parse_model(f"{where}: models[{i}]", m)
                   for i, m in enumerate(_list(f"{where}: models", raw["models"])))
    _no_duplicates(f"{where}: models", models)
    seeds = tuple(_number(f"{where}: seeds", s, int, positive=False)
                  for s in _list(f"{where}: seeds", raw.get("seeds", [0])))
    if any(s < 0 for s in seeds):
        raise BadInput(f"{where}: seeds must be >= 0, got {list(seeds)}")
    _no_duplicates(f"{where}: seeds", seeds)
    train = raw.get("train") or {}
    if not isinstance(train, Mapping):
        raise BadInput(f"{where}: train: expected a mapping of RunConfig fields")
    train = _legacy_train(f"{where}: train", train)
    for key in train:
        if key in RESERVED_TRAIN_KEYS:
            raise BadInput(f"{where}: train.{key} is set by the sweep per run; remove it")
    _check_train_values(where, train)

    kind, samples, isoflop, suggest = _parse_design(where, raw)
    lr_search = _parse_lr_search(where, raw.get("lr_search"), train)
    wsd = _parse_wsd(where, raw.get("wsd"))
    retries = _number(f"{where}: retries", raw.get("retries", 2), int, positive=False)
    if retries < 0:
        raise BadInput(f"{where}: retries must be >= 0 (retries after a failed attempt), got {retries}")
    slurm = parse_slurm(f"{where}: slurm", raw.get("slurm") or {})
    # A suggest design adds runs to a study that has its baseline already; its budget is the runs'.
    blind = raw.get("blind_baseline", kind != "suggest")
    if not isinstance(blind, bool):
        raise BadInput(f"{where}: blind_baseline must be true or false, got {blind!r}")
    validation = _parse_validation(f"{where}: validation", raw.get("validation"))
    auto_precision = _parse_auto_precision(f"{where}: auto_precision", raw.get("auto_precision"), train)
    families = ()
    if raw.get("families") is not None:
        families = _parse_families(where, raw["families"], raw, train, models, kind)
    together = _parse_seeds_together(f"{where}: seeds_together", raw.get("seeds_together", False))
    return SweepSpec(
        name=name, data=data, models=models, samples=samples, seeds=seeds, seeds_together=together,
        train=tuple(sorted(train.items())), design=kind, isoflop=isoflop, suggest=suggest, lr_search=lr_search,
        wsd=wsd, retries=retries, slurm=slurm, validation=validation, auto_precision=auto_precision,
        blind_baseline=blind, families=families, source=source,
        reuse=tuple(str(p) for p in _list(f"{where}: reuse", raw["reuse"])) if raw.get("reuse") else (),
    )


def _parse_design(
    where: str, raw: Mapping[str, Any],
) -> tuple[str, tuple[int, ...], IsoflopSpec | None, SuggestSpec | None]:
    """The spec's ``design:`` (grid, isoflop or suggest) with the ``samples:`` a grid needs:
    (kind, samples, isoflop, suggest), the last three empty or None where the design has none."""
    design_raw = raw.get("design", "grid")
    isoflop = None
    if isinstance(design_raw, Mapping):
        kind = str(design_raw.get("kind"))
        allowed = ("kind", "results", "target_flops", "budget_flops", "count") if kind == "suggest" else \
            ("kind", "budgets", "min_samples", "max_samples")
        _check_keys(f"{where}: design", design_raw, allowed, ("kind",))
    else:
        kind, design_raw = str(design_raw), {}
    if kind not in ("grid", "isoflop", "suggest"):
        close = difflib.get_close_matches(kind, ("grid", "isoflop", "suggest"), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BadInput(f"{where}: design {kind!r} is not grid, isoflop or suggest{hint}")
    samples: tuple[int, ...] = ()
    suggest = None
    if kind == "suggest":
        for key in ("results", "target_flops", "budget_flops"):
            if key not in design_raw:
                raise BadInput(f"{where}: design suggest needs {key!r}")
        if "samples" in raw:
            raise BadInput(f"{where}: samples is for the grid design; suggest chooses D itself")
        suggest = SuggestSpec(
            results=str(design_raw["results"]),
            target_flops=_number(f"{where}: design.target_flops", design_raw["target_flops"]),
            budget_flops=_number(f"{where}: design.budget_flops", design_raw["budget_flops"]),
            count=_number(f"{where}: design.count", design_raw.get("count", 4), int),
        )
    elif kind == "grid":
        if "samples" not in raw:
            raise BadInput(f"{where}: design grid needs 'samples' (the data sizes D)")
        samples = tuple(_number(f"{where}: samples", s, int) for s in _list(f"{where}: samples", raw["samples"]))
        _no_duplicates(f"{where}: samples", samples)
        if set(design_raw) - {"kind"}:
            raise BadInput(f"{where}: design grid takes no budgets; use kind: isoflop")
    else:
        if "budgets" not in design_raw:
            raise BadInput(f"{where}: design isoflop needs 'budgets' (FLOPs)")
        if "samples" in raw:
            raise BadInput(f"{where}: samples is for the grid design; isoflop derives D from the budgets")
        budgets = tuple(_number(f"{where}: design.budgets", b)
                        for b in _list(f"{where}: design.budgets", design_raw["budgets"]))
        mx = design_raw.get("max_samples")
        isoflop = IsoflopSpec(
            budgets=tuple(sorted(budgets)),
            min_samples=_number(f"{where}: design.min_samples", design_raw.get("min_samples", 1), int),
            max_samples=None if mx is None else _number(f"{where}: design.max_samples", mx, int),
        )
    return kind, samples, isoflop, suggest


def _parse_lr_search(where: str, ls: Any, train: Mapping[str, Any]) -> LRSearchSpec | None:
    """The spec's ``lr_search:`` block (None when it has none); it excludes a fixed ``train.lr``."""
    if ls is None:
        return None
    _check_keys(f"{where}: lr_search", ls, ("trials", "samples", "low", "high"))
    lr_search = LRSearchSpec(
        trials=_number(f"{where}: lr_search.trials", ls.get("trials", 6), int),
        samples=_number(f"{where}: lr_search.samples", ls.get("samples", 512), int),
        low=_number(f"{where}: lr_search.low", ls.get("low", 1e-4)),
        high=_number(f"{where}: lr_search.high", ls.get("high", 1e-2)),
    )
    if lr_search.low >= lr_search.high:
        raise BadInput(f"{where}: lr_search.low must be below lr_search.high")
    if "lr" in train:
        raise BadInput(f"{where}: give either train.lr or lr_search, not both")
    return lr_search


def _parse_wsd(where: str, w: Any) -> WSDSpec:
    """The spec's ``wsd:`` block (the default :class:`WSDSpec` when it has none)."""
    if w is None:
        return WSDSpec()
    _check_keys(f"{where}: wsd", w, ("enabled", "cooldown_frac"))
    frac = _number(f"{where}: wsd.cooldown_frac", w.get("cooldown_frac", 0.2))
    if not frac < 1:
        raise BadInput(f"{where}: wsd.cooldown_frac must be in (0, 1)")
    return WSDSpec(enabled=_bool(f"{where}: wsd.enabled", w.get("enabled", True)), cooldown_frac=frac)


def _parse_seeds_together(where: str, value: Any) -> float:
    """``true`` (every size: inf), ``false`` (0) or a parameter count (the largest size grouped)."""
    if isinstance(value, bool):
        return math.inf if value else 0.0
    if isinstance(value, (int, float)) or isinstance(value, str):
        try:
            limit = float(value)
        except ValueError:
            limit = -1.0
        if limit > 0 and math.isfinite(limit):
            return limit
    raise BadInput(f"{where}: expected true, false or the largest model size to group (parameters, e.g. 1e6), "
                   f"got {value!r}")


MODEL_OPTION_KEYS = ("head", "patch_size", "keypoints", "film", "mup_base_width", "d_model", "n_layers", "n_heads")
"""``train:`` keys that shape one family's model (`scaling.model.family.OPTION_DEFAULTS`): with ``families:``
they go under the family they belong to."""


def _parse_families(where: str, raw: Any, spec: Mapping[str, Any], train: Mapping[str, Any],
                    models: tuple, kind: str) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    """The ``families:`` key: a list of family names, or a mapping name -> that family's own ``train:`` settings.

    Raises:
        BadInput: an unknown family, a family listed twice or alone, ``train.family`` beside it, a model
            option in the shared ``train:``, a size that is not a parameter count, or a feature that plans
            by model size alone (lr_search, validation rounds, design suggest, precision auto).
    """
    w = f"{where}: families"
    if isinstance(raw, Mapping):
        items = [(name, own) for name, own in raw.items()]
    elif isinstance(raw, (list, tuple)):
        items = [(name, None) for name in raw]
    else:
        raise BadInput(f"{w}: expected a list of family names (e.g. [vla, conv]) or a mapping of name -> train "
                       f"settings, got {raw!r}")
    if "family" in train:
        raise BadInput(f"{where}: give either train.family (one family) or families: (several), not both")
    if len(items) < 2:
        raise BadInput(f"{w}: lists {len(items)} family; for one family set train.family instead")
    for feature, present in (("lr_search", spec.get("lr_search") is not None),
                             ("validation", spec.get("validation") is not None),
                             ("design suggest", kind == "suggest"),
                             ("train.precision: auto", train.get("precision") == "auto")):
        if present:
            raise BadInput(f"{where}: {feature} is not supported with families: (it is planned per model size, and "
                           "each family builds its own model of a size); use one spec per family")
    for key in MODEL_OPTION_KEYS:
        if key in train:
            raise BadInput(f"{where}: train.{key} shapes one family's model; with families: put it under that "
                           f"family (families: {{vla: {{{key}: {train[key]!r}}}, ...}})")
    for i, size in enumerate(models):
        _count_size(f"{where}: models[{i}]", size)
    built_in = _built_in_families()
    out, seen = [], set()
    for name, own in items:
        if not isinstance(name, str) or not name.strip():
            raise BadInput(f"{w}: {name!r} is not a family name")
        name = name.strip()
        if ":" not in name and built_in and name not in built_in:
            close = difflib.get_close_matches(name, built_in, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BadInput(f"{w}: unknown family {name!r}{hint}; give a built-in family ({', '.join(built_in)}) or "
                           "MODULE:ATTR")
        if name in seen:
            raise BadInput(f"{w}: {name!r} is listed twice")
        seen.add(name)
        own = own or {}
        if not isinstance(own, Mapping):
            raise BadInput(f"{w}.{name}: expected a mapping of train settings for this family, got {own!r}")
        own = _legacy_train(f"{w}.{name}", own)
        for key in own:
            if key in RESERVED_TRAIN_KEYS or key == "family":
                raise BadInput(f"{w}.{name}: {key} is set by the sweep per run; remove it")
        _check_train_values(f"{w}.{name}", {**train, **own, "family": name})
        out.append((name, tuple(sorted(own.items()))))
    return tuple(out)


def _built_in_families() -> tuple[str, ...]:
    """The short names of the families shipped in ``scaling`` (empty where it is not installed)."""
    try:
        from scaling.model.family import BUILT_IN
    except ImportError:  # training package not installed: leave the check to planning
        return ()
    return tuple(BUILT_IN)


def _count_size(where: str, size: Any) -> None:
    """A model size of a ``families:`` spec must be a parameter count: each family builds that many parameters."""
    try:
        from scaling.model.family import target_params
    except ImportError:  # training package not installed: leave the check to planning
        return
    try:
        target_params("conv", size)
    except BadInput:
        raise BadInput(f"{where}: {size!r} is not a parameter count; with families: every size must be one (30000, "
                       "3e4 or 30k) so that each family builds a model of that many parameters (shapes like 48x2 "
                       "and presets like debug are the vla family's)") from None


RESOLVED_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
"""What ``auto`` can resolve to (``scaling.hardware.resolve_precision``)."""


def _parse_auto_precision(where: str, raw: Any, train: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The ``auto_precision:`` mapping (model size -> precision) of a spec whose ``train.precision`` is auto."""
    if raw is None:
        return ()
    if train.get("precision") != "auto":
        raise BadInput(f"{where}: only for train.precision: auto (this spec's is "
                       f"{train.get('precision', 'the default')}); remove it")
    if not isinstance(raw, Mapping):
        raise BadInput(f"{where}: expected a mapping of model size -> precision, got {type(raw).__name__}")
    out: dict[str, str] = {}
    for size, precision in raw.items():
        key = str(_parse_model(f"{where}.{size}", size))
        if precision not in RESOLVED_PRECISIONS:
            raise BadInput(f"{where}.{size}: {precision!r} is not one of {', '.join(RESOLVED_PRECISIONS)}")
        if key in out:
            raise BadInput(f"{where}: size {size!r} is listed twice")
        out[key] = precision
    return tuple(out.items())


_POINT_KEYS = ("size", "n_params", "samples", "predicted_loss", "predicted_lo", "predicted_hi", "recommended")


def _parse_validation(where: str, raw: Any) -> tuple[ValidationRound, ...]:
    """The `validation:` list (rounds written by `scaling sweep validate`)."""
    if raw is None:
        return ()
    rounds = []
    for i, r in enumerate(_list(where, raw)):
        w = f"{where}[{i}]"
        _check_keys(w, r, ("budget", "fit", "seeds", "points"), ("budget", "fit", "points"))
        seeds = tuple(_number(f"{w}.seeds", x, int, positive=False) for x in _list(f"{w}.seeds", r.get("seeds", [0])))
        points = []
        for j, p in enumerate(_list(f"{w}.points", r["points"])):
            pw = f"{w}.points[{j}]"
            _check_keys(pw, p, _POINT_KEYS, _POINT_KEYS[:6])
            lo, mid, hi = (_number(f"{pw}.{k}", p[k]) for k in ("predicted_lo", "predicted_loss", "predicted_hi"))
            if not lo <= mid <= hi:
                raise BadInput(f"{pw}: predicted_lo <= predicted_loss <= predicted_hi does not hold "
                               f"({lo}, {mid}, {hi})")
            points.append(ValidationPoint(
                size=_parse_model(f"{pw}.size", p["size"]), n_params=_number(f"{pw}.n_params", p["n_params"], int),
                samples=_number(f"{pw}.samples", p["samples"], int), predicted_loss=mid, predicted_lo=lo,
                predicted_hi=hi, recommended=_bool(f"{pw}.recommended", p.get("recommended", False))))
        if sum(p.recommended for p in points) != 1:
            raise BadInput(f"{w}: exactly one point must be recommended: true")
        rounds.append(ValidationRound(budget=_number(f"{w}.budget", r["budget"]), fit=str(r["fit"]), seeds=seeds,
                                      points=tuple(points)))
    return tuple(rounds)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec YAML file.

    Raises:
        BadInput: Missing file, malformed YAML, or an invalid spec (one line).
    """
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{p}: sweep spec not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "malformed YAML"
        raise BadInput(f"{p}: not valid YAML ({first})") from None
    if raw is None:
        raise BadInput(f"{p}: empty sweep spec")
    return parse_spec(raw, str(p))
