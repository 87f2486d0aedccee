"""Is the correction for the reference's noise right? Checks of disattenuation and of the budgets (notebook 05).

:func:`disattenuation_validation` computes one utterance's reference at ``validation_factor``
times the budget and ``validation_repeats`` times at the budget (independent masks) and asks
whether each low-budget map's disattenuated rho falls within the high-budget one's interval;
:func:`disattenuation_checks` runs it for one condition per model and every reference of
``validation_targets``. :func:`budget_rule_table` checks the rule that sized the profile's
budgets (:func:`~..evaluate.budget.budget_rule`) on the run's maps.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.config import Condition, Profile, derive_seed
from ..evaluate import budget, map_noise, reliability
from ..evaluate.results import CorrelationTable
from ..evaluate.views import View
from ..explain import kinds
from .utterances import context_for, utterances
from .explaining import explanation, spes_explanation, spes_record

__all__ = ["disattenuation_validation", "disattenuation_checks", "disattenuation_holds", "budget_rule_table"]


def disattenuation_validation(profile: Profile, cond: Condition, target: str = "SM_H", factor: int = 10,
                              repeats: int = 3, kind: str = "CA", view: View = View("all"),
                              progress: bool = True) -> Any:
    """Does disattenuation predict what a noise-free reference would give? (one utterance)

    For the shortest of the condition's saliency utterances, the reference ``target`` is
    computed once with ``factor`` times the profile's budget and ``repeats`` times with the
    profile's budget and independent masks (seeds derived from the utterance, the kind and
    the repeat), all stored. For each map: rho(``kind`` ``view``, map), its null, the map's
    null-corrected reliability and the disattenuated rho (:func:`~..evaluate.reliability.single_map_disattenuation`,
    token-bootstrap 95% interval). ``within``: whether a low-budget map's disattenuated rho
    falls inside the interval of the high-budget one.

    Returns a ``pandas.DataFrame``, one row per map: ``condition``, ``utterance``, ``map``,
    ``perturbations``, ``seconds`` (compute time of the map), ``rho``, ``rho_null``,
    ``r_half``, ``r_half_null``, ``reliability``, ``disattenuated``, ``lo``, ``hi``, ``within``.
    """
    import pandas as pd

    from ..core.progress import bar

    grid = kinds.get(target).grid
    base = profile.spes_perturbations if grid == "input" else profile.spes_h_perturbations
    utts = list(utterances(profile, cond, profile.saliency_utterances, saliency=True))
    utt = min(utts, key=lambda u: u.n_frames)
    ctx = context_for(profile, cond)
    e = explanation(ctx, kinds.get(kind), utt).on_encoder_grid(view, profile.reducer)
    runs = [("high", base * factor, "validation high")] + [(f"repeat {i + 1}", base, f"validation {i + 1}")
                                                            for i in range(repeats)]
    rows = []
    for label, n, tag in bar(runs, desc=f"validation {target} {cond.name}", unit="map", disable=not progress):
        res = spes_record(ctx, utt, grid, n_perturbations=n, purpose="validation", run=tag, seed_tag=tag)
        ref = spes_explanation(ctx, utt, target, res)
        nz = map_noise.reference_noise(lambda **kw: ref.resample_on_grid(profile.reducer, **kw), ref.design, None,
                                         profile.normalization,
                                         profile.reliability_splits, profile.null_permutations,
                                         derive_seed(profile.seed, utt.utt_id, target, tag, "noise"))
        d = reliability.single_map_disattenuation(e, ref.on_encoder_grid(None, profile.reducer), nz, profile.normalization,
                                                  profile.n_bootstrap, profile.seed)
        info = res.info
        rows.append({"condition": cond.name, "utterance": utt.utt_id, "map": label, "perturbations": n,
                     "seconds": float(info.get("setup_s", 0.0)) + float(info.get("loop_s", 0.0)),
                     "rho": d.rho, "rho_null": d.rho_null, "r_half": d.r_half, "r_half_null": d.r_half_null,
                     "reliability": d.reliability, "disattenuated": d.disattenuated, "lo": d.lo, "hi": d.hi})
    df = pd.DataFrame(rows)
    hi_row = df.iloc[0]
    df["within"] = [None] + [bool(hi_row["lo"] <= v <= hi_row["hi"]) for v in df["disattenuated"].iloc[1:]]
    return df


def disattenuation_checks(profile: Profile, progress: bool = True) -> Any:
    """:func:`disattenuation_validation` for the first saliency condition of every model and every
    reference in ``profile.validation_targets`` (one frame, with a ``target`` column)."""
    import pandas as pd

    first = {}
    for c in profile.saliency_conditions_list():
        first.setdefault(c.model, c)
    return pd.concat([disattenuation_validation(profile, c, t, profile.validation_factor, profile.validation_repeats,
                                                progress=progress).assign(target=t)
                      for c in first.values() for t in profile.validation_targets], ignore_index=True)


def budget_rule_table(profile: Profile, corr: CorrelationTable, checks: Any = None, kind: str = "CA") -> Any:
    """The budget rule (:func:`.reliability.budget_rule`) checked on this run, per saliency condition
    and reference: the median corrected reliability of its maps at the profile's budget, the share
    at the profile's target (``reliability_targets``), the budget the median map would need, and the
    spread of the per-utterance disattenuated rho(``kind`` all layers, reference) between utterances
    next to its spread over independent maps of one utterance (notebook 05's repeats, where run).
    """
    import pandas as pd

    within: dict[tuple[str, str], float] = {}
    if checks is not None and len(checks):
        for (model, target), g in checks[checks["map"] != "high"].groupby(
                [checks["condition"].str.split("__").str[0], "target"]):
            if len(g) > 1:
                within[(model, target)] = float(np.std(g["disattenuated"].to_numpy(dtype=float), ddof=1))
    rows = []
    for r in corr.rows:
        if r.kind != kind or r.view is None or r.view.scope != "all" or r.target not in profile.reliability_targets:
            continue
        rel = reliability.corrected_reliability(np.asarray(r.r_half_per_utterance), np.asarray(r.r_half_null_per_utterance))
        rho_c = reliability.chance_corrected(np.asarray(r.rho_per_utterance), np.asarray(r.rho_null_per_utterance))
        dis = np.where(rel >= profile.reliability_floor, rho_c / np.sqrt(np.maximum(rel, 1e-12)), np.nan)
        n_pert = profile.spes_perturbations if kinds.get(r.target).grid == "input" else profile.spes_h_perturbations
        b = budget.budget_rule(rel, n_pert, profile.reliability_targets[r.target], dis,
                                    within.get((r.condition.split("__")[0], r.target), float("nan")))
        rows.append({"condition": r.condition, "reference": r.target, "utterances": r.utterances, "budget": b.budget,
                     "median reliability": b.median_reliability, "target": b.target,
                     "share at target": b.share_at_target, "budget for target": b.budget_for_target,
                     "between-utterance SD": b.between_sd, "map-noise SD": b.within_sd,
                     "map-noise share": b.noise_share})
    return pd.DataFrame(rows)


def disattenuation_holds(checks: Any) -> bool:
    """True when every low-budget disattenuated value lies within its high-budget interval."""
    low = checks[checks["map"] != "high"]
    return bool(len(low)) and bool(low["within"].astype(bool).all())
