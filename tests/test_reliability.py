"""Split-half reliability, Spearman-Brown, noise ceilings and disattenuation (reliability.py).

Synthetic saliency = truth + independent noise of known variance, so that every
quantity has a closed form:

* half map: S + e, Var(e) = s2  ->  r_half = 1 / (1 + s2)
* full map (mean of the halves): noise s2 / 2  ->  r_full = 1 / (1 + s2 / 2) = SB(r_half, 2)
* CA = rho * S + sqrt(1 - rho^2) * U  ->  corr(CA, full) = rho * sqrt(r_full); disattenuated: rho
"""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency.evaluate import correlate, grids, map_noise, reliability, token_bootstrap


def _synthetic(n_utt=16, tokens=4, t_enc=150, rho=0.6, s2=1.5, seed=0):
    rng = np.random.default_rng(seed)
    ca, full, ha, hb = [], [], [], []
    for _ in range(n_utt):
        truth = rng.normal(size=(tokens, t_enc))
        ca.append(rho * truth + np.sqrt(1 - rho ** 2) * rng.normal(size=truth.shape))
        a = truth + np.sqrt(s2) * rng.normal(size=truth.shape)
        b = truth + np.sqrt(s2) * rng.normal(size=truth.shape)
        ha.append(a)
        hb.append(b)
        full.append((a + b) / 2)
    return ca, full, ha, hb


def _inside(interval, value, slack=0.0):
    _, lo, hi = interval
    return lo - slack <= value <= hi + slack


def test_split_half_reliability_recovers_closed_form():
    _, _, ha, hb = _synthetic(n_utt=1, tokens=8, t_enc=2000, s2=1.0)
    r = reliability.split_half_reliability(ha[0], hb[0], None, "token_z")
    assert abs(r - 0.5) < 0.03  # 1 / (1 + 1)


def _corrected(ca, full, ha, hb, **kw):
    """:func:`reliability.corrected_correlation` of per-utterance statistics, with nulls of 0 (Gaussian noise)."""
    rho = [correlate.correlation(correlate.normalize(c, "token_z"), correlate.normalize(f, "token_z")) for c, f in zip(ca, full)]
    r_half = [reliability.split_half_reliability(a, b, None, "token_z") for a, b in zip(ha, hb)]
    zeros = np.zeros(len(rho))
    return reliability.corrected_correlation(rho, zeros, r_half, zeros, **kw)


def test_corrected_correlation_matches_theory_within_intervals():
    rho, s2 = 0.6, 1.5
    ca, full, ha, hb = _synthetic(rho=rho, s2=s2)
    r_full_true = 1 / (1 + s2 / 2)
    cc = _corrected(ca, full, ha, hb, n_bootstrap=300, seed=1, min_utterances=8)
    assert cc.rho_per_utterance.shape == (16,) and cc.disattenuated.n == 16
    assert abs(cc.reliability - r_full_true) < 0.02
    np.testing.assert_allclose(cc.reliability_per_utterance, reliability.spearman_brown(cc.r_half_per_utterance, 2.0))
    assert cc.rho.lo - 0.01 <= rho * np.sqrt(r_full_true) <= cc.rho.hi + 0.01
    assert cc.disattenuated.lo - 0.01 <= rho <= cc.disattenuated.hi + 0.01
    assert abs(cc.disattenuated.value - rho) < 0.03
    # the raw correlation is clearly attenuated, the corrected one is not
    assert cc.rho.hi < rho - 0.05
    assert cc.disattenuated.lo <= cc.disattenuated.value <= cc.disattenuated.hi


def test_corrected_correlation_is_seeded():
    ca, full, ha, hb = _synthetic(n_utt=8, t_enc=40)
    a = _corrected(ca, full, ha, hb, n_bootstrap=100, seed=7, min_utterances=8)
    b = _corrected(ca, full, ha, hb, n_bootstrap=100, seed=7, min_utterances=8)
    assert a.disattenuated == b.disattenuated and a.rho == b.rho


def test_reduced_reliability_uses_the_comparison_pipeline():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(3, 21, 6))  # I x T x F
    a = truth + rng.normal(size=truth.shape)
    b = truth + rng.normal(size=truth.shape)
    r = reliability.split_half_reliability(a, b, "max2d", "token_z")
    za = correlate.normalize(grids.reduce_to_encoder_grid(a, "max2d"), "token_z")
    zb = correlate.normalize(grids.reduce_to_encoder_grid(b, "max2d"), "token_z")
    assert np.isclose(r, np.corrcoef(za.ravel(), zb.ravel())[0, 1])
    with pytest.raises(ValueError, match="differ in shape"):
        reliability.split_half_reliability(a, b[:, :-1], None, "token_z")


