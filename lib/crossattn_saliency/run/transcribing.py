"""The models' own outputs, decoded once per utterance, and their quality (notebook 02).

Every explanation in the study is about the model's *own* hypothesis: decoded once (beam 5 in the
study), stored with its token ids and decoder prompt, and forced again by every explanation.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..core.config import Condition, Profile
from ..evaluate import metrics
from ..models import decoding
from ..models.decoding import Hypothesis
from ..models.loading import LoadedModel
from . import keys
from .context import condition_rows, model_for, reference_of, store
from .store import ResultStore

__all__ = ["hypothesis_params", "transcribe_set", "hypotheses", "quality_table"]


def hypothesis_params(loaded: LoadedModel, language: str, task: str, beam_size: int) -> dict[str, Any]:
    """The parameters that key a stored hypothesis."""
    return {"model": loaded.name, "language": language, "task": task, "beam_size": int(beam_size),
            "dtype": str(loaded.model.dtype).replace("torch.", "")}


def transcribe_set(loaded: LoadedModel, utterances: Iterable[dict[str, Any]], language: str, task: str,
                   beam_size: int, result_store: ResultStore, group: str, progress: bool = True) -> list[Hypothesis]:
    """Decode every utterance once, one store record each (``hypotheses/<group>/<utt>.json``).

    ``utterances`` yields dicts with ``id``, ``audio`` (16 kHz float samples) and
    ``sampling_rate``. Records carry :func:`hypothesis_params`; finished utterances are
    never decoded again (an interrupted run resumes), and a record made with other
    parameters is recomputed with a warning naming them (or raises, per the store).
    """
    from ..core.progress import bar as tqdm

    params = hypothesis_params(loaded, language, task, beam_size)
    out = []
    items = list(utterances)
    for utt in tqdm(items, desc=f"decode {loaded.name} {language}-{task}", disable=not progress, unit="utt"):
        uid = str(utt["id"])

        def compute(utt: dict[str, Any] = utt, uid: str = uid) -> dict[str, Any]:
            feats, n_frames = decoding.features(loaded, np.asarray(utt["audio"], dtype=np.float32),
                                       int(utt["sampling_rate"]), uid)
            ids = decoding.decode(loaded, feats, language, task, beam_size)
            text = loaded.tokenizer.decode(ids, skip_special_tokens=True).strip()
            return Hypothesis(uid, tuple(loaded.prompt_ids(language, task)), tuple(ids), text, n_frames).to_json()

        rec = result_store.fetch_json(*keys.hypothesis(group, uid), params, compute)
        out.append(Hypothesis.from_json(rec))
    return out


def hypotheses(profile: Profile, cond: Condition, progress: bool = True,
               rows: list[dict[str, Any]] | None = None) -> list[Hypothesis]:
    """Decode (or read from the store) the model's output for every utterance of a condition;
    ``rows`` passes the condition's rows when the caller already loaded them."""
    rows = rows if rows is not None else condition_rows(profile, cond)
    return transcribe_set(model_for(profile, cond), rows, cond.language, cond.task, profile.beam_size,
                          store(profile), cond.name, progress=progress)


def quality_table(profile: Profile, progress: bool = True) -> Any:
    """Model quality per model x condition (``pandas.DataFrame``).

    ASR: WER (%) with Whisper's normalizer; translation: BLEU and chrF (sacrebleu). Real and
    synthetic speech are separate rows (separate sets).
    """
    import pandas as pd

    out = []
    for cond in profile.conditions:
        rs = condition_rows(profile, cond)
        if not rs:
            continue
        hyps = hypotheses(profile, cond, progress, rows=rs)
        refs = [reference_of(r, cond) for r in rs]
        texts = [h.text for h in hyps]
        rec = {"model": cond.model, "set": cond.dataset,
               "task": "ASR" if cond.task == "transcribe" else f"ST {cond.language}→en",
               "language": cond.language, "speech": "synthetic" if rs[0]["synthetic"] else "real",
               "utterances": len(rs), "WER (%)": np.nan, "BLEU": np.nan, "chrF": np.nan}
        if cond.task == "transcribe":
            rec["WER (%)"] = round(metrics.wer(refs, texts, cond.language), 1)
        else:
            rec["BLEU"] = round(metrics.bleu(refs, texts), 1)
            rec["chrF"] = round(metrics.chrf(refs, texts), 1)
        out.append(rec)
    return pd.DataFrame(out)
