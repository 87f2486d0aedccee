"""The study's steps per model x condition, through one result store.

Each function computes what is missing, reuses what an earlier run (or an earlier
notebook) stored, and returns typed results; notebooks call these and show them.
Every expensive result goes through :class:`~.store.ResultStore` rooted at
``config.cache_dir(profile)``::

    hypotheses/<condition>/<utt>.json         model outputs (token ids, prompt, text)
    attention/<condition>/<utt>.npz           CA, layers x heads x tokens x positions
    attention_norm/<condition>/<utt>.npz      norm-weighted CA, same shape
    saliency_x/<condition>/<utt>.npz          SPES on the input, tokens x frames x mel (+ halves)
    saliency_h/<condition>/<utt>.npz          SPES on the encoder output, tokens x positions (+ halves)
    gradients/<kind>/<condition>/<utt>.npz    gradient maps (IxG_X, IG_X, IxG_H, IG_H)
    convergence/<condition>/<utt>.npz         long SPES runs with snapshots
    deletion/<condition>/<utt>/<ranking>.json deletion curves, one per ranking

Explanation kinds come from :data:`.kinds.REGISTRY`: correlation, context mixing,
deletion and the report loop over it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from ..explain import attention as attn
from ..core import config
from ..explain import kinds
from ..evaluate import metrics
from ..core.config import Condition, Profile
from ..explain.explanations import Explanation, View
from ..explain.kinds import file_id
from ..models.models import LoadedModel, load_model
from .store import ResultStore
from ..evaluate.tables import CorrelationRow, CorrelationTable, DeletionRecord, DeletionTable, MixingRow, Ranking
from ..models.transcribe import Hypothesis, Utterance, features, transcribe_set

#: the deletion test decodes a curve's masked inputs in batches of this many (one ``generate`` call)
DELETION_BATCH = 11

__all__ = ["Utterance", "Explained", "dataset", "reference_of", "model_for", "store", "context", "hypotheses",
           "quality_table", "utterances", "cross_attention", "condition", "explain", "convergence_runs",
           "correlation", "context_mixing", "deletion_rankings", "deletion_model", "deletion_curve_of", "deletion", "file_id"]


def dataset(profile: Profile, set_name: str) -> Any:
    """The profile's selection of a test set (``datasets.Dataset``)."""
    from .. import data

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
    """The condition's model in the profile's ``model_dtype`` on its ``device``."""
    return load_model(cond.model, dtype=profile.model_dtype, device=profile.device)


def store(profile: Profile) -> ResultStore:
    """The profile's result store (``results/cache/<profile>/``)."""
    return ResultStore(config.cache_dir(profile.name), on_mismatch=profile.on_mismatch)


def context(profile: Profile, cond: Condition) -> kinds.Context:
    """What explanation kinds need for one condition (model loaded lazily). ``siblings``: the
    other saliency conditions of the profile on the same model and audio (ASR and translation
    of one set), so that SM_X encodes each mask once for all of them."""
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

    return kinds.Context(profile, cond, store(profile), lambda: model_for(profile, cond),
                         siblings=siblings if others else None)


def hypotheses(profile: Profile, cond: Condition, progress: bool = True,
               rows: list[dict[str, Any]] | None = None) -> list[Hypothesis]:
    """Decode (or read from the store) the model's output for every utterance of a condition;
    ``rows`` passes the condition's rows when the caller already loaded them."""
    rows = rows if rows is not None else _rows(profile, cond)
    return transcribe_set(model_for(profile, cond), rows, cond.language, cond.task, profile.beam_size,
                          store(profile), cond.name, progress=progress)


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



def utterances(profile: Profile, cond: Condition, n: int | None = None, saliency: bool = False) -> Iterator[Utterance]:
    """Features, hypothesis and reference of the first ``n`` utterances of a condition; with
    ``saliency``, of the first ``n`` whose duration lies in ``profile.saliency_seconds`` (the
    utterances that get explanations)."""
    loaded = model_for(profile, cond)
    all_rows = _rows(profile, cond)
    hyps = {h.utt_id: h for h in hypotheses(profile, cond, progress=False, rows=all_rows)}
    rows = [r for r in all_rows if not saliency or profile.explainable(len(r["audio"]) / int(r["sampling_rate"]))]
    for row in (rows[:n] if n is not None else rows):
        uid = str(row["id"])
        feats, n_frames = features(loaded, np.asarray(row["audio"], dtype=np.float32), int(row["sampling_rate"]), uid)
        yield Utterance(uid, feats, n_frames, hyps[uid], reference_of(row, cond),
                        {k: v for k, v in row.items() if k != "audio"})


