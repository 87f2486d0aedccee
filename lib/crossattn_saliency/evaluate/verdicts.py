"""Verdicts on the study's claims, from estimates and their intervals.

A claim of the study either "held" or "did not", with no room for "we cannot tell". The rules
here give every claim one of a few outcomes (:data:`OUTCOMES`), decided on a set-level
:class:`~.stats.Estimate` and its interval only.

Rules (:func:`judge`, :func:`judge_order`)
------------------------------------------
A claim says the quantity lies on one side of a threshold (``gain > 0``,
``correlation > 0``) and, optionally, that its size falls in the study's range.

* no interval (too few utterances, or NaN)      -> :data:`UNTESTABLE`
* interval entirely on the wrong side            -> :data:`FAILS`
* interval touches or straddles the threshold    -> :data:`UNDECIDED`
* interval entirely on the claimed side, and
  - no study range, or the interval meets it     -> :data:`HOLDS`
  - the whole interval below the study's range   -> :data:`SMALLER`
  - the whole interval above the study's range   -> :data:`LARGER`

An ordering claim (``A < B < C``, given as the estimates of ``B - A`` and ``C - B``)
holds when every difference is surely above 0, fails when any is surely below 0,
and is undecided otherwise.
"""
from __future__ import annotations

import math
from typing import Sequence

from .stats import Estimate

__all__ = ["HOLDS", "SMALLER", "LARGER", "FAILS", "UNDECIDED", "UNTESTABLE", "OUTCOMES", "judge", "judge_order"]


HOLDS = "holds"


SMALLER = "holds, smaller than the study"


LARGER = "holds, larger than the study"


FAILS = "does not hold"


UNDECIDED = "undecided"


UNTESTABLE = "not testable at this size"


#: All verdict strings, in a fixed order.
OUTCOMES = (HOLDS, SMALLER, LARGER, FAILS, UNDECIDED, UNTESTABLE)


def judge(est: Estimate, study: tuple[float, float] | None = None, threshold: float = 0.0,
          direction: int = +1) -> str:
    """Verdict on a claim about one quantity, from its estimate's interval.

    The claim: the quantity lies on the ``direction`` side of ``threshold``
    (``direction=+1``: above, e.g. gain > 0; ``-1``: below) and, if ``study`` is
    given, its size lies within the study's range ``[a, b]``.

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
    4. With no ``study``, or an interval that meets ``[a, b]``
       (``lo <= b and hi >= a``) -> :data:`HOLDS`; the whole interval below the
       range (``hi < a``) -> :data:`SMALLER`; above it (``lo > b``) ->
       :data:`LARGER`. "Smaller" and "larger" refer to the signed value, also for
       ``direction=-1``.

    Parameters
    ----------
    est : Estimate
        The set-level estimate (same scale as ``threshold`` and ``study``).
    study : (float, float) or None
        The study's range for the quantity (ends in any order; a point value
        ``v`` is ``(v, v)``).
    threshold : float
        The value the claim is about being above (or below).
    direction : {+1, -1}
        ``+1``: claimed above ``threshold``; ``-1``: claimed below.

    Returns
    -------
    str
        One of :data:`OUTCOMES`.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    if not est.has_interval or not math.isfinite(est.value):
        return UNTESTABLE
    lo, hi = est.lo, est.hi
    if direction == 1:
        wrong, right = hi < threshold, lo > threshold
    else:
        wrong, right = lo > threshold, hi < threshold
    if wrong:
        return FAILS
    if not right:
        return UNDECIDED
    if study is None:
        return HOLDS
    a, b = sorted((float(study[0]), float(study[1])))
    if hi < a:
        return SMALLER
    if lo > b:
        return LARGER
    return HOLDS


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
    diffs = list(diffs)
    if not diffs:
        raise ValueError("judge_order needs at least one difference")
    if any(not d.has_interval or not math.isfinite(d.value) for d in diffs):
        return UNTESTABLE
    if any(d.hi < 0 for d in diffs):
        return FAILS
    if all(d.lo > 0 for d in diffs):
        return HOLDS
    return UNDECIDED
