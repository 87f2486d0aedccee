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
(:func:`~.map_noise.reference_noise`: the same statistics on permuted scores) with bootstrap intervals
(utterances resampled jointly for rho and reliability); :func:`disattenuated_value` is the
one set-level formula, also behind the context-mixing gain rho(CA, SM_H) - rho(CA, SM_X), each
side disattenuated by its own reference's reliability.

Assumption: the two halves are parallel measurements (same truth, independent noise
of equal size), which holds by construction for disjoint, identically drawn SPES
perturbations. Spearman-Brown treats a map as a mean over perturbations; the
reducer ``max2d`` is not linear, so extrapolated reliabilities of max-pooled maps
are approximations (on synthetic max-pooled maps with a flat, tied background it
underestimates: tests/test_reliability.py). :func:`~.map_noise.bootstrap_reliability` estimates
the full-budget reliability without the step-up (perturbations resampled with replacement, the
reducer applied to every replicate); ``map_noise.reference_noise(..., method="bootstrap")`` uses it.
The noise of one map itself (its splits, its null, the bootstrap) is measured in :mod:`.map_noise`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .correlate import correlation, normalize
from .grids import reduce_to_encoder_grid
from .stats import MIN_UTTERANCES, Estimate, fisher_mean, percentile_interval, resampled_interval, set_estimate

__all__ = [
    "split_half_reliability", "spearman_brown", "reliability_at", "budget_for_reliability",
    "noise_ceiling", "disattenuate", "convergence_curve", "RELIABILITY_FLOOR", "chance_corrected", "clip_half",
    "CorrectedCorrelation", "corrected_correlation",
    "disattenuated_value", "corrected_reliability", "SingleMapDisattenuation", "single_map_disattenuation",
    "prepared",
]


def prepared(m: np.ndarray, reducer: str | None, normalization: str, factor: int = 2) -> np.ndarray:
    """A map as the comparison sees it: reduced to the encoder grid by ``reducer`` (``None``: already
    there) and normalized."""
    x = np.asarray(m, dtype=np.float64)
    if reducer is not None:
        x = reduce_to_encoder_grid(x, reducer, factor)
    return normalize(x, normalization)


def split_half_reliability(half_a: np.ndarray, half_b: np.ndarray, reducer: str | None,
                           normalization: str, factor: int = 2,
                           method: str = "pearson") -> float:
    """Correlation between the two independent halves of one utterance's saliency map.

    Parameters
    ----------
    half_a, half_b : np.ndarray
        The two halves (disjoint perturbations), same shape: ``tokens x frames x mel``
        (I x T x F) for SM_X or ``tokens x enc_frames`` (I x T') for SM_H.
    reducer : str or None
        Reducer (a key of :data:`.grids.REDUCERS`) applied to each half first, exactly
        as in the comparison; ``None`` compares the maps as given.
    normalization : str
        Normalization (a key of :data:`~.correlate.NORMALIZERS`), as in the comparison.
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
    return correlation(prepared(a, reducer, normalization, factor),
                               prepared(b, reducer, normalization, factor), method=method)


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
                      n_final: int, reducer: str | None, normalization: str,
                      factor: int = 2) -> dict[str, np.ndarray]:
    """How a SPES map converges with the number of perturbations.

    Parameters
    ----------
    snapshots : ``n -> (full, half_a, half_b)`` maps after the first ``n`` perturbations
        (``tokens x frames x mel`` or ``tokens x enc_frames``).
    final, final_half_a, final_half_b : the maps after all ``n_final`` perturbations.
    reducer : reducer to the encoder grid applied before comparing (``None`` = full resolution).

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
    ref = prepared(final, reducer, normalization, factor).ravel()
    rho, half = [], []
    for n in budgets:
        full, a, b = maps[n]
        rho.append(np.nan if n == n_final else
                   correlation(prepared(full, reducer, normalization, factor).ravel(), ref))
        half.append(split_half_reliability(a, b, reducer, normalization, factor))
    half_arr = np.asarray(half, dtype=np.float64)
    return {"n": np.asarray(budgets), "rho_to_final": np.asarray(rho, dtype=np.float64),
            "split_half": half_arr, "reliability": np.asarray(spearman_brown(half_arr, 2.0), dtype=np.float64)}


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
class CorrectedCorrelation:
    """rho(explanation, reference) over utterances, raw and null-corrected, with the
    reference's null-corrected reliability and the disattenuated value.

    Per utterance (``utterances``): ``rho``, ``rho_null``, ``rho_corrected``
    (:func:`chance_corrected`), ``r_half`` (mean over random splits), ``r_half_null``,
    ``reliability`` (corrected, clipped, Spearman-Brown). Set level
    (:class:`~.stats.Estimate`, Fisher z means; an interval only from
    ``MIN_UTTERANCES`` utterances on): ``rho``, ``rho_corrected``,
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
    rel = np.asarray(reliability, dtype=np.float64)
    r = np.nanmean(rel) if np.any(np.isfinite(rel)) else np.nan
    if not np.isfinite(r) or r < floor:
        return float("nan")
    return fisher_mean(rho_corrected) / np.sqrt(r)


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
    mu = MIN_UTTERANCES if min_utterances is None else int(min_utterances)
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
        lo, hi = resampled_interval(lambda row: dis(idx[row]), idx.size, n_bootstrap, seed, alpha)
    mean_rel = float(np.nanmean(rel)) if np.any(np.isfinite(rel)) else float("nan")
    return CorrectedCorrelation(
        rho_per_utterance=rho, rho_null_per_utterance=rho0, rho_corrected_per_utterance=rc,
        r_half_per_utterance=rh, r_half_null_per_utterance=rh0, reliability_per_utterance=rel,
        rho=set_estimate(rho, average="fisher", **kw),
        rho_corrected=set_estimate(rc, average="fisher", **kw), reliability=mean_rel,
        disattenuated=Estimate(float(est), lo, hi, int(ok.sum()),
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


def single_map_disattenuation(explanation: np.ndarray, reference: np.ndarray, noise: Any,
                              normalization: str = "token_z", n_bootstrap: int = 1000, seed: int = 0,
                              alpha: float = 0.05) -> SingleMapDisattenuation:
    """Disattenuated correlation of one utterance with a token-bootstrap interval.

    Parameters
    ----------
    explanation, reference : ``tokens x positions`` maps on the comparison grid (reference
        already reduced).
    noise : the reference's :class:`~.map_noise.ReferenceNoise` (same reducer and normalization).
    """
    e = normalize(np.asarray(explanation, dtype=np.float64), normalization)
    r = normalize(np.asarray(reference, dtype=np.float64), normalization)
    if e.shape != r.shape:
        raise ValueError(f"explanation {e.shape} and reference {r.shape} differ in shape")
    rho = correlation(e, r)
    rho0 = noise.rho_null(explanation, normalization)
    rel = noise.reliability
    den = np.sqrt(rel) if np.isfinite(rel) and rel > 0 else np.nan
    rc = float(chance_corrected(rho, rho0))
    idx = np.random.default_rng(seed).integers(0, e.shape[0], size=(n_bootstrap, e.shape[0]))
    boot = np.array([chance_corrected(correlation(e[row], r[row]), rho0) for row in idx]) / den
    lo, hi = percentile_interval(boot, alpha)
    return SingleMapDisattenuation(float(rho), float(rho0), rc, noise.r_half, noise.r_half_0, float(rel),
                                   float(rc / den), float(lo), float(hi), int(e.shape[0]))
