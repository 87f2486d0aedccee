"""Tables for readers: CSV + Markdown files, and the study-vs-ours report."""
from __future__ import annotations

import math

import numpy as np
from pathlib import Path
from typing import Any, Mapping

from ..core import cache


def markdown_table(df: Any, floatfmt: str = ".3g") -> str:
    """A GitHub-flavoured Markdown table of a ``pandas.DataFrame`` (no extra dependency)."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    cols = [str(c).replace("|", "\\|") for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def save_table(df: Any, stem: str | Path, title: str | None = None, note: str | None = None,
               floatfmt: str = ".3g") -> list[Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` atomically; returns both paths."""
    stem = Path(stem)
    csv_path, md_path = stem.parent / f"{stem.name}.csv", stem.parent / f"{stem.name}.md"
    with cache.atomic_path(csv_path, ".csv") as tmp:
        df.to_csv(tmp, index=False)
    text = (f"# {title}\n\n" if title else "") + markdown_table(df, floatfmt) + (f"\n{note}\n" if note else "")
    with cache.atomic_path(md_path, ".md") as tmp:
        tmp.write_text(text)
    return [csv_path, md_path]


# --------------------------------------------------------------------------- study vs ours

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


REDUCER_TEXT = {"max2d": "2D max pooling", "mean2d": "2D mean pooling",
                "max_mel_mean_time": "max over mel bins and mean over time"}
NORMALIZATION_TEXT = {"token_z": "per-token z-scored", "map_z": "z-scored per map", "none": "unnormalized"}

#: the study's ranges the verdicts test against (PAPER.md)
STUDY_RANGES = {"best_rho_x": (0.45, 0.70), "half": (0.45, 0.64), "rho_h": (0.52, 0.75), "gain": (0.03, 0.18)}


def _combine(per_condition: dict[str, str]) -> str:
    """One verdict over conditions: the common one, or each condition's."""
    vals = list(dict.fromkeys(per_condition.values()))
    if len(vals) == 1:
        return vals[0]
    return "; ".join(f"{c}: {v}" for c, v in per_condition.items())