def test_context_mixing_gain_disattenuated_by_each_reliability():
    """Each side of the gain rho(CA, SM_H) - rho(CA, SM_X) is disattenuated by its own reference's
    reliability (:func:`reliability.disattenuated_value`): the noisier SM_X no longer inflates the gain."""
    rng = np.random.default_rng(5)
    n_utt, tokens, t_enc = 16, 4, 150
    rho_h, rho_x, s2_h, s2_x = 0.8, 0.6, 0.5, 2.0
    ca, h_parts, x_parts = [], ([], [], []), ([], [], [])
    for _ in range(n_utt):
        z = rng.normal(size=(tokens, t_enc))
        ca.append(z)
        for rho, s2, parts in ((rho_h, s2_h, h_parts), (rho_x, s2_x, x_parts)):
            truth = rho * z + np.sqrt(1 - rho ** 2) * rng.normal(size=z.shape)
            a = truth + np.sqrt(s2) * rng.normal(size=z.shape)
            b = truth + np.sqrt(s2) * rng.normal(size=z.shape)
            parts[0].append((a + b) / 2)
            parts[1].append(a)
            parts[2].append(b)
    cc_h = _corrected(ca, *h_parts, n_bootstrap=50, min_utterances=8)
    cc_x = _corrected(ca, *x_parts, n_bootstrap=50, min_utterances=8)
    raw = cc_h.rho.value - cc_x.rho.value
    dis = (reliability.disattenuated_value(cc_h.rho_corrected_per_utterance, cc_h.reliability_per_utterance)
           - reliability.disattenuated_value(cc_x.rho_corrected_per_utterance, cc_x.reliability_per_utterance))
    raw_true = rho_h / np.sqrt(1 + s2_h / 2) - rho_x / np.sqrt(1 + s2_x / 2)
    assert abs(raw - raw_true) < 0.03
    assert abs(dis - (rho_h - rho_x)) < 0.03
    # noise in SM_X inflates the raw gain: the corrected gain is smaller
    assert dis < raw


# --------------------------------------------------------------------------- formulas


def test_spearman_brown_values_and_inverse_round_trip():
    assert np.isclose(reliability.spearman_brown(0.5, 2), 2 / 3)
    assert np.isclose(reliability.spearman_brown(0.5, 1), 0.5)
    assert np.allclose(reliability.spearman_brown(np.array([0.0, 1.0]), 3), [0.0, 1.0])
    for r, n, target in [(0.2, 500, 0.9), (0.6, 1000, 0.8), (0.95, 10000, 0.99), (0.3, 64, 0.5)]:
        m = reliability.budget_for_reliability(r, n, target)
        assert np.isclose(reliability.reliability_at(r, n, m), target)
        # Spearman-Brown composes: n -> m -> back to n
        assert np.isclose(reliability.reliability_at(reliability.reliability_at(r, n, m), m, n), r)
    assert np.isclose(reliability.budget_for_reliability(0.5, 1000, 0.9), 9000)
    assert np.allclose(reliability.reliability_at(0.5, 100, np.array([100, 200])), [0.5, 2 / 3])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        reliability.spearman_brown(1.5)
    with pytest.raises(ValueError, match="target"):
        reliability.budget_for_reliability(0.5, 100, 1.0)


def test_budget_edge_cases():
    assert reliability.budget_for_reliability(0.0, 100) == float("inf")
    assert reliability.budget_for_reliability(-0.2, 100) == float("inf")
    assert reliability.budget_for_reliability(float("nan"), 100) == float("inf")
    assert reliability.budget_for_reliability(1.0, 100) == 0.0


def test_ceiling_and_disattenuation_edge_cases():
    assert reliability.noise_ceiling(0.81) == pytest.approx(0.9)
    assert reliability.noise_ceiling(-0.1) == 0.0
    assert np.allclose(reliability.noise_ceiling(np.array([0.0, 0.25, -1.0])), [0.0, 0.5, 0.0])
    assert reliability.disattenuate(0.3, 0.36) == pytest.approx(0.5)
    assert np.isnan(reliability.disattenuate(0.3, 0.0))
    assert np.isnan(reliability.disattenuate(0.3, -0.2))
    out = reliability.disattenuate(np.array([0.3, 0.3]), np.array([0.09, 0.0]))
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1])


