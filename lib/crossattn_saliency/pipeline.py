"""The study's steps per model x condition, cached under ``results/cache/<profile>/``.

Each function computes what is missing, reuses what an earlier run (or an
earlier notebook) cached, and returns it; notebooks call these and show results.

Cache layout (``config.cache_dir(profile)``)::

    hypotheses/<condition>.json         model outputs (token ids, prompt, text)
    attention/<condition>/<utt>.npz     cross-attention, layers x heads x tokens x enc_frames
    saliency_x/<condition>/<utt>.npz    SPES on the input, tokens x frames x mel (+ halves)
    saliency_h/<condition>/<utt>.npz    SPES on the encoder output, tokens x enc_frames (+ halves)
    deletion/<condition>/<utt>.json     deletion curves per explanation
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import attention as attn
from . import config, metrics
from .config import Condition, Profile
from .models import LoadedModel, load_model
from .transcribe import Hypothesis, features, load_hypotheses, transcribe_set


@dataclass
class Utterance:
    """One utterance of a condition, ready for explanation.

    ``features`` is ``mel x frames`` (80 x 3000); ``n_frames`` counts the frames
    covered by speech; ``hyp`` is the model's own cached output.
    """

    utt_id: str
    features: np.ndarray
    n_frames: int
    hyp: Hypothesis
    reference: str
    row: dict[str, Any]


def dataset(profile: Profile, set_name: str) -> Any:
    """The profile's selection of a test set (``datasets.Dataset``)."""
    from . import data

    return data.load_set(set_name, profile.set_sizes.get(set_name))


def reference_of(row: dict[str, Any], cond: Condition) -> str:
    """The reference text of a row: transcript for ASR, English translation for ST."""
    return row["transcript"] if cond.task == "transcribe" else row["translation_en"]


def _rows(profile: Profile, cond: Condition) -> list[dict[str, Any]]:
    ds = dataset(profile, cond.dataset)
    rows = [dict(r) for r in ds]
    if cond.task == "translate":
        rows = [r for r in rows if r.get("translation_en")]
    return rows


def model_for(profile: Profile, cond: Condition) -> LoadedModel:
    return load_model(cond.model)


def hypotheses(profile: Profile, cond: Condition, progress: bool = True) -> list[Hypothesis]:
    """Decode (or read from cache) the model's output for every utterance of a condition."""
    path = config.cache_dir(profile.name) / "hypotheses" / f"{cond.name}.json"
    return transcribe_set(model_for(profile, cond), _rows(profile, cond), cond.language, cond.task,
                          profile.beam_size, path, progress=progress)


def quality_table(profile: Profile, progress: bool = True) -> Any:
    """Model quality per model x condition (``pandas.DataFrame``).

    ASR: WER (%) with Whisper's normalizer; translation: BLEU and chrF
    (sacrebleu). Real and synthetic speech are separate rows (separate sets).
    """
    import pandas as pd

    out = []
    for cond in profile.conditions:
        rows = _rows(profile, cond)
        if not rows:
            continue
        hyps = hypotheses(profile, cond, progress)
        refs = [reference_of(r, cond) for r in rows]
        texts = [h.text for h in hyps]
        rec = {"model": cond.model, "set": cond.dataset,
               "task": "ASR" if cond.task == "transcribe" else f"ST {cond.language}→en",
               "language": cond.language, "speech": "synthetic" if rows[0]["synthetic"] else "real",
               "utterances": len(rows), "WER (%)": np.nan, "BLEU": np.nan, "chrF": np.nan}
        if cond.task == "transcribe":
            rec["WER (%)"] = round(metrics.wer(refs, texts, cond.language), 1)
        else:
            rec["BLEU"] = round(metrics.bleu(refs, texts), 1)
            rec["chrF"] = round(metrics.chrf(refs, texts), 1)
        out.append(rec)
    return pd.DataFrame(out)


def utterances(profile: Profile, cond: Condition, n: int | None = None) -> Iterator[Utterance]:
    """Features, hypothesis and reference of the first ``n`` utterances of a condition."""
    loaded = model_for(profile, cond)
    hyps = {h.utt_id: h for h in hypotheses(profile, cond, progress=False)}
    rows = _rows(profile, cond)[:n] if n is not None else _rows(profile, cond)
    for row in rows:
        uid = str(row["id"])
        feats, n_frames = features(loaded, np.asarray(row["audio"], dtype=np.float32), int(row["sampling_rate"]), uid)
        yield Utterance(uid, feats, n_frames, hyps[uid], reference_of(row, cond),
                        {k: v for k, v in row.items() if k != "audio"})


def cross_attention(profile: Profile, cond: Condition, n: int | None = None,
                    progress: bool = True) -> list[attn.CrossAttention]:
    """Cross-attention of every layer and head for the first ``n`` utterances (cached)."""
    loaded = model_for(profile, cond)
    out_dir = config.cache_dir(profile.name) / "attention" / cond.name
    paths = attn.attention_for_set(loaded, ((u.features, u.hyp) for u in utterances(profile, cond, n)),
                                   out_dir, progress=progress)
    return [attn.CrossAttention.load(p) for p in paths]


def condition(profile: Profile, name: str) -> Condition:
    """A condition of the profile by name (``whisper-base__it-tts__st``)."""
    for c in profile.conditions:
        if c.name == name:
            return c
    raise ValueError(f"no condition {name!r} in profile {profile.name}; have {[c.name for c in profile.conditions]}")


def cache_path(profile: Profile, step: str, cond: Condition) -> Path:
    return config.cache_dir(profile.name) / step / cond.name
