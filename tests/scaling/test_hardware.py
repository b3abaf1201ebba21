"""Peak FLOP/s per dtype, the MFU denominator, and `precision: auto` (scaling.hardware)."""

from __future__ import annotations

import json

import pytest

from scaling import hardware
from scaling.config import from_mapping
from vla_core.errors import BadInput


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A private per-test cache, small probes so the tests stay fast, and a quiet machine: the test
    machine is shared, so a real probe's load would decide what these tests see."""
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SCALING_PEAK_FLOPS", raising=False)
    monkeypatch.setattr(hardware, "PROBE_N", 256)
    monkeypatch.setattr(hardware, "PROBE_TRIALS", 2)
    monkeypatch.setattr(hardware, "PROBE_TRIAL_S", 0.01)
    real = hardware._matmul_probe
    monkeypatch.setattr(hardware, "_matmul_probe", lambda *a, **k: (real(*a, **k)[0], 1.0))
    monkeypatch.setattr(hardware, "machine_load", lambda: (0.0, 4))
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

    monkeypatch.setattr(hardware, "_matmul_probe", boom)
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

    def fake_probe(model, batch_size, precisions=("32-true", "bf16-mixed"), steps=3, threads=None, dims=None):
        calls.append((model, batch_size, threads))
        return {"32-true": 0.02, "bf16-mixed": 0.01}

    monkeypatch.setattr(hardware, "measure_step_seconds", fake_probe)
    precision, why = hardware.resolve_precision("auto", "cpu", 1, model=cfg, batch_size=4)
    assert precision == "bf16-mixed" and "measured" in why and "400.0 samples/s" in why
    assert calls == [(cfg, 4, 1)]
    assert hardware.resolve_precision("auto", "cpu", 1, model=cfg, batch_size=4)[0] == "bf16-mixed"
    assert len(calls) == 1  # second call: cached
    hardware.resolve_precision("auto", "cpu", 1, model=cfg, batch_size=8)
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
    assert from_mapping({"data.source": "d", "model.precision": "auto"}).model.precision == "auto"
    with pytest.raises(BadInput, match="precision"):
        from_mapping({"data.source": "d", "model.precision": "fast"})


def test_train_cli_resolves_auto_before_the_run(tiny_dataset, cache_dir, monkeypatch, tmp_path):
    from scaling import train_cli
    from scaling.config import resolve
    from scaling.data import open_source
    from scaling.train import model_config

    monkeypatch.setattr(hardware, "measure_step_seconds",
                        lambda m, b, precisions=(), steps=3, threads=None, dims=None: {"32-true": 0.01,
                                                                                       "bf16-mixed": 0.03})
    cfg = resolve(None, {"data.source": str(tiny_dataset), "model.size": "debug", "model.precision": "auto",
                         "optim.batch_size": 8, "out": str(tmp_path / "run")})
    assert train_cli.resolve_auto_precision(cfg).model.precision == "32-true"
    # The vla model is keyed by its shape alone (no family), the key its cached probes are stored under.
    m = model_config(cfg, open_source(cfg.data.source))
    (key,) = json.loads((cache_dir / "hardware.json").read_text())["precision"]
    assert key.endswith(f"|d{m.d_model}xL{m.n_layers}xT{m.seq_len}xff{m.d_ff}|{m.head}|batch=8|probe=3x0.5s")


# ---- a busy machine never becomes the machine's figure ---------------------------------------------
def _probes(monkeypatch, *results):
    """Make the peak probes return `results` in turn, each (FLOP/s, CPU share), one per dtype probed."""
    queue = list(results)

    def probe(dtype, threads=None, *a, **k):
        return queue[0] if len(queue) == 1 else queue.pop(0)

    monkeypatch.setattr(hardware, "_matmul_probe", probe)


def _peak_entries(cache_dir) -> dict:
    path = cache_dir / "hardware.json"
    return json.loads(path.read_text()).get("cpu_peaks", {}) if path.exists() else {}


