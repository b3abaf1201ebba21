"""The built-in family, ``vla``: the transformer of `scaling.model.vla` behind the family seam.

Sizes are the presets, target parameter counts (the size solver picks the shape) or shapes
``WIDTHxBLOCKS`` (`scaling.model.presets`); its options are the RunConfig model fields
(`scaling.model.family.OPTION_DEFAULTS`). Parameter counts and FLOPs are analytic
(`scaling.model.accounting`, no torch), equal to torch's FlopCounterMode (tests/scaling/test_model_family.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from scaling.model.family import Dims, ModelFamily, ResolvedModel

_SHAPE = ("d_model", "n_layers", "n_heads")


class VLAFamily(ModelFamily):
    """Vision-language-action transformers of every size (`ModelConfig`, `VLA`)."""

    name = "vla"

    def config(self, size: Any, dims: Dims, options: Mapping[str, Any]):
        """The `ModelConfig` of `size`: a fixed shape (a preset like debug, "WIDTHxBLOCKS[xHEADS]", what a
        resolved config.yaml pins) builds without the size solver; the whole shape given in `options` (the
        factory-level seam; runs fold it into the size) likewise (the size is still checked to be one); a
        partial shape overrides the solver's; otherwise the solver's shape for the size.

        Raises:
            BadInput: an unknown size, or an impossible shape.
        """
        from scaling.model.config import ModelConfig
        from scaling.model.presets import parse_size

        opts = dict(options)
        shape = {k: opts.pop(k) for k in _SHAPE if opts.get(k) is not None}
        data = dict(image_size=dims.image_size, vocab_size=dims.vocab_size, max_instr_len=dims.max_instr_len,
                    proprio_dim=dims.proprio_dim, action_dim=dims.action_dim, chunk=dims.chunk,
                    action_bins=dims.action_bins, **opts)
        preset = parse_size(size)  # a typo is reported, not ignored
        if len(shape) == 3:
            return ModelConfig.from_shape(**shape, **data)
        if not shape and preset.target is None:  # a fixed shape (debug, "WxB", "WxBxH"): no size solver
            return ModelConfig.from_shape(d_model=preset.d_model, n_layers=preset.n_layers, n_heads=preset.n_heads,
                                          **data)
        cfg = ModelConfig.from_size(size, **data)
        if shape:
            if "d_model" in shape and "n_heads" not in shape:  # keep the preset's head width
                shape["n_heads"] = max(1, shape["d_model"] // cfg.head_dim)
            shape.setdefault("d_ff", 4 * shape.get("d_model", cfg.d_model))
            cfg = dataclasses.replace(cfg, **shape)  # __post_init__ checks heads divide width
        return cfg

    def resolve(self, size: Any, dims: Dims, options: Mapping[str, Any]) -> ResolvedModel:
        """The model of `config`, its counts from the analytic accounting; config.yaml pins its exact count
        and shape."""
        from scaling.model.accounting import count_params, describe, flops_per_sample

        cfg = self.config(size, dims, options)
        total, nonembed = count_params(cfg)
        shape = {k: v for k, v in describe(cfg).items() if k not in ("n_params", "n_params_nonembed",
                                                                       "flops_per_sample")}
        return ResolvedModel(
            family=self.name, size=size, n_params=total, n_params_nonembed=nonembed,
            flops_per_sample=flops_per_sample(cfg), flops_source="analytic", shape=shape,
            size_name=f"{cfg.d_model}x{cfg.n_layers}",
            pinned={"size": f"{cfg.d_model}x{cfg.n_layers}x{cfg.n_heads}"}, config=cfg, owner=self)

    def build(self, model: ResolvedModel):
        """`VLA(config)`: it keeps the framework's calling convention itself."""
        from scaling.model.vla import VLA

        return VLA(model.config)


FAMILY = VLAFamily()
"""The instance `scaling.model.family.BUILT_IN` names as ``vla``."""