def condition(profile: Profile, name: str) -> Condition:
    """A condition of the profile by name (``whisper-base__it-tts__st``)."""
    for c in profile.conditions:
        if c.matches(name):
            return c
    raise ValueError(f"no condition {name!r} in profile {profile.name}; have {[c.name for c in profile.conditions]}")


def cross_attention(profile: Profile, cond: Condition, n: int | None = None,
                    progress: bool = True, utts: list[Utterance] | None = None) -> list[attn.CrossAttention]:
    """Cross-attention records (layers x heads x tokens x positions, with padding mass and
    entropy) of the first ``n`` utterances, from the store; ``utts`` passes prepared utterances."""
    from ..core.progress import bar as tqdm

    ctx = context(profile, cond)
    utts = utts if utts is not None else list(utterances(profile, cond, n))
    return [kinds.attention_record(ctx, u) for u in tqdm(utts, desc=f"cross-attention {cond.name}",
                                                          disable=not progress, unit="utt")]


# --------------------------------------------------------------------------- explanations


@dataclass
class Explained:
    """One utterance with its explanations, by kind name (all on the same tokens)."""

    utt: Utterance
    explanations: dict[str, Explanation]

    def __getitem__(self, kind: str) -> Explanation:
        if kind not in self.explanations:
            raise KeyError(f"{self.utt.utt_id} has no {kind!r} explanation; have {list(self.explanations)}")
        return self.explanations[kind]

    @property
    def tokens(self) -> list[str]:
        return next(iter(self.explanations.values())).tokens


def explain(profile: Profile, cond: Condition, kind_names: Sequence[str] | None = None, n: int | None = None,
            progress: bool = True, utts: list[Utterance] | None = None) -> list[Explained]:
    """Every selected explanation kind (default: the profile's) for the first ``n``
    utterances (default: ``profile.saliency_utterances``), computed once and stored.

    All kinds of one utterance explain the same tokens (checked).
    """
    from ..core.progress import bar as tqdm

    selected = [kinds.get(k) for k in kind_names] if kind_names is not None else kinds.selected(profile)
    n = profile.saliency_utterances if n is None else n
    utts = utts if utts is not None else list(utterances(profile, cond, n, saliency=True))
    ctx = context(profile, cond)
    out = []
    bar = tqdm(total=len(utts) * len(selected), desc=f"explain {cond.name}", unit="map", disable=not progress)
    for u in utts:
        maps = {}
        for k in selected:
            bar.set_postfix_str(f"{k.name} · {u.utt_id[-24:]}", refresh=False)
            maps[k.name] = k.compute(ctx, u)
            bar.update()
        ids = {name: tuple(e.token_ids) for name, e in maps.items()}
        if len(set(ids.values())) > 1:
            raise ValueError(f"{u.utt_id}: explanations cover different tokens {ids}; a stored record is stale")
        out.append(Explained(u, maps))
    bar.close()
    return out


def convergence_runs(profile: Profile, cond: Condition, snapshots: tuple[int, ...] | None = None,
                     progress: bool = True) -> list[Any]:
    """Long SPES runs on the input (``profile.convergence_budget`` perturbations) with
    snapshots, for the ``profile.convergence_utterances`` shortest utterances (``SaliencyResult``)."""
    budget = profile.convergence_budget
    if snapshots is None:
        snapshots = tuple(n for n in (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800) if n < budget)
    utts = sorted(utterances(profile, cond, saliency=True), key=lambda u: u.n_frames)[:profile.convergence_utterances]
    ctx = context(profile, cond)
    return [kinds.spes_record(ctx, u, "input", budget, snapshots, section="convergence", progress=progress)
            for u in utts]


# --------------------------------------------------------------------------- comparison


def _targets(items: list[Explained], targets: Sequence[str] | None) -> list[str]:
    have = set(items[0].explanations)
    return [t for t in (targets or [k.name for k in kinds.REGISTRY.values() if k.reference]) if t in have]


