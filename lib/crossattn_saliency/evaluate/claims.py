"""The study's claims, each with our estimate per condition and a verdict (notebook 08).

:data:`STUDY` holds the study's reported figures (``shared/PAPER.md``), :data:`STUDY_RANGES` the
ranges the verdicts test against; :func:`claims_table` sets every claim beside our estimates,
raw and corrected for the reference's noise, with a verdict (:mod:`.verdicts`) decided on the
corrected values and their intervals; :func:`kinds_table` sets every explanation kind against the
references. Numbers in, a ``pandas.DataFrame`` out; nothing is written here.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from . import stats, verdicts
from .stats import Estimate
from .views import View

__all__ = ["STUDY", "STUDY_RANGES", "claims_table", "kinds_table"]


#: The study's reported figures (PAPER.md's results table; "(?)" = recovered from secondary sources).
STUDY = {
    "single_heads": "single heads correlate weakly and noisily with saliency",
    "averaging": "averaging over heads and layers raises the correlation",
    "last_layers": "the last decoder layers align best",
    "best_rho_x": "rho(CA, SM_X), best aggregate: base 0.588, small 0.633, medium 0.621 (?)",
    "half": "CA captures only about 50% of input relevance: rho(CA, SM_X) 0.45-0.64",
    "rho_h": "rho(CA, SM_H) 0.52-0.75 across models and settings",
    "gain": "context-mixing gain rho(CA,SM_H) - rho(CA,SM_X): +0.03 to +0.18",
    "it_st": "Italian and ST correlate less than English ASR",
    "deletion": "deletion AUC: CA 41.2 < SM_X pooled 52.9 < SM_X full 91.3 (?)",
    "reducer": "2D max pooling is the best reducer on deletion and rho (57.04, 0.582) (?)",
    "wer": "WER en (base/small/medium): 9.5 / 11.7 / 11.1 (?)",
}


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


#: the study's ranges the verdicts test against (PAPER.md)
STUDY_RANGES = {"best_rho_x": (0.45, 0.70), "half": (0.45, 0.64), "rho_h": (0.52, 0.75), "gain": (0.03, 0.18)}


def _combine(per_condition: dict[str, str]) -> str:
    """One verdict over conditions: the common one, or each condition's."""
    vals = list(dict.fromkeys(per_condition.values()))
    if len(vals) == 1:
        return vals[0]
    return "; ".join(f"{c}: {v}" for c, v in per_condition.items())


def _row_estimate(row: Any, corrected: bool, min_utterances: int) -> Any:
    """A correlation row as an :class:`~.stats.Estimate`: the disattenuated value where the
    reference is reliable enough (``corrected``), else the null-corrected rho without interval."""
    nan = float("nan")
    few = row.utterances < min_utterances  # no interval below the minimum, whatever the row carries
    if corrected and np.isfinite(row.rho_disattenuated):
        return Estimate(row.rho_disattenuated, nan if few else row.dis_lo, nan if few else row.dis_hi,
                        row.utterances, "disattenuated", min_utterances)
    if corrected:
        return Estimate(nan, nan, nan, row.utterances, "not estimable (reference reliability below the floor)",
                        min_utterances)
    return Estimate(row.rho, nan if few else row.rho_lo, nan if few else row.rho_hi, row.utterances,
                    "Fisher z mean", min_utterances)


