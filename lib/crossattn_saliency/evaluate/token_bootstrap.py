"""Token-bootstrap intervals for correlations between maps of a few utterances.

With a handful of utterances an interval over utterances means little, but the tokens of each
utterance are many: resampling them (each token row of every map with it) shows how far the
set-level value moves with the tokens these clips happen to have, conditional on the clips.
A pooled Pearson correlation over the cells of resampled rows is a function of per-row sums,
so every replicate costs a weighted sum instead of a new map (:func:`row_moments`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .map_noise import noise_draws
from .reliability import RELIABILITY_FLOOR, chance_corrected, corrected_reliability, prepared
from .stats import Estimate, fisher_z, percentile_interval

__all__ = ["row_moments", "pooled_pearson", "NoiseMoments", "noise_moments", "token_weights",
           "token_bootstrap_replicates", "replicate_interval", "token_bootstrap_disattenuated"]


def row_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row sums behind a Pearson correlation over all cells of two maps.

    ``a``, ``b``: equally shaped ``tokens x positions`` maps (already reduced and normalized
    as in the comparison). Returns ``tokens x 6``: cells, sum a, sum b, sum ab, sum a^2,
    sum b^2 of each row; :func:`pooled_pearson` with unit weights gives
    ``correlate.correlation(a, b)``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two equally shaped tokens x positions maps, got {a.shape} and {b.shape}")
    return np.stack([np.full(a.shape[0], float(a.shape[1])), a.sum(1), b.sum(1), (a * b).sum(1),
                     (a * a).sum(1), (b * b).sum(1)], axis=-1)


def pooled_pearson(moments: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation over all cells with each row counted ``weights`` times.

    ``moments``: ``... x tokens x 6`` (:func:`row_moments`); ``weights``: ``replicates x
    tokens`` row counts. Returns ``... x replicates`` (NaN where a side is constant).
    """
    s = np.einsum("...tk,bt->...bk", np.asarray(moments, dtype=np.float64), np.asarray(weights, dtype=np.float64))
    n, sa, sb, sab, saa, sbb = (s[..., i] for i in range(6))
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = sab - sa * sb / n
        va, vb = saa - sa * sa / n, sbb - sb * sb / n
        r = cov / np.sqrt(va * vb)
    return np.where((va > 1e-12 * n) & (vb > 1e-12 * n), r, np.nan)


@dataclass(frozen=True)
class NoiseMoments:
    """Per-token moments of one SPES map's split halves (``splits x tokens x 6``) and of its
    permuted-score halves (``nulls x tokens x 6``): the two inputs of its corrected
    reliability, resampleable by token (:func:`token_bootstrap_disattenuated`)."""

    splits: np.ndarray
    nulls: np.ndarray

    def reliability(self, weights: np.ndarray) -> np.ndarray:
        """Corrected full-map reliability under each row of ``weights`` (``replicates``)."""
        return corrected_reliability(np.nanmean(pooled_pearson(self.splits, weights), axis=0),
                                     np.nanmean(pooled_pearson(self.nulls, weights), axis=0))


def noise_moments(resample: Any, split_of: Any, reducer: str | None, normalization: str,
                  n_splits: int = 8, n_null: int = 8, seed: int = 0, factor: int = 2) -> NoiseMoments:
    """:class:`NoiseMoments` of one map, for exactly the splits and permutations that
    :func:`reference_noise` draws with the same ``seed`` (so unit weights give its values)."""
    split_seeds, null_seeds = noise_draws(seed, n_splits, n_null)

    def moments(kw: dict[str, Any]) -> np.ndarray:
        _, a, b = resample(**kw)
        return row_moments(prepared(a, reducer, normalization, factor), prepared(b, reducer, normalization, factor))

    return NoiseMoments(np.stack([moments({"halves": split_of.random_split(int(s))}) for s in split_seeds]),
                        np.stack([moments({"scores": split_of.permuted_scores(int(s))}) for s in null_seeds]))


def token_weights(n_tokens: Sequence[int], n_bootstrap: int = 1000, seed: int = 0) -> list[np.ndarray]:
    """Row counts of a token bootstrap, one ``(1 + n_bootstrap) x tokens`` array per utterance
    (``n_tokens``): row 0 all ones (the estimate itself), then ``n_bootstrap`` resamplings of
    the utterance's tokens with replacement. The same weights for every map of a set make
    replicates paired across comparisons (e.g. a ratio of two agreements)."""
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    rng = np.random.default_rng(seed)
    return [np.vstack([np.ones((1, t)), rng.multinomial(t, np.full(t, 1.0 / t), size=n_bootstrap)])
            for t in (int(v) for v in n_tokens)]


