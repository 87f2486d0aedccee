"""Trivial, model-blind baselines (Diagonal, Energy, DiagonalEnergy) and CA's margin over the best of them."""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency.evaluate import margins, stats
from crossattn_saliency.evaluate.results import CorrelationRow, CorrelationTable
from crossattn_saliency.evaluate.views import View
from crossattn_saliency.explain import baselines, kinds
from crossattn_saliency.models import decoding, loading
from crossattn_saliency.run import context as run_context

EOT = 50256
NAMES = ("Diagonal", "Energy", "DiagonalEnergy")


def _utt(n_tokens: int = 5, n_frames: int = 101, seed: int = 0) -> decoding.Utterance:
    """A synthetic utterance: ``n_tokens`` explained tokens plus <|endoftext|>, random log-mel."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(80, 3000)).astype(np.float32)
    ids = tuple(range(100, 100 + n_tokens)) + (EOT,)
    hyp = decoding.Hypothesis("spk/u0", (50257, 50362), ids, "x", n_frames)
    return decoding.Utterance("spk/u0", feats, n_frames, hyp, "x", {})


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails: the baselines must not need one."""
    def refuse(*a, **k):
        raise AssertionError("a baseline loaded a model")
    monkeypatch.setattr(loading, "load_model", refuse)
    monkeypatch.setattr(run_context, "load_model", refuse)


def _compute(name: str, utt: decoding.Utterance):
    k = kinds.get(name)
    record = k.compute(None, utt, k.settings(None, utt.utt_id), None)  # engine None, no profile
    return record, baselines.to_explanation(name, record, utt, eot_id=EOT)


def test_the_baselines_are_registered_on_the_encoder_grid_as_model_blind_kinds():
    assert margins.TRIVIAL_BASELINES == baselines.NAMES == NAMES
    for name in NAMES:
        k = kinds.get(name)
        assert k.grid == "encoder" and k.deletion and not k.layered and not k.reference and not k.stochastic
        assert k.prepare("a model", None) is None and k.engine == "baselines"
        s = k.settings(None, "spk/u0")
        assert s["version"] == 1 and s["rule"] and s == baselines.SETTINGS[name]
    assert len({kinds.get(n).settings(None, None)["rule"] for n in NAMES}) == 3


def test_diagonal_peaks_where_the_rule_says(no_model):
    n_tok, n_frames = 5, 101
    utt = _utt(n_tok, n_frames)
    record, e = _compute("Diagonal", utt)
    t = 51                                                 # ceil(101 / 2) speech positions
    assert record[0]["maps"].shape == (n_tok + 1, t)       # whole hypothesis, end-of-text row last
    assert e.maps.shape == (n_tok, t) and e.token_ids == list(range(100, 105)) and e.grid == "encoder"
    np.testing.assert_allclose(e.maps.sum(axis=1), 1.0, rtol=1e-5)
    peaks = e.maps.argmax(axis=1)
    centres = (np.arange(n_tok) + 0.5) / n_tok * t
    np.testing.assert_array_equal(peaks, np.floor(centres).astype(int))   # position p covers [p, p+1)
    assert np.all(np.diff(peaks) > 0)                      # monotone
    # the width rule: sd = T' / I, checked on the Gaussian's log ratio around the first peak
    row = np.log(e.maps[0].astype(np.float64))
    sd = t / n_tok
    p = np.arange(t) + 0.5
    np.testing.assert_allclose(row - row[0], -0.5 * ((p - centres[0]) ** 2 - (p[0] - centres[0]) ** 2) / sd ** 2,
                               rtol=1e-4, atol=1e-4)
    assert record[1]["info"]["forward_passes"] == 0