def reference_noise(profile: Profile, cond: Condition, item: Explained, target: str, reducer: str | None,
                    normalization: str = "token_z") -> Any:
    """The noise of one utterance's reference map (:class:`~.reliability.ReferenceNoise`):
    split-half reliability over ``profile.reliability_splits`` random splits of its
    perturbations and under ``profile.null_permutations`` score permutations (the null),
    plus the null maps on the comparison grid. Rebuilt from the stored per-perturbation
    scores (no forward pass) and stored (``noise/<target>``).

    A reference stored without per-perturbation scores falls back to its one alternating
    split with a null of 0 (a warning says so)."""
    from ..evaluate import reliability
    from ..core.config import derive_seed

    e = item[target]
    red = reducer if e.grid == "input" else None
    if e.design is None:
        import warnings

        warnings.warn(f"{target} {item.utt.utt_id} kept no per-perturbation scores: reliability from one split, "
                      "no null correction (recompute the map to correct it)", stacklevel=2)
        a, b = e.require_halves()
        r = reliability.split_half_reliability(a, b, red, normalization)
        full = e.map()
        return reliability.ReferenceNoise(np.array([r]), np.array([0.0]),
                                          (compare_grid(full, red),))
    seed = derive_seed(profile.seed, item.utt.utt_id, target, "noise")
    params = {"target": target, "reducer": red, "normalization": normalization,
              "splits": profile.reliability_splits, "permutations": profile.null_permutations, "seed": seed,
              "reference": e.provenance.get("params")}

    def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        nz = reliability.reference_noise(e.resample, e.design, red, normalization, profile.reliability_splits,
                                         profile.null_permutations, seed)
        return ({"r_half_splits": nz.r_half_splits, "r_half_null": nz.r_half_null,
                 "null_maps": np.stack(nz.null_maps).astype(np.float32)},
                {"token_ids": [int(t) for t in e.token_ids]})

    arrays, _ = store(profile).fetch_arrays(f"noise/{target}", f"{cond.name}/{kinds.file_id(item.utt.utt_id)}/"
                                            f"{red or 'none'}-{normalization}", params, compute,
                                            identity={"token_ids": [int(t) for t in e.token_ids]})
    return reliability.ReferenceNoise(arrays["r_half_splits"], arrays["r_half_null"],
                                      tuple(np.asarray(m, dtype=np.float64) for m in arrays["null_maps"]))


def compare_grid(m: np.ndarray, reducer: str | None) -> np.ndarray:
    """A map on the comparison grid: reduced to encoder positions when ``reducer`` is given."""
    from ..evaluate import compare

    return compare.reduce_to_encoder_grid(m, reducer) if reducer else np.asarray(m, dtype=np.float64)


def correlation(profile: Profile, cond: Condition, items: list[Explained], reducer: str = "max2d",
                normalization: str = "token_z", kind_names: Sequence[str] | None = None,
                targets: Sequence[str] | None = None, views: Sequence[View] | None = None) -> CorrelationTable:
    """rho(explanation, reference) for every explanation kind, view and reference (SM_X, SM_H).

    Every map is brought to the encoder grid (input-grid maps by ``reducer``). Per
    utterance: Pearson and Spearman rho, rho against the reference's permutation-null maps,
    and the reference's split-half reliability over random splits and under the null
    (:func:`reference_noise`). Per condition (:func:`~.reliability.corrected_correlation`):
    Fisher-z means, the null-corrected rho, the corrected reliability and the disattenuated
    rho, with bootstrap intervals over utterances from ``profile.min_utterances`` on.
    ``views`` restricts the views of layered kinds.
    """
    from ..evaluate import compare, reliability, verdicts

    if not items:
        return CorrelationTable()
    tnames = _targets(items, targets)
    names = [k for k in (kind_names or list(items[0].explanations)) if k not in tnames]
    rows = []
    for target in tnames:
        tmaps = [it[target] for it in items]
        t_reduce = reducer if tmaps[0].grid == "input" else None
        noise = [reference_noise(profile, cond, it, target, reducer, normalization) for it in items]
        red = [compare_grid(t.map(), t_reduce) for t in tmaps]
        for name in names:
            first = items[0][name]
            for view in (views if (views is not None and first.layered) else first.views()):
                emaps = [it[name].on_encoder_grid(view, reducer) for it in items]
                pe = compare.correlate(emaps, red, method="pearson", normalization=normalization,
                                       n_bootstrap=1, seed=profile.seed)
                sp = compare.correlate(emaps, red, method="spearman", normalization=normalization,
                                       n_bootstrap=1, seed=profile.seed)
                cc = reliability.corrected_correlation(
                    pe.per_utterance, [nz.rho_null(e, normalization) for nz, e in zip(noise, emaps)],
                    [nz.r_half for nz in noise], [nz.r_half_0 for nz in noise], floor=profile.reliability_floor,
                    n_bootstrap=profile.n_bootstrap, seed=profile.seed, min_utterances=profile.min_utterances)
                rows.append(CorrelationRow(
                    condition=cond.name, model=cond.model, set=cond.dataset, task=cond.task, kind=name,
                    view=view, n_layers=first.n_layers, target=target,
                    reducer=t_reduce or "-", normalization=normalization, utterances=len(items),
                    rho=cc.rho.value, rho_lo=cc.rho.lo, rho_hi=cc.rho.hi, rho_pooled=pe.pooled,
                    spearman=verdicts.fisher_mean(sp.per_utterance), reliability=cc.reliability,
                    ceiling=float(reliability.noise_ceiling(cc.reliability)) if np.isfinite(cc.reliability)
                    else float("nan"),
                    rho_disattenuated=cc.disattenuated.value, dis_lo=cc.disattenuated.lo, dis_hi=cc.disattenuated.hi,
                    rho_null=float(np.nanmean(cc.rho_null_per_utterance)), rho_corrected=cc.rho_corrected.value,
                    r_half=float(np.nanmean(cc.r_half_per_utterance)),
                    r_half_null=float(np.nanmean(cc.r_half_null_per_utterance)),
                    rho_per_utterance=tuple(float(v) for v in pe.per_utterance),
                    rho_null_per_utterance=tuple(float(v) for v in cc.rho_null_per_utterance),
                    r_half_per_utterance=tuple(float(v) for v in cc.r_half_per_utterance),
                    r_half_null_per_utterance=tuple(float(v) for v in cc.r_half_null_per_utterance)))
    return CorrelationTable(rows)


