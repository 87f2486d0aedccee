"""One sentence under each figure, rendered from the numbers the figure shows.

A figure in a notebook is followed by what it shows in words, e.g. "whisper-base · en-real · ASR:
rho(CA layer, SM_H) peaks at layer 5 of 6 (0.41)". The sentence is computed here from the same
results the figure draws, so it stays true when the results change. Every function returns one
``str``; none draws.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["condition_label", "spectrograms", "attention_mass", "head_heatmap", "rho_by_layer", "deletion_curves",
           "timestamp_errors", "reliability_curves", "sensitivity", "agreement", "utterance"]

_TASKS = {"asr": "ASR", "st": "ST"}


def condition_label(name: str) -> str:
    """A condition's folder name as people say it: ``whisper-base__it-tts__st`` -> ``base · it-tts · ST``."""
    parts = name.split("__")
    if len(parts) != 3:
        return name
    model, data, task = parts
    return f"{model.removeprefix('whisper-')} · {data} · {_TASKS.get(task, task)}"


def _num(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def utterance(name: str, utt_id: str, n_frames: int, n_tokens: int) -> str:
    """What an example figure shows: which utterance, how long, how many output tokens."""
    return f"{condition_label(name)}: utterance {utt_id}, {n_frames / 100:.1f} s of speech, {n_tokens} output tokens."


def spectrograms(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Under the test sets' spectrograms: each set's first utterance, its length and its kind.
    ``rows``: set name -> a set row (``audio`` samples, ``sampling_rate``, ``synthetic``)."""
    parts = [f"{name}: {len(r['audio']) / float(r['sampling_rate']):.1f} s, "
             f"{'synthetic' if r['synthetic'] else 'real'} speech" for name, r in rows.items()]
    return "First utterance of each set: " + "; ".join(parts) + "."


def attention_mass(summaries: Mapping[str, Any]) -> str:
    """Under the attention-mass chart: the layer with the most mass on padding, per condition.
    ``summaries``: condition -> :func:`~..explain.attention.attention_summary` frame."""
    parts = []
    for name, df in summaries.items():
        by = df.groupby("layer")["pad_mass"].mean()
        worst = int(by.idxmax())
        parts.append(f"{condition_label(name)}: layer {worst + 1} of {len(by)} puts the most on padding "
                     f"({100 * by.max():.0f} % of its mass; least: layer {int(by.idxmin()) + 1}, {100 * by.min():.0f} %)")
    return "; ".join(parts) + "." if parts else "No attention summaries."


def head_heatmap(name: str, kind: str, grids: Mapping[str, np.ndarray], all_layers: Mapping[str, float]) -> str:
    """Under a layer x head heatmap: the best head per reference and how many heads beat the
    average of all layers. ``grids``: target -> ``layers x heads`` rho; ``all_layers``: target ->
    rho of the all-layers view."""
    parts = []
    for target, g in grids.items():
        g = np.asarray(g, dtype=float)
        if not np.isfinite(g).any():
            parts.append(f"no head estimable against {target}")
            continue
        l, h = np.unravel_index(np.nanargmax(g), g.shape)
        ref = all_layers.get(target, float("nan"))
        above = int(np.sum(g > ref)) if math.isfinite(ref) else 0
        parts.append(f"best head against {target}: layer {l + 1}, head {h + 1} (rho {_num(g[l, h])}); "
                     f"{above} of {g.size} heads above the all-layers value ({_num(ref)})")
    return f"{condition_label(name)}, {kind}: " + "; ".join(parts) + "."


def rho_by_layer(by_target: Mapping[str, Mapping[str, Sequence[float]]]) -> str:
    """Under the per-layer chart: where rho(CA layer, reference) peaks. ``by_target``: target ->
    condition -> rho per layer (first layer first)."""
    parts = []
    for target, by_cond in by_target.items():
        for name, rhos in by_cond.items():
            r = np.asarray(rhos, dtype=float)
            if not np.isfinite(r).any():
                continue
            k = int(np.nanargmax(r))
            parts.append(f"{condition_label(name)} vs {target}: peak at layer {k + 1} of {len(r)} ({_num(r[k])})")
    return "rho(CA layer, reference): " + "; ".join(parts) + "." if parts else "No per-layer correlations."


def deletion_curves(name: str, curves: Mapping[str, Sequence[Any]], at_percent: float = 10.0) -> str:
    """Under one condition's deletion curves: the WER after deleting ``at_percent`` % of the input
    under each ranking (mean over utterances), highest first. ``curves``: label ->
    :class:`~..evaluate.deletion.DeletionCurve` per utterance."""
    at = {}
    for label, cs in curves.items():
        vals = [c.wer_at(at_percent) for c in cs]
        if vals:
            at[label] = float(np.mean(vals))
    if not at:
        return f"{condition_label(name)}: no deletion curves."
    ranked = sorted(at.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{label} {v:.0f} %" for label, v in ranked)
    return f"{condition_label(name)}: WER after deleting {at_percent:g} % of the input, by ranking: {text}."


def timestamp_errors(table: Any, condition: str) -> str:
    """Under the word-timestamp boxes: the kind and view with the smallest median word-start error,
    and the shipped alignment heads' error. ``table``: notebook 09's timestamp table."""
    d = table[table["condition"] == condition]
    d = d[np.isfinite(d["start_median (ms)"].astype(float))]
    if not len(d):
        return f"{condition_label(condition)}: no word matched a reference."
    best = d.loc[d["start_median (ms)"].astype(float).idxmin()]
    label = best["kind"] if best["view"] == "map" else f"{best['kind']} ({best['view']})"
    text = f"{condition_label(condition)}: smallest median word-start error {best['start_median (ms)']:.0f} ms from {label}"
    shipped = d[(d["kind"] == "CA") & (d["view"] == "alignment heads")]
    if len(shipped):
        text += f"; CA's shipped alignment heads {float(shipped['start_median (ms)'].iloc[0]):.0f} ms"
    return text + "."


def reliability_curves(conv: Any, resolution: str, budget: int) -> str:
    """Under the convergence chart: the median reliability at the largest measured budget and the
    profile's ``budget`` for one ``resolution`` of notebook 05's convergence table."""
    sub = conv[conv["resolution"] == resolution]
    if not len(sub):
        return f"{resolution}: no convergence runs."
    last = sub.sort_values("perturbations").groupby(["condition", "utterance"]).tail(1)
    n = int(last["perturbations"].max())
    return (f"{resolution}: median reliability {_num(float(np.median(last['reliability'])))} after {n:,} perturbations "
            f"over {len(last)} map(s) (profile budget {budget:,}).")


def sensitivity(table: Any, value: str = "rho disattenuated") -> str:
    """Under the sensitivity chart: the range of ``value`` over SPES's settings, per condition."""
    parts = []
    for name, d in table.groupby("condition", sort=False):
        d = d[np.isfinite(d[value].astype(float))]
        if not len(d):
            continue
        lo, hi = d.loc[d[value].idxmin()], d.loc[d[value].idxmax()]
        study = d[d["setting"] == "study"][value]
        parts.append(f"{condition_label(name)}: from {_num(lo[value])} ({lo['setting']}) to {_num(hi[value])} "
                     f"({hi['setting']})" + (f", the study's setting {_num(study.iloc[0])}" if len(study) else ""))
    return f"{value} of CA against SM_X under SPES's settings: " + "; ".join(parts) + "." if parts else \
        f"No estimable {value}."


def agreement(name: str, matrix: Any, base: str = "study") -> str:
    """Under an agreement matrix: the settings whose maps agree least and most with ``base``'s."""
    if base not in matrix.index:
        return f"{condition_label(name)}: no row for the {base} setting."
    row = matrix.loc[base].drop(labels=[base], errors="ignore").astype(float)
    row = row[np.isfinite(row)]
    if not len(row):
        return f"{condition_label(name)}: no agreement with the {base} setting is estimable."
    return (f"{condition_label(name)}: agreement with the {base} setting's maps from {_num(row.min())} "
            f"({row.idxmin()}) to {_num(row.max())} ({row.idxmax()}).")


def heads_curve(curve: Any, table: Any) -> str:
    """Under the selection curve: per model, the held-out median start error of heads chosen by
    timing and by agreement (largest budget) on the most clips, beside the shipped heads'.
    ``curve``: selection-curve rows; ``table``: the held-out table (set ``all``)."""
    parts = []
    for model in dict.fromkeys(curve["model"]):
        d = curve[(curve["model"] == model) & (curve["clips"] == curve["clips"].max())]
        top = int(d["budget"].max())
        t = d[d["method"] == "timing"]["start median (ms)"].mean()
        a = d[(d["method"] == "agreement") & (d["budget"] == top)]["start median (ms)"].mean()
        ref = table[(table["model"] == model) & (table["set"] == "all") & (table["heads"] == "shipped")]
        text = (f"{model}, {int(d['clips'].max())} clips: {_num(t, 0)} ms by timing, {_num(a, 0)} ms by agreement with "
                f"SM_H at {top} perturbations")
        if len(ref):
            text += f", shipped heads {_num(float(ref['start median (ms)'].iloc[0]), 0)} ms"
        parts.append(text)
    return "Held-out median word-start error: " + "; ".join(parts) + "."
