"""Normalization and correlation of maps on one grid (pipeline steps 7-8 of the study).

7. *Normalization.* Per-token z-scores (``"token_z"``): :func:`normalize`.
8. *Comparison.* Pearson (or Spearman) correlation of the normalized maps, per utterance and
   pooled over all utterances' flattened maps: :func:`correlate`.

Maps must already be on one grid (:func:`.grids.to_comparison_grid`) and cover only the speech
part of an utterance. Numpy and scipy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats as _stats

from .stats import bootstrap_ci

__all__ = ["NORMALIZERS", "CORRELATIONS", "normalize", "correlation", "correlate", "CorrelationResult"]


def _zscore(x: np.ndarray, axis: tuple[int, ...] | None) -> np.ndarray:
    mean = x.mean(axis=axis, keepdims=True)
    n = x.size if axis is None else int(np.prod([x.shape[a] for a in axis]))
    if n < 2:
        return np.zeros_like(x)
    std = x.std(axis=axis, ddof=1, keepdims=True)
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, (x - mean) / safe, 0.0)


def _token_z(maps: np.ndarray) -> np.ndarray:
    if maps.ndim < 2:
        raise ValueError(
            f"token_z needs tokens as the first axis (tokens x ...), got a {maps.ndim}-D map of shape "
            f"{maps.shape}; use normalization='map_z' for a single map")
    return _zscore(maps, axis=tuple(range(1, maps.ndim)))


def _map_z(maps: np.ndarray) -> np.ndarray:
    return _zscore(maps, axis=None)


def _none(maps: np.ndarray) -> np.ndarray:
    return maps.copy()


#: Normalizations: ``"token_z"`` (per token z-score over all its cells, sample std
#: ddof=1; a constant token -> zeros), ``"map_z"`` (one z-score over the whole map),
#: ``"none"``.
NORMALIZERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "token_z": _token_z,
    "map_z": _map_z,
    "none": _none,
}


def normalize(maps: np.ndarray, normalization: str) -> np.ndarray:
    """Normalize one utterance's maps.

    Parameters
    ----------
    maps : np.ndarray
        ``tokens x ...`` (e.g. I x T' or I x T x F); token axis first.
    normalization : str
        A key of :data:`NORMALIZERS`. ``"token_z"``: every token's map gets mean 0 and
        sample standard deviation 1 (ddof=1) over all its cells; a constant token
        becomes all zeros (no NaN). ``"map_z"``: one z-score over all cells.
        ``"none"``: a float64 copy.

    Returns
    -------
    np.ndarray
        Same shape as ``maps``, float64.
    """
    if normalization not in NORMALIZERS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {sorted(NORMALIZERS)}")
    x = np.asarray(maps, dtype=np.float64)
    if x.size == 0:
        raise ValueError(f"cannot normalize an empty map of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("map contains NaN or infinite values; clean it before normalizing")
    return NORMALIZERS[normalization](x)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if den == 0.0:
        return float("nan")
    return float(np.clip(np.dot(a, b) / den, -1.0, 1.0))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return _pearson(_stats.rankdata(a), _stats.rankdata(b))


#: Correlation coefficients on flattened maps; NaN if either map is constant.
CORRELATIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "pearson": _pearson,
    "spearman": _spearman,
}


def correlation(a: np.ndarray, b: np.ndarray, method: str = "pearson") -> float:
    """Correlation of two equally shaped arrays, flattened (NaN if one is constant)."""
    if method not in CORRELATIONS:
        raise ValueError(f"unknown correlation {method!r}; choose one of {sorted(CORRELATIONS)}")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return CORRELATIONS[method](a.ravel(), b.ravel())


@dataclass(frozen=True)
class CorrelationResult:
    """Correlation between two sets of maps over a set of utterances.

    Attributes
    ----------
    per_utterance : np.ndarray
        One correlation per utterance (``utterances``); NaN where a map was constant.
    mean : float
        Mean of the finite per-utterance correlations.
    ci_low, ci_high : float
        Bootstrap percentile interval (95% by default) of ``mean`` over utterances.
    pooled : float
        One correlation over all utterances' normalized maps flattened together.
    n_utterances : int
        Number of utterances (including any NaN ones).
    method, normalization : str
        How the correlation was computed.
    """

    per_utterance: np.ndarray
    mean: float
    ci_low: float
    ci_high: float
    pooled: float
    n_utterances: int
    method: str
    normalization: str

    def as_dict(self) -> dict:
        """A JSON-friendly summary (per-utterance values as a list)."""
        return {"per_utterance": [float(v) for v in self.per_utterance], "mean": self.mean,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "pooled": self.pooled,
                "n_utterances": self.n_utterances, "method": self.method,
                "normalization": self.normalization}


def _check_pairs(a_maps: Sequence[np.ndarray], b_maps: Sequence[np.ndarray],
                 names: tuple[str, str] = ("ca_maps", "sal_maps")) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(a_maps) != len(b_maps):
        raise ValueError(f"{names[0]} has {len(a_maps)} utterances but {names[1]} has {len(b_maps)}")
    if len(a_maps) == 0:
        raise ValueError(f"no utterances given ({names[0]} and {names[1]} are empty)")
    out = []
    for i, (a, b) in enumerate(zip(a_maps, b_maps)):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(
                f"utterance {i}: {names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}; "
                "reduce SM_X with reduce_to_encoder_grid and crop both to the speech part")
        out.append((a, b))
    return out


def correlate(ca_maps: Sequence[np.ndarray], sal_maps: Sequence[np.ndarray], method: str,
              normalization: str, n_bootstrap: int = 1000, seed: int = 0,
              alpha: float = 0.05) -> CorrelationResult:
    """Correlate cross-attention with saliency, per utterance and pooled.

    Parameters
    ----------
    ca_maps : sequence of np.ndarray
        One ``tokens x enc_frames`` (I x T') map per utterance (any equal shapes work).
    sal_maps : sequence of np.ndarray
        Saliency on the same grid, same shapes as ``ca_maps`` (reduce SM_X first).
    method : str
        ``"pearson"`` or ``"spearman"``.
    normalization : str
        A key of :data:`NORMALIZERS`, applied to every map before correlating.
    n_bootstrap : int
        Bootstrap resamples of utterances for the interval of the mean.
    seed : int
        Seed of the bootstrap.
    alpha : float
        1 - coverage of the interval (0.05: 95%).

    Returns
    -------
    CorrelationResult
    """
    pairs = _check_pairs(ca_maps, sal_maps)
    if method not in CORRELATIONS:
        raise ValueError(f"unknown correlation {method!r}; choose one of {sorted(CORRELATIONS)}")
    norm = [(normalize(a, normalization).ravel(), normalize(b, normalization).ravel()) for a, b in pairs]
    per = np.array([CORRELATIONS[method](a, b) for a, b in norm], dtype=np.float64)
    pooled = CORRELATIONS[method](np.concatenate([a for a, _ in norm]), np.concatenate([b for _, b in norm]))
    est, lo, hi = bootstrap_ci(per, n_bootstrap=n_bootstrap, seed=seed, alpha=alpha)
    return CorrelationResult(per_utterance=per, mean=est, ci_low=lo, ci_high=hi, pooled=float(pooled),
                             n_utterances=len(per), method=method, normalization=normalization)
