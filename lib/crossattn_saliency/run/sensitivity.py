"""Is "half" a property of attention or of SPES's own settings? The reference under other settings.

The study fixed SPES's settings (mask probability 0.5, Whisper's silence as the occlusion value,
three SLIC levels, the KL score). Here each setting is changed one at a time (:data:`SETTINGS`),
the SM_X / SM_H maps of a few utterances are computed again with it (independent masks, the
profile's budget, stored under ``sensitivity_x`` / ``sensitivity_h``), and each is treated as
another reference kind named ``<SM_X|SM_H>@<setting>`` beside the study's: the same correlation
machinery (:func:`~.correlating.correlation`) gives rho(CA, map) raw and
disattenuated with intervals and each map's null-corrected reliability; :func:`agreement_matrix`
gives how far two settings' maps agree once both maps' noise is corrected; :func:`sensitivity_table`
adds each setting's throughput and the compute it needs for a given reliability.

Intervals: from ``profile.min_utterances`` utterances on, over utterances (as everywhere in the
compendium); below that, where a sensitivity study of a few clips sits, over the tokens of those
clips (:class:`TokenBootstrap`): what these clips pin down, not what other clips would give.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..core.config import Condition, Profile, derive_seed
from ..evaluate import correlate, reliability, token_bootstrap
from ..evaluate.results import CorrelationTable
from ..evaluate.views import View
from ..explain.explanation import Explained
from .utterances import context_for
from .correlating import correlation
from .costing import recorded_seconds
from .explaining import spes_explanation, spes_record
from .noise import reference_noise

__all__ = ["SETTINGS", "STUDY", "REPEAT", "setting_overrides", "kind_name", "explain_settings", "sensitivity_table",
           "agreement_matrix", "agreement_intervals", "TokenBootstrap"]

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
    from ..explain.spes import SpesParams

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


def explain_settings(profile: Profile, cond: Condition, items: list[Explained], settings: Sequence[str],
                     grids: Sequence[str] = ("input", "encoder"), progress: bool = True) -> list[Explained]:
    """``items`` with one more explanation per setting and grid: ``SM_X@<setting>`` /
    ``SM_H@<setting>`` (settings that do not apply to a grid are skipped; the study's setting is
    the item's own SM_X / SM_H). Each map draws its own masks (seed tag = the setting's name), so
    two settings' maps are independent estimates; computed once and stored."""
    from ..core.progress import bar

    ctx = context_for(profile, cond)
    todo = [(it, s, g) for it in items for g in grids for s in settings if s != STUDY and applies(s, g)]
    extra: dict[str, dict[str, Any]] = {it.utt.utt_id: {} for it in items}
    for it, s, g in bar(todo, desc=f"SPES settings {cond.name}", unit="map", disable=not progress):
        base = "SM_X" if g == "input" else "SM_H"
        res = spes_record(ctx, it.utt, g, purpose="sensitivity", run=s, seed_tag=s, settings=setting_overrides(s, g))
        extra[it.utt.utt_id][kind_name(base, s)] = spes_explanation(ctx, it.utt, kind_name(base, s), res)
    return [it.with_explanations(extra[it.utt.utt_id]) for it in items]


