"""Model families: the one seam between the framework and a policy architecture.

A family turns a size (a target parameter count, or a name the family knows) and the data's
dimensions into a `ResolvedModel`: the exact parameter counts, the training FLOPs per sample and
where that figure came from, and a way to build the torch module. Everything that depends on the
architecture (the train command, the planner, calibration, FSDP, muP, evaluation) asks the family,
so a family is chosen by one setting, ``family`` (``scaling train --family``,
``train: {family: ...}`` in a spec):

- a short name of a family shipped here (`BUILT_IN`: ``vla``, the default; ``conv``), or
- ``MODULE:ATTR``: ATTR of an importable module, either a `ModelFamily` or a plain factory
  ``factory(size: int, dims: Dims) -> nn.Module`` (wrapped in `FactoryFamily`).

Short names resolve to ``MODULE:ATTR`` too, so the built-in families are reached through the same
import as anyone's. Modules are looked up on ``sys.path``, then in the folders of
``$SCALING_FAMILY_PATH`` (``os.pathsep``-separated; a sweep puts its spec's folder and the current
directory there, and every worker and run inherits it), then in the current directory.

No torch at import: planning a sweep of the built-in family stays torch-free; a factory family
imports torch when it is resolved (it has to build the module to count it).
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_core.errors import BadInput, one_line

DEFAULT = "vla"
"""The family a run uses when it names none."""
BUILT_IN: dict[str, str] = {
    "vla": "scaling.model.vla_family:FAMILY",
    "conv": "scaling.model.conv:conv_policy",
}
"""Short names of the families shipped in this package, each a ``MODULE:ATTR``."""
FAMILY_PATH_ENV = "SCALING_FAMILY_PATH"
"""Environment variable: extra folders (``os.pathsep``-separated) to import family modules from."""
SIZE_TOLERANCE = 0.15
"""A factory's module may miss its target parameter count by at most this fraction."""
OPTION_DEFAULTS: dict[str, Any] = {
    "head": "discrete", "patch_size": None, "keypoints": 0, "film": False, "mup_base_width": None,
    "d_model": None, "n_layers": None, "n_heads": None,
}
"""RunConfig fields that shape a model beside its size and data, at their defaults. The built-in
`vla` family takes all of them; a factory family takes none (its size and the data are its inputs)."""


@dataclass(frozen=True)
class Dims:
    """What a family knows about the data: the shapes of the batch its module receives."""

    image_size: int
    """Side of the square RGB images (pixels): ``batch["image"]`` is uint8 (B, image_size, image_size, 3)."""
    proprio_dim: int
    """Proprioception features: ``batch["proprio"]`` is float32 (B, proprio_dim), standardised."""
    action_dim: int
    """Action dimensions per step."""
    vocab_size: int
    """Instruction vocabulary, padding id 0 included: ``batch["instruction"]`` ids lie in [0, vocab_size)."""
    max_instr_len: int
    """Padded instruction length: ``batch["instruction"]`` is int64 (B, max_instr_len), 0 = padding."""
    action_bins: int = 256
    """Bins per action dimension: ``batch["action_tokens"]`` is int64 (B, chunk, action_dim) in [0, action_bins)."""
    chunk: int = 1
    """Future actions per sample: ``batch["actions"]`` is float32 (B, chunk, action_dim) in [-1, 1]."""

    @property
    def image_channels(self) -> int:
        """Colour channels of the images (always RGB)."""
        return 3

    def to_dict(self) -> dict[str, int]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)


def dims_of(source, chunk: int = 1) -> Dims:
    """The `Dims` of a `DataSource` (docs/contracts.md) for runs predicting `chunk` actions."""
    return Dims(image_size=int(source.image_size), proprio_dim=int(source.proprio_dim),
                action_dim=int(source.action_dim), vocab_size=int(source.tokenizer.vocab_size),
                max_instr_len=int(source.tokenizer.max_len),
                action_bins=int(getattr(source.action_tokenizer, "bins", 256)), chunk=int(chunk))


def model_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The model options among RunConfig-style `values` (a run's config, a spec's ``train:``) that
    differ from their defaults (`OPTION_DEFAULTS`): what a family's `resolve` is given beside the size."""
    return {k: values[k] for k in OPTION_DEFAULTS if k in values and values[k] != OPTION_DEFAULTS[k]}


