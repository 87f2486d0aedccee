"""The statistics of the compendium: Fisher means, estimates with bootstrap intervals, intervals.

Every set-level number with an interval comes from here.

Estimates (:class:`Estimate`)
-----------------------------
* One value per utterance goes in (a correlation, a difference, an AUC gap, ...);
  non-finite values are dropped and ``n`` counts what is left.
* Correlations are averaged through Fisher's z (:func:`fisher_mean`): every r is
  clipped to ``|r| <= 1 - 1e-7``, mapped to ``z = arctanh(r)`` (:func:`fisher_z`), the z are
  averaged and the mean is mapped back with ``tanh``. Other quantities (differences, gaps)
  use the plain mean.
* The interval is a percentile bootstrap (``alpha = 0.05``: a 95% interval) over
  utterances of *the same statistic* as the value, seeded by :func:`bootstrap_indices`
  (``np.random.default_rng(seed)``).
* Below :data:`MIN_UTTERANCES` (8) utterances no interval is computed at all:
  ``lo = hi = NaN`` and the text says "no interval below 8 utterances".
* Paired quantities (two series on the same utterances, :func:`paired_estimate`)
  resample whole utterances, so what the two series share cancels out.
* Utterances nested in speakers (``groups=``, one label per value, of :func:`set_estimate`
  and :func:`paired_estimate`): with at least 2 speakers a two-stage cluster bootstrap
  (:func:`cluster_weights`: speakers with replacement, then clips within each drawn speaker
  with replacement; the statistic over all drawn clips), so that clips of one voice do not
  count as independent evidence; with one speaker the clips are resampled as without groups
  (the same numbers; there is nothing else to resample) and the method says so.
* Token-level values nested in utterances (:func:`hierarchical_estimate`) get a
  two-level bootstrap: utterances with replacement, then tokens within each
  chosen utterance with replacement.

Plain intervals: :func:`bootstrap_ci`, :func:`paired_bootstrap_ci` (per-utterance values),
:func:`resampled_interval` (any statistic of resampled units), :func:`percentile_interval`
(given replicates). Verdicts on estimates live in :mod:`.verdicts`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "MIN_UTTERANCES", "AVERAGES", "bootstrap_indices", "percentile_interval", "resampled_interval", "bootstrap_ci",
    "paired_bootstrap_ci", "fisher_z", "fisher_mean", "Estimate", "set_estimate", "paired_estimate",
    "hierarchical_estimate", "cluster_weights", "CLUSTERED", "ONE_CLUSTER",
]


#: Below this many utterances no interval is given and every verdict is :data:`UNTESTABLE`.
MIN_UTTERANCES = 8


#: How per-utterance values are averaged: ``"fisher"`` (correlations, through Fisher z)
#: or ``"mean"`` (the plain mean: differences, AUC gaps, ...).
AVERAGES = ("fisher", "mean")


_METHODS = {
    "fisher": "Fisher z mean over utterances",
    "mean": "mean over utterances",
}


#: What the method text of an estimate adds when its interval resampled speakers, then clips
#: (``{}``: the number of speakers), or when all its clips come from one speaker.
CLUSTERED = "resampling speakers, then clips ({} speakers)"
ONE_CLUSTER = "one speaker: clips resampled"


#: Largest |r| kept before ``arctanh`` (so r = +-1 stays finite).
_R_MAX = 1.0 - 1e-7


def bootstrap_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Resampling indices ``n_bootstrap x n`` (with replacement), reproducible by ``seed``."""
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    return np.random.default_rng(seed).integers(0, n, size=(n_bootstrap, n))


