"""`scaling hardware`: this machine's cache of measured peak FLOP/s and `precision: auto` probes
(`scaling.hardware`), shown with each figure's load and age, and its CPU peaks measured again on demand.

torch is imported in the handler only (for the CPU's signature and the probes).
"""

from __future__ import annotations

import argparse
import json
import sys

from vla_core.errors import BadInput


def register(subparsers) -> None:
    """Add the ``hardware`` sub-command to the ``scaling`` parser."""
    p = subparsers.add_parser(
        "hardware",
        help="show this machine's cached peak FLOP/s and precision probes (load, age); --refresh measures again",
        description="Show the per-machine cache of measured CPU peak FLOP/s (MFU's denominator) and "
                    "`precision: auto` probes, each with the load it was measured at and its age. A probe "
                    "taken under load is never cached; an entry cached by an older version at a high load "
                    "is shown as ignored. --refresh probes the CPU peaks again and keeps the better of the "
                    "new and the cached quiet probe; it exits 1 when a probe was under load (not stored).",
    )
    p.add_argument("--refresh", action="store_true",
                   help="probe the CPU peaks again (at the thread counts cached for this CPU, or --threads)")
    p.add_argument("--threads", default=None, metavar="N[,N...]",
                   help="with --refresh: the thread counts to probe (default: those cached for this CPU and "
                        "torch, else torch's thread count)")
    p.set_defaults(func=_handle)


def _thread_counts(text: str) -> list[int]:
    counts = []
    for part in text.split(","):
        try:
            n = int(part.strip())
        except ValueError:
            n = 0
        if n < 1:
            raise BadInput(f"hardware: --threads takes positive integers such as 2 or 1,2; got {text!r}")
        counts.append(n)
    return sorted(set(counts))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} old"
    return f"{seconds:.0f} s old"


def _conditions(entry: dict) -> str:
    """The probe's age, load and (for peaks) CPU share, and whether it stands for the machine."""
    from scaling import hardware

    load, cores = entry.get("load_average"), entry.get("cores")
    parts = [_age(hardware.entry_age_s(entry)),
             f"load average {load if load is not None else 'unknown'}" + (f" on {cores} cores" if cores else "")]
    if entry.get("cpu_share") is not None:
        parts.append(f"{entry['cpu_share']:.0%} CPU share")
    if entry.get("probes"):
        parts.append(f"best of {entry['probes']} quiet probe(s)")
    verdict = "used" if hardware.entry_is_quiet(entry) else "IGNORED: taken under load, the next run probes again"
    return ", ".join(parts) + f"; {verdict}"


def _mine(entry: dict, sig: dict) -> bool:
    return all(entry.get(k) == sig[k] for k in ("cpu", "flags", "torch"))


def _show(data: dict, sig: dict) -> None:
    from scaling import hardware

    out = sys.stdout
    load, cores = hardware.machine_load()
    out.write(f"load now: {load if load is not None else 'unknown'} on {cores} cores\n")
    import torch

    if torch.cuda.is_available():  # GPU peaks come from the vendor table: nothing cached, nothing to refresh
        name = torch.cuda.get_device_name(0)
        figures = ", ".join(f"{d} {v:.3g}" for d, v in hardware.gpu_peaks(name).items()) or "not in the table"
        out.write(f"GPU {name}: vendor table {figures}\n")
    peaks = data.get("cpu_peaks", {})
    out.write(f"CPU peak FLOP/s, MFU's denominator ({len(peaks)} entr{'y' if len(peaks) == 1 else 'ies'}):\n")
    for entry in sorted(peaks.values(), key=lambda e: (not _mine(e, sig), str(e.get("cpu")), e.get("threads", 0))):
        figures = ", ".join(f"{d} {float(v):.3g}" for d, v in sorted(entry.get("peaks", {}).items()))
        where = "" if _mine(entry, sig) else f" [{entry.get('cpu')}, torch {entry.get('torch')}: not this machine]"
        out.write(f"  {entry.get('threads')} thread(s): {figures}{where}\n    {_conditions(entry)}\n")
    probes = data.get("precision", {})
    out.write(f"precision: auto probes ({len(probes)}):\n")
    for key, entry in sorted(probes.items(), key=lambda kv: (not _mine(kv[1], sig), kv[0])):
        shape = key[len(hardware._signature_key(entry)) + 1:] if "cpu" in entry else key
        steps = ", ".join(f"{p} {1e3 * s:.1f} ms" for p, s in entry.get("seconds_per_step", {}).items())
        where = "" if _mine(entry, sig) else " [not this machine]"
        out.write(f"  {entry.get('threads')} thread(s), {shape}: {entry.get('precision')} ({steps}){where}\n"
                  f"    {_conditions(entry)}\n")


def _refresh(threads: list[int]) -> int:
    from scaling import hardware

    rc = 0
    for t in threads:
        new, kept = hardware.refresh_cpu_peaks(t)
        top = max(new["peaks"], key=new["peaks"].get)
        probe = (f"{t} thread(s): {top} {new['peaks'][top]:.3g} FLOP/s (load average {new['load_average']} on "
                 f"{new['cores']} cores, {new['cpu_share']:.0%} CPU share)")
        if not new["quiet"]:
            rc = 1
            sys.stdout.write(f"refreshed {probe}: under load, not stored\n")
        else:
            sys.stdout.write(f"refreshed {probe}: stored; the cache keeps {max(kept['peaks'].values()):.3g}, "
                             f"best of {kept['probes']}\n")
    return rc


def _handle(args: argparse.Namespace) -> int:
    from scaling import hardware

    if args.threads is not None and not args.refresh:
        raise BadInput("hardware: --threads goes with --refresh (the listing shows every thread count)")
    threads = _thread_counts(args.threads) if args.threads is not None else None
    path = hardware.cache_path()
    sys.stdout.write(f"cache: {path}\n")
    sig = hardware.cpu_signature(1)
    rc = 0
    if args.refresh:
        if threads is None:
            cached = hardware._read_cache().get("cpu_peaks", {}).values()
            threads = sorted({int(e["threads"]) for e in cached if _mine(e, sig) and e.get("threads")}) \
                or [hardware.cpu_signature()["threads"]]
        rc = _refresh(threads)
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        data = exc
    if not isinstance(data, dict) or not all(isinstance(section, dict) and all(isinstance(e, dict) for e in
                                                                           section.values())
                                             for section in data.values()):
        sys.stdout.write("  unreadable (not the cache's JSON): the next probe rewrites it\n")
        return rc
    _show(data, sig)
    return rc
