"""A family's module, measured and held to the contract: parameter counts, training FLOPs, forward and predict.

Training FLOPs per sample are what torch's `FlopCounterMode` counts over one forward and backward pass
of a batch of `MEASURE_BATCH` random samples in the data contract's shapes, divided by the batch:
matmuls and convolutions (2 FLOPs per multiply-add), backward included, attention on the math SDPA
kernel (whose matmuls the counter sees); elementwise work is not counted, as in the built-in family's
analytic accounting (`scaling.model.accounting`), which a test holds equal to this measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vla_core.errors import BadInput, one_line

if TYPE_CHECKING:  # annotations only: the family module imports this one when it resolves a factory
    from scaling.model.family import Dims

MEASURE_BATCH = 2
"""Samples of the batch the FLOPs are counted on (the count is divided by it)."""


def contract_batch(dims: Dims, batch_size: int = MEASURE_BATCH, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random batch in the data contract's shapes (docs/contracts.md) for data of `dims`, on the CPU."""
    from scaling.model.testing import random_batch

    batch = random_batch(dims, batch_size, seed=seed)
    batch["actions_raw"] = batch["actions"].clone()  # raw units: any scale will do for a shape check
    return batch


def count_params(module: nn.Module, family: str = "model") -> tuple[int, int]:
    """(total, non-embedding) parameters: the module's own ``n_params_nonembed()`` when it has one, else
    those outside ``nn.Embedding`` / ``nn.EmbeddingBag`` modules (shared parameters counted once)."""
    total = sum(p.numel() for p in module.parameters())
    own = getattr(module, "n_params_nonembed", None)
    if own is not None:
        try:
            value = own() if callable(own) else own
        except Exception as exc:  # noqa: BLE001 - the family's code: one line
            raise BadInput(f"family {family}: n_params_nonembed() raised {one_line(exc)}") from None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= total:
            raise BadInput(f"family {family}: n_params_nonembed() must be an integer in [0, {total:,}] "
                           f"(the total), got {value!r}")
        return total, value
    seen: set[int] = set()
    embedded = 0
    for m in module.modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            for p in m.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    embedded += p.numel()
    return total, total - embedded


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def forward_output(out: Any, family: str = "model") -> tuple[torch.Tensor, Mapping]:
    """(loss, metrics) from what ``forward(batch)`` returned, held to the contract.

    Raises:
        BadInput: not a pair, a loss that is not a scalar float tensor with a gradient, metrics not a dict.
    """
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise BadInput(f"family {family}: forward(batch) must return (loss, metrics); it returned {_kind(out)}")
    loss, metrics = out
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.is_floating_point()):
        raise BadInput(f"family {family}: forward(batch) must return (loss, metrics) with a scalar float loss "
                       f"tensor; the loss is {_kind(loss)}")
    if not loss.requires_grad:
        raise BadInput(f"family {family}: forward(batch)'s loss has no gradient (it depends on no parameter)")
    if not isinstance(metrics, Mapping):
        raise BadInput(f"family {family}: forward(batch) must return (loss, metrics) with metrics a dict; "
                       f"they are {_kind(metrics)}")
    return loss, metrics


