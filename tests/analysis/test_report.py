"""Figures and the HTML report: every plot returns its Axes, the report lands in tmp_path."""

import sys

import numpy as np
import pytest

import analysis
from analysis import plots
from analysis.approaches import approach1, approach2
from analysis.table import load_table

from synthetic_tables import synthetic_frame


@pytest.fixture(scope="module")
def fitted():
    df = synthetic_frame(noise=0.005, n_sizes=5, n_budgets=5)
    from analysis.forms import FORMS

    res = analysis.fit(df, bootstrap=20, holdout_frac=0.2, grid=FORMS["chinchilla"].grid[::15])
    return df, load_table(df, n_params=5), res


def test_every_plot_returns_axes_and_reuses_a_given_one(fitted):
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    df, tbl, res = fitted
    pyplot_before = "matplotlib.pyplot" in sys.modules  # another test (or library) may have imported it
    a2 = approach2(tbl.cols["N"], tbl.cols["D"], tbl.loss, tbl.compute)
    calls = [lambda ax: plots.loss_vs_compute(tbl, res, ax=ax), lambda ax: plots.loss_vs_n(tbl, res, ax=ax),
             lambda ax: plots.loss_vs_d(tbl, res, ax=ax), lambda ax: plots.isoflops(a2, ax=ax),
             lambda ax: plots.optimal_vs_compute(res, (1e15, 1e21), ax=ax),
             lambda ax: plots.observed_vs_predicted(tbl, res, ax=ax), lambda ax: plots.residuals(tbl, res, ax=ax)]
    for i, call in enumerate(calls):
        assert isinstance(call(None), Axes)
        ax = Figure().add_subplot()
        assert call(ax) is ax
        assert ax.has_data() or i == 3  # an N x D grid has no IsoFLOP budgets: an empty, labelled plot
    assert pyplot_before or "matplotlib.pyplot" not in sys.modules  # no global pyplot state, never plt.show


def test_write_report_writes_html_and_figures(fitted, tmp_path):
    df, tbl, res = fitted
    path = analysis.write_report(df, tmp_path / "rep", fit=res)
    html = path.read_text()
    assert path.name == "report.html" and "Scaling-law report" in html
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    assert {"loss_vs_compute.png", "loss_vs_n.png", "optimal.png", "residuals.png"} <= set(pngs)
    for name in pngs:
        assert f'src="{name}"' in html
        assert (path.parent / name).read_bytes()[:4] == b"\x89PNG"
    assert not list(path.parent.glob(".*tmp*"))  # atomic writes left nothing behind


def test_approaches_recover_the_fitted_exponent():
    """On an exact Chinchilla law, Approaches 1 and 2 give a = beta / (alpha + beta)."""
    from analysis.laws import chinchilla

    p = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.36}
    C = np.repeat(np.logspace(17, 21, 5), 9)
    N = np.concatenate([np.logspace(np.log10(g) - 1.2, np.log10(g) + 1.2, 9) for g in 0.05 * np.logspace(8.5, 10.5, 5)])
    D = C / (6 * N)
    a2 = approach2(N, D, chinchilla(N, D, **p), C)
    assert a2.flops.size == 5 and not a2.warnings
    assert a2.a == pytest.approx(0.36 / 0.70, abs=0.02)
    a1 = approach1(N, D, chinchilla(N, D, **p), C)
    assert a1.flops.size >= 3
    # The envelope picks the best grid point per budget (N steps of 10^0.3 = 2x), so its exponent
    # is coarser than the parabolas': within 0.05 of the truth on this grid.
    assert a1.a == pytest.approx(0.36 / 0.70, abs=0.05)
    assert a1.a + a1.b == pytest.approx(1.0, abs=1e-9)  # D = C / (6 N) on every run
    ax = plots.isoflops(a2)
    assert len(ax.collections) == 6  # 5 budgets and the minima


def test_approach2_warns_when_the_minimum_sits_at_the_grid_edge():
    from analysis.laws import chinchilla

    p = {"E": 1.8, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.36}
    C = np.full(5, 1e19)
    N = np.logspace(6, 7, 5)  # far below N_opt ~ 1e9: loss falls all the way to the largest N
    a2 = approach2(N, C / (6 * N), chinchilla(N, C / (6 * N), **p), C)
    assert any("grid" in w for w in a2.warnings)


def test_standard_errors_say_when_a_held_parameter_makes_them_too_small():
    """With E at its bound the other parameters' errors take E as known: the report must say they understate."""
    from analysis.covariance import HUBER_METHOD, Covariance
    from analysis.report import _se_method

    free = Covariance(["E", "A"], [[1e-4, 0.0], [0.0, 1.0]], HUBER_METHOD)
    held = Covariance(["A"], [[1.0]], HUBER_METHOD, at_edge=["E"])
    assert "understate" not in _se_method(free)
    assert "E at an edge of its domain, held" in _se_method(held) and "understate" in _se_method(held)
    assert _se_method(None) == "not computed"
