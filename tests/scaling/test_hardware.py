"""Peak FLOP/s per dtype, the MFU denominator, and `precision: auto` (scaling.hardware)."""

from __future__ import annotations

import json

import pytest

from analysis.errors import BadInput
from scaling import hardware
from scaling.config import RunConfig


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private per-test cache, and small probes so the tests stay fast."""
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCALING_PEAK_FLOPS", raising=False)
    monkeypatch.setattr(hardware, "PROBE_N", 256)
    monkeypatch.setattr(hardware, "PROBE_TRIALS", 2)
    monkeypatch.setattr(hardware, "PROBE_TRIAL_S", 0.01)
    real = hardware.measure_matmul_flops
    monkeypatch.setattr(hardware, "measure_matmul_flops",
                        lambda d, t=None, n=256, trials=2, trial_s=0.01: real(d, t, n, trials, trial_s))
    return tmp_path / "cache"


@pytest.mark.parametrize("name, dtype, value", [
    ("NVIDIA H200", "bfloat16", 989.4e12),
    ("NVIDIA H100 PCIe", "bfloat16", 756.5e12),
    ("NVIDIA H100 80GB HBM3", "float32", 66.9e12),
    ("NVIDIA GH200 480GB", "bfloat16", 989.4e12),
    ("NVIDIA A100-SXM4-80GB", "bfloat16", 312e12),
    ("NVIDIA A10G", "bfloat16", 70e12),
    ("NVIDIA L4", "bfloat16", 121e12),
    ("NVIDIA L40S", "float32", 91.6e12),
    ("Tesla V100-SXM2-16GB", "float16", 125e12),
])
def test_gpu_vendor_table(name, dtype, value):
    assert hardware.gpu_peaks(name)[dtype] == value


def test_gpu_table_has_no_bf16_where_the_gpu_lacks_it_and_unknown_gpus_are_empty():
    assert "bfloat16" not in hardware.gpu_peaks("Tesla V100-PCIE-32GB")
    assert "bfloat16" not in hardware.gpu_peaks("Tesla T4")
    assert hardware.gpu_peaks("Some Future GPU") == {}


def test_cpu_peak_is_measured_once_then_read_from_the_cache(cache_dir, monkeypatch):
    value, source = hardware.peak_flops("cpu", "float32", threads=1)
    assert value > 1e8 and source.startswith("measured:") and "just measured" in source
    entry = json.loads((cache_dir / "hardware.json").read_text())["cpu_peaks"]
    (key, stored), = entry.items()
    assert "threads=1" in key and stored["threads"] == 1 and stored["peaks"]["float32"] == value
    assert "load_average" in stored and "measured_at" in stored

    def boom(*a, **k):
        raise AssertionError("re-measured a cached peak")

    monkeypatch.setattr(hardware, "measure_matmul_flops", boom)
    again, source = hardware.peak_flops("cpu", "32-true", threads=1)  # a precision names its dtype
    assert again == value and "cached" in source


def test_the_cache_is_keyed_by_thread_count(cache_dir):
    hardware.cpu_peaks(threads=1)
    hardware.cpu_peaks(threads=2)
    keys = json.loads((cache_dir / "hardware.json").read_text())["cpu_peaks"]
    assert sorted(k.rsplit("|", 2)[1] for k in keys) == ["threads=1", "threads=2"]


def test_probe_flops_agree_with_torchs_flop_counter():
    # Someone else's count of the probe's work: FlopCounterMode on one probe matmul is 2 n^3.
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    n = 64
    with FlopCounterMode(display=False) as counter:
        torch.mm(torch.randn(n, n), torch.randn(n, n))
    assert counter.get_total_flops() == 2 * n**3


def test_mfu_peak_is_the_fastest_dtype_and_overrides_win(cache_dir, monkeypatch):
    peaks, _ = hardware.cpu_peaks(threads=1)
    peak = hardware.mfu_peak("cpu", threads=1)
    assert peak.value == max(peaks.values()) and peaks[peak.dtype] == peak.value
    assert hardware.mfu_peak("cpu", threads=1, override=5e9) == hardware.Peak(5e9, None, "config")
    monkeypatch.setenv("SCALING_PEAK_FLOPS", "7e9")
    assert hardware.mfu_peak("cpu", threads=1).value == 7e9


def test_native_bf16_cpu_reports_a_bf16_peak_above_fp32(cache_dir):
    if not hardware.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (avx512_bf16 / amx_bf16)")
    peaks, _ = hardware.cpu_peaks(threads=1)
    assert peaks["bfloat16"] > peaks["float32"]


def test_mfu_formula():
    assert hardware.mfu(1e6, 50.0, 1e9) == pytest.approx(0.05)
    assert hardware.mfu(1e6, 50.0, 1e9, world_size=2) == pytest.approx(0.025)
    assert hardware.mfu(1e6, None, 1e9) is None and hardware.mfu(1e6, 50.0, None) is None


def test_bad_dtype_is_bad_input(cache_dir):
    with pytest.raises(BadInput, match="dtype"):
        hardware.peak_flops("cpu", "float8")
    with pytest.raises(BadInput, match="precision"):
        hardware.resolve_precision("bf17-mixed", "cpu")


def test_explicit_precision_passes_through_untouched(cache_dir):
    assert hardware.resolve_precision("32-true", "cpu") == ("32-true", "as configured")
    assert not (cache_dir / "hardware.json").exists()  # nothing measured


def test_auto_precision_picks_the_faster_measured_step_and_caches_it(cache_dir, monkeypatch):
    from scaling.model.testing import tiny_config

    cfg = tiny_config("debug")
    calls = []

    def fake_probe(model_cfg, batch_size, precisions=("32-true", "bf16-mixed"), steps=3, threads=None):
        calls.append((model_cfg, batch_size, threads))
        return {"32-true": 0.02, "bf16-mixed": 0.01}

    monkeypatch.setattr(hardware, "measure_step_seconds", fake_probe)
    precision, why = hardware.resolve_precision("auto", "cpu", 1, model_cfg=cfg, batch_size=4)
    assert precision == "bf16-mixed" and "measured" in why and "400.0 samples/s" in why
    assert calls == [(cfg, 4, 1)]
    assert hardware.resolve_precision("auto", "cpu", 1, model_cfg=cfg, batch_size=4)[0] == "bf16-mixed"
    assert len(calls) == 1  # second call: cached
    hardware.resolve_precision("auto", "cpu", 1, model_cfg=cfg, batch_size=8)
    assert len(calls) == 2  # another micro-batch is another probe


def test_real_step_probe_times_both_precisions(cache_dir, one_thread):
    from scaling.model.testing import tiny_config

    seconds = hardware.measure_step_seconds(tiny_config("debug"), batch_size=2, steps=1, threads=1, min_seconds=0)
    assert set(seconds) == {"32-true", "bf16-mixed"} and all(0 < s < 60 for s in seconds.values())


def test_step_probe_takes_more_steps_until_each_precision_has_its_time(cache_dir, one_thread):
    # A tiny model's steps take milliseconds: three of them would let one lucky step decide.
    import time

    from scaling.model.testing import tiny_config

    t0 = time.perf_counter()
    hardware.measure_step_seconds(tiny_config("debug"), batch_size=2, steps=1, threads=1, min_seconds=0.2)
    assert time.perf_counter() - t0 >= 2 * 0.2  # both precisions timed for >= 0.2 s each


def test_run_config_accepts_auto_precision():
    assert RunConfig(data="d", precision="auto").precision == "auto"
    with pytest.raises(BadInput, match="precision"):
        RunConfig(data="d", precision="fast")


def test_train_cli_resolves_auto_before_the_run(tiny_dataset, cache_dir, monkeypatch, tmp_path):
    from scaling import train_cli
    from scaling.config import resolve

    monkeypatch.setattr(hardware, "measure_step_seconds",
                        lambda m, b, precisions=(), steps=3, threads=None: {"32-true": 0.01, "bf16-mixed": 0.03})
    cfg = resolve(None, {"data": str(tiny_dataset), "size": "debug", "precision": "auto",
                         "batch_size": 8, "out": str(tmp_path / "run")})
    assert train_cli.resolve_auto_precision(cfg).precision == "32-true"