@dataclass(frozen=True)
class ResolvedModel:
    """One model of a family, resolved for a size and the data: its counts, its cost, how to build it."""

    family: str
    """The family as the run names it (``vla``, ``conv``, ``MODULE:ATTR``)."""
    size: Any
    """The size as asked (a preset name, a count, a shape)."""
    n_params: int
    """Total parameters of the built module, exact."""
    n_params_nonembed: int
    """Non-embedding parameters: the N of the scaling fits."""
    flops_per_sample: int
    """Training FLOPs per sample (forward + backward)."""
    flops_source: str
    """Where `flops_per_sample` came from: ``analytic`` (the family's own accounting, tested equal to
    torch's FlopCounterMode) or ``measured`` (FlopCounterMode over one training step, per sample)."""
    shape: dict
    """What result.json records as ``model`` besides the counts (JSON-safe; d_model, n_layers, n_heads
    for the built-in transformer, which the results table takes as columns)."""
    size_name: str
    """A size this family resolves to exactly this model again (what `sweep validate` writes into a spec)."""
    pinned: dict = field(default_factory=dict)
    """``model`` section fields a run's resolved config.yaml sets so that it rebuilds this model without
    asking a size solver again (the built-in family: the whole shape as ``size``, "WIDTHxBLOCKSxHEADS");
    {} keeps the size."""
    config: Any = field(default=None, compare=False, repr=False)
    """The family's own description of the model (a `ModelConfig` for ``vla``)."""
    owner: Any = field(default=None, compare=False, repr=False)
    """The `ModelFamily` that resolved it (builds it)."""

    def build(self):
        """A fresh torch module (new initial weights from torch's global RNG) with ``forward(batch,
        predict=False)`` -> (loss, metrics), or the (B, chunk, A) actions when ``predict``;
        ``loss(batch)``; ``predict(batch)``."""
        return self.owner.build(self)

    def describe(self) -> dict:
        """result.json's ``model``: the shape, the family, the counts and where the FLOPs came from."""
        return {**self.shape, "family": self.family, "n_params": self.n_params,
                "n_params_nonembed": self.n_params_nonembed, "flops_per_sample": self.flops_per_sample,
                "flops_source": self.flops_source}

    def to_dict(self) -> dict:
        """What a checkpoint records of the model (plain values)."""
        cfg = self.config.to_dict() if hasattr(self.config, "to_dict") else dict(self.config or {})
        return {"family": self.family, **cfg}


class ModelFamily(abc.ABC):
    """A model family: `resolve` a size for the data, `build` the resolved model.

    Subclass it for a family with its own size names or an analytic cost model (the built-in `vla`);
    a plain factory needs none of this (`FactoryFamily` wraps it).
    """

    name: str = ""
    """The family's name as runs record it."""

    @abc.abstractmethod
    def resolve(self, size: Any, dims: Dims, options: Mapping[str, Any]) -> ResolvedModel:
        """The model of `size` for data of `dims`; `options` are the non-default `model_options` of the run.

        Raises:
            BadInput: a size the family cannot build, or an option it does not take.
        """

    @abc.abstractmethod
    def build(self, model: ResolvedModel):
        """A fresh torch module for `model` (see `ResolvedModel.build`)."""


def target_params(family: str, size: Any) -> int:
    """A size as a target parameter count (a number, ``"30k"``, ``"1.5m"``, ``"1e6"``).

    Raises:
        BadInput: anything else, e.g. a shape such as ``48x2`` or ``debug``, which only the vla family knows.
    """
    from scaling.model.presets import parse_size

    try:
        preset = parse_size(size)
    except BadInput:
        preset = None
    if preset is None or preset.target is None:
        raise BadInput(f"family {family}: size {size!r} is not a parameter count (write it as 30000, 3e4 or "
                       "30k; shapes and 'debug' are sizes of the vla family)")
    return int(round(preset.target))