def test_convergence_curve_on_truth_plus_noise():
    """Maps that average more noise draws converge to the truth; reliability rises with n."""
    from crossattn_saliency.evaluate.reliability import convergence_curve

    rng = np.random.default_rng(3)
    truth = rng.standard_normal((4, 60))

    def mean_of(n, stream):  # mean of n noisy draws
        return truth + stream.standard_normal((4, 60)) * 3.0 / np.sqrt(n)

    ra, rb = np.random.default_rng(10), np.random.default_rng(11)
    snaps = {}
    for n in (8, 32, 128):
        a, b = mean_of(n / 2, ra), mean_of(n / 2, rb)
        snaps[n] = ((a + b) / 2, a, b)
    fa, fb = mean_of(256, ra), mean_of(256, rb)
    out = convergence_curve(snaps, (fa + fb) / 2, fa, fb, 512, None, "token_z")
    assert list(out["n"]) == [8, 32, 128, 512]
    assert np.isnan(out["rho_to_final"][-1])
    assert np.all(np.diff(out["rho_to_final"][:-1]) > 0)
    assert np.all(np.diff(out["reliability"]) > 0)
    # theory: half of n draws has noise var 9/(n/2); r_half = 1 / (1 + 18/n)
    for n, r in zip(out["n"], out["split_half"]):
        assert abs(r - 1 / (1 + 18 / n)) < 0.15


# --------------------------------------------------------------------------- null calibration

def test_spearman_brown_after_clipping_never_leaves_the_unit_interval():
    r = np.linspace(-1, 1, 2001)
    full = reliability.spearman_brown(reliability.clip_half(r), 2.0)
    assert np.all((full >= 0) & (full <= 1))
    assert reliability.clip_half(-0.4) == 0.0 and reliability.spearman_brown(reliability.clip_half(-0.4), 2.0) == 0.0
    assert np.isnan(reliability.clip_half(float("nan")))


def test_chance_correction_maps_the_null_to_zero_and_keeps_one():
    assert reliability.chance_corrected(0.03, 0.03) == 0.0
    assert reliability.chance_corrected(1.0, 0.2) == 1.0
    assert reliability.chance_corrected(0.6, 0.2) == pytest.approx(0.5)
    assert np.isnan(reliability.chance_corrected(0.5, 1.0))


class _Design:
    """A real SPES run (spes.Spes on a small spectrogram-like input with SLIC levels) as
    ``(resample, design)`` for reference_noise."""

    def __init__(self, forward, seed, n=480, frames=100, mel=16, tokens=12):
        import torch

        from crossattn_saliency.explain import spes

        rng = np.random.default_rng(seed)
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(rng.normal(size=(frames, mel)), 2.0).astype(np.float32)
        params = spes.SpesParams(levels=(20, 30, 40), frames_ref=frames)
        self.levels = spes.slic_levels(img, params)
        run = spes.Spes(forward(tokens, seed), batch_size=32).attribute(
            torch.as_tensor(img), self.levels, occlusion_value=float(img.min()), n_perturbations=n, seed=seed,
            progress=False)
        self.design = spes.SpesDesign(run.scores, run.n_segments, 0.5, seed, self.levels)
        self.ca = gaussian_filter(rng.normal(size=(tokens, grids.encoder_length(frames))), (0, 1.5))

    def resample(self, halves=None, scores=None):
        return self.design.cell_maps(halves, scores)


def _ignores_input(tokens, seed):
    import torch

    g = torch.Generator().manual_seed(seed)

    def f(x):  # pure noise: the scores do not depend on what was occluded
        return torch.log_softmax(3 * torch.randn(x.shape[0], tokens, 11, generator=g), dim=-1)
    return f


def _reads_input(tokens, seed):
    import torch

    w = torch.as_tensor(np.random.default_rng(seed).normal(size=(tokens, 11)), dtype=torch.float32)

    def f(x):  # token i reads a band of frames: a real signal
        bands = torch.stack([x[:, 15 * i: 15 * i + 15].mean(dim=(1, 2)) for i in range(tokens)], dim=1)
        return torch.log_softmax(4 * bands[..., None] * w[None], dim=-1)
    return f


