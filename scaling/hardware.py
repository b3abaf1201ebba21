"""What the device can do: peak FLOP/s per dtype (MFU's denominator) and the fastest correct precision.

MFU, as this project reports it everywhere:

    MFU = achieved model FLOP/s / peak FLOP/s of the FASTEST dtype the device offers
        = flops_per_sample (exact, `scaling.model.flops_per_sample`) x samples/s / (peak x devices)

The peak is that of the fastest dtype whatever precision the run used, so a run that trains in
fp32 on a bf16-capable device is charged for the bf16 it left unused; MFU then compares runs and
precisions on one scale.

Where the peaks come from:

- GPUs: the vendor's data-sheet dense (no sparsity) figure per dtype, `GPU_PEAKS`.
- CPUs: no vendor number fits (it depends on cores used, clocks, AMX/AVX-512 and the BLAS), so we
  measure: square matmuls of `PROBE_N` x `PROBE_N` at the run's own thread count, the best of
  `PROBE_TRIALS` timed trials (best-of, because other processes can only slow a trial down). The
  figure is cached per machine in ``$SCALING_CACHE_DIR`` (default ``~/.cache/vla-scaling``,
  honouring ``$XDG_CACHE_HOME``) keyed by CPU model, its matmul-relevant flags, the thread count and
  the torch version.

A probe taken under load never becomes the machine's figure. A peak probe is quiet when its best
trial had its threads' CPU time to itself (`QUIET_CPU_SHARE`); a probe of the training step, and an
entry cached before probes recorded their CPU share, when the 1-minute load average before it left
its threads cores of their own (`QUIET_LOAD_MARGIN`). A probe under load serves the call that made it
and is not stored, so the next caller probes again; `refresh_cpu_peaks` (``scaling hardware
--refresh``) probes again on demand and keeps the better of the new and the cached quiet probe. Every
entry records its time, the load average before it and the machine's cores, and `mfu_peak` passes the
peak's load per core and age on to result.json (``peak_flops_load``, ``peak_flops_age_s``).

`resolve_precision("auto", ...)` picks the fastest correct training precision for the device: on
GPUs, bf16-mixed where the GPU supports bf16, else 16-mixed; on CPUs a short measured probe of the
model's real training step (forward, backward, clipping, AdamW) in 32-true and in bf16-mixed
(``torch.autocast`` with its weight cache on, as Lightning Fabric runs it), cached like the peaks.

torch is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from vla_core.atomic import write_atomic
from vla_core.errors import BadInput

DTYPES = ("bfloat16", "float16", "float32")
"""Dtype names the peaks are given for (torch's spelling)."""

PRECISION_DTYPE = {"bf16-mixed": "bfloat16", "bf16-true": "bfloat16", "16-mixed": "float16",
                   "16-true": "float16", "32-true": "float32", "32": "float32"}
"""Lightning precision -> the dtype its matmuls run in."""

# Dense (no structured sparsity) peak FLOP/s per device from the vendors' data sheets. "float32" is
# the plain FP32 (CUDA-core) figure; TF32 tensor-core matmuls (torch's "high" matmul precision) sit in
# between but are never the fastest dtype, so MFU never needs them. Order matters: the first
# substring of the device name that matches wins, so specific names precede their prefixes.
GPU_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("GH200", {"bfloat16": 989.4e12, "float16": 989.4e12, "float32": 66.9e12}),
    ("H200 NVL", {"bfloat16": 835.5e12, "float16": 835.5e12, "float32": 60.0e12}),
    ("H200", {"bfloat16": 989.4e12, "float16": 989.4e12, "float32": 66.9e12}),
    ("H100 NVL", {"bfloat16": 835.5e12, "float16": 835.5e12, "float32": 60.0e12}),
    ("H100 PCIE", {"bfloat16": 756.5e12, "float16": 756.5e12, "float32": 51.2e12}),
    ("H100", {"bfloat16": 989.4e12, "float16": 989.4e12, "float32": 66.9e12}),
    ("A100", {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12}),
    ("A10G", {"bfloat16": 70e12, "float16": 70e12, "float32": 31.2e12}),
    ("A10", {"bfloat16": 125e12, "float16": 125e12, "float32": 31.2e12}),
    ("L40S", {"bfloat16": 362.05e12, "float16": 362.05e12, "float32": 91.6e12}),
    ("L40", {"bfloat16": 181.05e12, "float16": 181.05e12, "float32": 90.5e12}),
    ("L4", {"bfloat16": 121e12, "float16": 121e12, "float32": 30.3e12}),
    ("V100", {"float16": 125e12, "float32": 15.7e12}),
    ("T4", {"float16": 65e12, "float32": 8.1e12}),
    ("4090", {"bfloat16": 165.2e12, "float16": 165.2e12, "float32": 82.6e12}),
    ("3090", {"bfloat16": 71e12, "float16": 71e12, "float32": 35.6e12}),
)

