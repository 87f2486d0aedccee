"""Deletion faithfulness: masks, curves, areas (deletion.py)."""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency.evaluate import correlate, grids, deletion, floors

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
    r = deletion.utterance_ranking_map(maps, "token_z")
    assert r.shape == (N_SPEECH, N_MEL)
    assert np.allclose(r, correlate.normalize(maps, "token_z").mean(0))
    assert deletion.utterance_ranking_map(maps[:, :, 0], "token_z").shape == (N_SPEECH,)  # I x T' -> T'
    with pytest.raises(ValueError, match="no tokens"):
        deletion.utterance_ranking_map(np.zeros((0, 4)), "token_z")


def test_random_ranking_is_seeded():
    assert np.array_equal(floors.random_ranking((4, 3), 1), floors.random_ranking((4, 3), 1))
    assert not np.array_equal(floors.random_ranking((4, 3), 1), floors.random_ranking((4, 3), 2))


# --------------------------------------------------------------------------- curves


def _curve(score, step=5, **kw):
    feats = _features()
    dec = FakeDecoder(feats, _important())
    curve = deletion.deletion_curve(feats, N_SPEECH, score, dec, REFERENCE, step,
                                    occlusion_value=OCCLUDE, progress=False, **kw)
    assert np.array_equal(feats, _features())  # input not modified
    return curve, dec


def test_a_curve_decoded_in_one_call_is_the_same_curve():
    imp = _important().astype(float)
    score = imp + 0.01 * floors.random_ranking(imp.shape, 5)
    one_by_one, dec = _curve(score, step=10)
    calls = []

    def many(xs):
        calls.append(len(xs))
        return [dec(x) for x in xs]

    batched, _ = _curve(score, step=10, decode_many=many)
    assert batched.texts == one_by_one.texts and np.array_equal(batched.wer, one_by_one.wer)
    assert calls == [len(set(batched.n_deleted.tolist()))]          # one call, each distinct input once


def test_perfect_ranking_beats_random_which_beats_inverted():
    imp = _important().astype(float)
    perfect, _ = _curve(imp + 0.01 * floors.random_ranking(imp.shape, 5))
    rand, _ = _curve(floors.random_ranking(imp.shape, 6))
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
    score = floors.random_ranking((N_SPEECH, N_MEL), 0)
    curve, dec = _curve(score, step=30)
    assert curve.percents.tolist() == [0, 30, 60, 90, 100]
    # 0.1% steps of 240 cells repeat counts: decode only once per distinct count
    curve, dec = _curve(score, step=0.1)
    assert dec.calls == len(np.unique(curve.n_deleted)) < len(curve.percents)
    assert curve.as_dict()["auc"] == pytest.approx(curve.auc)


def test_ca_ranking_expanded_to_input_grid_finds_what_the_decoder_needs():
    # a cross-attention map (I x T') that attends where the fake decoder's important cells are:
    # each encoder position scores the important cells of its 2 input frames, plus per-token noise
    t_enc = grids.encoder_length(N_SPEECH)
    per_frame = _important().sum(axis=1).astype(float)  # frames
    per_pos = np.add.reduceat(per_frame, np.arange(0, N_SPEECH, 2))  # T'
    assert per_pos.shape == (t_enc,) and per_pos.std() > 0
    ca = per_pos[None] + 0.1 * np.random.default_rng(0).random((4, t_enc))
    score = grids.expand_to_input_grid(deletion.utterance_ranking_map(ca, "token_z"), N_SPEECH, N_MEL)
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
    score = floors.random_ranking((N_SPEECH, N_MEL), 0)
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
    from crossattn_saliency.evaluate import metrics

    assert deletion.default_wer("a b c d", "a b c") == pytest.approx(0.25)
    assert deletion.default_wer("a b", "") == 1.0
    for ref, hyp in [("Mr. Smith is here.", "mister smith is here"), ("w1 w2 w3", "w1 x w3 w4")]:
        assert deletion.default_wer(ref, hyp) == pytest.approx(metrics.wer([ref], [hyp], normalize=False) / 100)
    assert deletion.default_wer("Mr. Smith is here.", "mister smith is here") == pytest.approx(0.75)  # as given


