"""``REPORT.md``: how the results were made, the claims, the main tables, and the sections of notebooks 09-10.

Rendering only: the numbers come from :mod:`..evaluate.claims` and the run's tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .tables import markdown_table

__all__ = ["REDUCER_TEXT", "NORMALIZATION_TEXT", "resampling_text", "replace_section", "downstream_section",
           "sensitivity_section", "report_markdown"]


REDUCER_TEXT = {"max2d": "2D max pooling", "mean2d": "2D mean pooling",
                "max_mel_mean_time": "max over mel bins and mean over time"}


NORMALIZATION_TEXT = {"token_z": "per-token z-scored", "map_z": "z-scored per map", "none": "unnormalized"}


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


def downstream_section(timing: Any, disagreement: Any, selection: Mapping[str, Any],
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
        sel = selection.get(cond)
        for name, summ in (sel.summary if sel is not None else {}).items():
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

    from ..evaluate.views import View

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
        layers = [r for r in rows if r.condition == cond and r.view is not None and r.view.scope == "layer"]
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


def resampling_text(clusters: str | None, speakers: Mapping[str, int]) -> tuple[str, list[str]]:
    """How the intervals resample, for the method text, and the line naming the conditions whose
    explained clips all come from one speaker (``speakers``: condition -> distinct speakers, the
    claims table's ``attrs["speakers"]``); ``clusters``: ``"speaker"``, ``"clip"`` or ``None`` (clips)."""
    one = [c for c, k in speakers.items() if k == 1]
    if clusters == "speaker":
        how = ("intervals resample speakers, then clips within each drawn speaker, a two-stage cluster bootstrap "
               "(the explained clips of a condition come from a few speakers, and clips of one voice are not "
               "independent evidence; deletion AUCs, which carry no speakers, resample clips alone)")
        line = ([f"- One speaker: every explained clip of {', '.join(one)} comes from one (synthetic) voice, so "
                 "their intervals resample the clips alone and hold on these clips of that voice, not for "
                 "speakers at large."] if one else [])
    else:
        how = "intervals resample clips as if independent (speakers not resampled: the profile's bootstrap_clusters)"
        line = ([f"- One speaker: every explained clip of {', '.join(one)} comes from one (synthetic) voice: "
                 "their intervals hold on these clips of that voice, not for speakers at large."] if one else [])
    return how, line


def report_markdown(profile: Any, claims: Any, tables: str | Path, disattenuation_ok: bool | None = None,
                    title: bool = True) -> str:
    """``REPORT.md``'s details: how the results were made, the claims table, and the main tables;
    ``disattenuation_ok``: the outcome of notebook 05's check (``None``: not run); ``title=False``
    leaves out the report's title (:func:`~.assembly.summary_part` puts it at the top)."""
    from .. import __version__

    from ..explain import kinds as kinds_mod

    p = profile
    sal = ", ".join(c.name for c in p.saliency_conditions_list())
    from ..evaluate import stats, verdicts

    if "not holding here" in claims.columns:  # per claim, only the conditions that do not hold, by name
        changed = [(r, r["not holding here"]) for _, r in claims.iterrows() if r["not holding here"]]
    else:  # a table without per-condition verdicts: the whole verdict
        changed = [(r, r["verdict"]) for _, r in claims.iterrows()
                   if r["verdict"] != verdicts.HOLDS and not r["verdict"].startswith("comparable")]
    n_dec = int(claims["decisions"].sum()) if "decisions" in claims.columns else None
    n_held = int(claims["undecided by Holm"].sum()) if "undecided by Holm" in claims.columns else 0
    multiplicity = (
        f"Multiplicity: the verdicts rest on {n_dec} interval decisions (claims x conditions with an interval; "
        "the reducer and WER claims make none). Each gets a p-value read off its own 95% interval (the two-sided "
        "p at which the interval would just reach the edge it has to exclude; for several edges the largest), and "
        f"Holm's step-down over all {n_dec} keeps the family-wise error rate at {verdicts.ALPHA:g}: "
        f"{n_held} decision(s) that hold at their own 95% level but not after Holm read \"undecided\". Single "
        "heads are decided head by head (Holm over the heads of a condition) and enter the family as one "
        "decision per condition." if n_dec is not None else
        "Multiplicity: not stated for this table; each verdict is a decision at its own 95% level.")
    n_utt = "all" if p.saliency_utterances is None else p.saliency_utterances
    clusters = claims.attrs.get("clusters", p.bootstrap_clusters)  # what the claims table resampled
    resampling, one_speaker = resampling_text(clusters, claims.attrs.get("speakers", {}))
    kinds_text = "; ".join(f"{k.name}: {k.title} ({k.description})" for k in kinds_mod.selected(p))
    lines = [
        *(["# Cross-Attention is Half Explanation: the study's claims on Whisper", ""] if title else []),
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
        f"\"not testable at this size\"); {resampling}; paired comparisons resample whole utterances; final "
        "<|endoftext|> excluded.",
        *one_speaker,
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
        + " values with their intervals against the study's own figures (`shared/PAPER.md`): a size holds only "
        f"where the whole 95% interval lies inside the study's range widened by {p.equivalence_margin:g} on each "
        "side (the profile's equivalence margin), and is smaller / larger than the study where it lies wholly "
        "below / above the widened range; does not hold where the interval lies wholly on the wrong side of the "
        "claimed direction; undecided where it straddles an edge; not testable at this size without an interval. "
        + multiplicity + " "
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
        markdown_table(claims.drop(columns=["not holding here"], errors="ignore")),  # listed in the next section
        "## Claims that do not (clearly) hold here, raw and corrected for the reference's noise",
        "",
    ]
    if changed:
        lines += [f"- **{r['claim']}**, not holding in: {failing}. The study: “{r['study']}”." for r, failing in changed]
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


def heads_section(held: Any, curve: Any, cost: Any, pool_set: str) -> str:
    """The "alignment heads for any Whisper" section of REPORT.md, from notebook 11's numbers: per
    model, the held-out word-start error (median, 90th percentile, F1 at 50 / 100 ms) of heads
    chosen with the model's own heads removed, beside the shipped heads, the paired difference,
    what fewer clips and smaller SM_H budgets give, and what the selection cost."""
    def iv(v: float, lo: float, hi: float, unit: str = " ms") -> str:
        return f"{v:.0f}{unit}" + (f" [{lo:.0f}, {hi:.0f}]" if np.isfinite(lo) else "")

    lines = ["`python -m crossattn_saliency heads` chooses alignment heads from a model's own cross-attention "
             f"on a few clips (here {pool_set} utterances, the model's heads removed from its config), by timing "
             "against reference word alignments or by agreement with SM_H (no reference needed); they are "
             "scored on held-out utterances of every set with word references. Median word-start error over "
             "the held-out words, 95% interval over utterances; 'vs shipped': the mean paired difference of "
             "the utterances' median start errors."]
    for model, g in held[held["set"] == "all"].groupby("model", sort=False):
        c = cost[cost["model"] == model]
        minutes = float(c["compute (min)"].iloc[0]) if len(c) else float("nan")
        parts = []
        for _, r in g.iterrows():
            d = r["start median vs shipped (ms)"]
            vs = "" if r["heads"] == "shipped" or not np.isfinite(d) else \
                f", vs shipped {d:+.0f} ms" + (f" [{r['vs lo']:+.0f}, {r['vs hi']:+.0f}]" if np.isfinite(r["vs lo"]) else "")
            parts.append(f"{r['heads']} ({int(r['k'])} heads) {iv(r['start median (ms)'], r['start median lo'], r['start median hi'])}"
                         f", p90 {r['start p90 (ms)']:.0f} ms, F1@50 {r['F1 at 50 ms (%)']:.0f} %, F1@100 "
                         f"{r['F1 at 100 ms (%)']:.0f} %{vs}")
        lines.append(f"- **{model}** ({int(g['utterances'].iloc[0])} held-out utterances, {int(g['words'].iloc[0])} "
                     f"words; selection {minutes:.1f} min of compute on this machine): " + "; ".join(parts) + ".")
        d = curve[curve["model"] == model]
        if len(d):
            top = int(d["budget"].max())
            by_n = d[(d["method"] == "agreement") & (d["budget"] == top)].groupby("clips")["start median (ms)"].mean()
            tim = d[d["method"] == "timing"].groupby("clips")["start median (ms)"].mean()
            lines.append(f"  Heads by agreement (SM_H {top} perturbations) on " +
                         ", ".join(f"{n} clip{'s' if n > 1 else ''}: {v:.0f} ms" for n, v in by_n.items()) +
                         "; by timing on " + ", ".join(f"{n}: {v:.0f} ms" for n, v in tim.items()) +
                         " (mean over random subsets of the pool).")
    return "\n".join(lines)