def _row_estimate(row: Any, corrected: bool, min_utterances: int) -> Any:
    """A correlation row as an :class:`~.verdicts.Estimate`: the disattenuated value where the
    reference is reliable enough (``corrected``), else the null-corrected rho without interval."""
    from ..evaluate.verdicts import Estimate

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
    quality : ``pipeline.quality_table`` output.
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

    from ..evaluate import verdicts as V
    from ..explain.explanations import View

    mu = V.MIN_UTTERANCES if min_utterances is None else int(min_utterances)
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
        e1 = V.paired_estimate(a, np.median(hv, axis=0), average="mean", **kw)
        e2 = V.paired_estimate(a, hv.mean(axis=0), average="mean", **kw)
        v1[c], v2[c] = V.judge(e1), V.judge(e2)
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
        e = V.paired_estimate(lv[late].mean(0), lv[~late].mean(0), average="mean", **kw)
        best = layers[int(np.nanargmax([r.rho for r in layers]))]
        v3[c] = V.judge(e)
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
                    and r.view is not None and r.view.kind in aggs), key=lambda r: r.rho)
        shown = cs[1:] or cs[:1]
        for c in shown:
            r = corr.get(c, kind, "SM_X", pick.view)
            e = _row_estimate(r, use_dis, mu)
            v4[c] = V.judge(e, STUDY_RANGES["best_rho_x"])
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
            vs[c] = V.judge(e, STUDY_RANGES[claim])
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
        raw = V.Estimate(m.gain, nan if few else m.gain_lo, nan if few else m.gain_hi, m.utterances,
                         "paired Fisher z difference", mu)
        dis = V.Estimate(m.gain_disattenuated, nan if few else m.dis_lo, nan if few else m.dis_hi, m.utterances,
                         "disattenuated", mu)
        vg[m.condition] = V.judge(dis if use_dis else raw, STUDY_RANGES["gain"])
        tg.append(f"{m.condition}: {raw.text('+.2f')}")
        dg.append(f"{m.condition}: {dis.text('+.2f')}")
    rows.append(dict(claim="gain", compared="rho with SM_H minus with SM_X, same utterances", ours="; ".join(tg),
                     dis="; ".join(dg), verdict=_combine(vg) if vg else V.UNTESTABLE))
    # 8: language (en-tts vs it-tts, ASR, one model) and task (it-tts ASR vs ST, same audio)
    t8, v8 = [], {}
    by_name = {c: c.split("__") for c in conds}
    for c, (model, dset, task) in by_name.items():
        if dset.startswith("it-") and task == "asr":
            en = f"{model}__en-{dset.split('-', 1)[1]}__asr"
            if en in conds:
                a = np.asarray(corr.get(en, kind, "SM_X", View("all")).rho_per_utterance)
                b = np.asarray(corr.get(c, kind, "SM_X", View("all")).rho_per_utterance)
                e = V.set_estimate(b, average="fisher", **kw)
                f = V.set_estimate(a, average="fisher", **kw)
                diff = V.Estimate(e.value - f.value, float("nan"), float("nan"), min(e.n, f.n),
                                  "difference of Fisher means (different utterances, different voices)", mu)
                v8[f"language ({model})"] = V.UNTESTABLE if not (e.has_interval and f.has_interval) else (
                    V.FAILS if e.lo > f.hi else V.HOLDS if e.hi < f.lo else V.UNDECIDED)
                t8.append(f"language, {en} vs {c} (synthetic voices differ): {f.text()} vs {e.text()}, "
                          f"difference {diff.value:+.2f}")
            else:
                v8[f"language ({model})"] = V.UNTESTABLE
                t8.append(f"language: no {en} saliency in this profile")
            st = f"{model}__{dset}__st"
            if st in conds:
                a = np.asarray(corr.get(c, kind, "SM_X", View("all")).rho_per_utterance)
                b = np.asarray(corr.get(st, kind, "SM_X", View("all")).rho_per_utterance)
                if a.size == b.size:
                    e = V.paired_estimate(b, a, average="fisher", **kw)
                    v8[f"task ({model})"] = V.judge(e, direction=-1)
                    t8.append(f"task, {st} minus {c} (same audio): {e.text('+.2f')}")
    rows.append(dict(claim="it_st", compared="language on synthetic speech; task on the same audio",
                     ours="; ".join(t8) or "n/a", dis="", verdict=_combine(v8) if v8 else V.UNTESTABLE))
    # 9: deletion: order of AUCs (paired per utterance) and each explanation against its matched floor
    df = deletion.to_frame()
    keys = [kind, f"SM_X pooled {reducer}", "SM_X full"]
    vd, td = {}, []
    for c in dict.fromkeys(df["condition"]):
        d = df[df["condition"] == c].pivot_table(index="utterance", columns="explanation", values="auc")
        if not all(k in d for k in keys):
            continue
        diffs = [V.paired_estimate(d[b], d[a], average="mean", **kw) for a, b in zip(keys, keys[1:])]
        vd[c] = V.judge_order(diffs)
        td.append(f"{c}: " + " / ".join(f"{k} {d[k].mean():.1f}" for k in keys))
    gaps = deletion.gaps(n_bootstrap=n_bootstrap, seed=seed, min_utterances=mu)
    dgap = "; ".join(f"{g['condition']}: {g['explanation']} {g['gap']:+.1f} vs {g['floor']} ({g['faithful']})"
                     for g in gaps if g["explanation"] in keys)
    rows.append(dict(claim="deletion", compared="AUCs on the same utterances; each against its same-shape floor",
                     ours="; ".join(td) or "n/a", dis=dgap, verdict=_combine(vd) if vd else V.UNTESTABLE))
    # 10: reducers (means over utterances; no interval)
    rr = reducers.groupby("reducer")[["rho", "auc"]].mean()
    n_red = min((r.utterances for r in corr.rows), default=0)
    best_rho, best_auc = rr["rho"].idxmax(), rr["auc"].idxmax()
    ok = best_rho == "max2d" and best_auc == "max2d"
    rows.append(dict(claim="reducer", compared="reducers on the same maps",
                     ours="; ".join(f"{r}: rho {_fmt(v.rho)}, AUC {v.auc:.1f}" for r, v in rr.iterrows()), dis="",
                     verdict=V.UNTESTABLE if n_red < mu else (V.HOLDS if ok else V.UNDECIDED)))
    # 11: WER
    q = quality[(quality["language"] == "en") & (quality["task"] == "ASR")]
    rows.append(dict(claim="wer", compared="other models than the study's",
                     ours="; ".join(f"{r['model']} {r['set']} ({r['speech']}): {r['WER (%)']:.1f}"
                                    for _, r in q.iterrows()),
                     dis="", verdict="comparable models only (ours are Whisper, not the study's models)"))
    out = pd.DataFrame(rows)
    out.insert(1, "study", out["claim"].map(STUDY))
    return out.rename(columns={"ours": "ours (raw)", "dis": "ours (corrected)"})


