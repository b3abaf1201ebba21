"""Streaming stats equal numpy's on the whole data (reservoir exact below its size)."""

from __future__ import annotations

import numpy as np

from scaling.data.stats import ImageStats, VectorStats, pool_stats


def test_vector_stats_match_numpy_in_chunks():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(5000, 3)) * [1, 10, 0.1]
    vs = VectorStats(3, reservoir_size=10_000)
    for chunk in np.array_split(x, 37):
        vs.update(chunk)
    r = vs.result()
    np.testing.assert_allclose(r["mean"], x.mean(0), rtol=1e-10)
    np.testing.assert_allclose(r["std"], x.std(0), rtol=1e-10)
    np.testing.assert_allclose(r["min"], x.min(0))
    np.testing.assert_allclose(r["q01"], np.quantile(x, 0.01, axis=0))
    np.testing.assert_allclose(r["q99"], np.quantile(x, 0.99, axis=0))


def test_reservoir_quantiles_close_when_sampling():
    x = np.random.default_rng(1).uniform(0, 1, size=(200_000, 1))
    vs = VectorStats(1, reservoir_size=20_000, seed=0)
    for chunk in np.array_split(x, 50):
        vs.update(chunk)
    r = vs.result()
    assert abs(r["q01"][0] - 0.01) < 0.003 and abs(r["q99"][0] - 0.99) < 0.003
    np.testing.assert_allclose(r["mean"], x.mean(0))


def test_nonfinite_rows_skipped_and_image_stats():
    vs = VectorStats(2)
    vs.update(np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 4.0]]))
    assert vs.result()["mean"] == [2.0, 3.0] and vs.result()["count"] == 2
    img = np.random.default_rng(2).integers(0, 256, size=(7, 5, 5, 3), dtype=np.uint8)
    s = ImageStats()
    s.update(img[:3])
    s.update(img[3:])
    flat = img.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(s.result()["mean"], flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.result()["std"], flat.std(0), rtol=1e-9)


def test_pooled_stats_exact_mean_std():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (400, 2)), rng.normal(5, 3, (100, 2))

    def stats(x):
        v = VectorStats(2)
        v.update(x)
        return {"action": v.result(), "proprio": v.result(), "image": {"mean": [0, 0, 0], "std": [1, 1, 1]}}

    p = pool_stats([stats(a), stats(b)], [400, 100])
    both = np.concatenate([a, b])
    np.testing.assert_allclose(p["action"]["mean"], both.mean(0))
    np.testing.assert_allclose(p["action"]["std"], both.std(0))
    assert p["action"]["q01"] == np.minimum(stats(a)["action"]["q01"], stats(b)["action"]["q01"]).tolist()
