"""The two grids of the study and the one way between them.

Every map lives on one of two grids (``explain.explanation.GRIDS``): the **input** grid,
``tokens x frames x mel`` (10 ms log-mel frames x 80 bins, speech frames only), and the
**encoder** grid, ``tokens x positions`` (20 ms encoder positions, speech only), where
cross-attention lives. Pipeline step 6 of the study (``shared/PAPER.md``): an input-grid map is
brought to the encoder grid by a *reducer* over windows of ``factor`` frames (Whisper's time
subsampling, 2) times all mel bins, :func:`reduce_to_encoder_grid`; the study chose 2D max
pooling. :func:`to_comparison_grid` is the one place where any map is put on the grid of the
comparison (input-grid maps reduced, encoder-grid maps as they are); :func:`expand_to_input_grid`
goes back (to delete the cells an encoder-grid map ranks). Numpy only; nothing loads a model.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = ["REDUCERS", "GRID_NAMES", "encoder_length", "reduce_to_encoder_grid", "to_comparison_grid",
           "expand_to_input_grid"]

#: the grids a map can live on
GRID_NAMES = ("input", "encoder")


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


def reduce_to_encoder_grid(sm_x: np.ndarray, reducer: str, factor: int = 2) -> np.ndarray:
    """Reduce input-grid saliency to the cross-attention (encoder) grid.

    Parameters
    ----------
    sm_x : np.ndarray
        Input saliency, ``tokens x frames x mel`` (I x T x F), or one map
        ``frames x mel`` (T x F). Frames are 10 ms input frames of the speech part.
    reducer : str
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
    if reducer not in REDUCERS:
        raise ValueError(f"unknown reducer {reducer!r}; choose one of {sorted(REDUCERS)}")
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    x = np.asarray(sm_x, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"sm_x must be tokens x frames x mel (3-D) or frames x mel (2-D), got shape {x.shape}")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"sm_x has an empty time or mel axis: shape {x.shape}")
    return REDUCERS[reducer](x, int(factor))


def to_comparison_grid(maps: np.ndarray, grid: str, reducer: str, factor: int = 2) -> np.ndarray:
    """A map on the comparison (encoder) grid, float64: an input-grid map (``tokens x frames x
    mel``) reduced by ``reducer`` (:func:`reduce_to_encoder_grid`), an encoder-grid map
    (``tokens x positions``) as it is. The one place where maps meet on one grid."""
    if grid not in GRID_NAMES:
        raise ValueError(f"grid {grid!r} is invalid: choose one of {list(GRID_NAMES)}")
    if grid == "input":
        return reduce_to_encoder_grid(maps, reducer, factor)
    return np.asarray(maps, dtype=np.float64)


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
