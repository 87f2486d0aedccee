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

AGGREGATE_VIEWS = ("all layers", "alignment heads")


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _range(vals: Any) -> str:
    vals = [v for v in vals if not (isinstance(v, float) and math.isnan(v))]
    return "n/a" if not vals else (f"{min(vals):.2f}" if len(vals) == 1 else f"{min(vals):.2f} to {max(vals):.2f}")


def _verdict(ok: bool | None, partly: bool = False) -> str:
    if ok is None:
        return "not testable here"
    return "holds" if ok else ("partly" if partly else "does not hold")


def claims_table(corr: Any, mixing: Any, deletion_auc: Any, reducers: Any, quality: Any) -> Any:
    """The study's claims next to our figures, each with a verdict, from result tables.

    Parameters
    ----------
    corr : rows of ``pipeline.correlation_rows`` (reducer max2d) for every condition.
    mixing : rows of ``pipeline.context_mixing_rows`` (view "all layers").
    deletion_auc : columns ``condition``, ``explanation``, ``auc`` (mean over utterances).
    reducers : columns ``condition``, ``reducer``, ``rho``, ``auc``.
    quality : ``pipeline.quality_table`` output.

    Returns
    -------
    ``pandas.DataFrame`` with columns ``claim``, ``study``, ``ours (raw)``,
    ``ours (disattenuated)``, ``verdict`` (judged on raw values; the
    disattenuated column says whether noise in the reference changes it).
    """
    import pandas as pd

    rows = []
    x = corr[corr["target"] == "SM_X"]
    h = corr[corr["target"] == "SM_H"]
    conds = list(dict.fromkeys(corr["condition"]))

    def view(df: Any, name: str) -> Any:
        return df[df["view"] == name].set_index("condition")

    heads = x[x["view"].str.match(r"^L\d+H\d+$")]
    layers = x[x["view"].str.match(r"^layer \d+$")]
    allx, allh = view(x, "all layers"), view(h, "all layers")

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
    # 3: best layer
    best, late = [], []
    for c in conds:
        lc = layers[layers["condition"] == c]
        idx = lc["view"].str.extract(r"(\d+)")[0].astype(int)
        b = int(idx.iloc[int(np.argmax(lc["rho"].to_numpy()))])
        best.append(f"{c}: layer {b} of {int(idx.max()) + 1}")
        late.append(b >= (int(idx.max()) + 1) / 2)
    rows.append(dict(claim="last_layers", ours="; ".join(best), dis="",
                     verdict=_verdict(all(late), partly=any(late))))
    # 4: best aggregate per model (English ASR, real speech)
    agg = x[x["view"].isin(list(AGGREGATE_VIEWS) + [v for v in x["view"].unique() if v.startswith(("last", "layer"))])]
    per_model = []
    per_model_d = []
    for model, df in agg.groupby("model"):
        i = df["rho"].idxmax()
        per_model.append(f"{model}: {_fmt(df.loc[i, 'rho'])} ({df.loc[i, 'view']}, {df.loc[i, 'condition']})")
        per_model_d.append(f"{model}: {_fmt(df.loc[i, 'rho_disattenuated'])}")
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
    d = deletion_auc.groupby("explanation")["auc"].mean()
    keys = ["cross-attention", "SM_X pooled (max2d)", "SM_X full", "random"]
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

    p = profile
    sal = ", ".join(c.name for c in p.saliency_conditions_list())
    changed = [r for _, r in claims.iterrows() if r["verdict"] in ("partly", "does not hold")]
    lines = [
        "# Cross-Attention is Half Explanation: the study's claims on Whisper",
        "",
        f"Generated by notebook `08_report.ipynb` from cached results (profile `{p.name}`, "
        f"package `crossattn_saliency` {__version__}). Every number is read from the tables under "
        "`results/tables/`; the study's figures are from Papi et al. (2025) as digested in `shared/PAPER.md`.",
        "",
        "## How these numbers were made",
        "- Models: Whisper tiny.en (English ASR) and Whisper base (multilingual, ASR + translation), "
        "real pretrained weights (not the study's in-house Conformer/FAMA models).",
        f"- Hypotheses: beam {p.beam_size}. Saliency: SPES, {p.spes_perturbations} perturbations on the input "
        f"(the study: 20,000), {p.spes_h_perturbations} on the encoder output, {p.saliency_utterances} utterance(s) "
        f"for each of: {sal}; dtype {p.dtype}, seed {p.seed}.",
        "- Comparison: per-token z-scored maps, SM_X reduced to the 20 ms encoder grid by 2D max pooling, Pearson "
        "per utterance (mean, bootstrap 95% CI), final <|endoftext|> excluded.",
        "- Reliability: split-half correlation of each saliency map (two independent halves of its perturbations), "
        "stepped up with Spearman-Brown; noise ceiling = sqrt(reliability); disattenuated rho = rho / ceiling.",
        f"- Deletion: step {p.deletion_step}%, beam {p.deletion_beam}, {p.deletion_utterances} utterance(s) per condition.",
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
        "## Deletion (faithfulness)", "", _include(tables, "deletion"),
        "## Reducers", "", _include(tables, "reducers"),
        "## Reliability of the saliency reference", "", _include(tables, "reliability_budget"),
        "## Limitations",
        "- On a 2-core CPU the default profile uses few utterances and far fewer perturbations than the study; "
        "intervals are wide and the ceilings are low. The `paper` profile reruns everything at the study's settings.",
        "- Whisper attends over a padded 30 s window; the comparison uses the speech positions only "
        "(see `results/tables/attention_mass.md` for how much mass that discards).",
        "",
    ]
    return "\n".join(lines)
