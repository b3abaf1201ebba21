"""``scaling data ...``: generate, inspect, clean, export-lerobot, import-lerobot.

Handlers only parse and call typed functions; generators and storage are imported lazily.
Bad input raises ``BadInput`` (one line; ``scaling`` exits 2).
"""

from __future__ import annotations

import argparse
import inspect as pyinspect
import json
from pathlib import Path

from vla_core.errors import BadInput


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _version_of(module) -> str:
    """The generator's own version string, else the package's."""
    for attr in ("GENERATOR_VERSION", "__version__"):
        if getattr(module, attr, None) is not None:
            return str(getattr(module, attr))
    return f"vla-scaling {_dist_version('vla-scaling')}"


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _report(path: Path) -> None:
    from scaling.data.store import open_dataset

    ds = open_dataset(path)
    print(f"wrote {path}: {ds.n_episodes} episodes, {ds.n_frames} frames, {len(ds.manifest['shards'])} shards")


def _generate_tabletop(args: argparse.Namespace) -> int:
    from scaling.data import tabletop
    from scaling.data.store import write_dataset

    gen = getattr(tabletop, "generate_episodes", None)
    if gen is None:
        raise BadInput("scaling.data.tabletop has no generate_episodes (tabletop source not installed)")
    kwargs = {"seed": args.seed, "image_size": args.image_size}
    if args.noise is not None:
        kwargs["noise"] = args.noise
    if args.families:
        kwargs["families"] = tuple(f.strip() for f in args.families.split(",") if f.strip())
    if args.objects is not None:
        kwargs["objects"] = args.objects
    if "workers" in pyinspect.signature(gen).parameters:
        kwargs["workers"] = args.workers
    meta = {"image_size": args.image_size, "noise": args.noise, "families": args.families}
    if args.objects is not None:  # only when given: manifests of default generations stay as they were
        meta["objects"] = args.objects
    if hasattr(tabletop, "ACTION_LOW") and hasattr(tabletop, "ACTION_HIGH"):
        meta["action_bounds"] = [float(tabletop.ACTION_LOW), float(tabletop.ACTION_HIGH)]
    episodes = gen(args.episodes, **kwargs)
    path = write_dataset(episodes, args.out, seed=args.seed, generator="tabletop",
                         generator_version=_version_of(tabletop), overwrite=args.overwrite, meta=meta)
    _report(path)
    return 0


