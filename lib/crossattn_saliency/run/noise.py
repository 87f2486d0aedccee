"""The noise of every reference map, measured on its own perturbations and stored (notebooks 05-10).

A SPES map is a Monte-Carlo estimate; its split-half reliability over random splits of its
perturbations, the same statistic under permuted scores (the null: what the procedure,
segmentation and reducer included, gives on noise) and the null maps on the comparison grid
are rebuilt from the stored per-perturbation scores, with no forward pass
(:func:`~..evaluate.map_noise.reference_noise`), and stored per map, reducer and
normalization (``noise/<reference>``). With ``profile.reliability_method == "bootstrap"`` the
full-budget reliability is a bootstrap over the perturbations instead of a Spearman-Brown step-up
(:func:`~..evaluate.map_noise.bootstrap_reliability`, maps rebuilt with perturbation weights by
:func:`weighted_full_map`); its records are kept apart (key suffix ``-bootstrap``, and the method in
the params).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.config import Condition, Profile, derive_seed
from ..evaluate import grids, map_noise
from ..explain.explanation import Explained
from ..explain.spes import MaskSampler, SpesDesign
from . import keys
from .context import store

__all__ = ["reference_noise", "weighted_full_map", "BOOTSTRAP_REPLICATES", "BOOTSTRAP_CALIBRATION_SPLITS"]

#: bootstrap replicates per map (the run's and each null permutation's) with ``reliability_method="bootstrap"``
BOOTSTRAP_REPLICATES = 100
#: random splits that calibrate that bootstrap (``map_noise.bootstrap_reliability``'s ``halves``)
BOOTSTRAP_CALIBRATION_SPLITS = 2


def weighted_full_map(design: SpesDesign) -> Any:
    """``weighted(weights=None, scores=None) -> tokens x cells``: the full SPES map of ``design`` with
    perturbation ``k`` counted ``weights[k]`` times (non-negative ints, e.g. bootstrap multiplicities;
    ``None``: once each) and the run's or other ``scores``; unit weights give ``design.cell_maps()[0]``
    exactly (a cell's relevance is the weighted mean score of the perturbations that occluded it)."""
    _, levels, masks = MaskSampler(design.n_segments, design.p_occlude, design.seed).draw(design.n_perturbations)
    per_level = []
    for lv, n_seg in enumerate(design.n_segments):
        idx = np.flatnonzero(levels == lv)
        m = np.stack([masks[i] for i in idx]).astype(np.float64) if idx.size else np.zeros((0, n_seg))
        per_level.append((idx, m, np.asarray(design.labels[lv])))

    def weighted(weights: np.ndarray | None = None, scores: np.ndarray | None = None) -> np.ndarray:
        sc = design.scores if scores is None else np.asarray(scores, dtype=np.float64)
        w = np.ones(design.n_perturbations, dtype=np.int64) if weights is None else np.asarray(weights)
        if w.shape != (design.n_perturbations,) or sc.shape != design.scores.shape:
            raise ValueError(f"weights {w.shape} / scores {sc.shape} do not match {design.n_perturbations} "
                             f"perturbations x {design.scores.shape[1]} tokens")
        shape = per_level[0][2].shape
        num = np.zeros((sc.shape[1],) + shape)
        den = np.zeros(shape, dtype=np.int64)
        for idx, m, lab in per_level:
            s_seg = (sc[idx] * w[idx, None]).T @ m
            c_seg = np.rint(w[idx].astype(np.float64) @ m).astype(np.int64)
            num += np.concatenate([s_seg, np.zeros((s_seg.shape[0], 1))], axis=1)[:, lab]
            den += np.concatenate([c_seg, np.zeros(1, dtype=np.int64)])[lab]
        full = np.where(den[None] > 0, num / np.maximum(den[None], 1), 0.0)
        return full.astype(np.float32)

    return weighted


def reference_noise(profile: Profile, cond: Condition, item: Explained, target: str, reducer: str | None = None,
                    normalization: str | None = None) -> map_noise.ReferenceNoise:
    """The noise of one utterance's reference map ``target`` (:class:`~..evaluate.map_noise.ReferenceNoise`):
    split-half reliability over ``profile.reliability_splits`` random splits of its perturbations
    and under ``profile.null_permutations`` score permutations (the null), plus the null maps on
    the comparison grid (input-grid maps reduced by ``reducer``, default the profile's; normalized
    by ``normalization``, default the profile's). With ``profile.reliability_method="bootstrap"`` the
    record's ``r_half_splits`` / ``r_half_null`` carry the null-corrected bootstrap reliability as its
    half equivalent and 0 (:func:`~..evaluate.map_noise.reference_noise`), so every consumer that
    steps them up (``corrected_reliability``, ``ReferenceNoise.reliability``) gets the bootstrap value."""
    reducer = reducer or profile.reducer
    normalization = normalization or profile.normalization
    e = item[target]
    if e.design is None:
        raise ValueError(f"{target} {item.utt.utt_id} kept no per-perturbation scores: its noise cannot be measured; "
                         "recompute the map")
    seed = derive_seed(profile.seed, item.utt.utt_id, target, "noise")
    method = profile.reliability_method
    if method not in map_noise.RELIABILITY_METHODS:
        raise ValueError(f"profile.reliability_method={method!r} is invalid: choose one of "
                         f"{list(map_noise.RELIABILITY_METHODS)}")
    params = {"target": target, "reducer": reducer if e.grid == "input" else None, "normalization": normalization,
              "splits": profile.reliability_splits, "permutations": profile.null_permutations, "seed": seed,
              "reference": dict(e.provenance.params), "reliability_method": method}
    if method == "bootstrap":
        params["bootstrap"] = BOOTSTRAP_REPLICATES
        params["calibration_splits"] = BOOTSTRAP_CALIBRATION_SPLITS
        params["replicates_centred"] = True  # records made before the replicates were centred are recomputed

    def weighted_on_grid() -> Any:
        build = weighted_full_map(e.design)
        return lambda weights=None, scores=None: grids.to_comparison_grid(
            build(weights, scores)[: e.n_tokens], e.grid, reducer)

    def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        nz = map_noise.reference_noise(lambda **kw: e.resample_on_grid(reducer, **kw), e.design, None, normalization,
                                         profile.reliability_splits, profile.null_permutations, seed, method=method,
                                         weighted=weighted_on_grid() if method == "bootstrap" else None,
                                         n_bootstrap=BOOTSTRAP_REPLICATES, n_calibration=BOOTSTRAP_CALIBRATION_SPLITS)
        arrays = {"r_half_splits": nz.r_half_splits, "r_half_null": nz.r_half_null,
                  "null_maps": np.stack(nz.null_maps).astype(np.float32)}
        if method == "bootstrap":
            arrays.update(r_full=np.asarray([nz.r_full]), r_full_null=nz.r_full_null, split_half=nz.split_half,
                          split_half_null=nz.split_half_null)
        return arrays, {"token_ids": [int(t) for t in e.token_ids]}

    section, key = keys.noise(target, cond.name, item.utt.utt_id, params["reducer"], normalization)
    if method != "spearman-brown":
        key = f"{key}-{method}"
    # records written before the method was a parameter are Spearman-Brown ones
    arrays, _ = store(profile).fetch_arrays(section, key, params, compute,
                                            identity={"token_ids": [int(t) for t in e.token_ids]},
                                            defaults={"reliability_method": "spearman-brown"})
    extra: dict[str, Any] = {}
    if method == "bootstrap":
        extra = dict(method="bootstrap", r_full=float(np.asarray(arrays["r_full"]).ravel()[0]),
                     r_full_null=np.asarray(arrays["r_full_null"], dtype=np.float64),
                     split_half=np.asarray(arrays["split_half"], dtype=np.float64),
                     split_half_null=np.asarray(arrays["split_half_null"], dtype=np.float64))
    return map_noise.ReferenceNoise(np.asarray(arrays["r_half_splits"], dtype=np.float64),
                                      np.asarray(arrays["r_half_null"], dtype=np.float64),
                                      tuple(np.asarray(m, dtype=np.float64) for m in arrays["null_maps"]), **extra)