# CPU flags that decide matmul speed per dtype (the cache key keeps only these, so an unrelated
# kernel flag does not invalidate it).
_MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_tile",
                 "amx_bf16", "amx_fp16", "avx_vnni", "asimd", "sve", "bf16")
PROBE_N = 2048
"""Side of the square matrices of the CPU peak probe (large enough to saturate AMX and AVX-512)."""
PROBE_TRIALS = 5
"""Timed trials per dtype; the best one is the peak."""
PROBE_TRIAL_S = 0.1
"""Minimum seconds per trial (at least one matmul)."""
PRECISION_PROBE_STEPS = 3
"""Fewest timed training steps per precision in the `resolve_precision` probe (after one warm-up each)."""
PRECISION_PROBE_S = 0.5
"""Fewest seconds of timed steps per precision: small models take more steps, so one lucky step under
load does not decide (a 3e4-parameter step takes ~25 ms, and its precisions differ by ~5%)."""
PRECISION_PROBE_MAX_STEPS = 200
"""Most timed steps per precision, whatever the time."""
QUIET_CPU_SHARE = 0.9
"""A peak probe is quiet when its best trial got at least this share of its threads' CPU time (process
CPU seconds / (wall seconds x threads)); less means other processes held its cores and the figure is low.
(Not the load average: after a run's own training it still counts that run's threads for a minute.)"""
QUIET_LOAD_MARGIN = 0.5
"""A training-step probe (and a cached entry without a CPU share) is quiet when the 1-minute load average
before it, plus its own threads, is at most the machine's cores plus this margin (daemons, the command's
own start-up)."""


@dataclass(frozen=True)
class Peak:
    """A device's peak FLOP/s for MFU: the fastest dtype it offers."""

    value: float | None
    """Peak FLOP/s of one device (None when unknown)."""
    dtype: str | None
    """The dtype of that peak (bfloat16 | float16 | float32)."""
    source: str
    """Where it came from: "vendor table: ...", "measured: ...", "config", "$SCALING_PEAK_FLOPS", "unknown"."""
    load: float | None = None
    """A measured peak: the 1-minute load average per core before its probe (None for any other peak)."""
    age_s: float | None = None
    """A measured peak: seconds since its probe (None for any other peak)."""


# ---- the device -----------------------------------------------------------------------------------
def _cuda_wanted(accelerator: str) -> bool:
    if accelerator == "cpu":
        return False
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise BadInput(f"accelerator {accelerator}: no CUDA device is available")
    return torch.cuda.is_available()


def _threads(threads: int | None) -> int:
    import torch

    return int(threads) if threads else torch.get_num_threads()


def cpu_signature(threads: int | None = None) -> dict:
    """What a CPU measurement depends on: model, matmul flags, thread count, torch version."""
    import torch

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "flags": sorted(flags & set(_MATMUL_FLAGS)), "threads": _threads(threads),
            "torch": torch.__version__.split("+")[0]}


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16), not by emulation."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_signature(1)["flags"]))


def _signature_key(sig: dict) -> str:
    return f"{sig['cpu']}|{','.join(sig['flags'])}|threads={sig['threads']}|torch={sig['torch']}"


