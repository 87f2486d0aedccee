"""Word timestamps from explanations: DTW, Whisper's recipe, errors against a reference, head selection."""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency.evaluate import timestamps as ts


def _staircase(bounds, n_pos, noise=0.0, seed=0):
    """A ``tokens x positions`` map whose token i owns positions bounds[i]..bounds[i+1]-1."""
    rng = np.random.default_rng(seed)
    m = np.zeros((len(bounds) - 1, n_pos))
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        m[i, a:b] = 1.0
    return m + noise * rng.normal(size=m.shape)


def test_dtw_follows_a_hand_made_monotone_map():
    m = _staircase([0, 3, 5, 9], 9)
    rows, cols = ts.dtw(-m)
    # the path runs through every token's own columns; ties between a diagonal and a horizontal step
    # go to the horizontal one (Whisper's rule), so a token is entered up to one column early
    for r, (a, b) in enumerate(zip([0, 3, 5], [3, 5, 9])):
        assert set(range(a, b)) <= set(cols[rows == r].tolist())
    assert [int(cols[np.flatnonzero(rows == r)[0]]) for r in range(3)] == [0, 2, 4]
    # the path always starts at (0, 0), ends at the last cell and never goes back
    rows, cols = ts.dtw(np.random.default_rng(1).normal(size=(5, 12)))
    assert (rows[0], cols[0], rows[-1], cols[-1]) == (0, 0, 4, 11)
    assert np.all(np.diff(rows) >= 0) and np.all(np.diff(cols) >= 0) and np.all(np.diff(rows) + np.diff(cols) >= 1)


def test_token_starts_recover_planted_boundaries_through_noise_and_filtering():
    bounds = [0, 10, 25, 31, 50, 70]
    m = _staircase(bounds, 70, noise=0.3)
    starts = ts.token_starts(np.stack([m, m + 0.1]), seconds_per_position=0.02)
    np.testing.assert_allclose(starts, np.array(bounds[:-1]) * 0.02, atol=0.02 + 1e-9)


def test_median_filter_is_whispers():
    x = np.array([[1.0, 9.0, 2.0, 3.0, 8.0, 4.0, 5.0]])
    np.testing.assert_array_equal(ts.median_filter(x, 3), [[9.0, 2.0, 3.0, 3.0, 4.0, 5.0, 4.0]])
    with pytest.raises(ValueError, match="odd"):
        ts.median_filter(x, 4)


def test_word_times_merge_pieces_and_punctuation():
    tokens = [" Unless", " to", " be", " cold", "-", "hearted", ".", " Yes"]
    starts = [0.0, 0.4, 0.5, 0.7, 0.9, 0.95, 1.2, 1.3]
    words = ts.word_times(tokens, starts, end=2.0)
    assert [w for w, _, _ in words] == ["Unless", "to", "be", "cold-hearted.", "Yes"]
    assert words[3][1:] == (0.7, 1.3) and words[-1][1:] == (1.3, 2.0)


def test_boundary_errors_and_their_summary_on_hand_made_words():
    ref = [("he", 0.21, 0.33), ("was", 0.33, 0.56), ("not", 0.56, 1.06), ("an", 1.13, 1.30)]
    hyp = [("He", 0.20, 0.36), ("was", 0.43, 0.56), ("knot", 0.56, 1.0), ("an", 1.30, 1.50)]
    e = ts.boundary_errors(hyp, ref)
    assert e["matched"] == 3 and e["hyp_words"] == 4 and e["ref_words"] == 4  # "knot" is not "not"
    np.testing.assert_allclose(e["start_ms"], [10.0, 100.0, 170.0])
    np.testing.assert_allclose(e["end_ms"], [30.0, 0.0, 200.0])
    summary = ts.timing_summary([e], n_bootstrap=50, min_utterances=8)
    assert summary.start_median[0] == pytest.approx(100.0) and np.isnan(summary.start_median[1])
    assert summary.within[20][0] == pytest.approx(1 / 3) and summary.within[200][0] == pytest.approx(1.0)
    assert summary.words == 3 and summary.utterances == 1
    many = ts.timing_summary([e] * 8, n_bootstrap=200, min_utterances=8)
    lo, hi = many.start_mean[1:]
    assert lo <= many.start_mean[0] <= hi


def test_head_selection_finds_the_planted_aligner():
    """A 2-layer x 3-head model whose layer 2 head 3 attends to the words' true positions and whose
    other heads attend elsewhere: ranking by timing error on some utterances finds that head."""
    rng = np.random.default_rng(0)
    attention, tokens, ends, refs = [], [], [], []
    for _ in range(4):
        n_tok = 6
        cuts = np.sort(rng.choice(np.arange(5, 95), size=n_tok - 1, replace=False))
        bounds = [0, *cuts.tolist(), 100]
        true = _staircase(bounds, 100)
        a = rng.random(size=(2, 3, n_tok, 100))
        a[1, 2] = true + 0.2 * rng.random(size=true.shape)
        attention.append(a)
        toks = [f" w{i}" for i in range(n_tok)]
        tokens.append(toks)
        ends.append(2.0)
        refs.append([(t.strip(), b * 0.02, e * 0.02) for t, b, e in zip(toks, bounds, bounds[1:])])
    ranked = ts.rank_heads(attention, tokens, ends, refs)
    assert ranked[0][0] == (1, 2) and ranked[0][1] <= 20.0 and ranked[1][1] > 100.0
    assert ts.select_heads(attention, tokens, ends, refs, k=2)[0] == [1, 2]


