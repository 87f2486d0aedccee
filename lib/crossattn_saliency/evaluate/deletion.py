"""Faithfulness by deletion: remove what an explanation ranks highest, watch the output break.

Pipeline step 10 of the study (``shared/PAPER.md``, ``shared/SPES.md``):

1. One ranking map per utterance: the per-token normalized maps averaged over
   tokens (:func:`utterance_ranking_map`). Cross-attention (``enc_frames``) is
   brought back to the input grid with :func:`.grids.expand_to_input_grid`.
2. For k = 0, step, ..., 100 percent, set the top-k% cells of the speech part
   (:func:`deletion_masks`) to the occlusion value, decode again and score the WER
   of the new output against the model's original output, in percent, clipped at
   100 (:func:`deletion_curve`).
3. The area under the WER-vs-%deleted curve (:func:`deletion_auc`) in WER-percent
   units: 0 (nothing ever changes) to 100 (the output is wrong from the start).
   Higher = the explanation found what the model needs.

The random rankings the curves are compared with (same-shape floors) are in :mod:`.floors`.
The decoder is passed in as a function, so nothing here loads a model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ..core.progress import bar as tqdm
from .correlate import normalize

__all__ = ["utterance_ranking_map", "deletion_order", "n_cells_to_delete", "deletion_masks", "DeletionCurve",
           "deletion_curve", "deletion_auc", "default_wer", "STUDY_STEP", "curve_percents", "grid_auc"]


#: the study's deletion grid (percent): AUCs on it are comparable with its figures
STUDY_STEP = 5


def utterance_ranking_map(maps: np.ndarray, normalization: str) -> np.ndarray:
    """One ranking map per utterance: per-token normalized maps averaged over tokens.

    Parameters
    ----------
    maps : np.ndarray
        ``tokens x frames x mel`` (SM_X, I x T x F) or ``tokens x enc_frames``
        (CA or SM_H, I x T').
    normalization : str
        A key of :data:`.correlate.NORMALIZERS`, applied before averaging (``"token_z"``
        gives every token equal weight).

    Returns
    -------
    np.ndarray
        ``frames x mel`` (T x F) or ``enc_frames`` (T'), float64.
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim < 2:
        raise ValueError(f"maps must have a token axis first (tokens x ...), got shape {m.shape}")
    if m.shape[0] == 0:
        raise ValueError("maps have no tokens: nothing to rank (was the hypothesis empty?)")
    return normalize(m, normalization).mean(axis=0)


def n_cells_to_delete(percent: float, n_cells: int) -> int:
    """Number of cells in the top ``percent``%: ``round(percent / 100 * n_cells)``, halves rounded up."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be in [0, 100], got {percent}")
    return int(min(n_cells, np.floor(percent * n_cells / 100.0 + 0.5)))


def deletion_order(score_map: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat cell indices from highest to lowest score; ties in a seeded random order.

    Parameters
    ----------
    score_map : np.ndarray
        Any shape (e.g. ``frames x mel``); higher = more important.
    seed : int
        Seed of the tie-breaking order (same seed => same order).

    Returns
    -------
    np.ndarray
        ``cells`` int64 indices into ``score_map.ravel()``.
    """
    s = np.asarray(score_map, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("score_map is empty")
    if not np.all(np.isfinite(s)):
        raise ValueError("score_map contains NaN or infinite values; rank a cleaned map")
    tiebreak = np.random.default_rng(seed).permutation(s.size)
    # lexsort: the last key is the primary one
    return np.lexsort((tiebreak, -s)).astype(np.int64)


def deletion_masks(score_map: np.ndarray, percents: Sequence[float], seed: int = 0) -> Iterator[np.ndarray]:
    """Boolean masks of the top-k% cells of ``score_map``, one per k in ``percents``.

    Parameters
    ----------
    score_map : np.ndarray
        ``frames x mel`` (T x F) or any shape; higher = delete first.
    percents : sequence of float
        Percentages in [0, 100].
    seed : int
        Tie-breaking seed (see :func:`deletion_order`).

    Yields
    ------
    np.ndarray
        bool, shape of ``score_map``, with exactly :func:`n_cells_to_delete` cells set.
        Masks are nested: the top-k cells are a subset of the top-k' cells for k < k'.
    """
    s = np.asarray(score_map)
    order = deletion_order(s, seed)
    for k in percents:
        n = n_cells_to_delete(float(k), s.size)
        mask = np.zeros(s.size, dtype=bool)
        mask[order[:n]] = True
        yield mask.reshape(s.shape)


@dataclass(frozen=True)
class DeletionCurve:
    """WER of re-decoded outputs as more and more top-ranked cells are deleted.

    Attributes
    ----------
    percents : np.ndarray
        ``steps``: percent of the speech part's cells deleted (0..100).
    wer : np.ndarray
        ``steps``: WER in percent against the original output, clipped at 100.
    texts : list of str
        The decoded output at each step.
    n_deleted : np.ndarray
        ``steps``: number of cells deleted.
    """

    percents: np.ndarray
    wer: np.ndarray
    texts: list[str]
    n_deleted: np.ndarray

    @property
    def auc(self) -> float:
        """Area under the curve in WER-percent units (see :func:`deletion_auc`)."""
        return deletion_auc(self.percents, self.wer)

    def auc_on(self, step: float = STUDY_STEP) -> float:
        """The AUC on the ``step`` % grid only (0, step, ..., 100; the study's 5 % by default), from
        the points of this curve on that grid: comparable with the study's figures."""
        return grid_auc(self.percents, self.wer, step)

    def wer_at(self, percent: float) -> float:
        """WER (%) with ``percent`` % of the cells deleted (linear between measured points)."""
        return float(np.interp(float(percent), np.asarray(self.percents, float), np.asarray(self.wer, float)))

    def as_dict(self) -> dict:
        return {"percents": self.percents.tolist(), "wer": self.wer.tolist(), "texts": list(self.texts),
                "n_deleted": self.n_deleted.tolist(), "auc": self.auc}


def default_wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one sentence as a fraction (1.0 = 100%), on the strings as given.

    :func:`crossattn_saliency.metrics.wer` without text normalization, divided by 100.
    """
    from . import metrics

    if not reference.strip():
        raise ValueError("the reference (the model's original output) is empty: WER is undefined; "
                         "skip utterances whose hypothesis is empty")
    return metrics.wer([reference], [hypothesis], normalize=False) / 100.0


def curve_percents(step: float = STUDY_STEP, dense: Sequence[float] = ()) -> np.ndarray:
    """The percents a curve is measured at: the ``step`` grid (0, step, ..., 100) and the ``dense``
    points (e.g. 1, 2 % where curves move fastest), sorted, each once."""
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    extra = np.asarray(list(dense), dtype=np.float64)
    if extra.size and (extra.min() < 0 or extra.max() > 100):
        raise ValueError(f"dense percents must lie within [0, 100], got {sorted(extra.tolist())}")
    grid = np.append(np.arange(0.0, 100.0, float(step)), 100.0)
    return np.unique(np.concatenate([grid, extra]))


def grid_auc(percents: Sequence[float], wer: Sequence[float], step: float = STUDY_STEP) -> float:
    """:func:`deletion_auc` of the points of a curve that lie on the ``step`` % grid (all of the
    grid's points must have been measured)."""
    x, y = np.asarray(percents, dtype=np.float64), np.asarray(wer, dtype=np.float64)
    want = curve_percents(step)
    on = np.isin(np.round(x, 9), np.round(want, 9))
    if on.sum() != want.size:
        raise ValueError(f"the curve lacks points of the {step:g} % grid: has {sorted(x.tolist())}")
    return deletion_auc(x[on], y[on])


def deletion_curve(features: np.ndarray, n_frames: int, score_map: np.ndarray,
                   decode_fn: Callable[[np.ndarray], str], reference: str, step: float = 5, *,
                   occlusion_value: float, wer_fn: Callable[[str, str], float] | None = None,
                   progress: bool = True, seed: int = 0,
                   decode_many: Callable[[list[np.ndarray]], list[str]] | None = None,
                   percents: Sequence[float] | None = None, insertion: bool = False) -> DeletionCurve:
    """Delete top-ranked cells in steps, re-decode, and score the WER at each step.

    With ``insertion=True`` the curve runs the other way (SPES's own paper reports both): the
    input starts fully deleted and the top-ranked k % of the cells are *restored*, so the WER
    falls from its all-deleted value to 0 at 100 %; a faithful ranking makes it fall early
    (a small area).

    Parameters
    ----------
    features : np.ndarray
        The model input, ``mel x frames_total`` (Whisper: 80 x 3000, padded). Not modified.
    n_frames : int
        Frames of real speech at the start of ``features``; only they are deleted,
        padding frames stay as they are.
    score_map : np.ndarray
        Ranking of the speech part, ``frames x mel`` (n_frames x F; note the transposed
        layout relative to ``features``). For encoder-grid maps use
        :func:`~.grids.expand_to_input_grid` first.
    decode_fn : callable
        ``decode_fn(features mel x frames_total) -> text``.
    reference : str
        The model's original output on the intact input (non-empty).
    step : float
        Step in percent; percents are 0, step, 2 step, ... and always end at 100.
    percents : sequence of float, optional
        The percents to measure instead (e.g. :func:`curve_percents` with dense low points).
    occlusion_value : float
        Value written into deleted cells (for Whisper, the log-mel value of silence /
        padding the model sees; keyword-only and required on purpose).
    wer_fn : callable, optional
        ``wer_fn(reference, hypothesis) -> WER as a fraction`` (1.0 = 100%); default
        :func:`default_wer` (jiwer on the strings as given).
    progress : bool
        Show a tqdm bar over the steps.
    seed : int
        Tie-breaking seed for equal scores.
    decode_many : callable, optional
        ``decode_many([features, ...]) -> [text, ...]``: decodes all the curve's distinct
        inputs in one call (e.g. one batch) instead of one ``decode_fn`` call each; it must
        give what ``decode_fn`` gives for each input.

    Returns
    -------
    DeletionCurve
        WER in percent (x100, clipped to [0, 100]) at each step.
    """
    feats = np.asarray(features)
    if feats.ndim != 2:
        raise ValueError(f"features must be mel x frames_total (2-D), got shape {feats.shape}")
    n_mel, total = feats.shape
    if not 0 < n_frames <= total:
        raise ValueError(f"n_frames must be in 1..{total} (the features' frames), got {n_frames}")
    score = np.asarray(score_map, dtype=np.float64)
    if score.shape != (n_frames, n_mel):
        raise ValueError(
            f"score_map has shape {score.shape} but must be frames x mel = ({n_frames}, {n_mel}) for features "
            f"of shape {feats.shape}; transpose it, or expand encoder-grid maps with "
            "grids.expand_to_input_grid")
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    if not reference.strip():
        raise ValueError("the reference (the model's original output) is empty: WER is undefined; "
                         "skip utterances whose hypothesis is empty")
    wer_fn = wer_fn or default_wer
    percents = curve_percents(step) if percents is None else np.asarray(list(percents), dtype=np.float64)
    if percents.ndim != 1 or percents.size < 2 or np.any(np.diff(percents) <= 0) or percents[0] < 0 or percents[-1] > 100:
        raise ValueError(f"percents must increase strictly within [0, 100], got {percents.tolist()}")

    masks = list(deletion_masks(score, percents, seed=seed))
    if insertion:  # restore the top-k %: everything else stays deleted
        masks = [~m for m in masks]
    inputs: dict[int, np.ndarray] = {}          # equal counts give identical inputs: decode once
    for mask in masks:
        n = int(mask.sum())
        if n not in inputs:
            x = np.array(feats, copy=True)
            x[:, :n_frames][mask.T] = occlusion_value
            inputs[n] = x
    if decode_many is not None:
        decoded = dict(zip(inputs, decode_many(list(inputs.values()))))
    else:
        decoded = {n: decode_fn(x) for n, x in tqdm(inputs.items(), desc="deletion", disable=not progress,
                                                     leave=False)}
    done = {n: (t, float(np.clip(100.0 * wer_fn(reference, t), 0.0, 100.0))) for n, t in decoded.items()}
    counts = [int(m.sum()) for m in masks]
    texts = [done[n][0] for n in counts]
    wers = [done[n][1] for n in counts]
    return DeletionCurve(percents=percents, wer=np.array(wers), texts=texts, n_deleted=np.array(counts))


def deletion_auc(percents: Sequence[float] | np.ndarray, wer: Sequence[float] | np.ndarray) -> float:
    """Trapezoid area under the WER-vs-%deleted curve, in WER-percent units.

    Parameters
    ----------
    percents : array-like
        ``steps``: percent deleted, increasing, within [0, 100].
    wer : array-like
        ``steps``: WER in percent (0-100).

    Returns
    -------
    float
        ``trapezoid(wer, percents) / 100``: the mean WER (in percent) over the 0-100%
        deletion range. A curve at 100 from the start gives 100, a flat 0 curve gives 0;
        a curve rising linearly from 0 to 100 gives 50. Values in PAPER.md (e.g.
        41.2 / 52.9 / 91.3) are in these units. A curve that does not span 0..100 is
        still divided by 100 (missing parts count as 0).
    """
    x = np.asarray(percents, dtype=np.float64)
    y = np.asarray(wer, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"percents and wer must be 1-D of equal length, got {x.shape} and {y.shape}")
    if x.size < 2:
        raise ValueError("need at least two points for an area")
    if np.any(np.diff(x) <= 0):
        raise ValueError("percents must be strictly increasing")
    if x[0] < 0 or x[-1] > 100:
        raise ValueError(f"percents must lie within [0, 100], got {x[0]}..{x[-1]}")
    return float(np.trapezoid(y, x) / 100.0)
