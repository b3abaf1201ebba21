"""Tabletop tasks and experts: diversity, expert success, closed-loop evaluation, held-out seeds."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from scaling.data.tabletop import (
    EVAL_BRANCH,
    FAMILY_NAMES,
    TRAIN_BRANCH,
    ExpertPolicy,
    RandomPolicy,
    TabletopEnv,
    episode_seed,
    evaluate_policy,
    expert_policy,
    generate_episodes,
)


def test_at_least_ten_families_and_thousands_of_instructions():
    assert len(FAMILY_NAMES) >= 10
    env = TabletopEnv(image_size=16)
    texts, fams = set(), set()
    for i in range(3000):
        env.start(episode_seed(0, i))
        texts.add(env.instruction)
        fams.add(env.task.family)
    assert fams == set(FAMILY_NAMES)
    assert len(texts) >= 1000


def test_noisy_expert_succeeds_on_95_percent():
    eps = list(generate_episodes(200, seed=7, image_size=16, noise=0.1))
    by_family = defaultdict(list)
    for e in eps:
        by_family[e.task].append(e.success)
    assert np.mean([e.success for e in eps]) >= 0.95
    assert set(by_family) == set(FAMILY_NAMES)
    assert all(np.mean(v) >= 0.8 for v in by_family.values()), {f: np.mean(v) for f, v in by_family.items()}
    assert max(len(e) for e in eps) <= 60


def test_evaluate_expert_high_random_low():
    good = evaluate_policy(expert_policy, 60, seed=1, image_size=32, batch_size=32)
    assert good["n_episodes"] == 60 and good["success_rate"] >= 0.95
    assert set(good["per_task"]) <= set(FAMILY_NAMES)
    assert sum(good["per_task_episodes"].values()) == 60
    noisy = evaluate_policy(ExpertPolicy(noise=0.2), 30, seed=1, image_size=32)
    assert noisy["success_rate"] >= 0.9
    bad = evaluate_policy(RandomPolicy(0), 60, seed=1, image_size=32, max_steps=30)
    assert bad["success_rate"] <= 0.3


def test_policy_sees_batched_observations():
    seen = []

    def policy(obs):
        b = len(obs["instruction"])
        assert obs["image"].shape == (b, 24, 24, 3) and obs["image"].dtype == np.uint8
        assert obs["proprio"].shape == (b, 4) and obs["proprio"].dtype == np.float32
        seen.append(b)
        return np.zeros((b, 3), dtype=np.float32)

    res = evaluate_policy(policy, 5, seed=0, image_size=24, max_steps=3)
    assert seen == [5, 5, 5] and res["n_episodes"] == 5
    chunked = evaluate_policy(lambda obs: np.zeros((len(obs["proprio"]), 4, 3)), 3, image_size=24, max_steps=2)
    assert chunked["n_episodes"] == 3
    with pytest.raises(ValueError, match="shape"):
        evaluate_policy(lambda obs: np.zeros((1, 2)), 2, image_size=24, max_steps=2)


def test_evaluation_episodes_are_held_out_from_generation():
    assert EVAL_BRANCH != TRAIN_BRANCH
    env = TabletopEnv(image_size=16)

    def fingerprints(branch):
        out = set()
        for i in range(200):
            env.start(episode_seed(3, i, branch))
            out.add((env.instruction, tuple(np.round(env.scene.pos.ravel(), 6))))
        return out

    assert not fingerprints(TRAIN_BRANCH) & fingerprints(EVAL_BRANCH)
    # And evaluation is itself reproducible.
    a = evaluate_policy(RandomPolicy(5), 10, seed=3, image_size=16, max_steps=10)
    b = evaluate_policy(RandomPolicy(5), 10, seed=3, image_size=16, max_steps=10)
    assert a == b
