"""The compendium's tables: for each one its file, title, the columns it keeps and the note a
reader needs, rendered from the profile that made it.

A notebook writes a table with one line, ``catalog.save("correlation", frame, TABLES, cfg)``; what
the table means lives here, once, beside every other table's meaning, and not in the notebook's
cells. Titles and notes are ``str.format`` templates: ``{p.<field>}`` is a profile field, any
other ``{name}`` a value the caller passes (e.g. the condition of a per-condition table).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluate import timestamps
from .tables import save_table

__all__ = ["TableSpec", "TABLES", "spec", "save"]


@dataclass(frozen=True)
class TableSpec:
    """One table: ``stem`` (file name under ``tables/``, a template), ``title`` and ``note``
    (templates), ``columns`` (the columns written, in order; ``None``: all) and ``shown`` (the
    columns a notebook displays, ``None``: the written ones)."""

    stem: str
    title: str
    note: str = ""
    columns: tuple[str, ...] | None = None
    shown: tuple[str, ...] | None = None

    def render(self, profile: Any, **values: Any) -> tuple[str, str, str]:
        """``(stem, title, note)`` with the profile's fields and ``values`` filled in."""
        return tuple(t.format(p=profile, **values) for t in (self.stem, self.title, self.note))  # type: ignore

    def save(self, df: Any, folder: str | Path, profile: Any, **values: Any) -> Any:
        """Write ``df`` (its :attr:`columns`) as ``<folder>/<stem>.csv`` and ``.md``; returns the
        frame to display (its :attr:`shown` columns)."""
        stem, title, note = self.render(profile, **values)
        written = df[list(self.columns)] if self.columns else df
        save_table(written, Path(folder) / stem, title=title or None, note=note or None)
        return written[list(self.shown)] if self.shown else written


_CORRELATION_COLUMNS = ("condition", "kind", "view", "target", "utterances", "rho", "rho_lo", "rho_hi", "rho_pooled",
                        "spearman", "rho_null", "rho_corrected", "r_half", "r_half_null", "reliability", "ceiling",
                        "rho_disattenuated", "dis_lo", "dis_hi")

