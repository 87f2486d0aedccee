"""Verdicts on the study's claims, from estimates and their intervals.

A claim of the study either "held" or "did not", with no room for "we cannot tell". The rules
here give every claim one of a few outcomes (:data:`OUTCOMES`), decided on a set-level
:class:`~.stats.Estimate` and its interval only.

Rules (:func:`judge`, :func:`judge_order`)
------------------------------------------
A claim says the quantity lies on one side of a threshold (``gain > 0``,
``correlation > 0``) and, optionally, that its size matches the study's reported range
``[a, b]``. Matching is an equivalence rule: the range is widened by a margin ``m``
(the profile's ``equivalence_margin``) to ``[a - m, b + m]`` and the WHOLE interval has to
lie inside it; an interval that merely touches the range proves nothing.

* no interval (too few utterances, or NaN)       -> :data:`UNTESTABLE`
* interval entirely on the wrong side            -> :data:`FAILS`
* interval touches or straddles the threshold    -> :data:`UNDECIDED`
* interval entirely on the claimed side, and
  - no study range, or the whole interval inside
    the widened range                            -> :data:`HOLDS`
  - the whole interval below the widened range   -> :data:`SMALLER`
  - the whole interval above the widened range   -> :data:`LARGER`
  - the interval straddles an edge of it         -> :data:`UNDECIDED`

A claim about single heads (:func:`heads_decision`: "single heads correlate weakly and
noisily") is decided on the heads one by one, not on an average of them: each head's paired
difference from the all-layers value has its interval, Holm runs over the heads, and the
claim holds when more than half of the heads are surely below the all-layers value, fails
when more than half are surely above it, and is undecided otherwise.

An ordering claim (``A < B < C``, given as the estimates of ``B - A`` and ``C - B``)
holds when every difference is surely above 0, fails when any is surely below 0,
and is undecided otherwise.

Multiplicity (:func:`decision`, :func:`order_decision`, :func:`interval_p`, :func:`holm`)
------------------------------------------------------------------------------------------
Every verdict above is a decision at the level of its interval (95%). A table of many
claims and conditions makes many of them, so each decision also gets a p-value read off
its own interval (:func:`interval_p`: the two-sided p at which the interval would just
reach the edge; below :data:`ALPHA` exactly when the 95% interval excludes it), the p of
a verdict that needs several edges excluded being the largest of theirs; :func:`holm`
adjusts a family of them (Holm's step-down), and a decision whose adjusted p is not below
:data:`ALPHA` is reported :data:`UNDECIDED` (``evaluate.claims``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as _sps

from .stats import Estimate

__all__ = ["HOLDS", "SMALLER", "LARGER", "FAILS", "UNDECIDED", "UNTESTABLE", "OUTCOMES", "DECIDED", "ALPHA",
           "judge", "judge_order", "decision", "order_decision", "heads_decision", "interval_p", "holm"]


HOLDS = "holds"


SMALLER = "holds, smaller than the study"


LARGER = "holds, larger than the study"


FAILS = "does not hold"


UNDECIDED = "undecided"


UNTESTABLE = "not testable at this size"


#: All verdict strings, in a fixed order.
OUTCOMES = (HOLDS, SMALLER, LARGER, FAILS, UNDECIDED, UNTESTABLE)


#: The verdicts that claim something (and can be wrong): what multiplicity control is about.
DECIDED = (HOLDS, SMALLER, LARGER, FAILS)


#: The level of every interval (95%, as in :mod:`.stats`) and the family-wise level of Holm.
ALPHA = 0.05


_Z = float(_sps.norm.ppf(1 - ALPHA / 2))  # 1.96: the half-width of a 95% interval in standard errors


def interval_p(est: Estimate, edge: float) -> float:
    """Two-sided p-value of ``value == edge``, read off the estimate's 95% interval.

    The interval's half-width on the side of ``edge`` (``value - lo`` below the value,
    ``hi - value`` above) is taken as 1.96 standard errors, and ``p = 2 (1 - Phi(|value -
    edge| / se))``. So ``p < ALPHA`` exactly when the interval excludes ``edge``
    (``edge < lo`` or ``edge > hi``), also for a skewed percentile interval; it needs no
    bootstrap replicates, so it serves rows whose interval was made elsewhere. NaN without
    an interval.
    """
    if not est.has_interval or not math.isfinite(est.value):
        return float("nan")
    d = float(est.value) - float(edge)
    half = (est.value - est.lo) if d > 0 else (est.hi - est.value)
    if d == 0:
        return 1.0
    if half <= 0:  # a degenerate interval on that side: the edge is outside it
        return 0.0
    return float(2 * _sps.norm.sf(abs(d) / (half / _Z)))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN and is not counted).

    With the ``K`` finite p-values sorted ``p_(1) <= ... <= p_(K)``, the adjusted
    ``p~_(j) = max_{i <= j} min(1, (K - i + 1) p_(i))``; rejecting where ``p~ < alpha``
    keeps the family-wise error rate at ``alpha`` under any dependence.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    k = ok.size
    if not k:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (k - np.arange(k)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def decision(est: Estimate, study: tuple[float, float] | None = None, threshold: float = 0.0,
             direction: int = +1, margin: float | None = None) -> tuple[str, float]:
    """:func:`judge`'s verdict and the p-value of that decision.

    The p (:func:`interval_p`) is that of the edges the verdict needs excluded, the largest
    of theirs: the threshold for :data:`FAILS` and for :data:`HOLDS` without a study range;
    the threshold and both widened ends for :data:`HOLDS`; the threshold and the lower
    (upper) widened end for :data:`SMALLER` (:data:`LARGER`). 1 for :data:`UNDECIDED`
    (nothing claimed), NaN for :data:`UNTESTABLE` (no decision made).
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    if study is not None and (margin is None or not math.isfinite(margin) or margin < 0):
        raise ValueError(f"a study range needs a margin >= 0 (the profile's equivalence_margin), got {margin!r}")
    if not est.has_interval or not math.isfinite(est.value):
        return UNTESTABLE, float("nan")
    lo, hi = est.lo, est.hi
    if direction == 1:
        wrong, right = hi < threshold, lo > threshold
    else:
        wrong, right = lo > threshold, hi < threshold
    p_t = interval_p(est, threshold)
    if wrong:
        return FAILS, p_t
    if not right:
        return UNDECIDED, 1.0
    if study is None:
        return HOLDS, p_t
    a, b = sorted((float(study[0]), float(study[1])))
    a, b = round(a - margin, 12), round(b + margin, 12)  # 0.2 - 0.05 is 0.15, not 0.15000000000000002
    if hi < a:
        return SMALLER, max(p_t, interval_p(est, a))
    if lo > b:
        return LARGER, max(p_t, interval_p(est, b))
    if lo >= a and hi <= b:
        return HOLDS, max(p_t, interval_p(est, a), interval_p(est, b))
    return UNDECIDED, 1.0


