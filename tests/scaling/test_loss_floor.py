"""The loss floor (scaling.data.floor): recorded in a generated dataset's manifest, checked against
independent estimates, null for data without clean actions, shown by inspect, carried by result.json."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from scaling.data.floor import METHOD, UNKNOWN, FloorAccumulator, bin_entropy
from scaling.data.store import open_dataset, write_dataset
from scaling.data.tokenizers import ActionTokenizer
from vla_core.errors import BadInput

RECIPE = dict(seed=0, image_size=16, families=("touch", "reach_zone"), objects="1-5")


def _generate(n: int, noise: float) -> list:
    from scaling.data.tabletop import generate_episodes

    return list(generate_episodes(n, noise=noise, **RECIPE))


def _write(episodes, path: Path) -> Path:
    return write_dataset(iter(episodes), path, seed=0, generator="tabletop", generator_version="test")


def _as_written_before_the_floor(src: Path, dst: Path) -> Path:
    """A copy of dataset ``src`` whose manifest lacks the floor's keys."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    for key in ("loss_floor", "loss_floor_per_dim", "loss_floor_method"):
        del manifest[key]
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """150 episodes at noise 0.02 (about 950 frames): the dataset and, regenerated alongside, the
    expert's clean actions and noise stds of every frame (the dataset's arrays do not hold them)."""
    episodes = _generate(150, 0.02)
    path = _write(episodes, tmp_path_factory.mktemp("floor") / "noisy")
    clean = np.concatenate([e.clean_actions for e in episodes])
    std = np.concatenate([e.action_noise_std for e in episodes])
    return SimpleNamespace(path=path, ds=open_dataset(path), clean=clean, std=std,
                           actions=np.concatenate([e.actions for e in episodes]),
                           lengths=np.array([len(e) for e in episodes]))


def _naive_entropy(mu: float, sigma: float, edges: np.ndarray) -> float:
    """The same entropy summed over every bin, with the error function of the standard library."""
    cdf = [0.0] + [0.5 * math.erfc(-(e - mu) / (sigma * math.sqrt(2))) for e in edges] + [1.0]
    p = np.diff(cdf)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


# --- the computation --------------------------------------------------------------------------------


def test_edges_are_where_encode_changes_bin():
    tok = ActionTokenizer([-1.0, -0.3, 2.0], [1.0, 0.5, 2.0])  # the last dimension is constant
    edges = tok.edges()
    assert edges.shape == (3, 255) and np.all(np.diff(edges, axis=1) > 0)
    for d in range(3):
        eps = 1e-6 * max(1.0, tok.q99[d] - tok.q01[d])
        below = np.zeros((255, 3)) + tok.q01
        above = np.zeros((255, 3)) + tok.q01
        below[:, d], above[:, d] = edges[d] - eps, edges[d] + eps
        assert (tok.encode(below)[:, d] == np.arange(255)).all()
        assert (tok.encode(above)[:, d] == np.arange(1, 256)).all()
    # Clipping: everything below the first edge is bin 0, everything above the last is bin 255.
    assert tok.encode(np.array([[-5.0, -5.0, -5.0]])).tolist() == [[0, 0, 0]]
    assert tok.encode(np.array([[5.0, 5.0, 5.0]])).tolist() == [[255, 255, 255]]


@pytest.mark.parametrize("sigma", [0.002, 0.02, 0.3, 3.0])
def test_windowed_entropy_equals_the_sum_over_every_bin(sigma):
    edges = ActionTokenizer([-1.0], [1.0]).edges()[0]
    mu = np.array([-1.5, -1.0, -0.999, -0.31, 0.0, 0.004, 0.5, 0.9961, 1.0, 1.2])
    got = bin_entropy(mu, sigma, edges)
    want = [_naive_entropy(m, sigma, edges) for m in mu]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_interior_entropy_is_the_continuous_estimate():
    """Far from the clipped ends, the entropy of a finely binned normal is log(sigma / width) + log(2 pi e) / 2
    plus width^2 / (24 sigma^2) (the binning's second-order term): docs/learning-curves.md section 8's
    ~2.36 nats for sigma 0.02 and 256 bins over [-1, 1]."""
    edges = ActionTokenizer([-1.0], [1.0]).edges()[0]
    h = bin_entropy(np.linspace(-0.5, 0.5, 101), 0.02, edges)
    width = 2 / 256
    want = math.log(0.02 / width) + 0.5 * math.log(2 * math.pi * math.e) + width**2 / (24 * 0.02**2)
    assert h == pytest.approx(want, abs=2e-4)
    assert h.mean() == pytest.approx(2.36, abs=0.01)


