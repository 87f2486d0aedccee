"""The noise of every reference map, measured on its own perturbations and stored (notebooks 05-10).

A SPES map is a Monte-Carlo estimate; its split-half reliability over random splits of its
perturbations, the same statistic under permuted scores (the null: what the procedure,
segmentation and reducer included, gives on noise) and the null maps on the comparison grid
are rebuilt from the stored per-perturbation scores, with no forward pass
(:func:`~..evaluate.reliability.reference_noise`), and stored per map, reducer and
normalization (``noise/<reference>``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.config import Condition, Profile, derive_seed
from ..evaluate import grids, reliability
from ..explain.explanation import Explained
from . import keys
from .context import store

__all__ = ["reference_noise"]


def reference_noise(profile: Profile, cond: Condition, item: Explained, target: str, reducer: str | None = None,
                    normalization: str | None = None) -> reliability.ReferenceNoise:
    """The noise of one utterance's reference map ``target`` (:class:`~..evaluate.reliability.ReferenceNoise`):
    split-half reliability over ``profile.reliability_splits`` random splits of its perturbations
    and under ``profile.null_permutations`` score permutations (the null), plus the null maps on
    the comparison grid (input-grid maps reduced by ``reducer``, default the profile's; normalized
    by ``normalization``, default the profile's).

    A reference stored without per-perturbation scores falls back to its one alternating split
    with a null of 0 (a warning says so)."""
    reducer = reducer or profile.reducer
    normalization = normalization or profile.normalization
    e = item[target]
    red = reducer if e.grid == "input" else None
    if e.design is None:
        import warnings

        warnings.warn(f"{target} {item.utt.utt_id} kept no per-perturbation scores: reliability from one split, "
                      "no null correction (recompute the map to correct it)", stacklevel=2)
        a, b = e.require_halves()
        r = reliability.split_half_reliability(a, b, red, normalization)
        return reliability.ReferenceNoise(np.array([r]), np.array([0.0]),
                                          (grids.to_comparison_grid(e.map(), e.grid, reducer),))
    seed = derive_seed(profile.seed, item.utt.utt_id, target, "noise")
    params = {"target": target, "reducer": red, "normalization": normalization,
              "splits": profile.reliability_splits, "permutations": profile.null_permutations, "seed": seed,
              "reference": dict(e.provenance.params)}

    def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        nz = reliability.reference_noise(e.resample, e.design, red, normalization, profile.reliability_splits,
                                         profile.null_permutations, seed)
        return ({"r_half_splits": nz.r_half_splits, "r_half_null": nz.r_half_null,
                 "null_maps": np.stack(nz.null_maps).astype(np.float32)},
                {"token_ids": [int(t) for t in e.token_ids]})

    arrays, _ = store(profile).fetch_arrays(*keys.noise(target, cond.name, item.utt.utt_id, red, normalization),
                                            params, compute, identity={"token_ids": [int(t) for t in e.token_ids]})
    return reliability.ReferenceNoise(arrays["r_half_splits"], arrays["r_half_null"],
                                      tuple(np.asarray(m, dtype=np.float64) for m in arrays["null_maps"]))
