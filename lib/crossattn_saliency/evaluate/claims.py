"""The study's claims, each with our estimate per condition and a verdict (notebook 08).

:data:`STUDY` holds the study's reported figures (``shared/PAPER.md``), :data:`STUDY_RANGES` the
study's own ranges (not widened) the verdicts test against; :func:`claims_table` sets every claim
beside our estimates, raw and corrected for the reference's noise, with a verdict (:mod:`.verdicts`:
the whole interval inside the range widened by the profile's ``equivalence_margin``) decided on the
corrected values and their intervals, Holm's step-down over all the table's interval decisions
(:func:`.verdicts.holm`), and per claim the conditions that do not hold; :func:`kinds_table` sets
every explanation kind against the references. Numbers in, a ``pandas.DataFrame`` out; nothing is written here.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from . import margins, stats, verdicts
from .stats import Estimate
from .views import View

__all__ = ["STUDY", "STUDY_RANGES", "SHORT", "claims_table", "summary", "kinds_table"]


#: The study's reported figures (PAPER.md's results table; "(?)" = recovered from secondary sources).
STUDY = {
    "single_heads": "single heads correlate weakly and noisily with saliency",
    "averaging": "averaging over heads and layers raises the correlation",
    "last_layers": "the last decoder layers align best",
    "best_rho_x": "rho(CA, SM_X), best aggregate: base 0.588, small 0.633, medium 0.621 (?)",
    "half": "CA captures only about 50% of input relevance: rho(CA, SM_X) 0.45-0.64",
    "rho_h": "rho(CA, SM_H) 0.52-0.75 across models and settings",
    "gain": "context-mixing gain rho(CA,SM_H) - rho(CA,SM_X): +0.03 to +0.18",
    "beats_baselines_x": "(not tested by the study) CA agrees with SM_X more than the best model-blind map does "
                         "(Diagonal, Energy, DiagonalEnergy): the margin \"half\" is read against",
    "beats_baselines_h": "(not tested by the study) CA agrees with SM_H more than the best model-blind map does",
    "it_st": "Italian and ST correlate less than English ASR",
    "deletion": "deletion AUC: CA 41.2 < SM_X pooled 52.9 < SM_X full 91.3 (?)",
    "reducer": "2D max pooling is the best reducer on deletion and rho (57.04, 0.582) (?)",
    "wer": "WER en (base/small/medium): 9.5 / 11.7 / 11.1 (?)",
}


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


#: The study's own figures the verdicts test against, unwidened (shared/PAPER.md, "Reported results"
#: table); :func:`.verdicts.judge` widens each by the profile's ``equivalence_margin``.
STUDY_RANGES = {
    # "rho(CA, SM_X), best aggregate, per model: base 0.588, small 0.633, medium 0.621 (?)": lowest to highest
    "best_rho_x": (0.588, 0.633),
    # "'CA captures only about 50% of input relevance': rho(CA, SM_X) around 0.45-0.64"
    "half": (0.45, 0.64),
    # "rho(CA, SM_H) ('52-75% of the saliency'): 0.52-0.75 across models and settings"
    "rho_h": (0.52, 0.75),
    # "context-mixing gain rho(CA,SM_H) - rho(CA,SM_X): +0.03 to +0.18"
    "gain": (0.03, 0.18),
}


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


def _independent_difference(e: Estimate, f: Estimate) -> Estimate:
    """``e - f`` of two estimates on different utterances, its interval's half-widths the root sum of
    squares of the two half-widths on the facing sides (a normal approximation); no interval if
    either has none."""
    nan = float("nan")
    d = e.value - f.value
    if not (e.has_interval and f.has_interval):
        return Estimate(d, nan, nan, min(e.n, f.n), "difference of Fisher means (different utterances)",
                        e.min_utterances)
    lo = d - math.hypot(e.value - e.lo, f.hi - f.value)
    hi = d + math.hypot(e.hi - e.value, f.value - f.lo)
    return Estimate(d, lo, hi, min(e.n, f.n), "difference of Fisher means (different utterances)", e.min_utterances)


def claims_table(corr: Any, mixing: Any, deletion: Any, reducers: Any, quality: Any, kind: str = "CA",
                 reducer: str = "max2d", n_bootstrap: int = 1000, seed: int = 0,
                 min_utterances: int | None = None, disattenuation_ok: bool | None = None, *,
                 margin: float, clusters: str | None = None) -> Any:
    """The study's claims next to our figures, each with a verdict that survives multiplicity.

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
    margin : the profile's ``equivalence_margin``: how far outside the study's range
        (:data:`STUDY_RANGES`) a whole interval may reach and still match it.
    clusters : the profile's ``bootstrap_clusters``: ``"speaker"``: the intervals this table draws
        from per-utterance correlations resample the speakers the rows carry (``speakers``), then
        clips; ``"clip"`` or ``None`` (no default of its own: ``None`` means clips alone, today's
        numbers): clips alone. The rows' own intervals (``rho_lo``, ``dis_lo``, ...) and the mixing
        rows' were drawn by ``run.correlating`` under the same profile field.

    Returns
    -------
    ``pandas.DataFrame`` with columns ``claim``, ``study``, ``compared`` (which
    conditions, like with like), ``ours (raw)``, ``ours (corrected)`` (null-corrected and
    disattenuated; Spearman's rho, which has no reliability correction, is not among them),
    ``verdict`` (:mod:`.verdicts`: holds / holds, smaller or larger than the study / does not
    hold / undecided / not testable at this size), decided on the corrected values with their
    intervals, ``not holding here`` (per claim only the conditions whose verdict is not
    "holds", by name, with their figures), ``decisions`` (the claim's interval decisions in
    the family) and ``undecided by Holm`` (those that decide at their own 95% level but not
    after Holm's step-down over the whole family, :func:`.verdicts.holm`, and so read
    "undecided"). Layers print 1-based ("layer 4 of 4"). ``attrs["speakers"]``: per condition, the
    number of distinct speakers of its explained clips (0 where the rows carry none), and
    ``attrs["clusters"]``: ``clusters`` (for the report's method text).
    """
    import pandas as pd

    if margin is None or not math.isfinite(float(margin)) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0 (the profile's equivalence_margin), got {margin!r}")
    if clusters not in (None, "speaker", "clip"):
        raise ValueError(f"clusters must be the profile's bootstrap_clusters ('speaker' or 'clip'), got {clusters!r}")
    mu = stats.MIN_UTTERANCES if min_utterances is None else int(min_utterances)
    kw = dict(n_bootstrap=n_bootstrap, seed=seed, min_utterances=mu)
    use_dis = disattenuation_ok is not False  # a failed check: decide on raw values
    conds = list(dict.fromkeys(r.condition for r in corr.rows if r.kind == kind))
    nan = float("nan")

    def grp(c: str, target: str = "SM_X") -> Any:
        """The labels intervals over condition ``c``'s utterances resample first (None: clips)."""
        try:
            return corr.get(c, kind, target, View("all")).groups(clusters)
        except KeyError:
            return None

    def speakers_of(c: str) -> int:
        rs = [r for r in corr.rows if r.condition == c and r.kind == kind]
        return len(set(rs[0].speakers)) if rs else 0

    # one entry per claim: per (condition -> (verdict, p)), raw / dis (condition -> text), or a fixed verdict
    rows: list[dict[str, Any]] = []

    def add(claim: str, compared: str, per: dict[str, tuple[str, float]], raw: dict[str, str],
            dis: dict[str, str] | None = None, verdict: str | None = None, empty: str = "",
            est: dict[str, Any] | None = None) -> None:
        rows.append(dict(claim=claim, compared=compared, per=per, raw=raw, dis=dis or {}, verdict=verdict,
                         empty=empty, est=est or {}))

    def per_utt(c: str, target: str, view_kind: str) -> tuple[list[Any], np.ndarray]:
        rs = corr.select(kind, target, view_kind, c)
        return rs, np.array([r.rho_per_utterance for r in rs], dtype=np.float64)  # views x utterances

    # 1: single heads, head by head against all layers; 2: the mean head against all layers
    p1, p2, t1, t2, x2 = {}, {}, {}, {}, {}
    for c in conds:
        heads, hv = per_utt(c, "SM_X", "head")
        a = np.asarray(corr.get(c, kind, "SM_X", View("all")).rho_per_utterance)
        g = grp(c)
        each = [stats.paired_estimate(a, h, average="mean", groups=g, **kw) for h in hv]
        o, p, below, above = verdicts.heads_decision(each)
        p1[c] = (o, p)
        spread = float(np.max([r.rho for r in heads]) - np.min([r.rho for r in heads]))
        t1[c] = (f"{below} of {len(heads)} heads surely below all layers, {above} surely above (paired, Holm over "
                 f"the heads); head spread {spread:.2f}")
        e2 = stats.paired_estimate(a, hv.mean(axis=0), average="mean", groups=g, **kw)
        p2[c] = verdicts.decision(e2)
        x2[c] = e2
        t2[c] = f"all layers minus mean head {e2.text('+.2f')}"
    add("single_heads", "every head vs all layers, same utterances", p1, t1)
    add("averaging", "mean head vs all layers, same utterances", p2, t2, est=x2)
    # 3: the last layers: rho of the last half of the layers minus the first half, per utterance
    p3, t3, x3 = {}, {}, {}
    for c in conds:
        layers, lv = per_utt(c, "SM_X", "layer")
        n_layers = len(layers)
        late = np.array([r.view.layer >= n_layers / 2 for r in layers])
        e = stats.paired_estimate(lv[late].mean(0), lv[~late].mean(0), average="mean", groups=grp(c), **kw)
        best = layers[int(np.nanargmax([r.rho for r in layers]))]
        p3[c] = verdicts.decision(e)
        x3[c] = e
        t3[c] = f"best {best.view.label(n_layers)}; last half minus first half {e.text('+.2f')}"
    add("last_layers", "layers of one model, same utterances", p3, t3, est=x3)
    # 4: best aggregate, chosen on one condition per model and reported on the others
    p4, t4, d4, x4 = {}, {}, {}, {}
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
            p4[c] = verdicts.decision(e, STUDY_RANGES["best_rho_x"], margin=margin)
            x4[c] = e
            t4[c] = (f"{pick.view.label(pick.n_layers)} (chosen on {cs[0]}"
                     f"{'; same condition, optimistic' if c == cs[0] else ''}): {_fmt(r.rho)}")
            d4[c] = e.text()
    add("best_rho_x", "view chosen on one condition, reported on the others", p4, t4, d4, est=x4)
    # 5-6: ranges of rho(all layers, SM_X / SM_H)
    for claim, target in (("half", "SM_X"), ("rho_h", "SM_H")):
        ps, tr, td, xs = {}, {}, {}, {}
        for c in conds:
            r = corr.get(c, kind, target, View("all"))
            e = _row_estimate(r, use_dis, mu)
            ps[c] = verdicts.decision(e, STUDY_RANGES[claim], margin=margin)
            xs[c] = e
            tr[c] = f"{_row_estimate(r, False, mu).text()} (pooled {_fmt(r.rho_pooled)})"
            td[c] = f"{e.text()} (null rho {_fmt(r.rho_null)}, reliability {_fmt(r.reliability)})"
        add(claim, f"all layers vs {target}, per condition", ps, tr, td, est=xs)
    # 6b: against model-blind baselines: CA's margin over the best trivial baseline (paired over utterances)
    for target in ("SM_X", "SM_H"):
        pb, tb, xb = {}, {}, {}
        for m in margins.baseline_margins(corr, kind=kind, targets=(target,), n_bootstrap=n_bootstrap, seed=seed,
                                          min_utterances=mu, clusters=clusters):
            e = stats.Estimate(m.margin, m.margin_lo, m.margin_hi, m.utterances, "paired Fisher z difference", mu)
            pb[m.condition] = verdicts.decision(e)
            tb[m.condition] = (f"{kind} {_fmt(m.rho_kind)} vs best baseline {m.baseline} {_fmt(m.rho_baseline)}: "
                               f"margin {e.text('+.2f')}")
            xb[m.condition] = e
        add(f"beats_baselines_{target[-1].lower()}", f"{kind} vs the best model-blind baseline against {target}, "
            "same utterances", pb, tb, verdict=None if pb else verdicts.UNTESTABLE, empty="no baseline kinds", est=xb)
    # 7: context-mixing gain
    mixing = [m for m in mixing if getattr(m, "kind", kind) == kind]
    pg, tg, dg, xg = {}, {}, {}, {}
    for m in mixing:
        few = m.utterances < mu  # no interval below the minimum, whatever the row carries
        raw = stats.Estimate(m.gain, nan if few else m.gain_lo, nan if few else m.gain_hi, m.utterances,
                             "paired Fisher z difference", mu)
        dis = stats.Estimate(m.gain_disattenuated, nan if few else m.dis_lo, nan if few else m.dis_hi, m.utterances,
                             "disattenuated", mu)
        pg[m.condition] = verdicts.decision(dis if use_dis else raw, STUDY_RANGES["gain"], margin=margin)
        xg[m.condition] = dis if use_dis else raw
        tg[m.condition] = raw.text('+.2f')
        dg[m.condition] = dis.text('+.2f')
    add("gain", "rho with SM_H minus with SM_X, same utterances", pg, tg, dg,
        verdict=None if pg else verdicts.UNTESTABLE, est=xg)
    # 8: language (en-tts vs it-tts, ASR, one model) and task (it-tts ASR vs ST, same audio)
    p8, t8 = {}, {}
    for c, (model, dset, task) in {c: c.split("__") for c in conds}.items():
        if dset.startswith("it-") and task == "asr":
            en = f"{model}__en-{dset.split('-', 1)[1]}__asr"
            key = f"language ({model})"
            if en in conds:
                a = np.asarray(corr.get(en, kind, "SM_X", View("all")).rho_per_utterance)
                b = np.asarray(corr.get(c, kind, "SM_X", View("all")).rho_per_utterance)
                e = stats.set_estimate(b, average="fisher", groups=grp(c), **kw)
                f = stats.set_estimate(a, average="fisher", groups=grp(en), **kw)
                diff = _independent_difference(e, f)  # the p of the decision; the verdict: the intervals apart
                if not (e.has_interval and f.has_interval):
                    p8[key] = (verdicts.UNTESTABLE, nan)
                elif e.lo > f.hi or e.hi < f.lo:
                    p8[key] = (verdicts.FAILS if e.lo > f.hi else verdicts.HOLDS, verdicts.interval_p(diff, 0.0))
                else:
                    p8[key] = (verdicts.UNDECIDED, 1.0)
                t8[key] = (f"{en} vs {c} (synthetic voices differ): {f.text()} vs {e.text()}, "
                           f"difference {diff.value:+.2f}")
            else:
                p8[key] = (verdicts.UNTESTABLE, nan)
                t8[key] = f"no {en} saliency in this profile"
            st = f"{model}__{dset}__st"
            if st in conds:
                a = np.asarray(corr.get(c, kind, "SM_X", View("all")).rho_per_utterance)
                b = np.asarray(corr.get(st, kind, "SM_X", View("all")).rho_per_utterance)
                if a.size == b.size:
                    e = stats.paired_estimate(b, a, average="fisher", groups=grp(c), **kw)
                    p8[f"task ({model})"] = verdicts.decision(e, direction=-1)
                    t8[f"task ({model})"] = f"{st} minus {c} (same audio): {e.text('+.2f')}"
    add("it_st", "language on synthetic speech; task on the same audio", p8, t8,
        verdict=None if p8 else verdicts.UNTESTABLE, empty="n/a")
    # 9: deletion: order of AUCs (paired per utterance) and each explanation against its matched floor
    df = deletion.to_frame()
    keys = [kind, f"SM_X pooled {reducer}", "SM_X full"]
    pd_, td, dd = {}, {}, {}
    for c in dict.fromkeys(df["condition"]):
        d = df[df["condition"] == c].pivot_table(index="utterance", columns="explanation", values="auc")
        floor_of = {k: "random segments" if k.endswith(" full") else "random columns" for k in keys}
        if not all(k in d and floor_of[k] in d for k in keys):
            continue
        # decided on each ranking's gap to its same-shape random floor (the raw order partly measures the
        # shape of the deleted area: full-resolution maps delete SLIC segments, the others whole columns)
        gap = {k: d[k] - d[floor_of[k]] for k in keys}
        diffs = [stats.paired_estimate(gap[b], gap[a], average="mean", **kw) for a, b in zip(keys, keys[1:])]
        pd_[c] = verdicts.order_decision(diffs)
        td[c] = " / ".join(f"{k} {d[k].mean():.1f} (gap {gap[k].mean():+.1f})" for k in keys)
    for g in deletion.gaps(n_bootstrap=n_bootstrap, seed=seed, min_utterances=mu):
        if g["explanation"] in keys:
            text = f"{g['explanation']} {g['gap']:+.1f} vs {g['floor']} ({g['faithful']})"
            dd[g["condition"]] = f"{dd[g['condition']]}, {text}" if g["condition"] in dd else text
    add("deletion", "gaps to same-shape random floors, paired on the same utterances", pd_, td, dd,
        verdict=None if pd_ else verdicts.UNTESTABLE, empty="n/a")
    # 10: reducers (means over utterances; no interval, no decision in the family)
    rr = reducers.groupby("reducer")[["rho", "auc"]].mean()
    n_red = min((r.utterances for r in corr.rows), default=0)
    best_rho, best_auc = rr["rho"].idxmax(), rr["auc"].idxmax()
    ok = best_rho == "max2d" and best_auc == "max2d"
    add("reducer", "reducers on the same maps", {},
        {r: f"rho {_fmt(v.rho)}, AUC {v.auc:.1f}" for r, v in rr.iterrows()},
        verdict=verdicts.UNTESTABLE if n_red < mu else (verdicts.HOLDS if ok else verdicts.UNDECIDED))
    # 11: WER
    q = quality[(quality["language"] == "en") & (quality["task"] == "ASR")]
    add("wer", "other models than the study's", {},
        {f"{r['model']} {r['set']} ({r['speech']})": f"{r['WER (%)']:.1f}" for _, r in q.iterrows()},
        verdict="comparable models only (ours are Whisper, not the study's models)")

    # multiplicity: Holm over every decision with a p-value (untestable ones make none)
    family = [(i, k) for i, r in enumerate(rows) for k, (_, p) in r["per"].items() if np.isfinite(p)]
    adjusted = verdicts.holm([rows[i]["per"][k][1] for i, k in family])
    held = {(i, k) for (i, k), q in zip(family, adjusted)
            if rows[i]["per"][k][0] in verdicts.DECIDED and not q < verdicts.ALPHA}
    n_family = len(family)
    out_rows = []
    for i, r in enumerate(rows):
        final = {k: verdicts.UNDECIDED if (i, k) in held else o for k, (o, _) in r["per"].items()}
        verdict = r["verdict"] if r["verdict"] is not None else _combine(final)
        if final:
            failing = []
            for k, v in final.items():
                if v == verdicts.HOLDS:
                    continue
                why = (f" (decides as \"{r['per'][k][0]}\" at its own 95% level, not after Holm over "
                       f"{n_family} decisions)" if (i, k) in held else "")
                figs = "; ".join(x for x in (r["raw"].get(k, ""), f"corrected: {r['dis'][k]}" if r["dis"].get(k)
                                             else "") if x)
                failing.append(f"{k}: {v}{why}" + (f" [ours: {figs}]" if figs else ""))
            not_holding = "; ".join(failing)
        else:
            not_holding = "" if verdict == verdicts.HOLDS or verdict.startswith("comparable") else verdict
        out_rows.append({"claim": r["claim"], "compared": r["compared"],
                         "ours": "; ".join(f"{k}: {t}" for k, t in r["raw"].items()) or r["empty"],
                         "dis": "; ".join(f"{k}: {t}" for k, t in r["dis"].items()),
                         "verdict": verdict, "not holding here": not_holding,
                         "decisions": sum(1 for j, _ in family if j == i),
                         "undecided by Holm": sum(1 for j, _ in held if j == i)})
    out = pd.DataFrame(out_rows)
    out.insert(1, "study", out["claim"].map(STUDY))
    out = out.rename(columns={"ours": "ours (raw)", "dis": "ours (corrected)"})
    # for the report's summary and forest plot: the final verdict and the decided estimate per condition
    out.attrs["verdicts"] = {r["claim"]: {k: (verdicts.UNDECIDED if (i, k) in held else o)
                                          for k, (o, _) in r["per"].items()} for i, r in enumerate(rows)}
    out.attrs["speakers"] = {c: speakers_of(c) for c in conds}
    out.attrs["clusters"] = clusters
    out.attrs["estimates"] = {r["claim"]: {k: (float(e.value), float(e.lo), float(e.hi)) for k, e in r["est"].items()}
                              for r in rows if r["est"]}
    return out


#: the verdict words of the summary table (:func:`summary`)
SHORT = {verdicts.HOLDS: "holds", verdicts.SMALLER: "smaller", verdicts.LARGER: "larger", verdicts.FAILS: "fails",
         verdicts.UNDECIDED: "undecided", verdicts.UNTESTABLE: "n/a"}


def summary(claims: Any, label: Callable[[str], str] = str) -> Any:
    """One row per claim, one column per condition (named by ``label``), each cell the verdict in
    one word (:data:`SHORT`); a claim without per-condition verdicts gets its overall verdict in the
    ``overall`` column. ``claims``: :func:`claims_table`'s frame (its ``attrs["verdicts"]``)."""
    import pandas as pd

    per = claims.attrs.get("verdicts", {})
    conds = list(dict.fromkeys(c for v in per.values() for c in v))
    rows = []
    for _, r in claims.iterrows():
        v = per.get(r["claim"], {})
        rows.append({"claim": r["claim"], **{label(c): SHORT.get(v[c], v[c]) if c in v else "" for c in conds},
                     "overall": SHORT.get(r["verdict"], r["verdict"].split(" (")[0]) if not v else ""})
    return pd.DataFrame(rows)


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
