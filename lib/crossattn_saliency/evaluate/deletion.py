"""Faithfulness by deletion: remove what an explanation ranks highest, watch the output break.

Pipeline step 10 of the study (``shared/PAPER.md``, ``shared/SPES.md``):

1. One ranking map per utterance: the per-token normalized maps averaged over
   tokens (:func:`utterance_ranking_map`). Cross-attention (``enc_frames``) is
   brought back to the input grid with :func:`compare.expand_to_input_grid`.
2. For k = 0, step, ..., 100 percent, set the top-k% cells of the speech part
   (:func:`deletion_masks`) to the occlusion value, decode again and score the WER
   of the new output against the model's original output, in percent, clipped at
   100 (:func:`deletion_curve`).
3. The area under the WER-vs-%deleted curve (:func:`deletion_auc`) in WER-percent
   units: 0 (nothing ever changes) to 100 (the output is wrong from the start).
   Higher = the explanation found what the model needs.

Random floors. :func:`random_ranking` ranks single cells (scattered holes). Cross-attention
and pooled saliency, however, delete whole encoder columns (``factor`` frames x all mel
bins), and full-resolution SM_X is piecewise constant over SLIC superpixels, so a
single-cell floor compares the *shape* of the deleted area as much as the explanation.
The matched floors keep the shape and randomize only the order:
:func:`random_encoder_columns` (one random value per encoder position),
:func:`random_segments` (one random value per SLIC segment per level, averaged over
levels like SM_X) and :func:`matched_random_ranking` (the floor of a ranking variant:
``"expanded"`` / ``"pooled ..."`` / ``"full"`` / ``"cells"``). :func:`baseline_seeds`
derives reproducible seeds for several draws per utterance, and :func:`baseline_gap`
reports, per utterance, the explanation's AUC minus the mean AUC of its matched draws
(positive = better than a random ranking of the same shape).

The decoder is passed in as a function, so nothing here loads a model.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from ..core.progress import bar as tqdm

from . import compare

__all__ = [
    "utterance_ranking_map", "deletion_order", "n_cells_to_delete", "deletion_masks",
    "DeletionCurve", "deletion_curve", "deletion_auc", "random_ranking", "default_wer",
    "random_encoder_columns", "random_segments", "matched_random_ranking", "MATCHED_VARIANTS",
    "baseline_seeds", "BaselineGap", "baseline_gap",
]


def utterance_ranking_map(maps: np.ndarray, normalization: str = "token_z") -> np.ndarray:
    """One ranking map per utterance: per-token normalized maps averaged over tokens.

    Parameters
    ----------
    maps : np.ndarray
        ``tokens x frames x mel`` (SM_X, I x T x F) or ``tokens x enc_frames``
        (CA or SM_H, I x T').
    normalization : str
        A key of :data:`compare.NORMALIZERS`, applied before averaging (``"token_z"``
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
    return compare.normalize(m, normalization).mean(axis=0)


def random_ranking(shape: int | Sequence[int], seed: int = 0) -> np.ndarray:
    """A random ranking map (uniform scores) of the given shape: the floor of deletion."""
    return np.random.default_rng(seed).random(shape)


def random_encoder_columns(n_frames: int, n_mel: int, seed: int, factor: int = 2) -> np.ndarray:
    """A random ranking with the shape of an expanded encoder-grid map (CA, pooled saliency).

    One uniform value per encoder position (``compare.encoder_length(n_frames, factor)``
    of them, drawn with ``np.random.default_rng(seed).random``), spread over the
    position's ``factor`` input frames and all mel bins with
    :func:`compare.expand_to_input_grid`. Deleting its top-k% removes whole columns,
    as an expanded CA map does.

    Parameters
    ----------
    n_frames : int
        Input frames T of the speech part (>= 1).
    n_mel : int
        Mel bins F (>= 1).
    seed : int
        Seed of the draw (same seed => same map).
    factor : int
        Input frames per encoder position (2 for Whisper).

    Returns
    -------
    np.ndarray
        ``frames x mel`` (T x F), float64, constant within each encoder column; the last
        column covers the frames that exist when ``T`` is not a multiple of ``factor``.
    """
    if n_frames < 1 or n_mel < 1:
        raise ValueError(f"need n_frames >= 1 and n_mel >= 1, got {n_frames} and {n_mel}")
    values = np.random.default_rng(seed).random(compare.encoder_length(n_frames, factor))
    return compare.expand_to_input_grid(values, n_frames, n_mel, factor)


def random_segments(labels: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """A random ranking with the piecewise structure of a full-resolution SM_X map.

    Level by level (in the order given), one ``np.random.default_rng(seed)`` stream
    draws one uniform value per segment (``labels[l].max() + 1`` values for level l).
    Each cell gets the mean, over the levels where its label is not -1, of its
    segment's value. Cells that are -1 at every level (never occluded by SPES) get
    -1.0, below every drawn value, so they are deleted last.

    Parameters
    ----------
    labels : sequence of np.ndarray
        One integer label array per SLIC level, each ``frames x mel`` (T x F), labels
        ``0 .. n_l - 1``; ``-1`` = never occluded (e.g. ``spes.slic_levels(...)``).
    seed : int
        Seed of the draw (same seed => same map).

    Returns
    -------
    np.ndarray
        ``frames x mel`` (T x F), float64 in [0, 1), or -1.0 where every level is -1.
        Constant on every set of cells that share the same segment at every level.
    """
    levels = [np.asarray(lab) for lab in labels]
    if not levels:
        raise ValueError("labels is empty: pass one frames x mel label array per SLIC level")
    shape = levels[0].shape
    for i, lab in enumerate(levels):
        if lab.ndim != 2 or lab.shape != shape or lab.size == 0:
            raise ValueError(f"every level must be a non-empty frames x mel array of one shape; level 0 has "
                             f"shape {shape}, level {i} has {lab.shape}")
        if not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"labels must be integers, level {i} has dtype {lab.dtype}")
        if lab.min() < -1:
            raise ValueError(f"labels must be >= -1 (-1 = never occluded), level {i} has {lab.min()}")
    rng = np.random.default_rng(seed)
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.int64)
    for lab in levels:
        n_seg = int(lab.max()) + 1
        values = rng.random(n_seg) if n_seg > 0 else np.zeros(0)
        inside = lab >= 0
        total[inside] += values[lab[inside]]
        count += inside
    out = np.full(shape, -1.0)
    np.divide(total, count, out=out, where=count > 0)
    return out


#: Ranking variants with a matched random floor, and the floor's shape (see :func:`matched_random_ranking`).
MATCHED_VARIANTS: dict[str, str] = {
    "expanded": "encoder columns (random_encoder_columns)",
    "pooled <reducer>": "encoder columns (random_encoder_columns)",
    "full": "SLIC segments (random_segments; needs labels)",
    "cells": "single cells (random_ranking)",
}


def matched_random_ranking(variant: str, n_frames: int, n_mel: int, seed: int,
                           labels: Sequence[np.ndarray] | None = None, factor: int = 2) -> np.ndarray:
    """The random floor with the same shape of deleted area as a ranking variant.

    Parameters
    ----------
    variant : str
        ``"expanded"`` (an encoder-grid map spread to the input grid) or any variant
        starting with ``"pooled"`` (e.g. ``"pooled max2d"``): :func:`random_encoder_columns`;
        ``"full"`` (full-resolution SM_X): :func:`random_segments` over ``labels``;
        ``"cells"``: the single-cell :func:`random_ranking`.
    n_frames, n_mel : int
        The speech part's input grid, T x F.
    seed : int
        Seed of the draw.
    labels : sequence of np.ndarray, optional
        SLIC labels, one ``frames x mel`` array per level; required for ``"full"``.
    factor : int
        Input frames per encoder position (column variants only).

    Returns
    -------
    np.ndarray
        ``frames x mel`` (T x F) float64 ranking (higher = deleted first).
    """
    if variant == "expanded" or variant.startswith("pooled"):
        return random_encoder_columns(n_frames, n_mel, seed, factor)
    if variant == "full":
        if labels is None:
            raise ValueError("full-resolution SM_X needs its SLIC labels for a matched floor: pass "
                             "labels=spes.slic_levels(spectrogram, params) (one frames x mel array per level)")
        out = random_segments(labels, seed)
        if out.shape != (n_frames, n_mel):
            raise ValueError(f"labels have shape {out.shape} but the grid is frames x mel = ({n_frames}, {n_mel}); "
                             "pass the labels of this utterance's speech part")
        return out
    if variant == "cells":
        return random_ranking((n_frames, n_mel), seed)
    raise ValueError(f"unknown ranking variant {variant!r}; known: {sorted(MATCHED_VARIANTS)} "
                     "(any variant starting with 'pooled' is matched by encoder columns)")


def baseline_seeds(seed: int, utt_id: str, variant: str, n_draws: int) -> list[int]:
    """Distinct, reproducible seeds of the random draws of one utterance and variant.

    ``np.random.SeedSequence([seed, h])`` with ``h`` a stable 64-bit BLAKE2b hash of
    ``utt_id`` and ``variant`` (not Python's per-process salted ``hash()``), so the
    same inputs give the same seeds in every process and on every machine.

    Parameters
    ----------
    seed : int
        The run's base seed (>= 0).
    utt_id : str
        Utterance id.
    variant : str
        Ranking variant (``"expanded"``, ``"pooled max2d"``, ``"full"``, ...).
    n_draws : int
        Number of seeds (>= 1).

    Returns
    -------
    list of int
        ``n_draws`` distinct non-negative seeds; the first ``k`` do not depend on ``n_draws``.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    digest = hashlib.blake2b(f"{utt_id}\x00{variant}".encode("utf-8"), digest_size=8).digest()
    root = np.random.SeedSequence([int(seed), int.from_bytes(digest, "little")])
    seeds: list[int] = []
    seen: set[int] = set()
    for child in root.spawn(n_draws):
        s = int(child.generate_state(1, dtype=np.uint64)[0])
        while s in seen:  # 64-bit collisions are astronomically rare; stay distinct anyway
            s = (s + 1) % 2**64
        seen.add(s)
        seeds.append(s)
    return seeds


@dataclass(frozen=True)
class BaselineGap:
    """An explanation's deletion AUC against random rankings of the same shape, per utterance.

    Attributes
    ----------
    auc : np.ndarray
        ``utterances``: the explanation's deletion AUC (WER-percent units).
    random_mean : np.ndarray
        ``utterances``: mean AUC of the matched random draws.
    random_sd : np.ndarray
        ``utterances``: sample standard deviation (ddof=1) of the draws' AUCs; NaN with one draw.
    gap : np.ndarray
        ``utterances``: ``auc - random_mean``; positive = the explanation deletes what
        matters faster than a random ranking of the same shape. Intervals over
        utterances are computed elsewhere from this array.
    """

    auc: np.ndarray
    random_mean: np.ndarray
    random_sd: np.ndarray
    gap: np.ndarray

    @property
    def mean_gap(self) -> float:
        """Mean of :attr:`gap` over utterances."""
        return float(np.mean(self.gap))

    @property
    def n_utterances(self) -> int:
        return int(self.gap.size)

    def as_dict(self) -> dict:
        return {"auc": self.auc.tolist(), "random_mean": self.random_mean.tolist(),
                "random_sd": self.random_sd.tolist(), "gap": self.gap.tolist(),
                "mean_gap": self.mean_gap, "n_utterances": self.n_utterances}


def baseline_gap(auc: Sequence[float], random_aucs: Sequence[Sequence[float]]) -> BaselineGap:
    """Per-utterance gap between an explanation's AUC and its matched random draws.

    Parameters
    ----------
    auc : array-like
        ``utterances``: the explanation's deletion AUC per utterance.
    random_aucs : array-like
        ``utterances x draws``: AUCs of the matched random rankings (e.g. from
        :func:`matched_random_ranking` with :func:`baseline_seeds`); the same number
        of draws for every utterance, at least one.

    Returns
    -------
    BaselineGap
        ``auc``, ``random_mean``, ``random_sd`` (NaN with one draw) and ``gap``, each
        of length ``utterances``.
    """
    a = np.asarray(auc, dtype=np.float64)
    try:
        r = np.asarray(random_aucs, dtype=np.float64)
    except ValueError as err:
        raise ValueError("random_aucs must be utterances x draws with the same number of draws for "
                         f"every utterance ({err})") from None
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"auc must be a non-empty 1-D array (one AUC per utterance), got shape {a.shape}")
    if r.ndim != 2:
        raise ValueError(f"random_aucs must be 2-D, utterances x draws, got shape {r.shape}")
    if r.shape[0] != a.size:
        raise ValueError(f"random_aucs has {r.shape[0]} utterances (rows) but auc has {a.size}")
    if r.shape[1] < 1:
        raise ValueError("random_aucs has no draws: need at least one random AUC per utterance")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(r))):
        raise ValueError("auc and random_aucs must be finite")
    mean = r.mean(axis=1)
    sd = r.std(axis=1, ddof=1) if r.shape[1] > 1 else np.full(a.size, np.nan)
    return BaselineGap(auc=a, random_mean=mean, random_sd=sd, gap=a - mean)


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


def deletion_curve(features: np.ndarray, n_frames: int, score_map: np.ndarray,
                   decode_fn: Callable[[np.ndarray], str], reference: str, step: float = 5, *,
                   occlusion_value: float, wer_fn: Callable[[str, str], float] | None = None,
                   progress: bool = True, seed: int = 0,
                   decode_many: Callable[[list[np.ndarray]], list[str]] | None = None) -> DeletionCurve:
    """Delete top-ranked cells in steps, re-decode, and score the WER at each step.

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
        :func:`compare.expand_to_input_grid` first.
    decode_fn : callable
        ``decode_fn(features mel x frames_total) -> text``.
    reference : str
        The model's original output on the intact input (non-empty).
    step : float
        Step in percent; percents are 0, step, 2 step, ... and always end at 100.
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
            "compare.expand_to_input_grid")
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    if not reference.strip():
        raise ValueError("the reference (the model's original output) is empty: WER is undefined; "
                         "skip utterances whose hypothesis is empty")
    wer_fn = wer_fn or default_wer
    percents = np.arange(0.0, 100.0, float(step))
    percents = np.append(percents, 100.0)

    masks = list(deletion_masks(score, percents, seed=seed))
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
