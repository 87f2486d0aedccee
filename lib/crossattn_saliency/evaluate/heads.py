"""Alignment heads chosen from the model itself: every cross-attention head scored, and how many to keep.

Whisper's word timestamps (:mod:`.timestamps`) average a few "alignment heads" that ship only with
OpenAI's checkpoints. Here every head of a checkpoint is scored on a few clips, in one of two ways:

* **agreement** (no reference needed): per clip, the mean over tokens of the Pearson correlation
  between a head's row and SM_H's row of the same token (both ``tokens x positions`` on the 20 ms
  encoder grid; constant rows are skipped), :func:`agreement_scores`;
* **timing** (a reference alignment): per clip, the median (or mean) absolute word-start error (ms)
  of Whisper's recipe on that head alone (:func:`.timestamps.token_starts`, :func:`.timestamps.word_times`,
  :func:`.timestamps.boundary_errors`), :func:`timing_scores`.

Heads are ranked by their score averaged over clips (NaN clips left out). **The number of heads
``k``** is chosen by leave-one-clip-out: for every held-out clip the heads are ranked on the other
clips, the top ``k`` are combined as Whisper combines alignment heads, and the combination is scored
on the held-out clip (agreement: per-token correlation of the mean of the heads' per-token z-scored
maps with SM_H; timing: the start error of the recipe on the ``k`` heads together). The held-out
score of ``k`` is its mean over held-out clips; the ``k`` with the best held-out score wins, and any
``k`` within ``tolerance`` of the best counts as a tie, which goes to the smaller ``k``. The heads
returned are the top ``k`` ranked on all clips. At least two clips are needed.

Inputs are plain arrays: cross-attention ``layers x heads x tokens x positions`` per clip (the
``maps`` of a CA :class:`~..explain.explanation.Explanation`), SM_H ``tokens x positions`` per clip.
Numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import timestamps

__all__ = ["SELECTION_RULE", "HeadSelection", "agreement_scores", "timing_scores", "rank_heads",
           "combined_agreement", "combined_timing_error", "choose_k", "select_by_agreement", "select_by_timing"]

#: the rule, in words, that both selections follow (reported with every choice)
SELECTION_RULE = ("heads ranked by their score averaged over clips; k chosen by leave-one-clip-out (rank on the "
                  "other clips, score the top k together on the held-out clip, average over held-out clips): the k "
                  "with the best held-out score, ties (within the tolerance) to the smaller k; the heads are the "
                  "top k ranked on all clips")


@dataclass(frozen=True)
class HeadSelection:
    """A choice of alignment heads.

    ``method``: ``"agreement"`` (higher is better, Pearson r) or ``"timing"`` (lower is better, ms);
    ``heads``: ``[[layer, head], ...]`` best first (0-based, the form of
    ``generation_config.alignment_heads``); ``k``: ``len(heads)``; ``scores``: ``layers x heads``, each
    head's score averaged over clips; ``per_clip``: ``clips x layers x heads``; ``held_out``: ``k`` ->
    held-out score (mean over held-out clips); ``ranking``: every head ``((layer, head), score)``,
    best first; ``tolerance``, ``rule``: how ``k`` was chosen."""

    method: str
    heads: list[list[int]]
    k: int
    scores: np.ndarray
    per_clip: np.ndarray
    held_out: dict[int, float]
    ranking: list[tuple[tuple[int, int], float]]
    tolerance: float = 0.0
    rule: str = SELECTION_RULE
    statistic: str = field(default="")

    @property
    def higher_is_better(self) -> bool:
        return self.method == "agreement"


def _check_ca(ca_maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64) for a in ca_maps]
    if not out:
        raise ValueError("no clips given")
    shape = out[0].shape[:2]
    for i, a in enumerate(out):
        if a.ndim != 4:
            raise ValueError(f"clip {i}: cross-attention must be layers x heads x tokens x positions, got {a.shape}")
        if a.shape[:2] != shape:
            raise ValueError(f"clip {i}: {a.shape[0]} layers x {a.shape[1]} heads, clip 0 has {shape}")
    return out


def _row_z(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (last axis) z-scored with the population std; and a mask of the non-constant rows."""
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    ok = std[..., 0] > 1e-12
    return np.where(std > 1e-12, (x - mean) / np.where(std > 1e-12, std, 1.0), 0.0), ok


