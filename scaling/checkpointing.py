"""Checkpoints of a run: one strategy-neutral file format, written atomically, read with weights_only.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts::

    {"global_step": int,                      # optimizer steps done
     "state_dict": {"model.<name>": Tensor},  # full (unsharded) weights, names as in the bare model
     "optimizer_states": [AdamW state],       # keyed by parameter name (see below)
     "scaling": {...}}                        # the run's own state: losses, timings, configs

Weights and optimizer state are gathered to full tensors whatever the strategy (one process, DDP,
FSDP), and optimizer state is keyed by parameter *name*, so a checkpoint resumes under another
strategy or world size. Checkpoints in Lightning's layout (optimizer state keyed by position, as in
the study's stable-phase checkpoints) load too. Each file is written under a temporary name and renamed, so a kill -9
mid-save leaves the previous checkpoint intact; every file loads with ``torch.load(weights_only=True)``.
An ensemble's checkpoint (`scaling.ensemble`) holds one such dict per member, under ``members``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

_PREFIX = "model."  # the LightningModule layout's, so checkpoints in that layout load unchanged


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The run's own metadata in a checkpoint: run/model config, losses (see `scaling.trainer`)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"global_step": int(ckpt.get("global_step", 0)), **ckpt.get("scaling", {})}


def _options(module, **kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Offloading a CPU-sharded FSDP state dict "to CPU" aliases freed shards (a segfault on gloo).
    on_gpu = any(p.device.type == "cuda" for p in module.parameters())
    return StateDictOptions(full_state_dict=True, cpu_offload=on_gpu, **kw)


def gather_weights(module: torch.nn.Module) -> dict:
    """Full model state dict keyed by parameter name (collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options(module))


def gather_state(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full model and optimizer state dicts, keyed by parameter name (collective under FSDP).

    Args:
        module: the model as trained (plain, DDP- or FSDP-wrapped; not Fabric's wrapper).
        optimizer: its optimizer (not Fabric's wrapper).
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    opts = _options(module)
    model_sd = get_model_state_dict(module, options=opts)
    optim_sd = get_optimizer_state_dict(module, optimizer, options=opts)
    return model_sd, optim_sd


def checkpoint_payload(module, optimizer, global_step: int, meta: dict) -> dict:
    """One model's checkpoint as the dict the file holds (collective under FSDP: every rank calls it)."""
    model_sd, optim_sd = gather_state(module, optimizer)
    return {"global_step": int(global_step), "state_dict": {_PREFIX + k: v for k, v in model_sd.items()},
            "optimizer_states": [optim_sd], "scaling": meta}


def write_checkpoint(path: Path, payload: dict) -> None:
    """Write `payload` to `path` atomically (a temporary name, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, module, optimizer, global_step: int, meta: dict, *, is_rank_zero: bool,
                    barrier) -> None:
    """Collective save (every rank calls it): gather, then rank 0 writes `path` atomically."""
    payload = checkpoint_payload(module, optimizer, global_step, meta)
    if is_rank_zero:
        write_checkpoint(path, payload)
    barrier()


def load_checkpoint(path: str | os.PathLike, module, optimizer, names: list[str]) -> dict:
    """Load weights and optimizer state into the (possibly wrapped) module; returns the checkpoint's meta.

    Args:
        names: parameter names in optimizer order, to read checkpoints whose optimizer state is keyed
            by position (Lightning's layout).
    """
    return restore_checkpoint(torch.load(path, map_location="cpu", weights_only=True), module, optimizer, names)


def restore_checkpoint(ckpt: dict, module, optimizer, names: list[str]) -> dict:
    """`load_checkpoint` of a checkpoint dict already read (one member of an ensemble's file)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    model_sd = {k.removeprefix(_PREFIX): v for k, v in ckpt["state_dict"].items()}
    opts = _options(module)
    set_model_state_dict(module, model_sd, options=opts)
    states = ckpt.get("optimizer_states") or []
    if states:
        set_optimizer_state_dict(module, optimizer, _by_name(states[0], names), options=opts)
    return {"global_step": int(ckpt.get("global_step", 0)), **ckpt.get("scaling", {})}


def _by_name(optim_sd: dict, names: list[str]) -> dict:
    """Optimizer state keyed by parameter name (converts the positional layout of torch's state_dict)."""
    groups = optim_sd["param_groups"]
    if not groups or not groups[0]["params"] or isinstance(groups[0]["params"][0], str):
        return optim_sd
    position = {i: names[n] for n, i in enumerate(p for g in groups for p in g["params"])}
    return {"state": {position[i]: s for i, s in optim_sd["state"].items()},
            "param_groups": [{**g, "params": [position[i] for i in g["params"]]} for g in groups]}


__all__ = ["read_checkpoint_meta", "gather_weights", "gather_state", "checkpoint_payload",
           "write_checkpoint", "save_checkpoint", "load_checkpoint", "restore_checkpoint"]