def kinds_table(corr: Any, deletion: Any, costs: Any | None = None) -> Any:
    """Every explanation kind against the SPES references: per condition, rho with SM_X
    and SM_H (all layers and heads for attention kinds), raw and disattenuated, the
    mean deletion AUC of its main ranking, and its cost per utterance (seconds).

    ``corr``: :class:`~.tables.CorrelationTable`; ``deletion``: :class:`~.tables.DeletionTable`;
    ``costs``: frame with ``condition``, ``kind``, ``seconds`` (mean per utterance).
    """
    import pandas as pd

    from ..explain import kinds as kinds_mod

    df = corr.to_frame()
    df = df[df["view_kind"].isin(["all", "map"])]
    auc = deletion.to_frame() if hasattr(deletion, "to_frame") else deletion
    rows = []
    for (cond, kind), g in df.groupby(["condition", "kind"], sort=False):
        k = kinds_mod.REGISTRY.get(kind)
        rec = {"condition": cond, "kind": kind, "explanation": k.title if k else kind}
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


def _include(tables: Path, name: str) -> str:
    """The body of a saved Markdown table (without its title line), or a note that it is missing."""
    path = Path(tables) / f"{name}.md"
    if not path.is_file():
        return f"_(table `{name}` not produced in this run)_\n"
    lines = path.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[2:]
    return "\n".join(lines) + "\n"


def _backend(profile: Any) -> str:
    from ..explain.backends import resolve

    return resolve(profile.spes_backend, profile.device)


def replace_section(text: str, title: str, body: str) -> str:
    """Markdown ``text`` with its section ``## title`` (up to the next ``## ``) replaced by
    ``body``, or with the section added at the end; a rerun gives the same text."""
    head = f"## {title}"
    lines = text.rstrip("\n").split("\n")
    new = [head, "", *body.rstrip("\n").split("\n"), ""]
    if head in lines:
        i = lines.index(head)
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        lines[i:j] = new
    else:
        lines += ["", *new]
    return "\n".join(lines).rstrip("\n") + "\n"