def _token_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-token Pearson r of ``... x tokens x positions`` against ``tokens x positions``, then the
    mean over tokens (constant rows left out; NaN where none is left)."""
    za, oka = _row_z(a)
    zb, okb = _row_z(b)
    r = (za * zb).mean(axis=-1)
    ok = oka & okb
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, np.where(ok, r, 0.0).sum(axis=-1) / np.maximum(n, 1), np.nan)


def agreement_scores(ca_maps: Sequence[np.ndarray], sm_maps: Sequence[np.ndarray]) -> np.ndarray:
    """``clips x layers x heads``: every head's mean per-token correlation with SM_H on each clip."""
    ca = _check_ca(ca_maps)
    if len(sm_maps) != len(ca):
        raise ValueError(f"{len(ca)} clips of cross-attention but {len(sm_maps)} of SM_H")
    out = []
    for i, (a, s) in enumerate(zip(ca, sm_maps)):
        s = np.asarray(s, dtype=np.float64)
        if s.shape != a.shape[2:]:
            raise ValueError(f"clip {i}: SM_H is {s.shape}, cross-attention rows are {a.shape[2:]}")
        out.append(_token_corr(a, s))
    return np.stack(out)


def _error(errors: dict, statistic: str) -> float:
    e = np.asarray(errors["start_ms"], dtype=np.float64)
    if not e.size:
        return float("nan")
    return float(np.median(e) if statistic == "median" else np.mean(e))


def _check_statistic(statistic: str) -> None:
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic={statistic!r} is invalid: 'median' or 'mean'")


def timing_scores(ca_maps: Sequence[np.ndarray], tokens: Sequence[Sequence[str]], ends: Sequence[float],
                  references: Sequence[Sequence[tuple[str, float, float]]], statistic: str = "median",
                  seconds_per_position: float = 0.02) -> np.ndarray:
    """``clips x layers x heads``: the word-start error (ms; ``statistic`` over the clip's matched
    words, NaN where none matched) of Whisper's recipe on each head alone. ``tokens``: each clip's
    token strings (rows of its maps); ``ends``: the end of its speech (s); ``references``: its
    reference words ``(word, start_s, end_s)``."""
    _check_statistic(statistic)
    ca = _check_ca(ca_maps)
    if not (len(tokens) == len(ends) == len(references) == len(ca)):
        raise ValueError(f"{len(ca)} clips of cross-attention, {len(tokens)} token lists, {len(ends)} ends, "
                         f"{len(references)} references")
    n_layers, n_heads = ca[0].shape[:2]
    out = np.full((len(ca), n_layers, n_heads), np.nan)
    for c, (a, toks, end, ref) in enumerate(zip(ca, tokens, ends, references)):
        for layer in range(n_layers):
            for head in range(n_heads):
                out[c, layer, head] = combined_timing_error(a, [(layer, head)], toks, end, ref, statistic,
                                                            seconds_per_position)
    return out