class TokenBootstrap:
    """Token-resampling intervals for correlations between maps of a few utterances
    (:func:`~.reliability.token_bootstrap_disattenuated`), with each map's per-token moments
    built once: the comparison-grid map (reduced with the profile's reducer, normalized),
    its null maps (those of :func:`~.noise.reference_noise`, stored) and its split-half
    moments (same splits and permutations as the stored noise)."""

    def __init__(self, profile: Profile, cond: Condition, items: list[Explained]):
        self.profile, self.cond, self.items = profile, cond, items
        self._grid: dict[tuple[int, str], np.ndarray] = {}
        self._nulls: dict[tuple[int, str], list[np.ndarray]] = {}
        self._noise: dict[tuple[int, str], token_bootstrap.NoiseMoments] = {}
        self._weights: list[np.ndarray] | None = None

    def _norm(self, m: np.ndarray) -> np.ndarray:
        return correlate.normalize(np.asarray(m, dtype=np.float64), self.profile.normalization)

    def grid(self, j: int, name: str, view: View | None = None) -> np.ndarray:
        """Utterance ``j``'s map ``name`` (``view`` of a layered kind) on the comparison grid,
        normalized: ``tokens x positions``."""
        key = (j, f"{name}|{view}")
        if key not in self._grid:
            self._grid[key] = self._norm(self.items[j][name].on_encoder_grid(view, self.profile.reducer))
        return self._grid[key]

    def noise(self, j: int, name: str) -> token_bootstrap.NoiseMoments:
        key = (j, name)
        if key not in self._noise:
            p, it = self.profile, self.items[j]
            e = it[name]
            nz = reference_noise(p, self.cond, it, name, p.reducer, p.normalization)
            self._nulls[key] = [self._norm(m) for m in nz.null_maps]
            self._noise[key] = token_bootstrap.noise_moments(
                lambda **kw: e.resample_on_grid(p.reducer, **kw), e.design, None, p.normalization,
                p.reliability_splits, p.null_permutations,
                derive_seed(p.seed, it.utt.utt_id, name, "noise"))
        return self._noise[key]

    @property
    def weights(self) -> list[np.ndarray]:
        """One token-bootstrap weight array per utterance (``1 + n_bootstrap x tokens``), shared by
        every comparison, so that replicates are paired across them."""
        if self._weights is None:
            tokens = [int(next(iter(it.explanations.values())).n_tokens) for it in self.items]
            self._weights = token_bootstrap.token_weights(tokens, self.profile.n_bootstrap, self.profile.seed)
        return self._weights

    def replicates(self, explanation: str, reference: str, view: View | None = None, noisy_explanation: bool = False,
                   raw: bool = False) -> np.ndarray:
        """rho(``explanation`` ``view``, ``reference``) over the items, disattenuated by the
        reference's corrected reliability (and the explanation's when ``noisy_explanation``)
        or ``raw``, under each of the shared token weights: ``1 + n_bootstrap``, entry 0 the
        estimate (:func:`~.reliability.token_bootstrap_replicates`)."""
        n = len(self.items)
        refs = [self.noise(j, reference) for j in range(n)]
        exps = [self.noise(j, explanation) for j in range(n)] if noisy_explanation else None
        pair = [token_bootstrap.row_moments(self.grid(j, explanation, view), self.grid(j, reference)) for j in range(n)]
        nulls = [np.stack([token_bootstrap.row_moments(self.grid(j, explanation, view), m)
                           for m in self._nulls[(j, reference)]]) for j in range(n)]
        return token_bootstrap.token_bootstrap_replicates(pair, nulls, refs, self.weights, exps,
                                                      floor=self.profile.reliability_floor, raw=raw)

    def estimate(self, explanation: str, reference: str, view: View | None = None, noisy_explanation: bool = False,
                 raw: bool = False) -> Any:
        """:meth:`replicates` as a :class:`~..evaluate.stats.Estimate` with its 95% percentile interval."""
        return token_bootstrap.replicate_interval(self.replicates(explanation, reference, view, noisy_explanation, raw),
                                              f"tokens resampled within each of {len(self.items)} utterance(s)",
                                              len(self.items))


def sensitivity_table(profile: Profile, cond: Condition, items: list[Explained], settings: Sequence[str],
                      base: str = "SM_X", kind: str = "CA", view: View = View("all"),
                      target_reliability: float = 0.5) -> Any:
    """One row per setting (``pandas.DataFrame``): throughput (perturbations/s of this run's
    hardware), null-corrected reliability of the maps at their budget, the perturbations and
    seconds it would take to reach ``target_reliability`` (inverse Spearman-Brown of the median
    map), rho(``kind`` ``view``, map) raw and disattenuated with 95% intervals (``interval``:
    over utterances from ``profile.min_utterances`` on, below that over the tokens of these
    utterances, :class:`TokenBootstrap`), and the Spearman rho."""
    import pandas as pd

    names = [kind_name(base, s) for s in settings if kind_name(base, s) in items[0].explanations]
    corr = correlation(profile, cond, items, reducer=profile.reducer, normalization=profile.normalization,
                                kind_names=[kind], targets=names, views=[view])
    tokens = TokenBootstrap(profile, cond, items) if len(items) < profile.min_utterances else None
    rows = []
    for s in settings:
        name = kind_name(base, s)
        if name not in names:
            continue
        r = corr.get(cond.name, kind, name, view)
        lo, hi, dlo, dhi = r.rho_lo, r.rho_hi, r.dis_lo, r.dis_hi
        if tokens is not None:
            raw, dis = (tokens.estimate(kind, name, view, raw=flag) for flag in (True, False))
            lo, hi, dlo, dhi = raw.lo, raw.hi, dis.lo, dis.hi
        maps = [it[name] for it in items]
        n_pert = int(maps[0].provenance.params.get("n_perturbations") or 0)
        secs = np.array([recorded_seconds(e) for e in maps])
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
                     "rho": r.rho, "rho lo": lo, "rho hi": hi, "spearman": r.spearman,
                     "rho disattenuated": r.rho_disattenuated, "dis lo": dlo, "dis hi": dhi,
                     "interval": "utterances" if tokens is None else f"tokens of {len(items)} utterance(s)"})
    return pd.DataFrame(rows)