class FactoryFamily(ModelFamily):
    """A family from a plain factory ``factory(size: int, dims: Dims) -> nn.Module``.

    The module keeps the built-in model's contract (docs/contracts.md): ``forward(batch) -> (loss,
    metrics)`` and ``predict(batch) -> (B, chunk, A)`` actions in [-1, 1]. Optional: a method
    ``n_params_nonembed() -> int`` (default: parameters outside ``nn.Embedding`` / ``nn.EmbeddingBag``),
    an attribute ``fsdp_units`` naming block classes (each instance one FSDP unit; default: the whole
    model one unit), a method ``param_groups(lr, weight_decay)`` (default: weight decay on matrices
    outside embeddings). The factory must build the same architecture for the same arguments.
    """

    def __init__(self, name: str, factory: Callable) -> None:
        self.name = name
        self.factory = factory
        self._resolved: dict[tuple, ResolvedModel] = {}

    def _make(self, target: int, dims: Dims):
        """factory(target, dims), checked to be an nn.Module; its own errors become one line."""
        from torch import nn

        try:
            module = self.factory(target, dims)
        except BadInput:
            raise
        except Exception as exc:  # noqa: BLE001 - a defect of the family's code, reported as bad input
            raise BadInput(f"family {self.name}: factory({target}, dims) raised {one_line(exc)}") from None
        if not isinstance(module, nn.Module):
            raise BadInput(f"family {self.name}: factory({target}, dims) returned {type(module).__name__}, "
                           "not a torch nn.Module")
        return module

    def resolve(self, size: Any, dims: Dims, options: Mapping[str, Any]) -> ResolvedModel:
        """Build the module once, count it, check its contract and measure its FLOPs (cached per size and dims)."""
        if options:
            names = ", ".join(sorted(options))
            raise BadInput(f"family {self.name}: {names} {'is an option' if len(options) == 1 else 'are options'} "
                           "of the vla family; this family builds its model from the size and the data alone")
        target = target_params(self.name, size)
        key = (target, dims)
        if key not in self._resolved:
            from scaling.model.measure import check_contract, count_params, measure_training_flops

            module = self._make(target, dims)
            total, nonembed = count_params(module, self.name)
            if abs(total / target - 1) > SIZE_TOLERANCE:
                raise BadInput(f"family {self.name}: size {target:,} built {total:,} parameters "
                               f"({total / target - 1:+.0%}); "
                               f"a model within {SIZE_TOLERANCE:.0%} of its size is needed")
            flops = measure_training_flops(module, dims, self.name)
            check_contract(module, dims, self.name)
            shape = {"target_params": target, **dims.to_dict()}
            self._resolved[key] = ResolvedModel(
                family=self.name, size=size, n_params=total, n_params_nonembed=nonembed, flops_per_sample=flops,
                flops_source="measured", shape=shape, size_name=str(target),
                config={"target_params": target, "dims": dims.to_dict()}, owner=self)
        return dataclasses.replace(self._resolved[key], size=size)

    def build(self, model: ResolvedModel):
        """factory(size, dims) again, in the framework's calling convention (`FamilyPolicy`).

        Raises:
            BadInput: the factory built another parameter count than when the model was resolved.
        """
        from scaling.model.measure import FamilyPolicy, count_params

        dims = Dims(**model.config["dims"])
        module = self._make(model.config["target_params"], dims)
        if count_params(module, self.name)[0] != model.n_params:
            raise BadInput(f"family {self.name}: factory({model.config['target_params']}, dims) built "
                           f"{count_params(module, self.name)[0]:,} parameters this time, {model.n_params:,} before; "
                           "a factory must build the same model for the same arguments")
        return FamilyPolicy(module)


def search_dirs(extra: tuple[str | os.PathLike, ...] | list = ()) -> list[str]:
    """Where family modules are looked up beyond ``sys.path``: `extra`, ``$SCALING_FAMILY_PATH``, the cwd."""
    env = [d for d in os.environ.get(FAMILY_PATH_ENV, "").split(os.pathsep) if d]
    out: list[str] = []
    for d in [*map(str, extra), *env, os.getcwd()]:
        path = str(Path(d).resolve())
        if path not in out:
            out.append(path)
    return out


def export_search_dirs(*dirs: str | os.PathLike) -> None:
    """Put `dirs` first in ``$SCALING_FAMILY_PATH`` of this process, so the processes it starts
    (sweep workers, their runs) import family modules from there too."""
    current = [d for d in os.environ.get(FAMILY_PATH_ENV, "").split(os.pathsep) if d]
    new = [str(Path(d).resolve()) for d in dirs]
    os.environ[FAMILY_PATH_ENV] = os.pathsep.join(dict.fromkeys(new + current))


