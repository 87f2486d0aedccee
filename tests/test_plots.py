"""Comparison figures return figures with the expected axes and lines (plots.py)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from crossattn_saliency.present import charts, maps  # noqa: E402
from crossattn_saliency.evaluate.deletion import DeletionCurve  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _curve(wer):
    x = np.linspace(0, 100, len(wer))
    return DeletionCurve(percents=x, wer=np.asarray(wer, float), texts=[""] * len(wer),
                         n_deleted=np.arange(len(wer)))


def test_heatmap_annotates_every_finite_cell_and_centers_at_zero():
    rho = np.array([[0.1, -0.2, 0.3], [0.5, np.nan, -0.4]])
    fig = charts.plot_layer_head_heatmap(rho, title="t")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap + colorbar
    assert len(ax.texts) == 5
    assert ax.get_xlabel() == "decoder head" and ax.get_ylabel() == "decoder layer"
    norm = ax.images[0].norm
    assert norm.vcenter == 0 and norm.vmin == -0.5 and norm.vmax == 0.5
    fig2 = charts.plot_layer_head_heatmap(rho, annotate=False, colorbar=False)
    assert len(fig2.axes) == 1 and not fig2.axes[0].texts
    with pytest.raises(ValueError, match="layers x heads"):
        charts.plot_layer_head_heatmap(np.zeros(3))


def test_rho_by_layer_one_line_per_model_and_uses_given_axis():
    fig, ax = plt.subplots()
    out = charts.plot_rho_by_layer({"tiny": np.array([0.1, 0.2, 0.4, 0.5]),
                                   "base": np.array([[0.1, 0.0, 0.2]] * 6)}, ax=ax, relative_depth=True)
    assert out is fig and len(fig.axes) == 1
    assert len(ax.lines) == 2 and len(ax.collections) == 1  # one band for the model with intervals
    assert np.isclose(ax.lines[1].get_xdata()[-1], 1.0)


def test_deletion_curves_average_groups_and_report_auc():
    fig = charts.plot_deletion_curves({"CA": _curve([0, 50, 100]),
                                      "SM_X": [_curve([0, 100, 100]), _curve([0, 50, 100])],
                                      "random": _curve([0, 0, 100])})
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    assert np.allclose(ax.lines[1].get_ydata(), [0, 75, 100])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "CA (AUC 50.0)" and labels[1] == "SM_X (AUC 62.5)"


def test_reliability_curve_lines_with_extrapolation_and_target():
    measured = {"SM_X": ([250, 500, 1000], [0.3, 0.45, 0.6]), "SM_H": ([500, 1000], [0.7, 0.8])}
    fig = charts.plot_reliability_curve(measured, extrapolate_to=20000, target=0.9)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 * 2 + 1
    pred = ax.lines[1]
    assert np.isclose(pred.get_ydata()[0], 0.6) and pred.get_ydata()[-1] > 0.9
    assert ax.get_xscale() == "log"
    assert len(charts.plot_reliability_curve(measured).axes[0].lines) == 2


def test_reliability_curve_skips_extrapolation_for_nonpositive_reliability():
    from crossattn_saliency.present.charts import plot_reliability_curve

    fig = plot_reliability_curve({"noisy": ([50, 100], [0.05, -0.02]), "ok": ([50, 100], [0.3, 0.5])},
                                 extrapolate_to=20000, target=0.9)
    ax = fig.axes[0]
    dashed = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata().max() <= 1.0
    assert ax.get_ylim()[0] >= -0.2


def test_scale_rows_maps_every_token_to_its_own_range():
    from crossattn_saliency.present.figures import scale_rows

    m = np.array([[1.0, 3.0, 2.0], [100.0, 300.0, 200.0], [5.0, 5.0, 5.0]])
    np.testing.assert_allclose(scale_rows(m), [[0, 1, 0.5], [0, 1, 0.5], [0, 0, 0]])


def test_disattenuation_validation_plot_one_row_per_condition_and_reference():
    import pandas as pd

    from crossattn_saliency.present import charts, maps

    rows = []
    for cond in ("a__x__asr", "b__x__asr"):
        rows.append(dict(condition=cond, target="SM_H", map="high", perturbations=10000, disattenuated=0.5,
                         lo=0.4, hi=0.6))
        rows += [dict(condition=cond, target="SM_H", map=f"repeat {i}", perturbations=1000, disattenuated=v,
                      lo=float("nan"), hi=float("nan")) for i, v in enumerate((0.45, 0.55, 0.7))]
    fig = charts.plot_disattenuation_validation(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == 2 and "10,000 vs 1,000" in ax.get_yticklabels()[0].get_text()
    assert len(ax.get_lines()) == 6          # interval, high value, repeats per row


def test_timing_errors_best_median_on_top_with_the_reference_floor():
    errs = {"good": np.array([10.0, 20.0, 30.0]), "bad": np.array([300.0, 500.0, 4000.0])}
    fig = charts.plot_timing_errors(errs, title="t", floor_ms=15.0)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["bad (n=3)", "good (n=3)"]  # boxes from the bottom: the best median is drawn last, on top
    assert ax.get_xlim()[1] == pytest.approx(1020.0) and ax.get_legend() is not None


def test_word_boundaries_one_tier_per_source_under_the_spectrogram():
    feats = np.random.default_rng(0).normal(size=(80, 3000))
    words = {"reference": [("he", 0.2, 0.4), ("was", 0.4, 0.7)], "CA": [("he", 0.1, 0.5), ("was", 0.5, 0.9)]}
    fig = maps.plot_word_boundaries(feats, 100, words, title="clip")
    assert len(fig.axes) == 3 and fig.axes[0].get_title() == "clip"
    assert [t.get_text() for t in fig.axes[1].texts] == ["he", "was"] and fig.axes[2].get_ylabel() == "CA"


def _sensitivity_rows():
    rows = []
    for c, shift in (("tiny", 0.0), ("base", 0.1)):
        for s, rho in (("study", 0.3), ("p0.2", 0.4), ("levels-one", 0.2)):
            rows.append({"condition": c, "reference": "SM_X", "setting": s, "rho": rho + shift, "rho lo": rho + shift - 0.05,
                         "rho hi": rho + shift + 0.05, "rho disattenuated": np.nan, "dis lo": np.nan, "dis hi": np.nan,
                         "seconds for 0.5": {"study": 100.0, "p0.2": 40.0, "levels-one": 200.0}[s]})
    return pd.DataFrame(rows)


def test_sensitivity_plots_one_marker_per_condition_and_setting():
    df = _sensitivity_rows()
    fig = charts.plot_sensitivity(df, "rho")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["study", "p0.2", "levels-one"]
    assert len(ax.get_legend().get_texts()) == 2 and len(ax.lines) >= 2      # a dotted study line per condition
    fig2 = charts.plot_sensitivity(df, "rho disattenuated")
    assert any("not estimable" in t.get_text() for t in fig2.axes[0].texts)
    m = pd.DataFrame([[1.0, 0.97, np.nan], [0.97, 1.0, 0.5], [np.nan, 0.5, 1.0]],
                     index=["study", "p0.2", "levels-one"], columns=["study", "p0.2", "levels-one"])
    fig3 = charts.plot_agreement_matrix(m)
    assert sorted(t.get_text() for t in fig3.axes[0].texts) == sorted(["1.00", "0.97", "1.00", "0.97", "0.50",
                                                                     "0.50", "1.00"])
    plt.close("all")


def test_the_notebooks_panel_figures_have_one_axis_per_panel():
    from types import SimpleNamespace

    import numpy as np

    from crossattn_saliency.evaluate.results import DeletionRecord, DeletionTable, Ranking
    from crossattn_saliency.present import charts

    class Corr:
        def head_grid(self, condition, kind, target):
            return np.arange(6.0).reshape(2, 3) / 10

        def select(self, kind, target, view_kind, condition):
            return [SimpleNamespace(rho=0.1 * l, rho_lo=0.0, rho_hi=0.2) for l in range(3)]

    fig = charts.head_heatmaps(Corr(), "c", ["CA", "NormCA"])
    assert len([a for a in fig.axes if a.get_title().startswith("rho(")]) == 4 and fig._suptitle.get_text() == "c"
    assert len(charts.rho_by_layer_panels(Corr(), ["a", "b"]).axes) == 2
    rec = DeletionRecord("c", "u", Ranking("CA", "expanded"), (0.0, 50.0, 100.0), (0.0, 40.0, 100.0), (0, 5, 10),
                         ("", "", ""), 40.0)
    import dataclasses

    fig = charts.deletion_panels(DeletionTable([rec, dataclasses.replace(rec, condition="d")]), ["c", "d"], ["expanded"])
    assert [a.get_title() for a in fig.axes] == ["c", "d"]
    rows = [SimpleNamespace(condition="c", label="CA · all layers", start_ms=np.array([10.0, 30.0]))]
    fig = charts.timing_panels(rows, ["c"], {"c": 20.0})
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "c"
