"""How far each explanation agrees with the references (notebook 06): correlations, context mixing.

:func:`correlation` puts every map on the comparison grid (:func:`~..evaluate.grids.to_comparison_grid`:
input-grid maps reduced by the profile's reducer, or the one given), correlates it with each reference
per utterance (Pearson and Spearman, and against the reference's null maps), and corrects the
condition-level value for the reference's noise (:func:`~..evaluate.reliability.corrected_correlation`,
the noise from :func:`.noise.reference_noise`). :func:`context_mixing` is the study's gain
rho(E, SM_H) - rho(E, SM_X); :func:`reducer_comparison` the study's choice of reducer;
:func:`alignment_head_ranks` where the heads a model ships for timestamps rank among all heads.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.config import Condition, Profile
from ..evaluate import correlate, grids, reliability, stats
from ..evaluate.results import CorrelationRow, CorrelationTable, DeletionTable, MixingRow
from ..evaluate.views import View
from ..explain import kinds
from ..explain.explanation import Explained
from .noise import reference_noise

__all__ = ["correlation", "context_mixing", "reducer_comparison", "alignment_head_ranks", "speakers_of"]


def speakers_of(items: list[Explained]) -> tuple[str, ...]:
    """The speaker of each explained utterance (the set's ``speaker`` column, kept in the
    utterance's row), in order; ``()`` where any utterance lacks one."""
    spk = [it.utt.row.get("speaker") for it in items]
    return tuple(str(s) for s in spk) if spk and all(s not in (None, "") for s in spk) else ()


def _groups(profile: Profile, speakers: tuple[str, ...], n: int) -> tuple[str, ...] | None:
    """The labels the profile's intervals resample first (``profile.bootstrap_clusters``):
    the speakers, or ``None`` (clips alone) for ``"clip"`` or where speakers are unknown."""
    if profile.bootstrap_clusters not in ("speaker", "clip"):
        raise ValueError(f"unknown bootstrap_clusters {profile.bootstrap_clusters!r}; choose 'speaker' or 'clip'")
    return speakers if profile.bootstrap_clusters == "speaker" and len(speakers) == n else None


def _clustered(profile: Profile, cc: Any, groups: tuple[str, ...] | None) -> tuple[float, float, float, float]:
    """``rho_lo, rho_hi, dis_lo, dis_hi`` of a corrected correlation, its intervals redrawn
    resampling speakers, then clips (``groups``) the way
    :func:`~..evaluate.reliability.corrected_correlation` resamples clips; without groups its own."""
    if groups is None:
        return cc.rho.lo, cc.rho.hi, cc.disattenuated.lo, cc.disattenuated.hi
    rho = stats.set_estimate(cc.rho_per_utterance, average="fisher", n_bootstrap=profile.n_bootstrap,
                             seed=profile.seed, min_utterances=profile.min_utterances, groups=groups)
    rc, rel = cc.rho_corrected_per_utterance, cc.reliability_per_utterance
    ok = np.flatnonzero(np.isfinite(rc) & np.isfinite(rel))
    lo = hi = float("nan")
    if ok.size >= profile.min_utterances and np.isfinite(cc.disattenuated.value):
        lo, hi = stats.resampled_interval(
            lambda row: reliability.disattenuated_value(rc[ok[row]], rel[ok[row]], profile.reliability_floor),
            ok.size, profile.n_bootstrap, profile.seed, groups=[groups[i] for i in ok])
    return rho.lo, rho.hi, lo, hi


def _targets(items: list[Explained], targets: Sequence[str] | None) -> list[str]:
    have = set(items[0].explanations)
    return [t for t in (targets or [k.name for k in kinds.REGISTRY.values() if k.reference]) if t in have]


def correlation(profile: Profile, cond: Condition, items: list[Explained], reducer: str | None = None,
                normalization: str | None = None, kind_names: Sequence[str] | None = None,
                targets: Sequence[str] | None = None, views: Sequence[View] | None = None) -> CorrelationTable:
    """rho(explanation, reference) for every explanation kind, view and reference (SM_X, SM_H).

    Every map is brought to the encoder grid (input-grid maps by ``reducer``, default the
    profile's), and normalized by ``normalization`` (default the profile's). Per
    utterance: Pearson and Spearman rho, rho against the reference's permutation-null maps,
    and the reference's split-half reliability over random splits and under the null
    (:func:`reference_noise`). Per condition (:func:`~..evaluate.reliability.corrected_correlation`):
    Fisher-z means, the null-corrected rho, the corrected reliability and the disattenuated
    rho, with bootstrap intervals over utterances from ``profile.min_utterances`` on; with
    ``profile.bootstrap_clusters == "speaker"`` the intervals resample speakers, then clips
    (the rows carry each utterance's speaker, :func:`speakers_of`). ``views`` restricts the
    views of layered kinds.
    """
    reducer = reducer or profile.reducer
    normalization = normalization or profile.normalization
    if not items:
        return CorrelationTable(reducer=reducer, normalization=normalization)
    tnames = _targets(items, targets)
    names = [k for k in (kind_names or list(items[0].explanations)) if k not in tnames]
    rows = []
    speakers = speakers_of(items)
    groups = _groups(profile, speakers, len(items))
    for target in tnames:
        tmaps = [it[target] for it in items]
        noise = [reference_noise(profile, cond, it, target, reducer, normalization) for it in items]
        ref_maps = [t.on_encoder_grid(None, reducer) for t in tmaps]
        for name in names:
            first = items[0][name]
            for view in (views if (views is not None and first.layered) else first.views()):
                emaps = [it[name].on_encoder_grid(view, reducer) for it in items]
                pe = correlate.correlate(emaps, ref_maps, method="pearson", normalization=normalization,
                                       n_bootstrap=1, seed=profile.seed)
                sp = correlate.correlate(emaps, ref_maps, method="spearman", normalization=normalization,
                                       n_bootstrap=1, seed=profile.seed)
                cc = reliability.corrected_correlation(
                    pe.per_utterance, [nz.rho_null(e, normalization) for nz, e in zip(noise, emaps)],
                    [nz.r_half for nz in noise], [nz.r_half_0 for nz in noise], floor=profile.reliability_floor,
                    n_bootstrap=profile.n_bootstrap, seed=profile.seed, min_utterances=profile.min_utterances)
                rho_lo, rho_hi, dis_lo, dis_hi = _clustered(profile, cc, groups)
                rows.append(CorrelationRow(
                    condition=cond.name, model=cond.model, set=cond.dataset, task=cond.task, kind=name,
                    view=view, n_layers=first.n_layers, target=target,
                    reducer=reducer if tmaps[0].grid == "input" else "-", normalization=normalization, utterances=len(items),
                    rho=cc.rho.value, rho_lo=rho_lo, rho_hi=rho_hi, rho_pooled=pe.pooled,
                    spearman=stats.fisher_mean(sp.per_utterance), reliability=cc.reliability,
                    ceiling=float(reliability.noise_ceiling(cc.reliability)) if np.isfinite(cc.reliability)
                    else float("nan"),
                    rho_disattenuated=cc.disattenuated.value, dis_lo=dis_lo, dis_hi=dis_hi,
                    rho_null=float(np.nanmean(cc.rho_null_per_utterance)), rho_corrected=cc.rho_corrected.value,
                    r_half=float(np.nanmean(cc.r_half_per_utterance)),
                    r_half_null=float(np.nanmean(cc.r_half_null_per_utterance)),
                    rho_per_utterance=tuple(float(v) for v in pe.per_utterance),
                    rho_null_per_utterance=tuple(float(v) for v in cc.rho_null_per_utterance),
                    r_half_per_utterance=tuple(float(v) for v in cc.r_half_per_utterance),
                    r_half_null_per_utterance=tuple(float(v) for v in cc.r_half_null_per_utterance),
                    speakers=speakers))
    return CorrelationTable(rows, reducer=reducer, normalization=normalization)


def context_mixing(profile: Profile, cond: Condition, items: list[Explained], kind: str = "CA",
                   view: View = View("all"), reducer: str | None = None, corr: CorrelationTable | None = None) -> MixingRow:
    """The context-mixing gain rho(E, SM_H) - rho(E, SM_X) of one explanation view, raw
    (difference of Fisher-z means) and disattenuated (each side null-corrected and divided
    by its own reference's corrected reliability), with paired bootstrap intervals over
    utterances from ``profile.min_utterances`` on (NaN where a reference is not estimable),
    resampling speakers, then clips where ``profile.bootstrap_clusters`` says so."""
    corr = corr if corr is not None else correlation(profile, cond, items, reducer, profile.normalization,
                                                     kind_names=[kind], views=[view])
    rx, rh = corr.get(cond.name, kind, "SM_X", view), corr.get(cond.name, kind, "SM_H", view)
    groups = rx.groups(profile.bootstrap_clusters)  # speakers, then clips, where the profile says so
    raw = stats.paired_estimate(rh.rho_per_utterance, rx.rho_per_utterance, average="fisher",
                                   n_bootstrap=profile.n_bootstrap, seed=profile.seed,
                                   min_utterances=profile.min_utterances, groups=groups)
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
        lo, hi = stats.resampled_interval(dis, n, profile.n_bootstrap, profile.seed,
                                          groups=groups if groups is not None and len(groups) == n else None)
    n_layers = items[0][kind].n_layers
    return MixingRow(condition=cond.name, model=cond.model, kind=kind, view=view.label(n_layers) if view else "map",
                     utterances=n, rho_SM_X=rx.rho, rho_SM_H=rh.rho, gain=raw.value, gain_lo=raw.lo, gain_hi=raw.hi,
                     gain_disattenuated=float(est), dis_lo=lo, dis_hi=hi)


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