# --------------------------------------------------------------------------- matched random floors


def test_random_encoder_columns_are_constant_within_each_column():
    for n_frames in (30, 31):  # the last column of an odd length has one frame
        a = floors.random_encoder_columns(n_frames, N_MEL, seed=3)
        assert a.shape == (n_frames, N_MEL) and a.dtype == np.float64
        assert np.all((a >= 0) & (a < 1))
        assert np.all(a == a[:, :1])  # constant over mel
        cols = a[:, 0]
        t_enc = grids.encoder_length(n_frames)
        per_pos = cols[::2]
        assert per_pos.size == t_enc and np.unique(per_pos).size == t_enc  # one value per encoder position
        assert np.array_equal(np.repeat(per_pos, 2)[:n_frames], cols)  # frames 2p and 2p+1 share position p
        assert np.array_equal(a, floors.random_encoder_columns(n_frames, N_MEL, seed=3))
        assert not np.array_equal(a, floors.random_encoder_columns(n_frames, N_MEL, seed=4))
    # the draw is the documented one: default_rng(seed).random(T') spread with expand_to_input_grid
    expected = grids.expand_to_input_grid(np.random.default_rng(9).random(15), 30, N_MEL)
    assert np.array_equal(floors.random_encoder_columns(30, N_MEL, 9), expected)
    b = floors.random_encoder_columns(12, 4, seed=0, factor=3)
    assert b.shape == (12, 4) and np.unique(b).size == 4
    with pytest.raises(ValueError, match="n_frames"):
        floors.random_encoder_columns(0, N_MEL, 0)


