"""Comparing cross-attention with saliency: reducers, normalization, correlations.

Pipeline steps 6-9 of the study (``shared/PAPER.md``):

6. *Matching shapes.* Input saliency SM_X (``tokens x frames x mel``, I x T x F) is
   reduced to the cross-attention grid (``tokens x enc_frames``, I x T') with a
   window of ``factor`` input frames (the encoder's time subsampling; 2 for
   Whisper, so ``T' = ceil(T / 2)``) times all mel bins: :func:`reduce_to_encoder_grid`.
   The inverse direction (for deleting cells ranked by CA) is
   :func:`expand_to_input_grid`.
7. *Normalization.* Per-token z-scores (``"token_z"``): :func:`normalize`.
8. *Comparison.* Pearson (or Spearman) correlation of the normalized maps, per
   utterance (then averaged, with a bootstrap interval over utterances) and pooled
   over all utterances' flattened maps: :func:`correlate`.
9. *Context mixing.* A paired bootstrap of per-utterance differences, e.g.
   rho(CA, SM_H) - rho(CA, SM_X): :func:`paired_bootstrap_ci`.

Everything here works on numpy arrays that already cover only the speech part of
an utterance; nothing loads a model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats as _stats

__all__ = [
    "REDUCERS", "NORMALIZERS", "CORRELATIONS",
    "reduce_to_encoder_grid", "expand_to_input_grid", "encoder_length",
    "normalize", "correlation", "correlate", "CorrelationResult",
    "bootstrap_ci", "paired_bootstrap_ci", "bootstrap_indices", "percentile_interval", "resampled_interval",
]

# --------------------------------------------------------------------------- reducers


def encoder_length(n_frames: int, factor: int = 2) -> int:
    """Number of encoder positions T' that cover ``n_frames`` input frames: ``ceil(T / factor)``."""
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    return int(math.ceil(n_frames / factor))


def _windows(x: np.ndarray, factor: int, fn: Callable[..., np.ndarray], axis: tuple[int, ...]) -> np.ndarray:
    """Apply ``fn(window, axis=axis)`` to consecutive time windows of ``factor`` frames.

    ``x`` is ``... x T x C``; windows are ``... x T' x factor x C``; the last
    incomplete window is reduced over the frames that exist.
    """
    t = x.shape[-2]
    n_full = t // factor
    parts = []
    if n_full:
        main = x[..., : n_full * factor, :].reshape(*x.shape[:-2], n_full, factor, x.shape[-1])
        parts.append(fn(main, axis=axis))
    if t % factor:
        tail = x[..., n_full * factor:, :][..., None, :, :]
        parts.append(fn(tail, axis=axis))
    return np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def _max2d(x: np.ndarray, factor: int) -> np.ndarray:
    return _windows(x, factor, np.max, axis=(-2, -1))


def _mean2d(x: np.ndarray, factor: int) -> np.ndarray:
    return _windows(x, factor, np.mean, axis=(-2, -1))


def _max_mel_mean_time(x: np.ndarray, factor: int) -> np.ndarray:
    return _windows(x.max(axis=-1, keepdims=True), factor, np.mean, axis=(-2, -1))


#: Reducers from the input grid (``... x T x F``) to the encoder grid (``... x T'``).
#: ``"max2d"``: 2-D max pooling over ``factor`` frames x all mel bins (the study's choice);
#: ``"max_mel_mean_time"``: max over mel, then mean over ``factor`` frames;
#: ``"mean2d"``: 2-D average pooling.
REDUCERS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "max2d": _max2d,
    "max_mel_mean_time": _max_mel_mean_time,
    "mean2d": _mean2d,
}