@pytest.mark.integration
@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_shipped_alignment_heads_reproduce_transformers_token_timestamps(name):
    """``transformers``' ``return_token_timestamps`` on a real clip, from the cross-attention of the
    teacher-forced pass over the same (greedy) hypothesis."""
    import torch

    from crossattn_saliency.explain import attention
    from crossattn_saliency import data
    from crossattn_saliency.models import loading, decoding

    root = data.fetch_sdist(*data.POCKETSPHINX_SDIST, members=["test/data/librivox", "LICENSE"])
    audio = data.read_audio(root / "test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav")
    lm = loading.load_model(name)
    fe = lm.processor.feature_extractor(audio, sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
    kw = dict(language="en", task="transcribe") if lm.info.multilingual else {}
    with torch.inference_mode():
        out = lm.model.generate(fe.input_features, attention_mask=fe.attention_mask, return_token_timestamps=True,
                                return_dict_in_generate=True, **kw)
    want = out["token_timestamps"][0].numpy()
    feats, n = decoding.features(lm, audio, 16000, "clip")
    prompt = lm.prompt_ids("en", "transcribe")
    ids = decoding.decode(lm, feats, "en", "transcribe", beam_size=1)
    assert out["sequences"][0].tolist() == prompt + ids
    _, cross = attention.forced_decoding(lm, feats, decoding.Hypothesis("clip", tuple(prompt), tuple(ids), "", n))
    heads = np.stack([cross[l, h] for l, h in lm.info.alignment_heads])
    got = ts.transformers_token_timestamps(heads, len(prompt), int(fe.attention_mask.sum()))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_downstream_tables_and_head_selection_on_planted_explanations():
    """Explanations of 4 utterances where CA layer 2 head 2 and SM_H follow the words and everything
    else is noise: the timestamp table ranks them first, and heads chosen on held-out halves find
    the planted head (k = the 2 'shipped' heads, which are noise here)."""
    from crossattn_saliency.core import config
    from crossattn_saliency.explain.explanation import Explained
    from crossattn_saliency.run import timing
    from crossattn_saliency.explain.explanation import Explanation
    from crossattn_saliency.models.decoding import Hypothesis, Utterance

    rng = np.random.default_rng(3)
    cfg = config.get_profile("smoke", n_bootstrap=50)
    cond = config.Condition("toy", "toy", "transcribe", "en")
    items, refs = [], {}
    for u in range(4):
        n_tok, n_pos = 6, 100
        cuts = np.sort(rng.choice(np.arange(8, 92), size=n_tok - 1, replace=False))
        bounds = [0, *cuts.tolist(), n_pos]
        truth = _staircase(bounds, n_pos)
        ca = rng.random(size=(2, 2, n_tok, n_pos))
        ca[1, 1] = truth + 0.2 * rng.random(size=truth.shape)
        toks = [f" w{i}" for i in range(n_tok)]
        ids = list(range(10, 10 + n_tok))
        uid = f"u{u}"
        common = dict(utt_id=uid, token_ids=ids, tokens=toks, n_frames=2 * n_pos)
        exps = {"CA": Explanation(kind="CA", grid="encoder", maps=ca, alignment_heads=[(0, 0), (0, 1)], **common),
                "SM_H": Explanation(kind="SM_H", grid="encoder", maps=truth + 0.3 * rng.random(size=truth.shape),
                                    **common)}
        hyp = Hypothesis(uid, (1,), tuple(ids) + (2,), "", 2 * n_pos)
        items.append(Explained(Utterance(uid, np.zeros((80, 3000)), 2 * n_pos, hyp, "", {}), exps))
        refs[uid] = [(t.strip(), b * 0.02, e * 0.02) for t, b, e in zip(toks, bounds, bounds[1:])]
    errors = timing.timestamp_errors(cfg, cond, items, refs)
    table = timing.timestamp_table(cfg, errors).set_index(["kind", "view"])
    assert table.loc[("SM_H", "map"), "start_median (ms)"] <= 20
    assert table.loc[("CA", "alignment heads"), "start_median (ms)"] > 100
    assert set(table["utterances"]) == {4} and set(table["words"]) == {24}
    sel = timing.head_selection(cfg, cond, items, refs)
    assert sel.k == 2 and all([1, 1] in hs for hs in sel.heads["by timing"])
    assert sel.summary["by timing"].start_median[0] < sel.summary["shipped"].start_median[0]
    assert all(isinstance(r, timing.TimedWords) and r.start_ms.size == r.errors["matched"] for r in errors)
    assert {r.label for r in errors if r.kind == "SM_H"} == {"SM_H"}
    heads = timing.heads_table({cond.name: sel})
    assert set(heads["heads"]) == {"by timing", "shipped"} and len(heads) == 2
    # the REPORT.md section replaces itself on a rerun
    from crossattn_saliency.present import report

    text = report.replace_section("# R\n\n## A\n\nx\n", "What it means downstream", "first")
    again = report.replace_section(text, "What it means downstream", "second")
    assert again.count("## What it means downstream") == 1 and "second" in again and "first" not in again
    assert again.startswith("# R\n\n## A\n\nx\n")