def downstream_section(timing: Any, disagreement: Any, selection: Mapping[str, Mapping[str, Any]],
                       tables: str | Path) -> str:
    """The "what it means downstream" section of REPORT.md, from notebook 09's numbers: per
    condition, Whisper's word timestamps from the shipped alignment heads, from heads chosen on
    held-out data (by timing, and by agreement with SM_H) and from the best non-attention
    explanation, against the reference alignment and the two references' disagreement."""
    def cell(r: Any, name: str) -> str:
        v, lo, hi = r[f"{name} (ms)"], r[f"{name} lo"], r[f"{name} hi"]
        return f"{v:.0f} ms" + (f" [{lo:.0f}, {hi:.0f}]" if np.isfinite(lo) else "")

    def share(r: Any, ms: int) -> str:
        v, lo, hi = r[f"starts within {ms} ms"], r[f"within {ms} lo"], r[f"within {ms} hi"]
        return f"{100 * v:.0f} %" + (f" [{100 * lo:.0f}, {100 * hi:.0f}]" if np.isfinite(lo) else "")

    lines = ["Word timestamps the way Whisper makes them (per-head z-score over tokens, median filter of 7, "
             "heads averaged, DTW), from every explanation kind, against a reference alignment of the same "
             "words (matched by normalised spelling); median absolute error of word starts with a 95% interval "
             "over utterances, and the share of words starting within 50 ms."]
    indep = disagreement[disagreement["independent"] & (disagreement["matched"] > 0)] if len(disagreement) \
        else disagreement
    real = indep[~indep["synthetic"]] if "synthetic" in indep else indep
    if len(real):  # the same floor as downstream.disagreement_floor
        lines.append(f"- Two independent references of the same real words (MFA's shipped alignments vs our "
                     f"pocketsphinx forced alignment) disagree by a median of "
                     f"{np.median(real['start median (ms)']):.0f} ms at word starts ({len(real)} recordings, "
                     f"{int(real['matched'].sum())} words): errors below that cannot be measured on real speech.")
    else:
        lines.append("- No real recording here has two independent reference alignments: the floor of measurable "
                     "error on real speech is unknown for this run.")
    spoken = indep[indep["synthetic"]] if "synthetic" in indep else indep.iloc[:0]
    for set_name, g in spoken.groupby("set", sort=False):
        lines.append(f"- On `{set_name}` the reference is the TTS engine's own timing of the words it spoke "
                     f"({g['reference'].iloc[0]}), exact to the engine's frame; pocketsphinx's forced alignment "
                     f"misses it by a median of {np.median(g['start median (ms)']):.0f} ms at word starts "
                     f"({len(g)} utterances, {int(g['matched'].sum())} words), a measure of the aligner behind "
                     "part of the real-speech references.")
    attention = {"CA", "NormCA"}
    for cond, g in timing.groupby("condition", sort=False):
        shipped = g[(g["kind"] == "CA") & (g["view"] == "alignment heads")]
        other = g[~g["kind"].isin(attention)].sort_values("start_median (ms)")
        parts = []
        if len(shipped):
            r = shipped.iloc[0]
            parts.append(f"shipped alignment heads {cell(r, 'start_median')}, {share(r, 50)} within 50 ms")
        allr = g[(g["kind"] == "CA") & (g["view"] == "all layers")]
        if len(allr):
            parts.append(f"CA of all layers {cell(allr.iloc[0], 'start_median')}")
        if len(other):
            r = other.iloc[0]
            parts.append(f"best non-attention explanation {r['kind']} {cell(r, 'start_median')}, "
                         f"{share(r, 50)} within 50 ms")
        sel = selection.get(cond, {})
        for name, summ in sel.get("summary", {}).items():
            rec = summ.record()
            parts.append(f"{name} heads on held-out utterances {cell(rec, 'start_median')}")
        lines.append(f"- **{cond}**: " + "; ".join(parts) + ".")
    compact = timing[["condition", "kind", "view", "utterances", "words"]].copy()
    compact["word starts, median error"] = [cell(r, "start_median") for _, r in timing.iterrows()]
    compact["word ends, median error"] = [cell(r, "end_median") for _, r in timing.iterrows()]
    compact["starts within 50 ms"] = [share(r, 50) for _, r in timing.iterrows()]
    compact["starts within 200 ms"] = [share(r, 200) for _, r in timing.iterrows()]
    lines += ["", markdown_table(compact), "Full table: `tables/timestamps.md`; figures: `figures/timestamp_errors.png`, "
              "`figures/word_boundaries_*.png`; alignment heads chosen from data: `tables/alignment_heads.md`."]
    return "\n".join(lines)


