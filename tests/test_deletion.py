"""Deletion faithfulness: masks, curves, areas (deletion.py)."""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency import compare, deletion

N_MEL, N_SPEECH, N_TOTAL = 8, 30, 50  # speech frames, then padding frames
OCCLUDE = -7.0
REFERENCE = " ".join(f"w{i}" for i in range(20))


def _features(seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(N_MEL, N_TOTAL))  # mel x frames


def _important(seed=1, fraction=0.1):
    """frames x mel boolean map of the cells the fake model depends on."""
    rng = np.random.default_rng(seed)
    n = N_SPEECH * N_MEL
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=int(fraction * n), replace=False)] = True
    return mask.reshape(N_SPEECH, N_MEL)


class FakeDecoder:
    """Drops a share of the reference's words equal to the share of important cells deleted."""

    def __init__(self, features, important):
        self.features = features.copy()
        self.important = important
        self.calls = 0

    def __call__(self, feats: np.ndarray) -> str:
        self.calls += 1
        assert feats.shape == self.features.shape
        # padding frames are never touched
        assert np.array_equal(feats[:, N_SPEECH:], self.features[:, N_SPEECH:])
        deleted = feats[:, :N_SPEECH].T == OCCLUDE  # frames x mel
        share = (deleted & self.important).sum() / self.important.sum()
        words = REFERENCE.split()
        return " ".join(words[int(round(share * len(words))):])


# --------------------------------------------------------------------------- AUC


def test_auc_of_known_curves():
    x = np.arange(0, 101, 5.0)
    assert deletion.deletion_auc(x, x) == pytest.approx(50.0)  # linear 0 -> 100
    assert deletion.deletion_auc(x, np.full_like(x, 100.0)) == pytest.approx(100.0)
    assert deletion.deletion_auc(x, np.zeros_like(x)) == 0.0
    step = np.where(x >= 50, 100.0, 0.0)  # jumps between 45 and 50: half a trapezoid of 5
    assert deletion.deletion_auc(x, step) == pytest.approx((50 * 100 + 2.5 * 100) / 100)
    assert deletion.deletion_auc([0, 100], [20, 60]) == pytest.approx(40.0)


def test_auc_rejects_bad_input():
    with pytest.raises(ValueError, match="increasing"):
        deletion.deletion_auc([0, 50, 40], [0, 1, 2])
    with pytest.raises(ValueError, match="equal length"):
        deletion.deletion_auc([0, 50], [0, 1, 2])
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        deletion.deletion_auc([0, 150], [0, 1])


# --------------------------------------------------------------------------- masks


def test_masks_are_nested_and_have_exact_counts():
    score = np.random.default_rng(0).normal(size=(N_SPEECH, N_MEL))
    percents = [0, 5, 12.5, 33, 50, 99, 100]
    masks = list(deletion.deletion_masks(score, percents))
    n = score.size
    for k, m in zip(percents, masks):
        assert m.shape == score.shape and m.dtype == bool
        assert m.sum() == int(np.floor(k * n / 100 + 0.5))
    for small, big in zip(masks, masks[1:]):
        assert np.all(big[small])  # top-k subset of top-k'
    # the selected cells are the highest-scoring ones
    m = masks[4]
    assert score[m].min() >= score[~m].max()


def test_ties_are_broken_by_a_seeded_random_order():
    flat = np.zeros((10, 4))
    a = next(deletion.deletion_masks(flat, [25], seed=3))
    b = next(deletion.deletion_masks(flat, [25], seed=3))
    c = next(deletion.deletion_masks(flat, [25], seed=4))
    assert a.sum() == 10 and np.array_equal(a, b) and not np.array_equal(a, c)
    # not simply the first cells in memory order
    assert not np.array_equal(a.ravel(), np.arange(40) < 10)
    with pytest.raises(ValueError, match="NaN"):
        next(deletion.deletion_masks(np.array([[np.nan, 1.0]]), [50]))


# --------------------------------------------------------------------------- ranking maps


def test_utterance_ranking_map_averages_token_normalized_maps():
    maps = np.random.default_rng(0).normal(size=(3, N_SPEECH, N_MEL)) * np.array([1, 100, 0.01])[:, None, None]
    r = deletion.utterance_ranking_map(maps)
    assert r.shape == (N_SPEECH, N_MEL)
    assert np.allclose(r, compare.normalize(maps, "token_z").mean(0))
    assert deletion.utterance_ranking_map(maps[:, :, 0]).shape == (N_SPEECH,)  # I x T' -> T'
    with pytest.raises(ValueError, match="no tokens"):
        deletion.utterance_ranking_map(np.zeros((0, 4)))


def test_random_ranking_is_seeded():
    assert np.array_equal(deletion.random_ranking((4, 3), 1), deletion.random_ranking((4, 3), 1))
    assert not np.array_equal(deletion.random_ranking((4, 3), 1), deletion.random_ranking((4, 3), 2))


# --------------------------------------------------------------------------- curves


def _curve(score, step=5, **kw):
    feats = _features()
    dec = FakeDecoder(feats, _important())
    curve = deletion.deletion_curve(feats, N_SPEECH, score, dec, REFERENCE, step,
                                    occlusion_value=OCCLUDE, progress=False, **kw)
    assert np.array_equal(feats, _features())  # input not modified
    return curve, dec