def test_a_peak_probed_under_load_serves_its_run_and_is_not_cached(cache_dir, monkeypatch):
    _probes(monkeypatch, (3.07e11, 0.3))  # the probe got 30% of its cores: others held them
    busy = hardware.mfu_peak("cpu", threads=2)
    assert busy.value == 3.07e11 and busy.source.startswith("measured under load") and "not cached" in busy.source
    assert busy.load == 0.0 and busy.age_s is not None and busy.age_s < 60
    assert _peak_entries(cache_dir) == {}
    _probes(monkeypatch, (1.7e12, 0.97))  # the next run finds the machine quiet: measured again, cached
    quiet = hardware.mfu_peak("cpu", threads=2)
    assert quiet.value == 1.7e12 and "just measured, cached" in quiet.source
    (entry,) = _peak_entries(cache_dir).values()
    assert entry["quiet"] and entry["cpu_share"] == 0.97 and entry["probes"] == 1
    assert hardware.mfu_peak("cpu", threads=2).source.startswith("measured: ")  # read back, no probe


def test_an_entry_cached_under_load_by_an_older_version_is_measured_again(cache_dir, monkeypatch):
    # A cached 2-thread bf16 peak of 3.07e11 measured at load average 6.65 (4 cores here).
    sig = hardware.cpu_signature(2)
    old = {**sig, "peaks": {"bfloat16": 3.07e11, "float32": 1e11}, "load_average": 6.65,
           "measured_at": "2026-01-01T00:00:00+00:00", "probe": "2048x2048 matmul, best of 5"}
    cache_dir.mkdir()
    (cache_dir / "hardware.json").write_text(json.dumps({"cpu_peaks": {hardware._signature_key(sig): old}}))
    monkeypatch.setattr(hardware.os, "cpu_count", lambda: 4)
    assert not hardware.entry_is_quiet(old)
    _probes(monkeypatch, (1.7e12, 1.0))
    assert hardware.mfu_peak("cpu", threads=2).value == 1.7e12
    (entry,) = _peak_entries(cache_dir).values()
    assert entry["peaks"]["bfloat16"] == 1.7e12 and entry["quiet"]
    # An entry measured quietly stays valid, however old: no probe.
    calm = {**old, "load_average": 0.3}
    (cache_dir / "hardware.json").write_text(json.dumps({"cpu_peaks": {hardware._signature_key(sig): calm}}))
    _probes(monkeypatch, (9e12, 1.0))
    peak = hardware.mfu_peak("cpu", threads=2)
    assert peak.value == 3.07e11 and peak.load == 0.075 and peak.age_s > 86400


def test_refresh_keeps_the_best_of_the_quiet_probes_and_stores_none_under_load(cache_dir, monkeypatch):
    _probes(monkeypatch, (5e11, 0.95))
    new, kept = hardware.refresh_cpu_peaks(1)
    assert new["quiet"] and kept["probes"] == 1 and max(kept["peaks"].values()) == 5e11
    _probes(monkeypatch, (4e11, 0.99))  # a slower quiet probe: the faster one stays
    new, kept = hardware.refresh_cpu_peaks(1)
    assert max(new["peaks"].values()) == 4e11 and max(kept["peaks"].values()) == 5e11 and kept["probes"] == 2
    _probes(monkeypatch, (6e11, 0.92))  # a faster one replaces it
    _, kept = hardware.refresh_cpu_peaks(1)
    assert max(kept["peaks"].values()) == 6e11 and kept["probes"] == 3
    _probes(monkeypatch, (1e11, 0.4))  # under load: not stored
    new, kept = hardware.refresh_cpu_peaks(1)
    assert not new["quiet"] and max(kept["peaks"].values()) == 6e11
    (entry,) = _peak_entries(cache_dir).values()
    assert max(entry["peaks"].values()) == 6e11 and entry["probes"] == 3


