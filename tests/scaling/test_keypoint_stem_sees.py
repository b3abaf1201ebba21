"""The keypoint stem must see the image: a stem fed a zeroed image changes the model's output.

A stem that cannot see (its input zeroed, detached from the pixels, or its tokens dropped) leaves
every other test passing, because the patch tokens still carry the image; so the patch path is cut
here and the image can reach the model only through the stem.
"""

from __future__ import annotations

import pytest
import torch

from scaling.model import VLA
from scaling.model.testing import random_batch, tiny_config


@pytest.mark.parametrize("film", [False, True])
def test_a_zeroed_image_through_the_keypoint_stem_changes_the_output(film, one_thread):
    torch.manual_seed(0)
    cfg = tiny_config("debug", keypoints=4, film=film)
    model = VLA(cfg).eval()
    batch = random_batch(cfg, 3)
    zeroed = {**batch, "image": torch.zeros_like(batch["image"])}
    with torch.no_grad():
        model.embed.patch.weight.zero_()  # cut the patch path: pixels reach the model only through the stem
        model.embed.patch.bias.zero_()
        points, points_zeroed = (model.embed.keypoints(b["image"], b["instruction"]) for b in (batch, zeroed))
        assert (points - points_zeroed).abs().max() > 1e-3  # the stem's own output moves with the image
        seen, blind = model.encode(batch), model.encode(zeroed)
        assert (seen - blind).abs().max() > 1e-4  # and the model's readout states with it
        assert abs(float(model.loss(batch)[0]) - float(model.loss(zeroed)[0])) > 1e-6