def test_perfect_ranking_beats_random_which_beats_inverted():
    imp = _important().astype(float)
    perfect, _ = _curve(imp + 0.01 * deletion.random_ranking(imp.shape, 5))
    rand, _ = _curve(deletion.random_ranking(imp.shape, 6))
    inverted, _ = _curve(-imp)
    assert perfect.auc > 85 and 35 < rand.auc < 65 and inverted.auc < 15
    assert perfect.auc > rand.auc > inverted.auc
    # the curve starts at 0 (nothing deleted) and ends at 100 (everything deleted)
    for c in (perfect, rand, inverted):
        assert c.wer[0] == 0.0 and c.wer[-1] == 100.0
        assert c.texts[0] == REFERENCE and c.texts[-1] == ""
        assert np.all((c.wer >= 0) & (c.wer <= 100))
    assert np.array_equal(perfect.percents, np.arange(0, 101, 5.0))
    assert perfect.n_deleted[-1] == N_SPEECH * N_MEL


def test_curve_percents_end_at_100_and_identical_inputs_decode_once():
    score = deletion.random_ranking((N_SPEECH, N_MEL), 0)
    curve, dec = _curve(score, step=30)
    assert curve.percents.tolist() == [0, 30, 60, 90, 100]
    # 0.1% steps of 240 cells repeat counts: decode only once per distinct count
    curve, dec = _curve(score, step=0.1)
    assert dec.calls == len(np.unique(curve.n_deleted)) < len(curve.percents)
    assert curve.as_dict()["auc"] == pytest.approx(curve.auc)


def test_ca_ranking_expanded_to_input_grid_finds_what_the_decoder_needs():
    # a cross-attention map (I x T') that attends where the fake decoder's important cells are:
    # each encoder position scores the important cells of its 2 input frames, plus per-token noise
    t_enc = compare.encoder_length(N_SPEECH)
    per_frame = _important().sum(axis=1).astype(float)  # frames
    per_pos = np.add.reduceat(per_frame, np.arange(0, N_SPEECH, 2))  # T'
    assert per_pos.shape == (t_enc,) and per_pos.std() > 0
    ca = per_pos[None] + 0.1 * np.random.default_rng(0).random((4, t_enc))
    score = compare.expand_to_input_grid(deletion.utterance_ranking_map(ca), N_SPEECH, N_MEL)
    informed, _ = _curve(score, step=10)
    reverse, _ = _curve(-score, step=10)
    for c in (informed, reverse):
        # deleting a larger share never deletes fewer cells (masks are nested), nor lowers this decoder's WER
        assert np.all(np.diff(c.n_deleted) >= 0) and np.all(np.diff(c.wer) >= 0)
        assert c.n_deleted.tolist() == [deletion.n_cells_to_delete(k, N_SPEECH * N_MEL) for k in c.percents]
        assert c.wer[0] == 0.0 and c.wer[-1] == 100.0
    # the informed ranking breaks the output earlier than the reverse one, at every step and overall
    assert np.all(informed.wer >= reverse.wer)
    first_half = [float(c.percents[np.argmax(c.wer >= 50)]) for c in (informed, reverse)]
    assert first_half[0] < first_half[1], first_half
    assert informed.auc > reverse.auc + 20


def test_wer_is_clipped_and_custom_wer_fn_is_a_fraction():
    score = deletion.random_ranking((N_SPEECH, N_MEL), 0)
    curve, _ = _curve(score, step=50, wer_fn=lambda ref, hyp: 3.0)
    assert np.all(curve.wer == 100.0)
    curve, _ = _curve(score, step=50, wer_fn=lambda ref, hyp: 0.25)
    assert np.all(curve.wer == 25.0)


def test_curve_errors_name_the_problem():
    feats = _features()
    dec = FakeDecoder(feats, _important())
    score = np.zeros((N_SPEECH, N_MEL))
    with pytest.raises(ValueError, match="frames x mel"):
        deletion.deletion_curve(feats, N_SPEECH, score.T, dec, REFERENCE, occlusion_value=0.0)
    with pytest.raises(ValueError, match="reference.*empty"):
        deletion.deletion_curve(feats, N_SPEECH, score, dec, "  ", occlusion_value=0.0)
    with pytest.raises(ValueError, match="n_frames"):
        deletion.deletion_curve(feats, N_TOTAL + 1, score, dec, REFERENCE, occlusion_value=0.0)
    with pytest.raises(ValueError, match="empty"):
        deletion.default_wer("", "a")


def test_default_wer_is_metrics_wer_without_normalization_as_a_fraction():
    from crossattn_saliency import metrics

    assert deletion.default_wer("a b c d", "a b c") == pytest.approx(0.25)
    assert deletion.default_wer("a b", "") == 1.0
    for ref, hyp in [("Mr. Smith is here.", "mister smith is here"), ("w1 w2 w3", "w1 x w3 w4")]:
        assert deletion.default_wer(ref, hyp) == pytest.approx(metrics.wer([ref], [hyp], normalize=False) / 100)
    assert deletion.default_wer("Mr. Smith is here.", "mister smith is here") == pytest.approx(0.75)  # as given