# ---- the per-machine cache ------------------------------------------------------------------------
def cache_path() -> Path:
    """The JSON file holding this machine's measured peaks and precision choices."""
    root = os.environ.get("SCALING_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "vla-scaling")
    return Path(root) / "hardware.json"


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # A hand-edited or foreign file: its malformed parts are dropped (the next write removes them).
    return {name: {k: e for k, e in section.items() if isinstance(e, dict)}
            for name, section in data.items() if isinstance(section, dict)}


@contextlib.contextmanager
def _cache_lock():
    """Exclusive lock over measure-and-store, so two workers of a sweep never probe at once (each
    would halve the other's figure) and the second one reads the first one's result."""
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no lock, at worst a duplicated probe
            pass
        yield


def _write_cache(data: dict) -> None:
    write_atomic(cache_path(), json.dumps(data, indent=2, sort_keys=True) + "\n")


def machine_load() -> tuple[float | None, int]:
    """(the 1-minute load average, None where the OS keeps none; the machine's logical CPUs)."""
    cores = os.cpu_count() or 1
    try:
        return round(os.getloadavg()[0], 2), cores
    except (AttributeError, OSError):
        return None, cores


def load_is_quiet(load: float | None, cores: int, threads: int) -> bool:
    """Whether the load average `load` before a probe on `threads` threads left them cores of their own
    (`QUIET_LOAD_MARGIN`); an unknown load counts as quiet."""
    return load is None or load + threads <= cores + QUIET_LOAD_MARGIN


def entry_is_quiet(entry: dict) -> bool:
    """Whether a cache entry may stand for the machine: the verdict its probe recorded, or, for an entry
    cached before probes recorded one, the load average it was measured at (`load_is_quiet`)."""
    if "quiet" in entry:
        return bool(entry["quiet"])
    return load_is_quiet(entry.get("load_average"), int(entry.get("cores") or os.cpu_count() or 1),
                         int(entry.get("threads") or 1))


def entry_age_s(entry: dict) -> float | None:
    """Seconds since the entry's probe (None when it records no valid time)."""
    try:
        then = _dt.datetime.fromisoformat(entry["measured_at"])
    except (KeyError, TypeError, ValueError):
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, round((_dt.datetime.now(_dt.timezone.utc) - then).total_seconds(), 1))