def context_mixing(profile: Profile, cond: Condition, items: list[Explained], kind: str = "CA",
                   view: View = View("all"), reducer: str = "max2d", corr: CorrelationTable | None = None) -> MixingRow:
    """The context-mixing gain rho(E, SM_H) - rho(E, SM_X) of one explanation view, raw
    (difference of Fisher-z means) and disattenuated (each side null-corrected and divided
    by its own reference's corrected reliability), with paired bootstrap intervals over
    utterances from ``profile.min_utterances`` on (NaN where a reference is not estimable)."""
    from ..evaluate import reliability, verdicts

    corr = corr if corr is not None else correlation(profile, cond, items, reducer, profile.normalization,
                                                     kind_names=[kind], views=[view])
    rx, rh = corr.get(cond.name, kind, "SM_X", view), corr.get(cond.name, kind, "SM_H", view)
    raw = verdicts.paired_estimate(rh.rho_per_utterance, rx.rho_per_utterance, average="fisher",
                                   n_bootstrap=profile.n_bootstrap, seed=profile.seed,
                                   min_utterances=profile.min_utterances)
    # per utterance, each side null-corrected and divided by its own reference's corrected reliability
    sides = [(reliability.chance_corrected(np.asarray(r.rho_per_utterance), np.asarray(r.rho_null_per_utterance)),
              reliability.corrected_reliability(np.asarray(r.r_half_per_utterance),
                                                np.asarray(r.r_half_null_per_utterance))) for r in (rh, rx)]

    def dis(rows: Any) -> float:
        h, x = (reliability.disattenuated_value(rc[rows], rel[rows], profile.reliability_floor) for rc, rel in sides)
        return h - x

    n = len(items)
    est = dis(np.arange(n))
    lo = hi = float("nan")
    if n >= profile.min_utterances and np.isfinite(est):
        from ..evaluate import compare

        lo, hi = compare.resampled_interval(dis, n, profile.n_bootstrap, profile.seed)
    n_layers = items[0][kind].n_layers
    return MixingRow(condition=cond.name, model=cond.model, kind=kind, view=view.label(n_layers) if view else "map",
                     utterances=n, rho_SM_X=rx.rho, rho_SM_H=rh.rho, gain=raw.value, gain_lo=raw.lo, gain_hi=raw.hi,
                     gain_disattenuated=float(est), dis_lo=lo, dis_hi=hi)


