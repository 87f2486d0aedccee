"""Is "half" a property of attention or of SPES's own settings? The reference under other settings.

The study fixed SPES's settings (mask probability 0.5, Whisper's silence as the occlusion value,
three SLIC levels, the KL score). Here each setting is changed one at a time (:data:`SETTINGS`),
the SM_X / SM_H maps of a few utterances are computed again with it (independent masks, the
profile's budget, stored under ``sensitivity_x`` / ``sensitivity_h``), and each is treated as
another reference kind named ``<SM_X|SM_H>@<setting>`` beside the study's: the same correlation
machinery (:func:`~crossattn_saliency.pipeline.correlation`) gives rho(CA, map) raw and
disattenuated with intervals and each map's null-corrected reliability; :func:`agreement_matrix`
gives how far two settings' maps agree once both maps' noise is corrected; :func:`sensitivity_table`
adds each setting's throughput and the compute it needs for a given reliability.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from . import kinds, pipeline, reliability
from .config import Condition, Profile
from .explanations import View

__all__ = ["SETTINGS", "STUDY", "REPEAT", "setting_overrides", "kind_name", "explain_settings", "sensitivity_table",
           "agreement_matrix"]

#: the study's settings (the maps of notebook 04)
STUDY = "study"
#: the study's settings again, with independent masks and timed beside the other settings: the size
#: of a change that is only sampling noise (in rho and in the agreement matrix), and the study's cost
#: measured in the same run as the others' (the maps of notebook 04 were timed in another run)
REPEAT = "repeat"

#: one-at-a-time changes of SPES's settings, by name: ``SpesParams`` fields replaced
SETTINGS: Mapping[str, Mapping[str, Any]] = {
    STUDY: {}, REPEAT: {},
    "p0.1": {"p_occlude": 0.1}, "p0.2": {"p_occlude": 0.2}, "p0.3": {"p_occlude": 0.3},
    "occlusion-mean": {"occlusion": "mean"}, "occlusion-0": {"occlusion": 0.0},
    "levels-one": {"levels": (2500,)}, "levels-coarser": {"levels": (1000, 1250, 1500)},
    "levels-finer": {"levels": (4000, 5000, 6000)},
    "score-prob-drop": {"scorer": "prob_drop"},
}

#: fields that mean nothing on the encoder output (SM_H occludes single positions with 0)
_INPUT_ONLY = ("occlusion", "levels", "frames_ref", "max_frames", "compactness", "sigma")


def setting_overrides(setting: str | Mapping[str, Any], grid: str) -> dict[str, Any]:
    """The ``SpesParams`` fields a setting replaces (a name of :data:`SETTINGS` or a mapping),
    validated for ``grid`` (``"input"``: SM_X, ``"encoder"``: SM_H). Raises ``ValueError`` naming
    the problem: an unknown setting, a field that does not apply to SM_H, or a bad value
    (e.g. ``p_occlude`` outside (0, 1), an unknown occlusion mode or score)."""
    from .spes import SpesParams

    if isinstance(setting, str):
        if setting not in SETTINGS:
            raise ValueError(f"unknown SPES setting {setting!r}; known: {list(SETTINGS)} (or pass a mapping of "
                             "SpesParams fields)")
        over = dict(SETTINGS[setting])
    else:
        over = dict(setting)
    if grid not in ("input", "encoder"):
        raise ValueError(f"grid must be 'input' (SM_X) or 'encoder' (SM_H), not {grid!r}")
    if grid == "encoder":
        bad = sorted(set(over) & set(_INPUT_ONLY))
        if bad:
            raise ValueError(f"{bad} do not apply to SM_H (the encoder output is occluded position by position "
                             "with 0); vary them for SM_X only")
    SpesParams(**over)  # validates names and values, with SpesParams' own messages
    return over


def kind_name(base: str, setting: str) -> str:
    """The explanation name of a setting's map: ``"SM_X"`` for the study's, else ``"SM_X@p0.2"``."""
    return base if setting == STUDY else f"{base}@{setting}"


def applies(setting: str, grid: str) -> bool:
    """Whether a named setting can be used on ``grid``."""
    try:
        setting_overrides(setting, grid)
    except ValueError:
        return False
    return True


def explain_settings(profile: Profile, cond: Condition, items: list[pipeline.Explained], settings: Sequence[str],
                     grids: Sequence[str] = ("input", "encoder"), progress: bool = True) -> list[pipeline.Explained]:
    """``items`` with one more explanation per setting and grid: ``SM_X@<setting>`` /
    ``SM_H@<setting>`` (settings that do not apply to a grid are skipped; the study's setting is
    the item's own SM_X / SM_H). Each map draws its own masks (seed tag = the setting's name), so
    two settings' maps are independent estimates; computed once and stored."""
    from .progress import bar

    ctx = pipeline.context(profile, cond)
    todo = [(it, s, g) for it in items for g in grids for s in settings if s != STUDY and applies(s, g)]
    extra: dict[str, dict[str, Any]] = {it.utt.utt_id: {} for it in items}
    for it, s, g in bar(todo, desc=f"SPES settings {cond.name}", unit="map", disable=not progress):
        base = "SM_X" if g == "input" else "SM_H"
        res = kinds.spes_record(ctx, it.utt, g, section=f"sensitivity_{base[-1].lower()}/{s}", seed_tag=s,
                                settings=setting_overrides(s, g))
        extra[it.utt.utt_id][kind_name(base, s)] = kinds.spes_explanation(ctx, it.utt, kind_name(base, s), res)
    return [pipeline.Explained(it.utt, {**it.explanations, **extra[it.utt.utt_id]}) for it in items]


