"""benchmarks.bench_gemm records every matmul of a training step: their FLOPs are the accounting's."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.usefixtures("one_thread")
def test_recorded_matmuls_are_the_accounted_flops(tiny_dataset):
    import torch

    from benchmarks.bench_gemm import _flops, record_step, time_matmul
    from scaling.config import from_mapping
    from scaling.data import open_source
    from scaling.model import VLA, flops_per_sample
    from scaling.train import model_config

    source = open_source(str(tiny_dataset))
    cfg = model_config(from_mapping({"data.source": str(tiny_dataset), "model.size": "debug", "data.samples": 4,
                                     "optim.batch_size": 4}), source)
    model = VLA(cfg)
    raw = source.get_batch(source.train_indices(4, seed=0))
    batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items()}
    calls = record_step(model, batch)
    # No conv stem in this family, attention as explicit matmuls under CPU autocast: every accounted
    # FLOP is a matmul the step makes, forward and backward, and autocast hands them all over in bf16.
    assert sum(_flops(k[0], k[1]) * n for k, n in calls.items()) == flops_per_sample(cfg) * 4
    assert {d for k in calls for d in k[3]} == {"bfloat16"}
    # A recorded matmul replays alone, transposed operands included.
    key = next(k for k in calls if any(s[0] < s[-1] for s in k[2] if len(s) == 2))
    assert time_matmul(key, repeats=1, min_seconds=0.0) > 0
