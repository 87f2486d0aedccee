"""Spending the compute: how many utterances and how many perturbations per map.

For a fixed compute time ``C``, ``n`` utterances at ``N`` perturbations per map cost ``n N``,
and the interval of a condition-level correlation has width proportional to
``sqrt((between^2 + a / N) / n)`` (:func:`interval_width`): at ``n = C / N`` it grows with ``N``.
So each map gets the smallest budget at which its reference is reliable enough for the
correction to be estimable, and the rest buys utterances (:func:`budget_rule`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .reliability import budget_for_reliability

__all__ = ["interval_width", "BudgetRule", "budget_rule"]


def interval_width(n_utterances: float | np.ndarray, budget: float | np.ndarray, between_sd: float,
                   within_sd_at: float, budget_at: float, z: float = 1.96) -> float | np.ndarray:
    """Predicted width of the 95% interval of a condition-level correlation over ``n_utterances``
    maps of ``budget`` perturbations each.

    An utterance's value varies around the condition's mean by ``between_sd`` (the utterances
    differ) plus its map's sampling noise, whose variance falls as ``1 / budget``: ``within_sd_at``
    measured at ``budget_at`` (e.g. the spread of independent repeats of one map). Width
    ``2 z sqrt((between_sd^2 + within_sd_at^2 budget_at / budget) / n_utterances)``.
    """
    n = np.asarray(n_utterances, dtype=np.float64)
    b = np.asarray(budget, dtype=np.float64)
    if np.any(n < 1) or np.any(b <= 0) or budget_at <= 0:
        raise ValueError("n_utterances must be >= 1 and budgets positive")
    var = (between_sd ** 2 + within_sd_at ** 2 * budget_at / b) / n
    out = 2.0 * z * np.sqrt(var)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class BudgetRule:
    """What :func:`budget_rule` finds for one reference of one condition.

    ``median_reliability``: median corrected reliability of the maps at ``budget``;
    ``share_at_target``: share of maps at or above ``target``; ``budget_for_target``: the
    budget at which the median map would reach ``target`` (inverse Spearman-Brown);
    ``noise_share``: share of an utterance's variance that is map noise,
    ``within^2 / (within^2 + between^2)`` (NaN without a ``within_sd``).
    """

    budget: int
    target: float
    median_reliability: float
    share_at_target: float
    budget_for_target: float
    between_sd: float
    within_sd: float
    noise_share: float


def budget_rule(reliabilities: Sequence[float], budget: int, target: float, values: Sequence[float] = (),
                within_sd: float = float("nan")) -> BudgetRule:
    """The rule that sizes a profile's budgets, checked on a run's maps.

    For a fixed compute time ``C``, ``n`` utterances at ``N`` perturbations per map cost
    ``n N`` and the interval of the condition-level value has width proportional to
    ``sqrt((between^2 + a / N) / n)`` (:func:`interval_width`), i.e. to
    ``sqrt(between^2 N + a)`` at ``n = C / N``: it grows with ``N``. So each map gets the
    smallest budget at which its reference is reliable enough for the correction to be
    estimable (``target``), and the rest of the compute buys utterances, as long as the map
    noise ``a / N`` stays a small share of an utterance's variance.

    Parameters
    ----------
    reliabilities : corrected reliability of each map (per utterance) at ``budget``.
    budget : perturbations per map.
    target : reliability the rule asks of the median map.
    values : per-utterance values the condition averages (e.g. disattenuated rho), for ``between_sd``.
    within_sd : spread of one utterance's value over independent maps of ``budget`` perturbations.
    """
    rel = np.asarray(reliabilities, dtype=np.float64)
    rel = rel[np.isfinite(rel)]
    med = float(np.median(rel)) if rel.size else float("nan")
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    between = float(np.std(vals, ddof=1)) if vals.size > 1 else float("nan")
    share = within_sd ** 2 / (within_sd ** 2 + between ** 2) if np.isfinite(within_sd) and np.isfinite(between) \
        else float("nan")
    return BudgetRule(budget=int(budget), target=float(target), median_reliability=med,
                      share_at_target=float(np.mean(rel >= target)) if rel.size else float("nan"),
                      budget_for_target=budget_for_reliability(med, budget, target) if np.isfinite(med) else float("nan"),
                      between_sd=between, within_sd=float(within_sd), noise_share=float(share))