def _bias_of_one(same_map: float, ref: str) -> str:
    """What the agreement of a map with itself (other masks) says about the disattenuated
    rho(CA, ``ref``) of the main tables: both divide by the same split-half reliability, the
    agreement twice (once per map) and rho(CA, ref) once, so the latter is off by about
    ``sqrt(same_map)``."""
    if not np.isfinite(same_map) or same_map <= 0:
        return ""
    f = float(np.sqrt(same_map))
    return (f"The disattenuated rho(CA, {ref}) of the main tables divides by the same kind of reliability once: "
            f"on these clips it is off by a factor of about sqrt({same_map:.2f}) = {f:.2f}"
            + (" (too high)." if f > 1.005 else " (too low)." if f < 0.995 else " (none)."))


def sensitivity_section(table: Any, intervals: Mapping[str, Any], corr: Any, kind: str = "CA",
                        min_agreement: float = 0.95, min_utterances: int = 8) -> str:
    """The "sensitivity of the reference" section of REPORT.md, from notebook 10's numbers:
    per condition and reference, how far rho(``kind`` all layers, reference) moves across SPES's
    own settings (raw and disattenuated), set beside how far it moves across the profile's
    conditions (models, sets, tasks) and across single layers (``corr``: the main
    :class:`~.tables.CorrelationTable`), and, from ``intervals`` (per condition, the frame of
    :func:`~.sensitivity.agreement_intervals`, SM_X rows and optionally SM_H rows, which are
    only listed), how far each setting's SM_X maps agree with the study's: different (whole interval below ``min_agreement``), undecided, or equivalent
    (whole interval above), judged on the agreement relative to the study's repeat where there
    is one. An equivalent that is cheaper for the same reliability is named as such only from
    ``min_utterances`` utterances on (the table's ``utterances`` column); below, it is a
    candidate on these clips."""
    import pandas as pd

    from ..explain.explanations import View

    df = pd.DataFrame(table)
    lines = [f"rho({kind} all layers, reference) with the reference computed under other SPES settings, one "
             "changed at a time (independent masks, the profile's budget); disattenuated values divide by the "
             "map's own null-corrected reliability."]

    def span(values: Any) -> str:
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        return f"{v.min():+.2f} to {v.max():+.2f} (spread {v.max() - v.min():.2f})" if len(v) else "not estimable"

    from ..run.sensitivity import REPEAT
    from ..run.sensitivity import STUDY as STUDY_SETTING  # this module's STUDY holds the study's claims

    for (cond, ref), g in df.groupby(["condition", "reference"], sort=False):
        rep = g[g["setting"] == REPEAT]
        g = g[g["setting"] != REPEAT]
        parts = [f"across {len(g)} SPES settings raw {span(g['rho'])}, disattenuated {span(g['rho disattenuated'])}"]
        if len(rep) and STUDY_SETTING in set(g["setting"]):
            st = g[g["setting"] == STUDY_SETTING].iloc[0]
            parts.append(f"the study's setting again with other masks raw {float(rep['rho'].iloc[0]):+.2f} vs "
                         f"{float(st['rho']):+.2f}, disattenuated {float(rep['rho disattenuated'].iloc[0]):+.2f} vs "
                         f"{float(st['rho disattenuated']):+.2f} (sampling noise alone)")
        rows = corr.select(kind=kind, target=ref) if corr is not None else []
        across = [r for r in rows if r.view == View("all")]
        if len(across) > 1:
            parts.append(f"across the {len(across)} conditions of the study's setting raw "
                         f"{span([r.rho for r in across])}, disattenuated {span([r.rho_disattenuated for r in across])}")
        layers = [r for r in rows if r.condition == cond and r.view is not None and r.view.kind == "layer"]
        if layers:
            parts.append(f"across its {len(layers)} single layers raw {span([r.rho for r in layers])}")
        lines.append(f"- **{cond}, {ref}**: " + "; ".join(parts) + ".")
    for cond, iv in intervals.items():
        iv = pd.DataFrame(iv)
        h = iv[(iv["reference"] == "SM_H") & (iv["setting"] == STUDY_SETTING)] if "reference" in iv.columns else iv.iloc[:0]
        h_line = []
        if len(h):  # SM_H: no reducer between the perturbations and the map; listed after SM_X's verdict
            rep_h = h[h["with"] == REPEAT]
            h_line.append(f"- {cond}: SM_H maps under other settings agree with the study's at "
                          + "; ".join(f"{r['with']} {r['agreement']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"
                                      for _, r in h.iterrows()) + "."
                          + (" " + _bias_of_one(float(rep_h["agreement"].iloc[0]), "SM_H") if len(rep_h) else ""))
        iv = iv[iv["reference"] == "SM_X"] if "reference" in iv.columns else iv
        iv = iv[iv["setting"] == STUDY_SETTING].set_index("with") if len(iv) else iv
        sub = df[(df["condition"] == cond) & (df["reference"] == "SM_X")].set_index("setting")
        col = [c for c in sub.columns if c.startswith("seconds for ")]
        # the study's cost as timed beside the others (its repeat) where there is one
        timed = REPEAT if REPEAT in sub.index else STUDY_SETTING
        study_cost = float(sub.loc[timed, col[0]]) if col and timed in sub.index else float("nan")
        others = [s for s in iv.index if s != REPEAT and np.isfinite(iv.loc[s, "agreement"])]
        if not others:
            lines += [f"- {cond}: no agreement between the study's SM_X maps and another setting's is estimable "
                      "(a map below the reliability floor): no cheaper equivalent can be named at this budget."] + h_line
            continue
        how = str(iv["interval"].iloc[0]) if "interval" in iv.columns else "bootstrap"
        relative = REPEAT in iv.index and np.isfinite(iv.loc[REPEAT, "agreement"])

        def fmt(s: str, a: str = "agreement", lo: str = "lo", hi: str = "hi") -> str:
            return f"{iv.loc[s, a]:.2f} [{iv.loc[s, lo]:.2f}, {iv.loc[s, hi]:.2f}]"

        agree = "; ".join(f"{s} {fmt(s)}" + (f", relative {fmt(s, 'relative', 'rel lo', 'rel hi')}" if relative else "")
                          for s in others)
        head = (f"- {cond}: SM_X maps under other settings agree with the study's at (disattenuated, 95% interval "
                f"over the {how}) {agree}.")
        if relative:
            head += (f" The study's setting with other masks, the same map in truth, agrees with it at {fmt(REPEAT)}: "
                     "what the disattenuation gives for 1 at this budget; 'relative' divides each agreement by it "
                     "(paired replicates). " + _bias_of_one(float(iv.loc[REPEAT, "agreement"]), "SM_X"))
        lo_c, hi_c = ("rel lo", "rel hi") if relative else ("lo", "hi")
        same = [s for s in others if iv.loc[s, lo_c] >= min_agreement]
        differ = [s for s in others if iv.loc[s, hi_c] < min_agreement]
        open_ = [s for s in others if s not in same and s not in differ]
        cheap = [s for s in same if s in sub.index and col and float(sub.loc[s, col[0]]) < study_cost]
        head += (f" Against {min_agreement} ({'relative' if relative else 'agreement'}, whole interval): "
                 f"different maps {', '.join(differ) or 'none'}; undecided {', '.join(open_) or 'none'}; "
                 f"equivalent {', '.join(same) or 'none'}.")
        n = int(sub["utterances"].min()) if "utterances" in sub.columns and len(sub) else None
        cost = f"the study's cost timed {'by its repeat' if timed == REPEAT else 'in notebook 04'}"
        if cheap and n is not None and n < min_utterances:
            head += (f" Equivalent and cheaper for the same reliability ({cost}) on these {n} clip(s): "
                     f"{', '.join(cheap)}, a candidate only: naming an equivalent needs {min_utterances} utterances.")
        elif cheap:
            head += f" Equivalent and cheaper for the same reliability ({cost}): {', '.join(cheap)}."
        else:
            head += " No setting is equivalent at a lower cost: the study's settings stay the reference."
        lines += [head] + h_line
    lines += ["", "Tables: `tables/sensitivity.md`, `tables/sensitivity_agreement_*.md`; figures: "
              "`figures/sensitivity.png`, `figures/sensitivity_agreement_*.png`."]
    return "\n".join(lines)