def claims_table(corr: Any, mixing: Any, deletion: Any, reducers: Any, quality: Any, kind: str = "CA",
                 reducer: str = "max2d", n_bootstrap: int = 1000, seed: int = 0,
                 min_utterances: int | None = None, disattenuation_ok: bool | None = None) -> Any:
    """The study's claims next to our figures, each with a four-outcome verdict.

    Parameters
    ----------
    corr : :class:`~.tables.CorrelationTable` (reducer ``reducer``) of every saliency condition.
    mixing : :class:`~.tables.MixingRow` objects of ``kind``, view "all layers".
    deletion : :class:`~.tables.DeletionTable`.
    reducers : frame with ``condition``, ``reducer``, ``rho``, ``auc``.
    quality : ``run.quality_table`` output.
    kind : the attention kind the claims are about (the study: plain cross-attention).
    n_bootstrap, seed, min_utterances : as in the profile.
    disattenuation_ok : the outcome of notebook 05's check (``None``: not run). ``False``:
        claims are decided on raw values, not on disattenuated ones.

    Returns
    -------
    ``pandas.DataFrame`` with columns ``claim``, ``study``, ``compared`` (which
    conditions, like with like), ``ours (raw)``, ``ours (corrected)`` (null-corrected and
    disattenuated), ``verdict`` (:mod:`.verdicts`: holds / holds, smaller or larger than
    the study / does not hold / undecided / not testable at this size), decided on the
    corrected values with their intervals. Layers print 1-based ("layer 4 of 4").
    """
    import pandas as pd

    mu = stats.MIN_UTTERANCES if min_utterances is None else int(min_utterances)
    kw = dict(n_bootstrap=n_bootstrap, seed=seed, min_utterances=mu)
    use_dis = disattenuation_ok is not False  # a failed check: decide on raw values
    conds = list(dict.fromkeys(r.condition for r in corr.rows if r.kind == kind))
    rows: list[dict[str, Any]] = []

    def per_utt(c: str, target: str, view_kind: str) -> tuple[list[Any], np.ndarray]:
        rs = corr.select(kind, target, view_kind, c)
        return rs, np.array([r.rho_per_utterance for r in rs], dtype=np.float64)  # views x utterances

    # 1-2: single heads vs the average of all heads
    v1, v2, t1, t2 = {}, {}, [], []
    for c in conds:
        heads, hv = per_utt(c, "SM_X", "head")
        allr = corr.get(c, kind, "SM_X", View("all"))
        a = np.asarray(allr.rho_per_utterance)
        e1 = stats.paired_estimate(a, np.median(hv, axis=0), average="mean", **kw)
        e2 = stats.paired_estimate(a, hv.mean(axis=0), average="mean", **kw)
        v1[c], v2[c] = verdicts.judge(e1), verdicts.judge(e2)
        spread = float(np.max([r.rho for r in heads]) - np.min([r.rho for r in heads]))
        t1.append(f"{c}: all layers minus median head {e1.text('+.2f')} (head spread {spread:.2f})")
        t2.append(f"{c}: all layers minus mean head {e2.text('+.2f')}")
    rows.append(dict(claim="single_heads", compared="every head vs all layers, same utterances",
                     ours="; ".join(t1), dis="", verdict=_combine(v1)))
    rows.append(dict(claim="averaging", compared="mean head vs all layers, same utterances",
                     ours="; ".join(t2), dis="", verdict=_combine(v2)))
    # 3: the last layers: rho of the last half of the layers minus the first half, per utterance
    v3, t3 = {}, []
    for c in conds:
        layers, lv = per_utt(c, "SM_X", "layer")
        n_layers = len(layers)
        late = np.array([r.view.layer >= n_layers / 2 for r in layers])
        e = stats.paired_estimate(lv[late].mean(0), lv[~late].mean(0), average="mean", **kw)
        best = layers[int(np.nanargmax([r.rho for r in layers]))]
        v3[c] = verdicts.judge(e)
        t3.append(f"{c}: best {best.view.label(n_layers)}; last half minus first half {e.text('+.2f')}")
    rows.append(dict(claim="last_layers", compared="layers of one model, same utterances", ours="; ".join(t3),
                     dis="", verdict=_combine(v3)))
    # 4: best aggregate, chosen on one condition per model and reported on the others
    v4, t4, d4 = {}, [], []
    aggs = ("all", "last", "alignment", "layer")
    by_model: dict[str, list[str]] = {}
    for c in conds:
        by_model.setdefault(next(r.model for r in corr.rows if r.condition == c), []).append(c)
    for model, cs in by_model.items():
        pick = max((r for r in corr.rows if r.condition == cs[0] and r.kind == kind and r.target == "SM_X"
                    and r.view is not None and r.view.scope in aggs), key=lambda r: r.rho)
        shown = cs[1:] or cs[:1]
        for c in shown:
            r = corr.get(c, kind, "SM_X", pick.view)
            e = _row_estimate(r, use_dis, mu)
            v4[c] = verdicts.judge(e, STUDY_RANGES["best_rho_x"])
            t4.append(f"{c}: {pick.view.label(pick.n_layers)} (chosen on {cs[0]}"
                      f"{'; same condition, optimistic' if c == cs[0] else ''}): {_fmt(r.rho)}")
            d4.append(f"{c}: {e.text()}")
    rows.append(dict(claim="best_rho_x", compared="view chosen on one condition, reported on the others",
                     ours="; ".join(t4), dis="; ".join(d4), verdict=_combine(v4)))
    # 5-6: ranges of rho(all layers, SM_X / SM_H)
    for claim, target in (("half", "SM_X"), ("rho_h", "SM_H")):
        vs, tr, td = {}, [], []
        for c in conds:
            r = corr.get(c, kind, target, View("all"))
            e = _row_estimate(r, use_dis, mu)
            vs[c] = verdicts.judge(e, STUDY_RANGES[claim])
            tr.append(f"{c}: {_row_estimate(r, False, mu).text()} (Spearman {_fmt(r.spearman)}, "
                      f"pooled {_fmt(r.rho_pooled)})")
            td.append(f"{c}: {e.text()} (null rho {_fmt(r.rho_null)}, reliability {_fmt(r.reliability)})")
        rows.append(dict(claim=claim, compared=f"all layers vs {target}, per condition", ours="; ".join(tr),
                         dis="; ".join(td), verdict=_combine(vs)))
    # 7: context-mixing gain
    mixing = [m for m in mixing if getattr(m, "kind", kind) == kind]
    vg, tg, dg = {}, [], []
    nan = float("nan")
    for m in mixing:
        few = m.utterances < mu  # no interval below the minimum, whatever the row carries
        raw = stats.Estimate(m.gain, nan if few else m.gain_lo, nan if few else m.gain_hi, m.utterances,
                         "paired Fisher z difference", mu)
        dis = stats.Estimate(m.gain_disattenuated, nan if few else m.dis_lo, nan if few else m.dis_hi, m.utterances,
                         "disattenuated", mu)
        vg[m.condition] = verdicts.judge(dis if use_dis else raw, STUDY_RANGES["gain"])
        tg.append(f"{m.condition}: {raw.text('+.2f')}")
        dg.append(f"{m.condition}: {dis.text('+.2f')}")
    rows.append(dict(claim="gain", compared="rho with SM_H minus with SM_X, same utterances", ours="; ".join(tg),
                     dis="; ".join(dg), verdict=_combine(vg) if vg else verdicts.UNTESTABLE))
    # 8: language (en-tts vs it-tts, ASR, one model) and task (it-tts ASR vs ST, same audio)
    t8, v8 = [], {}
    by_name = {c: c.split("__") for c in conds}
    for c, (model, dset, task) in by_name.items():
        if dset.startswith("it-") and task == "asr":
            en = f"{model}__en-{dset.split('-', 1)[1]}__asr"
            if en in conds:
                a = np.asarray(corr.get(en, kind, "SM_X", View("all")).rho_per_utterance)
                b = np.asarray(corr.get(c, kind, "SM_X", View("all")).rho_per_utterance)
                e = stats.set_estimate(b, average="fisher", **kw)
                f = stats.set_estimate(a, average="fisher", **kw)
                diff = stats.Estimate(e.value - f.value, float("nan"), float("nan"), min(e.n, f.n),
                                  "difference of Fisher means (different utterances, different voices)", mu)
                v8[f"language ({model})"] = verdicts.UNTESTABLE if not (e.has_interval and f.has_interval) else (
                    verdicts.FAILS if e.lo > f.hi else verdicts.HOLDS if e.hi < f.lo else verdicts.UNDECIDED)
                t8.append(f"language, {en} vs {c} (synthetic voices differ): {f.text()} vs {e.text()}, "
                          f"difference {diff.value:+.2f}")
            else:
                v8[f"language ({model})"] = verdicts.UNTESTABLE
                t8.append(f"language: no {en} saliency in this profile")
            st = f"{model}__{dset}__st"
            if st in conds:
                a = np.asarray(corr.get(c, kind, "SM_X", View("all")).rho_per_utterance)
                b = np.asarray(corr.get(st, kind, "SM_X", View("all")).rho_per_utterance)
                if a.size == b.size:
                    e = stats.paired_estimate(b, a, average="fisher", **kw)
                    v8[f"task ({model})"] = verdicts.judge(e, direction=-1)
                    t8.append(f"task, {st} minus {c} (same audio): {e.text('+.2f')}")
    rows.append(dict(claim="it_st", compared="language on synthetic speech; task on the same audio",
                     ours="; ".join(t8) or "n/a", dis="", verdict=_combine(v8) if v8 else verdicts.UNTESTABLE))
    # 9: deletion: order of AUCs (paired per utterance) and each explanation against its matched floor
    df = deletion.to_frame()
    keys = [kind, f"SM_X pooled {reducer}", "SM_X full"]
    vd, td = {}, []
    for c in dict.fromkeys(df["condition"]):
        d = df[df["condition"] == c].pivot_table(index="utterance", columns="explanation", values="auc")
        if not all(k in d for k in keys):
            continue
        diffs = [stats.paired_estimate(d[b], d[a], average="mean", **kw) for a, b in zip(keys, keys[1:])]
        vd[c] = verdicts.judge_order(diffs)
        td.append(f"{c}: " + " / ".join(f"{k} {d[k].mean():.1f}" for k in keys))
    gaps = deletion.gaps(n_bootstrap=n_bootstrap, seed=seed, min_utterances=mu)
    dgap = "; ".join(f"{g['condition']}: {g['explanation']} {g['gap']:+.1f} vs {g['floor']} ({g['faithful']})"
                     for g in gaps if g["explanation"] in keys)
    rows.append(dict(claim="deletion", compared="AUCs on the same utterances; each against its same-shape floor",
                     ours="; ".join(td) or "n/a", dis=dgap, verdict=_combine(vd) if vd else verdicts.UNTESTABLE))
    # 10: reducers (means over utterances; no interval)
    rr = reducers.groupby("reducer")[["rho", "auc"]].mean()
    n_red = min((r.utterances for r in corr.rows), default=0)
    best_rho, best_auc = rr["rho"].idxmax(), rr["auc"].idxmax()
    ok = best_rho == "max2d" and best_auc == "max2d"
    rows.append(dict(claim="reducer", compared="reducers on the same maps",
                     ours="; ".join(f"{r}: rho {_fmt(v.rho)}, AUC {v.auc:.1f}" for r, v in rr.iterrows()), dis="",
                     verdict=verdicts.UNTESTABLE if n_red < mu else (verdicts.HOLDS if ok else verdicts.UNDECIDED)))
    # 11: WER
    q = quality[(quality["language"] == "en") & (quality["task"] == "ASR")]
    rows.append(dict(claim="wer", compared="other models than the study's",
                     ours="; ".join(f"{r['model']} {r['set']} ({r['speech']}): {r['WER (%)']:.1f}"
                                    for _, r in q.iterrows()),
                     dis="", verdict="comparable models only (ours are Whisper, not the study's models)"))
    out = pd.DataFrame(rows)
    out.insert(1, "study", out["claim"].map(STUDY))
    return out.rename(columns={"ours": "ours (raw)", "dis": "ours (corrected)"})


