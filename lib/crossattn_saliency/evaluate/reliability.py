"""How much of the saliency can cross-attention explain at all? Reliability and noise ceilings.

SPES maps are Monte-Carlo estimates: with a finite number of perturbations they
carry sampling noise, and noise lowers every correlation with them. Cross-attention
is deterministic (reliability 1). So a raw rho(CA, SM) of 0.5 can mean "CA explains
half" or "SM is half noise". This module separates the two with classical test
theory:

* **split-half reliability**: SPES is run so that each map comes with two
  independent halves (disjoint sets of perturbations). The Pearson correlation of
  the halves, after exactly the reduction and normalization used for the comparison,
  is the reliability of a half-budget map (:func:`split_half_reliability`).
* **Spearman-Brown**: averaging ``k`` parallel measurements raises reliability to
  ``k r / (1 + (k - 1) r)``; the full map has twice the perturbations of a half, so
  ``r_full = spearman_brown(r_half, 2)`` (:func:`spearman_brown`,
  :func:`reliability_at`, :func:`budget_for_reliability`).
* **noise ceiling**: the largest correlation any noise-free map can reach with the
  noisy saliency, ``sqrt(r_full)`` (:func:`noise_ceiling`).
* **disattenuation**: the correlation CA would have with a noise-free saliency map,
  ``rho / sqrt(r_full)`` (:func:`disattenuate`).

:func:`corrected_correlation` does all of it for a set of utterances, null-corrected
(:func:`reference_noise`: the same statistics on permuted scores) with bootstrap intervals
(utterances resampled jointly for rho and reliability); :func:`disattenuated_value` is the
one set-level formula, also behind the context-mixing gain rho(CA, SM_H) - rho(CA, SM_X), each
side disattenuated by its own reference's reliability.

Assumption: the two halves are parallel measurements (same truth, independent noise
of equal size), which holds by construction for disjoint, identically drawn SPES
perturbations. Spearman-Brown treats a map as a mean over perturbations; the
reducer ``max2d`` is not linear, so extrapolated reliabilities of max-pooled maps
are approximations.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import compare

__all__ = [
    "split_half_reliability", "spearman_brown", "reliability_at", "budget_for_reliability",
    "noise_ceiling", "disattenuate", "convergence_curve", "RELIABILITY_FLOOR", "chance_corrected", "clip_half", "ReferenceNoise",
    "reference_noise", "CorrectedCorrelation", "corrected_correlation", "disattenuated_value",
    "corrected_reliability", "SingleMapDisattenuation",
    "single_map_disattenuation", "BudgetRule", "budget_rule", "interval_width",
    "noise_draws", "row_moments", "pooled_pearson", "NoiseMoments", "noise_moments", "token_weights",
    "token_bootstrap_replicates", "replicate_interval", "token_bootstrap_disattenuated",
]


def _prepare(m: np.ndarray, reduce: str | None, factor: int, normalization: str) -> np.ndarray:
    x = np.asarray(m, dtype=np.float64)
    if reduce is not None:
        x = compare.reduce_to_encoder_grid(x, method=reduce, factor=factor)
    return compare.normalize(x, normalization)


def split_half_reliability(half_a: np.ndarray, half_b: np.ndarray, reduce: str | None = None,
                           normalization: str = "token_z", factor: int = 2,
                           method: str = "pearson") -> float:
    """Correlation between the two independent halves of one utterance's saliency map.

    Parameters
    ----------
    half_a, half_b : np.ndarray
        The two halves (disjoint perturbations), same shape: ``tokens x frames x mel``
        (I x T x F) for SM_X or ``tokens x enc_frames`` (I x T') for SM_H.
    reduce : str or None
        Reducer (a key of :data:`compare.REDUCERS`) applied to each half first, exactly
        as in the comparison; ``None`` compares the maps as given.
    normalization : str
        Normalization (a key of :data:`compare.NORMALIZERS`), as in the comparison.
    factor : int
        Encoder time subsampling, for the reducer.
    method : str
        ``"pearson"`` (classical reliability) or ``"spearman"``.

    Returns
    -------
    float
        The half-budget reliability (NaN if a half is constant). Use
        :func:`spearman_brown` to get that of the full map.
    """
    a = np.asarray(half_a)
    b = np.asarray(half_b)
    if a.shape != b.shape:
        raise ValueError(f"the two halves differ in shape: {a.shape} vs {b.shape}")
    return compare.correlation(_prepare(a, reduce, factor, normalization),
                               _prepare(b, reduce, factor, normalization), method=method)


def spearman_brown(r: float | np.ndarray, k: float | np.ndarray = 2.0) -> float | np.ndarray:
    """Reliability of a measurement ``k`` times as long: ``k r / (1 + (k - 1) r)``.

    ``k = 2`` turns a split-half reliability into that of the full map (twice the
    perturbations). ``k < 1`` shortens. ``r`` and ``k`` broadcast (arrays give arrays).
    Reliabilities outside [-1, 1] raise ``ValueError``.
    """
    k_arr = np.asarray(k, dtype=np.float64)
    if np.any(k_arr <= 0):
        raise ValueError(f"k (length ratio) must be positive, got {k}")
    k = k_arr
    arr = np.asarray(r, dtype=np.float64)
    if np.any(np.abs(arr[np.isfinite(arr)]) > 1):
        raise ValueError(f"a reliability must lie in [-1, 1], got {r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = k * arr / (1.0 + (k - 1.0) * arr)
    return float(out) if out.ndim == 0 else out


def reliability_at(r_at_n: float | np.ndarray, n: float, m: float | np.ndarray) -> float | np.ndarray:
    """Predicted reliability with ``m`` perturbations (scalar or array) from ``r_at_n`` measured with ``n``."""
    m_arr = np.asarray(m, dtype=np.float64)
    if n <= 0 or np.any(m_arr <= 0):
        raise ValueError(f"perturbation counts must be positive, got n={n}, m={m}")
    return spearman_brown(r_at_n, m_arr / n)


def budget_for_reliability(r_at_n: float, n: float, target: float = 0.9) -> float:
    """Perturbations needed to reach reliability ``target`` (inverse Spearman-Brown).

    Parameters
    ----------
    r_at_n : float
        Reliability measured with ``n`` perturbations (in (0, 1)).
    n : float
        Perturbation count behind ``r_at_n`` (e.g. half the SPES budget for a split half).
    target : float
        Desired reliability in (0, 1).

    Returns
    -------
    float
        ``n * target (1 - r) / (r (1 - target))`` (not rounded); ``inf`` if ``r <= 0``.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target reliability must be in (0, 1), got {target}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not np.isfinite(r_at_n) or r_at_n <= 0:
        return float("inf")
    if r_at_n >= 1:
        return 0.0
    return float(n * target * (1.0 - r_at_n) / (r_at_n * (1.0 - target)))


def noise_ceiling(r_full: float | np.ndarray) -> float | np.ndarray:
    """Highest correlation a noise-free map can reach with a map of reliability ``r_full``: ``sqrt(max(r, 0))``."""
    arr = np.sqrt(np.maximum(np.asarray(r_full, dtype=np.float64), 0.0))
    return float(arr) if arr.ndim == 0 else arr


def disattenuate(rho: float | np.ndarray, r_full: float | np.ndarray) -> float | np.ndarray:
    """Correlation corrected for the saliency's noise: ``rho / sqrt(r_full)``; NaN where ``r_full <= 0``.

    CA is deterministic (reliability 1), so only the saliency's reliability enters.
    The result can exceed 1 when ``r_full`` is underestimated; it is not clipped.
    """
    rho_a = np.asarray(rho, dtype=np.float64)
    r = np.asarray(r_full, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(r > 0, rho_a / np.sqrt(np.where(r > 0, r, 1.0)), np.nan)
    return float(out) if out.ndim == 0 else out


def convergence_curve(snapshots: dict, final: np.ndarray, final_half_a: np.ndarray, final_half_b: np.ndarray,
                      n_final: int, reduce: str | None = None, normalization: str = "token_z",
                      factor: int = 2) -> dict[str, np.ndarray]:
    """How a SPES map converges with the number of perturbations.

    Parameters
    ----------
    snapshots : ``n -> (full, half_a, half_b)`` maps after the first ``n`` perturbations
        (``tokens x frames x mel`` or ``tokens x enc_frames``).
    final, final_half_a, final_half_b : the maps after all ``n_final`` perturbations.
    reduce : reducer to the encoder grid applied before comparing (``None`` = full resolution).

    Returns
    -------
    dict of arrays over the budgets ``n`` (snapshots then ``n_final``):
    ``n``; ``rho_to_final``: Pearson of the (normalized) map at ``n`` with the final map
    (NaN at ``n_final``; the final map *contains* the earlier perturbations, so this
    overstates agreement with an independent map); ``split_half``: Pearson of the two
    independent halves at ``n``; ``reliability``: Spearman-Brown step-up of ``split_half``
    to the full ``n`` (the expected correlation of two independent maps of ``n``
    perturbations each).
    """
    budgets = sorted(int(k) for k in snapshots) + [int(n_final)]
    maps = {int(k): v for k, v in snapshots.items()}
    maps[int(n_final)] = (final, final_half_a, final_half_b)
    ref = _prepare(final, reduce, factor, normalization).ravel()
    rho, half = [], []
    for n in budgets:
        full, a, b = maps[n]
        rho.append(np.nan if n == n_final else
                   compare.correlation(_prepare(full, reduce, factor, normalization).ravel(), ref))
        half.append(split_half_reliability(a, b, reduce=reduce, normalization=normalization, factor=factor))
    half_arr = np.asarray(half, dtype=np.float64)
    return {"n": np.asarray(budgets), "rho_to_final": np.asarray(rho, dtype=np.float64),
            "split_half": half_arr, "reliability": np.asarray(spearman_brown(half_arr, 2.0), dtype=np.float64)}


# --------------------------------------------------------------------------- null-calibrated noise

#: below this corrected full-map reliability a disattenuated value is "not estimable"
RELIABILITY_FLOOR = 0.3


def chance_corrected(x: float | np.ndarray, x_null: float | np.ndarray) -> float | np.ndarray:
    """``(x - x0) / (1 - x0)``: a correlation measured against what the procedure gives on
    noise (``x0``), rescaled so that the null maps to 0 and a perfect value stays 1.
    NaN where ``x0 >= 1``."""
    x = np.asarray(x, dtype=np.float64)
    x0 = np.asarray(x_null, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(x0 < 1, (x - x0) / (1.0 - np.where(x0 < 1, x0, 0.0)), np.nan)
    return float(out) if out.ndim == 0 else out


def clip_half(r: float | np.ndarray) -> float | np.ndarray:
    """A half-budget reliability clipped to ``[0, 1)`` before Spearman-Brown (a negative
    split-half correlation means "no reliable signal", not a reliability below 0; NaN stays NaN)."""
    out = np.clip(np.asarray(r, dtype=np.float64), 0.0, 1.0 - 1e-9)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class ReferenceNoise:
    """The noise of one stochastic reference map (one utterance), measured on its own perturbations.

    ``r_half_splits``: split-half reliability of ``n_splits`` random splits of the
    perturbations into two halves (balanced per level); ``r_half_null``: the same
    statistic with the per-perturbation scores permuted across perturbations (masks,
    segmentation and reducer kept: what the procedure gives on pure noise);
    ``null_maps``: the ``n_null`` permuted full maps on the comparison grid
    (``tokens x positions``, reduced, not normalized), for the null of rho(E, reference).
    """

    r_half_splits: np.ndarray
    r_half_null: np.ndarray
    null_maps: tuple[np.ndarray, ...]

    @property
    def r_half(self) -> float:
        return float(np.nanmean(self.r_half_splits)) if np.any(np.isfinite(self.r_half_splits)) else float("nan")

    @property
    def r_half_0(self) -> float:
        return float(np.nanmean(self.r_half_null)) if np.any(np.isfinite(self.r_half_null)) else float("nan")

    @property
    def r_half_corrected(self) -> float:
        """Null-corrected half reliability, clipped to [0, 1)."""
        return float(clip_half(chance_corrected(self.r_half, self.r_half_0)))

    @property
    def reliability(self) -> float:
        """Null-corrected full-map reliability: Spearman-Brown (k = 2) of :attr:`r_half_corrected`."""
        return float(spearman_brown(self.r_half_corrected, 2.0))

    def rho_null(self, explanation_map: np.ndarray, normalization: str = "token_z", method: str = "pearson") -> float:
        """Mean correlation of an explanation (``tokens x positions``) with the null maps."""
        e = compare.normalize(np.asarray(explanation_map, dtype=np.float64), normalization)
        vals = [compare.correlation(e, compare.normalize(m, normalization), method) for m in self.null_maps]
        return float(np.nanmean(vals)) if np.any(np.isfinite(vals)) else float("nan")


def noise_draws(seed: int, n_splits: int, n_null: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeds of the random splits and of the score permutations of :func:`reference_noise`
    (and :func:`noise_moments`) for one map's ``seed``: ``(n_splits,), (n_null,)``."""
    ss = np.random.SeedSequence(int(seed)).generate_state(n_splits + n_null)
    return ss[:n_splits], ss[n_splits:]


def reference_noise(resample: Any, split_of: Any, reduce: str | None = None, normalization: str = "token_z",
                    n_splits: int = 8, n_null: int = 8, seed: int = 0, factor: int = 2) -> ReferenceNoise:
    """Split-half reliability over random splits and its permutation null, for one SPES map.

    Parameters
    ----------
    resample : ``resample(halves=None, scores=None) -> (full, half_a, half_b)``, e.g.
        :meth:`~.explanations.Explanation.resample` (maps ``tokens x frames x mel`` or
        ``tokens x positions``).
    split_of : the run's :class:`~.spes.SpesDesign` (for ``random_split`` and ``permuted_scores``).
    reduce, normalization, factor : exactly as in the comparison.
    n_splits, n_null : random splits / score permutations.
    seed : seed of the splits and permutations (derive it per map).

    No forward pass is run: maps are rebuilt from the stored per-perturbation scores.
    """
    if n_splits < 1 or n_null < 1:
        raise ValueError(f"need at least one split and one permutation, got n_splits={n_splits}, n_null={n_null}")
    split_seeds, null_seeds = noise_draws(seed, n_splits, n_null)
    splits = []
    for s in split_seeds:
        _, a, b = resample(halves=split_of.random_split(int(s)))
        splits.append(split_half_reliability(a, b, reduce, normalization, factor))
    nulls, maps = [], []
    for s in null_seeds:
        full, a, b = resample(scores=split_of.permuted_scores(int(s)))
        nulls.append(split_half_reliability(a, b, reduce, normalization, factor))
        maps.append(compare.reduce_to_encoder_grid(full, reduce, factor) if reduce else np.asarray(full, np.float64))
    return ReferenceNoise(np.asarray(splits, dtype=np.float64), np.asarray(nulls, dtype=np.float64), tuple(maps))


@dataclass(frozen=True)
class CorrectedCorrelation:
    """rho(explanation, reference) over utterances, raw and null-corrected, with the
    reference's null-corrected reliability and the disattenuated value.

    Per utterance (``utterances``): ``rho``, ``rho_null``, ``rho_corrected``
    (:func:`chance_corrected`), ``r_half`` (mean over random splits), ``r_half_null``,
    ``reliability`` (corrected, clipped, Spearman-Brown). Set level
    (:class:`~.verdicts.Estimate`, Fisher z means; an interval only from
    ``verdicts.MIN_UTTERANCES`` utterances on): ``rho``, ``rho_corrected``,
    ``disattenuated`` = Fisher mean of ``rho_corrected`` / sqrt(mean ``reliability``)
    (NaN, "not estimable", where the mean reliability is below ``floor``).
    """

    rho_per_utterance: np.ndarray
    rho_null_per_utterance: np.ndarray
    rho_corrected_per_utterance: np.ndarray
    r_half_per_utterance: np.ndarray
    r_half_null_per_utterance: np.ndarray
    reliability_per_utterance: np.ndarray
    rho: Any
    rho_corrected: Any
    reliability: float
    disattenuated: Any
    floor: float

    @property
    def estimable(self) -> bool:
        return bool(np.isfinite(self.reliability) and self.reliability >= self.floor)


def disattenuated_value(rho_corrected: np.ndarray, reliability: np.ndarray, floor: float = RELIABILITY_FLOOR) -> float:
    """Set-level disattenuated correlation: Fisher-z mean of the per-utterance null-corrected
    rho divided by sqrt(mean corrected reliability); NaN ("not estimable") below ``floor``."""
    from . import verdicts

    rel = np.asarray(reliability, dtype=np.float64)
    r = np.nanmean(rel) if np.any(np.isfinite(rel)) else np.nan
    if not np.isfinite(r) or r < floor:
        return float("nan")
    return verdicts.fisher_mean(rho_corrected) / np.sqrt(r)


def corrected_reliability(r_half: np.ndarray, r_half_null: np.ndarray) -> np.ndarray:
    """Per-utterance full-map reliability: the half reliability null-corrected, clipped to
    [0, 1) and stepped up with Spearman-Brown (k = 2)."""
    return np.asarray(spearman_brown(clip_half(chance_corrected(r_half, r_half_null)), 2.0), dtype=np.float64)


def corrected_correlation(rho: Sequence[float], rho_null: Sequence[float], r_half: Sequence[float],
                          r_half_null: Sequence[float], floor: float = RELIABILITY_FLOOR,
                          n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05,
                          min_utterances: int | None = None) -> CorrectedCorrelation:
    """Set-level raw, null-corrected and disattenuated correlation from per-utterance values.

    The disattenuated value's interval resamples utterances jointly for rho and
    reliability (percentile bootstrap), only from ``min_utterances`` utterances on.
    """
    from . import verdicts

    mu = verdicts.MIN_UTTERANCES if min_utterances is None else int(min_utterances)
    rho = np.asarray(rho, dtype=np.float64)
    rho0 = np.asarray(rho_null, dtype=np.float64)
    rh = np.asarray(r_half, dtype=np.float64)
    rh0 = np.asarray(r_half_null, dtype=np.float64)
    if not (rho.shape == rho0.shape == rh.shape == rh0.shape) or rho.ndim != 1:
        raise ValueError(f"need one value per utterance everywhere: rho {rho.shape}, rho_null {rho0.shape}, "
                         f"r_half {rh.shape}, r_half_null {rh0.shape}")
    rc = np.asarray(chance_corrected(rho, rho0), dtype=np.float64)
    rel = corrected_reliability(rh, rh0)
    kw = dict(n_bootstrap=n_bootstrap, seed=seed, alpha=alpha, min_utterances=mu)

    def dis(rows: Any) -> float:
        return disattenuated_value(rc[rows], rel[rows], floor)

    est = dis(slice(None))
    lo = hi = float("nan")
    ok = np.isfinite(rc) & np.isfinite(rel)
    if int(ok.sum()) >= mu and np.isfinite(est):
        idx = np.flatnonzero(ok)
        lo, hi = compare.resampled_interval(lambda row: dis(idx[row]), idx.size, n_bootstrap, seed, alpha)
    mean_rel = float(np.nanmean(rel)) if np.any(np.isfinite(rel)) else float("nan")
    return CorrectedCorrelation(
        rho_per_utterance=rho, rho_null_per_utterance=rho0, rho_corrected_per_utterance=rc,
        r_half_per_utterance=rh, r_half_null_per_utterance=rh0, reliability_per_utterance=rel,
        rho=verdicts.set_estimate(rho, average="fisher", **kw),
        rho_corrected=verdicts.set_estimate(rc, average="fisher", **kw), reliability=mean_rel,
        disattenuated=verdicts.Estimate(float(est), lo, hi, int(ok.sum()),
                                        "Fisher z mean of null-corrected rho / sqrt(mean corrected reliability)",
                                        mu),
        floor=float(floor))


@dataclass(frozen=True)
class SingleMapDisattenuation:
    """rho(E, reference) of one utterance, null-corrected and disattenuated by the reference's
    own corrected reliability; ``lo``/``hi``: a percentile interval of the disattenuated value
    from resampling the utterance's tokens (reliability and null held fixed)."""

    rho: float
    rho_null: float
    rho_corrected: float
    r_half: float
    r_half_null: float
    reliability: float
    disattenuated: float
    lo: float
    hi: float
    n_tokens: int


def single_map_disattenuation(explanation: np.ndarray, reference: np.ndarray, noise: ReferenceNoise,
                              normalization: str = "token_z", n_bootstrap: int = 1000, seed: int = 0,
                              alpha: float = 0.05) -> SingleMapDisattenuation:
    """Disattenuated correlation of one utterance with a token-bootstrap interval.

    Parameters
    ----------
    explanation, reference : ``tokens x positions`` maps on the comparison grid (reference
        already reduced).
    noise : the reference's :class:`ReferenceNoise` (same reducer and normalization).
    """
    e = compare.normalize(np.asarray(explanation, dtype=np.float64), normalization)
    r = compare.normalize(np.asarray(reference, dtype=np.float64), normalization)
    if e.shape != r.shape:
        raise ValueError(f"explanation {e.shape} and reference {r.shape} differ in shape")
    rho = compare.correlation(e, r)
    rho0 = noise.rho_null(explanation, normalization)
    rel = noise.reliability
    den = np.sqrt(rel) if np.isfinite(rel) and rel > 0 else np.nan
    rc = float(chance_corrected(rho, rho0))
    idx = np.random.default_rng(seed).integers(0, e.shape[0], size=(n_bootstrap, e.shape[0]))
    boot = np.array([chance_corrected(compare.correlation(e[row], r[row]), rho0) for row in idx]) / den
    lo, hi = compare.percentile_interval(boot, alpha)
    return SingleMapDisattenuation(float(rho), float(rho0), rc, noise.r_half, noise.r_half_0, float(rel),
                                   float(rc / den), float(lo), float(hi), int(e.shape[0]))


# --------------------------------------------------------------------------- token bootstrap
# With a handful of utterances an interval over utterances means little, but the tokens of each
# utterance are many: resampling them (each token row of every map with it) shows how far the
# set-level value moves with the tokens these clips happen to have, conditional on the clips.
# A pooled Pearson correlation over the cells of resampled rows is a function of per-row sums,
# so every replicate costs a weighted sum instead of a new map (:func:`row_moments`).


def row_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row sums behind a Pearson correlation over all cells of two maps.

    ``a``, ``b``: equally shaped ``tokens x positions`` maps (already reduced and normalized
    as in the comparison). Returns ``tokens x 6``: cells, sum a, sum b, sum ab, sum a^2,
    sum b^2 of each row; :func:`pooled_pearson` with unit weights gives
    ``compare.correlation(a, b)``.
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


def noise_moments(resample: Any, split_of: Any, reduce: str | None = None, normalization: str = "token_z",
                  n_splits: int = 8, n_null: int = 8, seed: int = 0, factor: int = 2) -> NoiseMoments:
    """:class:`NoiseMoments` of one map, for exactly the splits and permutations that
    :func:`reference_noise` draws with the same ``seed`` (so unit weights give its values)."""
    split_seeds, null_seeds = noise_draws(seed, n_splits, n_null)

    def moments(kw: dict[str, Any]) -> np.ndarray:
        _, a, b = resample(**kw)
        return row_moments(_prepare(a, reduce, factor, normalization), _prepare(b, reduce, factor, normalization))

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
    from .verdicts import _fisher_z  # the clipping of verdicts.fisher_mean, vectorized over replicates

    rc_, rr, re_, raw_ = (np.asarray(v, dtype=np.float64) for v in (rc, rel_r, rel_e, raws))  # utterances x replicates
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates stay NaN
        if raw:
            return np.tanh(np.nanmean(_fisher_z(raw_), axis=0))
        mr, me = np.nanmean(rr, axis=0), np.nanmean(re_, axis=0)
        z = np.nanmean(_fisher_z(rc_), axis=0)
        return np.where(np.minimum(mr, me) >= floor, np.tanh(z) / np.sqrt(mr * me), np.nan)


def replicate_interval(replicates: np.ndarray, method: str, n: int, alpha: float = 0.05) -> Any:
    """:class:`~.verdicts.Estimate` from bootstrap ``replicates`` (entry 0 the estimate):
    percentile interval, NaN where the estimate or every replicate is NaN."""
    from . import verdicts

    v = np.asarray(replicates, dtype=np.float64)
    lo, hi = compare.percentile_interval(v[1:], alpha) if np.isfinite(v[0]) else (float("nan"), float("nan"))
    return verdicts.Estimate(float(v[0]), lo, hi, int(n), method, int(n))


def token_bootstrap_disattenuated(pair: Sequence[np.ndarray], pair_null: Sequence[np.ndarray],
                                  reference: Sequence[NoiseMoments],
                                  explanation: Sequence[NoiseMoments] | None = None,
                                  floor: float = RELIABILITY_FLOOR, n_bootstrap: int = 1000, seed: int = 0,
                                  alpha: float = 0.05, raw: bool = False) -> Any:
    """:func:`token_bootstrap_replicates` with its own weights, as a :class:`~.verdicts.Estimate`
    whose interval resamples every utterance's tokens (the utterances themselves are held
    fixed: the interval says what these clips pin down, not what other clips would give)."""
    w = token_weights([np.asarray(p).shape[0] for p in pair], n_bootstrap, seed)
    reps = token_bootstrap_replicates(pair, pair_null, reference, w, explanation, floor, raw)
    return replicate_interval(reps, f"tokens resampled within each of {len(pair)} utterance(s)", len(pair), alpha)


# --------------------------------------------------------------------------- spending the compute


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