def _stamped(measure) -> dict:
    """`measure()` stamped with its time, the load average before it and the cores; its ``quiet`` verdict
    is its own where it gives one, else the load's (`load_is_quiet`)."""
    load, cores = machine_load()
    entry = measure()
    entry["measured_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    entry["load_average"], entry["cores"] = load, cores
    entry["quiet"] = bool(entry.get("quiet", load_is_quiet(load, cores, int(entry["threads"]))))
    return entry


def _cached(section: str, key: str, measure) -> tuple[dict, bool]:
    """(entry, was_cached): the quiet entry cached under `key`, else a fresh `measure()` (`_stamped`),
    stored under `key` only when quiet: a probe under load serves this call alone."""
    entry = _read_cache().get(section, {}).get(key)
    if entry is not None and entry_is_quiet(entry):
        return entry, True
    with _cache_lock():
        data = _read_cache()  # another process may have measured while we waited
        entry = data.get(section, {}).get(key)
        if entry is not None and entry_is_quiet(entry):
            return entry, True
        entry = _stamped(measure)
        if entry["quiet"]:
            data.setdefault(section, {})[key] = entry
            _write_cache(data)
        return entry, False


@contextlib.contextmanager
def _torch_threads(threads: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---- peaks ----------------------------------------------------------------------------------------
def _matmul_probe(dtype: str, threads: int | None = None, n: int | None = None, trials: int | None = None,
                  trial_s: float | None = None) -> tuple[float, float]:
    """(best-of-`trials` FLOP/s, the CPU share of that best trial) of (n, n) @ (n, n) matmuls in `dtype`
    at `threads` threads; the share is process CPU seconds / (wall seconds x threads), 1.0 when the probe
    had its threads' cores to itself. Unset sizes are the module's `PROBE_*` settings."""
    import torch

    n = PROBE_N if n is None else n
    trials = PROBE_TRIALS if trials is None else trials
    trial_s = PROBE_TRIAL_S if trial_s is None else trial_s
    t = _threads(threads)
    with _torch_threads(t), torch.no_grad():
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g).to(getattr(torch, dtype))
        b = torch.randn(n, n, generator=g).to(getattr(torch, dtype))
        torch.mm(a, b)  # warm-up: oneDNN picks and JITs its kernel on the first call
        best, share = 0.0, 0.0
        for _ in range(trials):
            count, t0, c0 = 0, time.perf_counter(), time.process_time()
            while count == 0 or time.perf_counter() - t0 < trial_s:
                torch.mm(a, b)
                count += 1
            wall = time.perf_counter() - t0
            if 2.0 * n**3 * count / wall > best:
                best, share = 2.0 * n**3 * count / wall, (time.process_time() - c0) / (wall * t)
    return best, share


def _cpu_dtypes(sig: dict) -> tuple[str, ...]:
    # fp16 matmuls are emulated (and very slow) on CPUs without AVX512-FP16/AMX-FP16: not probed there.
    fp16 = {"avx512_fp16", "amx_fp16"} & set(sig["flags"])
    return ("bfloat16", "float16", "float32") if fp16 else ("bfloat16", "float32")


def _probe_peaks(sig: dict) -> dict:
    """One peak probe of every dtype at the signature's thread count: a cache entry, quiet when every
    dtype's best trial had at least `QUIET_CPU_SHARE` of its CPU time."""
    probes = {d: _matmul_probe(d, sig["threads"]) for d in _cpu_dtypes(sig)}
    share = min(s for _, s in probes.values())
    return {"peaks": {d: f for d, (f, _) in probes.items()}, "cpu_share": round(share, 3),
            "quiet": share >= QUIET_CPU_SHARE, "probes": 1,
            "probe": f"{PROBE_N}x{PROBE_N} matmul, best of {PROBE_TRIALS}", **sig}


def _fastest(entry: dict) -> float:
    return max(float(v) for v in entry["peaks"].values())


def peak_source(entry: dict, was_cached: bool) -> str:
    """The one-line `Peak.source` of a CPU peak entry: the probe, how it was obtained, its time and load."""
    load = entry.get("load_average")
    cores = entry.get("cores") or os.cpu_count() or 1
    share = f", {entry['cpu_share']:.0%} CPU share" if entry.get("cpu_share") is not None else ""
    where = (f"{entry.get('probe', 'matmul probe')} at {entry.get('threads')} thread(s) on {entry.get('cpu')} "
             f"({entry.get('measured_at', '?')}, load average {load} on {cores} cores{share}")
    if was_cached:
        return f"measured: {where}, cached, best of {entry.get('probes', 1)} quiet probe(s))"
    if entry.get("quiet"):
        return f"measured: {where}, just measured, cached)"
    return f"measured under load: {where}; this run only, not cached)"


def cpu_peak_entry(threads: int | None = None) -> tuple[dict, bool]:
    """(entry, was_cached): this CPU's peak entry at `threads` threads: the cached quiet probe, else a
    probe now (stored when quiet, `_cached`). The entry has ``peaks`` ({dtype: FLOP/s}), ``measured_at``,
    ``load_average``, ``cores``, ``cpu_share``, ``quiet`` and ``probes`` (how many quiet probes it is the
    best of)."""
    sig = cpu_signature(threads)
    return _cached("cpu_peaks", _signature_key(sig), lambda: _probe_peaks(sig))


def cpu_peaks(threads: int | None = None) -> tuple[dict[str, float], str]:
    """({dtype: FLOP/s}, source) for this CPU at `threads` threads: measured once quietly, then cached."""
    entry, was_cached = cpu_peak_entry(threads)
    return {k: float(v) for k, v in entry["peaks"].items()}, peak_source(entry, was_cached)


def refresh_cpu_peaks(threads: int | None = None) -> tuple[dict, dict | None]:
    """Probe this CPU's peaks at `threads` threads again, whatever the cache holds.

    A quiet probe is stored as the better of itself and the quiet entry cached before (the one whose
    fastest dtype is faster: load only slows a probe, so the higher figure is the truer one), its
    ``probes`` count raised by one; a probe under load is not stored.

    Returns:
        (the new probe's entry, the entry now cached for this thread count; None when there is no quiet one).
    """
    sig = cpu_signature(threads)
    key = _signature_key(sig)
    with _cache_lock():
        new = _stamped(lambda: _probe_peaks(sig))
        data = _read_cache()
        old = data.get("cpu_peaks", {}).get(key)
        old = old if old is not None and entry_is_quiet(old) else None
        if not new["quiet"]:
            return new, old
        kept = dict(new if old is None or _fastest(new) > _fastest(old) else old)
        kept["probes"] = 1 if old is None else int(old.get("probes", 1)) + 1
        data.setdefault("cpu_peaks", {})[key] = kept
        _write_cache(data)
        return new, kept


def gpu_peaks(name: str) -> dict[str, float]:
    """Vendor dense peaks {dtype: FLOP/s} for a CUDA device name ({} when the name is not in the table)."""
    upper = name.upper()
    for key, peaks in GPU_PEAKS:
        if key in upper:
            return dict(peaks)
    return {}


def peak_flops(accelerator: str, dtype: str, threads: int | None = None) -> tuple[float | None, str]:
    """Peak FLOP/s of one device for matmuls in `dtype`, and where the figure comes from.

    Args:
        accelerator: cpu | gpu | cuda | auto (auto: the GPU when CUDA is available).
        dtype: bfloat16 | float16 | float32, or a Lightning precision (bf16-mixed, 32-true, ...).
        threads: CPU threads (None: torch's current setting); ignored on GPUs.

    Returns:
        (FLOP/s or None when unknown, source); CPUs are measured (first call) or read from the cache.
    """
    dtype = PRECISION_DTYPE.get(dtype, dtype)
    if dtype not in DTYPES:
        raise BadInput(f"peak_flops: dtype must be one of {'|'.join(DTYPES)} or a precision, got {dtype!r}")
    if _cuda_wanted(accelerator):
        import torch

        name = torch.cuda.get_device_name(0)
        value = gpu_peaks(name).get(dtype)
        return value, (f"vendor table: {name} {dtype} dense" if value else f"unknown: {name} not in the table")
    peaks, source = cpu_peaks(threads)
    if dtype in peaks:
        return peaks[dtype], source
    return None, f"unknown: {dtype} not probed on this CPU (emulated)"


def mfu_peak(accelerator: str, threads: int | None = None, override: float | None = None) -> Peak:
    """The MFU denominator: peak FLOP/s of the FASTEST dtype the device offers.

    Args:
        accelerator: cpu | gpu | cuda | auto.
        threads: CPU threads of the run (None: torch's current setting).
        override: a peak given by the user (RunConfig.peak_flops); $SCALING_PEAK_FLOPS comes next.

    On CPUs the peak is the cached quiet probe, else one now (used for this run only when under load,
    `cpu_peak_entry`); its `Peak.load` and `Peak.age_s` say how busy the machine was and how old it is.
    """
    if override:
        return Peak(float(override), None, "config")
    if os.environ.get("SCALING_PEAK_FLOPS"):
        return Peak(float(os.environ["SCALING_PEAK_FLOPS"]), None, "$SCALING_PEAK_FLOPS")
    if _cuda_wanted(accelerator):
        import torch

        name = torch.cuda.get_device_name(0)
        peaks = gpu_peaks(name)
        if not peaks:
            return Peak(None, None, f"unknown: {name} not in the table (set peak_flops)")
        dtype = max(peaks, key=peaks.get)
        return Peak(peaks[dtype], dtype, f"vendor table: {name} {dtype} dense")
    entry, was_cached = cpu_peak_entry(threads)
    peaks = {k: float(v) for k, v in entry["peaks"].items()}
    dtype = max(peaks, key=peaks.get)
    load = entry.get("load_average")
    per_core = None if load is None else round(load / (entry.get("cores") or os.cpu_count() or 1), 3)
    return Peak(peaks[dtype], dtype, peak_source(entry, was_cached), load=per_core, age_s=entry_age_s(entry))


def mfu(flops_per_sample: float, samples_per_second: float | None, peak: float | None,
        world_size: int = 1) -> float | None:
    """Model FLOP utilisation: flops_per_sample x samples/s / (peak x world_size); None if unknown."""
    if not samples_per_second or not peak:
        return None
    return float(flops_per_sample) * samples_per_second / (peak * world_size)


# ---- what a run sets (torch-free: `sweep plan` uses these without importing torch) -----------------
def resolved_precision(cfg, accelerator: str) -> str:
    """The precision that will run (`cfg`: a RunConfig): fp16 autocast is a GPU feature, so CPUs run
    bf16 instead."""
    if cfg.model.precision == "16-mixed" and accelerator == "cpu":
        return "bf16-mixed"
    return cfg.model.precision


def run_threads(cfg, accelerator: str) -> int | None:
    """The torch thread count the run sets (`cfg`: a RunConfig): --threads, else the cores split
    between CPU processes, else None (torch's default stays)."""
    if cfg.hardware.threads:
        return cfg.hardware.threads
    if accelerator == "cpu" and cfg.hardware.devices > 1:  # CPU processes share the cores: no oversubscription
        return max(1, (os.cpu_count() or 1) // cfg.hardware.devices)
    return None


# ---- precision ------------------------------------------------------------------------------------
def _probe_model(model):
    if model is not None:
        return model
    from scaling.model.testing import tiny_config

    return tiny_config("1m", image_size=64, max_instr_len=16, proprio_dim=8, action_dim=7)


def _vla_config(model):
    """The vla `ModelConfig` that `model` is (a ModelConfig, or a `ResolvedModel` of the vla family), else None."""
    from scaling.model.config import ModelConfig

    if isinstance(model, ModelConfig):
        return model
    config = getattr(model, "config", None)
    return config if getattr(model, "family", None) == "vla" and isinstance(config, ModelConfig) else None


def _step_subject(model, batch_size: int, dims):
    """(a fresh torch module in training mode, a random batch of `batch_size`) for the step probe of `model`.

    The vla model gets the batch of its own config (`random_batch`); any other family one in the data
    contract's shapes (`contract_batch`) for `dims`, by default a factory family's own dims.

    Raises:
        BadInput: a family whose data dims are neither given nor known to the resolved model.
    """
    from scaling.model.testing import random_batch

    vla = _vla_config(model)
    if vla is model:  # a bare ModelConfig
        from scaling.model.vla import VLA

        return VLA(vla).train(), random_batch(vla, batch_size)
    module = model.build().train()
    if vla is not None:
        return module, random_batch(vla, batch_size)
    if dims is None:
        from scaling.model.family import Dims

        known = model.config.get("dims") if isinstance(model.config, dict) else None
        if not isinstance(known, dict):
            raise BadInput(f"precision auto: family {model.family}: the data's dims are needed to time its "
                           "training step")
        dims = Dims(**known)
    from scaling.model.measure import contract_batch

    return module, contract_batch(dims, batch_size)


def measure_step_seconds(model, batch_size: int, precisions: tuple[str, ...] = ("32-true", "bf16-mixed"),
                         steps: int = PRECISION_PROBE_STEPS, threads: int | None = None,
                         min_seconds: float = PRECISION_PROBE_S, dims=None) -> dict[str, float]:
    """Best seconds per training step of `model` at `batch_size` on the CPU, per precision.

    `model` is a vla `ModelConfig` or a `ResolvedModel` of any family (built with its ``build()``); `dims`
    (a `scaling.model.family.Dims`) shapes the random batch of a family other than vla (default: a
    factory family's own). One step is what the training loop does: forward under autocast (bf16-mixed:
    bf16 autocast with its weight cache on), backward, global-norm clipping, AdamW. Precisions are
    interleaved step by step after one warm-up each, so a load change hits them alike; the best step
    counts. At least `steps` rounds, and more until each precision has `min_seconds` of timed steps (at
    most `PRECISION_PROBE_MAX_STEPS` rounds).
    """
    import torch

    with _torch_threads(_threads(threads)):
        torch.manual_seed(0)
        module, batch = _step_subject(model, batch_size, dims)
        opt = torch.optim.AdamW(module.parameters(), lr=1e-4)

        def step(precision: str) -> float:
            t0 = time.perf_counter()
            dtype = PRECISION_DTYPE[precision]
            with torch.autocast("cpu", dtype=getattr(torch, dtype), enabled=precision.endswith("-mixed")):
                loss, _ = module(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return time.perf_counter() - t0

        for p in precisions:
            step(p)
        best = {p: float("inf") for p in precisions}
        spent = {p: 0.0 for p in precisions}
        rounds = 0
        while rounds < steps or (min(spent.values()) < min_seconds and rounds < PRECISION_PROBE_MAX_STEPS):
            for p in precisions:
                t = step(p)
                best[p] = min(best[p], t)
                spent[p] += t
            rounds += 1
    return best


def resolve_precision(precision: str, accelerator: str = "auto", threads: int | None = None, *,
                      model=None, batch_size: int = 32, dims=None) -> tuple[str, str]:
    """The precision a run should use, and why.

    Anything but "auto" is returned as given. "auto": on GPUs bf16-mixed where supported, else
    16-mixed; on CPUs the faster of 32-true and bf16-mixed in a measured probe of the training step
    (`measure_step_seconds`) of `model` at `batch_size` samples per device, cached per machine, thread
    count, model and batch (a probe under load is used and not cached, `_cached`).

    Args:
        model: a `ResolvedModel` of any family, or a vla `ModelConfig` (default: a 1m-parameter VLA on
            64 px images). The vla model's cache key is its shape; any other family's is its name,
            parameter count and FLOPs per sample.
        dims: the data's `Dims`, shaping the probe's batch for a family other than vla.

    Returns:
        (a Lightning precision, a one-line reason).
    """
    if precision != "auto":
        if precision not in PRECISION_DTYPE:
            raise BadInput(f"precision must be auto or one of {'|'.join(PRECISION_DTYPE)}, got {precision!r}")
        return precision, "as configured"
    if _cuda_wanted(accelerator):
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "auto: the GPU supports bf16"
        return "16-mixed", "auto: the GPU lacks bf16"
    sig = cpu_signature(threads)
    model = _probe_model(model)
    vla = _vla_config(model)
    if vla is not None:  # vla: keyed by its shape alone (no family), the key its cached probes are stored under
        shape = f"d{vla.d_model}xL{vla.n_layers}xT{vla.seq_len}xff{vla.d_ff}|{vla.head}|batch={batch_size}"
    else:
        shape = (f"family={model.family}|n_params={model.n_params}|flops={model.flops_per_sample}"
                 f"|batch={batch_size}")

    def measure() -> dict:
        seconds = measure_step_seconds(model, batch_size, threads=sig["threads"], dims=dims)
        return {"seconds_per_step": seconds, "precision": min(seconds, key=seconds.get), **sig}

    # "probe=..." names the probe's method: a cached figure of an older, shorter probe is measured again.
    key = f"{_signature_key(sig)}|{shape}|probe={PRECISION_PROBE_STEPS}x{PRECISION_PROBE_S}s"
    entry, was_cached = _cached("precision", key, measure)
    sec = entry["seconds_per_step"]
    speeds = ", ".join(f"{p} {batch_size / s:.1f} samples/s" for p, s in sec.items())
    note = "" if was_cached or entry["quiet"] else \
        f"; taken under load (load average {entry['load_average']} on {entry['cores']} cores): not cached"
    return entry["precision"], f"auto ({'cached' if was_cached else 'measured'} probe, {shape}: {speeds}{note})"


__all__ = ["DTYPES", "GPU_PEAKS", "Peak", "QUIET_CPU_SHARE", "QUIET_LOAD_MARGIN", "cache_path",
           "cpu_has_native_bf16", "cpu_peak_entry", "cpu_peaks", "cpu_signature", "entry_age_s", "entry_is_quiet",
           "gpu_peaks", "load_is_quiet", "machine_load", "measure_step_seconds", "mfu",
           "mfu_peak", "peak_flops", "peak_source", "refresh_cpu_peaks", "resolve_precision"]
