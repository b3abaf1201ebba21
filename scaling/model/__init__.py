"""Model families (`scaling.model.family`: the seam; `vla` the built-in transformer, `conv` a conv policy)
and the VLA's configs and named sizes, the size solver, accounting, and the module.

`ModelConfig`, `PRESETS`, `count_params`, `flops_per_sample` and friends are torch-free; `VLA`
and `param_groups` import torch on first use.
"""

from scaling.model.accounting import approx_6nd, count_params, describe, flops_per_sample
from scaling.model.config import ModelConfig, image_normalisation
from scaling.model.family import Dims, ModelFamily, ResolvedModel, dims_of, load_family, resolve_model, run_model
from scaling.model.presets import CPU_LADDER, PRESETS, parse_size
from scaling.model.solver import shape_for_params as _shape_for_params


def __getattr__(name: str):
    # Torch-bound names load lazily so planning code (sweeps) can import this package cheaply.
    if name == "VLA":
        from scaling.model.vla import VLA
        return VLA
    if name == "param_groups":
        from scaling.model.mup import param_groups
        return param_groups
    raise AttributeError(f"module 'scaling.model' has no attribute {name!r}")


__all__ = ["CPU_LADDER", "PRESETS", "VLA", "Dims", "ModelConfig", "ModelFamily", "ResolvedModel", "approx_6nd",
           "count_params", "describe", "dims_of", "flops_per_sample", "image_normalisation", "load_family",
           "param_groups", "parse_size", "resolve_model", "run_model", "shape_for_params"]


def shape_for_params(target: float, **data) -> tuple[int, int, int]:
    """(d_model, n_layers, n_heads) of `ModelConfig` closest to `target` parameters (see `scaling.model.solver`)."""
    return _shape_for_params(target, ModelConfig, **data)
