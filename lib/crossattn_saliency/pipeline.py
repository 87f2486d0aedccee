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
from typing import Any, Iterator

import numpy as np

from . import attention as attn
from . import config, metrics
from .config import Condition, Profile
from .models import LoadedModel, load_model
from .transcribe import Hypothesis, features, transcribe_set


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


def hypotheses(profile: Profile, cond: Condition, progress: bool = True,
               rows: list[dict[str, Any]] | None = None) -> list[Hypothesis]:
    """Decode (or read from cache) the model's output for every utterance of a condition;
    ``rows`` passes the condition's rows when the caller already loaded them."""
    path = config.cache_dir(profile.name) / "hypotheses" / f"{cond.name}.json"
    rows = rows if rows is not None else _rows(profile, cond)
    return transcribe_set(model_for(profile, cond), rows, cond.language, cond.task,
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
        hyps = hypotheses(profile, cond, progress, rows=rows)
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
    all_rows = _rows(profile, cond)
    hyps = {h.utt_id: h for h in hypotheses(profile, cond, progress=False, rows=all_rows)}
    for row in (all_rows[:n] if n is not None else all_rows):
        uid = str(row["id"])
        feats, n_frames = features(loaded, np.asarray(row["audio"], dtype=np.float32), int(row["sampling_rate"]), uid)
        yield Utterance(uid, feats, n_frames, hyps[uid], reference_of(row, cond),
                        {k: v for k, v in row.items() if k != "audio"})


def cross_attention(profile: Profile, cond: Condition, n: int | None = None,
                    progress: bool = True, utts: list[Utterance] | None = None) -> list[attn.CrossAttention]:
    """Cross-attention of every layer and head for the first ``n`` utterances (cached);
    ``utts`` passes utterances already prepared by :func:`utterances`."""
    loaded = model_for(profile, cond)
    out_dir = config.cache_dir(profile.name) / "attention" / cond.name
    utts = utts if utts is not None else utterances(profile, cond, n)
    paths = attn.attention_for_set(loaded, ((u.features, u.hyp) for u in utts), out_dir, progress=progress)
    return [attn.CrossAttention.load(p) for p in paths]


def condition(profile: Profile, name: str) -> Condition:
    """A condition of the profile by name (``whisper-base__it-tts__st``)."""
    for c in profile.conditions:
        if c.name == name:
            return c
    raise ValueError(f"no condition {name!r} in profile {profile.name}; have {[c.name for c in profile.conditions]}")


# --------------------------------------------------------------------------- saliency


def file_id(utt_id: str) -> str:
    """A file-name-safe version of an utterance id (``mfa/cold`` -> ``mfa__cold``)."""
    return utt_id.replace("/", "__")


def spes_params(profile: Profile, kind: str = "input", n_perturbations: int | None = None) -> Any:
    """The profile's SPES settings for ``kind`` ``"input"`` (SM_X) or ``"encoder"`` (SM_H)."""
    from .saliency import SpesParams

    n = n_perturbations or (profile.spes_perturbations if kind == "input" else profile.spes_h_perturbations)
    return SpesParams(n_perturbations=n, batch_size=profile.spes_batch_size, seed=profile.seed)


def _spes_items(utts: list[Utterance]) -> list[Any]:
    from types import SimpleNamespace

    return [SimpleNamespace(utt_id=file_id(u.utt_id), features=u.features, n_frames=u.n_frames,
                            prompt_ids=list(u.hyp.prompt_ids), token_ids=list(u.hyp.token_ids)) for u in utts]


def saliency(profile: Profile, cond: Condition, kind: str = "input", n: int | None = None,
             progress: bool = True, utts: list[Utterance] | None = None) -> list[Any]:
    """SPES maps (``SaliencyResult``) of the first ``n`` utterances (default: the
    profile's ``saliency_utterances``), computed once and cached per utterance.

    ``kind="input"``: SM_X, ``tokens x frames x mel``; ``kind="encoder"``: SM_H,
    ``tokens x enc_frames``. Both carry two independent split halves.
    """
    from .saliency import SaliencyResult, saliency_for_set

    n = profile.saliency_utterances if n is None else n
    utts = utts if utts is not None else list(utterances(profile, cond, n))
    out_dir = config.cache_dir(profile.name) / ("saliency_x" if kind == "input" else "saliency_h") / cond.name
    paths = saliency_for_set(model_for(profile, cond).model, _spes_items(utts), out_dir,
                             spes_params(profile, kind), kind=kind, dtype=profile.dtype,
                             device=profile.device, progress=progress)
    return [SaliencyResult.load(p) for p in paths]


def convergence_runs(profile: Profile, cond: Condition, snapshots: tuple[int, ...] | None = None,
                     progress: bool = True) -> list[Any]:
    """Long SPES runs (``profile.convergence_budget`` perturbations) with snapshots,
    for the ``profile.convergence_utterances`` shortest utterances of a condition."""
    from .saliency import SaliencyResult, saliency_for_set

    budget = profile.convergence_budget
    if snapshots is None:
        snapshots = tuple(n for n in (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800) if n < budget)
    utts = sorted(utterances(profile, cond), key=lambda u: u.n_frames)[:profile.convergence_utterances]
    out_dir = config.cache_dir(profile.name) / "convergence" / cond.name
    paths = saliency_for_set(model_for(profile, cond).model, _spes_items(utts), out_dir,
                             spes_params(profile, "input", budget), kind="input", dtype=profile.dtype,
                             device=profile.device, snapshots=snapshots, progress=progress)
    return [SaliencyResult.load(p) for p in paths]


# --------------------------------------------------------------------------- comparison


@dataclass
class Aligned:
    """CA, SM_X and SM_H of one utterance on the same explained tokens.

    The final <|endoftext|> is dropped from all three (it is not a word).
    ``ca``: :class:`~attention.CrossAttention`; ``sm_x``: ``tokens x frames x mel``
    (+ halves); ``sm_h``: ``tokens x enc_frames`` (+ halves).
    """

    utt: Utterance
    ca: attn.CrossAttention
    sm_x: Any
    sm_h: Any

    def sm_x_maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.sm_x.scores[:-1], self.sm_x.half_a[:-1], self.sm_x.half_b[:-1]

    def sm_h_maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.sm_h.scores[:-1], self.sm_h.half_a[:-1], self.sm_h.half_b[:-1]


def aligned(profile: Profile, cond: Condition, progress: bool = True) -> list[Aligned]:
    """CA, SM_X and SM_H for the saliency utterances of a condition (all cached)."""
    n = profile.saliency_utterances
    utts = list(utterances(profile, cond, n))
    cas = cross_attention(profile, cond, progress=progress, utts=utts)
    sx = saliency(profile, cond, "input", progress=progress, utts=utts)
    sh = saliency(profile, cond, "encoder", progress=progress, utts=utts)
    out = []
    for u, ca, x, h in zip(utts, cas, sx, sh):
        if list(x.token_ids) != list(ca.token_ids) or list(h.token_ids) != list(ca.token_ids):
            raise ValueError(f"{u.utt_id}: cached saliency and attention explain different tokens; "
                             "delete the stale cache folder of this condition")
        out.append(Aligned(u, ca.drop_last_token(), x, h))
    return out


def views(ca: attn.CrossAttention) -> dict[str, Any]:
    """The named aggregations compared in the study, in display order."""
    L, H = ca.n_layers, ca.n_heads
    v: dict[str, Any] = {"all layers": "all", f"last {L // 2} layers": ("last", L // 2)}
    if ca.alignment_heads:
        v["alignment heads"] = "alignment"
    v.update({f"layer {l}": ("layer", l) for l in range(L)})
    v.update({f"L{l}H{h}": ("head", l, h) for l in range(L) for h in range(H)})
    return v


def correlation_rows(profile: Profile, cond: Condition, items: list[Aligned], reducer: str = "max2d",
                     normalization: str = "token_z", view_names: list[str] | None = None) -> list[dict[str, Any]]:
    """rho(CA, SM_X) and rho(CA, SM_H) for every view, with reliabilities.

    One row per view x target: Pearson mean over utterances with a bootstrap 95%
    interval, the pooled (flattened set) Pearson, Spearman mean, the split-half
    reliability of the saliency reference stepped up with Spearman-Brown, the noise
    ceiling sqrt(r) and the disattenuated rho / sqrt(r).
    """
    from . import compare, reliability

    if not items:
        return []
    all_views = views(items[0].ca)
    names = view_names or list(all_views)
    sx = [a.sm_x_maps() for a in items]
    sh = [a.sm_h_maps() for a in items]
    rows = []
    for name in names:
        ca_maps = [a.ca.aggregate(all_views[name]) for a in items]
        for target, maps, reduce in (("SM_X", sx, reducer), ("SM_H", sh, None)):
            tab = reliability.reliability_table(ca_maps, [m[0] for m in maps], [m[1] for m in maps],
                                                [m[2] for m in maps], reduce=reduce, normalization=normalization,
                                                n_bootstrap=profile.n_bootstrap, seed=profile.seed)
            red = [compare.reduce_to_encoder_grid(m[0], reduce) if reduce else m[0] for m in maps]
            sp = compare.correlate(ca_maps, red, method="spearman", normalization=normalization,
                                   n_bootstrap=10, seed=profile.seed)
            rows.append({
                "condition": cond.name, "model": cond.model, "set": cond.dataset, "task": cond.task,
                "view": name, "target": target, "reducer": reduce or "-", "normalization": normalization,
                "utterances": tab.n_utterances,
                "rho": tab.rho[0], "rho_lo": tab.rho[1], "rho_hi": tab.rho[2], "rho_pooled": tab.pooled_rho,
                "spearman": sp.mean, "reliability": tab.reliability[0], "ceiling": tab.ceiling[0],
                "rho_disattenuated": tab.disattenuated[0], "dis_lo": tab.disattenuated[1],
                "dis_hi": tab.disattenuated[2],
            })
    return rows


def context_mixing_rows(profile: Profile, cond: Condition, items: list[Aligned], view: str = "all layers",
                        reducer: str = "max2d") -> dict[str, Any]:
    """The context-mixing gain rho(CA, SM_H) - rho(CA, SM_X) for one view, raw and
    disattenuated, with paired bootstrap intervals over utterances."""
    from . import reliability

    v = views(items[0].ca)[view]
    ca_maps = [a.ca.aggregate(v) for a in items]
    sx = [a.sm_x_maps() for a in items]
    sh = [a.sm_h_maps() for a in items]
    tx = reliability.reliability_table(ca_maps, *[[m[i] for m in sx] for i in range(3)], reduce=reducer,
                                       n_bootstrap=profile.n_bootstrap, seed=profile.seed)
    th = reliability.reliability_table(ca_maps, *[[m[i] for m in sh] for i in range(3)], reduce=None,
                                       n_bootstrap=profile.n_bootstrap, seed=profile.seed)
    gain = reliability.compare_reliability_tables(th, tx, n_bootstrap=profile.n_bootstrap, seed=profile.seed)
    return {"condition": cond.name, "model": cond.model, "view": view, "utterances": len(items),
            "rho_SM_X": tx.rho[0], "rho_SM_H": th.rho[0],
            "gain": gain["raw"][0], "gain_lo": gain["raw"][1], "gain_hi": gain["raw"][2],
            "gain_disattenuated": gain["disattenuated"][0], "dis_lo": gain["disattenuated"][1],
            "dis_hi": gain["disattenuated"][2]}


# --------------------------------------------------------------------------- deletion


def deletion_results(profile: Profile, cond: Condition, items: list[Aligned], reducers: tuple[str, ...] = ("max2d",),
                     progress: bool = True) -> list[dict[str, Any]]:
    """Deletion curves per utterance and explanation (cached as JSON per utterance).

    Explanations (one map per utterance: per-token z-scored maps averaged over
    tokens, then ranked): cross-attention (mean of all layers and heads) brought
    back to the input grid; SM_X reduced to CA's grid by each reducer, brought back;
    full-resolution SM_X; a random ranking (the floor). The top k% of the speech
    cells are set to the silence value, the utterance is decoded again
    (``profile.deletion_beam``), and WER (normalized text, %) against the original
    output is scored; AUC in WER-percent units (0-100).
    """
    from . import cache as cache_mod
    from . import compare, deletion, metrics
    from .saliency import floor_value
    from .transcribe import decode

    loaded = model_for(profile, cond)
    out_dir = config.cache_dir(profile.name) / "deletion" / cond.name
    results = []
    n = profile.deletion_utterances
    for a in (items[:n] if n is not None else items):
        path = out_dir / f"{file_id(a.utt.utt_id)}.json"
        params = {"step": profile.deletion_step, "beam": profile.deletion_beam, "reducers": list(reducers),
                  "max_new_tokens": "2 x hypothesis + 10",
                  "seed": profile.seed, "spes": a.sm_x.params}
        cached = cache_mod.read_json(path) if path.is_file() else None
        if cached is not None and cached.get("params") == params:
            results.append(cached)
            continue
        u = a.utt
        T, F = u.n_frames, u.features.shape[0]
        ca_map = deletion.utterance_ranking_map(a.ca.aggregate("all"))
        sx = a.sm_x.scores[:-1]
        rankings = {"cross-attention": compare.expand_to_input_grid(ca_map, T, F)}
        for r in reducers:
            red = deletion.utterance_ranking_map(compare.reduce_to_encoder_grid(sx, r))
            rankings[f"SM_X pooled ({r})"] = compare.expand_to_input_grid(red, T, F)
        rankings["SM_X full"] = deletion.utterance_ranking_map(sx)
        rankings["random"] = deletion.random_ranking((T, F), seed=profile.seed)

        def decode_fn(feats: np.ndarray) -> str:
            # masked inputs make Whisper hallucinate long outputs: cap at twice the original length
            ids = decode(loaded, feats, cond.language, cond.task, profile.deletion_beam,
                         max_new_tokens=2 * len(u.hyp.token_ids) + 10)
            return loaded.tokenizer.decode(ids, skip_special_tokens=True)

        out_lang = cond.language if cond.task == "transcribe" else "en"

        def wer_fn(ref: str, hyp: str) -> float:
            # normalized WER as a fraction; raw text where normalization leaves nothing
            normalize = bool(metrics.normalizer(out_lang)(ref).strip())
            return metrics.wer([ref], [hyp], out_lang, normalize=normalize) / 100.0

        curves = {}
        for name, rank in rankings.items():
            c = deletion.deletion_curve(u.features, T, rank, decode_fn, u.hyp.text, profile.deletion_step,
                                        occlusion_value=floor_value(u.features), wer_fn=wer_fn,
                                        progress=False, seed=profile.seed)
            curves[name] = {"percents": [float(p) for p in c.percents], "wer": [float(w) for w in c.wer],
                            "n_deleted": [int(k) for k in c.n_deleted], "auc": float(c.auc), "texts": list(c.texts)}
        rec = {"params": params, "utt_id": u.utt_id, "condition": cond.name, "curves": curves}
        cache_mod.write_json(path, rec)
        results.append(rec)
    return results