@pytest.fixture(scope="module")
def null_runs():
    # 16 utterances of 12 tokens x 50 positions: under pure noise the split-half statistics of the real pairing of scores and masks
    # and of permuted pairings have the same distribution, so the corrected values scatter around 0
    return [_Design(_ignores_input, seed) for seed in range(100, 116)]


@pytest.mark.parametrize("reduce", [None, *grids.REDUCERS])
def test_on_a_forward_that_ignores_its_input_corrected_reliability_and_rho_are_zero(null_runs, reduce):
    from crossattn_saliency.evaluate import stats

    rho, rho0, rh, rh0 = [], [], [], []
    for i, run in enumerate(null_runs):
        noise = map_noise.reference_noise(run.resample, run.design, reducer=reduce, normalization="token_z", n_splits=6, n_null=6, seed=i)
        full = run.resample()[0]
        red = grids.reduce_to_encoder_grid(full, reduce) if reduce else full
        ca = run.ca if reduce else np.repeat(run.ca, 2, axis=1)[:, : full.shape[1], None] * np.ones(full.shape)
        rho.append(correlate.correlation(correlate.normalize(ca, "token_z"), correlate.normalize(red, "token_z")))
        rho0.append(noise.rho_null(ca))
        rh.append(noise.r_half)
        rh0.append(noise.r_half_0)
    res = reliability.corrected_correlation(rho, rho0, rh, rh0, n_bootstrap=400)
    est = stats.set_estimate(reliability.chance_corrected(np.array(rh), np.array(rh0)), average="mean",
                                n_bootstrap=400)
    assert est.lo <= 0 <= est.hi, est
    assert res.rho_corrected.lo <= 0 <= res.rho_corrected.hi, res.rho_corrected
    assert not res.estimable and np.isnan(res.disattenuated.value)  # noise: "not estimable", no value


def test_the_max_pooling_floor_is_seen_by_the_null_and_removed(null_runs):
    raw = [map_noise.reference_noise(r.resample, r.design, reducer="max2d", normalization="token_z", n_splits=6, n_null=6, seed=i)
           for i, r in enumerate(null_runs)]
    # the shared segmentation plus a max over windows gives a positive split-half floor on pure noise
    assert np.mean([n.r_half for n in raw]) > 0.005
    assert abs(np.mean([n.r_half - n.r_half_0 for n in raw])) < 0.5 * np.mean([n.r_half for n in raw])


def test_a_real_signal_keeps_a_high_corrected_reliability():
    runs = [_Design(_reads_input, seed, n=480, frames=60, tokens=4) for seed in range(3)]
    for i, r in enumerate(runs):
        noise = map_noise.reference_noise(r.resample, r.design, reducer="max2d", normalization="token_z", n_splits=4, n_null=4, seed=i)
        assert noise.r_half > 0.5 and noise.reliability > 0.6
        assert noise.r_half_0 < 0.3


def test_corrected_correlation_gives_intervals_only_from_eight_utterances():
    rng = np.random.default_rng(0)
    for n, has in ((7, False), (8, True)):
        rho = rng.uniform(0.3, 0.5, n)
        res = reliability.corrected_correlation(rho, np.zeros(n), np.full(n, 0.5), np.zeros(n), n_bootstrap=200)
        assert res.rho.has_interval is has and res.disattenuated.has_interval is has
        assert res.reliability == pytest.approx(2 * 0.5 / 1.5)
        assert res.disattenuated.value == pytest.approx(np.tanh(np.arctanh(rho).mean()) / np.sqrt(2 / 3))


def test_single_map_disattenuation_recovers_the_noise_free_correlation():
    """A reference with known reliability: rho_corrected / sqrt(reliability) lands on the true rho."""
    rng = np.random.default_rng(3)
    tokens, t = 40, 200
    truth = rng.normal(size=(tokens, t))
    e = 0.6 * truth + 0.8 * rng.normal(size=truth.shape)     # corr(e, truth) = 0.6
    a = truth + 1.0 * rng.normal(size=truth.shape)
    b = truth + 1.0 * rng.normal(size=truth.shape)           # r_half = 0.5, r_full = 2/3
    full = (a + b) / 2
    r_half = reliability.split_half_reliability(a, b, None, "token_z")
    noise = map_noise.ReferenceNoise(np.array([r_half]), np.array([0.0]), (rng.normal(size=truth.shape),))
    d = reliability.single_map_disattenuation(e, full, noise, n_bootstrap=300)
    assert d.rho == pytest.approx(0.6 * np.sqrt(2 / 3), abs=0.03)
    assert d.lo <= 0.6 <= d.hi and d.disattenuated == pytest.approx(0.6, abs=0.04)
    assert abs(d.rho_null) < 0.05 and d.n_tokens == tokens


