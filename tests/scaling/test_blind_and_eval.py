"""The blind source (inputs withheld) and closed-loop evaluation on the data's own task families."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.data.blind import BlindSource, blank_inputs
from scaling.evaluation import not_evaluated_reason, tabletop_families


class _Source:
    def __init__(self, desc):
        self.desc = desc

    def describe(self):
        return self.desc

    def get_batch(self, indices, chunk=1):
        n = len(indices)
        return {"image": np.full((n, 4, 4, 3), 200, np.uint8), "instruction": np.arange(1, 3 * n + 1).reshape(n, 3),
                "proprio": np.ones((n, 4), np.float32)}


def test_blank_inputs_withholds_image_and_instruction_only():
    src = BlindSource(_Source({"generator": "tabletop"}))
    b = src.get_batch([0, 1])
    assert not b["image"].any() and not b["instruction"].any()  # constant image, all padding
    assert (b["proprio"] == 1).all()  # the robot's own state stays
    assert src.describe()["blind"] is True and src.blind is True
    raw = _Source({}).get_batch([0])
    blank_inputs(raw)
    assert raw["image"].all(), "blank_inputs must not modify its input"


def test_families_come_from_the_data():
    assert tabletop_families(_Source({"generator": "tabletop", "families": "touch,reach_zone"})) == \
        ("reach_zone", "touch")
    assert tabletop_families(_Source({"generator": "tabletop", "families": None})) is None
    mix = {"mixture": [{"generator": "tabletop", "families": "touch"}, {"generator": "tabletop", "families": "stack"}]}
    assert tabletop_families(_Source(mix)) == ("stack", "touch")
    mix["mixture"].append({"generator": "tabletop"})  # a member drawn from every family
    assert tabletop_families(_Source(mix)) is None


def test_not_evaluated_reasons_are_said():
    assert not_evaluated_reason(_Source({"generator": "tabletop"}), 10) is None
    assert not_evaluated_reason(_Source({"generator": "tabletop"}), 0) == "eval_episodes is 0"
    why = not_evaluated_reason(_Source({"generator": "metaworld"}), 10)
    assert "tabletop simulator" in why and "metaworld" in why


@pytest.mark.usefixtures("one_thread")
def test_success_rate_uses_the_training_families(monkeypatch, tmp_path):
    import scaling.data.tabletop as tabletop
    from scaling.evaluation import success_rate

    seen = {}

    def fake_evaluate(policy, n, *, seed, image_size, families, objects):
        seen.update(n=n, families=families, objects=objects, blind=policy.blind)
        return {"success_rate": 0.25, "per_task": {"touch": 0.25}, "per_task_episodes": {"touch": n}}

    monkeypatch.setattr(tabletop, "evaluate_policy", fake_evaluate)
    import torch

    class Src(_Source):
        image_size = 32
        tokenizer = action_tokenizer = None
        proprio_mean = np.zeros(4, np.float32)
        proprio_std = np.ones(4, np.float32)

    model = torch.nn.Linear(1, 1)
    src = Src({"generator": "tabletop", "families": "touch"})
    assert success_rate(model, src, 7) == 0.25
    assert seen == {"n": 7, "families": ("touch",), "objects": None, "blind": False}
    assert success_rate(model, BlindSource(src), 3) == 0.25 and seen["blind"] is True
    # ... and on the objects-per-scene range it was generated with.
    assert success_rate(model, Src({"generator": "tabletop", "families": "touch", "objects": "1-5"}), 2) == 0.25
    assert seen["objects"] == "1-5"
    # The breakdown per family, as result.json's success_per_task records it.
    from scaling.evaluation import evaluate_success

    assert evaluate_success(model, src, 7) == {"success_rate": 0.25, "per_task": {"touch": 0.25},
                                               "per_task_episodes": {"touch": 7}}
    assert evaluate_success(model, src, 0) is None


@pytest.mark.usefixtures("one_thread")
def test_input_reliance_is_zero_for_ignored_inputs_and_positive_for_used_ones():
    import torch

    from scaling.probe import input_reliance

    class Model(torch.nn.Module):
        """Loss = squared error of a prediction that reads only the image's mean."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def loss(self, b):
            pred = b["image"].float().mean((1, 2, 3)) / 255.0 * self.w
            return ((pred - b["proprio"][:, 0]) ** 2).mean(), {}

    class Src:
        def val_indices(self, n):
            return np.arange(64)

        def get_batch(self, idx):
            rng = np.random.default_rng(0)
            level = rng.uniform(0, 1, size=len(idx))
            image = np.broadcast_to((level * 255).astype(np.uint8)[:, None, None, None], (len(idx), 2, 2, 3)).copy()
            proprio = np.stack([np.round(level * 255) / 255, np.zeros(len(idx))], 1).astype(np.float32)
            return {"image": image, "proprio": proprio, "instruction": np.ones((len(idx), 3), np.int64)}

    rel = input_reliance(Model(), Src(), 64)
    assert rel["instruction"] == 0.0  # never read
    assert rel["image"] > 0.05 and rel["proprio"] > 0.05  # the target lives in both
