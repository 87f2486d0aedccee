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
from ..evaluate import reliability
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
    by ``normalization``, default the profile's)."""
    reducer = reducer or profile.reducer
    normalization = normalization or profile.normalization
    e = item[target]
    if e.design is None:
        raise ValueError(f"{target} {item.utt.utt_id} kept no per-perturbation scores: its noise cannot be measured; "
                         "recompute the map")
    seed = derive_seed(profile.seed, item.utt.utt_id, target, "noise")
    params = {"target": target, "reducer": reducer if e.grid == "input" else None, "normalization": normalization,
              "splits": profile.reliability_splits, "permutations": profile.null_permutations, "seed": seed,
              "reference": dict(e.provenance.params)}

    def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        nz = reliability.reference_noise(lambda **kw: e.resample_on_grid(reducer, **kw), e.design, None, normalization,
                                         profile.reliability_splits, profile.null_permutations, seed)
        return ({"r_half_splits": nz.r_half_splits, "r_half_null": nz.r_half_null,
                 "null_maps": np.stack(nz.null_maps).astype(np.float32)},
                {"token_ids": [int(t) for t in e.token_ids]})

    arrays, _ = store(profile).fetch_arrays(*keys.noise(target, cond.name, item.utt.utt_id, params["reducer"],
                                                       normalization),
                                            params, compute, identity={"token_ids": [int(t) for t in e.token_ids]})
    return reliability.ReferenceNoise(arrays["r_half_splits"], arrays["r_half_null"],
                                      tuple(np.asarray(m, dtype=np.float64) for m in arrays["null_maps"]))