def test_clipped_top_speed_costs_less_than_the_interior():
    edges = ActionTokenizer([-1.0], [1.0]).edges()[0]
    at_limit, interior = bin_entropy(np.array([1.0, 0.0]), 0.02, edges)
    # Half the noise pushes a top-speed action past the limit, into the last bin: that bin holds
    # P(eps >= -width) = Phi(width / sigma) of the mass.
    p_last = 0.5 * math.erfc(-(2 / 256) / 0.02 / math.sqrt(2))
    assert 0 < at_limit < interior and -p_last * math.log(p_last) < at_limit


def test_accumulator_averages_frames_then_dimensions():
    tok = ActionTokenizer([-1.0, -1.0], [1.0, 1.0])
    clean = np.array([[0.0, 0.3], [1.0, 0.3], [0.2, 0.3]])
    std = np.array([[0.02, 0.0], [0.02, 0.0], [0.05, 0.0]])
    acc = FloorAccumulator(tok)
    acc.add(clean[:2], std[:2])
    acc.add(clean[2:], std[2:])
    e = tok.edges()[0]
    want0 = (bin_entropy(np.array([0.0, 1.0]), 0.02, e).sum() + bin_entropy(np.array([0.2]), 0.05, e).sum()) / 3
    np.testing.assert_allclose(acc.per_dim(), [want0, 0.0], rtol=1e-12)
    assert acc.result() == pytest.approx(want0 / 2, rel=1e-12)
    with pytest.raises(ValueError):
        acc.add(clean, -std)


# --- the generated dataset --------------------------------------------------------------------------


def test_manifest_records_a_positive_floor_with_its_method(noisy):
    m = noisy.ds.manifest
    assert m["loss_floor_method"] == METHOD
    per_dim = m["loss_floor_per_dim"]
    assert len(per_dim) == 3 and per_dim[2] == 0.0  # the gripper bit carries no noise
    assert 1.0 < per_dim[0] < 2.36 and 1.0 < per_dim[1] < 2.36  # interior 2.36, top-speed frames less
    assert m["loss_floor"] == pytest.approx(np.mean(per_dim), rel=1e-12)
    assert 0 < noisy.ds.loss_floor < math.log(256)
    assert not any(p.name.startswith("floor") for p in noisy.path.iterdir())  # the spilled inputs are gone


def test_floor_equals_the_tokenizer_applied_to_sampled_noise(noisy):
    """Monte Carlo through the expert's own clip and the tokenizer's encode: per frame, the plug-in
    entropy of the bins of 2,000 noisy draws, averaged as val_loss averages."""
    tok = noisy.ds.action_tokenizer
    rng = np.random.default_rng(0)
    n, draws = len(noisy.clean), 2000
    per_dim = np.zeros(3)
    for d in range(3):
        sample = np.repeat(noisy.actions[:, None, :], draws, axis=1)  # (n, draws, 3)
        noisy_d = noisy.clean[:, d, None] + noisy.std[:, d, None] * rng.standard_normal((n, draws))
        sample[:, :, d] = np.clip(noisy_d, -1.0, 1.0).astype(np.float32)  # as ScriptedExpert.act clips
        bins = tok.encode(sample)[:, :, d]  # (n, draws)
        counts = np.bincount((bins + 256 * np.arange(n)[:, None]).ravel(), minlength=256 * n).reshape(n, 256)
        p = counts / draws
        per_dim[d] = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1).mean()
    np.testing.assert_allclose(per_dim, noisy.ds.manifest["loss_floor_per_dim"], rtol=0.02, atol=1e-12)
    assert per_dim.mean() == pytest.approx(noisy.ds.loss_floor, rel=0.02)