def kinds_table(corr: Any, deletion: Any, costs: Any | None = None, titles: Mapping[str, str] | None = None) -> Any:
    """Every explanation kind against the SPES references: per condition, rho with SM_X
    and SM_H (all layers and heads for attention kinds), raw and disattenuated, the
    mean deletion AUC of its main ranking, and its cost per utterance (seconds).

    ``corr``: :class:`~.tables.CorrelationTable`; ``deletion``: :class:`~.tables.DeletionTable`;
    ``costs``: frame with ``condition``, ``kind``, ``seconds`` (mean per utterance); ``titles``:
    kind name -> its title (``Kind.title``).
    """
    import pandas as pd

    df = corr.to_frame()
    df = df[df["view_kind"].isin(["all", "map"])]
    auc = deletion.to_frame() if hasattr(deletion, "to_frame") else deletion
    rows = []
    for (cond, kind), g in df.groupby(["condition", "kind"], sort=False):
        rec = {"condition": cond, "kind": kind, "explanation": (titles or {}).get(kind, kind)}
        for t in ("SM_X", "SM_H"):
            r = g[g["target"] == t]
            rec[f"rho {t}"] = float(r["rho"].iloc[0]) if len(r) else float("nan")
            rec[f"disattenuated {t}"] = float(r["rho_disattenuated"].iloc[0]) if len(r) else float("nan")
        a = auc[(auc["condition"] == cond) & (auc["kind"] == kind)
                & auc["variant"].isin(["expanded", "pooled max2d"])] if "kind" in auc else auc.iloc[:0]
        rec["deletion AUC"] = float(a["auc"].mean()) if len(a) else float("nan")
        if costs is not None:
            c = costs[(costs["condition"] == cond) & (costs["kind"] == kind)]
            rec["seconds per utterance"] = float(c["seconds"].mean()) if len(c) else float("nan")
        rows.append(rec)
    return pd.DataFrame(rows)