def sensitivity_table(profile: Profile, cond: Condition, items: list[pipeline.Explained], settings: Sequence[str],
                      base: str = "SM_X", kind: str = "CA", view: View = View("all"),
                      target_reliability: float = 0.5) -> Any:
    """One row per setting (``pandas.DataFrame``): throughput (perturbations/s of this run's
    hardware), null-corrected reliability of the maps at their budget, the perturbations and
    seconds it would take to reach ``target_reliability`` (inverse Spearman-Brown of the median
    map), rho(``kind`` ``view``, map) raw and disattenuated with 95% intervals over utterances
    (from ``profile.min_utterances`` on), and the Spearman rho."""
    import pandas as pd

    names = [kind_name(base, s) for s in settings if kind_name(base, s) in items[0].explanations]
    corr = pipeline.correlation(profile, cond, items, reducer=profile.reducer, normalization=profile.normalization,
                                kind_names=[kind], targets=names, views=[view])
    rows = []
    for s in settings:
        name = kind_name(base, s)
        if name not in names:
            continue
        r = corr.get(cond.name, kind, name, view)
        maps = [it[name] for it in items]
        n_pert = int(maps[0].provenance.get("n_perturbations") or 0)
        secs = np.array([pipeline.recorded_seconds(e) for e in maps])
        rate = n_pert / float(np.nanmedian(secs)) if n_pert and np.isfinite(np.nanmedian(secs)) else float("nan")
        rel_u = reliability.corrected_reliability(np.asarray(r.r_half_per_utterance),
                                                  np.asarray(r.r_half_null_per_utterance))
        med = float(np.nanmedian(rel_u))
        need = reliability.budget_for_reliability(med, n_pert, target_reliability) if 0 < med < 1 else float("nan")
        rows.append({"condition": cond.name, "reference": base, "setting": s,
                     "changed": ", ".join(f"{k}={v}" for k, v in SETTINGS.get(s, {}).items()) or "(the study's)",
                     "utterances": r.utterances, "perturbations": n_pert, "perturbations/s": rate,
                     "reliability": r.reliability, "median map reliability": med,
                     f"perturbations for {target_reliability}": need,
                     f"seconds for {target_reliability}": need / rate if np.isfinite(rate) else float("nan"),
                     "rho": r.rho, "rho lo": r.rho_lo, "rho hi": r.rho_hi, "spearman": r.spearman,
                     "rho disattenuated": r.rho_disattenuated, "dis lo": r.dis_lo, "dis hi": r.dis_hi})
    return pd.DataFrame(rows)


def agreement_matrix(profile: Profile, cond: Condition, items: list[pipeline.Explained], settings: Sequence[str],
                     base: str = "SM_X") -> Any:
    """How far two settings' maps agree once both maps' noise is corrected (``pandas.DataFrame``,
    settings x settings): rho(map a, map b) null-corrected against b's null, Fisher-z mean over
    utterances, divided by the square root of the two maps' corrected reliabilities (NaN where
    either is below ``profile.reliability_floor``: not estimable). 1 = the same map up to
    estimation noise. The diagonal is 1 by definition."""
    import pandas as pd

    names = [kind_name(base, s) for s in settings if kind_name(base, s) in items[0].explanations]
    labels = [n.split("@")[-1] if "@" in n else STUDY for n in names]
    from .tables import CorrelationTable

    corr = CorrelationTable()
    for b in names:  # each map as the reference of the others: its own null and reliability
        corr = corr + pipeline.correlation(profile, cond, items, reducer=profile.reducer,
                                           normalization=profile.normalization,
                                           kind_names=[a for a in names if a != b], targets=[b])
    rel = {b: corr.get(cond.name, next(a for a in names if a != b), b, None).reliability if len(names) > 1
           else float("nan") for b in names}
    out = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j:
                out[i, j] = 1.0
                continue
            r = corr.get(cond.name, a, b, None)
            ra, rb = rel[a], rel[b]
            if np.isfinite(ra) and np.isfinite(rb) and min(ra, rb) >= profile.reliability_floor:
                out[i, j] = r.rho_corrected / np.sqrt(ra * rb)
    return pd.DataFrame(out, index=labels, columns=labels)
