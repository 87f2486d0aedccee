"""Tables for readers: CSV + Markdown files, and the study-vs-ours report."""
from __future__ import annotations

import math

import numpy as np
from pathlib import Path
from typing import Any

from . import cache


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


def _range(vals: Any) -> str:
    vals = [v for v in vals if not (isinstance(v, float) and math.isnan(v))]
    return "n/a" if not vals else (f"{min(vals):.2f}" if len(vals) == 1 else f"{min(vals):.2f} to {max(vals):.2f}")


def _verdict(ok: bool | None, partly: bool = False) -> str:
    if ok is None:
        return "not testable here"
    return "holds" if ok else ("partly" if partly else "does not hold")


REDUCER_TEXT = {"max2d": "2D max pooling", "mean2d": "2D mean pooling",
                "max_mel_mean_time": "max over mel bins and mean over time"}
NORMALIZATION_TEXT = {"token_z": "per-token z-scored", "map_z": "z-scored per map", "none": "unnormalized"}


def _verdict_rows(x: Any, name: str) -> Any:
    return x[x["view_kind"] == name]


def claims_table(corr: Any, mixing: Any, deletion: Any, reducers: Any, quality: Any, kind: str = "CA",
                 reducer: str = "max2d") -> Any:
    """The study's claims next to our figures, each with a verdict.

    Parameters
    ----------
    corr : :class:`~.tables.CorrelationTable` (reducer ``reducer``) of every condition.
    mixing : :class:`~.tables.MixingRow` objects (or their frame) of ``kind``, view "all layers".
    deletion : :class:`~.tables.DeletionTable` (or a frame with ``condition``,
        ``explanation``, ``auc``).
    reducers : frame with ``condition``, ``reducer``, ``rho``, ``auc``.
    quality : ``pipeline.quality_table`` output.
    kind : the attention kind the claims are about (the study: plain cross-attention).

    Returns
    -------
    ``pandas.DataFrame`` with columns ``claim``, ``study``, ``ours (raw)``,
    ``ours (disattenuated)``, ``verdict`` (judged on raw values; the
    disattenuated column says whether noise in the reference changes it).
    Layers print 1-based ("layer 4 of 4").
    """
    import pandas as pd

    from .tables import frame

    df = corr.to_frame() if hasattr(corr, "to_frame") else corr
    df = df[df["kind"] == kind]
    mixing = mixing if hasattr(mixing, "columns") else frame(mixing)
    mixing = mixing[mixing["kind"] == kind] if "kind" in mixing else mixing
    rows = []
    x = df[df["target"] == "SM_X"]
    h = df[df["target"] == "SM_H"]
    conds = list(dict.fromkeys(df["condition"]))

    def view(d: Any, name: str) -> Any:
        return d[d["view_kind"] == name].set_index("condition")

    heads, layers = _verdict_rows(x, "head"), _verdict_rows(x, "layer")
    allx, allh = view(x, "all"), view(h, "all")

    # 1-2: single heads vs averages
    med = heads.groupby("condition")["rho"].median()
    spread = heads.groupby("condition")["rho"].agg(lambda s: s.max() - s.min())
    med_d = heads.groupby("condition")["rho_disattenuated"].median()
    rows.append(dict(claim="single_heads",
                     ours="; ".join(f"{c}: median head {_fmt(med[c])} (spread {_fmt(spread[c])}) vs all layers "
                                    f"{_fmt(allx.loc[c, 'rho'])}" for c in conds),
                     dis="; ".join(f"{c}: median head {_fmt(med_d[c])}" for c in conds),
                     verdict=_verdict(all(med[c] < allx.loc[c, "rho"] for c in conds))))
    mean_head = heads.groupby("condition")["rho"].mean()
    up = [allx.loc[c, "rho"] > mean_head[c] for c in conds]
    rows.append(dict(claim="averaging", ours="; ".join(f"{c}: mean head {_fmt(mean_head[c])} -> all layers "
                                                       f"{_fmt(allx.loc[c, 'rho'])}" for c in conds),
                     dis="; ".join(f"{c}: {_fmt(allx.loc[c, 'rho_disattenuated'])}" for c in conds),
                     verdict=_verdict(all(up), partly=any(up))))
    # 3: best layer (1-based)
    best, late = [], []
    for c in conds:
        lc = layers[layers["condition"] == c]
        n_layers = int(lc["layer"].max())
        b = int(lc["layer"].iloc[int(np.argmax(lc["rho"].to_numpy()))])
        best.append(f"{c}: layer {b} of {n_layers}")
        late.append(b > n_layers / 2)
    rows.append(dict(claim="last_layers", ours="; ".join(best), dis="",
                     verdict=_verdict(all(late), partly=any(late))))
    # 4: best aggregate per model
    agg = x[x["view_kind"].isin(["all", "alignment", "last", "layer"])]
    per_model, per_model_d = [], []
    for model, d in agg.groupby("model"):
        i = d["rho"].idxmax()
        per_model.append(f"{model}: {_fmt(d.loc[i, 'rho'])} ({d.loc[i, 'view']}, {d.loc[i, 'condition']})")
        per_model_d.append(f"{model}: {_fmt(d.loc[i, 'rho_disattenuated'])}")
    bests = agg.groupby("model")["rho"].max()
    rows.append(dict(claim="best_rho_x", ours="; ".join(per_model), dis="; ".join(per_model_d),
                     verdict=_verdict(bool(((bests >= 0.45) & (bests <= 0.7)).all()),
                                      partly=bool(((bests >= 0.45) & (bests <= 0.7)).any()))))
    # 5-6: ranges
    rx, rxd = allx["rho"], allx["rho_disattenuated"]
    in5 = (rx >= 0.45) & (rx <= 0.64)
    rows.append(dict(claim="half", ours=f"all layers, over conditions: {_range(rx)}",
                     dis=f"{_range(rxd)} (ceiling {_range(allx['ceiling'])})",
                     verdict=_verdict(bool(in5.all()), partly=bool(in5.any()))))
    rh, rhd = allh["rho"], allh["rho_disattenuated"]
    in6 = (rh >= 0.52) & (rh <= 0.75)
    rows.append(dict(claim="rho_h", ours=f"all layers, over conditions: {_range(rh)}",
                     dis=f"{_range(rhd)} (ceiling {_range(allh['ceiling'])})",
                     verdict=_verdict(bool(in6.all()), partly=bool(in6.any()))))
    # 7: gain
    g = mixing["gain"]
    rows.append(dict(claim="gain", ours="; ".join(f"{r.condition}: {r.gain:+.2f} [{r.gain_lo:+.2f}, {r.gain_hi:+.2f}]"
                                                  for r in mixing.itertuples()),
                     dis="; ".join(f"{r.condition}: {r.gain_disattenuated:+.2f}" for r in mixing.itertuples()),
                     verdict=_verdict(bool((g > 0).all()), partly=bool((g > 0).any()))))
    # 8: Italian / ST vs English ASR (the multilingual model)
    multi = [c for c in conds if "__en-real__asr" in c and not c.startswith("whisper-tiny")]
    other = [c for c in conds if ("__it-" in c or c.endswith("__st")) and not c.startswith("whisper-tiny")]
    if multi and other:
        en = allx.loc[multi[0], "rho"]
        lower = [allx.loc[c, "rho"] < en for c in other]
        rows.append(dict(claim="it_st", ours=f"{multi[0]}: {_fmt(en)}; " +
                         "; ".join(f"{c}: {_fmt(allx.loc[c, 'rho'])}" for c in other),
                         dis=f"{multi[0]}: {_fmt(allx.loc[multi[0], 'rho_disattenuated'])}; " +
                         "; ".join(f"{c}: {_fmt(allx.loc[c, 'rho_disattenuated'])}" for c in other),
                         verdict=_verdict(all(lower), partly=any(lower))))
    else:
        rows.append(dict(claim="it_st", ours="n/a", dis="", verdict=_verdict(None)))
    # 9: deletion
    dd = deletion.to_frame() if hasattr(deletion, "to_frame") else deletion
    d = dd.groupby("explanation")["auc"].mean()
    keys = [kind, f"SM_X pooled {reducer}", "SM_X full", "random"]
    if all(k in d for k in keys[:3]):
        ok = d[keys[0]] < d[keys[1]] < d[keys[2]]
        rows.append(dict(claim="deletion", ours=" / ".join(f"{k} {d[k]:.1f}" for k in keys if k in d), dis="",
                         verdict=_verdict(bool(ok), partly=bool(d[keys[0]] < d[keys[2]]))))
    # 10: reducers
    rr = reducers.groupby("reducer")[["rho", "auc"]].mean()
    best_rho, best_auc = rr["rho"].idxmax(), rr["auc"].idxmax()
    rows.append(dict(claim="reducer", ours="; ".join(f"{r}: rho {_fmt(v.rho)}, AUC {v.auc:.1f}" for r, v in rr.iterrows()),
                     dis="", verdict=_verdict(best_rho == "max2d" and best_auc == "max2d",
                                              partly=best_rho == "max2d" or best_auc == "max2d")))
    # 11: WER
    q = quality[(quality["language"] == "en") & (quality["task"] == "ASR")]
    rows.append(dict(claim="wer", ours="; ".join(f"{r['model']} {r['set']} ({r['speech']}): {r['WER (%)']:.1f}" for _, r in q.iterrows()),
                     dis="", verdict="comparable models only (ours are Whisper, not the study's models)"))
    out = pd.DataFrame(rows)
    out.insert(1, "study", out["claim"].map(STUDY))
    return out.rename(columns={"ours": "ours (raw)", "dis": "ours (disattenuated)"})


