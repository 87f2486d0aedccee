"""The utterances a condition explains, and the context to explain them in.

:func:`utterances` gives features, the model's hypothesis and the reference of a condition's
utterances, ready to explain (the explained ones: the first ``saliency_utterances`` whose
duration lies in ``saliency_seconds``, at most ``saliency_per_speaker`` per speaker while
other speakers' remain); :func:`context_for` the condition's :class:`~.context.Context`, with its
siblings (the other conditions on the same model and audio).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..core.config import Condition, Profile
from ..models.decoding import Hypothesis, Utterance, features
from .context import Context, condition_rows, model_for, reference_of, speaker_capped, store
from .transcribing import hypotheses

__all__ = ["utterances", "context_for"]


def utterances(profile: Profile, cond: Condition, n: int | None = None, saliency: bool = False) -> Iterator[Utterance]:
    """Features, hypothesis and reference of the first ``n`` utterances of a condition; with
    ``saliency``, of the first ``n`` whose duration lies in ``profile.saliency_seconds``, at most
    ``profile.saliency_per_speaker`` per speaker while other speakers' utterances remain (the
    utterances that get explanations)."""
    loaded = model_for(profile, cond)
    all_rows = condition_rows(profile, cond)
    hyps = {h.utt_id: h for h in hypotheses(profile, cond, progress=False, rows=all_rows)}
    picked = [r for r in all_rows if not saliency or profile.explainable(len(r["audio"]) / int(r["sampling_rate"]))]
    if saliency and n is not None and profile.saliency_per_speaker:
        picked = speaker_capped(picked, n, profile.saliency_per_speaker)
    for row in (picked[:n] if n is not None else picked):
        uid = str(row["id"])
        feats, n_frames = features(loaded, np.asarray(row["audio"], dtype=np.float32), int(row["sampling_rate"]), uid)
        yield Utterance(uid, feats, n_frames, hyps[uid], reference_of(row, cond),
                        {k: v for k, v in row.items() if k != "audio"})


def context_for(profile: Profile, cond: Condition) -> Context:
    """The :class:`Context` of one condition (model loaded lazily), with its siblings."""
    others = [c for c in profile.saliency_conditions_list()
              if c.model == cond.model and c.dataset == cond.dataset and c != cond]
    cache: dict[str, dict[str, Hypothesis]] = {}

    def siblings(utt: Utterance) -> list[tuple[str, Hypothesis]]:
        out = []
        for c in others:
            if c.name not in cache:
                cache[c.name] = {h.utt_id: h for h in hypotheses(profile, c, progress=False)}
            if utt.utt_id in cache[c.name]:
                out.append((c.name, cache[c.name][utt.utt_id]))
        return out

    return Context(profile, cond, store(profile), lambda: model_for(profile, cond),
                   siblings=siblings if others else None)