def agreement_matrix(profile: Profile, cond: Condition, items: list[Explained], settings: Sequence[str],
                     base: str = "SM_X") -> Any:
    """How far two settings' maps agree once both maps' noise is corrected (``pandas.DataFrame``,
    settings x settings): rho(map a, map b) null-corrected against b's null, Fisher-z mean over
    utterances, divided by the square root of the two maps' corrected reliabilities (NaN where
    either is below ``profile.reliability_floor``: not estimable). 1 = the same map up to
    estimation noise. The diagonal is 1 by definition."""
    import pandas as pd

    names = [kind_name(base, s) for s in settings if kind_name(base, s) in items[0].explanations]
    labels = [n.split("@")[-1] if "@" in n else STUDY for n in names]
    corr = CorrelationTable()
    for b in names:  # each map as the reference of the others: its own null and reliability
        corr = corr + correlation(profile, cond, items, reducer=profile.reducer,
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


def agreement_intervals(profile: Profile, cond: Condition, items: list[Explained], settings: Sequence[str],
                        base: str = "SM_X", against: Sequence[str] = (STUDY,), progress: bool = True) -> Any:
    """The agreement of :func:`agreement_matrix` for the rows ``against`` (default: the study's
    setting) with 95% token-bootstrap intervals (``pandas.DataFrame``: ``reference`` (``base``), ``setting``, ``with``,
    ``agreement``, ``lo``, ``hi``, ``relative``, ``rel lo``, ``rel hi``, ``interval``).

    Each replicate resamples the tokens of every utterance and recomputes both maps'
    null-corrected rho, null and corrected reliabilities on the same rows
    (:class:`TokenBootstrap`); with unit weights it is :func:`agreement_matrix`'s value.
    ``relative``: the agreement divided by the row setting's agreement with :data:`REPEAT`
    (the same settings with other masks, 1 in truth), on paired replicates: what is left of
    the agreement once the disattenuation's own bias at this budget (measured on a pair that
    is the same map) is taken out; NaN where there is no repeat.
    """
    import pandas as pd

    from ..core.progress import bar

    names = [kind_name(base, s) for s in settings if kind_name(base, s) in items[0].explanations]
    label = {n: (n.split("@")[-1] if "@" in n else STUDY) for n in names}
    tb = TokenBootstrap(profile, cond, items)
    todo = [(a, b) for a in names if label[a] in against for b in names if b != a]
    reps = {pair: tb.replicates(*pair, noisy_explanation=True)
            for pair in bar(todo, desc=f"agreement intervals {cond.name}", unit="pair", disable=not progress)}
    how = f"tokens of {len(items)} utterance(s)"
    same = kind_name(base, REPEAT)
    rows = []
    for a, b in todo:
        est = token_bootstrap.replicate_interval(reps[(a, b)], how, len(items))
        rel = None
        if label[a] == STUDY and same in names and b != same:
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = token_bootstrap.replicate_interval(reps[(a, b)] / reps[(a, same)], how, len(items))
        rows.append({"reference": base, "setting": label[a], "with": label[b], "agreement": est.value, "lo": est.lo, "hi": est.hi,
                     "relative": rel.value if rel else float("nan"), "rel lo": rel.lo if rel else float("nan"),
                     "rel hi": rel.hi if rel else float("nan"), "interval": how})
    return pd.DataFrame(rows, columns=["reference", "setting", "with", "agreement", "lo", "hi", "relative", "rel lo",
                                       "rel hi", "interval"])