_LOADED: dict[str, ModelFamily] = {}


def load_family(ref: str | None, search: tuple | list = ()) -> ModelFamily:
    """The family a run names: a short name (`BUILT_IN`) or ``MODULE:ATTR``; None is the default.

    Args:
        ref: the family as written.
        search: further folders to import MODULE from (a spec's folder), tried after ``sys.path``.

    Raises:
        BadInput: one line for each defect: not a name or MODULE:ATTR, module not found (or failing to
            import), attribute missing, attribute neither a `ModelFamily` nor callable.
    """
    ref = DEFAULT if ref is None else str(ref).strip()
    if ref in _LOADED:
        return _LOADED[ref]
    target = BUILT_IN.get(ref, ref)
    module_name, colon, attr = target.partition(":")
    if not colon or not module_name or not attr:
        raise BadInput(f"family {ref!r}: give a built-in family ({', '.join(BUILT_IN)}) or MODULE:ATTR "
                       "(a factory(size, dims) -> nn.Module in an importable module)")
    dirs = search_dirs(search)
    for d in dirs:
        if d not in sys.path:
            sys.path.append(d)  # after sys.path: a family module never shadows an installed one
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise BadInput(f"family {ref}: module {module_name!r} not found (looked on sys.path and in "
                           f"{', '.join(dirs)})") from None
        raise BadInput(f"family {ref}: importing {module_name} failed: {one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the module's own code failed: one line, no traceback
        raise BadInput(f"family {ref}: importing {module_name} failed: {one_line(exc)}") from None
    if not hasattr(module, attr):
        raise BadInput(f"family {ref}: module {module_name} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if isinstance(obj, ModelFamily):
        family = obj
    elif callable(obj):
        family = FactoryFamily(ref, obj)
    else:
        raise BadInput(f"family {ref}: {module_name}.{attr} is not callable (it is of type {type(obj).__name__}; "
                       "a family is a factory(size, dims) -> nn.Module)")
    _LOADED[ref] = family
    return family


def resolve_model(family: str | None, size: Any, dims: Dims, options: Mapping[str, Any] | None = None,
                  search: tuple | list = ()) -> ResolvedModel:
    """`load_family(family).resolve(size, dims, options)`: a family's model for explicit inputs (the layer
    below `run_model`, which every run, plan and calibration goes through)."""
    return load_family(family, search).resolve(size, dims, dict(options or {}))


def run_model(cfg, dims: Dims, search: tuple | list = ()) -> ResolvedModel:
    """The model a run of `cfg` (a `scaling.config.RunConfig`) builds on data of `dims`: the one path from
    a run's settings to its model, its parameter counts and its FLOPs per sample.

    Training (`scaling.train`, `scaling.ensemble`), the precision probe (`scaling.train_cli.auto_precision`),
    the sweep planner (`sweeps.points.model_of`, which builds the RunConfig its runs get), calibration,
    validation rounds and the benchmarks all call it, so the same settings give the same model
    everywhere: the family (``cfg.model.family``), the size (``cfg.model.size_value``), the model options
    (`model_options` of ``cfg.model``: head, patch_size, keypoints, film, mup_base_width) and
    the action chunk (``cfg.model.chunk``, which replaces ``dims.chunk``); the rest of `dims` is the data's
    (`dims_of` a source). `search`: further folders to import a family module from (a spec's folder).

    Raises:
        BadInput: a family that cannot be loaded, or a size or option it cannot build.
    """
    run_dims = dataclasses.replace(dims, chunk=int(cfg.model.chunk))
    options = model_options(dataclasses.asdict(cfg.model))
    return resolve_model(cfg.model.family, cfg.model.size_value, run_dims, options, search)


__all__ = ["BUILT_IN", "DEFAULT", "Dims", "FAMILY_PATH_ENV", "FactoryFamily", "ModelFamily", "OPTION_DEFAULTS",
           "ResolvedModel", "SIZE_TOLERANCE", "dims_of", "export_search_dirs", "load_family", "model_options",
           "resolve_model", "run_model", "search_dirs", "target_params"]