def report_markdown(profile: Any, claims: Any, tables: str | Path, disattenuation_ok: bool | None = None) -> str:
    """``REPORT.md``: how the results were made, the claims table, and the main tables;
    ``disattenuation_ok``: the outcome of notebook 05's check (``None``: not run)."""
    from .. import __version__

    from ..explain import kinds as kinds_mod

    p = profile
    sal = ", ".join(c.name for c in p.saliency_conditions_list())
    from ..evaluate import verdicts as V

    changed = [r for _, r in claims.iterrows() if r["verdict"] != V.HOLDS and not r["verdict"].startswith("comparable")]
    n_utt = "all" if p.saliency_utterances is None else p.saliency_utterances
    kinds_text = "; ".join(f"{k.name}: {k.title} ({k.description})" for k in kinds_mod.selected(p))
    lines = [
        "# Cross-Attention is Half Explanation: the study's claims on Whisper",
        "",
        f"Generated by notebook `08_report.ipynb` from cached results (profile `{p.name}`, "
        f"package `crossattn_saliency` {__version__}). Every number is computed by the package from the "
        "cached results; the study's figures are from Papi et al. (2025) as digested in `shared/PAPER.md`.",
        "",
        "## How these numbers were made",
        "- Models: Whisper tiny.en (English ASR) and Whisper base (multilingual, ASR + translation), "
        "real pretrained weights (not the study's in-house Conformer/FAMA models).",
        f"- Hypotheses: beam {p.beam_size}, {p.model_dtype}. Saliency: SPES, {p.spes_perturbations:,} perturbations "
        f"on the input (the study: 20,000), {p.spes_h_perturbations:,} on the encoder output, {n_utt} utterance(s) "
        + (f"of {p.saliency_seconds[0]:g}-{p.saliency_seconds[1]:g} s (the first in set order) "
           if p.saliency_seconds else "")
        + f"for each of: {sal}; perturbation passes in {p.spes_dtype} (SM_X's encoder on the "
        f"`{_backend(p)}` backend, admitted by a check against float32 on the same masks), seed {p.seed}.",
        f"- Explanation kinds: {kinds_text}.",
        f"- Comparison: {NORMALIZATION_TEXT.get(p.normalization, p.normalization)} maps, input-grid maps reduced "
        f"to the 20 ms encoder grid by {REDUCER_TEXT.get(p.reducer, p.reducer)}, Pearson per utterance, averaged "
        f"over utterances through Fisher z; percentile bootstrap 95% intervals over utterances ({p.n_bootstrap} "
        f"resamples) only from {p.min_utterances} utterances on (fewer: values without intervals, verdicts "
        "\"not testable at this size\"); paired comparisons resample whole utterances; final <|endoftext|> excluded.",
        f"- Reliability: split-half correlation of each saliency map over {p.reliability_splits} random splits of "
        f"its perturbations; its null (and the null of rho) from {p.null_permutations} permutations of the "
        "per-perturbation scores with masks, segmentation and reducer kept (no extra forward pass); values "
        "corrected as (x - null) / (1 - null), the half reliability clipped to [0, 1) and stepped up with "
        f"Spearman-Brown; disattenuated rho = corrected rho / sqrt(corrected reliability), \"not estimable\" "
        f"below a reliability of {p.reliability_floor}. Each map's masks come from a seed derived from "
        f"(seed {p.seed}, utterance, kind).",
        f"- Deletion: step {p.deletion_step}%, beam {p.deletion_beam}, "
        f"{'all' if p.deletion_utterances is None else p.deletion_utterances} utterance(s) per condition; WER "
        "against the decoding of the intact input with the same decoder settings (0 at 0 %); each explanation "
        f"against a random floor of the same shape ({p.deletion_floor_draws} seeded draws: random encoder columns "
        "for expanded and pooled maps, random SLIC segments of the utterance's SM_X run for full-resolution maps) "
        "and the study's single-cell floor.",
        "- Verdicts: decided on " + ("null-corrected, disattenuated" if disattenuation_ok is not False else
                                     "raw (the disattenuation check of notebook 05 failed)")
        + " values with their intervals against the study's figure and range: holds, holds but smaller / larger "
        "than the study, does not hold, undecided (the interval covers both), or not testable at this size. "
        + {None: "The disattenuation check of notebook 05 was not run.",
           True: "Notebook 05's check: every low-budget disattenuated value fell within the interval of its "
                 "high-budget reference.",
           False: "Notebook 05's check: some low-budget disattenuated values fell outside the interval of their "
                  "high-budget reference, so disattenuated values are shown but not used for verdicts."}
        [disattenuation_ok],
        "- Synthetic speech (`*-tts`) and real speech (`*-real`) are different sets and are never pooled.",
        "",
        "## The claims",
        "",
        markdown_table(claims),
        "## Claims that do not (clearly) hold here, raw and corrected for the reference's noise",
        "",
    ]
    if changed:
        lines += [f"- **{r['claim']}** ({r['verdict']}): study says “{r['study']}”; ours: {r['ours (raw)']}"
                  + (f"; corrected: {r['ours (corrected)']}" if r["ours (corrected)"] else "")
                  for r in changed]
    else:
        lines.append("- Every claim holds here.")
    lines += [
        "",
        "Read the disattenuated column as an estimate of what a noise-free saliency map would show: where the "
        "raw correlation is low but the ceiling is low too, a low agreement is partly a statement about the "
        "reference's sampling noise, not about attention. Where even the disattenuated value stays low, the "
        "disagreement is real.",
        "",
        "## Model quality", "", _include(tables, "quality"),
        "## Correlation of cross-attention with saliency (aggregates)", "", _include(tables, "correlation_summary"),
        "## Context mixing", "", _include(tables, "context_mixing"),
        "## Every explanation kind against the saliency references", "", _include(tables, "explanation_kinds"),
        "## Deletion (faithfulness)", "", _include(tables, "deletion"),
        "## Reducers", "", _include(tables, "reducers"),
        "## Reliability of the saliency reference", "", _include(tables, "reliability_budget"),
        "## Disattenuation checked against a high-budget reference", "",
        _include(tables, "disattenuation_validation"),
        "## Limitations",
        f"- This profile explains {n_utt} utterance(s) per condition with {p.spes_perturbations:,} / "
        f"{p.spes_h_perturbations:,} perturbations (the study: 20,000)"
        + (f"; below {p.min_utterances} utterances no interval is printed and no claim is decided."
           if p.saliency_utterances is not None and p.saliency_utterances < p.min_utterances else ".")
        + " The `paper` profile reruns everything at the study's settings.",
        "- Whisper attends over a padded 30 s window; the comparison uses the speech positions only "
        "(see `results/tables/attention_mass.md` for how much mass that discards).",
        "",
    ]
    return "\n".join(lines)