def disattenuation_validation(profile: Profile, cond: Condition, target: str = "SM_H", factor: int = 10,
                              repeats: int = 3, kind: str = "CA", view: View = View("all"),
                              progress: bool = True) -> Any:
    """Does disattenuation predict what a noise-free reference would give? (one utterance)

    For the shortest of the condition's saliency utterances, the reference ``target`` is
    computed once with ``factor`` times the profile's budget and ``repeats`` times with the
    profile's budget and independent masks (seeds derived from the utterance, the kind and
    the repeat), all stored. For each map: rho(``kind`` ``view``, map), its null, the map's
    null-corrected reliability and the disattenuated rho (:func:`~.reliability.single_map_disattenuation`,
    token-bootstrap 95% interval). ``within``: whether a low-budget map's disattenuated rho
    falls inside the interval of the high-budget one.

    Returns a ``pandas.DataFrame``, one row per map: ``condition``, ``utterance``, ``map``,
    ``perturbations``, ``seconds`` (compute time of the map), ``rho``, ``rho_null``,
    ``r_half``, ``r_half_null``, ``reliability``, ``disattenuated``, ``lo``, ``hi``, ``within``.
    """
    import pandas as pd

    from ..evaluate import reliability
    from ..core.config import derive_seed
    from ..core.progress import bar

    grid = kinds.get(target).grid
    base = profile.spes_perturbations if grid == "input" else profile.spes_h_perturbations
    utts = list(utterances(profile, cond, profile.saliency_utterances, saliency=True))
    utt = min(utts, key=lambda u: u.n_frames)
    ctx = context(profile, cond)
    e = kinds.get(kind).compute(ctx, utt).on_encoder_grid(view, profile.reducer)
    runs = [("high", base * factor, "validation high")] + [(f"repeat {i + 1}", base, f"validation {i + 1}")
                                                            for i in range(repeats)]
    red = profile.reducer if grid == "input" else None
    rows = []
    for label, n, tag in bar(runs, desc=f"validation {target} {cond.name}", unit="map", disable=not progress):
        res = kinds.spes_record(ctx, utt, grid, n_perturbations=n, section=f"validation_{target}/{tag.replace(' ', '_')}",
                                seed_tag=tag, progress=progress)
        ref = kinds.spes_explanation(ctx, utt, target, res)
        nz = reliability.reference_noise(ref.resample, ref.design, red, profile.normalization,
                                         profile.reliability_splits, profile.null_permutations,
                                         derive_seed(profile.seed, utt.utt_id, target, tag, "noise"))
        d = reliability.single_map_disattenuation(e, compare_grid(ref.map(), red), nz, profile.normalization,
                                                  profile.n_bootstrap, profile.seed)
        info = res.info
        rows.append({"condition": cond.name, "utterance": utt.utt_id, "map": label, "perturbations": n,
                     "seconds": float(info.get("setup_s", 0.0)) + float(info.get("loop_s", 0.0)),
                     "rho": d.rho, "rho_null": d.rho_null, "r_half": d.r_half, "r_half_null": d.r_half_null,
                     "reliability": d.reliability, "disattenuated": d.disattenuated, "lo": d.lo, "hi": d.hi})
    df = pd.DataFrame(rows)
    hi_row = df.iloc[0]
    df["within"] = [None] + [bool(hi_row["lo"] <= v <= hi_row["hi"]) for v in df["disattenuated"].iloc[1:]]
    return df


def disattenuation_checks(profile: Profile, progress: bool = True) -> Any:
    """:func:`disattenuation_validation` for the first saliency condition of every model and every
    reference in ``profile.validation_targets`` (one frame, with a ``target`` column)."""
    import pandas as pd

    first = {}
    for c in profile.saliency_conditions_list():
        first.setdefault(c.model, c)
    return pd.concat([disattenuation_validation(profile, c, t, profile.validation_factor, profile.validation_repeats,
                                                progress=progress).assign(target=t)
                      for c in first.values() for t in profile.validation_targets], ignore_index=True)


def budget_rule_table(profile: Profile, corr: CorrelationTable, checks: Any = None, kind: str = "CA") -> Any:
    """The budget rule (:func:`.reliability.budget_rule`) checked on this run, per saliency condition
    and reference: the median corrected reliability of its maps at the profile's budget, the share
    at the profile's target (``reliability_targets``), the budget the median map would need, and the
    spread of the per-utterance disattenuated rho(``kind`` all layers, reference) between utterances
    next to its spread over independent maps of one utterance (notebook 05's repeats, where run).
    """
    import pandas as pd

    from ..evaluate import reliability

    within: dict[tuple[str, str], float] = {}
    if checks is not None and len(checks):
        for (model, target), g in checks[checks["map"] != "high"].groupby(
                [checks["condition"].str.split("__").str[0], "target"]):
            if len(g) > 1:
                within[(model, target)] = float(np.std(g["disattenuated"].to_numpy(dtype=float), ddof=1))
    rows = []
    for r in corr.rows:
        if r.kind != kind or r.view is None or r.view.kind != "all" or r.target not in profile.reliability_targets:
            continue
        rel = reliability.corrected_reliability(np.asarray(r.r_half_per_utterance), np.asarray(r.r_half_null_per_utterance))
        rho_c = reliability.chance_corrected(np.asarray(r.rho_per_utterance), np.asarray(r.rho_null_per_utterance))
        dis = np.where(rel >= profile.reliability_floor, rho_c / np.sqrt(np.maximum(rel, 1e-12)), np.nan)
        budget = profile.spes_perturbations if kinds.get(r.target).grid == "input" else profile.spes_h_perturbations
        b = reliability.budget_rule(rel, budget, profile.reliability_targets[r.target], dis,
                                    within.get((r.condition.split("__")[0], r.target), float("nan")))
        rows.append({"condition": r.condition, "reference": r.target, "utterances": r.utterances, "budget": b.budget,
                     "median reliability": b.median_reliability, "target": b.target,
                     "share at target": b.share_at_target, "budget for target": b.budget_for_target,
                     "between-utterance SD": b.between_sd, "map-noise SD": b.within_sd,
                     "map-noise share": b.noise_share})
    return pd.DataFrame(rows)


