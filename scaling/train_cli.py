"""`scaling train`: parse flags (one per RunConfig field, ``--SECTION.NAME``), merge them over a YAML
config, call `train`.

Heavy modules (torch, lightning) are imported inside the handler so other sub-commands stay fast.
"""

from __future__ import annotations

import argparse
import sys

# Flags spelled differently from their field, or with a short form.
_ALIASES = {"config": ("--config", "-c")}


def register(subparsers) -> None:
    """Add the ``train`` sub-command to the ``scaling`` parser: one flag per RunConfig field, generated
    from the dataclasses (``--SECTION.NAME``, hyphens for underscores; ``--out``, ``--run-id``, ``--seed``),
    grouped by section in --help. The old flat flags (``--lr``, ``--warmup``, ``--d-model``, ...;
    `scaling.config.LEGACY`) still work and are not listed."""
    from scaling.config import LEGACY, SECTIONS, TOP, field_default, field_docs, field_names, field_type, section_docs

    p = subparsers.add_parser(
        "train",
        help="train one VLA model of a given size on D samples",
        description="Train one VLA model of a given size on exactly D samples. Defaults < --config YAML "
                    "< flags; writes RUN_DIR/{config.yaml,result.json,metrics.csv,checkpoints/}. One flag per "
                    "setting, --SECTION.NAME (e.g. --optim.lr, --schedule.warmup-steps).",
    )
    p.add_argument(*_ALIASES["config"], dest="config", default=None, metavar="RUN.yaml",
                   help="YAML file of RunConfig fields, nested by section (flags override it)")
    docs = field_docs()
    groups = {None: p.add_argument_group("run")}
    groups.update({s: p.add_argument_group(s, section_docs()[s]) for s in SECTIONS})
    names = field_names()
    for name in names:
        group = groups[name.split(".")[0] if "." in name else None]
        help_text = docs.get(name, "").replace("%", "%%")
        default = field_default(name)
        if name not in ("data.source", "out") and default is not None and default != ():
            help_text += f" [default: {default}]"
        _add_flag(group, "--" + name.replace("_", "-"), name, field_type(name) is bool, help_text)
    for old, new in LEGACY.items():  # the old flat spellings, read through the same mapping
        if old not in TOP:
            boolean = new in names and field_type(new) is bool  # (warmup maps to two fields: not in names)
            _add_flag(p, "--" + old.replace("_", "-"), _LEGACY_DEST + old, boolean, argparse.SUPPRESS)
    p.add_argument("--seeds", default=None, metavar="S,S,...",
                   help="train these seeds of the configuration together in one process (instead of --seed): "
                        "each member is the run --seed S would be, in OUT/seed-S (one device; scaling.ensemble)")
    p.add_argument("--members", default=None, metavar="RUN.yaml,RUN.yaml,...",
                   help="train these runs together in one process, one whole config file per member, one "
                        "configuration apart from seed, out, run_id and schedule.branch_from (a sweep's "
                        "seeds_together); --out is the ensemble's own folder (its checkpoint); no other flag")
    p.set_defaults(func=_handle)


_LEGACY_DEST = "legacy:"


def _add_flag(parser, flag: str, dest: str, boolean: bool, help_text: str) -> None:
    if boolean:
        parser.add_argument(flag, dest=dest, default=None, action=argparse.BooleanOptionalAction, help=help_text)
    else:
        # Strings here; scaling.config coerces them with errors that name the option.
        parser.add_argument(flag, dest=dest, default=None, metavar=dest.split(".")[-1].split(":")[-1].upper(),
                            help=help_text)


def overrides_of(args: argparse.Namespace) -> dict:
    """The flags given, by dotted field name or old flat name (`scaling.config.resolve` reads both)."""
    from scaling.config import field_names

    known = set(field_names())
    out = {}
    for dest, value in vars(args).items():
        if value is None:
            continue
        if dest.startswith(_LEGACY_DEST):
            out[dest[len(_LEGACY_DEST):]] = value
        elif dest in known:
            out[dest] = value
    return out


def _handle(args: argparse.Namespace) -> int:
    from scaling.config import resolve

    overrides = overrides_of(args)
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
    if cfg.model.precision == "auto":
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
    if cfg.model.precision == "auto":
        precision = resolve_auto_precision(cfg).model.precision
        change = {"model": {"precision": precision}}
        cfg, configs = cfg.replace(**change), [c.replace(**change) for c in configs]
    return _report_members(configs, train_members(cfg, configs))


def resolve_auto_precision(cfg):
    """`cfg` with precision "auto" replaced by the fastest precision for this device, measured on the
    run's own model shape, micro-batch and thread count (`auto_precision`). The resolved config is what
    config.yaml and result.json record."""
    precision, why = auto_precision(cfg)
    sys.stderr.write(f"scaling train: precision {precision}: {why}\n")
    return cfg.replace(model={"precision": precision})


def auto_precision(cfg) -> tuple[str, str]:
    """(precision, why): what "auto" resolves to for the run `cfg` (a RunConfig) on this machine, measured
    on its own model (any family), micro-batch and thread count (`scaling.hardware.resolve_precision`, cached
    per machine). A sweep calls it once per model size at plan time (`sweeps.auto_precision`)."""
    from scaling.data import open_source
    from scaling.datamodule import plan_accumulation
    from scaling.hardware import resolve_precision
    from scaling.model.family import dims_of, run_model
    from scaling.trainer import run_threads

    source = open_source(cfg.data.source)
    model = run_model(cfg, dims_of(source))
    hw = cfg.hardware
    micro, _ = plan_accumulation(cfg.optim.batch_size, hw.devices * hw.num_nodes, hw.micro_batch_size)
    # The probe runs where the run will: on CPUs at the run's own thread count (GPUs ignore it).
    threads = run_threads(cfg, "cpu")
    return resolve_precision("auto", hw.accelerator, threads, model=model, dims=dims_of(source, cfg.model.chunk),
                             batch_size=min(micro, 32))


def _fmt(value) -> str:
    return "null" if value is None else f"{value:.4g}"