def test_the_probe_measures_its_own_cpu_share(one_thread):
    flops, share = hardware._matmul_probe("float32", 1, n=128, trials=2, trial_s=0.01)
    assert flops > 1e6 and 0 < share <= 1.2  # CPU seconds over wall seconds, one thread


def test_auto_precision_probed_under_load_is_used_but_not_cached(cache_dir, monkeypatch):
    from scaling.model.testing import tiny_config

    calls = []

    def probe(model, batch_size, threads=None, dims=None, **_):
        calls.append(batch_size)
        return {"32-true": 0.01, "bf16-mixed": 0.02}

    monkeypatch.setattr(hardware, "measure_step_seconds", probe)
    monkeypatch.setattr(hardware, "machine_load", lambda: (4.3, 2))  # a 1-thread probe on 2 busy cores
    for _ in range(2):
        precision, why = hardware.resolve_precision("auto", "cpu", 1, model=tiny_config("debug"), batch_size=4)
        assert precision == "32-true" and why.endswith("; taken under load (load average 4.3 on 2 cores): not cached)")
    assert len(calls) == 2 and not (cache_dir / "hardware.json").exists()
    monkeypatch.setattr(hardware, "machine_load", lambda: (0.4, 2))
    hardware.resolve_precision("auto", "cpu", 1, model=tiny_config("debug"), batch_size=4)
    hardware.resolve_precision("auto", "cpu", 1, model=tiny_config("debug"), batch_size=4)
    assert len(calls) == 3  # quiet: measured once more, then cached


# ---- `precision: auto` for every family --------------------------------------------------------------
TINY_FAMILY = '''
import torch
import torch.nn.functional as F
from torch import nn

from scaling.model.family import ModelFamily, ResolvedModel
from scaling.model.measure import FamilyPolicy


class Tiny(nn.Module):
    def __init__(self, dims, width):
        super().__init__()
        self.dims = dims
        self.inp = nn.Linear(3 + dims.proprio_dim, width)
        self.out = nn.Linear(width, dims.chunk * dims.action_dim * dims.action_bins)

    def logits(self, batch):
        x = torch.cat([batch["image"].float().mean(dim=(1, 2)) / 255, batch["proprio"].float()], 1)
        d = self.dims
        return self.out(F.relu(self.inp(x))).view(-1, d.chunk, d.action_dim, d.action_bins)

    def forward(self, batch):
        loss = F.cross_entropy(self.logits(batch).float().flatten(0, 2), batch["action_tokens"].flatten())
        return loss, {}

    @torch.no_grad()
    def predict(self, batch):
        return (self.logits(batch).argmax(-1).float() + 0.5) * (2 / self.dims.action_bins) - 1


class TinyFamily(ModelFamily):
    """A family with its own resolve: its config is no dict of dims, so the probe needs the data's."""

    name = "tiny"

    def resolve(self, size, dims, options):
        n = sum(p.numel() for p in Tiny(dims, 16).parameters())
        return ResolvedModel(family=self.name, size=size, n_params=n, n_params_nonembed=n, flops_per_sample=6 * n,
                             flops_source="analytic", shape={"width": 16}, size_name=str(size), config=(dims, 16),
                             owner=self)

    def build(self, model):
        return FamilyPolicy(Tiny(*model.config))


FAMILY = TinyFamily()
'''