def measure_training_flops(module: nn.Module, dims: Dims, family: str = "model",
                           batch_size: int = MEASURE_BATCH) -> int:
    """Training FLOPs per sample of `module` (forward + backward, `FlopCounterMode`), its forward checked.

    The module's gradients are cleared afterwards and its train/eval mode restored.

    Raises:
        BadInput: forward or backward raised, or forward broke the contract (`forward_output`).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    batch = contract_batch(dims, batch_size)
    was_training = module.training
    module.train()
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            try:
                out = module(batch)
            except Exception as exc:  # noqa: BLE001 - the family's code: one line
                raise BadInput(f"family {family}: forward(batch) raised {one_line(exc)}") from None
            loss, _ = forward_output(out, family)
            try:
                loss.backward()
            except Exception as exc:  # noqa: BLE001
                raise BadInput(f"family {family}: the loss's backward pass raised {one_line(exc)}") from None
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
    total = counter.get_total_flops()
    return int(round(total / batch_size))


def check_contract(module: nn.Module, dims: Dims, family: str = "model") -> None:
    """``predict(batch)`` gives (B, chunk, A) finite actions in [-1, 1], and ``fsdp_units`` (if any) names
    block classes of the module.

    Raises:
        BadInput: one line naming what is wrong.
    """
    predict = getattr(module, "predict", None)
    if not callable(predict):
        raise BadInput(f"family {family}: the module has no predict(batch) method")
    batch = contract_batch(dims)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            pred = predict(batch)
    except Exception as exc:  # noqa: BLE001 - the family's code: one line
        raise BadInput(f"family {family}: predict(batch) raised {one_line(exc)}") from None
    finally:
        module.train(was_training)
    want = (MEASURE_BATCH, dims.chunk, dims.action_dim)
    if not isinstance(pred, torch.Tensor) or tuple(pred.shape) != want:
        raise BadInput(f"family {family}: predict(batch) must return actions of shape (B, chunk, A) = {want}; "
                       f"it returned {_kind(pred)}")
    values = pred.detach().float()
    if not bool(torch.isfinite(values).all()) or float(values.abs().max()) > 1.0 + 1e-6:
        raise BadInput(f"family {family}: predict(batch) must return actions in [-1, 1]; it returned values in "
                       f"[{float(values.min()):.3g}, {float(values.max()):.3g}]")
    fsdp_unit_classes(module, family)


def fsdp_unit_classes(module: nn.Module, family: str = "model") -> set[type]:
    """The classes whose instances FSDP wraps as one unit each: the module's ``fsdp_units`` attribute
    (classes, or class names of its submodules); empty (the whole model one unit) without one.

    Raises:
        BadInput: an entry that is neither an nn.Module class nor the class name of a submodule.
    """
    spec = getattr(module, "fsdp_units", None) or ()
    if isinstance(spec, (str, type)):
        spec = (spec,)
    by_name = {type(m).__name__: type(m) for m in module.modules()}
    classes: set[type] = set()
    for unit in spec:
        if isinstance(unit, type) and issubclass(unit, nn.Module):
            classes.add(unit)
        elif isinstance(unit, str) and unit in by_name:
            classes.add(by_name[unit])
        else:
            raise BadInput(f"family {family}: fsdp_units entry {unit!r} is neither an nn.Module class nor the "
                           "class name of one of the model's blocks")
    return classes


def generic_param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups for a module that defines none: weight decay on matrices, not on vectors (biases,
    norms) nor on embedding tables; one learning rate. Same shape as `scaling.model.mup.param_groups`."""
    embedded = {id(p) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
                for p in m.parameters(recurse=False)}
    buckets: dict[str, list] = {"hidden": [], "input": [], "vector": []}
    for _, p in model.named_parameters():
        if p.requires_grad:
            kind = "input" if id(p) in embedded else "vector" if p.dim() < 2 else "hidden"
            buckets[kind].append(p)
    decay = {"hidden": weight_decay, "input": 0.0, "vector": 0.0}
    return [{"name": kind, "params": params, "lr": lr, "weight_decay": decay[kind]}
            for kind, params in buckets.items() if params]


class FamilyPolicy(nn.Module):
    """A factory family's module in the framework's calling convention (what `VLA` offers itself):
    ``forward(batch, predict=False)``, so every pass, prediction included, goes through the forward of
    DDP/FSDP wrappers (FSDP gathers its shards there); ``loss``; ``predict``. Its parameters are the
    module's, named ``policy.<name>``."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    @property
    def fsdp_units(self) -> tuple:
        """The module's own ``fsdp_units`` (none: the whole model is one FSDP unit)."""
        return tuple(fsdp_unit_classes(self.policy))

    def forward(self, batch: dict, predict: bool = False):
        """(loss, metrics), or the (B, chunk, A) actions when `predict`."""
        return self.policy.predict(batch) if predict else self.policy(batch)

    def loss(self, batch: dict):
        """(loss, metrics) of the module's forward."""
        return self.policy(batch)

    @torch.no_grad()
    def predict(self, batch: dict) -> torch.Tensor:
        """(B, chunk, A) actions in [-1, 1]."""
        return self.policy.predict(batch)

    def n_params_nonembed(self) -> int:
        """The module's non-embedding parameters (`count_params`)."""
        return count_params(self.policy)[1]

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The module's own ``param_groups(lr, weight_decay)`` when it has one, else `generic_param_groups`."""
        own = getattr(self.policy, "param_groups", None)
        return own(lr, weight_decay) if callable(own) else generic_param_groups(self, lr, weight_decay)


__all__ = ["MEASURE_BATCH", "FamilyPolicy", "check_contract", "contract_batch", "count_params", "forward_output",
           "fsdp_unit_classes", "generic_param_groups", "measure_training_flops"]
