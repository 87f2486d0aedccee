"""What "half an explanation" means downstream: word timestamps from every explanation kind.

Whisper's word timestamps are cross-attention of its alignment heads, aligned by DTW
(:mod:`.timestamps`). Here the same recipe runs on every explanation of the explained
utterances of an English ASR condition, and the word boundaries are compared with a reference
alignment (:mod:`.alignment`): the shipped alignment heads, all layers, the last layers, single
heads, norm-weighted attention, SPES on the input (reduced to the 20 ms grid) and on the encoder
output, gradients. :func:`head_selection` picks alignment heads for a checkpoint from timing
errors on half of the utterances (2-fold) and, with no reference at all, from the heads'
agreement with SM_H, and evaluates both on the held-out half.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..core.config import Condition, Profile
from ..data import alignment
from ..evaluate import timestamps
from ..evaluate.correlate import normalize
from ..evaluate.views import View
from ..explain.explanation import Explained, Explanation
from . import keys
from .context import condition_rows, store

__all__ = ["TimedWords", "HeadSelection", "reference_alignments", "reference_disagreement", "timed_views",
           "word_boundaries", "timestamp_errors", "timestamp_table", "head_selection", "heads_table",
           "disagreement_floor"]


@dataclass(frozen=True)
class TimedWords:
    """The word boundaries one explanation (``kind``, ``view``) gives one utterance by Whisper's
    recipe, and how far they are from the reference: ``words`` ``(word, start s, end s)``;
    ``errors`` :func:`~..evaluate.timestamps.boundary_errors` (ms per matched word)."""

    condition: str
    kind: str
    view: str
    utterance: str
    words: alignment.Words
    errors: dict[str, Any]

    @property
    def label(self) -> str:
        """``kind`` for a single map, ``kind · view`` for a view of a layered kind."""
        return self.kind if self.view == "map" else f"{self.kind} · {self.view}"

    @property
    def start_ms(self) -> np.ndarray:
        """Absolute word-start errors (ms), one per matched word."""
        return np.asarray(self.errors["start_ms"], dtype=np.float64)

    @property
    def end_ms(self) -> np.ndarray:
        """Absolute word-end errors (ms), one per matched word."""
        return np.asarray(self.errors["end_ms"], dtype=np.float64)


@dataclass(frozen=True)
class HeadSelection:
    """Alignment heads of one condition (:func:`head_selection`): ``heads`` (way of choosing ->
    ``[layer, head]`` lists per fold, 0-based), ``summary`` (way -> held-out
    :class:`~..evaluate.timestamps.TimingSummary`) and ``k`` (heads kept)."""

    heads: dict[str, list[list[list[int]]]]
    summary: dict[str, Any]
    k: int

ALIGNER = "pocketsphinx 5.1.1 forced alignment (US English model, CMU dictionary)"


def _alignment_record(profile: Profile, set_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """Stored references of one row: ``pocketsphinx`` (forced alignment of English speech, or None
    with the reason in ``error``), ``kept`` (the alignment the recording ships with, or None) and,
    for synthetic rows, ``spoken`` (the TTS engine's timings, or None with ``spoken_error``)."""
    params: dict[str, Any] = {"aligner": ALIGNER, "lexicon": alignment.LEXICON_ADDITIONS,
                              "transcript": row["transcript"]}
    synthetic = bool(row.get("synthetic"))
    if synthetic:
        params["spoken"] = alignment.SPOKEN_BY.get(str(row.get("speaker")))

    def compute() -> dict[str, Any]:
        words, error = None, "pocketsphinx aligns English speech only"
        if str(row.get("language", "en")) == "en":
            try:
                words, error = alignment.forced_alignment(np.asarray(row["audio"], dtype=np.float32),
                                                          row["transcript"], int(row["sampling_rate"])), None
            except alignment.AlignmentError as exc:
                words, error = None, str(exc)
        out = {"pocketsphinx": words, "error": error, "kept": alignment.kept_alignment(row)}
        if synthetic:
            try:
                out["spoken"], out["spoken_error"] = alignment.spoken_alignment(row), None
            except alignment.AlignmentError as exc:
                out["spoken"], out["spoken_error"] = None, str(exc)
        return out

    return store(profile).fetch_json(*keys.alignment(set_name, row["id"]), params, compute)


def _reference(rec: dict[str, Any]) -> tuple[str, Any]:
    """The best reference of a stored record and its name: the TTS engine's timings, else the
    alignment the recording ships with, else pocketsphinx's."""
    if rec.get("spoken"):
        return "TTS engine timings", rec["spoken"]
    if rec.get("kept"):
        return "shipped alignment", rec["kept"]
    return "pocketsphinx", rec.get("pocketsphinx")


def reference_alignments(profile: Profile, cond: Condition, utt_ids: Sequence[str] | None = None
                         ) -> dict[str, alignment.Words]:
    """The reference words of the condition's utterances (all, or ``utt_ids``): for synthetic speech
    the timings the TTS engine reports, for real speech the alignment the recording ships with where
    there is one, else pocketsphinx's forced alignment (English); utterances with none are left out."""
    out = {}
    for row in condition_rows(profile, cond):
        if utt_ids is not None and str(row["id"]) not in utt_ids:
            continue
        _, words = _reference(_alignment_record(profile, cond.dataset, row))
        if words:
            out[str(row["id"])] = alignment.words_from_json(words)
    return out


def reference_disagreement(profile: Profile, cond: Condition) -> Any:
    """Per utterance of the condition's set with two references: how far the reference
    (:func:`reference_alignments`'s: TTS timings or the shipped alignment) and pocketsphinx's
    forced alignment lie apart (``pandas.DataFrame``: set, reference, matched words, median and
    mean start and end differences in ms; ``independent``: False where the shipped alignment was
    made by pocketsphinx itself). Over the independent pairs of real speech, the floor below which
    no timestamp error can be measured; against TTS timings, pocketsphinx's own error."""
    import pandas as pd

    rows = []
    for row in condition_rows(profile, cond):
        rec = _alignment_record(profile, cond.dataset, row)
        name, ref = _reference(rec)
        if not (ref and rec["pocketsphinx"]) or name == "pocketsphinx":
            continue
        e = timestamps.boundary_errors(alignment.words_from_json(rec["pocketsphinx"]), alignment.words_from_json(ref))
        # pocketsphinx's own shipped alignments agree with it by construction
        independent = name == "TTS engine timings" or "pocketsphinx" not in str(row["source"])
        rows.append({"set": cond.dataset, "utterance": str(row["id"]),
                     "reference": alignment.SPOKEN_BY.get(str(row.get("speaker")), name)
                     if name == "TTS engine timings" else str(row["source"]),
                     "synthetic": bool(row.get("synthetic")), "independent": independent,
                     "words": e["ref_words"], "matched": e["matched"],
                     "start median (ms)": float(np.median(e["start_ms"])) if e["matched"] else float("nan"),
                     "start mean (ms)": float(np.mean(e["start_ms"])) if e["matched"] else float("nan"),
                     "end median (ms)": float(np.median(e["end_ms"])) if e["matched"] else float("nan"),
                     "end mean (ms)": float(np.mean(e["end_ms"])) if e["matched"] else float("nan")})
    return pd.DataFrame(rows)


def disagreement_floor(disagreement: Any, set_name: str | None = None) -> float | None:
    """Median word-start disagreement (ms) of the independent reference pairs of
    :func:`reference_disagreement` of real speech (or of ``set_name``'s), or None where there are
    none. For a synthetic set the reference is the engine's timing: its floor is the engine's frame,
    not this number (which is pocketsphinx's error)."""
    if not len(disagreement):
        return None
    d = disagreement[disagreement["independent"]]
    if "set" in d:
        d = d[d["set"] == set_name] if set_name is not None else d[~d["synthetic"]]
    d = d[d["matched"] > 0]
    return float(np.median(d["start median (ms)"])) if len(d) else None


def timed_views(e: Explanation, extra_heads: Sequence[tuple[int, int]] = ()) -> list[tuple[str, list[tuple[int, int]] | None]]:
    """The views of one explanation that get timestamps: for attention kinds the shipped alignment
    heads, all layers, the last half of the layers and ``extra_heads`` (each as its list of
    ``(layer, head)`` pairs, normalised one by one as Whisper does); the map itself otherwise."""
    if not e.layered:
        return [("map", None)]
    views = [View("all"), View("last", n=max(1, e.n_layers // 2))]
    if e.alignment_heads:
        views.insert(0, View("alignment"))
    out = [(v.label(e.n_layers), v.pairs(e.n_layers, e.n_heads, e.alignment_heads)) for v in views]
    return out + [(View("head", layer=l, head=h).label(e.n_layers), [(l, h)]) for l, h in extra_heads]


def word_boundaries(e: Explanation, pairs: list[tuple[int, int]] | None, reducer: str) -> alignment.Words:
    """Word start and end times (s) of one explanation's tokens by Whisper's recipe
    (:func:`.timestamps.token_starts`), the last word ending where the speech ends. Attention heads
    (``pairs``) go in as they are; other maps (saliency, gradients), whose scale differs from token
    to token by orders of magnitude, are z-scored per token first, so that no token's row
    dominates Whisper's per-position normalisation."""
    if pairs is None:  # not a distribution over positions like attention: each token's row z-scored first
        maps = normalize(e.on_encoder_grid(None, reducer), "token_z")
    else:
        maps = np.stack([e.maps[l, h] for l, h in pairs])
    starts = timestamps.token_starts(maps, seconds_per_position=0.02)
    return timestamps.word_times(e.tokens, starts, end=e.n_frames / 100.0)


def timestamp_errors(profile: Profile, cond: Condition, items: Sequence[Explained],
                     refs: dict[str, alignment.Words], extra_heads: dict[str, Sequence[tuple[int, int]]] | None = None
                     ) -> list[TimedWords]:
    """Per explanation kind, view and utterance: its word boundaries and their
    :func:`.timestamps.boundary_errors` against the reference (:class:`TimedWords`; utterances
    without a reference are skipped)."""
    out = []
    for it in items:
        ref = refs.get(it.utt.utt_id)
        if ref is None:
            continue
        for kind, e in it.explanations.items():
            for label, pairs in timed_views(e, (extra_heads or {}).get(kind, ())):
                words = word_boundaries(e, pairs, profile.reducer)
                out.append(TimedWords(cond.name, kind, label, it.utt.utt_id, words,
                                      timestamps.boundary_errors(words, ref)))
    return out


def timestamp_table(profile: Profile, errors: Sequence[TimedWords]) -> Any:
    """One row per condition, kind and view: :class:`.timestamps.TimingSummary` over utterances
    (``pandas.DataFrame``), plus matched and reference word counts."""
    import pandas as pd

    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in errors:
        groups.setdefault((r.condition, r.kind, r.view), []).append(r.errors)
    rows = []
    for (cond, kind, view), errs in groups.items():
        s = timestamps.timing_summary(errs, n_bootstrap=profile.n_bootstrap, seed=profile.seed,
                                      min_utterances=profile.min_utterances)
        rows.append({"condition": cond, "kind": kind, "view": view, **s.record(),
                     "reference words": int(sum(e["ref_words"] for e in errs)),
                     "hypothesis words": int(sum(e["hyp_words"] for e in errs))})
    return pd.DataFrame(rows)


def head_selection(profile: Profile, cond: Condition, items: Sequence[Explained],
                   refs: dict[str, alignment.Words], corr: Any = None, kind: str = "CA",
                   target: str = "SM_H") -> HeadSelection:
    """Alignment heads for a checkpoint, chosen on half of the utterances and evaluated on the other
    half (2-fold: the first and the second half of the explained utterances, each chosen on the
    other); ``k`` = the number of heads the model ships (or 6).

    * ``by timing``: the ``k`` heads with the smallest median start error on the choosing half
      (:func:`.timestamps.select_heads`; needs a reference);
    * ``by saliency``: the ``k`` heads whose maps correlate best with ``target`` over all
      utterances (``corr``, a :class:`~..evaluate.results.CorrelationTable`; needs no reference at all);
    * ``shipped``: the model's own alignment heads.

    Returns a :class:`HeadSelection`: ``heads`` (name -> list of ``[layer, head]`` per fold, usable
    as ``generation_config.alignment_heads``) and ``summary`` (name -> :class:`.timestamps.TimingSummary`
    of the held-out word boundaries, both folds pooled).
    """
    have = [it for it in items if it.utt.utt_id in refs]
    if len(have) < 2:  # nothing to choose on and evaluate on separately
        return HeadSelection({}, {}, 0)
    e0 = have[0][kind]
    k = len(e0.alignment_heads) or 6
    half = len(have) // 2
    folds = [(have[half:], have[:half]), (have[:half], have[half:])]  # (choose on, evaluate on)
    by_rho: list[list[int]] = []
    if corr is not None:
        rows = sorted(corr.select(kind, target, "head", cond.name), key=lambda r: -r.rho)
        by_rho = [[int(r.view.layer), int(r.view.head)] for r in rows[:k]]
    heads: dict[str, list[list[list[int]]]] = {"by timing": []}
    if e0.alignment_heads:
        heads["shipped"] = []
    if by_rho:
        heads["by saliency"] = []
    held: dict[str, list[dict[str, Any]]] = {name: [] for name in heads}
    for choose, evaluate in folds:
        chosen = timestamps.select_heads([it[kind].maps for it in choose], [it[kind].tokens for it in choose],
                                         [it.utt.n_frames / 100.0 for it in choose],
                                         [refs[it.utt.utt_id] for it in choose], k=k)
        picks = {"by timing": chosen}
        if e0.alignment_heads:
            picks["shipped"] = [[int(l), int(h)] for l, h in e0.alignment_heads]
        if by_rho:
            picks["by saliency"] = by_rho
        for name, hs in picks.items():
            heads[name].append(hs)
            for it in evaluate:
                words = word_boundaries(it[kind], [tuple(h) for h in hs], profile.reducer)
                held[name].append(timestamps.boundary_errors(words, refs[it.utt.utt_id]))
    summary = {name: timestamps.timing_summary(errs, n_bootstrap=profile.n_bootstrap, seed=profile.seed,
                                               min_utterances=profile.min_utterances)
               for name, errs in held.items() if errs}
    return HeadSelection(heads, summary, k)


def heads_table(selection: dict[str, HeadSelection]) -> Any:
    """:func:`head_selection` results of several conditions as one table (``pandas.DataFrame``): per
    condition and way of choosing, the heads of each fold and the held-out timing summary."""
    import pandas as pd

    rows = []
    for name, sel in selection.items():
        for how, summ in sel.summary.items():
            rows.append({"condition": name, "heads": how, "k": sel.k,
                         "chosen (layer, head; 0-based, fold 1 / fold 2)": " / ".join(str(h) for h in sel.heads[how]),
                         **summ.record()})
    cols = ["condition", "heads", "k", "chosen (layer, head; 0-based, fold 1 / fold 2)"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols + ["utterances", "words"])
