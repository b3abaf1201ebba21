"""Plan, run, watch and export sweeps of training runs.

Examples:

    scaling sweep plan sweeps/smoke.yaml                 # every run: key, N, D, FLOPs, est. time
    scaling sweep run sweeps/smoke.yaml --workers 2      # resumable: rerun after any kill
    scaling sweep status sweeps/smoke.yaml --json
    scaling sweep export sweeps/smoke.yaml --out results.parquet
    scaling sweep run SPEC --storage postgresql://u@db/sweeps   # on every machine: they cooperate

    optuna-dashboard runs/<name>/optuna.journal          # browse the ledger (a separate install)

The storage URL may also come from the environment variable SCALING_STORAGE (keeps a password
off command lines); it is never shown with its password.
"""

# This module only parses arguments and calls sweeps.sweep.Sweep; heavy modules load in handlers.

from __future__ import annotations

import argparse
import json
import sys

from vla_core.errors import BadInput


def _common(p: argparse.ArgumentParser, workers: bool = False) -> None:
    p.add_argument("spec", metavar="SPEC.yaml", help="sweep spec file")
    p.add_argument("--dir", default=None, help="sweep folder (default: runs/<sweep name>)")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (postgresql://user@host/db) shared by machines (default: $SCALING_STORAGE, "
                        "else the journal file DIR/optuna.journal)")
    p.add_argument("--allow-code-change", action="store_true",
                   help="continue a sweep whose runs were made by another code version (default: refuse)")
    if workers:
        p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default: 1)")


