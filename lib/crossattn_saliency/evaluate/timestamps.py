"""Word timestamps from any explanation, and how far they are from a reference alignment.

Whisper's word timestamps (OpenAI's ``timing.py``, ``transformers``' ``return_token_timestamps``)
are cross-attention of a few "alignment heads": per head, each time position is z-scored over
the tokens, median-filtered along time (width 7), the heads averaged, and a monotone path
through ``tokens x time`` found by dynamic time warping on the negated matrix; a token starts
where the path enters its row. :func:`token_starts` does exactly that for *any* ``tokens x
positions`` map (or a stack of them): CA of the shipped heads, of all layers, of single heads,
SM_X reduced to the encoder grid, SM_H, gradients. :func:`word_times` merges tokens into words.

Rows: row ``i`` of an explanation explains token ``i`` (the row whose query predicts it; OpenAI's
convention). ``transformers`` takes the rows one decoder position later (the query *at* token
``i``); :func:`transformers_token_timestamps` reproduces its output from full cross-attention
rows for the equality test. Without an <|endoftext|> row the last word ends where the speech
ends.

Evaluation (:func:`match_words`, :func:`boundary_errors`, :func:`timing_summary`): hypothesis
words are matched to reference words by aligning their normalised spellings
(``difflib.SequenceMatcher``, equal runs only; unmatched words are counted, not scored); errors
are absolute differences of starts and ends in milliseconds, summarised by median, mean and the
share within 20 / 50 / 100 / 200 ms, with bootstrap intervals that resample utterances (words of
one utterance are not independent). :func:`rank_heads` / :func:`select_heads` choose alignment
heads for a checkpoint from timing errors on some utterances.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["MEDIAN_WIDTH", "WITHIN_MS", "median_filter", "dtw", "token_starts", "word_times",
           "transformers_token_timestamps", "match_words", "boundary_errors", "TimingSummary", "timing_summary",
           "rank_heads", "select_heads"]

#: Whisper's median filter width along time (``generation_config.median_filter_width``)
MEDIAN_WIDTH = 7
#: the shares of words reported (boundary error at most this many milliseconds)
WITHIN_MS = (20, 50, 100, 200)


def median_filter(x: np.ndarray, width: int = MEDIAN_WIDTH) -> np.ndarray:
    """Median over a window of ``width`` (odd) along the last axis, edges padded by reflection
    (as Whisper does); unchanged when the axis is not longer than ``width // 2``."""
    if width <= 0 or width % 2 != 1:
        raise ValueError(f"median filter width must be a positive odd number, got {width}")
    x = np.asarray(x, dtype=np.float64)
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.sort(windows, axis=-1)[..., pad]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotone path through ``cost`` (``tokens x time``), from (0, 0) to the last
    cell, with steps down-right, down and right; ties broken as Whisper does (diagonal, then down,
    then right; float32 sums). Returns the path's ``(token indices, time indices)``."""
    cost = np.asarray(cost, dtype=np.float32)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf, dtype=np.float32)
    trace = -np.ones((n + 1, m + 1), dtype=np.int8)
    acc[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            acc[i, j] = cost[i - 1, j - 1] + c
            trace[i, j] = t
    trace[0, :], trace[:, 0] = 2, 1
    i, j = n, m
    rows, cols = [], []
    while i > 0 or j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1]), np.array(cols[::-1])