def kinds_table(corr: Any, deletion: Any, costs: Any | None = None) -> Any:
    """Every explanation kind against the SPES references: per condition, rho with SM_X
    and SM_H (all layers and heads for attention kinds), raw and disattenuated, the
    mean deletion AUC of its main ranking, and its cost per utterance (seconds).

    ``corr``: :class:`~.tables.CorrelationTable`; ``deletion``: :class:`~.tables.DeletionTable`;
    ``costs``: frame with ``condition``, ``kind``, ``seconds`` (mean per utterance).
    """
    import pandas as pd

    from . import kinds as kinds_mod

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


def report_markdown(profile: Any, claims: Any, tables: str | Path) -> str:
    """``REPORT.md``: how the results were made, the claims table, and the main tables."""
    from . import __version__

    from . import kinds as kinds_mod

    p = profile
    sal = ", ".join(c.name for c in p.saliency_conditions_list())
    changed = [r for _, r in claims.iterrows() if r["verdict"] in ("partly", "does not hold")]
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
        f"for each of: {sal}; perturbation passes in {p.spes_dtype}, seed {p.seed}.",
        f"- Explanation kinds: {kinds_text}.",
        f"- Comparison: {NORMALIZATION_TEXT.get(p.normalization, p.normalization)} maps, input-grid maps reduced "
        f"to the 20 ms encoder grid by {REDUCER_TEXT.get(p.reducer, p.reducer)}, Pearson per utterance (mean over "
        f"utterances with a percentile bootstrap 95% interval, {p.n_bootstrap} resamples), final <|endoftext|> "
        "excluded.",
        "- Reliability: split-half correlation of each saliency map (two independent halves of its perturbations), "
        "stepped up with Spearman-Brown; noise ceiling = sqrt(reliability); disattenuated rho = rho / ceiling.",
        f"- Deletion: step {p.deletion_step}%, beam {p.deletion_beam}, "
        f"{'all' if p.deletion_utterances is None else p.deletion_utterances} utterance(s) per condition; WER "
        "against the decoding of the intact input with the same decoder settings.",
        "- Synthetic speech (`*-tts`) and real speech (`*-real`) are different sets and are never pooled.",
        "",
        "## The claims",
        "",
        markdown_table(claims),
        "## Claims that do not (fully) hold here, raw and corrected for the reference's noise",
        "",
    ]
    if changed:
        lines += [f"- **{r['claim']}** ({r['verdict']}): study says “{r['study']}”; ours: {r['ours (raw)']}"
                  + (f"; disattenuated: {r['ours (disattenuated)']}" if r["ours (disattenuated)"] else "")
                  for r in changed]
    else:
        lines.append("- Every claim holds on raw values here.")
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
        "## Limitations",
        f"- This profile explains {n_utt} utterance(s) per condition with {p.spes_perturbations:,} / "
        f"{p.spes_h_perturbations:,} perturbations (the study: 20,000); read intervals over so few utterances as "
        "ranges, not as confidence statements. The `paper` profile reruns everything at the study's settings.",
        "- Whisper attends over a padded 30 s window; the comparison uses the speech positions only "
        "(see `results/tables/attention_mass.md` for how much mass that discards).",
        "",
    ]
    return "\n".join(lines)