def _generate_metaworld(args: argparse.Namespace) -> int:
    from scaling.data import metaworld_source as mw
    from scaling.data.store import write_dataset

    tasks = mw.check_tasks([t for t in args.tasks.split(",") if t.strip()])
    try:
        import metaworld  # noqa: F401 - only probing the optional extra
        version = f"{_version_of(mw)}; metaworld {_dist_version('metaworld')}"
    except ImportError:
        raise BadInput("Meta-World is not installed: pip install 'vla-scaling[metaworld]'") from None
    eps = mw.generate_episodes(tasks, args.episodes_per_task, seed=args.seed, image_size=args.image_size,
                               workers=args.workers)
    meta = {"tasks": tasks, "image_size": args.image_size, "action_bounds": [-1.0, 1.0]}
    path = write_dataset(eps, args.out, seed=args.seed, generator="metaworld", generator_version=version,
                         overwrite=args.overwrite, meta=meta)
    _report(path)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from scaling.data.inspect import format_summary, summarize, verify

    summary = summarize(args.dir, action_bound=args.action_bound)
    problems = verify(args.dir) if args.verify else []
    if args.verify:
        summary["verify"] = {"ok": not problems, "problems": problems}
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_summary(summary))
        if args.verify:
            print("verify       ok: every shard matches the manifest" if not problems
                  else f"verify       {len(problems)} problem(s)")
    if problems:
        raise BadInput(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return 0


def _clean(args: argparse.Namespace) -> int:
    from scaling.data.clean import clean_dataset

    report = clean_dataset(args.dir, args.out, keep_failed=args.keep_failed, action_bound=args.action_bound,
                           overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    dropped = ", ".join(f"{k} {v}" for k, v in report["dropped"].items())
    print(f"cleaned {report['source']} -> {report['out']}")
    print(f"  episodes {report['episodes_in']} -> {report['episodes_out']}  (dropped: {dropped})")
    print(f"  frames   {report['frames_in']} -> {report['frames_out']}  (idle frames trimmed "
          f"{report['idle_frames_trimmed']} in {report['episodes_trimmed']} episodes)")
    return 0


def _lerobot():
    import importlib

    try:
        return importlib.import_module("scaling.data.lerobot")
    except ModuleNotFoundError as exc:
        if exc.name != "scaling.data.lerobot":
            raise
        raise BadInput("LeRobot conversion is not available in this build (scaling.data.lerobot missing)") from None


def _export_lerobot(args: argparse.Namespace) -> int:
    out = _lerobot().export_lerobot(args.dir, args.out)
    print(f"exported {args.dir} -> {out or args.out} (LeRobot v3.0)")
    return 0


def _import_lerobot(args: argparse.Namespace) -> int:
    out = _lerobot().import_lerobot(args.src, args.out, image_size=args.image_size, overwrite=args.overwrite,
                                    camera=args.camera)
    _report(Path(out or args.out))
    return 0


def register(subparsers) -> None:
    """Adds ``data generate|inspect|clean|export-lerobot|import-lerobot`` to the ``scaling`` parser."""
    data = subparsers.add_parser("data", help="generate, inspect, clean and convert robot datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    gen = dsub.add_parser("generate", help="generate demonstrations from a simulated source")
    gsub = gen.add_subparsers(dest="source", required=True, metavar="SOURCE")
    tt = gsub.add_parser("tabletop", help="the built-in tabletop environment (numpy only)")
    tt.add_argument("--episodes", type=_positive_int, required=True, help="number of episodes")
    tt.add_argument("--image-size", type=_positive_int, default=64, help="image side in pixels")
    tt.add_argument("--noise", type=_nonneg_float, default=None, help="expert noise level (generator default)")
    tt.add_argument("--families", default=None,
                    help="comma-separated task families to draw from (default: all 12), e.g. touch,reach_zone")
    tt.add_argument("--objects", default=None, metavar="LO-HI",
                    help="objects per scene, each count equally likely (default: 3-5), e.g. 1-5; "
                         "families that need more objects get at least what they need")
    mw = gsub.add_parser("metaworld", help="Meta-World scripted experts (needs the [metaworld] extra)")
    mw.add_argument("--tasks", required=True, help="comma-separated task names, e.g. reach-v3,push-v3")
    mw.add_argument("--episodes-per-task", type=_positive_int, default=20, help="episodes per task")
    mw.add_argument("--image-size", type=_positive_int, default=128, help="image side in pixels")
    for p, fn in ((tt, _generate_tabletop), (mw, _generate_metaworld)):
        p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
        p.add_argument("--seed", type=int, default=0, help="generator seed")
        p.add_argument("--workers", type=_positive_int, default=2 if p is tt else 1, help="worker processes")
        p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
        p.set_defaults(func=fn)

    ins = dsub.add_parser("inspect", help="summarise a dataset (episodes, tasks, stats, quality flags)")
    ins.add_argument("dir", type=Path, help="dataset folder")
    ins.add_argument("--json", action="store_true", help="print one JSON object")
    ins.add_argument("--verify", action="store_true", help="read every shard; exit 2 on any mismatch")
    ins.add_argument("--action-bound", type=_nonneg_float, default=None, help="flag |action| above this")
    ins.set_defaults(func=_inspect)

    cl = dsub.add_parser("clean", help="drop bad episodes and trim idle segments into a new dataset")
    cl.add_argument("dir", type=Path, help="dataset folder to clean")
    cl.add_argument("--out", type=Path, required=True, help="cleaned dataset folder")
    cl.add_argument("--keep-failed", action="store_true", help="keep episodes whose expert failed")
    cl.add_argument("--action-bound", type=_nonneg_float, default=None,
                    help="drop episodes with |action| above this (default: the manifest's action_bounds)")
    cl.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    cl.add_argument("--json", action="store_true", help="print the report as one JSON object")
    cl.set_defaults(func=_clean)

    ex = dsub.add_parser("export-lerobot", help="export a dataset to the LeRobot v3.0 layout")
    ex.add_argument("dir", type=Path, help="dataset folder")
    ex.add_argument("--out", type=Path, required=True, help="LeRobot folder to write")
    ex.set_defaults(func=_export_lerobot)

    im = dsub.add_parser("import-lerobot", help="import a local LeRobot v3.0 folder")
    im.add_argument("src", type=Path, help="LeRobot folder")
    im.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    im.add_argument("--image-size", type=_positive_int, default=None, help="resize images to this side")
    im.add_argument("--camera", default=None, metavar="NAME",
                    help="camera to import, e.g. wrist or observation.images.wrist (default: top, else the "
                         "first); the manifest records it")
    im.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    im.set_defaults(func=_import_lerobot)
