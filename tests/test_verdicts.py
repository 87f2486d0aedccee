"""Set-level estimates with honest intervals and four-outcome verdicts (verdicts.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from crossattn_saliency.evaluate import stats, verdicts
from crossattn_saliency.evaluate.stats import Estimate

NAN = float("nan")


def _width(est: Estimate) -> float:
    return est.hi - est.lo


# --------------------------------------------------------------------------- fisher_mean


def test_fisher_mean_matches_hand_computation_and_ignores_nan():
    r = np.array([0.1, 0.5, 0.8, NAN, -0.2])
    finite = r[np.isfinite(r)]
    assert stats.fisher_mean(r) == pytest.approx(np.tanh(np.mean(np.arctanh(finite))))
    assert math.isnan(stats.fisher_mean([NAN, np.inf]))
    assert math.isnan(stats.fisher_mean([]))


def test_fisher_mean_handles_perfect_correlations():
    for r in ([1.0, 0.5], [-1.0, -0.5], [1.0, -1.0], [1.0, 1.0]):
        m = stats.fisher_mean(r)
        assert math.isfinite(m) and -1.0 <= m <= 1.0
    assert stats.fisher_mean([1.0, -1.0]) == pytest.approx(0.0, abs=1e-9)
    assert stats.fisher_mean([1.0, 1.0]) == pytest.approx(1.0, abs=1e-6)


def test_fisher_mean_differs_from_plain_mean_for_skewed_values():
    r = [0.95, 0.1, 0.1, 0.1]
    assert stats.fisher_mean(r) > np.mean(r) + 0.05


# --------------------------------------------------------------------------- set_estimate


def test_set_estimate_is_seeded_and_matches_compare_bootstrap():
    v = np.random.default_rng(3).normal(0.3, 0.2, size=20)
    e1 = stats.set_estimate(v, average="mean", seed=5)
    e2 = stats.set_estimate(v, average="mean", seed=5)
    e3 = stats.set_estimate(v, average="mean", seed=6)
    assert (e1.lo, e1.hi) == (e2.lo, e2.hi)
    assert (e1.lo, e1.hi) != (e3.lo, e3.hi)
    # same conventions as stats.bootstrap_ci (same seed -> same resamples)
    est, lo, hi = stats.bootstrap_ci(v, seed=5)
    assert np.allclose([e1.value, e1.lo, e1.hi], [est, lo, hi])
    assert e1.n == 20 and e1.lo < e1.value < e1.hi


def test_set_estimate_fisher_value_and_interval():
    r = np.tanh(np.random.default_rng(1).normal(0.4, 0.3, size=15))
    r[[2, 9]] = NAN
    e = stats.set_estimate(r)
    assert e.n == 13 and e.method == "Fisher z mean over utterances"
    assert e.value == pytest.approx(stats.fisher_mean(r))
    assert e.has_interval and -1 <= e.lo < e.value < e.hi <= 1


@pytest.mark.parametrize("n", [2, 7])
def test_set_estimate_gives_no_interval_below_eight(n):
    v = np.linspace(0.1, 0.5, n)
    e = stats.set_estimate(v)
    assert e.n == n and not e.has_interval
    assert math.isnan(e.lo) and math.isnan(e.hi)
    assert e.value == pytest.approx(stats.fisher_mean(v))


def test_set_estimate_gives_interval_at_eight_and_counts_finite_only():
    v = np.linspace(0.1, 0.5, 8)
    assert stats.set_estimate(v).has_interval
    # 8 values but one NaN: 7 finite -> no interval
    v2 = v.copy()
    v2[0] = NAN
    e = stats.set_estimate(v2)
    assert e.n == 7 and not e.has_interval
    empty = stats.set_estimate([NAN, NAN])
    assert empty.n == 0 and math.isnan(empty.value) and not empty.has_interval
    assert stats.MIN_UTTERANCES == 8


def test_set_estimate_coverage_is_roughly_nominal():
    rng = np.random.default_rng(11)
    mu, hits, sims = 0.25, 0, 200
    for i in range(sims):
        v = rng.normal(mu, 1.0, size=30)
        e = stats.set_estimate(v, average="mean", n_bootstrap=1000, seed=i)
        hits += e.lo <= mu <= e.hi
    assert 0.88 <= hits / sims <= 0.99


def test_set_estimate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="average"):
        stats.set_estimate([0.1] * 10, average="median")
    with pytest.raises(ValueError, match="alpha"):
        stats.set_estimate([0.1] * 10, alpha=1.5)
    with pytest.raises(ValueError, match="min_utterances"):
        stats.set_estimate([0.1] * 10, min_utterances=1)


# --------------------------------------------------------------------------- paired_estimate


def _correlated_pair(n=40, seed=2):
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 0.5, size=n)  # shared across a and b: varies a lot
    a = np.tanh(base + 0.15 + rng.normal(0, 0.05, size=n))
    b = np.tanh(base + rng.normal(0, 0.05, size=n))
    return a, b


@pytest.mark.parametrize("average", ["fisher", "mean"])
def test_paired_estimate_is_narrower_than_unpaired(average):
    a, b = _correlated_pair()
    paired = stats.paired_estimate(a, b, average=average, seed=0)
    assert paired.has_interval and paired.lo > 0
    # unpaired: resample a and b independently
    n, nb = a.size, 1000
    ia = stats.bootstrap_indices(n, nb, 1)
    ib = stats.bootstrap_indices(n, nb, 2)
    if average == "fisher":
        za, zb = np.arctanh(a), np.arctanh(b)
        boot = np.tanh(za[ia].mean(1)) - np.tanh(zb[ib].mean(1))
        assert paired.value == pytest.approx(stats.fisher_mean(a) - stats.fisher_mean(b))
    else:
        boot = a[ia].mean(1) - b[ib].mean(1)
        assert paired.value == pytest.approx(np.mean(a - b))
    lo, hi = np.quantile(boot, [0.025, 0.975])
    assert _width(paired) < 0.5 * (hi - lo)


def test_paired_estimate_mean_matches_compare_paired_bootstrap():
    a, b = _correlated_pair()
    e = stats.paired_estimate(a, b, average="mean", seed=4)
    assert np.allclose([e.value, e.lo, e.hi], stats.paired_bootstrap_ci(a, b, seed=4))


def test_paired_estimate_drops_incomplete_pairs_and_checks_lengths():
    a, b = _correlated_pair(n=10)
    a2, b2 = a.copy(), b.copy()
    a2[1], b2[5], b2[7] = NAN, NAN, np.inf
    e = stats.paired_estimate(a2, b2, average="mean")
    keep = np.ones(10, bool)
    keep[[1, 5, 7]] = False
    assert e.n == 7 and not e.has_interval  # 7 complete pairs: below 8
    assert e.value == pytest.approx(np.mean(a[keep] - b[keep]))
    ef = stats.paired_estimate(a2, b2, average="fisher")
    assert ef.value == pytest.approx(stats.fisher_mean(a[keep]) - stats.fisher_mean(b[keep]))
    assert stats.paired_estimate(a, b).has_interval  # all 10 pairs
    with pytest.raises(ValueError, match="same number"):
        stats.paired_estimate(a, b[:-1])


# --------------------------------------------------------------------------- hierarchical_estimate


def _nested(n_utt=20, tokens=3, within_sd=3.0, between_sd=0.2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(rng.normal(0.5, between_sd), within_sd, size=tokens) for _ in range(n_utt)]


def test_hierarchical_estimate_value_and_width():
    groups = _nested()
    h = stats.hierarchical_estimate(groups, seed=0)
    means = np.array([g.mean() for g in groups])
    flat = stats.set_estimate(means, average="mean", seed=0)
    assert h.n == 20 and h.value == pytest.approx(means.mean()) == pytest.approx(flat.value)
    assert h.has_interval and h.lo < h.value < h.hi
    # large within-utterance spread with 3 tokens each: the second level adds the token
    # resampling variance s^2 (1 - 1/m) / m per utterance (expected width ratio ~1.3)
    assert _width(h) > 1.1 * _width(flat)


def test_hierarchical_estimate_with_constant_tokens_matches_flat_bootstrap():
    # no within-utterance spread: the second level changes nothing
    groups = [np.full(4, v) for v in np.linspace(0, 1, 12)]
    h = stats.hierarchical_estimate(groups, seed=3)
    flat = stats.set_estimate([g[0] for g in groups], average="mean", seed=3)
    assert np.allclose([h.value, h.lo, h.hi], [flat.value, flat.lo, flat.hi])


def test_hierarchical_estimate_is_seeded_and_chunking_is_invisible(monkeypatch):
    groups = _nested(n_utt=10, tokens=5)
    e1 = stats.hierarchical_estimate(groups, seed=7, n_bootstrap=200)
    e2 = stats.hierarchical_estimate(groups, seed=7, n_bootstrap=200)
    e3 = stats.hierarchical_estimate(groups, seed=8, n_bootstrap=200)
    assert (e1.lo, e1.hi) == (e2.lo, e2.hi) != (e3.lo, e3.hi)
    # tiny chunks draw the same random numbers in the same order
    monkeypatch.setattr(stats, "_CHUNK_DRAWS", 7)
    e4 = stats.hierarchical_estimate(groups, seed=7, n_bootstrap=200)
    assert np.allclose([e4.lo, e4.hi], [e1.lo, e1.hi])


def test_hierarchical_estimate_min_utterances_and_cleaning():
    groups = _nested(n_utt=8, tokens=4)
    assert stats.hierarchical_estimate(groups).has_interval
    e7 = stats.hierarchical_estimate(groups[:7])
    assert e7.n == 7 and not e7.has_interval
    # an utterance left empty after dropping NaN does not count
    ragged = [np.append(g, NAN) for g in groups[:7]] + [np.array([NAN, NAN])]
    e = stats.hierarchical_estimate(ragged)
    assert e.n == 7 and not e.has_interval
    assert e.value == pytest.approx(np.mean([g.mean() for g in groups[:7]]))
    assert stats.hierarchical_estimate([]).n == 0


# --------------------------------------------------------------------------- verdicts


def _est(value, lo, hi, n=20):
    return Estimate(value, lo, hi, n, "mean over utterances")


MARGIN = 0.05  # as the profiles' equivalence_margin (checked below); widens (0.2, 0.4) to [0.15, 0.45]


def test_the_margin_comes_from_the_profile():
    from crossattn_saliency.core import config

    assert config.Profile.__dataclass_fields__["equivalence_margin"].default == MARGIN
    assert config.get_profile("smoke").equivalence_margin == MARGIN
    # no default margin in the verdict functions: the profile is the only source
    import inspect
    assert inspect.signature(verdicts.judge).parameters["margin"].default is None


def test_judge_covers_all_six_outcomes():
    study = (0.2, 0.4)
    m = dict(margin=MARGIN)
    assert verdicts.judge(_est(0.3, 0.25, 0.35), study, **m) == verdicts.HOLDS
    assert verdicts.judge(_est(0.3, 0.16, 0.44), study, **m) == verdicts.HOLDS  # inside the widened range
    # changed (issue 23): an interval that covers the range, or only touches it, is no longer "holds"
    assert verdicts.judge(_est(0.3, 0.1, 0.5), study, **m) == verdicts.UNDECIDED  # interval contains the range
    assert verdicts.judge(_est(0.08, 0.05, 0.12), study, **m) == verdicts.SMALLER
    assert verdicts.judge(_est(0.6, 0.5, 0.7), study, **m) == verdicts.LARGER
    assert verdicts.judge(_est(-0.2, -0.3, -0.1), study, **m) == verdicts.FAILS
    assert verdicts.judge(_est(0.05, -0.05, 0.15), study, **m) == verdicts.UNDECIDED
    assert verdicts.judge(_est(0.3, NAN, NAN, n=5), study, **m) == verdicts.UNTESTABLE
    assert verdicts.judge(_est(NAN, NAN, NAN, n=0)) == verdicts.UNTESTABLE
    assert set(verdicts.OUTCOMES) == {verdicts.HOLDS, verdicts.SMALLER, verdicts.LARGER, verdicts.FAILS, verdicts.UNDECIDED, verdicts.UNTESTABLE}


def test_judge_equivalence_rule_needs_the_whole_interval_inside_the_widened_range():
    study, m = (0.2, 0.4), dict(margin=MARGIN)
    # touches the study's range (and even the widened one) but reaches beyond it: not "holds"
    assert verdicts.judge(_est(0.42, 0.35, 0.50), study, **m) == verdicts.UNDECIDED
    assert verdicts.judge(_est(0.15, 0.10, 0.22), study, **m) == verdicts.UNDECIDED
    assert verdicts.judge(_est(0.40, 0.38, 0.46), study, **m) == verdicts.UNDECIDED  # 0.46 > 0.45
    # wholly inside the widened range, though partly outside the study's own: holds
    assert verdicts.judge(_est(0.42, 0.38, 0.45), study, **m) == verdicts.HOLDS
    # wholly below / above the widened range: smaller / larger; touching its edge: undecided
    assert verdicts.judge(_est(0.1, 0.05, 0.149), study, **m) == verdicts.SMALLER
    assert verdicts.judge(_est(0.1, 0.05, 0.15), study, **m) == verdicts.UNDECIDED
    assert verdicts.judge(_est(0.5, 0.451, 0.6), study, **m) == verdicts.LARGER
    # the direction first: inside the widened range but across the threshold decides nothing
    assert verdicts.judge(_est(0.03, -0.01, 0.08), (0.03, 0.18), **m) == verdicts.UNDECIDED
    assert verdicts.judge(_est(-0.05, -0.08, -0.03), (0.03, 0.18), **m) == verdicts.FAILS
    # margin 0: the study's own range, ends included
    assert verdicts.judge(_est(0.3, 0.2, 0.4), study, margin=0.0) == verdicts.HOLDS
    assert verdicts.judge(_est(0.3, 0.19, 0.4), study, margin=0.0) == verdicts.UNDECIDED
    with pytest.raises(ValueError, match="margin"):
        verdicts.judge(_est(0.3, 0.25, 0.35), study)  # a study range needs the profile's margin
    with pytest.raises(ValueError, match="margin"):
        verdicts.judge(_est(0.3, 0.25, 0.35), study, margin=-0.1)


def test_judge_without_study_and_at_the_threshold_edges():
    assert verdicts.judge(_est(0.1, 0.01, 0.2)) == verdicts.HOLDS
    assert verdicts.judge(_est(5.0, 4.0, 6.0)) == verdicts.HOLDS  # no study: no size claim
    assert verdicts.judge(_est(0.1, 0.0, 0.2)) == verdicts.UNDECIDED  # touching the threshold is not enough
    assert verdicts.judge(_est(-0.1, -0.2, 0.0)) == verdicts.UNDECIDED  # nor is touching it from below a failure
    assert verdicts.judge(_est(0.6, 0.55, 0.65), threshold=0.5) == verdicts.HOLDS
    assert verdicts.judge(_est(0.4, 0.35, 0.45), threshold=0.5) == verdicts.FAILS
    assert verdicts.judge(_est(0.3, 0.25, 0.35), study=(0.4, 0.2), margin=MARGIN) == verdicts.HOLDS  # ends in any order


def test_judge_direction_minus_one():
    study = (-0.4, -0.2)  # claimed below 0, study measured -0.4 .. -0.2; widened: -0.45 .. -0.15
    m = dict(margin=MARGIN)
    assert verdicts.judge(_est(-0.3, -0.35, -0.25), study, direction=-1, **m) == verdicts.HOLDS
    assert verdicts.judge(_est(-0.08, -0.12, -0.04), study, direction=-1, **m) == verdicts.LARGER  # signed: closer to 0
    assert verdicts.judge(_est(-0.1, -0.15, -0.05), study, direction=-1, **m) == verdicts.UNDECIDED  # touches -0.15
    assert verdicts.judge(_est(-0.6, -0.7, -0.5), study, direction=-1, **m) == verdicts.SMALLER
    assert verdicts.judge(_est(0.2, 0.1, 0.3), study, direction=-1, **m) == verdicts.FAILS
    assert verdicts.judge(_est(0.0, -0.1, 0.1), study, direction=-1, **m) == verdicts.UNDECIDED
    assert verdicts.judge(_est(-0.1, -0.2, -0.05), direction=-1) == verdicts.HOLDS
    assert verdicts.judge(_est(-0.1, NAN, NAN, n=3), direction=-1) == verdicts.UNTESTABLE
    with pytest.raises(ValueError, match="direction"):
        verdicts.judge(_est(0.1, 0.05, 0.15), direction=0)


# --------------------------------------------------------------------------- multiplicity


def test_interval_p_is_below_alpha_exactly_where_the_interval_excludes_the_edge():
    rng = np.random.default_rng(0)
    for _ in range(300):
        v = rng.normal()
        lo, hi = v - rng.uniform(0.01, 1), v + rng.uniform(0.01, 1)  # skewed intervals too
        edge = rng.normal()
        p = verdicts.interval_p(_est(v, lo, hi), edge)
        assert 0.0 <= p <= 1.0
        assert (p < verdicts.ALPHA) == (edge < lo or edge > hi)
    assert verdicts.interval_p(_est(0.3, 0.2, 0.5), 0.2) == pytest.approx(0.05)   # at the interval's end
    assert verdicts.interval_p(_est(0.3, 0.2, 0.5), 0.5) == pytest.approx(0.05)
    assert verdicts.interval_p(_est(0.3, 0.2, 0.4), 0.3) == 1.0
    assert math.isnan(verdicts.interval_p(_est(0.3, NAN, NAN, n=3), 0.0))


def test_interval_p_agrees_with_the_bootstrap_replicates_p():
    # two-sided bootstrap p = 2 min(share <= edge, share >= edge), from the same resamples as the interval
    v = np.random.default_rng(4).normal(0.1, 0.3, size=40)
    e = stats.set_estimate(v, average="mean", n_bootstrap=4000, seed=1)
    boot = v[stats.bootstrap_indices(v.size, 4000, 1)].mean(axis=1)
    for edge in (0.0, 0.02, 0.2, 0.25):
        p_boot = min(1.0, 2 * min(np.mean(boot <= edge), np.mean(boot >= edge)))
        assert verdicts.interval_p(e, edge) == pytest.approx(p_boot, abs=0.02)


def test_holm_on_known_p_values():
    # by hand: sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> running max 0.06
    assert np.allclose(verdicts.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(verdicts.holm([0.5, 0.6]), [1.0, 1.0])             # capped at 1
    out = verdicts.holm([NAN, 0.01, 0.02])                                 # NaN: not a test, not counted
    assert math.isnan(out[0]) and np.allclose(out[1:], [0.02, 0.02])
    assert verdicts.holm([]).size == 0 and np.allclose(verdicts.holm([0.03]), [0.03])
    # against the definition by closed testing with Bonferroni: p~_i = max over sets S containing i of |S| min p_S
    rng = np.random.default_rng(2)
    from itertools import combinations
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=5)
        brute = [max(min(1.0, len(S) * min(p[list(S)])) for r in range(1, 6) for S in combinations(range(5), r)
                     if i in S) for i in range(5)]
        assert np.allclose(verdicts.holm(p), brute)
    # ties keep their order
    assert np.allclose(verdicts.holm([0.02, 0.02, 0.02]), [0.06, 0.06, 0.06])


def test_decision_p_values_follow_the_verdict():
    study, m = (0.2, 0.4), dict(margin=MARGIN)
    e = _est(0.3, 0.25, 0.35)
    o, p = verdicts.decision(e, study, **m)
    assert o == verdicts.judge(e, study, **m) == verdicts.HOLDS
    assert p == pytest.approx(max(verdicts.interval_p(e, x) for x in (0.0, 0.15, 0.45))) and p < verdicts.ALPHA
    o, p = verdicts.decision(_est(0.08, 0.05, 0.12), study, **m)
    assert o == verdicts.SMALLER and p == pytest.approx(verdicts.interval_p(_est(0.08, 0.05, 0.12), 0.15))
    assert verdicts.decision(_est(0.05, -0.05, 0.15), study, **m) == (verdicts.UNDECIDED, 1.0)
    o, p = verdicts.decision(_est(0.3, NAN, NAN, n=3), study, **m)
    assert o == verdicts.UNTESTABLE and math.isnan(p)
    o, p = verdicts.decision(_est(-0.2, -0.3, -0.1))
    assert o == verdicts.FAILS and p == pytest.approx(verdicts.interval_p(_est(-0.2, -0.3, -0.1), 0.0))
    up, maybe, down = _est(0.2, 0.1, 0.3), _est(0.05, -0.05, 0.15), _est(-0.2, -0.3, -0.1)
    assert verdicts.order_decision([up, up])[0] == verdicts.HOLDS
    assert verdicts.order_decision([up, maybe]) == (verdicts.UNDECIDED, 1.0)
    o, p = verdicts.order_decision([up, down])
    assert o == verdicts.FAILS and p == pytest.approx(2 * verdicts.interval_p(down, 0.0))


def test_heads_decision_counts_heads_after_holm():
    far, near, above, open_ = _est(0.3, 0.2, 0.4), _est(0.1, 0.01, 0.2), _est(-0.3, -0.4, -0.2), _est(0.0, -0.1, 0.1)
    assert verdicts.heads_decision([far, far, far, open_, open_]) == (verdicts.HOLDS, pytest.approx(
        np.sort(verdicts.holm([verdicts.interval_p(far, 0.0)] * 3 + [1.0, 1.0]))[2]), 3, 0)
    o, p, below, up = verdicts.heads_decision([far, far, above, above, above])
    assert (o, below, up) == (verdicts.FAILS, 2, 3) and p < verdicts.ALPHA
    assert verdicts.heads_decision([far, far, above, above, open_])[0] == verdicts.UNDECIDED
    # every interval wholly above 0 at its own level, but two only just: after Holm over the 3 heads one counts
    assert verdicts.interval_p(near, 0.0) < verdicts.ALPHA
    o, p, below, up = verdicts.heads_decision([far, near, _est(0.1, 0.002, 0.2)])
    assert (o, p, below) == (verdicts.UNDECIDED, 1.0, 1)
    o, p, _, _ = verdicts.heads_decision([far, _est(0.3, NAN, NAN, n=3)])
    assert o == verdicts.UNTESTABLE and math.isnan(p)
    assert verdicts.heads_decision([])[0] == verdicts.UNTESTABLE


def test_judge_order_covers_its_four_outcomes():
    up = _est(0.2, 0.1, 0.3)
    maybe = _est(0.05, -0.05, 0.15)
    down = _est(-0.2, -0.3, -0.1)
    small = _est(0.2, NAN, NAN, n=4)
    assert verdicts.judge_order([up, up]) == verdicts.HOLDS
    assert verdicts.judge_order([up, maybe]) == verdicts.UNDECIDED
    assert verdicts.judge_order([up, down]) == verdicts.FAILS
    assert verdicts.judge_order([maybe, down]) == verdicts.FAILS
    assert verdicts.judge_order([up, small]) == verdicts.UNTESTABLE
    assert verdicts.judge_order([down, small]) == verdicts.UNTESTABLE  # untestable wins: no verdict without intervals
    with pytest.raises(ValueError):
        verdicts.judge_order([])


def test_verdicts_from_real_estimates():
    a, b = _correlated_pair()
    gain = stats.paired_estimate(a, b)
    assert verdicts.judge(gain) == verdicts.HOLDS
    assert verdicts.judge(stats.paired_estimate(a[:4], b[:4])) == verdicts.UNTESTABLE
    assert verdicts.judge(stats.paired_estimate(b, a)) == verdicts.FAILS


# --------------------------------------------------------------------------- text


def test_estimate_text_both_forms():
    e = Estimate(0.41, 0.30, 0.52, 12, "Fisher z mean over utterances")
    assert e.has_interval
    assert e.text() == "0.41 [0.30, 0.52] (n=12)"
    assert e.text("+.2f") == "+0.41 [+0.30, +0.52] (n=12)"
    small = Estimate(0.41, NAN, NAN, 2, "Fisher z mean over utterances")
    assert not small.has_interval
    assert small.text() == "0.41 (n=2; no interval below 8 utterances)"
    assert Estimate(NAN, NAN, NAN, 0, "mean").text() == "n/a (n=0; no interval below 8 utterances)"
    assert stats.set_estimate([0.1, 0.2, 0.3], min_utterances=5).text() == \
        f"{stats.fisher_mean([0.1, 0.2, 0.3]):.2f} (n=3; no interval below 5 utterances)"
    d = e.as_dict()
    assert d["text"] == e.text() and d["n"] == 12


def test_estimate_is_frozen():
    e = Estimate(0.1, 0.0, 0.2, 9, "mean")
    with pytest.raises(Exception):
        e.value = 0.3  # type: ignore[misc]


# --------------------------------------------------------------------------- clips nested in speakers

def _two_speakers() -> tuple[np.ndarray, list[str]]:
    """Two speakers with very different means, 6 clips each, little spread within a speaker."""
    rng = np.random.default_rng(3)
    v = np.concatenate([0.2 + 0.02 * rng.standard_normal(6), 0.7 + 0.02 * rng.standard_normal(6)])
    return v, ["A"] * 6 + ["B"] * 6


@pytest.mark.parametrize("average", ["fisher", "mean"])
def test_cluster_bootstrap_wider_with_speakers_far_apart(average):
    v, spk = _two_speakers()
    flat = stats.set_estimate(v, average=average, n_bootstrap=2000, seed=1)
    nested = stats.set_estimate(v, average=average, n_bootstrap=2000, seed=1, groups=spk)
    assert nested.value == flat.value and nested.n == flat.n == 12
    assert _width(nested) > 1.5 * _width(flat)
    assert "resampling speakers, then clips (2 speakers)" in nested.method
    assert flat.method == stats._METHODS[average]  # without groups: today's text
    # paired: a shifted copy of the speaker effect in a only
    b = np.full(12, 0.1)
    pf = stats.paired_estimate(v, b, average=average, n_bootstrap=2000, seed=1)
    pn = stats.paired_estimate(v, b, average=average, n_bootstrap=2000, seed=1, groups=spk)
    assert pn.value == pf.value and _width(pn) > 1.5 * _width(pf)
    assert "resampling speakers, then clips" in pn.method


@pytest.mark.parametrize("average", ["fisher", "mean"])
def test_one_speaker_equals_flat_bootstrap(average):
    v, _ = _two_speakers()
    b = v[::-1] - 0.1
    for f in (lambda **k: stats.set_estimate(v, average=average, seed=4, **k),
              lambda **k: stats.paired_estimate(v, b, average=average, seed=4, **k)):
        flat, one = f(), f(groups=["tts voice"] * 12)
        assert (one.value, one.lo, one.hi, one.n) == (flat.value, flat.lo, flat.hi, flat.n)
        assert one.method.endswith("one speaker: clips resampled")


def test_cluster_bootstrap_seeded_and_drops_nonfinite_with_labels():
    v, spk = _two_speakers()
    v = v.copy()
    v[0] = NAN
    e1 = stats.set_estimate(v, average="mean", seed=7, groups=spk)
    e2 = stats.set_estimate(v, average="mean", seed=7, groups=spk)
    e3 = stats.set_estimate(v, average="mean", seed=8, groups=spk)
    assert e1 == e2 and e1.n == 11 and (e1.lo, e1.hi) != (e3.lo, e3.hi)
    w1 = stats.cluster_weights(spk, 50, 0)
    assert np.array_equal(w1, stats.cluster_weights(spk, 50, 0))
    assert w1.shape == (50, 12) and np.all(w1.sum(axis=1) > 0) and np.all(w1.sum(axis=1) % 6 == 0)
    with pytest.raises(ValueError, match="one label per value"):
        stats.set_estimate(v, groups=spk[:5])
    # below the minimum: no interval, grouped or not
    few = stats.set_estimate(v[:5], groups=spk[:5])
    assert not few.has_interval and few.n == 4