def _cross_entropy(tokens: np.ndarray, mu: np.ndarray, sigma: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per frame: -log of the probability a normal(mu, sigma) prediction gives the recorded bin."""
    from scipy.special import ndtr

    lo = np.concatenate([[-np.inf], edges])[tokens]
    hi = np.concatenate([edges, [np.inf]])[tokens]
    return -np.log(np.maximum(ndtr((hi - mu) / sigma) - ndtr((lo - mu) / sigma), 1e-300))


def test_the_bayes_predictor_reaches_the_floor_on_the_recorded_tokens_and_nothing_beats_it(noisy):
    """The recorded actions are what the floor assumes: the exact bin distribution of each clean
    action scores the floor on them (within sampling error), and mis-specified predictors score worse."""
    tok = noisy.ds.action_tokenizer
    tokens = tok.encode(noisy.actions)
    edges = tok.edges()
    moving = noisy.std > 0
    assert moving[:, 2].sum() == 0 and moving[:, :2].mean() > 0.9

    def score(shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
        """(n,) val_loss of each frame for a predictor N(clean + shift, (scale * std)^2) per moving dimension."""
        loss = np.zeros(len(tokens))
        for d in range(2):
            m = moving[:, d]
            loss[m] += _cross_entropy(tokens[m, d], noisy.clean[m, d] + shift, scale * noisy.std[m, d], edges[d])
        return loss / 3

    bayes = score()
    se = bayes.std() / math.sqrt(len(bayes))
    assert abs(bayes.mean() - noisy.ds.loss_floor) < 4 * se and se < 0.03 * noisy.ds.loss_floor
    width = 2 / 256
    for other in (score(scale=0.5), score(scale=2.0), score(shift=width), score(shift=-0.5 * width)):
        gap = other - bayes
        assert gap.mean() > 4 * gap.std() / math.sqrt(len(gap)) > 0
    assert math.log(256) * 2 / 3 > noisy.ds.loss_floor  # the untrained (uniform) head's loss on moving dims


def test_chunked_targets_average_no_lower_than_the_one_step_floor(noisy):
    """With chunk k, frame t's targets are frames min(t + j, last) of its episode: the per-frame entropies
    averaged that way (the chunked model's floor) are at least the one-step floor the manifest records."""
    tok = noisy.ds.action_tokenizer
    acc = FloorAccumulator(tok)
    h = np.zeros(len(noisy.clean))
    for d in range(3):
        for s in np.unique(noisy.std[:, d]):
            m = noisy.std[:, d] == s
            h[m] += bin_entropy(noisy.clean[m, d], float(s), acc.edges[d]) / 3
    assert h.mean() == pytest.approx(noisy.ds.loss_floor, rel=1e-12)
    starts = np.cumsum(noisy.lengths) - noisy.lengths
    last = np.repeat(starts + noisy.lengths - 1, noisy.lengths)
    t = np.arange(len(h))
    for k in (2, 4, 8):
        chunked = h[np.minimum(t[:, None] + np.arange(k)[None, :], last[:, None])].mean()
        assert chunked >= noisy.ds.loss_floor


def test_floor_grows_with_noise_and_is_zero_without(tmp_path):
    floors = {}
    for noise in (0.0, 0.01, 0.02, 0.05):
        ds = open_dataset(_write(_generate(20, noise), tmp_path / f"n{noise}"))
        floors[noise] = ds.loss_floor
        assert ds.manifest["loss_floor_method"] == METHOD
    assert floors[0.0] == 0.0
    assert 0 < floors[0.01] < floors[0.02] < floors[0.05]


def test_episodes_record_clean_actions_that_the_noise_perturbs():
    (clean_ep,) = _generate(1, 0.0)
    (ep,) = _generate(1, 0.02)
    assert np.array_equal(clean_ep.clean_actions.astype(np.float32), clean_ep.actions)  # no noise: the action
    assert (clean_ep.action_noise_std == 0).all()
    assert ep.clean_actions.shape == ep.actions.shape == ep.action_noise_std.shape
    assert set(np.unique(ep.action_noise_std[:, :2])) <= {0.0, 0.02} and (ep.action_noise_std[:, 2] == 0).all()
    # The gripper is noise-free; the movement is the clean one plus noise, clipped to the action bounds.
    assert np.array_equal(ep.actions[:, 2], ep.clean_actions[:, 2].astype(np.float32))
    resid = ep.actions[:, :2] - np.clip(ep.clean_actions[:, :2], -1, 1)
    assert 0 < np.abs(resid).max() < 6 * 0.02


# --- data without a floor ---------------------------------------------------------------------------


def _assert_unknown(path) -> None:
    ds = open_dataset(path)
    assert ds.manifest["loss_floor"] is None and ds.manifest["loss_floor_per_dim"] is None
    assert ds.manifest["loss_floor_method"] == UNKNOWN and ds.loss_floor is None


def test_imported_and_synthetic_data_have_a_null_floor(noisy, tmp_path):
    from scaling.data import lerobot
    from scaling.data.clean import clean_dataset
    from scaling.data.testing import synthetic_episodes

    _assert_unknown(write_dataset(synthetic_episodes(3, image_size=16), tmp_path / "synth", seed=0,
                                  generator="synthetic", generator_version="1"))
    # LeRobot (and Meta-World, whose episodes carry no clean actions either) through the same writer.
    exported = lerobot.export_lerobot(noisy.path, tmp_path / "lerobot")
    _assert_unknown(lerobot.import_lerobot(exported, tmp_path / "imported"))
    clean_dataset(noisy.path, tmp_path / "cleaned")  # a copy read back from disk has lost the clean actions
    _assert_unknown(tmp_path / "cleaned")


def test_one_episode_without_clean_actions_makes_the_floor_unknown(tmp_path):
    episodes = _generate(6, 0.02)
    episodes[3].clean_actions = None
    _assert_unknown(_write(episodes, tmp_path / "mixed"))
    assert not any(p.name.startswith("floor") for p in (tmp_path / "mixed").iterdir())


def test_writer_rejects_clean_actions_of_the_wrong_shape(tmp_path):
    episodes = _generate(2, 0.02)
    episodes[1].action_noise_std = episodes[1].action_noise_std[:-1]
    with pytest.raises(BadInput, match="episode 1: clean_actions"):
        _write(episodes, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_sources_report_their_floor(noisy, tmp_path):
    from scaling.data import open_source
    from scaling.data.blind import BlindSource

    assert open_source(str(noisy.path)).loss_floor == noisy.ds.manifest["loss_floor"]
    assert BlindSource(open_source(str(noisy.path))).loss_floor == noisy.ds.manifest["loss_floor"]
    # A mixture's pooled tokenizer has other bins than its members': their floors do not carry over.
    assert open_source({"mixture": [{"path": str(noisy.path)}, {"path": str(noisy.path)}]}).loss_floor is None
    assert open_dataset(_as_written_before_the_floor(noisy.path, tmp_path / "old")).loss_floor is None


# --- inspect ----------------------------------------------------------------------------------------


def test_inspect_prints_the_floor(noisy, tmp_path, capsys):
    from sweeps.cli import main

    assert main(["data", "inspect", str(noisy.path)]) == 0
    out = capsys.readouterr().out
    assert f"loss floor   {noisy.ds.loss_floor:.4f} nats per action dimension" in out and METHOD in out
    assert main(["data", "inspect", str(noisy.path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["loss_floor"] == noisy.ds.loss_floor and summary["loss_floor_method"] == METHOD
    assert main(["data", "inspect", str(_as_written_before_the_floor(noisy.path, tmp_path / "old"))]) == 0
    assert "loss floor   unknown (written before datasets recorded it)" in capsys.readouterr().out


# --- result.json ------------------------------------------------------------------------------------


def _result(**changes):
    from scaling.result import RunResult

    values = dict(run_id="r", status="completed", n_params=10, n_params_nonembed=8, model={"d_model": 8},
                  flops_per_sample=60, flops=600.0, n_samples=10, n_unique_samples=10, epochs=1.0, lr=1e-3,
                  global_batch_size=2, precision="32-true", world_size=1, val_loss=2.0, val_loss_best=2.0,
                  train_loss=2.0, action_mse=0.1, success_rate=None, wall_seconds=1.0, samples_per_second=1.0,
                  mfu=None, versions={})
    values.update(changes)
    return RunResult(**values)


def test_result_json_carries_the_floor_and_its_contract_checks_it(tmp_path):
    from scaling.result import RunResult
    from vla_core.schema import ContractError

    path = _result(loss_floor=1.19).save(tmp_path / "a.json")
    assert json.loads(path.read_text())["loss_floor"] == 1.19 and RunResult.load(path).loss_floor == 1.19
    assert json.loads(_result().save(tmp_path / "b.json").read_text())["loss_floor"] is None
    old = json.loads(path.read_text())
    del old["loss_floor"]  # a result.json without the field
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert RunResult.load(tmp_path / "old.json").loss_floor is None
    with pytest.raises(ContractError, match="loss_floor"):
        _result(loss_floor=-0.5).save(tmp_path / "c.json")


@pytest.mark.slow
def test_a_training_run_records_its_datasets_floor(noisy, tmp_path, one_thread):
    from scaling.config import from_mapping
    from scaling.train import train

    cfg = from_mapping({"data.source": str(noisy.path), "data.samples": 16, "model.size": "debug",
                        "model.precision": "32-true", "optim.batch_size": 8, "out": str(tmp_path / "run"),
                        "hardware.accelerator": "cpu", "logging.progress_bar": False, "logging.every_steps": 1,
                        "checkpointing.every_steps": 2, "validation.samples": 16, "schedule.warmup_steps": 1})
    train(cfg)
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    assert data["loss_floor"] == noisy.ds.manifest["loss_floor"]
    assert data["val_loss"] > data["loss_floor"]