def token_starts(maps: np.ndarray, seconds_per_position: float = 0.02, median_width: int = MEDIAN_WIDTH,
                 normalize: bool = True) -> np.ndarray:
    """Start time (s) of every token from an explanation, Whisper's way.

    Parameters
    ----------
    maps : ``tokens x positions`` or ``heads x tokens x positions`` (several maps averaged after
        normalisation and filtering: e.g. the alignment heads).
    normalize : z-score every time position over the tokens, per map (Whisper's normalisation).

    Returns
    -------
    ``tokens`` start times: where the DTW path enters each token's row, times ``seconds_per_position``.
    """
    w = np.asarray(maps, dtype=np.float64)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[1] == 0 or w.shape[2] == 0:
        raise ValueError(f"maps must be tokens x positions or heads x tokens x positions, got {np.shape(maps)}")
    if normalize:
        std = w.std(axis=1, keepdims=True)
        w = (w - w.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    w = median_filter(w, median_width).mean(axis=0)
    rows, cols = dtw(-w)
    jumps = np.concatenate([[True], np.diff(rows) > 0])
    return cols[jumps].astype(np.float64) * seconds_per_position


def transformers_token_timestamps(weights: np.ndarray, n_prompt: int, n_frames: int,
                                  median_width: int = MEDIAN_WIDTH) -> np.ndarray:
    """What ``transformers``' ``generate(..., return_token_timestamps=True)`` returns for a greedy
    hypothesis, from the alignment heads' full cross-attention rows.

    ``weights``: ``heads x rows x positions``, the rows of the teacher-forced pass that predict the
    hypothesis tokens (row 0 at the prompt's last token ... row ``G - 1`` at the last text token, for
    ``G`` tokens ending with <|endoftext|>). ``transformers`` drops the prompt's rows and uses the
    rows *at* tokens 1 .. G-1 (one position later than OpenAI's ``timing.py``), crops time to
    ``n_frames // 2`` positions, and returns ``n_prompt`` zeros, the ``G - 1`` jump times and the last
    one again (``n_prompt + G`` values)."""
    w = np.asarray(weights, dtype=np.float64)[:, 1:, : n_frames // 2]
    starts = token_starts(w, 0.02, median_width)
    return np.concatenate([np.zeros(n_prompt), starts, starts[-1:]])


def word_times(tokens: Sequence[str], starts: Sequence[float], end: float) -> list[tuple[str, float, float]]:
    """Tokens merged into words: a token that begins with a space starts a new word, a token of
    punctuation only joins the word before it. A word starts where its first token starts and ends
    where the next word starts (the last one at ``end``, the end of speech). Returns ``(word,
    start_s, end_s)``."""
    import string

    if len(tokens) != len(starts):
        raise ValueError(f"{len(tokens)} tokens but {len(starts)} start times")
    words: list[list[Any]] = []
    for tok, t in zip(tokens, starts):
        text = tok.strip()
        punct = text != "" and all(c in string.punctuation for c in text)
        if words and (punct or not tok.startswith(" ")):
            words[-1][0] += text  # a word piece or punctuation joins the word before it
        else:
            words.append([text, float(t)])
    out = []
    for k, (w, s) in enumerate(words):
        e = words[k + 1][1] if k + 1 < len(words) else float(end)
        out.append((w, s, max(e, s)))
    return [w for w in out if w[0]]


def match_words(hyp: Sequence[str], ref: Sequence[str], normalize: Callable[[str], str] | None = None
                ) -> list[tuple[int, int]]:
    """Pairs ``(hyp index, ref index)`` of words whose normalised spellings match in an alignment of
    the two word sequences (``difflib.SequenceMatcher``, equal runs only)."""
    norm = normalize or (lambda s: "".join(c for c in s.lower() if c.isalnum() or c == "'"))
    a, b = [norm(w) for w in hyp], [norm(w) for w in ref]
    sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return [(blk.a + k, blk.b + k) for blk in sm.get_matching_blocks() for k in range(blk.size) if a[blk.a + k]]


def boundary_errors(hyp: Sequence[tuple[str, float, float]], ref: Sequence[tuple[str, float, float]],
                    normalize: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Absolute start and end errors (ms) of the hypothesis words matched to reference words.

    Returns ``start_ms`` and ``end_ms`` (arrays over matched words), ``matched``, ``hyp_words``,
    ``ref_words``."""
    pairs = match_words([w for w, _, _ in hyp], [w for w, _, _ in ref], normalize)
    start = np.array([abs(hyp[i][1] - ref[j][1]) * 1000 for i, j in pairs], dtype=np.float64)
    end = np.array([abs(hyp[i][2] - ref[j][2]) * 1000 for i, j in pairs], dtype=np.float64)
    return {"start_ms": start, "end_ms": end, "matched": len(pairs), "hyp_words": len(hyp), "ref_words": len(ref)}


@dataclass(frozen=True)
class TimingSummary:
    """Timing errors over a set of utterances: ``median`` / ``mean`` absolute error (ms) of word
    starts and ends, each ``(value, lo, hi)`` (lo/hi: bootstrap percentile interval resampling
    utterances, NaN below ``min_utterances``), ``within`` the share of starts within each of
    :data:`WITHIN_MS`, ``words`` matched and ``utterances``."""

    start_median: tuple[float, float, float]
    start_mean: tuple[float, float, float]
    end_median: tuple[float, float, float]
    end_mean: tuple[float, float, float]
    within: dict[int, tuple[float, float, float]]
    words: int
    utterances: int

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"utterances": self.utterances, "words": self.words}
        for name in ("start_median", "start_mean", "end_median", "end_mean"):
            v, lo, hi = getattr(self, name)
            out.update({f"{name} (ms)": v, f"{name} lo": lo, f"{name} hi": hi})
        for ms, (v, lo, hi) in self.within.items():
            out.update({f"starts within {ms} ms": v, f"within {ms} lo": lo, f"within {ms} hi": hi})
        return out


def timing_summary(errors: Sequence[dict[str, Any]], n_bootstrap: int = 1000, seed: int = 0,
                   min_utterances: int = 8, alpha: float = 0.05) -> TimingSummary:
    """:class:`TimingSummary` of per-utterance :func:`boundary_errors` (words pooled; the bootstrap
    resamples utterances, each with all its words)."""
    starts = [np.asarray(e["start_ms"], dtype=np.float64) for e in errors]
    ends = [np.asarray(e["end_ms"], dtype=np.float64) for e in errors]
    stats: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "start_median": lambda s, e: float(np.median(s)), "start_mean": lambda s, e: float(np.mean(s)),
        "end_median": lambda s, e: float(np.median(e)), "end_mean": lambda s, e: float(np.mean(e)),
        **{f"within_{ms}": (lambda ms: lambda s, e: float(np.mean(s <= ms)))(ms) for ms in WITHIN_MS}}
    keep = [i for i, s in enumerate(starts) if s.size]
    pooled = (np.concatenate([starts[i] for i in keep]) if keep else np.array([]),
              np.concatenate([ends[i] for i in keep]) if keep else np.array([]))
    est = {k: (f(*pooled) if pooled[0].size else float("nan")) for k, f in stats.items()}
    lo = {k: float("nan") for k in stats}
    hi = dict(lo)
    if len(keep) >= min_utterances:
        rng = np.random.default_rng(seed)
        boot = {k: [] for k in stats}
        for _ in range(n_bootstrap):
            pick = rng.choice(keep, size=len(keep), replace=True)
            s = np.concatenate([starts[i] for i in pick])
            e = np.concatenate([ends[i] for i in pick])
            for k, f in stats.items():
                boot[k].append(f(s, e))
        for k in stats:
            lo[k], hi[k] = (float(v) for v in np.quantile(boot[k], [alpha / 2, 1 - alpha / 2]))
    trip = lambda k: (est[k], lo[k], hi[k])  # noqa: E731
    return TimingSummary(start_median=trip("start_median"), start_mean=trip("start_mean"),
                         end_median=trip("end_median"), end_mean=trip("end_mean"),
                         within={ms: trip(f"within_{ms}") for ms in WITHIN_MS},
                         words=int(pooled[0].size), utterances=len(keep))


def rank_heads(attention: Sequence[np.ndarray], tokens: Sequence[Sequence[str]], ends: Sequence[float],
               references: Sequence[Sequence[tuple[str, float, float]]],
               seconds_per_position: float = 0.02) -> list[tuple[tuple[int, int], float]]:
    """Every single head ranked by the median start error (ms) of its word timestamps against the
    references, best first.

    ``attention``: per utterance ``layers x heads x tokens x positions`` (rows explain tokens);
    ``tokens``: the token strings; ``ends``: the end of speech (s); ``references``: reference words."""
    n_layers, n_heads = np.shape(attention[0])[:2]
    out = []
    for layer in range(n_layers):
        for head in range(n_heads):
            errs = []
            for a, toks, end, ref in zip(attention, tokens, ends, references):
                starts = token_starts(np.asarray(a)[layer, head], seconds_per_position)
                errs.append(boundary_errors(word_times(toks, starts, end), ref)["start_ms"])
            pooled = np.concatenate(errs) if errs else np.array([])
            out.append(((layer, head), float(np.median(pooled)) if pooled.size else float("inf")))
    return sorted(out, key=lambda x: x[1])


def select_heads(attention: Sequence[np.ndarray], tokens: Sequence[Sequence[str]], ends: Sequence[float],
                 references: Sequence[Sequence[tuple[str, float, float]]], k: int = 6,
                 seconds_per_position: float = 0.02) -> list[list[int]]:
    """The ``k`` heads with the smallest median start error on these utterances, as a list usable
    as ``generation_config.alignment_heads`` (``[[layer, head], ...]``, 0-based)."""
    ranked = rank_heads(attention, tokens, ends, references, seconds_per_position)
    return [[int(l), int(h)] for (l, h), _ in ranked[:k]]