def test_interval_width_prefers_many_utterances_when_map_noise_is_small():
    """At fixed compute (n x budget), the interval narrows with more utterances at a smaller budget
    as long as the budget's map noise stays small next to the spread between utterances."""
    from crossattn_saliency.evaluate.budget import interval_width

    compute = 16 * 3200
    budgets = np.array([800, 1600, 3200, 6400])
    widths = interval_width(compute / budgets, budgets, between_sd=0.12, within_sd_at=0.02, budget_at=1600)
    assert np.all(np.diff(widths) > 0)
    # with no spread between utterances, compute buys the same precision either way
    flat = interval_width(compute / budgets, budgets, between_sd=0.0, within_sd_at=0.02, budget_at=1600)
    np.testing.assert_allclose(flat, flat[0])
    assert interval_width(8, 1600, 0.1, 0.0, 1600) == pytest.approx(2 * 1.96 * 0.1 / np.sqrt(8))


def test_budget_rule_reports_the_median_map_and_the_noise_share():
    from crossattn_saliency.evaluate.reliability import budget_for_reliability
    from crossattn_saliency.evaluate.budget import budget_rule

    rule = budget_rule([0.2, 0.5, 0.6, np.nan, 0.9], budget=1000, target=0.5, values=[0.4, 0.6, 0.5],
                       within_sd=0.1)
    assert rule.median_reliability == pytest.approx(0.55) and rule.share_at_target == pytest.approx(0.75)
    assert rule.budget_for_target == pytest.approx(budget_for_reliability(0.55, 1000, 0.5)) and rule.budget_for_target < 1000
    assert rule.between_sd == pytest.approx(0.1) and rule.noise_share == pytest.approx(0.5)
    no_repeats = budget_rule([0.3], 1000, 0.9)
    assert np.isnan(no_repeats.noise_share) and no_repeats.budget_for_target == pytest.approx(
        budget_for_reliability(0.3, 1000, 0.9))


# --------------------------------------------------------------------------- token bootstrap


def test_pooled_pearson_of_row_moments_is_the_correlation_and_counts_rows():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(6, 40)), rng.normal(size=(6, 40))
    b[:3] += a[:3]
    m = token_bootstrap.row_moments(a, b)
    assert m.shape == (6, 6)
    assert token_bootstrap.pooled_pearson(m, np.ones((1, 6)))[0] == pytest.approx(correlate.correlation(a, b))
    w = np.array([[2, 0, 1, 1, 0, 3]])                          # row i counted w_i times
    rows = np.repeat(np.arange(6), w[0])
    assert token_bootstrap.pooled_pearson(m, w)[0] == pytest.approx(correlate.correlation(a[rows], b[rows]))
    assert np.isnan(token_bootstrap.pooled_pearson(token_bootstrap.row_moments(a, np.ones_like(b)), np.ones((1, 6)))[0])
    with pytest.raises(ValueError, match="equally shaped"):
        token_bootstrap.row_moments(a, b[:, :-1])


def test_noise_moments_with_unit_weights_give_the_reference_noise():
    run = _Design(_reads_input, 7, n=480, frames=60, tokens=4)
    noise = map_noise.reference_noise(run.resample, run.design, reducer="max2d", normalization="token_z", n_splits=4, n_null=4, seed=3)
    mom = token_bootstrap.noise_moments(run.resample, run.design, reducer="max2d", normalization="token_z", n_splits=4, n_null=4, seed=3)
    ones = np.ones((1, 4))
    np.testing.assert_allclose(token_bootstrap.pooled_pearson(mom.splits, ones)[:, 0], noise.r_half_splits, atol=1e-9)
    np.testing.assert_allclose(token_bootstrap.pooled_pearson(mom.nulls, ones)[:, 0], noise.r_half_null, atol=1e-9)
    assert mom.reliability(ones)[0] == pytest.approx(noise.reliability)


