"""The alignment-heads measurement (issue 25, items 2-3; notebook 11): heads chosen on a pool of
planted clips and scored on held-out ones, the selection curve, SM_H at a smaller budget rebuilt
from a longer run, and model folders with their heads removed and written back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from crossattn_saliency.app import heads_study as hs
from test_heads import NH, PLANTED, L, _planted_clip


def _pool(clips, budget: int = 100) -> hs.PoolMaps:
    pool = hs.PoolMaps("planted", [f"c{i}" for i in range(len(clips))], [c[0] for c in clips], [None] * len(clips),
                       [c[2] for c in clips], [c[3] for c in clips], [c[4] for c in clips], budget, 0.0)
    for i, c in enumerate(clips):  # SM_H "at" two budgets: the full one and a noisier smaller one
        pool._at[i, budget] = c[1]
        pool._at[i, 10] = c[1] + 3.0 * np.random.default_rng(i).standard_normal(c[1].shape)
    return pool


def _held(clips) -> hs.HeldOut:
    return hs.HeldOut([f"h{i}" for i in range(len(clips))], ["a" if i % 2 else "b" for i in range(len(clips))],
                      [c[0] for c in clips], [c[2] for c in clips], [c[3] for c in clips], [c[4] for c in clips])


@pytest.fixture(scope="module")
def planted_study():
    rng = np.random.default_rng(1)
    return _pool([_planted_clip(rng) for _ in range(4)]), _held([_planted_clip(rng) for _ in range(8)])


@pytest.mark.parametrize("method", ["timing", "agreement"])
def test_heads_chosen_on_the_pool_are_the_planted_ones(planted_study, method):
    pool, _ = planted_study
    assert sorted(map(tuple, hs.choose(pool, method, range(4)))) == sorted(PLANTED)
    one = hs.choose(pool, method, [0])  # one clip: k scored on the clip itself
    assert 1 <= len(one) <= 16 and set(map(tuple, one)) <= set(PLANTED) | {(l, h) for l in range(L) for h in range(NH)}
    with pytest.raises(ValueError, match="method"):
        hs.choose(pool, "vibes", range(4))


def test_held_out_table_scores_planted_heads_against_a_baseline(planted_study):
    pool, held = planted_study
    sets = {"shipped": [[0, 0]], "all": hs.all_heads(pool.ca[0]), "planted": [list(p) for p in PLANTED]}
    t = hs.heads_table("planted", held, sets, n_bootstrap=50, seed=0, min_utterances=8)
    assert set(t["set"]) == {"all", "a", "b"} and len(t) == 9
    every = t[t["set"] == "all"].set_index("heads")
    assert every.loc["planted", "start median (ms)"] < every.loc["shipped", "start median (ms)"]
    assert every.loc["planted", "start median vs shipped (ms)"] < 0 < every.loc["planted", "vs hi"] - every.loc[
        "planted", "vs lo"]
    assert np.isnan(every.loc["shipped", "start median vs shipped (ms)"])  # no difference to itself
    assert np.isfinite(every.loc["planted", "start median lo"])           # 8 utterances: an interval
    assert np.isnan(t[t["set"] == "a"]["start median lo"]).all()          # 4: none
    for tol in hs.TOLERANCES_MS:
        assert 0 <= every.loc["planted", f"F1 at {tol} ms (%)"] <= 100
    assert every.loc["planted", "starts within 100 ms (%)"] >= every.loc["planted", "starts within 50 ms (%)"]
    assert json.loads(every.loc["planted", "heads list"]) == [list(p) for p in PLANTED]


def test_selection_curve_rows_and_subsets(planted_study):
    pool, held = planted_study
    curve = hs.selection_curve(pool, held, [1, 2, 4], [10, 100], repeats=3, seed=0)
    assert set(curve["method"]) == {"timing", "agreement"} and set(curve["budget"]) == {0, 10, 100}
    assert (curve[curve["clips"] == 4]["subset"] == 0).all()              # the whole pool: one subset
    assert curve.groupby(["clips", "method", "budget"]).size().max() <= 3
    again = hs.selection_curve(pool, held, [1, 2, 4], [10, 100], repeats=3, seed=0)
    assert curve.equals(again)                                            # seeded
    full = curve[(curve["clips"] == 4) & (curve["budget"] == 100)]["start median (ms)"].iloc[0]
    noisy = curve[(curve["clips"] == 4) & (curve["budget"] == 10)]["start median (ms)"].iloc[0]
    assert full <= noisy
    with pytest.raises(ValueError, match="pool of 4"):
        hs.selection_curve(pool, held, [5], [100], repeats=1)


def test_a_smaller_budget_is_the_run_stopped_early(tiny_spes_design):
    from crossattn_saliency.explain.spes import SpesDesign

    d = tiny_spes_design
    first = d.first(d.n_perturbations // 2)
    again = SpesDesign(d.scores[: d.n_perturbations // 2], d.n_segments, d.p_occlude, d.seed, d.labels)
    for a, b in zip(first.cell_maps(), again.cell_maps()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first.cell_maps()[0], d.cell_maps()[0])
    with pytest.raises(ValueError, match="budget"):
        d.first(d.n_perturbations + 1)


@pytest.fixture
def tiny_spes_design():
    from crossattn_saliency.explain.spes import SpesDesign

    rng = np.random.default_rng(0)
    labels = [np.repeat(np.arange(6), 5), np.repeat(np.arange(3), 10)]
    return SpesDesign(rng.standard_normal((40, 3)), [6, 3], 0.5, 7, labels)


def test_model_folder_without_heads_and_with_chosen_ones(tmp_path):
    src = tmp_path / "m"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "generation_config.json").write_text(json.dumps({"alignment_heads": [[1, 0]], "max_length": 448}))
    bare = hs.without_heads(str(src), tmp_path / "bare")
    assert json.loads((bare / "generation_config.json").read_text()) == {"max_length": 448}
    assert (bare / "model.safetensors").read_bytes() == b"weights"
    assert json.loads((src / "generation_config.json").read_text())["alignment_heads"] == [[1, 0]]  # untouched
    assert hs.shipped_heads(str(src)) == [[1, 0]] and hs.shipped_heads(str(bare)) == []
    chosen = hs.with_heads(str(src), [[2, 3], [0, 1]], tmp_path / "chosen")
    assert hs.shipped_heads(str(chosen)) == [[2, 3], [0, 1]]
    assert json.loads((chosen / "generation_config.json").read_text())["max_length"] == 448
    with pytest.raises(hs.HeadsError, match="local model folder"):
        hs.without_heads(str(tmp_path / "nothing"))


def test_the_report_section_and_the_caption_quote_the_held_out_numbers(planted_study):
    import pandas as pd

    from crossattn_saliency.present import captions, charts, report

    pool, held = planted_study
    sets = {"shipped": [[0, 0]], "all": hs.all_heads(pool.ca[0]), "by timing": hs.choose(pool, "timing", range(4)),
            "by agreement with SM_H": hs.choose(pool, "agreement", range(4), 100)}
    table = hs.heads_table("planted", held, sets, n_bootstrap=50, seed=0)
    curve = hs.selection_curve(pool, held, [2, 4], [10, 100], repeats=2, seed=0)
    cost = pd.DataFrame([{"model": "planted", "compute (min)": 1.5}])
    text = report.heads_section(table, curve, cost, "en-real")
    every = table[table["set"] == "all"].set_index("heads")
    assert "**planted** (8 held-out utterances" in text and "1.5 min of compute" in text
    assert f"by timing ({int(every.loc['by timing', 'k'])} heads) {every.loc['by timing', 'start median (ms)']:.0f} ms [" in text
    cap = captions.heads_curve(curve, table)
    top = curve[(curve["clips"] == 4) & (curve["method"] == "timing")]["start median (ms)"].mean()
    assert cap.startswith("Held-out median word-start error: planted, 4 clips:") and f"{top:.0f} ms by timing" in cap
    assert f"shipped heads {every.loc['shipped', 'start median (ms)']:.0f} ms" in cap
    fig = charts.heads_curve_panels(curve, {"planted": {"shipped heads": 50.0, "all heads": 80.0}})
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "clips the heads were chosen on"
