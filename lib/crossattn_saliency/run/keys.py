"""Where every record of the result store lives: its section and its key, built in one place.

A record lives at ``<store root>/<section>/<key>.<npz|json>`` (:class:`~.store.ResultStore`).
:data:`SECTIONS` lists every section the pipeline writes (the first part of a section name;
some carry a sub-folder, e.g. ``gradients/IxG_X`` or ``noise/SM_X``), and the functions below
build every key; utterance ids become file names through :func:`file_id`, and nothing else in
the package spells a key.
"""
from __future__ import annotations

__all__ = ["SECTIONS", "file_id", "utterance", "hypothesis", "explanation", "noise", "deletion", "timing",
           "backend_check", "alignment", "spes_section", "job"]

#: every section of the result store, with what its records hold
SECTIONS: dict[str, str] = {
    "hypotheses": "the model's output per utterance (token ids, decoder prompt, text), JSON",
    "attention": "cross-attention, layers x heads x tokens x positions (CrossAttention)",
    "attention_norm": "norm-weighted cross-attention, same shape",
    "saliency_x": "SPES on the input: its record (per-perturbation scores, units checksum; SaliencyRecord), replayed into tokens x frames x mel maps",
    "saliency_h": "SPES on the encoder output: its record, replayed into tokens x positions maps",
    "gradients": "gradients/<kind>: gradient maps (IxG_X, IG_X, IxG_H, IG_H)",
    "explanations": "explanations/<kind>: maps of kinds registered without a section of their own",
    "convergence": "long SPES runs with snapshots (notebook 05)",
    "validation_SM_X": "validation_SM_X/<run>: SM_X at a high budget and repeats (notebook 05)",
    "validation_SM_H": "validation_SM_H/<run>: SM_H at a high budget and repeats (notebook 05)",
    "sensitivity_x": "sensitivity_x/<setting>: SM_X under another SPES setting (notebook 10)",
    "sensitivity_h": "sensitivity_h/<setting>: SM_H under another SPES setting (notebook 10)",
    "noise": "noise/<reference>: split-half reliability, its null and the null maps of one map",
    "deletion": "one deletion curve per utterance and ranking, JSON",
    "timings": "timings/<kind>: seconds an attention kind takes, timed once, JSON",
    "backend_check": "one SPES backend check per model, backend and dtype, JSON",
    "alignments": "reference word alignments per utterance, JSON",
    "jobs": "markers of explanation jobs being computed (executor)",
}


def file_id(utt_id: str) -> str:
    """A file-name-safe version of an utterance id (``mfa/cold`` -> ``mfa__cold``)."""
    return str(utt_id).replace("/", "__")


def utterance(condition: str, utt_id: str) -> str:
    """``<condition>/<utterance>``: the key of most per-utterance records."""
    return f"{condition}/{file_id(utt_id)}"


def hypothesis(condition: str, utt_id: str) -> tuple[str, str]:
    return "hypotheses", utterance(condition, utt_id)


def explanation(section: str, condition: str, utt_id: str) -> tuple[str, str]:
    """The record of one explanation kind (its ``Kind.store_section``) of one utterance."""
    return section, utterance(condition, utt_id)


def spes_section(grid: str, purpose: str = "", run: str = "") -> str:
    """The section of a SPES record: the study's maps (``saliency_x`` / ``saliency_h``), or those of
    notebook 05 (``purpose="convergence"``, ``"validation"`` with its ``run``) or notebook 10
    (``"sensitivity"`` with the setting as ``run``)."""
    ref = "SM_X" if grid == "input" else "SM_H"
    if not purpose:
        return "saliency_x" if grid == "input" else "saliency_h"
    if purpose == "convergence":
        return "convergence"
    if purpose == "validation":
        return f"validation_{ref}/{run.replace(' ', '_')}"
    if purpose == "sensitivity":
        return f"sensitivity_{ref[-1].lower()}/{run}"
    raise ValueError(f"unknown SPES purpose {purpose!r}: '', 'convergence', 'validation' or 'sensitivity'")


def noise(reference: str, condition: str, utt_id: str, reducer: str | None, normalization: str) -> tuple[str, str]:
    return f"noise/{reference}", f"{utterance(condition, utt_id)}/{reducer or 'none'}-{normalization}"


def deletion(condition: str, utt_id: str, ranking: str) -> tuple[str, str]:
    """One deletion curve; ``ranking`` is :attr:`~..evaluate.results.Ranking.key`."""
    return "deletion", f"{utterance(condition, utt_id)}/{ranking}"


def timing(kind: str, condition: str, utt_id: str) -> tuple[str, str]:
    return f"timings/{kind}", utterance(condition, utt_id)


def backend_check(model_label: str, backend: str, dtype: str) -> tuple[str, str]:
    return "backend_check", f"{model_label}/{backend}-{dtype}"


def alignment(set_name: str, utt_id: str) -> tuple[str, str]:
    return "alignments", f"{set_name}/{file_id(utt_id)}"


def job(condition: str, utt_id: str, kind: str) -> str:
    """The key of an explanation job (``jobs/<key>.running`` while it runs)."""
    return f"{utterance(condition, utt_id)}/{kind}"