def _noisy_pair(rng, agreement, tokens=40, t_enc=150, s2=1.0):
    """Two noisy maps whose noise-free versions correlate at ``agreement``, each with its halves,
    and pure-noise halves and maps for the nulls: the inputs of the token bootstrap."""
    z = rng.normal(size=(tokens, t_enc))
    truths = (z, agreement * z + np.sqrt(1 - agreement ** 2) * rng.normal(size=z.shape))
    out = []
    for t in truths:
        ha, hb = (t + np.sqrt(s2) * rng.normal(size=t.shape) for _ in range(2))
        na, nb = (np.sqrt(s2) * rng.normal(size=t.shape) for _ in range(2))
        norm = lambda x: correlate.normalize(x, "token_z")  # noqa: E731
        out.append((norm((ha + hb) / 2), token_bootstrap.NoiseMoments(token_bootstrap.row_moments(norm(ha), norm(hb))[None],
                                                           token_bootstrap.row_moments(norm(na), norm(nb))[None]),
                    [norm(rng.normal(size=t.shape)) for _ in range(3)]))
    return out


@pytest.mark.parametrize("agreement", [1.0, 0.7])
def test_token_bootstrap_recovers_the_agreement_of_two_noisy_maps(agreement):
    """Both maps noisy (reliability 2/3 each): raw rho is 2/3 of the agreement; corrected for both
    reliabilities on the same resampled tokens, the interval of 3 utterances holds the truth."""
    rng = np.random.default_rng(int(agreement * 10))
    utts = [_noisy_pair(rng, agreement) for _ in range(3)]
    pair = [token_bootstrap.row_moments(a[0], b[0]) for a, b in utts]
    nulls = [np.stack([token_bootstrap.row_moments(a[0], m) for m in b[2]]) for a, b in utts]
    est = token_bootstrap.token_bootstrap_disattenuated(pair, nulls, [b[1] for _, b in utts], [a[1] for a, _ in utts],
                                            n_bootstrap=300, seed=1)
    assert est.lo <= agreement <= est.hi and est.lo < est.value < est.hi, est
    assert est.hi - est.lo < 0.25
    raw = token_bootstrap.token_bootstrap_disattenuated(pair, nulls, [b[1] for _, b in utts], n_bootstrap=300, seed=1, raw=True)
    assert raw.hi < agreement * 0.8                                   # attenuated by sqrt(2/3 * 2/3)
    # unit weights are the set-level formula of the rest of the compendium
    rc = [reliability.chance_corrected(correlate.correlation(a[0], b[0]), np.mean([correlate.correlation(a[0], m) for m in b[2]]))
          for a, b in utts]
    ra = np.mean([a[1].reliability(np.ones((1, 40)))[0] for a, _ in utts])
    rb = np.mean([b[1].reliability(np.ones((1, 40)))[0] for _, b in utts])
    assert est.value == pytest.approx(np.tanh(np.mean(np.arctanh(rc))) / np.sqrt(ra * rb))
    # the same weights give paired replicates: a ratio of two comparisons has its own interval
    w = token_bootstrap.token_weights([40] * 3, 50, seed=2)
    r1 = token_bootstrap.token_bootstrap_replicates(pair, nulls, [b[1] for _, b in utts], w, [a[1] for a, _ in utts])
    np.testing.assert_allclose(r1 / r1, 1.0)
    assert r1[0] == pytest.approx(est.value) and r1.shape == (51,)
    with pytest.raises(ValueError, match="weights for 40 tokens, maps of 39"):
        token_bootstrap.token_bootstrap_replicates([p[:-1] for p in pair], [n[:, :-1] for n in nulls],
                                       [b[1] for _, b in utts], w)


# -- full-budget reliability by a bootstrap over perturbations (no Spearman-Brown) -----------------