def _slurm_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SLURM resources (--launcher slurm; over the spec's slurm: block, for every size)")
    g.add_argument("--partition", default=None, help="SLURM partition")
    g.add_argument("--account", default=None, help="SLURM account")
    g.add_argument("--qos", default=None, help="SLURM quality of service")
    g.add_argument("--constraint", default=None, help="SLURM node constraint")
    g.add_argument("--time-min", default=None, help="time limit per task in minutes (default: 1440)")
    g.add_argument("--mem-gb", default=None, help="memory per node in GB")
    g.add_argument("--gpus-per-node", default=None, help="GPUs per task")
    g.add_argument("--cpus-per-task", default=None, help="CPUs per task")


def register(subparsers) -> None:
    """Add ``sweep`` and its sub-commands to the ``scaling`` parser."""
    sweep = subparsers.add_parser("sweep", help="plan, run, watch and export sweeps of training runs",
                                  description=__doc__)
    sub = sweep.add_subparsers(dest="sweep_command", required=True, metavar="SWEEP_COMMAND")

    p = sub.add_parser("plan", help="list every run with key, N, D, FLOPs and estimated time (and, for precision: "
                                    "auto, the precision of each size, resolved once; the first run records it "
                                    "in the spec). Trains nothing and enqueues nothing; it does generate the "
                                    "spec's data into DIR/data when missing (the runs' shapes come from it) and "
                                    "keeps the timed steps in DIR/calibration.json, both reused by `sweep run`")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--no-calibrate", action="store_true",
                   help="skip the timing calibration (no estimates, no calibration.json)")
    p.set_defaults(func=_plan)

    p = sub.add_parser("run", help="run (or resume) the sweep")
    _common(p, workers=True)
    p.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local processes or SLURM job arrays (default: local)")
    p.add_argument("--no-progress", action="store_true", help="do not draw the sweep progress line")
    p.add_argument("--retry-failed", action="store_true",
                   help="put points recorded as failed back in the queue (they resume from their checkpoints)")
    p.add_argument("--new-generation", action="store_true",
                   help="the spec (or code) changed: plan it as a new generation whose table and fit use its own "
                        "points (default: refuse, saying what changed)")
    _slurm_flags(p)
    p.add_argument("--on-interrupt", choices=("cancel", "leave"), default="cancel",
                   help="what Ctrl-C or SIGTERM of this command does to its SLURM arrays: cancel them (their points "
                        "go back to the queue) or leave them running to finish the sweep")
    p.add_argument("--max-requeues", type=int, default=None,
                   help="times a SLURM task that reaches its time limit is requeued (default: the spec's "
                        "slurm.max_requeues, else 3); reaching the limit is reported")
    p.add_argument("--only", default=None, metavar="KEY[,KEY...]",
                   help="run just these run keys (and the WSD stable phases they branch from), e.g. to "
                        "reproduce rows of a committed study; writes results.csv, no fit")
    p.set_defaults(func=_run)

    p = sub.add_parser("validate",
                       help="predict a recommended configuration and alternatives, and add them to the spec",
                       description="Ask a fit for the compute-optimal N at a held-out budget, build that model and "
                       "alternatives at the same compute (N_opt x each factor), predict each one's loss, and append "
                       "them to the spec as a validation round. Then `scaling sweep run SPEC` trains them as rows with "
                       "phase = validation, each carrying its prediction.")
    _common(p)
    p.add_argument("--fit", required=True, help="the fit whose answer is tested (fit.json, or an Approach 2 fit)")
    p.add_argument("--flops", type=float, required=True, help="the held-out budget C of every run (FLOPs)")
    p.add_argument("--factors", default="0.25,4", help="alternatives at N_opt x each factor, comma-separated")
    p.add_argument("--seeds", default="0", help="seeds each point runs with, comma-separated")
    p.add_argument("--dry-run", action="store_true", help="print the round, write nothing")
    p.set_defaults(func=_validate)

    p = sub.add_parser("status", help="counts per state")
    _common(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object {total, completed, running, waiting, failed, diverged, pruned}")
    p.set_defaults(func=_status)

    p = sub.add_parser("export", help="write the results table (from the storage alone)")
    _common(p)
    p.add_argument("--out", required=True, help="results.csv or results.parquet")
    p.set_defaults(func=_export)

    p = sub.add_parser("worker", help="run points of a sweep until none is left (what launchers start)")
    p.add_argument("--storage", default=None, help="storage URL or journal file (default: $SCALING_STORAGE)")
    p.add_argument("--study", required=True, help="study name in the storage (<sweep name>@<id>, see sweep.json)")
    p.add_argument("--dir", default=None, help="local sweep folder (default: the one recorded in the study)")
    p.add_argument("--sizes", default=None, help="only points of these model sizes, comma-separated (default: all)")
    p.set_defaults(func=_worker)


def _open(args, workers: int = 1):
    from sweeps.sweep import Sweep

    return Sweep.open(args.spec, args.dir, args.storage, workers, new_generation=getattr(args, "new_generation", False),
                      allow_code_change=args.allow_code_change)


def _slurm_resources(args) -> dict:
    from sweeps.spec import SLURM_KEYS, parse_slurm

    given = {k: getattr(args, k) for k in SLURM_KEYS if getattr(args, k) is not None}
    return dict(parse_slurm("--launcher slurm", given).resources)


def _plan(args) -> int:
    from sweeps.plan import format_plan, totals
    from sweeps.sweep import plan_as_json

    sw = _open(args)
    runs = sw.plan(calibrate=not args.no_calibrate)
    reused: set[str] = set()
    if sw.spec.reuse:
        from sweeps.reuse import committed_rows

        reused = set(committed_rows(sw.spec)) & {r.key for r in runs}
    if args.json:
        print(json.dumps({"runs": plan_as_json(runs), "totals": totals(runs), "reused": sorted(reused)},
                         indent=1, default=str))
    else:
        from sweeps.auto_precision import summary

        print(format_plan(runs))
        if sw.spec.lr_search is not None:
            from sweeps.lr_search import plan_notes

            for note in plan_notes(sw.spec, runs):
                print(note)
        line = summary(sw.spec, runs)
        if line:
            print(line)
        if sw.spec.wsd.enabled:
            from sweeps.wsd import savings

            s = savings(runs)
            print(f"WSD branching: {s['branched_flops']:.3g} FLOPs vs {s['independent_flops']:.3g} independent "
                  f"({100 * s['saved_frac']:.0f}% saved)")
        if sw.spec.reuse:
            from sweeps.plan import fmt_secs

            t = totals([r for r in runs if r.key not in reused])
            est = "-" if t["est_seconds"] is None else fmt_secs(t["est_seconds"])
            print(f"reuse: {len(reused)} of {len(runs)} runs have a completed row in {', '.join(sw.spec.reuse)} "
                  f"(recorded from it, not trained); to train: {t['runs']} runs, {t['flops']:.3g} FLOPs, "
                  f"estimated {est} (one worker)")
    return 0


def _continue_command(args, sw, failed: int) -> str:
    """The command that takes the sweep up again (the storage shown masked: it may hold a password)."""
    from sweeps import storage_url

    cmd = ["scaling", "sweep", "run", args.spec, "--dir", str(sw.dir)]
    if args.storage:  # as given (one from SCALING_STORAGE is still there next time)
        cmd += ["--storage", storage_url.mask(args.storage)]
    if args.launcher != "local":
        cmd += ["--launcher", args.launcher]
    if args.workers != 1:
        cmd += ["--workers", str(args.workers)]
    if failed:
        cmd.append("--retry-failed")
    return " ".join(cmd)


def _run(args) -> int:
    import signal

    sw = _open(args, args.workers)
    slurm = _slurm_resources(args)
    if args.launcher != "slurm":
        given = next(iter(slurm), None) or ("max_requeues" if args.max_requeues is not None else None)
        if given:
            raise BadInput(f"--{given.replace('_', '-')}: SLURM resources need --launcher slurm")
    only = None
    if args.only is not None:
        only = {k.strip() for k in args.only.split(",") if k.strip()}
        if not only:
            raise BadInput("--only: give one or more run keys, comma-separated (see `scaling sweep plan`)")
    counts = sw.run(args.workers, args.launcher, progress=not args.no_progress, retry_failed=args.retry_failed,
                    slurm=slurm, only=only, on_interrupt=args.on_interrupt, max_requeues=args.max_requeues)
    print(json.dumps(counts))
    print(f"results: {sw.dir / 'results.csv'}")
    if sw.spec.wsd.enabled:
        s = sw.wsd_savings()
        print(f"WSD branching saved {100 * s['saved_frac']:.0f}% of the compute "
              f"({s['branched_flops']:.3g} FLOPs vs {s['independent_flops']:.3g} independent)")
    name = sw.spec.name
    report = sw.launch_report
    for line in report.problems:
        sys.stderr.write(f"sweep {name}: {line}\n")
    if report.interrupted is not None:
        sys.stderr.write(f"sweep {name}: interrupted by {signal.Signals(report.interrupted).name}: {report.stopped}\n")
    unfinished = counts["running"] + counts["waiting"]
    if counts["failed"] or unfinished or report.interrupted is not None:
        still = f", {counts['running']} of them still running" if counts["running"] else ""
        how = (f"once job(s) {', '.join(report.left_running)} end, write the fit with" if report.left_running
               else "continue with")
        sys.stderr.write(f"sweep {name}: {counts['failed']} failed, {unfinished} not finished{still}; the table is "
                         f"written; {how}: {_continue_command(args, sw, counts['failed'])}\n")
        return 128 + report.interrupted if report.interrupted is not None else 1
    return 0


def _numbers(flag: str, text: str, kind=float) -> tuple:
    try:
        out = tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BadInput(f"{flag} {text!r}: comma-separated numbers") from None
    if not out:
        raise BadInput(f"{flag} {text!r}: give at least one")
    return out


def _validate(args) -> int:
    from sweeps.validation import append_round, plan_round

    sw = _open(args)
    rnd = plan_round(sw, args.fit, args.flops, _numbers("--factors", args.factors),
                     _numbers("--seeds", args.seeds, int))
    top = max((float(b) for b in (sw.spec.isoflop.budgets if sw.spec.isoflop else ())), default=None)
    opt = rnd["optimal"]
    print(f"validation at C = {rnd['budget']:.4g} FLOPs" + (f" ({rnd['budget'] / top:.3g}x the design's largest budget)"
                                                            if top else "") + f", from {args.fit}:")
    print(f"  recommended N_opt = {opt['n_opt']:.4g} parameters, D_opt = {opt['d_opt']:.4g} samples")
    for p in rnd["points"]:
        tag = "recommended" if p["recommended"] else f"N_opt x {p['factor']:g}"
        print(f"  {p['size']:>8} N = {p['n_params']:>9,} D = {p['samples']:>10,}  predicted {p['predicted_loss']:.4f} "
              f"[{p['predicted_lo']:.4f}, {p['predicted_hi']:.4f}]  ({tag})")
        for w in p["warnings"]:
            print(f"           warning: {w}")
    if args.dry_run:
        return 0
    append_round(args.spec, sw.spec, rnd)
    print(f"wrote the round into {args.spec}; run it with `scaling sweep run {args.spec}`")
    return 0


def _status(args) -> int:
    sw = _open(args)
    q = sw.existing_queue()
    counts = q.counts()
    planned = int(q.info().get("n_points") or 0)
    if planned > counts["total"]:
        counts["waiting"] += planned - counts["total"]
        counts["total"] = planned
    if args.json:
        print(json.dumps(counts))
    else:
        print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def _export(args) -> int:
    from sweeps.results import check_out, table, write_table

    check_out(args.out)
    sw = _open(args)
    path = write_table(table(sw.existing_queue()), args.out)
    print(path)
    return 0


def _worker(args) -> int:
    from sweeps.launcher import worker_main

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()] if args.sizes else None
    return worker_main(args.storage, args.study, args.dir, sizes=sizes)