def disattenuation_holds(checks: Any) -> bool:
    """True when every low-budget disattenuated value lies within its high-budget interval."""
    low = checks[checks["map"] != "high"]
    return bool(len(low)) and bool(low["within"].astype(bool).all())


# --------------------------------------------------------------------------- deletion


def deletion_rankings(item: Explained, reducer: str = "max2d", reference_reducers: Sequence[str] = ("max2d",),
                      seed: int = 0, floor_draws: int = 3) -> dict[Ranking, np.ndarray]:
    """The rankings of the input cells (``frames x mel``) that the deletion test compares.

    Per registered kind with ``deletion=True``: encoder-grid maps (layered kinds: all
    layers and heads) are spread back to the input grid; input-grid maps are pooled to the
    encoder grid by ``reducer`` (the references by each of ``reference_reducers``) and
    spread back, and also used at full resolution. Maps are per-token normalized and
    averaged over tokens first. Plus the random floors, ``floor_draws`` seeded draws of
    each shape the explanations delete: random encoder columns (matched to expanded and
    pooled maps), random SLIC segments of the utterance's SM_X run (matched to
    full-resolution maps) and one single-cell ranking (the study's floor).
    """
    from ..evaluate import compare, deletion

    u = item.utt
    T, F = u.n_frames, u.features.shape[0]
    out: dict[Ranking, np.ndarray] = {}
    for name, e in item.explanations.items():
        k = kinds.REGISTRY.get(name)
        if k is not None and not k.deletion:
            continue
        if e.grid == "encoder":
            out[Ranking(name, "expanded")] = compare.expand_to_input_grid(
                deletion.utterance_ranking_map(e.map()), T, F)
            continue
        reds = reference_reducers if (k is not None and k.reference) else (reducer,)
        for r in reds:
            pooled = deletion.utterance_ranking_map(compare.reduce_to_encoder_grid(e.map(), r))
            out[Ranking(name, f"pooled {r}")] = compare.expand_to_input_grid(pooled, T, F)
        out[Ranking(name, "full")] = deletion.utterance_ranking_map(e.map())
    for d, s_ in enumerate(deletion.baseline_seeds(seed, u.utt_id, "columns", floor_draws)):
        out[Ranking("random", f"columns {d + 1}")] = deletion.matched_random_ranking("expanded", T, F, s_)
    sm_x = item.explanations.get("SM_X")
    if sm_x is not None and sm_x.design is not None and any(r.variant == "full" for r in out):
        for d, s_ in enumerate(deletion.baseline_seeds(seed, u.utt_id, "segments", floor_draws)):
            out[Ranking("random", f"segments {d + 1}")] = deletion.matched_random_ranking(
                "full", T, F, s_, labels=sm_x.design.labels)
    out[Ranking("random", "cells")] = deletion.random_ranking((T, F), seed=seed)
    return out


def deletion_model(profile: Profile, cond: Condition) -> LoadedModel:
    """The condition's model as the deletion test decodes with it: a copy in
    ``profile.deletion_precision`` with PyTorch's fused attention (SDPA; no attention weights are
    needed here, and it decodes about a quarter faster than the eager attention the other
    notebooks read cross-attention from)."""
    import copy
    import dataclasses

    from ..explain.whisper_spes import torch_dtype

    loaded = model_for(profile, cond)
    model = copy.deepcopy(loaded.model).to(dtype=torch_dtype(profile.deletion_precision)).eval()
    model.set_attn_implementation("sdpa")
    return dataclasses.replace(loaded, model=model)