def token_bootstrap_replicates(pair: Sequence[np.ndarray], pair_null: Sequence[np.ndarray],
                               reference: Sequence[NoiseMoments], weights: Sequence[np.ndarray],
                               explanation: Sequence[NoiseMoments] | None = None,
                               floor: float = RELIABILITY_FLOOR, raw: bool = False) -> np.ndarray:
    """Set-level disattenuated correlation under each row of token ``weights``
    (:func:`token_weights`): ``1 + replicates``, entry 0 the estimate.

    Per utterance ``j``: ``pair[j]`` (``tokens x 6``) the moments of (explanation,
    reference), ``pair_null[j]`` (``nulls x tokens x 6``) those of (explanation, each null
    map of the reference), ``reference[j]`` (and ``explanation[j]`` when the explanation
    is itself a noisy map, e.g. another SPES setting) its :class:`NoiseMoments`. Value:
    Fisher-z mean over utterances of the null-corrected rho, divided by sqrt(mean corrected
    reliability of the reference x that of the explanation, 1 when ``explanation`` is None);
    NaN below ``floor``; rho, its null and both reliabilities are recomputed on the same
    resampled rows. ``raw``: the Fisher-z mean of the raw rho instead.
    """
    n = len(pair)
    if not (n == len(pair_null) == len(reference) == len(weights)) or not n \
            or (explanation is not None and len(explanation) != n):
        raise ValueError("need the same non-zero number of utterances in pair, pair_null, reference, weights "
                         "(and explanation)")
    rc, rel_r, rel_e, raws = [], [], [], []
    for j in range(n):
        w = np.asarray(weights[j], dtype=np.float64)
        if w.shape[1] != np.asarray(pair[j]).shape[0]:
            raise ValueError(f"utterance {j}: weights for {w.shape[1]} tokens, maps of {np.asarray(pair[j]).shape[0]}")
        rho = pooled_pearson(pair[j], w)
        raws.append(rho)
        rc.append(chance_corrected(rho, np.nanmean(pooled_pearson(pair_null[j], w), axis=0)))
        rel_r.append(reference[j].reliability(w))
        rel_e.append(explanation[j].reliability(w) if explanation is not None else np.ones(w.shape[0]))
    rc_, rr, re_, raw_ = (np.asarray(v, dtype=np.float64) for v in (rc, rel_r, rel_e, raws))  # utterances x replicates
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates stay NaN
        if raw:
            return np.tanh(np.nanmean(fisher_z(raw_), axis=0))
        mr, me = np.nanmean(rr, axis=0), np.nanmean(re_, axis=0)
        z = np.nanmean(fisher_z(rc_), axis=0)
        return np.where(np.minimum(mr, me) >= floor, np.tanh(z) / np.sqrt(mr * me), np.nan)


def replicate_interval(replicates: np.ndarray, method: str, n: int, alpha: float = 0.05) -> Any:
    """:class:`~.stats.Estimate` from bootstrap ``replicates`` (entry 0 the estimate):
    percentile interval, NaN where the estimate or every replicate is NaN."""
    v = np.asarray(replicates, dtype=np.float64)
    lo, hi = percentile_interval(v[1:], alpha) if np.isfinite(v[0]) else (float("nan"), float("nan"))
    return Estimate(float(v[0]), lo, hi, int(n), method, int(n))


def token_bootstrap_disattenuated(pair: Sequence[np.ndarray], pair_null: Sequence[np.ndarray],
                                  reference: Sequence[NoiseMoments],
                                  explanation: Sequence[NoiseMoments] | None = None,
                                  floor: float = RELIABILITY_FLOOR, n_bootstrap: int = 1000, seed: int = 0,
                                  alpha: float = 0.05, raw: bool = False) -> Any:
    """:func:`token_bootstrap_replicates` with its own weights, as a :class:`~.stats.Estimate`
    whose interval resamples every utterance's tokens (the utterances themselves are held
    fixed: the interval says what these clips pin down, not what other clips would give)."""
    w = token_weights([np.asarray(p).shape[0] for p in pair], n_bootstrap, seed)
    reps = token_bootstrap_replicates(pair, pair_null, reference, w, explanation, floor, raw)
    return replicate_interval(reps, f"tokens resampled within each of {len(pair)} utterance(s)", len(pair), alpha)
