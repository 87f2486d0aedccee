"""Faithfulness by deletion (notebook 07): rankings of the input cells, deletion curves through the store.

:func:`deletion_rankings` turns each explanation of an utterance into a ranking of its input
cells (``frames x mel``), beside random floors of the same shape (:mod:`..evaluate.floors`);
:func:`deletion` decodes each ranking's deleted inputs (:func:`deletion_curve_of`, with the
decoder of :func:`deletion_model`) and stores one curve per utterance and ranking.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from ..core.config import Condition, Profile
from ..evaluate import deletion as dl
from ..evaluate import floors, grids, metrics
from ..evaluate.results import DeletionRecord, DeletionTable, Ranking
from ..explain import kinds
from ..explain.explanation import Explained
from ..models.decoding import Utterance
from ..models.loading import LoadedModel
from . import keys
from .context import model_for, store

__all__ = ["DELETION_BATCH", "deletion_rankings", "deletion_model", "deletion_curve_of", "deletion"]

#: the deletion test decodes a curve's masked inputs in batches of this many (one ``generate`` call)
DELETION_BATCH = 11


def deletion_rankings(item: Explained, reducer: str, reference_reducers: Sequence[str], normalization: str,
                      seed: int, floor_draws: int) -> dict[Ranking, np.ndarray]:
    """The rankings of the input cells (``frames x mel``) that the deletion test compares.

    Per registered kind with ``deletion=True``: encoder-grid maps (layered kinds: all
    layers and heads) are spread back to the input grid; input-grid maps are pooled to the
    encoder grid by ``reducer`` (the references by each of ``reference_reducers``) and
    spread back, and also used at full resolution. Maps are per-token normalized and
    averaged over tokens first (``normalization``). Plus the random floors, ``floor_draws`` seeded draws of
    each shape the explanations delete: random encoder columns (matched to expanded and
    pooled maps), random SLIC segments of the utterance's SM_X run (matched to
    full-resolution maps) and one single-cell ranking (the study's floor).
    """
    u = item.utt
    T, F = u.n_frames, u.features.shape[0]
    out: dict[Ranking, np.ndarray] = {}
    for name, e in item.explanations.items():
        k = kinds.REGISTRY.get(name)
        if k is not None and not k.deletion:
            continue
        if e.grid == "encoder":
            out[Ranking(name, "expanded")] = grids.expand_to_input_grid(
                dl.utterance_ranking_map(e.map(), normalization), T, F)
            continue
        reds = reference_reducers if (k is not None and k.reference) else (reducer,)
        for r in reds:
            pooled = dl.utterance_ranking_map(grids.reduce_to_encoder_grid(e.map(), r), normalization)
            out[Ranking(name, f"pooled {r}")] = grids.expand_to_input_grid(pooled, T, F)
        out[Ranking(name, "full")] = dl.utterance_ranking_map(e.map(), normalization)
    for d, s_ in enumerate(floors.baseline_seeds(seed, u.utt_id, "columns", floor_draws)):
        out[Ranking("random", f"columns {d + 1}")] = floors.matched_random_ranking("expanded", T, F, s_)
    sm_x = item.explanations.get("SM_X")
    if sm_x is not None and sm_x.design is not None and any(r.variant == "full" for r in out):
        for d, s_ in enumerate(floors.baseline_seeds(seed, u.utt_id, "segments", floor_draws)):
            out[Ranking("random", f"segments {d + 1}")] = floors.matched_random_ranking(
                "full", T, F, s_, labels=sm_x.design.labels)
    out[Ranking("random", "cells")] = floors.random_ranking((T, F), seed=seed)
    return out


def deletion_model(profile: Profile, cond: Condition) -> LoadedModel:
    """The condition's model as the deletion test decodes with it: a copy in
    ``profile.deletion_precision`` with PyTorch's fused attention (SDPA; no attention weights are
    needed here, and it decodes about a quarter faster than the eager attention the other
    notebooks read cross-attention from)."""
    import copy
    import dataclasses

    from ..explain.spes_whisper import torch_dtype

    loaded = model_for(profile, cond)
    model = copy.deepcopy(loaded.model).to(dtype=torch_dtype(profile.deletion_precision)).eval()
    model.set_attn_implementation("sdpa")
    return dataclasses.replace(loaded, model=model)


def deletion_curve_of(profile: Profile, cond: Condition, loaded: LoadedModel, u: Utterance, rank: Ranking,
                      score: np.ndarray, memo: dict[tuple[str, bytes], str] | None = None,
                      insertion: bool = False) -> dict[str, Any]:
    """One deletion (or, with ``insertion``, insertion) curve (the body of a :func:`deletion`
    record): ``score`` (``frames x mel`` ranking of the speech cells) deleted (restored) at
    :func:`~..evaluate.deletion.curve_percents` of ``profile.deletion_step`` and
    ``profile.deletion_dense``, each input decoded with
    ``loaded`` (:func:`deletion_model`) in batches of :data:`DELETION_BATCH`, greedy or
    ``profile.deletion_beam``, output capped at twice the hypothesis + 10 tokens (masked inputs make
    Whisper hallucinate); WER (normalized, %) against the decoding of the intact input.

    ``memo`` keeps decodings by input across calls: the intact input (0 % deleted) and the
    all-deleted one (100 %) are the same for every ranking of an utterance and are decoded once.
    Returns ``percents``, ``wer``, ``n_deleted``, ``auc``, ``texts``, ``reference_text``."""
    from ..evaluate import deletion, floors
    from ..explain.spes import floor_value
    from ..models.decoding import decode_batch

    memo = {} if memo is None else memo
    out_lang = cond.language if cond.task == "transcribe" else "en"
    max_new = 2 * len(u.hyp.token_ids) + 10

    def decode_many(feats: list[np.ndarray]) -> list[str]:
        keys = [(u.utt_id, hashlib.blake2b(np.ascontiguousarray(f).tobytes(), digest_size=16).digest())
                for f in feats]
        todo = [i for i, k in enumerate(keys) if k not in memo]
        for i in range(0, len(todo), DELETION_BATCH):
            part = todo[i:i + DELETION_BATCH]
            ids = decode_batch(loaded, [feats[j] for j in part], cond.language, cond.task, profile.deletion_beam,
                               max_new_tokens=max_new)
            for j, one in zip(part, ids):
                memo[keys[j]] = loaded.tokenizer.decode(one, skip_special_tokens=True)
        return [memo[k] for k in keys]

    reference = decode_many([u.features])[0]
    normalize = bool(metrics.normalizer(out_lang)(reference).strip())

    def wer_fn(ref: str, hyp: str) -> float:
        # normalized WER as a fraction; raw text where normalization leaves nothing
        return metrics.wer([ref], [hyp], out_lang, normalize=normalize) / 100.0

    # ties (a partly deleted column or segment) broken by a seed of the ranking's own
    c = deletion.deletion_curve(u.features, u.n_frames, score, lambda x: decode_many([x])[0], reference,
                          profile.deletion_step, occlusion_value=floor_value(u.features), wer_fn=wer_fn,
                          progress=False, seed=floors.baseline_seeds(profile.seed, u.utt_id, rank.key, 1)[0],
                          decode_many=decode_many, insertion=insertion,
                          percents=deletion.curve_percents(profile.deletion_step, profile.deletion_dense))
    return {"percents": [float(p) for p in c.percents], "wer": [float(w) for w in c.wer],
            "n_deleted": [int(k) for k in c.n_deleted], "auc": float(c.auc), "texts": list(c.texts),
            "reference_text": reference}


def deletion(profile: Profile, cond: Condition, items: list[Explained], reducer: str | None = None,
             reference_reducers: Sequence[str] | None = None, progress: bool = True) -> DeletionTable:
    """Deletion curves per utterance and ranking (one store record each).

    The top k% of the speech cells (k on the step grid and the dense points; with
    ``profile.deletion_insertion`` also restored into a fully deleted input) of each ranking
    (:func:`deletion_rankings`) are set to Whisper's silence value, the input is decoded
    again (``profile.deletion_beam``, in ``profile.deletion_precision``) and scored by WER
    (normalized text, %, clipped at 100) against the decoding of the *intact* input with the
    same decoder settings (so WER at 0 % is 0); :func:`deletion_curve_of`. AUC in WER-percent
    units (0-100); higher = more faithful.
    """
    from ..core.progress import bar as tqdm

    reducer = reducer or profile.reducer
    reference_reducers = tuple(reference_reducers or (reducer,))
    loaded = deletion_model(profile, cond)
    st = store(profile)
    n = profile.deletion_utterances
    chosen = items[:n] if n is not None else items
    records = []
    directions = ("deletion", "insertion") if profile.deletion_insertion else ("deletion",)
    todo = [(it, r, m, d) for it in chosen for r, m in deletion_rankings(
        it, reducer, reference_reducers, profile.normalization, profile.seed, profile.deletion_floor_draws).items()
        for d in directions]
    bar = tqdm(todo, desc=f"deletion {cond.name}", unit="curve", disable=not progress)
    memo: dict[tuple[str, bytes], str] = {}
    percents = [float(p) for p in dl.curve_percents(profile.deletion_step, profile.deletion_dense)]
    for it, rank, score, direction in bar:
        u = it.utt
        bar.set_postfix_str(f"{rank.label} · {direction} · {u.utt_id[-20:]}", refresh=False)
        params = {"percents": percents, "direction": direction, "beam": profile.deletion_beam,
                  "dtype": profile.deletion_precision,
                  "max_new_tokens": "2 x hypothesis + 10", "seed": profile.seed, "reference": "intact decode",
                  "ties": "seed per utterance and ranking", "decoding": f"batches of {DELETION_BATCH}, sdpa",
                  "ranking": rank.key, "reducer": reducer,
                  "explanation": dict(it[rank.kind].provenance.params) if rank.kind in it.explanations else None}

        def compute(u: Utterance = u, rank: Ranking = rank, score: np.ndarray = score,
                    insertion: bool = direction == "insertion") -> dict[str, Any]:
            return deletion_curve_of(profile, cond, loaded, u, rank, score, memo, insertion=insertion)

        key = rank.key if direction == "deletion" else f"{rank.key}__insertion"
        rec = st.fetch_json(*keys.deletion(cond.name, u.utt_id, key), params, compute)
        records.append(DeletionRecord(cond.name, u.utt_id, rank, tuple(rec["percents"]), tuple(rec["wer"]),
                                      tuple(rec["n_deleted"]), tuple(rec["texts"]), float(rec["auc"]), direction))
    return DeletionTable(records)