def reduce_to_encoder_grid(sm_x: np.ndarray, method: str = "max2d", factor: int = 2) -> np.ndarray:
    """Reduce input-grid saliency to the cross-attention (encoder) grid.

    Parameters
    ----------
    sm_x : np.ndarray
        Input saliency, ``tokens x frames x mel`` (I x T x F), or one map
        ``frames x mel`` (T x F). Frames are 10 ms input frames of the speech part.
    method : str
        A key of :data:`REDUCERS` (``"max2d"``, ``"max_mel_mean_time"``, ``"mean2d"``).
    factor : int
        The encoder's time subsampling (input frames per encoder position; 2 for Whisper).

    Returns
    -------
    np.ndarray
        ``tokens x enc_frames`` (I x T') or ``enc_frames`` (T') for a 2-D input, with
        ``T' = ceil(T / factor)``; the last incomplete window is pooled over the
        frames that exist. float64.
    """
    if method not in REDUCERS:
        raise ValueError(f"unknown reducer {method!r}; choose one of {sorted(REDUCERS)}")
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    x = np.asarray(sm_x, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"sm_x must be tokens x frames x mel (3-D) or frames x mel (2-D), got shape {x.shape}")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"sm_x has an empty time or mel axis: shape {x.shape}")
    return REDUCERS[method](x, int(factor))


def expand_to_input_grid(map_tt: np.ndarray, n_frames: int, n_mel: int, factor: int = 2) -> np.ndarray:
    """Expand an encoder-grid map back onto the input grid (e.g. to delete cells ranked by CA).

    Parameters
    ----------
    map_tt : np.ndarray
        ``tokens x enc_frames`` (I x T') or ``enc_frames`` (T').
    n_frames : int
        Number of input frames T (speech part); must satisfy ``ceil(T / factor) == T'``.
    n_mel : int
        Number of mel bins F.
    factor : int
        Input frames per encoder position.

    Returns
    -------
    np.ndarray
        ``tokens x frames x mel`` (I x T x F), or ``frames x mel`` (T x F) for a 1-D
        input: each encoder position repeated over its ``factor`` input frames and
        all mel bins.
    """
    m = np.asarray(map_tt, dtype=np.float64)
    if m.ndim not in (1, 2):
        raise ValueError(f"map_tt must be tokens x enc_frames or enc_frames, got shape {m.shape}")
    t_enc = encoder_length(n_frames, factor)
    if m.shape[-1] != t_enc:
        raise ValueError(
            f"map has {m.shape[-1]} encoder positions but {n_frames} input frames with factor "
            f"{factor} need ceil({n_frames}/{factor}) = {t_enc}; crop the map to the speech part first")
    if n_mel < 1:
        raise ValueError(f"n_mel must be positive, got {n_mel}")
    rep = np.repeat(m, factor, axis=-1)[..., :n_frames]
    return np.broadcast_to(rep[..., None], (*rep.shape, n_mel)).copy()


# --------------------------------------------------------------------------- normalization


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


def normalize(maps: np.ndarray, method: str = "token_z") -> np.ndarray:
    """Normalize one utterance's maps.

    Parameters
    ----------
    maps : np.ndarray
        ``tokens x ...`` (e.g. I x T' or I x T x F); token axis first.
    method : str
        A key of :data:`NORMALIZERS`. ``"token_z"``: every token's map gets mean 0 and
        sample standard deviation 1 (ddof=1) over all its cells; a constant token
        becomes all zeros (no NaN). ``"map_z"``: one z-score over all cells.
        ``"none"``: a float64 copy.

    Returns
    -------
    np.ndarray
        Same shape as ``maps``, float64.
    """
    if method not in NORMALIZERS:
        raise ValueError(f"unknown normalization {method!r}; choose one of {sorted(NORMALIZERS)}")
    x = np.asarray(maps, dtype=np.float64)
    if x.size == 0:
        raise ValueError(f"cannot normalize an empty map of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("map contains NaN or infinite values; clean it before normalizing")
    return NORMALIZERS[method](x)


# --------------------------------------------------------------------------- correlation


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


def correlate(ca_maps: Sequence[np.ndarray], sal_maps: Sequence[np.ndarray], method: str = "pearson",
              normalization: str = "token_z", n_bootstrap: int = 1000, seed: int = 0,
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


# --------------------------------------------------------------------------- bootstrap


def bootstrap_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Resampling indices ``n_bootstrap x n`` (with replacement), reproducible by ``seed``."""
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    return np.random.default_rng(seed).integers(0, n, size=(n_bootstrap, n))


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
                       alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of ``stat(rows)`` over ``n_bootstrap`` resamplings (with
    replacement, :func:`bootstrap_indices`) of ``n`` units, e.g. utterances whose
    statistic is not a plain function of one value each (a ratio of two means)."""
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