def test_energy_is_the_mean_log_mel_of_each_20ms_position_for_every_token(no_model):
    utt = _utt(4, 9)                                       # odd: the last position has one frame
    _, e = _compute("Energy", utt)
    f = utt.features.astype(np.float64)
    hand = [f[:, 2 * p:2 * p + 2].mean() for p in range(4)] + [f[:, 8].mean()]
    assert e.maps.shape == (4, 5)
    for row in e.maps:
        np.testing.assert_allclose(row, hand, rtol=1e-5)
    assert np.all(e.maps == e.maps[0])


def test_diagonal_energy_is_their_product_with_the_energy_shifted_to_zero(no_model):
    utt = _utt(3, 40)
    _, d = _compute("Diagonal", utt)
    _, en = _compute("Energy", utt)
    _, de = _compute("DiagonalEnergy", utt)
    shifted = en.maps[0].astype(np.float64) - en.maps[0].min()
    np.testing.assert_allclose(de.maps, d.maps * shifted[None, :], rtol=1e-5, atol=1e-7)
    assert de.maps.min() >= 0
    flat = _utt(3, 40)
    flat.features[:] = 0.5
    np.testing.assert_allclose(_compute("DiagonalEnergy", flat)[1].maps, d.maps)   # flat energy: the Diagonal


def test_a_stored_baseline_record_loads_back(tmp_path, no_model):
    utt = _utt()
    k = kinds.get("DiagonalEnergy")
    record, e = _compute("DiagonalEnergy", utt)
    k.save(record, tmp_path / "r.npz", k.settings(None, utt.utt_id))
    back = baselines.to_explanation("DiagonalEnergy", k.load(tmp_path / "r.npz"), utt, eot_id=EOT)
    np.testing.assert_array_equal(back.maps, e.maps)
    assert back.provenance.params == baselines.SETTINGS["DiagonalEnergy"]


# --------------------------------------------------------------------------- on the pipeline


@pytest.fixture(scope="module")
def tiny_profile(tiny_model_dir, tmp_path_factory):
    from test_pipeline import tiny_setting

    with tiny_setting(tiny_model_dir, tmp_path_factory.mktemp("baselines"),
                      explanations=["SM_X", "SM_H", "CA", *NAMES]) as setting:
        yield setting


def test_the_baselines_reach_the_correlation_and_deletion_tables(tiny_profile):
    from crossattn_saliency import run
    from crossattn_saliency.run import explaining

    cfg, cond = tiny_profile
    items = run.explain(cfg, cond, progress=False)
    assert all(it.utt.hyp.token_ids for it in items)
    for it in items:
        for name in NAMES:
            e = it[name]
            assert e.grid == "encoder" and e.token_ids == it["CA"].token_ids and e.tokens == it["CA"].tokens
            assert e.maps.shape == it["CA"].map().shape
    # through the store with a stand-in for the model that nothing could run: the record needs none
    ctx = explaining.context_for(cfg, cond)
    ctx._model = object()
    for name in NAMES:
        fresh = explaining.record(ctx, kinds.get(name), items[0].utt, section=f"explanations/fresh_{name}")
        np.testing.assert_array_equal(fresh[0]["maps"][:-1], items[0][name].maps)
    assert ctx.prepared["baselines"] is None
    corr = run.correlation(cfg, cond, items)
    df = corr.to_frame()
    for name in NAMES:
        got = df[df["kind"] == name]
        assert set(got["target"]) == {"SM_X", "SM_H"} and set(got["view"]) == {"map"}
    dels = run.deletion(cfg, cond, items, progress=False)
    assert set(NAMES) <= set(dels.to_frame()["explanation"])
    from crossattn_saliency.run import timing

    for name in NAMES:                                     # the timestamps step reads them as plain maps
        e = items[0][name]
        assert timing.timed_views(e) == [("map", None)]
        words = timing.word_boundaries(e, None, cfg.reducer)
        assert words and all(np.isfinite(w[1]) and np.isfinite(w[2]) for w in words)
    ms = margins.baseline_margins(corr, n_bootstrap=20)
    assert {m.target for m in ms} == {"SM_X", "SM_H"} and all(m.baseline in NAMES for m in ms)