def _max_pooled_truth(rng, tokens=4, frames=48, mel=2, frac=0.5):
    """A truth map, ``tokens x frames x mel``: a flat background of tied zeros with a peak of random
    height in half of the 2-frame windows (where max pooling's nonlinearity bites: a max over a
    tied background is biased up by the noise, more so the fewer the perturbations)."""
    truth = np.zeros((tokens, frames, mel))
    for i in range(tokens):
        for j in np.flatnonzero(rng.random(frames // 2) < frac):
            truth[i, 2 * j + rng.integers(2), rng.integers(mel)] = rng.uniform(0.5, 1.5)
    return truth


def _balanced_split(levels, rng):
    out = np.empty(levels.size, dtype=np.int8)
    for lv in np.unique(levels):
        idx = np.flatnonzero(levels == lv)
        out[idx] = rng.permutation(np.arange(idx.size) % 2)
    return out


def _weighted_mean(y, w):
    """The map of per-perturbation maps ``y`` with perturbation ``k`` counted ``w[k]`` times."""
    w = np.ones(y.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    return np.tensordot(w, y, 1) / w.sum()


def test_bootstrap_reliability_of_a_max_pooled_map_beats_spearman_brown():
    # a map = mean over N perturbations of per-perturbation scores truth + noise (iid, sd 4); the
    # truth of its full-budget reliability is simulated: the correlation of two independent
    # full-budget maps after the same reducer (max2d) and normalization, averaged over draws. The
    # estimators are averaged over 24 observed maps (one map's estimate scatters by about 0.07)
    rng = np.random.default_rng(7)
    n, sd = 100, 4.0
    truth = _max_pooled_truth(rng)

    def draw():
        return truth[None] + sd * rng.standard_normal((n,) + truth.shape)

    def prep(m):
        return reliability.prepared(m, "max2d", "token_z")

    true_rel = np.mean([correlate.correlation(prep(draw().mean(0)), prep(draw().mean(0))) for _ in range(300)])
    levels = np.arange(n) % 2
    boot, plain, sb = [], [], []
    for d in range(24):
        y = draw()
        splits = [_balanced_split(levels, np.random.default_rng([d, j])) for j in range(4)]
        res = map_noise.bootstrap_reliability(lambda w: _weighted_mean(y, w), levels, 40, seed=d,
                                                normalization="token_z", reducer="max2d", halves=splits[:2])
        boot.append(res.reliability)
        plain.append(res.uncalibrated)
        r_half = np.mean([reliability.split_half_reliability(y[h == 0].mean(0), y[h == 1].mean(0), "max2d", "token_z")
                          for h in splits])
        sb.append(reliability.spearman_brown(r_half, 2.0))
    print(f"truth {true_rel:.3f}  bootstrap {np.mean(boot):.3f} (plain {np.mean(plain):.3f})  "
          f"Spearman-Brown {np.mean(sb):.3f}")
    assert abs(np.mean(boot) - true_rel) < 0.03
    assert abs(np.mean(sb) - true_rel) > 0.03  # the step-up misses the max's nonlinearity: why the bootstrap exists


def test_bootstrap_reliability_on_a_linear_map_is_the_closed_form():
    # no reducer: map = truth + mean noise of variance s2 / n per cell -> reliability 1 / (1 + s2 / n) (unit truth variance)
    rng = np.random.default_rng(3)
    n, s2 = 200, 100.0
    truth = rng.normal(size=(4, 400))
    y = truth[None] + np.sqrt(s2) * rng.standard_normal((n,) + truth.shape)
    levels = np.arange(n) % 2
    res = map_noise.bootstrap_reliability(lambda w: _weighted_mean(y, w), levels, 60, seed=0, normalization="token_z",
                                            halves=[_balanced_split(levels, np.random.default_rng(1))])
    assert abs(res.reliability - 1 / (1 + s2 / n)) < 0.05
    assert res.per_token.shape == (4,) and np.allclose(res.total_variance, 1.0)
    assert res.reliability == pytest.approx(np.mean(res.per_token))  # token_z: the plain mean of the tokens


def test_bootstrap_weights_keep_every_level_budget():
    levels = np.array([0, 1, 2] * 7 + [0])
    w = map_noise.bootstrap_weights(levels, 50, seed=1)
    assert w.shape == (50, levels.size) and w.min() >= 0
    for lv in range(3):
        assert np.all(w[:, levels == lv].sum(1) == np.sum(levels == lv))
    assert np.array_equal(w, map_noise.bootstrap_weights(levels, 50, seed=1))
    with pytest.raises(ValueError):
        map_noise.bootstrap_weights(levels, 1, seed=1)


def test_half_equivalent_inverts_spearman_brown():
    r = np.array([0.0, 0.3, 0.77, 0.999])
    assert np.allclose(reliability.spearman_brown(map_noise.half_equivalent(r), 2.0), r)


@pytest.fixture(scope="module")
def signal_run():
    return _Design(_reads_input, 5, n=480, frames=60, tokens=4)


def test_weighted_full_map_rebuilds_the_design_maps(signal_run):
    from crossattn_saliency.run.noise import weighted_full_map

    d = signal_run.design
    weighted = weighted_full_map(d)
    full, a, _ = d.cell_maps()
    assert np.allclose(weighted(), full, atol=1e-6)
    assert np.allclose(weighted(np.full(d.n_perturbations, 3)), full, atol=1e-6)
    assert np.allclose(weighted((d.halves == 0).astype(int)), a, atol=1e-6)
    sc = d.permuted_scores(2)
    assert np.allclose(weighted(scores=sc), d.cell_maps(scores=sc)[0], atol=1e-6)


def test_reference_noise_by_bootstrap_feeds_every_consumer_the_bootstrap_value(signal_run):
    from crossattn_saliency.run.noise import weighted_full_map

    r = signal_run
    kw = dict(reducer="max2d", normalization="token_z", n_splits=4, n_null=3, seed=0)
    sb = map_noise.reference_noise(r.resample, r.design, **kw)
    bs = map_noise.reference_noise(r.resample, r.design, **kw, method="bootstrap",
                                     weighted=weighted_full_map(r.design), n_bootstrap=30)
    assert sb.method == "spearman-brown" and bs.method == "bootstrap"
    expected = float(reliability.clip_half(reliability.chance_corrected(
        reliability.clip_half(bs.r_full), np.mean(reliability.clip_half(bs.r_full_null)))))
    assert bs.reliability == pytest.approx(expected)
    assert reliability.corrected_reliability(bs.r_half_splits, bs.r_half_null)[0] == pytest.approx(expected)
    assert np.array_equal(bs.split_half, sb.r_half_splits) and len(bs.null_maps) == len(sb.null_maps)
    assert all(np.array_equal(x, y) for x, y in zip(bs.null_maps, sb.null_maps))
    assert bs.reliability > 0.6 and np.mean(bs.r_full_null) < bs.r_full
    with pytest.raises(ValueError):
        map_noise.reference_noise(r.resample, r.design, **kw, method="bootstrap")
    with pytest.raises(ValueError):
        map_noise.reference_noise(r.resample, r.design, **kw, method="split-thirds")


def test_reference_noise_by_bootstrap_on_a_forward_that_ignores_its_input_is_not_reliable(null_runs):
    from crossattn_saliency.run.noise import weighted_full_map

    vals = [map_noise.reference_noise(r.resample, r.design, reducer="max2d", normalization="token_z", n_splits=2,
                                        n_null=3, seed=i, method="bootstrap", weighted=weighted_full_map(r.design),
                                        n_bootstrap=20).reliability for i, r in enumerate(null_runs[:4])]
    assert np.all(np.asarray(vals) >= 0) and np.mean(vals) < 0.3, vals


def test_bootstrap_reliability_of_a_spes_like_map_matches_two_independent_runs():
    # SPES's structure, which iid noise per cell (the tests above) lacks: every perturbation occludes about
    # half of the segments and its score is one number per token, so each cell is a mean over an
    # overlapping half of the same perturbations and the cells share one common noise shift. The
    # correlation centres every map, so that shift is not error: a bootstrap that counted it (replicates
    # kept on the full map's mean) put real maps' reliability about 2x too far below 1
    rng = np.random.default_rng(11)
    tokens, segs, n, sd = 3, 60, 400, 3.0
    importance = rng.normal(size=(tokens, segs))

    def run(r):
        masks = r.random((n, segs)) < 0.5
        scores = masks.astype(float) @ importance.T + sd * r.standard_normal((n, tokens))
        return masks, scores

    def cell_map(masks, scores, w=None):
        w = np.ones(n) if w is None else np.asarray(w, dtype=float)
        m = masks.astype(float) * w[:, None]
        return (scores.T @ m) / np.maximum(m.sum(0), 1)

    def prep(x):
        return reliability.prepared(x, None, "token_z")

    truth = np.mean([correlate.correlation(prep(cell_map(*run(rng))), prep(cell_map(*run(rng)))) for _ in range(200)])
    levels = np.zeros(n, dtype=int)
    boot = []
    for d in range(12):
        masks, scores = run(np.random.default_rng([5, d]))
        res = map_noise.bootstrap_reliability(lambda w, m=masks, s=scores: cell_map(m, s, w), levels, 60, seed=d,
                                                normalization="token_z")
        boot.append(res.reliability)
    print(f"truth {truth:.3f}  bootstrap {np.mean(boot):.3f}")
    assert 0.2 < truth < 0.9
    assert abs(np.mean(boot) - truth) < 0.05
