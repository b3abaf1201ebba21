"""`scaling train`: parse flags (one per RunConfig field), merge them over a YAML config, call `train`.

Heavy modules (torch, lightning) are imported inside the handler so other sub-commands stay fast.
"""

from __future__ import annotations

import argparse
import sys

# Flags spelled differently from their field, or with a short form.
_ALIASES = {"config": ("--config", "-c")}


def register(subparsers) -> None:
    """Add the ``train`` sub-command to the ``scaling`` parser."""
    from scaling.config import RunConfig, field_docs, field_names

    p = subparsers.add_parser(
        "train",
        help="train one VLA model of a given size on D samples",
        description="Train one VLA model of a given size on exactly D samples. Defaults < --config YAML "
                    "< flags; writes RUN_DIR/{config.yaml,result.json,metrics.csv,checkpoints/}.",
    )
    p.add_argument(*_ALIASES["config"], dest="config", default=None, metavar="RUN.yaml",
                   help="YAML file of RunConfig fields (flags override it)")
    docs = field_docs()
    defaults = RunConfig.__dataclass_fields__
    for name in field_names():
        flag = "--" + name.replace("_", "-")
        help_text = docs.get(name, "")
        default = defaults[name].default
        if name not in ("data", "out") and default is not None:
            help_text += f" [default: {default}]"
        if str(defaults[name].type).startswith("bool"):
            p.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                           help=help_text)
        else:
            # Strings here; scaling.config coerces them with errors that name the option.
            p.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_text)
    p.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="train these seeds of the configuration together in one process (instead of --seed): "
                        "each member is the run --seed S would be, in OUT/seed-S (one device; scaling.ensemble)")
    p.add_argument("--members", default=None, metavar="RUN.yaml,RUN.yaml,...",
                   help="train these runs together in one process, one whole config file per member, one "
                        "configuration apart from seed, out, run_id and branch_from (a sweep's seeds_together); "
                        "--out is the ensemble's own folder (its checkpoint); no other flag")
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from scaling.config import field_names, resolve

    overrides = {name: getattr(args, name) for name in field_names()}
    if args.members is not None:
        return _train_members(args, overrides)
    seeds = None
    if args.seeds is not None:
        from scaling.ensemble import check_supported, parse_seeds
        from vla_core.errors import BadInput

        seeds = parse_seeds(args.seeds)
        if args.seed is not None:
            raise BadInput("train: give --seeds or --seed, not both")
    cfg = resolve(args.config, overrides)
    if seeds is not None:
        check_supported(cfg)  # before the precision probe: a refusal should not wait for it
    if cfg.precision == "auto":
        cfg = resolve_auto_precision(cfg)
    if seeds is not None:
        return _train_ensemble(cfg, seeds)
    from scaling.train import train  # lazy: torch + lightning load for this command only

    result = train(cfg)
    if result is None:  # a non-zero rank of a multi-process run
        return 0
    sys.stderr.write(
        f"{result.status}: {result.run_id} val_loss={_fmt(result.val_loss)} train_loss={_fmt(result.train_loss)} "
        f"n_samples={result.n_samples} samples/s={_fmt(result.samples_per_second)} -> {cfg.out}/result.json\n")
    return 0 if result.status in ("completed", "diverged") else 1


def _train_ensemble(cfg, seeds: tuple[int, ...]) -> int:
    """`scaling train --seeds`: the members trained together; one line per member, as a solo run prints."""
    from scaling.ensemble import member_config, train_ensemble

    return _report_members([member_config(cfg, s) for s in seeds], train_ensemble(cfg, seeds))


def _report_members(configs, results) -> int:
    """One line per member, as a solo run prints; exit status 0 when every member completed or diverged."""
    for c, result in zip(configs, results):
        sys.stderr.write(
            f"{result.status}: {result.run_id} seed={c.seed} val_loss={_fmt(result.val_loss)} "
            f"train_loss={_fmt(result.train_loss)} n_samples={result.n_samples} "
            f"samples/s={_fmt(result.samples_per_second)} -> {c.out}/result.json\n")
    return 0 if all(r.status in ("completed", "diverged") for r in results) else 1


def _train_members(args: argparse.Namespace, overrides: dict) -> int:
    """`scaling train --members A.yaml,B.yaml --out DIR`: whole runs trained together, each in its own folder."""
    from scaling.ensemble import members_from_files, train_members
    from vla_core.errors import BadInput

    others = sorted(k for k, v in overrides.items() if v is not None and k != "out")
    if others or args.seeds is not None or args.config is not None:
        given = ["--" + k.replace("_", "-") for k in others] + [f for f, v in (("--seeds", args.seeds),
                                                                               ("--config", args.config)) if v]
        raise BadInput(f"train: --members takes every setting from the members' files; drop {', '.join(given)}")
    if not overrides.get("out"):
        raise BadInput("train: --members needs --out DIR, the ensemble's own folder (its checkpoint)")
    paths = [p.strip() for p in args.members.split(",") if p.strip()]
    cfg, configs = members_from_files(paths, overrides["out"])
    if cfg.precision == "auto":
        precision = resolve_auto_precision(cfg).precision
        cfg, configs = cfg.replace(precision=precision), [c.replace(precision=precision) for c in configs]
    return _report_members(configs, train_members(cfg, configs))


def resolve_auto_precision(cfg):
    """`cfg` with precision "auto" replaced by the fastest precision for this device, measured on the
    run's own model shape, micro-batch and thread count (`auto_precision`). The resolved config is what
    config.yaml and result.json record."""
    precision, why = auto_precision(cfg)
    sys.stderr.write(f"scaling train: precision {precision}: {why}\n")
    return cfg.replace(precision=precision)


def auto_precision(cfg) -> tuple[str, str]:
    """(precision, why): what "auto" resolves to for the run `cfg` (a RunConfig) on this machine, measured
    on its own model (any family), micro-batch and thread count (`scaling.hardware.resolve_precision`, cached
    per machine). A sweep calls it once per model size at plan time (`sweeps.auto_precision`)."""
    from scaling.data import open_source
    from scaling.datamodule import plan_accumulation
    from scaling.hardware import resolve_precision
    from scaling.model.family import dims_of, run_model
    from scaling.trainer import run_threads

    source = open_source(cfg.data)
    model = run_model(cfg, dims_of(source))
    micro, _ = plan_accumulation(cfg.batch_size, cfg.devices * cfg.num_nodes, cfg.micro_batch_size)
    # The probe runs where the run will: on CPUs at the run's own thread count (GPUs ignore it).
    threads = run_threads(cfg, "cpu")
    return resolve_precision("auto", cfg.accelerator, threads, model=model, dims=dims_of(source, cfg.chunk),
                             batch_size=min(micro, 32))


def _fmt(value) -> str:
    return "null" if value is None else f"{value:.4g}"