#: every table the notebooks write, by name
TABLES: dict[str, TableSpec] = {
    # 00-04: models, data, outputs, attention, costs
    "models": TableSpec("models", "Models studied"),
    "datasets": TableSpec("datasets", "Test sets ({p.name} profile)"),
    "quality": TableSpec(
        "quality", "Model quality ({p.name} profile, beam {p.beam_size})",
        "WER in percent after Whisper's text normalizer (English normalizer for en, basic otherwise); BLEU and chrF: "
        "sacrebleu corpus scores against the English line. Real and synthetic speech are different sets and never "
        "pooled."),
    "attention_mass": TableSpec(
        "attention_mass", "Where cross-attention mass goes, per decoder layer",
        "pad_mass: share on padding positions; first_mass: share on the first 5 positions (0.1 s); entropy: nats over "
        "the full 1500-position row; max_weight: mean largest weight per row.",
        columns=("condition", "layer", "pad_mass", "first_mass", "entropy", "max_weight")),
    "saliency_runs": TableSpec(
        "saliency_runs", "Cost of every explanation kind per utterance",
        "Seconds of computation per utterance on this run's hardware (device {p.device}); SPES: reference pass + "
        "perturbation loop ({p.spes_perturbations} / {p.spes_h_perturbations} perturbations, batch {p.spes_batch_size}); "
        "an SM_X run shared by conditions of the same audio (ASR and ST of one clip: each mask encoded once) is charged "
        "evenly to them ('shared by'); gradients: all tokens; attention kinds: one teacher-forced pass, timed again "
        "here."),
    # 05: convergence, reliability, the disattenuation check, the budget rule
    "convergence": TableSpec(
        "convergence", "SPES convergence (per-token z-scored maps)",
        "rho_to_final: Pearson with the map of the full budget (which contains these perturbations); split_half: "
        "Pearson between the two independent halves; reliability: Spearman-Brown step-up of split_half to the whole n, "
        "i.e. the expected agreement of two independent n-perturbation maps."),
    "reliability_budget": TableSpec(
        "reliability_budget", "SPES reliability and the budget it needs",
        "Spearman-Brown extrapolation from the largest measured budget."),
    "disattenuation_validation": TableSpec(
        "disattenuation_validation", "Disattenuation checked against a high-budget reference (one utterance per model)",
        "high: {p.validation_factor} x the profile's budget; repeats: the profile's budget, independent masks; "
        "disattenuated = null-corrected rho / sqrt(null-corrected reliability); lo/hi: 95% interval of the high-budget "
        "value from resampling tokens; within: a repeat's value lies in that interval; seconds: compute time of the "
        "map on this run's hardware."),
    "budget_rule": TableSpec(
        "budget_rule", "The budget rule, checked on this run's maps",
        "median reliability: corrected (null, Spearman-Brown) reliability of the reference maps at the profile's "
        "budget; target: {targets}; budget for target: perturbations at which the median map would reach it (inverse "
        "Spearman-Brown); between-utterance SD: of the per-utterance disattenuated rho(CA all layers, reference); "
        "map-noise SD: of the same value over the independent repeats above (same utterance); map-noise share = "
        "noise^2 / (noise^2 + between^2)."),
    # 06: agreement with the references
    "correlation_all": TableSpec(
        "correlation_all", "rho(explanation, saliency) for every kind and view ({p.normalization}, {p.reducer})"),
    "correlation": TableSpec(
        "correlation", "rho(explanation, SM_X) and rho(explanation, SM_H) per kind and aggregation",
        "Pearson on normalized maps; rho: Fisher-z mean over utterances [bootstrap 95% CI, only from "
        "{p.min_utterances} utterances on]; rho_pooled: all utterances flattened; rho_null: rho with the reference's "
        "permutation-null maps ({p.null_permutations} score permutations); rho_corrected = (rho - rho_null) / "
        "(1 - rho_null); r_half / r_half_null: split-half reliability of the reference over {p.reliability_splits} "
        "random splits / under the null; reliability: corrected half reliability clipped to [0, 1) and stepped up with "
        "Spearman-Brown; ceiling = sqrt(reliability); rho_disattenuated = rho_corrected / ceiling (empty: not "
        "estimable, reliability below {p.reliability_floor}). Layers numbered from 1.",
        columns=_CORRELATION_COLUMNS),
    "context_mixing": TableSpec(
        "context_mixing", "Context-mixing gain (all layers and heads)",
        "gain = rho(E, SM_H) - rho(E, SM_X) (Fisher-z means), paired bootstrap 95% CI over utterances from "
        "{p.min_utterances} utterances on; disattenuated: each rho null-corrected and divided by the square root of "
        "its own reference's corrected reliability."),
    "correlation_summary": TableSpec(
        "correlation_summary", "Explanations vs saliency, aggregates (raw, ceiling, disattenuated)"),
    # 07: deletion
    "deletion": TableSpec(
        "deletion", "Deletion AUC (WER-percent units; higher = more faithful)",
        "Mean over {p.deletion_utterances} utterance(s) per condition; measured at the {p.deletion_step}% grid and at "
        "{p.deletion_dense} %, the AUC over all these points; decoding beam {p.deletion_beam}; WER against the decoding "
        "of the intact input, normalized text, clipped at 100. 'pooled' rankings: reduced to the 20 ms encoder grid and "
        "spread back; 'full': input-grid resolution."),
    "insertion": TableSpec(
        "insertion", "Insertion AUC (WER-percent units; lower = more faithful)",
        "The same rankings restored in rank order into a fully deleted input (SPES's own paper reports both "
        "curves): WER at k % restored, from the all-deleted value at 0 % to 0 at 100 %; mean over "
        "{p.deletion_utterances} utterance(s) per condition, same points and decoder as the deletion table."),
    "deletion_low_end": TableSpec(
        "deletion_low_end", "Where deletion curves move: WER after deleting a few percent, against same-shape floors",
        "WER (%) after deleting the top 'percent' % of the cells under each ranking, the mean over its matched "
        "random floor's draws (same deleted shape), and the gap with a bootstrap 95% interval over utterances from "
        "{p.min_utterances} utterances on (faithful = the interval lies above 0); 'auc (study grid)': the AUC on the "
        "study's 5 % points only, comparable with its figures."),
    "deletion_floors": TableSpec(
        "deletion_floors", "Deletion AUC against a random floor of the same shape",
        "floor: random encoder columns (for expanded and pooled maps) or random SLIC segments of the utterance's SM_X "
        "run (for full-resolution maps), {p.deletion_floor_draws} seeded draws, mean AUC per utterance; gap = AUC - "
        "floor with a bootstrap 95% interval over utterances from {p.min_utterances} utterances on; faithful = the "
        "interval lies above 0."),
    "reducers": TableSpec(
        "reducers", "Reducers from SM_X to CA's grid: agreement and faithfulness",
        "rho: rho(CA all layers, reduced SM_X), normalized per the profile; auc: deletion AUC of the reduced SM_X "
        "ranking."),
    # 08: the kinds and the claims
    "explanation_kinds": TableSpec(
        "explanation_kinds", "Every explanation kind against SM_X and SM_H",
        "rho: mean per-utterance Pearson with the reference (attention kinds: all layers and heads); disattenuated: "
        "rho / sqrt(reliability of the reference); deletion AUC of the kind's main ranking (encoder-grid kinds spread "
        "back; input-grid kinds pooled by the profile's reducer); seconds per utterance on this run's hardware."),
    "claims": TableSpec("claims", "The study's claims and ours"),
    # 09: timestamps
    "reference_disagreement": TableSpec(
        "reference_disagreement", "Two reference alignments of the same words",
        "{aligner} against the reference of the same words: on real speech the alignment the recording ships with "
        "(MFA TextGrids; the LibriVox alignments shipped with pocketsphinx come from the same aligner, so they agree "
        "by construction: independent = False), on synthetic speech the TTS engine's timing of the words it spoke; "
        "absolute differences of word starts and ends."),
    "timestamps": TableSpec(
        "timestamps", "Word timestamps by Whisper's recipe from every explanation",
        "Median filter " + str(timestamps.MEDIAN_WIDTH) + ", per-map z-score over tokens, maps averaged, DTW; "
        "input-grid kinds reduced to the 20 ms grid by {p.reducer}; last word ends with the speech. Errors: "
        "|hypothesis word start (end) - reference word start (end)| in ms over words matched by normalised spelling; "
        "95% intervals resample utterances, only from {p.min_utterances} utterances on; shares: word starts within "
        "20/50/100/200 ms.",
        shown=("condition", "kind", "view", "utterances", "words", "start_median (ms)", "start_median lo",
               "start_median hi", "end_median (ms)", "starts within 50 ms", "starts within 200 ms")),
    "alignment_heads": TableSpec(
        "alignment_heads", "Alignment heads chosen from data, on held-out utterances",
        "by timing: the k heads with the smallest median start error on the other half of the utterances (needs a "
        "reference); by saliency: the k heads with the highest rho(head, SM_H) (needs no reference); shipped: the "
        "model's generation_config.alignment_heads. Errors of the held-out halves' word starts and ends (ms), both "
        "folds pooled."),
    # 11: alignment heads chosen by the `heads` command, measured on held-out utterances
    "heads_held_out": TableSpec(
        "heads_held_out", "Word timestamps of chosen alignment heads, on utterances they were not chosen on",
        "Heads chosen by `python -m crossattn_saliency heads` on {pool} (the model folder with its alignment heads "
        "removed): by timing (reference word starts) and by agreement with SM_H ({p.heads_perturbations_h} "
        "perturbations a clip, float32), k by leave-one-clip-out; shipped: the model's own alignment_heads; all: "
        "every head of every layer. Whisper's recipe (per-head z-score, median filter, mean, DTW) on forced "
        "transcripts; errors (ms) of the matched words' starts and ends, pooled over the set's held-out "
        "utterances; F1 of word starts within the tolerance (hypothesis vs reference words); 95% intervals resample "
        "utterances ({p.n_bootstrap} draws, none below {p.min_utterances} utterances); 'vs shipped': mean over "
        "utterances of the difference of their median start errors, paired by utterance.",
        columns=("model", "set", "heads", "k", "utterances", "words", "start median (ms)", "start median lo",
                 "start median hi", "start p90 (ms)", "end median (ms)", "end p90 (ms)", "starts within 50 ms (%)",
                 "starts within 100 ms (%)", "F1 at 50 ms (%)", "F1 at 100 ms (%)", "start median vs shipped (ms)",
                 "vs lo", "vs hi", "heads list"),
        shown=("model", "set", "heads", "k", "utterances", "start median (ms)", "start median lo", "start median hi",
               "start p90 (ms)", "end median (ms)", "end p90 (ms)", "F1 at 50 ms (%)", "F1 at 100 ms (%)",
               "start median vs shipped (ms)", "vs lo", "vs hi")),
    "heads_cost": TableSpec(
        "heads_cost", "Alignment heads chosen by the `heads` command on models without their heads, and the cost",
        "Pool: {pool}; SM_H in float32 PyTorch; compute: the stored runs' time on this machine (cross-attention "
        "and SM_H of every pool clip; both selections share them); heads as [layer, head], 0-based, best first."),
    "heads_curve": TableSpec(
        "heads_curve", "Held-out word-start error against the clips and the SM_H budget heads were chosen with",
        "Heads chosen on n clips of the pool ({pool}; {p.heads_repeats} random subsets per n below the whole pool, "
        "seed {p.seed}) by timing, or by agreement with SM_H rebuilt from the first b perturbations of each clip's "
        "run (budget b; 0: timing, no SM_H); median start error (ms) of the matched words of every held-out "
        "utterance the model transcribes. With one clip, k is scored on that clip itself (the command asks for 2+)."),
    # 10: SPES's own settings
    "sensitivity": TableSpec(
        "sensitivity", "rho(CA all layers, reference) under SPES's own settings",
        "One setting changed at a time; {p.sensitivity_utterances} utterance(s) per condition, independent masks per "
        "setting ('repeat': the study's setting with other masks, timed in this run; 'study': notebook 04's maps, "
        "timed in that run); SM_X {p.spes_perturbations} / SM_H {p.spes_h_perturbations} perturbations; reducer "
        "{p.reducer}, normalization {p.normalization}; reliability: null-corrected, Spearman-Brown; perturbations / "
        "seconds for 0.5: inverse Spearman-Brown of the median map at this run's speed; 95% intervals over utterances "
        "from {p.min_utterances} utterances on, below that over the tokens of these utterances (column 'interval').",
        shown=("condition", "reference", "setting", "perturbations/s", "median map reliability", "seconds for 0.5",
               "rho", "rho disattenuated", "spearman")),
    "sensitivity_agreement": TableSpec(
        "sensitivity_agreement_{condition}", "Disattenuated agreement of SM_X maps between SPES settings ({condition})",
        "rho(row map, column map) null-corrected against the column map's null, Fisher-z mean over utterances, "
        "divided by sqrt(both maps' corrected reliabilities); blank: not estimable."),
    "sensitivity_agreement_intervals": TableSpec(
        "sensitivity_agreement_intervals", "Agreement of the study's SPES maps with each other setting's, with 95% "
        "intervals",
        "Disattenuated agreement (as in sensitivity_agreement_*); interval: percentile bootstrap, {p.n_bootstrap} "
        "replicates resampling the tokens of each utterance and recomputing rho, its null and both maps' corrected "
        "reliabilities on the same rows; 'relative': divided by the study's agreement with its repeat (the same "
        "settings with other masks) on the same replicates."),
}


def spec(name: str) -> TableSpec:
    """The table named ``name`` (a key of :data:`TABLES`)."""
    if name not in TABLES:
        raise KeyError(f"no table named {name!r} in the catalogue; known: {sorted(TABLES)}")
    return TABLES[name]


def save(name: str, df: Any, folder: str | Path, profile: Any, **values: Any) -> Any:
    """Write table ``name`` (:meth:`TableSpec.save`) and return the frame to display."""
    return spec(name).save(df, folder, profile, **values)