def judge(est: Estimate, study: tuple[float, float] | None = None, threshold: float = 0.0,
          direction: int = +1, margin: float | None = None) -> str:
    """Verdict on a claim about one quantity, from its estimate's interval.

    The claim: the quantity lies on the ``direction`` side of ``threshold``
    (``direction=+1``: above, e.g. gain > 0; ``-1``: below) and, if ``study`` is
    given, its size matches the study's range ``[a, b]`` up to ``margin``.

    Rules, with the interval ``[lo, hi]`` of ``est``:

    1. No interval (``lo`` or ``hi`` NaN: too few utterances) or a NaN value
       -> :data:`UNTESTABLE`.
    2. The interval lies strictly on the wrong side of the threshold
       (``direction=+1``: ``hi < threshold``; ``-1``: ``lo > threshold``)
       -> :data:`FAILS`.
    3. The interval lies strictly on the claimed side (``+1``: ``lo > threshold``;
       ``-1``: ``hi < threshold``) -> the direction holds, go to 4. Otherwise the
       interval contains the threshold (touching an end counts)
       -> :data:`UNDECIDED`.
    4. With no ``study`` -> :data:`HOLDS`. Else, with ``A = a - margin`` and
       ``B = b + margin``: the whole interval inside ``[A, B]`` (``A <= lo`` and
       ``hi <= B``) -> :data:`HOLDS`; wholly below (``hi < A``) -> :data:`SMALLER`;
       wholly above (``lo > B``) -> :data:`LARGER`; across ``A`` or ``B`` ->
       :data:`UNDECIDED`. "Smaller" and "larger" refer to the signed value, also for
       ``direction=-1``.

    Parameters
    ----------
    est : Estimate
        The set-level estimate (same scale as ``threshold`` and ``study``).
    study : (float, float) or None
        The study's reported range for the quantity (ends in any order; a point value
        ``v`` is ``(v, v)``).
    threshold : float
        The value the claim is about being above (or below).
    direction : {+1, -1}
        ``+1``: claimed above ``threshold``; ``-1``: claimed below.
    margin : float
        How far outside the study's range a value still matches it: the profile's
        ``equivalence_margin``. Required with ``study``.

    Returns
    -------
    str
        One of :data:`OUTCOMES`.
    """
    return decision(est, study, threshold, direction, margin)[0]