# --------------------------------------------------------------------------- margins


def _row(kind: str, target: str, per_utt, view=None, cond: str = "c1") -> CorrelationRow:
    per = tuple(float(v) for v in per_utt)
    nan = float("nan")
    return CorrelationRow(condition=cond, model="m", set="s", task="transcribe", kind=kind, view=view,
                          n_layers=4 if view is not None else 0, target=target, reducer="-", normalization="token_z",
                          utterances=len(per), rho=stats.fisher_mean(per), rho_lo=nan, rho_hi=nan, rho_pooled=nan,
                          spearman=nan, reliability=nan, ceiling=nan, rho_disattenuated=nan, dis_lo=nan, dis_hi=nan,
                          rho_per_utterance=per)


def _table(rng, delta: float, n: int = 24) -> tuple[CorrelationTable, dict[str, np.ndarray]]:
    rows, best = [], {}
    for target, shift in (("SM_X", 0.0), ("SM_H", 0.1)):
        diag = np.clip(0.3 + shift + 0.1 * rng.standard_normal(n), -0.9, 0.9)
        energy = diag - 0.2                                 # always below the diagonal
        noise = 0.02 * rng.standard_normal(n)
        ca = diag + delta + noise - noise.mean()           # beats the diagonal by exactly delta on average
        rows += [_row("CA", target, ca, View("all")), _row("CA", target, ca - 1, View("last", n=2)),
                 _row("Diagonal", target, diag), _row("Energy", target, energy),
                 _row("DiagonalEnergy", target, energy - 0.1)]
        best[target] = (ca, diag)
    return CorrelationTable(rows), best


def test_the_margin_over_the_best_baseline_is_the_paired_difference_with_an_interval_covering_it():
    table, best = _table(np.random.default_rng(3), delta=0.15)
    ms = margins.baseline_margins(table, average="mean", n_bootstrap=500)
    assert [(m.condition, m.target) for m in ms] == [("c1", "SM_X"), ("c1", "SM_H")]
    for m in ms:
        assert m.baseline == "Diagonal" and m.kind == "CA" and m.view == "all layers" and m.utterances == 24
        assert m.margin == pytest.approx(0.15, abs=1e-12)
        assert m.has_interval and m.margin_lo < 0.15 < m.margin_hi and m.margin_hi - m.margin_lo < 0.05
        assert dict(m.baselines)["Energy"] < m.rho_baseline
    # the default: difference of Fisher-z means, as the context-mixing gain
    for m in margins.baseline_margins(table, n_bootstrap=200):
        ca, diag = best[m.target]
        assert m.margin == pytest.approx(stats.fisher_mean(ca) - stats.fisher_mean(diag), abs=1e-12)
        assert m.margin == pytest.approx(m.rho_kind - m.rho_baseline, abs=1e-12)
        assert m.margin_lo <= m.margin <= m.margin_hi
    frame = margins.margins_frame(ms)
    assert {"margin", "margin_lo", "margin_hi", "rho Diagonal", "rho Energy", "rho DiagonalEnergy"} <= set(frame)


def test_the_best_baseline_is_chosen_per_condition_and_reference_and_small_sets_have_no_interval():
    rng = np.random.default_rng(0)
    rows = [_row("CA", "SM_X", [0.5] * 4, View("all")), _row("Energy", "SM_X", [0.45] * 4),
            _row("Diagonal", "SM_X", [0.2] * 4), _row("CA", "SM_H", rng.uniform(0, 0.5, 4), View("all"))]
    (m,) = margins.baseline_margins(rows)                  # SM_H has no baseline: left out
    assert m.baseline == "Energy" and m.margin == pytest.approx(0.05) and not m.has_interval
    with pytest.raises(ValueError, match="cannot be paired"):
        margins.baseline_margins(rows[:1] + [_row("Energy", "SM_X", [0.4] * 5)])
    assert margins.baseline_margins([]) == []
