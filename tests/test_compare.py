"""Reducers, normalization, correlations and bootstrap intervals (compare.py)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from crossattn_saliency.evaluate import correlate, grids, stats


def _sm(shape=(2, 5, 3), seed=0):
    return np.random.default_rng(seed).normal(size=shape)


# --------------------------------------------------------------------------- reducers


def test_reducers_match_hand_computation_with_incomplete_last_window():
    # one token, T=3 frames, F=2 mel bins; windows: frames {0,1} and {2}
    x = np.array([[[1.0, 5.0], [3.0, -1.0], [2.0, 4.0]]])
    assert np.allclose(grids.reduce_to_encoder_grid(x, "max2d"), [[5.0, 4.0]])
    assert np.allclose(grids.reduce_to_encoder_grid(x, "mean2d"), [[2.0, 3.0]])
    # max over mel: [5, 3, 4]; mean over time windows: [(5+3)/2, 4]
    assert np.allclose(grids.reduce_to_encoder_grid(x, "max_mel_mean_time"), [[4.0, 4.0]])


@pytest.mark.parametrize("method", sorted(grids.REDUCERS))
@pytest.mark.parametrize("t", [1, 6, 7])
def test_reducer_shapes_and_2d_input(method, t):
    x = _sm((3, t, 4))
    out = grids.reduce_to_encoder_grid(x, method)
    assert out.shape == (3, grids.encoder_length(t, 2)) == (3, -(-t // 2))
    # a 2-D map gives the same as the token slice of the 3-D one
    assert np.allclose(grids.reduce_to_encoder_grid(x[1], method), out[1])


def test_factor_one_max2d_is_max_over_mel():
    x = _sm((2, 5, 3))
    assert np.allclose(grids.reduce_to_encoder_grid(x, "max2d", factor=1), x.max(-1))


def test_reducer_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown reducer"):
        grids.reduce_to_encoder_grid(_sm(), "median")
    with pytest.raises(ValueError, match="tokens x frames x mel"):
        grids.reduce_to_encoder_grid(np.zeros(5), "max2d")


@pytest.mark.parametrize("method", sorted(grids.REDUCERS))
def test_expand_then_reduce_round_trips(method):
    m = _sm((3, 4))  # I x T'
    for n_frames in (7, 8):  # T' = 4 for both
        x = grids.expand_to_input_grid(m, n_frames, n_mel=5)
        assert x.shape == (3, n_frames, 5)
        assert np.allclose(grids.reduce_to_encoder_grid(x, method), m)


def test_expand_repeats_over_frames_and_mel():
    x = grids.expand_to_input_grid(np.array([1.0, 2.0]), n_frames=3, n_mel=2)
    assert np.array_equal(x, [[1, 1], [1, 1], [2, 2]])
    with pytest.raises(ValueError, match=r"ceil\(5/2\) = 3"):
        grids.expand_to_input_grid(np.zeros(2), n_frames=5, n_mel=2)


# --------------------------------------------------------------------------- normalization


def test_token_z_gives_zero_mean_unit_sample_std_per_token():
    x = _sm((3, 4, 5)) * np.array([1.0, 10.0, 0.1])[:, None, None] + 7
    z = correlate.normalize(x, "token_z")
    flat = z.reshape(3, -1)
    assert np.allclose(flat.mean(1), 0)
    assert np.allclose(flat.std(1, ddof=1), 1)


def test_constant_token_becomes_zeros_without_nan():
    x = _sm((2, 6))
    x[1] = 3.0
    z = correlate.normalize(x, "token_z")
    assert np.all(np.isfinite(z)) and np.all(z[1] == 0)
    assert np.all(correlate.normalize(np.full((2, 3), 4.0), "map_z") == 0)


def test_map_z_and_none():
    x = _sm((2, 6))
    z = correlate.normalize(x, "map_z")
    assert np.isclose(z.mean(), 0) and np.isclose(z.std(ddof=1), 1)
    assert np.array_equal(correlate.normalize(x, "none"), x)
    with pytest.raises(ValueError, match="unknown normalization"):
        correlate.normalize(x, "minmax")
    with pytest.raises(ValueError, match="NaN"):
        correlate.normalize(np.array([[1.0, np.nan]]), "token_z")


# --------------------------------------------------------------------------- correlation


def test_correlate_identical_and_token_scaled_maps_give_one():
    ca = [_sm((3, 8), seed=s) for s in range(4)]
    sal = [c * np.array([[2.0], [0.5], [9.0]]) + np.array([[1.0], [-3.0], [0.0]]) for c in ca]
    res = correlate.correlate(ca, sal, method="pearson", normalization="token_z", n_bootstrap=50)
    assert np.allclose(res.per_utterance, 1.0)
    assert np.isclose(res.mean, 1.0) and np.isclose(res.pooled, 1.0)
    assert res.n_utterances == 4 and res.method == "pearson" and res.normalization == "token_z"


def test_correlate_matches_scipy_on_normalized_maps():
    ca = [_sm((3, 8), seed=s) for s in range(3)]
    sal = [_sm((3, 8), seed=10 + s) + 0.5 * c for s, c in enumerate(ca)]
    res = correlate.correlate(ca, sal, method="pearson", normalization="map_z", n_bootstrap=50)
    for i in range(3):
        assert np.isclose(res.per_utterance[i], scipy_stats.pearsonr(ca[i].ravel(), sal[i].ravel())[0])
    za = np.concatenate([correlate.normalize(c, "map_z").ravel() for c in ca])
    zb = np.concatenate([correlate.normalize(s, "map_z").ravel() for s in sal])
    assert np.isclose(res.pooled, scipy_stats.pearsonr(za, zb)[0])
    assert res.ci_low <= res.mean <= res.ci_high


def test_spearman_is_invariant_to_monotone_transforms():
    ca = [_sm((2, 10), seed=s) for s in range(3)]
    sal = [np.exp(3 * c) for c in ca]
    assert np.allclose(correlate.correlate(ca, sal, method="spearman", normalization="none",
                                         n_bootstrap=10).per_utterance, 1.0)
    assert np.all(correlate.correlate(ca, sal, method="pearson", normalization="none", n_bootstrap=10).per_utterance < 0.99)


def test_correlate_shape_error_names_utterance_and_shapes():
    ca = [np.zeros((2, 4)), np.zeros((2, 5))]
    sal = [np.ones((2, 4)), np.ones((2, 6))]
    with pytest.raises(ValueError, match=r"utterance 1.*\(2, 5\).*\(2, 6\)"):
        correlate.correlate(ca, sal, method="pearson", normalization="token_z")
    with pytest.raises(ValueError, match="2 utterances.*1"):
        correlate.correlate(ca, sal[:1], method="pearson", normalization="token_z")


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_is_seeded_and_close_to_normal_theory():
    v = np.random.default_rng(1).normal(0.5, 0.2, size=200)
    a = stats.bootstrap_ci(v, n_bootstrap=2000, seed=3)
    b = stats.bootstrap_ci(v, n_bootstrap=2000, seed=3)
    assert a == b
    est, lo, hi = a
    assert np.isclose(est, v.mean()) and lo < est < hi
    half_width = 1.96 * v.std(ddof=1) / np.sqrt(v.size)
    assert np.isclose(hi - lo, 2 * half_width, rtol=0.15)


def test_bootstrap_drops_nan_and_handles_all_nan():
    est, lo, hi = stats.bootstrap_ci([1.0, np.nan, 3.0], n_bootstrap=100)
    assert est == 2.0 and 1.0 <= lo <= hi <= 3.0
    assert all(np.isnan(stats.bootstrap_ci([np.nan, np.nan])))


def test_paired_bootstrap_is_narrower_than_unpaired_for_correlated_values():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, size=40)
    a = base + 0.1 + rng.normal(0, 0.01, size=40)
    b = base
    est, lo, hi = stats.paired_bootstrap_ci(a, b, n_bootstrap=1000, seed=0)
    assert np.isclose(est, 0.1, atol=0.01) and lo > 0.05 and hi < 0.15
    _, lo_a, hi_a = stats.bootstrap_ci(a, n_bootstrap=1000, seed=0)
    assert hi - lo < (hi_a - lo_a) / 3
    with pytest.raises(ValueError, match="same number"):
        stats.paired_bootstrap_ci(a, b[:-1])


def test_percentile_interval_drops_non_finite_replicates_and_resampled_interval_uses_the_seeded_indices():
    boot = np.array([0.1, np.nan, 0.4, 0.2, np.inf, 0.3])
    assert stats.percentile_interval(boot, 0.5) == pytest.approx(tuple(np.quantile([0.1, 0.4, 0.2, 0.3], [0.25, 0.75])))
    assert all(np.isnan(stats.percentile_interval([np.nan, np.inf])))
    v = np.arange(10.0)
    want = np.quantile([v[row].mean() for row in stats.bootstrap_indices(10, 200, 3)], [0.025, 0.975])
    assert stats.resampled_interval(lambda row: v[row].mean(), 10, 200, 3) == pytest.approx(tuple(want))
