"""Results-table checks: every bad input is a BadInput with one line that names the problem."""

import numpy as np
import pytest

from analysis.table import load_table
from vla_core.errors import BadInput

from synthetic_tables import synthetic_frame


def test_reads_csv_and_parquet_and_measures_k(tmp_path):
    df = synthetic_frame(k=6.5)
    df.to_csv(tmp_path / "r.csv", index=False)
    df.to_parquet(tmp_path / "r.parquet")
    for p in ("r.csv", "r.parquet"):
        t = load_table(tmp_path / p, n_params=5)
        assert t.n == len(df) and t.k_measured
        assert t.k == pytest.approx(6.5)
    t = load_table(df.drop(columns="flops"), n_params=5)
    assert t.k == 6.0 and not t.k_measured
    np.testing.assert_allclose(t.compute, 6 * df.n_params * df.n_samples)


def test_drops_runs_not_completed_with_a_note():
    df = synthetic_frame()
    df.loc[[0, 3], "state"] = ["failed", "diverged"]
    df.loc[5, "val_loss"] = np.nan  # a failed run's missing loss must not count against the table
    df.loc[5, "state"] = "pruned"
    t = load_table(df, n_params=5)
    assert t.n == len(df) - 3
    assert "dropped 3" in t.notes[0] and "state" in t.notes[0]
    assert load_table(df.drop(index=5), n_params=5, all_states=True).n == len(df) - 1


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.drop(columns="val_loss"), r"no column 'val_loss' \(--loss-col\); available: n_params, n_samples"),
    (lambda d: d.assign(n_params=d.n_params.where(d.index != 4, -1.0)), r"non-positive values in row 4 "),
    (lambda d: d.assign(val_loss=d.val_loss.where(d.index != 7, np.nan)), r"'val_loss' has NaN.* row 7 "),
    (lambda d: d.assign(n_samples="x"), r"'n_samples' has NaN, non-numeric"),
    (lambda d: d.iloc[:4], r"4 runs, too few to fit a law with 5 parameters"),
    (lambda d: d.assign(n_params=1e8), r"'n_params' has a single value"),
    (lambda d: d.assign(state="failed"), r"no completed runs"),
])
def test_bad_tables(mutate, match):
    with pytest.raises(BadInput, match=match) as e:
        load_table(mutate(synthetic_frame()), n_params=5)
    assert "\n" not in str(e.value)


def test_missing_file_and_unreadable_file(tmp_path):
    with pytest.raises(BadInput, match="no such results file"):
        load_table(tmp_path / "nope.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(BadInput, match="cannot read as a table"):
        load_table(tmp_path / "bad.parquet")