def deletion_curve_of(profile: Profile, cond: Condition, loaded: LoadedModel, u: Utterance, rank: Ranking,
                      score: np.ndarray, memo: dict[tuple[str, bytes], str] | None = None) -> dict[str, Any]:
    """One deletion curve (the body of a :func:`deletion` record): ``score`` (``frames x mel``
    ranking of the speech cells) deleted in ``profile.deletion_step`` steps, each input decoded with
    ``loaded`` (:func:`deletion_model`) in batches of :data:`DELETION_BATCH`, greedy or
    ``profile.deletion_beam``, output capped at twice the hypothesis + 10 tokens (masked inputs make
    Whisper hallucinate); WER (normalized, %) against the decoding of the intact input.

    ``memo`` keeps decodings by input across calls: the intact input (0 % deleted) and the
    all-deleted one (100 %) are the same for every ranking of an utterance and are decoded once.
    Returns ``percents``, ``wer``, ``n_deleted``, ``auc``, ``texts``, ``reference_text``."""
    from ..evaluate import deletion as dl
    from ..explain.spes import floor_value
    from ..models.transcribe import decode_batch

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
    c = dl.deletion_curve(u.features, u.n_frames, score, lambda x: decode_many([x])[0], reference,
                          profile.deletion_step, occlusion_value=floor_value(u.features), wer_fn=wer_fn,
                          progress=False, seed=dl.baseline_seeds(profile.seed, u.utt_id, rank.key, 1)[0],
                          decode_many=decode_many)
    return {"percents": [float(p) for p in c.percents], "wer": [float(w) for w in c.wer],
            "n_deleted": [int(k) for k in c.n_deleted], "auc": float(c.auc), "texts": list(c.texts),
            "reference_text": reference}


def deletion(profile: Profile, cond: Condition, items: list[Explained], reducer: str = "max2d",
             reference_reducers: Sequence[str] = ("max2d",), progress: bool = True) -> DeletionTable:
    """Deletion curves per utterance and ranking (one store record each).

    The top k% of the speech cells (k = 0, step, ..., 100) of each ranking
    (:func:`deletion_rankings`) are set to Whisper's silence value, the input is decoded
    again (``profile.deletion_beam``, in ``profile.deletion_precision``) and scored by WER
    (normalized text, %, clipped at 100) against the decoding of the *intact* input with the
    same decoder settings (so WER at 0 % is 0); :func:`deletion_curve_of`. AUC in WER-percent
    units (0-100); higher = more faithful.
    """
    from ..core.progress import bar as tqdm

    loaded = deletion_model(profile, cond)
    st = store(profile)
    n = profile.deletion_utterances
    chosen = items[:n] if n is not None else items
    records = []
    todo = [(it, r, m) for it in chosen for r, m in deletion_rankings(
        it, reducer, reference_reducers, profile.seed, profile.deletion_floor_draws).items()]
    bar = tqdm(todo, desc=f"deletion {cond.name}", unit="curve", disable=not progress)
    memo: dict[tuple[str, bytes], str] = {}
    for it, rank, score in bar:
        u = it.utt
        bar.set_postfix_str(f"{rank.label} · {u.utt_id[-20:]}", refresh=False)
        params = {"step": profile.deletion_step, "beam": profile.deletion_beam, "dtype": profile.deletion_precision,
                  "max_new_tokens": "2 x hypothesis + 10", "seed": profile.seed, "reference": "intact decode",
                  "ties": "seed per utterance and ranking", "decoding": f"batches of {DELETION_BATCH}, sdpa",
                  "ranking": rank.key, "reducer": reducer,
                  "explanation": it[rank.kind].provenance.get("params") if rank.kind in it.explanations else None}

        def compute(u: Utterance = u, rank: Ranking = rank, score: np.ndarray = score) -> dict[str, Any]:
            return deletion_curve_of(profile, cond, loaded, u, rank, score, memo)

        rec = st.fetch_json("deletion", f"{cond.name}/{file_id(u.utt_id)}/{rank.key}", params, compute)
        records.append(DeletionRecord(cond.name, u.utt_id, rank, tuple(rec["percents"]), tuple(rec["wer"]),
                                      tuple(rec["n_deleted"]), tuple(rec["texts"]), float(rec["auc"])))
    return DeletionTable(records)


def reducer_comparison(profile: Profile, cond: Condition, items: list[Explained], deletion_table: DeletionTable,
                       reducers: Sequence[str], kind: str = "CA") -> list[dict[str, Any]]:
    """The study's reducer comparison: for each way of pooling SM_X to the encoder grid,
    rho(``kind`` all layers, pooled SM_X) raw and disattenuated, and the deletion AUC of
    the pooled SM_X ranking (mean over utterances; NaN where deletion did not run it)."""
    df = deletion_table.to_frame()
    out = []
    for red in reducers:
        row = correlation(profile, cond, items, reducer=red, normalization=profile.normalization,
                          kind_names=[kind], targets=["SM_X"], views=[View("all")]).rows[0]
        a = df[(df["condition"] == cond.name) & (df["kind"] == "SM_X") & (df["variant"] == f"pooled {red}")]["auc"]
        out.append({"condition": cond.name, "reducer": red, "rho": row.rho,
                    "rho_disattenuated": row.rho_disattenuated, "auc": float(a.mean()) if len(a) else float("nan")})
    return out