def rank_heads(per_clip: np.ndarray, higher_is_better: bool) -> list[tuple[tuple[int, int], float]]:
    """Every head ``((layer, head), score)`` by its score averaged over clips (NaN left out), best
    first; heads with no finite score last; ties kept in (layer, head) order."""
    x = np.asarray(per_clip, dtype=np.float64)
    n = np.isfinite(x).sum(axis=0)
    mean = np.where(n > 0, np.where(np.isfinite(x), x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)
    n_layers, n_heads = mean.shape
    pairs = [((l, h), float(mean[l, h])) for l in range(n_layers) for h in range(n_heads)]
    sign = -1.0 if higher_is_better else 1.0
    return sorted(pairs, key=lambda p: (not np.isfinite(p[1]), sign * p[1] if np.isfinite(p[1]) else 0.0))


def combined_agreement(ca: np.ndarray, heads: Sequence[tuple[int, int]], sm: np.ndarray) -> float:
    """Agreement of several heads together with SM_H on one clip: the mean of the heads' per-token
    z-scored maps, correlated per token with SM_H (mean over tokens)."""
    a = np.asarray(ca, dtype=np.float64)
    stack = np.stack([_row_z(a[l, h])[0] for l, h in heads]).mean(axis=0)
    return float(_token_corr(stack, np.asarray(sm, dtype=np.float64)))


def combined_timing_error(ca: np.ndarray, heads: Sequence[tuple[int, int]], tokens: Sequence[str], end: float,
                          reference: Sequence[tuple[str, float, float]], statistic: str = "median",
                          seconds_per_position: float = 0.02) -> float:
    """Word-start error (ms) on one clip of Whisper's recipe on several heads together (each
    normalised and filtered, then averaged, as ``timing.py`` does); NaN where no word matched."""
    a = np.asarray(ca, dtype=np.float64)
    starts = timestamps.token_starts(np.stack([a[l, h] for l, h in heads]), seconds_per_position)
    words = timestamps.word_times(list(tokens), starts, end)
    return _error(timestamps.boundary_errors(words, list(reference)), statistic)


def choose_k(held_out: dict[int, float], higher_is_better: bool, tolerance: float = 0.0) -> int:
    """The ``k`` with the best held-out score; any ``k`` within ``tolerance`` (plus 1e-9 relative, for
    float noise) of the best is a tie, and ties go to the smaller ``k``. NaN scores never win."""
    finite = {k: v for k, v in held_out.items() if np.isfinite(v)}
    if not finite:
        raise ValueError("no k has a finite held-out score (no clip had a usable score)")
    best = max(finite.values()) if higher_is_better else min(finite.values())
    slack = tolerance + 1e-9 * max(1.0, abs(best))  # float noise of equal means is a tie too
    return min(k for k, v in finite.items() if abs(v - best) <= slack)


def _k_range(n_total: int, k_max: int | None) -> range:
    top = n_total if k_max is None else max(1, min(int(k_max), n_total))
    return range(1, top + 1)


def _select(method: str, per_clip: np.ndarray, held_score, k_max: int | None, tolerance: float,
            statistic: str = "") -> HeadSelection:
    higher = method == "agreement"
    n_clips = per_clip.shape[0]
    if n_clips < 2:
        raise ValueError(f"choosing the number of heads needs at least 2 clips (leave-one-clip-out), got {n_clips}")
    n_total = per_clip.shape[1] * per_clip.shape[2]
    ks = _k_range(n_total, k_max)
    held: dict[int, list[float]] = {k: [] for k in ks}
    for c in range(n_clips):
        rest = np.delete(per_clip, c, axis=0)
        order = [p for p, _ in rank_heads(rest, higher)]
        for k in ks:
            held[k].append(held_score(c, order[:k]))
    held_mean = {}
    for k, vals in held.items():
        v = np.asarray(vals, dtype=np.float64)
        held_mean[k] = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")
    k = choose_k(held_mean, higher, tolerance)
    ranking = rank_heads(per_clip, higher)
    scores = np.full(per_clip.shape[1:], np.nan)
    for (l, h), s in ranking:
        scores[l, h] = s
    return HeadSelection(method=method, heads=[[int(l), int(h)] for (l, h), _ in ranking[:k]], k=k, scores=scores,
                         per_clip=per_clip, held_out=held_mean, ranking=ranking, tolerance=float(tolerance),
                         statistic=statistic)


def select_by_agreement(ca_maps: Sequence[np.ndarray], sm_maps: Sequence[np.ndarray], k_max: int | None = 16,
                        tolerance: float = 0.0) -> HeadSelection:
    """Alignment heads with no reference: heads ranked by agreement with SM_H, ``k`` by held-out
    agreement of the top ``k`` together (see the module docstring). ``k_max``: the largest ``k``
    tried (None: every head)."""
    per_clip = agreement_scores(ca_maps, sm_maps)
    ca = [np.asarray(a, dtype=np.float64) for a in ca_maps]
    return _select("agreement", per_clip, lambda c, heads: combined_agreement(ca[c], heads, sm_maps[c]),
                   k_max, tolerance)


def select_by_timing(ca_maps: Sequence[np.ndarray], tokens: Sequence[Sequence[str]], ends: Sequence[float],
                     references: Sequence[Sequence[tuple[str, float, float]]], k_max: int | None = 16,
                     tolerance: float = 0.0, statistic: str = "median",
                     seconds_per_position: float = 0.02) -> HeadSelection:
    """Alignment heads from a reference alignment: heads ranked by their word-start error alone,
    ``k`` by the held-out start error of the top ``k`` together (see the module docstring)."""
    per_clip = timing_scores(ca_maps, tokens, ends, references, statistic, seconds_per_position)
    ca = [np.asarray(a, dtype=np.float64) for a in ca_maps]
    return _select("timing", per_clip,
                   lambda c, heads: combined_timing_error(ca[c], heads, tokens[c], ends[c], references[c], statistic,
                                                          seconds_per_position),
                   k_max, tolerance, statistic)