def _two_levels():
    """Two label levels on a 12 x 6 grid with -1 cells (partly at one level, fully at both)."""
    t, f = np.meshgrid(np.arange(12), np.arange(6), indexing="ij")
    coarse = (t // 6) * 2 + (f // 3)  # 4 segments of 6 x 3
    fine = (t // 4) * 3 + (f // 2)  # 9 segments of 4 x 2
    coarse[0, :] = -1  # frame 0: -1 at the coarse level only
    fine[11, :] = -1
    coarse[11, :] = -1  # frame 11: -1 at both levels
    return [coarse.astype(np.int64), fine.astype(np.int64)]


def test_random_segments_follow_the_segment_structure_and_rank_never_occluded_cells_last():
    labels = _two_levels()
    a = floors.random_segments(labels, seed=5)
    assert a.shape == (12, 6) and a.dtype == np.float64
    assert np.array_equal(a, floors.random_segments(labels, seed=5))
    assert not np.array_equal(a, floors.random_segments(labels, seed=6))
    # constant on every set of cells that share the same segment at every level, distinct across sets
    keys = np.stack(labels, axis=-1).reshape(-1, 2)
    flat = a.ravel()
    groups = {}
    for key, v in zip(map(tuple, keys), flat):
        groups.setdefault(key, set()).add(v)
    assert all(len(vals) == 1 for vals in groups.values())
    assert len({next(iter(v)) for v in groups.values()}) == len(groups)
    # the documented draw: one stream, level by level, mean over the levels where the label is not -1
    rng = np.random.default_rng(5)
    v0, v1 = rng.random(labels[0].max() + 1), rng.random(labels[1].max() + 1)
    i, j = 5, 4  # both levels
    assert a[i, j] == pytest.approx((v0[labels[0][i, j]] + v1[labels[1][i, j]]) / 2)
    assert a[0, 2] == pytest.approx(v1[labels[1][0, 2]])  # -1 at the coarse level: only the fine one counts
    # -1 at every level: value -1.0 and deleted after every other cell
    assert np.all(a[11] == -1.0) and np.all(a[:11] >= 0)
    order = deletion.deletion_order(a, seed=0)
    assert set(order[-6:].tolist()) == set(np.ravel_multi_index((np.full(6, 11), np.arange(6)), a.shape).tolist())
    # a single level: exactly its segments' values
    one = floors.random_segments(labels[1:], seed=2)
    assert np.unique(one[:11]).size == len(np.unique(labels[1][:11]))


def test_random_segments_reject_bad_labels():
    labels = _two_levels()
    with pytest.raises(ValueError, match="empty"):
        floors.random_segments([], 0)
    with pytest.raises(ValueError, match="one shape"):
        floors.random_segments([labels[0], labels[1][:5]], 0)
    with pytest.raises(ValueError, match="integers"):
        floors.random_segments([labels[0].astype(float)], 0)
    with pytest.raises(ValueError, match=">= -1"):
        floors.random_segments([labels[0] - 5], 0)


def test_matched_random_ranking_picks_the_floor_of_each_variant():
    labels = _two_levels()
    cols = floors.random_encoder_columns(12, 6, 7)
    assert np.array_equal(floors.matched_random_ranking("expanded", 12, 6, 7), cols)
    assert np.array_equal(floors.matched_random_ranking("pooled max2d", 12, 6, 7), cols)
    assert np.array_equal(floors.matched_random_ranking("pooled mean2d", 12, 6, 7), cols)
    assert np.array_equal(floors.matched_random_ranking("full", 12, 6, 7, labels=labels),
                          floors.random_segments(labels, 7))
    assert np.array_equal(floors.matched_random_ranking("cells", 12, 6, 7), floors.random_ranking((12, 6), 7))
    with pytest.raises(ValueError, match=r"labels=spes\.slic_levels"):
        floors.matched_random_ranking("full", 12, 6, 7)
    with pytest.raises(ValueError, match="frames x mel"):
        floors.matched_random_ranking("full", 13, 6, 7, labels=labels)
    with pytest.raises(ValueError, match="unknown ranking variant 'random'.*cells.*expanded.*full"):
        floors.matched_random_ranking("random", 12, 6, 7)


def test_baseline_seeds_are_distinct_reproducible_and_keyed():
    s = floors.baseline_seeds(0, "utt-1", "expanded", 10)
    assert len(s) == len(set(s)) == 10 and all(isinstance(x, int) and x >= 0 for x in s)
    assert s == floors.baseline_seeds(0, "utt-1", "expanded", 10)
    assert floors.baseline_seeds(0, "utt-1", "expanded", 3) == s[:3]  # more draws extend, never reshuffle
    others = [floors.baseline_seeds(1, "utt-1", "expanded", 10), floors.baseline_seeds(0, "utt-2", "expanded", 10),
              floors.baseline_seeds(0, "utt-1", "full", 10)]
    for o in others:
        assert not set(o) & set(s)
    # stable across processes (Python's hash() is salted per process; these must not be)
    import subprocess
    import sys

    code = ("from crossattn_saliency.evaluate import floors; "
            "print(floors.baseline_seeds(0, 'utt-1', 'expanded', 10))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "1",
                              "PYTHONPATH": ":".join(p for p in sys.path if p)})
    assert out.stdout.strip() == str(s)
    with pytest.raises(ValueError, match="n_draws"):
        floors.baseline_seeds(0, "u", "expanded", 0)


def test_baseline_gap_arithmetic_and_shape_errors():
    g = floors.baseline_gap([50.0, 20.0, 30.0], [[30.0, 40.0, 50.0], [20.0, 20.0, 20.0], [40.0, 30.0, 35.0]])
    assert np.allclose(g.random_mean, [40.0, 20.0, 35.0])
    assert np.allclose(g.random_sd, [10.0, 0.0, 5.0])  # sample sd (ddof=1)
    assert np.allclose(g.gap, [10.0, 0.0, -5.0]) and np.allclose(g.auc, [50.0, 20.0, 30.0])
    assert g.mean_gap == pytest.approx(5.0 / 3) and g.n_utterances == 3
    assert g.as_dict()["mean_gap"] == pytest.approx(g.mean_gap)
    with pytest.raises(Exception):
        g.gap = np.zeros(3)  # frozen
    one = floors.baseline_gap([10.0, 12.0], [[4.0], [6.0]])
    assert np.all(np.isnan(one.random_sd)) and np.allclose(one.gap, [6.0, 6.0])
    with pytest.raises(ValueError, match="2 utterances.*auc has 3"):
        floors.baseline_gap([1.0, 2.0, 3.0], [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="utterances x draws"):
        floors.baseline_gap([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="same number of draws"):
        floors.baseline_gap([1.0, 2.0], [[1.0, 2.0], [3.0]])
    with pytest.raises(ValueError, match="no draws"):
        floors.baseline_gap([1.0, 2.0], np.zeros((2, 0)))
    with pytest.raises(ValueError, match="1-D"):
        floors.baseline_gap([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="finite"):
        floors.baseline_gap([np.nan], [[1.0]])


# --------------------------------------------------------------------------- planted regions

P_MEL, P_SPEECH, P_TOTAL = 8, 80, 100  # 40 encoder columns of speech, then padding
P_SPEECH_VALUE, P_OCCLUDE = 1.0, -1.0
N_REGIONS, N_DRAWS = 8, 8


class RegionDecoder:
    """Emits one word per region; region r's word turns wrong once most of its cells are deleted.

    A region is a few encoder columns (2 frames each) over all mel bins. The word stays right while
    the region's mean is above 0, halfway between the speech value (~1) and the occlusion value (-1),
    i.e. while at most about half of the region's cells are deleted.
    """

    def __init__(self, regions):
        self.regions = regions  # list of (first frame, end frame)

    def __call__(self, feats: np.ndarray) -> str:
        words = []
        for r, (a, b) in enumerate(self.regions):
            words.append(f"w{r}" if feats[:, a:b].mean() > 0.0 else f"x{r}")
        return " ".join(words)


def _planted_utterance(seed):
    """Features, region decoder and per-encoder-column region index (-1 = outside) of one utterance."""
    rng = np.random.default_rng(seed)
    t_enc = P_SPEECH // 2
    widths = rng.integers(2, 4, size=N_REGIONS)  # 2-3 encoder columns per region
    free = t_enc - widths.sum()
    gaps = np.diff(np.sort(np.concatenate([[0], rng.integers(0, free + 1, size=N_REGIONS), [free]])))
    col_region = np.full(t_enc, -1)
    regions, pos = [], 0
    for r in range(N_REGIONS):
        pos += gaps[r]
        col_region[pos:pos + widths[r]] = r
        regions.append((2 * pos, 2 * (pos + widths[r])))
        pos += widths[r]
    feats = rng.uniform(0.8, 1.2, size=(P_MEL, P_TOTAL)) * P_SPEECH_VALUE
    feats[:, P_SPEECH:] = 0.0  # padding
    return feats, RegionDecoder(regions), col_region


def _auc(feats, dec, score, seed=0):
    ref = dec(feats)
    return deletion.deletion_curve(feats, P_SPEECH, score, dec, ref, step=10, occlusion_value=P_OCCLUDE,
                                   progress=False, seed=seed).auc


def _planted_gaps(n_utterances=8, floor=None):
    """Gaps of a truth-knowing and a shuffled column-shaped explanation against matched random draws."""
    floor = floor or (lambda utt, s: floors.matched_random_ranking("expanded", P_SPEECH, P_MEL, s))
    truth, shuffled, randoms = [], [], []
    for u in range(n_utterances):
        feats, dec, col_region = _planted_utterance(100 + u)
        assert dec(feats) == " ".join(f"w{r}" for r in range(N_REGIONS))
        rng = np.random.default_rng(200 + u)
        # an encoder-grid map that knows the truth: one level per region, tiny per-column noise
        level = rng.uniform(1.0, 2.0, size=N_REGIONS)
        per_col = np.where(col_region >= 0, level[col_region], 0.0) + 0.01 * rng.random(col_region.size)
        truth.append(_auc(feats, dec, grids.expand_to_input_grid(per_col, P_SPEECH, P_MEL)))
        # the same values permuted among encoder columns: same shape, no knowledge
        shuffled_map = grids.expand_to_input_grid(rng.permutation(per_col), P_SPEECH, P_MEL)
        shuffled.append(_auc(feats, dec, shuffled_map))
        seeds = floors.baseline_seeds(0, f"utt-{u}", "expanded", N_DRAWS)
        randoms.append([_auc(feats, dec, floor((feats, dec, col_region), s), seed=s % 2**32) for s in seeds])
    return floors.baseline_gap(truth, randoms), floors.baseline_gap(shuffled, randoms)


def _draws_se(g):
    """Standard error of a mean gap under 'no knowledge': an explanation AUC is one more draw from the
    same distribution as the random draws, so Var(gap_u) = sd_u^2 (1 + 1/draws); averaged over utterances."""
    return float(np.sqrt(np.sum(g.random_sd ** 2 * (1 + 1 / N_DRAWS))) / g.n_utterances)


def test_planted_regions_truth_beats_matched_floor_and_shuffled_does_not():
    truth, shuffled = _planted_gaps()
    se = _draws_se(truth)  # about 2.3 AUC points here (8 utterances x 8 draws, draw sd 3-10)
    assert np.all(truth.random_sd > 0)  # the draws do vary: the spread below is not degenerate
    # knowing where the words are: above the matched floor on every utterance, by far on average
    assert np.all(truth.gap > 0), truth.gap
    assert truth.mean_gap > 15 and truth.mean_gap > 6 * se, (truth.mean_gap, se)
    # the same column values in a random column order: indistinguishable from the matched floor.
    # 3 standard errors (not 2) so that this fixed-seed check is not a 5%-chance coin flip on any
    # edit of the generators; the truth gap above is > 6 standard errors, so the two cannot be confused.
    assert abs(shuffled.mean_gap) < 3 * se, (shuffled.mean_gap, se)
    assert truth.mean_gap > shuffled.mean_gap + 6 * se


def test_planted_regions_gap_vanishes_against_a_floor_that_knows_the_truth():
    # a broken floor that ranks the true regions first (column-shaped) leaves the truth nothing to beat:
    # the gap statistic must be able to say "no better than the floor"
    def oracle_floor(utt, s):
        _, _, col_region = utt
        per_col = (col_region >= 0) + 0.5 * np.random.default_rng(s).random(col_region.size) * (col_region >= 0)
        return grids.expand_to_input_grid(per_col.astype(float), P_SPEECH, P_MEL)

    truth, _ = _planted_gaps(n_utterances=3, floor=oracle_floor)
    assert truth.mean_gap < 5, truth.gap


def test_deletion_precision_report_pairs_the_same_curve_in_both_dtypes():
    from crossattn_saliency.app import bench_report

    rows = [{"condition": "c", "utterance": u, "ranking": "CA", "dtype": dt, "auc": auc, "seconds": s,
             "decodes": 9, "texts": texts}
            for u, dt, auc, s, texts in [("u1", "float32", 40.0, 10.0, ["a", "b"]), ("u1", "bfloat16", 42.5, 4.0, ["a", "b"]),
                                         ("u2", "float32", 60.0, 10.0, ["a", "c"]), ("u2", "bfloat16", 59.0, 4.0, ["a", "d"])]]
    md = bench_report.deletion_precision_to_markdown(rows, "test machine")
    assert "| c | u1 | CA | 40.0 | 42.5 | +2.5 | 10.0 | 4.0 |" in md
    assert "mean +0.75, mean absolute 1.75, largest 2.50" in md
    assert "identical outputs along the whole curve in 50 % of curves" in md and "= 0.40." in md


# --------------------------------------------------------------------------- dense grid, insertion, low end


def test_the_dense_grid_adds_low_points_and_the_study_auc_uses_its_5_percent_points_only():
    pc = deletion.curve_percents(5, (0, 1, 2, 5, 10, 100))
    assert pc[:5].tolist() == [0, 1, 2, 5, 10] and pc[-1] == 100 and len(pc) == 23
    wer = np.minimum(100.0, pc ** 2)
    c = deletion.DeletionCurve(pc, wer, [""] * len(pc), np.zeros(len(pc), int))
    on_grid = deletion.curve_percents(5)
    assert c.auc_on(5) == pytest.approx(deletion.deletion_auc(on_grid, np.minimum(100.0, on_grid ** 2)))
    assert c.auc < c.auc_on(5) and c.wer_at(1.5) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="lacks points of the 5 % grid"):
        deletion.grid_auc([0, 10, 100], [0, 1, 2])
    with pytest.raises(ValueError, match="within \\[0, 100\\]"):
        deletion.curve_percents(5, (120,))


def _planted_records(direction):
    """Curves of a ranking that knows the important cells and of seeded random floors, 8 utterances."""
    from crossattn_saliency.evaluate.results import DeletionRecord, Ranking

    pc = deletion.curve_percents(5, (0, 1, 2, 5, 10, 100))
    out = []
    for u in range(8):
        feats, imp = _features(u), _important(u + 10)
        dec = FakeDecoder(feats, imp)
        truth = imp.astype(float) + 0.01 * np.random.default_rng(u).random(imp.shape)
        for rank, score in [(Ranking("SM_X", "full"), truth)] + [
                (Ranking("random", f"segments {d + 1}"), np.random.default_rng(1000 * u + d).random(imp.shape))
                for d in range(3)]:
            c = deletion.deletion_curve(feats, N_SPEECH, score, dec, REFERENCE, percents=pc, occlusion_value=OCCLUDE,
                                        progress=False, insertion=direction == "insertion")
            out.append(DeletionRecord("c", f"u{u}", rank, tuple(c.percents), tuple(c.wer), tuple(c.n_deleted),
                                      tuple(c.texts), c.auc, direction))
    return out


def test_an_explanation_that_knows_the_truth_beats_its_matched_floor_at_one_to_five_percent():
    import dataclasses

    from crossattn_saliency.evaluate.results import DeletionTable

    table = DeletionTable(_planted_records("deletion") + _planted_records("insertion"))
    low = {(r["explanation"], r["percent"]): r for r in table.low_end((1, 2, 5), n_bootstrap=200)}
    for p in (1, 2, 5):
        row = low[("SM_X full", float(p))]
        assert row["floor"] == "random segments" and row["faithful"] == "yes", row
        assert row["gap_lo"] > 0 and row["wer"] > 5 * row["floor wer"]
    assert np.isfinite(low[("SM_X full", 1.0)]["auc (study grid)"])
    # curves measured off the study's 5 % grid (a coarser profile) have no study-grid AUC, and no error
    coarse = DeletionTable([dataclasses.replace(r, percents=tuple(p + 0.5 if 0 < p < 100 else p for p in r.percents))
                            for r in table.records])
    assert all(np.isnan(row["auc (study grid)"]) for row in coarse.low_end((2,), n_bootstrap=50))
    # insertion: restoring the important cells first makes the WER fall early (a smaller area)
    ins = {g["explanation"]: g for g in table.gaps(n_bootstrap=200, direction="insertion")}
    assert ins["SM_X full"]["auc"] < ins["SM_X full"]["floor auc"] and ins["SM_X full"]["gap_lo"] > 0
    first = next(r for r in table.records if r.direction == "insertion" and r.ranking.kind == "SM_X")
    assert first.wer[0] == 100.0 and first.wer[-1] == 0.0 and first.wer_at(10) == 0.0
    # the deletion table's rows are the deletion curves only
    assert set(table.mean_auc().columns) == {"condition", "SM_X full", "random segments"}
    ins_auc = table.mean_auc("insertion").set_index("condition")
    assert ins_auc.loc["c", "SM_X full"] < ins_auc.loc["c", "random segments"]
    assert len(table.to_frame()) == 32 and len(table.of("insertion").records) == 32
