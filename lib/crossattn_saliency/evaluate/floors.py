"""Random floors of the deletion test: rankings of the same shape as an explanation's.

:func:`random_ranking` ranks single cells (scattered holes: the study's floor). Cross-attention
and pooled saliency, however, delete whole encoder columns (``factor`` frames x all mel bins),
and full-resolution SM_X is piecewise constant over SLIC superpixels, so a single-cell floor
compares the *shape* of the deleted area as much as the explanation. The matched floors keep
the shape and randomize only the order: :func:`random_encoder_columns` (one random value per
encoder position), :func:`random_segments` (one random value per SLIC segment per level,
averaged over levels like SM_X) and :func:`matched_random_ranking` (the floor of a ranking
variant: ``"expanded"`` / ``"pooled ..."`` / ``"full"`` / ``"cells"``). :func:`baseline_seeds`
derives reproducible seeds for several draws per utterance, and :func:`baseline_gap` reports,
per utterance, the explanation's AUC minus the mean AUC of its matched draws (positive = better
than a random ranking of the same shape).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .grids import encoder_length, expand_to_input_grid

__all__ = ["random_ranking", "random_encoder_columns", "random_segments", "MATCHED_VARIANTS", "matched_random_ranking",
           "baseline_seeds", "BaselineGap", "baseline_gap"]


def random_ranking(shape: int | Sequence[int], seed: int = 0) -> np.ndarray:
    """A random ranking map (uniform scores) of the given shape: the floor of deletion."""
    return np.random.default_rng(seed).random(shape)


def random_encoder_columns(n_frames: int, n_mel: int, seed: int, factor: int = 2) -> np.ndarray:
    """A random ranking with the shape of an expanded encoder-grid map (CA, pooled saliency).

    One uniform value per encoder position (``encoder_length(n_frames, factor)``
    of them, drawn with ``np.random.default_rng(seed).random``), spread over the
    position's ``factor`` input frames and all mel bins with
    :func:`.grids.expand_to_input_grid`. Deleting its top-k% removes whole columns,
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
    values = np.random.default_rng(seed).random(encoder_length(n_frames, factor))
    return expand_to_input_grid(values, n_frames, n_mel, factor)


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