@pytest.mark.parametrize("family", ["conv", "tiny"])
def test_auto_precision_resolves_for_any_family(family, tiny_dataset, cache_dir, tmp_path, monkeypatch, one_thread):
    """`precision: auto` times the family's own training step (a real, short probe) and caches it under the
    family, its parameter count and FLOPs per sample."""
    from scaling import train_cli
    from scaling.config import resolve
    from scaling.model.family import ResolvedModel

    if family == "tiny":
        module = f"tiny_family_{tmp_path.name.replace('-', '_')}"
        (tmp_path / f"{module}.py").write_text(TINY_FAMILY)
        monkeypatch.setenv("SCALING_FAMILY_PATH", str(tmp_path))
        family = f"{module}:FAMILY"
    real, seen = hardware.measure_step_seconds, []

    def short(model, batch_size, threads=None, dims=None, **_):
        seen.append(model)
        return real(model, batch_size, steps=1, threads=threads, min_seconds=0, dims=dims)

    monkeypatch.setattr(hardware, "measure_step_seconds", short)
    cfg = resolve(None, {"data.source": str(tiny_dataset), "model": {"family": family, "size": "30k",
                                                                     "precision": "auto"},
                         "optim.batch_size": 4, "hardware.threads": 1, "out": str(tmp_path / "run")})
    assert train_cli.resolve_auto_precision(cfg).model.precision in ("32-true", "bf16-mixed")
    (model,) = seen
    assert isinstance(model, ResolvedModel) and model.family in ("conv", "tiny")
    (key,) = json.loads((cache_dir / "hardware.json").read_text())["precision"]
    assert f"|family={model.family}|n_params={model.n_params}|flops={model.flops_per_sample}|batch=4|" in key
    assert train_cli.auto_precision(cfg)[1].startswith("auto (cached probe") and len(seen) == 1


def test_a_family_probe_without_the_datas_dims_is_bad_input(tmp_path, monkeypatch):
    from scaling.model.family import Dims, resolve_model

    module = f"tiny_family_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(TINY_FAMILY)
    monkeypatch.setenv("SCALING_FAMILY_PATH", str(tmp_path))
    model = resolve_model(f"{module}:FAMILY", "30k", Dims(image_size=8, proprio_dim=2, action_dim=2,
                                                            vocab_size=5, max_instr_len=3))
    with pytest.raises(BadInput, match="family tiny: the data's dims are needed"):
        hardware.measure_step_seconds(model, 2, steps=1, threads=1, min_seconds=0)


# ---- `scaling hardware` --------------------------------------------------------------------------------
def test_hardware_command_shows_and_refreshes_the_cache(cache_dir, monkeypatch, capsys):
    from sweeps.cli import main

    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {cache_dir / 'hardware.json'}" in out and "(0 entries)" in out
    _probes(monkeypatch, (2e11, 0.98))
    assert main(["hardware", "--refresh", "--threads", "1,2"]) == 0
    out = capsys.readouterr().out
    assert out.count(": stored; the cache keeps 2e+11, best of 1") == 2 and "(2 entries)" in out
    assert "load average 0.0 on 4 cores, 98% CPU share, best of 1 quiet probe(s); used" in out
    _probes(monkeypatch, (3e11, 0.99))
    assert main(["hardware", "--refresh"]) == 0  # the thread counts cached for this CPU
    out = capsys.readouterr().out
    assert out.count("the cache keeps 3e+11, best of 2") == 2
    _probes(monkeypatch, (1e11, 0.5))
    assert main(["hardware", "--refresh", "--threads", "1"]) == 1  # under load: nothing stored
    out = capsys.readouterr().out
    assert "1 thread(s): bfloat16 1e+11 FLOP/s (load average 0.0 on 4 cores, 50% CPU share): under load, not stored" \
        in out
    assert {max(e["peaks"].values()) for e in _peak_entries(cache_dir).values()} == {3e11}


@pytest.mark.parametrize("argv, message", [
    (["hardware", "--refresh", "--threads", "0"], "--threads takes positive integers"),
    (["hardware", "--refresh", "--threads", "two"], "--threads takes positive integers"),
    (["hardware", "--threads", "1"], "--threads goes with --refresh"),
])
def test_hardware_command_bad_input_exits_2_with_one_line(argv, message, cache_dir, capsys):
    from sweeps.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_hardware_command_reports_an_unreadable_cache(cache_dir, capsys):
    from sweeps.cli import main

    cache_dir.mkdir()
    (cache_dir / "hardware.json").write_text('{"cpu_peaks": [1, 2]}')
    assert main(["hardware"]) == 0
    assert "unreadable (not the cache's JSON): the next probe rewrites it" in capsys.readouterr().out