def order_decision(diffs: Sequence[Estimate]) -> tuple[str, float]:
    """:func:`judge_order`'s verdict and its p-value: for :data:`HOLDS` the largest p of
    the differences at 0 (all must exclude it); for :data:`FAILS` the smallest p of those
    wholly below 0, times the number of differences (Bonferroni over them); 1 for
    :data:`UNDECIDED`, NaN for :data:`UNTESTABLE`."""
    diffs = list(diffs)
    if not diffs:
        raise ValueError("judge_order needs at least one difference")
    if any(not d.has_interval or not math.isfinite(d.value) for d in diffs):
        return UNTESTABLE, float("nan")
    below = [d for d in diffs if d.hi < 0]
    if below:
        return FAILS, min(1.0, len(diffs) * min(interval_p(d, 0.0) for d in below))
    if all(d.lo > 0 for d in diffs):
        return HOLDS, max(interval_p(d, 0.0) for d in diffs)
    return UNDECIDED, 1.0


def judge_order(diffs: Sequence[Estimate]) -> str:
    """Verdict on an ordering claim, from the estimates of successive differences.

    ``A < B < C`` is given as estimates of ``B - A`` and ``C - B``, each claimed > 0.

    Rules: any difference without an interval -> :data:`UNTESTABLE`; any interval
    entirely below 0 (``hi < 0``) -> :data:`FAILS`; all intervals entirely above 0
    (``lo > 0``) -> :data:`HOLDS`; otherwise -> :data:`UNDECIDED`.

    Parameters
    ----------
    diffs : sequence of Estimate
        At least one difference.

    Returns
    -------
    str
        :data:`HOLDS`, :data:`FAILS`, :data:`UNDECIDED` or :data:`UNTESTABLE`.
    """
    return order_decision(diffs)[0]


def heads_decision(diffs: Sequence[Estimate]) -> tuple[str, float, int, int]:
    """Verdict on "single heads are weaker than the average of all heads", head by head.

    ``diffs``: per head, the paired estimate of (all layers minus the head), per utterance.
    A head is surely below the all-layers value when its difference is surely above 0, surely
    above when surely below 0, both after Holm over the heads (:func:`interval_p` at 0). With
    ``H`` heads and ``m = H // 2 + 1`` (more than half): :data:`HOLDS` when at least ``m``
    heads are surely below, :data:`FAILS` when at least ``m`` are surely above,
    :data:`UNDECIDED` otherwise, :data:`UNTESTABLE` with no heads or a head without an
    interval. The p of the verdict is the ``m``-th smallest Holm-adjusted p of its side: the
    claim "at least ``m`` heads are below" is wrong only if one of ``m`` rejections is, which
    Holm keeps below ``ALPHA``.

    Returns
    -------
    (verdict, p, below, above)
        ``below``/``above``: how many heads are surely below/above the all-layers value.
    """
    diffs = list(diffs)
    if not diffs or any(not d.has_interval or not math.isfinite(d.value) for d in diffs):
        return UNTESTABLE, float("nan"), 0, 0
    m = len(diffs) // 2 + 1
    below = np.sort(holm([interval_p(d, 0.0) if d.value > 0 else 1.0 for d in diffs]))
    above = np.sort(holm([interval_p(d, 0.0) if d.value < 0 else 1.0 for d in diffs]))
    n_below, n_above = int((below < ALPHA).sum()), int((above < ALPHA).sum())
    if below[m - 1] < ALPHA:
        return HOLDS, float(below[m - 1]), n_below, n_above
    if above[m - 1] < ALPHA:
        return FAILS, float(above[m - 1]), n_below, n_above
    return UNDECIDED, 1.0, n_below, n_above