def recorded_seconds(e: Any) -> float:
    """Seconds the computation of a stored map took, as recorded with it, charged to its own
    condition: a SPES map's reference pass + perturbation loop, a gradient map's ``seconds``;
    a run shared by ``k`` conditions of one clip (``shared_by``) counts ``1/k`` of its time.
    NaN where nothing was recorded (attention kinds)."""
    info = e.provenance.get("info", {}) or {}
    if "loop_s" in info:
        sec = float(info.get("setup_s", 0.0)) + float(info["loop_s"])
    elif "seconds" in info:
        sec = float(info["seconds"])
    else:
        return float("nan")
    return sec / int(info.get("shared_by", 1))


def explanation_costs(profile: Profile, items: dict[str, list[Explained]]) -> Any:
    """Measured cost of every explanation kind per utterance (``pandas.DataFrame``).

    SPES and gradient maps report the time their computation took (stored with the
    map); attention kinds are cheap (one teacher-forced pass) and are timed here by
    extracting them again. A SPES run shared by ``k`` conditions of the same audio (ASR and ST
    of one clip: each mask encoded once, decoded once per condition) is charged ``1/k`` of its
    time in each, so summing ``seconds`` over conditions gives the compute spent. Columns:
    ``condition``, ``utterance``, ``kind``, ``seconds``, ``shared by`` (conditions sharing the
    run, 1 if none), ``audio seconds``, ``tokens``, ``device``, ``dtype``, ``backend`` (SM_X's encoder passes).
    """
    import time

    import pandas as pd

    rows = []
    for name, its in items.items():
        cond = condition(profile, name)
        ctx = context(profile, cond)
        for it in its:
            for kind, e in it.explanations.items():
                info = e.provenance.get("info", {})
                params = e.provenance.get("params", {}) or {}
                sec = recorded_seconds(e)
                if np.isnan(sec) and e.layered:  # timed once by extracting again, and stored (a rerun changes no table)
                    def timed(kind: str = kind, it: Explained = it) -> dict[str, Any]:
                        scratch = kinds.Context(profile, cond, ResultStore(_scratch()), ctx.load_model)
                        t0 = time.perf_counter()
                        kinds.get(kind).compute(scratch, it.utt)
                        return {"seconds": time.perf_counter() - t0}
                    sec = ctx.store.fetch_json("timings", f"{kind}/{ctx.key(it.utt)}",
                                               {**kinds.get(kind).params(profile), "device": profile.device},
                                               timed)["seconds"]
                rows.append({"condition": name, "utterance": it.utt.utt_id, "kind": kind, "seconds": sec,
                             "shared by": int(info.get("shared_by", 1)),
                             "audio seconds": it.utt.n_frames / 100, "tokens": e.n_tokens,
                             "device": info.get("device", profile.device), "dtype": params.get("dtype", ""),
                             "backend": params.get("backend", "")})
    return pd.DataFrame(rows)


def _scratch() -> Any:
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="crossattn-scratch-"))


def alignment_head_ranks(corr: CorrelationTable, items: dict[str, list[Explained]], kind: str = "CA") -> list[dict[str, Any]]:
    """Where the heads a model ships for word timestamps rank among all single heads by
    rho with each reference (rank 1 = highest rho), per condition and target.

    Columns: ``condition``, ``target``, ``heads`` (count), ``best head`` (1-based
    ``layer/head``) and its rho, ``alignment heads`` (count), their best and median
    rank, and the mean rho of the alignment heads vs of all heads.
    """
    out = []
    for name, its in items.items():
        e = its[0][kind]
        shipped = {(int(l), int(h)) for l, h in e.alignment_heads}
        for target in ("SM_X", "SM_H"):
            rows = sorted(corr.select(kind, target, "head", name), key=lambda r: -r.rho)
            if not rows:
                continue
            ranks = [i + 1 for i, r in enumerate(rows) if (r.view.layer, r.view.head) in shipped]
            best = rows[0]
            out.append({"condition": name, "target": target, "heads": len(rows),
                        "best head": f"layer {best.view.layer + 1} head {best.view.head + 1}", "best rho": best.rho,
                        "alignment heads": len(ranks),
                        "best alignment-head rank": min(ranks) if ranks else None,
                        "median alignment-head rank": float(np.median(ranks)) if ranks else None,
                        "mean rho, alignment heads": float(np.mean([r.rho for r in rows
                                                                     if (r.view.layer, r.view.head) in shipped]))
                        if ranks else float("nan"),
                        "mean rho, all heads": float(np.mean([r.rho for r in rows]))})
    return out