def cluster_weights(groups: Sequence[Any] | np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """Two-stage cluster bootstrap as counts: ``n_bootstrap x n``, how often each of the ``n``
    values (labelled by ``groups``, e.g. the speaker of each utterance) is drawn in each resample.

    Each resample draws the ``G`` distinct groups with replacement (``G`` draws), then, for each
    drawn group, as many of its values as it has with replacement; a group drawn k times gives
    k times that many draws (a multinomial over its values). Seeded by
    ``np.random.default_rng(seed)`` (groups first, then the values, group by group in sorted
    label order). A statistic of resample ``b`` is then the ``weights[b]``-weighted one of the
    values (every row has a positive sum).
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    labels = np.asarray([str(g) for g in groups])
    _, ids = np.unique(labels, return_inverse=True)
    ids = ids.ravel()
    n, n_groups = int(ids.size), int(ids.max()) + 1 if ids.size else 0
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_bootstrap, n), dtype=np.float64)
    if not n:
        return weights
    drawn = rng.integers(0, n_groups, size=(n_bootstrap, n_groups))  # n_bootstrap x G: groups drawn
    for g in range(n_groups):
        members = np.flatnonzero(ids == g)
        times = (drawn == g).sum(axis=1)  # n_bootstrap: how often group g was drawn
        weights[:, members] = rng.multinomial(times * members.size, np.full(members.size, 1.0 / members.size))
    return weights


def _groups_of(groups: Sequence[Any] | np.ndarray | None, n_values: int, keep: np.ndarray) -> np.ndarray | None:
    """The labels of the kept values (``None`` without groups); their number must match the values'."""
    if groups is None:
        return None
    labels = np.asarray([str(g) for g in groups])
    if labels.size != n_values:
        raise ValueError(f"groups need one label per value: {labels.size} labels for {n_values} values")
    return labels[keep]


def percentile_interval(replicates: Sequence[float] | np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """``alpha/2`` and ``1 - alpha/2`` percentiles of bootstrap ``replicates``, non-finite
    replicates dropped; ``(nan, nan)`` if none is left."""
    v = np.asarray(replicates, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if not v.size:
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def resampled_interval(stat: Callable[[np.ndarray], float], n: int, n_bootstrap: int = 1000, seed: int = 0,
                       alpha: float = 0.05, groups: Sequence[Any] | np.ndarray | None = None) -> tuple[float, float]:
    """Percentile interval of ``stat(rows)`` over ``n_bootstrap`` resamplings (with
    replacement, :func:`bootstrap_indices`) of ``n`` units, e.g. utterances whose
    statistic is not a plain function of one value each (a ratio of two means).

    ``groups`` (one label per unit, e.g. its speaker): with 2 or more distinct labels each
    resample draws groups, then units within them (:func:`cluster_weights`), ``rows`` listing
    each drawn unit as often as drawn (its length varies); with one label or ``None``, as
    without groups."""
    if groups is not None:
        labels = np.asarray([str(g) for g in groups])
        if labels.size != n:
            raise ValueError(f"groups need one label per unit: {labels.size} labels for {n} units")
        if np.unique(labels).size >= 2:
            units = np.arange(n)
            weights = cluster_weights(labels, n_bootstrap, seed).astype(np.int64)
            return percentile_interval([stat(np.repeat(units, w)) for w in weights], alpha)
    return percentile_interval([stat(row) for row in bootstrap_indices(n, n_bootstrap, seed)], alpha)


def bootstrap_ci(values: Sequence[float] | np.ndarray, n_bootstrap: int = 1000, seed: int = 0,
                 stat: Callable[[np.ndarray], float] = np.mean, alpha: float = 0.05) -> tuple[float, float, float]:
    """Percentile bootstrap interval of a statistic of per-utterance values.

    Parameters
    ----------
    values : array-like
        One value per utterance (``utterances``); non-finite values are dropped.
    n_bootstrap : int
        Number of resamples (with replacement) of the values.
    seed : int
        Seed of the resampling.
    stat : callable
        The statistic, ``stat(1-D array) -> float`` (default: mean).
    alpha : float
        1 - coverage (0.05: a 95% interval).

    Returns
    -------
    (estimate, lo, hi) : tuple of float
        ``stat(values)`` and the ``alpha/2`` and ``1 - alpha/2`` percentiles of the
        bootstrap distribution; all NaN if no finite value is left.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    est = float(stat(v))
    idx = bootstrap_indices(v.size, n_bootstrap, seed)
    boot = np.array([stat(v[row]) for row in idx], dtype=np.float64)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return est, float(lo), float(hi)


def paired_bootstrap_ci(values_a: Sequence[float] | np.ndarray, values_b: Sequence[float] | np.ndarray,
                        n_bootstrap: int = 1000, seed: int = 0,
                        stat: Callable[[np.ndarray], float] = np.mean,
                        alpha: float = 0.05) -> tuple[float, float, float]:
    """Bootstrap interval of a statistic of paired differences ``a - b`` per utterance.

    E.g. the context-mixing gain: ``a`` = rho(CA, SM_H) and ``b`` = rho(CA, SM_X) of the
    same utterances. Pairs where either value is non-finite are dropped. Resampling
    whole pairs keeps the within-utterance dependence, so the interval is narrower
    than that of two independent means when ``a`` and ``b`` co-vary.

    Returns
    -------
    (estimate, lo, hi) : tuple of float
        ``stat(a - b)`` and its percentile interval.
    """
    a = np.asarray(values_a, dtype=np.float64).ravel()
    b = np.asarray(values_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same number of utterances: {a.size} vs {b.size}")
    return bootstrap_ci(a - b, n_bootstrap=n_bootstrap, seed=seed, stat=stat, alpha=alpha)


def fisher_z(r: np.ndarray) -> np.ndarray:
    """``arctanh`` of correlations clipped to ``|r| <= 1 - 1e-7`` (any shape)."""
    return np.arctanh(np.clip(r, -_R_MAX, _R_MAX))


def fisher_mean(r: Sequence[float] | np.ndarray) -> float:
    """Average correlations through Fisher's z.

    Parameters
    ----------
    r : array-like
        Correlations, any shape (flattened; typically ``utterances``). Non-finite
        values are ignored; the rest are clipped to ``|r| <= 1 - 1e-7`` so that
        r = +-1 gives a large but finite z.

    Returns
    -------
    float
        ``tanh(mean(arctanh(r)))`` over the finite values; NaN if there is none.
    """
    v = np.asarray(r, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(np.tanh(fisher_z(v).mean()))


def _check_common(average: str | None, n_bootstrap: int, alpha: float, min_utterances: int) -> None:
    if average is not None and average not in AVERAGES:
        raise ValueError(f"unknown average {average!r}; choose one of {list(AVERAGES)}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if min_utterances < 2:
        raise ValueError(f"min_utterances must be at least 2 (one utterance has no spread), got {min_utterances}")


def _percentiles(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Estimate:
    """A set-level value with its bootstrap interval over utterances.

    Attributes
    ----------
    value : float
        The set-level value (Fisher z mean, mean, mean difference, ...); NaN if no
        utterance had a finite value.
    lo, hi : float
        Percentile bootstrap interval; both NaN when there were fewer than
        ``min_utterances`` utterances.
    n : int
        Number of utterances that entered (after dropping non-finite values).
    method : str
        How the value was averaged, e.g. ``"Fisher z mean over utterances"``.
    min_utterances : int
        The size below which no interval is given (for the text).
    """

    value: float
    lo: float
    hi: float
    n: int
    method: str
    min_utterances: int = MIN_UTTERANCES

    @property
    def has_interval(self) -> bool:
        """Whether both interval ends are finite."""
        return bool(math.isfinite(self.lo) and math.isfinite(self.hi))

    def text(self, fmt: str = ".2f") -> str:
        """A short human-readable form.

        Parameters
        ----------
        fmt : str
            Format spec of the numbers, e.g. ``".2f"`` or ``"+.2f"``.

        Returns
        -------
        str
            ``"0.41 [0.30, 0.52] (n=12)"`` with an interval,
            ``"0.41 (n=2; no interval below 8 utterances)"`` below the minimum size,
            ``"0.41 (n=12; no interval)"`` otherwise; a NaN value reads ``"n/a"``.
        """
        val = format(self.value, fmt) if math.isfinite(self.value) else "n/a"
        if self.has_interval:
            return f"{val} [{format(self.lo, fmt)}, {format(self.hi, fmt)}] (n={self.n})"
        if self.n < self.min_utterances:
            return f"{val} (n={self.n}; no interval below {self.min_utterances} utterances)"
        return f"{val} (n={self.n}; no interval)"

    def as_dict(self) -> dict:
        """A JSON-friendly summary (all fields, plus ``text``)."""
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n, "method": self.method,
                "min_utterances": self.min_utterances, "text": self.text()}


def _finite_1d(values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def _with_groups(method: str, labels: np.ndarray | None) -> str:
    if labels is None:
        return method
    n_groups = int(np.unique(labels).size)
    if n_groups >= 2:
        return f"{method}; {CLUSTERED.format(n_groups)}"
    return f"{method}; {ONE_CLUSTER}" if n_groups == 1 else method


def _resampled_means(x: np.ndarray, labels: np.ndarray | None, n_bootstrap: int, seed: int) -> np.ndarray:
    """Means of ``x`` (``n`` or ``series x n``) over resamples: ``n_bootstrap`` (or ``series x
    n_bootstrap``); clips resampled (:func:`bootstrap_indices`) without groups or with one group,
    speakers then clips (:func:`cluster_weights`) with 2 or more."""
    if labels is not None and np.unique(labels).size >= 2:
        w = cluster_weights(labels, n_bootstrap, seed)  # n_bootstrap x n
        return (x @ w.T) / w.sum(axis=1)
    return x[..., bootstrap_indices(x.shape[-1], n_bootstrap, seed)].mean(axis=-1)


def set_estimate(values: Sequence[float] | np.ndarray, *, average: str = "fisher", n_bootstrap: int = 1000,
                 seed: int = 0, alpha: float = 0.05, min_utterances: int = MIN_UTTERANCES,
                 groups: Sequence[Any] | np.ndarray | None = None) -> Estimate:
    """Set-level value of per-utterance values with a bootstrap interval over utterances.

    Parameters
    ----------
    values : array-like
        One value per utterance (``utterances``); non-finite values are dropped.
    average : {"fisher", "mean"}
        ``"fisher"``: correlations, averaged with :func:`fisher_mean`; ``"mean"``:
        the plain mean (differences, AUC gaps, ...).
    n_bootstrap : int
        Resamples of utterances (with replacement).
    seed : int
        Seed of the resampling (``np.random.default_rng(seed)``, as in
        :func:`bootstrap_indices`).
    alpha : float
        1 - coverage (0.05: a 95% percentile interval).
    min_utterances : int
        Below this many (finite) utterances ``lo = hi = NaN``.
    groups : sequence, optional
        One label per value (the speaker of each utterance; dropped with their non-finite
        values). With 2 or more distinct labels the interval resamples groups, then values
        within each drawn group (:func:`cluster_weights`) and ``method`` says so
        (:data:`CLUSTERED`); with one label the values are resampled as without groups (the
        same numbers) and ``method`` says so (:data:`ONE_CLUSTER`). ``None``: today's
        resampling of values.

    Returns
    -------
    Estimate
        The same statistic as the value is computed on every resample; its
        ``alpha/2`` and ``1 - alpha/2`` percentiles are the interval.
    """
    _check_common(average, n_bootstrap, alpha, min_utterances)
    raw = np.asarray(values, dtype=np.float64).ravel()
    labels = _groups_of(groups, raw.size, np.isfinite(raw))
    v = _finite_1d(values)
    n = int(v.size)
    method = _with_groups(_METHODS[average], labels)
    nan = float("nan")
    if n == 0:
        return Estimate(nan, nan, nan, 0, method, min_utterances)
    x = fisher_z(v) if average == "fisher" else v
    value = float(np.tanh(x.mean())) if average == "fisher" else float(x.mean())
    if n < min_utterances:
        return Estimate(value, nan, nan, n, method, min_utterances)
    boot = _resampled_means(x, labels, n_bootstrap, seed)  # n_bootstrap
    if average == "fisher":
        boot = np.tanh(boot)
    lo, hi = _percentiles(boot, alpha)
    return Estimate(value, lo, hi, n, method, min_utterances)


def paired_estimate(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, average: str = "fisher",
                    n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05,
                    min_utterances: int = MIN_UTTERANCES,
                    groups: Sequence[Any] | np.ndarray | None = None) -> Estimate:
    """Difference of two per-utterance series on the same utterances, bootstrapped in pairs.

    Parameters
    ----------
    a, b : array-like
        One value per utterance each (``utterances``, same length), e.g.
        ``a`` = rho(CA, SM_H) and ``b`` = rho(CA, SM_X). Utterances where either
        value is non-finite are dropped.
    average : {"fisher", "mean"}
        ``"fisher"``: ``fisher_mean(a) - fisher_mean(b)``; ``"mean"``: ``mean(a - b)``.
    n_bootstrap, seed, alpha, min_utterances
        As in :func:`set_estimate`; resampling draws whole pairs (utterances), so
        the interval is narrower than that of two independent averages when ``a``
        and ``b`` co-vary.
    groups : sequence, optional
        One label per pair (the speaker of each utterance), as in :func:`set_estimate`: with
        2 or more, speakers then clips are resampled, the same draws for ``a`` and ``b``.

    Returns
    -------
    Estimate
        ``n`` is the number of complete pairs; no interval below ``min_utterances``.
    """
    _check_common(average, n_bootstrap, alpha, min_utterances)
    av = np.asarray(a, dtype=np.float64).ravel()
    bv = np.asarray(b, dtype=np.float64).ravel()
    if av.shape != bv.shape:
        raise ValueError(f"paired values need the same number of utterances: {av.size} vs {bv.size}")
    keep = np.isfinite(av) & np.isfinite(bv)
    labels = _groups_of(groups, keep.size, keep)
    av, bv = av[keep], bv[keep]
    n = int(av.size)
    method = _with_groups("difference of Fisher z means over utterances (paired)" if average == "fisher"
                          else "mean of paired differences over utterances", labels)
    nan = float("nan")
    if n == 0:
        return Estimate(nan, nan, nan, 0, method, min_utterances)
    if average == "fisher":
        za, zb = fisher_z(av), fisher_z(bv)
        value = float(np.tanh(za.mean()) - np.tanh(zb.mean()))
    else:
        d = av - bv
        value = float(d.mean())
    if n < min_utterances:
        return Estimate(value, nan, nan, n, method, min_utterances)
    if average == "fisher":  # the same draws for a and b
        ma, mb = _resampled_means(np.stack([za, zb]), labels, n_bootstrap, seed)  # 2 x n_bootstrap
        boot = np.tanh(ma) - np.tanh(mb)
    else:
        boot = _resampled_means(d, labels, n_bootstrap, seed)
    lo, hi = _percentiles(boot, alpha)
    return Estimate(value, lo, hi, n, method, min_utterances)


#: Upper bound on the number of token draws held in memory at once by the hierarchical bootstrap.
_CHUNK_DRAWS = 2_000_000


def hierarchical_estimate(groups: Sequence[Sequence[float] | np.ndarray], *, n_bootstrap: int = 1000,
                          seed: int = 0, alpha: float = 0.05,
                          min_utterances: int = MIN_UTTERANCES) -> Estimate:
    """Mean of within-utterance means, with a two-level bootstrap.

    For token-level values nested in utterances (e.g. one value per token of each
    utterance): every resample draws utterances with replacement, then, within each
    drawn utterance, its values with replacement; the statistic is the mean over
    the drawn utterances of their resampled means. The interval thus carries both
    the between-utterance and the within-utterance (few tokens) uncertainty.

    Parameters
    ----------
    groups : sequence of array-like
        One array per utterance (``utterances`` of ``tokens_i``, ragged). Non-finite
        values are dropped; utterances left empty are dropped.
    n_bootstrap : int
        Resamples.
    seed : int
        Seed: one ``np.random.default_rng(seed)`` draws the utterance indices first
        (the same ``n_bootstrap x n`` matrix as
        :func:`bootstrap_indices`), then the token draws.
    alpha : float
        1 - coverage.
    min_utterances : int
        Below this many (non-empty) utterances ``lo = hi = NaN``.

    Returns
    -------
    Estimate
        ``value`` = mean over utterances of within-utterance means; ``n`` = number of
        non-empty utterances.
    """
    _check_common(None, n_bootstrap, alpha, min_utterances)
    clean = [g for g in (_finite_1d(g) for g in groups) if g.size]
    n = len(clean)
    method = "mean over utterances of within-utterance means (two-level bootstrap)"
    nan = float("nan")
    if n == 0:
        return Estimate(nan, nan, nan, 0, method, min_utterances)
    means = np.array([g.mean() for g in clean])
    value = float(means.mean())
    if n < min_utterances:
        return Estimate(value, nan, nan, n, method, min_utterances)

    flat = np.concatenate(clean)
    sizes = np.array([g.size for g in clean], dtype=np.int64)  # n
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # n
    rng = np.random.default_rng(seed)
    outer = rng.integers(0, n, size=(n_bootstrap, n))  # n_bootstrap x n: utterances drawn
    boot = np.empty(n_bootstrap)
    # rows per chunk so that a chunk's token draws stay below _CHUNK_DRAWS
    rows = max(1, int(_CHUNK_DRAWS // max(1, sizes.max() * n)))
    for r0 in range(0, n_bootstrap, rows):
        chosen = outer[r0:r0 + rows].ravel()  # (rows * n), utterance ids
        m = sizes[chosen]  # tokens of each drawn utterance
        offsets = np.concatenate([[0], np.cumsum(m)[:-1]])
        local = np.floor(rng.random(int(m.sum())) * np.repeat(m, m)).astype(np.int64)
        local = np.minimum(local, np.repeat(m, m) - 1)  # guard against rounding at the top end
        draws = flat[np.repeat(starts[chosen], m) + local]
        utt_means = np.add.reduceat(draws, offsets) / m  # (rows * n)
        boot[r0:r0 + rows] = utt_means.reshape(-1, n).mean(axis=1)
    lo, hi = _percentiles(boot, alpha)
    return Estimate(value, lo, hi, n, method, min_utterances)
