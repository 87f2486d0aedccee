"""The noise of one reference map, measured on its own perturbations: split-half reliability over
random splits, its permutation null, and the bootstrap over perturbations.

A SPES map keeps the score of every perturbation (:class:`~..explain.spes.SpesDesign`), so its noise
is measured without another forward pass: :func:`reference_noise` splits the perturbations into
random halves (balanced per level) and correlates the halves' maps after the comparison's reducer
and normalization; it permutes the scores across perturbations (masks and segmentation kept) for
the null of every statistic; and with ``method="bootstrap"`` it resamples the perturbations to
estimate the full-budget map's error variance directly (:func:`bootstrap_reliability`), without
the Spearman-Brown step that a nonlinear reducer breaks. :mod:`.reliability` turns these into
corrected correlations and disattenuated values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .correlate import NORMALIZERS, correlation, normalize
from .grids import reduce_to_encoder_grid
from .reliability import chance_corrected, clip_half, prepared, spearman_brown, split_half_reliability

__all__ = ["ReferenceNoise", "noise_draws", "RELIABILITY_METHODS", "half_equivalent", "bootstrap_weights",
           "BootstrapReliability", "bootstrap_reliability", "reference_noise"]


@dataclass(frozen=True)
class ReferenceNoise:
    """The noise of one stochastic reference map (one utterance), measured on its own perturbations.

    ``r_half_splits``: split-half reliability of ``n_splits`` random splits of the
    perturbations into two halves (balanced per level); ``r_half_null``: the same
    statistic with the per-perturbation scores permuted across perturbations (masks,
    segmentation and reducer kept: what the procedure gives on pure noise);
    ``null_maps``: the ``n_null`` permuted full maps on the comparison grid
    (``tokens x positions``, reduced, not normalized), for the null of rho(E, reference).
    """

    r_half_splits: np.ndarray
    r_half_null: np.ndarray
    null_maps: tuple[np.ndarray, ...]
    #: ``"spearman-brown"`` or ``"bootstrap"``. With ``"bootstrap"``, ``r_half_splits`` holds one
    #: value, :func:`half_equivalent` of the null-corrected bootstrap reliability, and
    #: ``r_half_null`` holds 0: every consumer that null-corrects and steps up
    #: (:attr:`reliability`, :func:`corrected_reliability`) then gets the bootstrap value back
    #: exactly; ``r_full`` / ``r_full_null`` are the raw bootstrap reliability and its null values,
    #: ``split_half`` / ``split_half_null`` the measured split-half values (for comparison).
    method: str = "spearman-brown"
    r_full: float = float("nan")
    r_full_null: np.ndarray = field(default_factory=lambda: np.zeros(0))
    split_half: np.ndarray = field(default_factory=lambda: np.zeros(0))
    split_half_null: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def r_half(self) -> float:
        return float(np.nanmean(self.r_half_splits)) if np.any(np.isfinite(self.r_half_splits)) else float("nan")

    @property
    def r_half_0(self) -> float:
        return float(np.nanmean(self.r_half_null)) if np.any(np.isfinite(self.r_half_null)) else float("nan")

    @property
    def r_half_corrected(self) -> float:
        """Null-corrected half reliability, clipped to [0, 1)."""
        return float(clip_half(chance_corrected(self.r_half, self.r_half_0)))

    @property
    def reliability(self) -> float:
        """Null-corrected full-map reliability: Spearman-Brown (k = 2) of :attr:`r_half_corrected`
        (with ``method="bootstrap"``: the null-corrected bootstrap value, see :attr:`method`)."""
        return float(spearman_brown(self.r_half_corrected, 2.0))

    def rho_null(self, explanation_map: np.ndarray, normalization: str = "token_z", method: str = "pearson") -> float:
        """Mean correlation of an explanation (``tokens x positions``) with the null maps."""
        e = normalize(np.asarray(explanation_map, dtype=np.float64), normalization)
        vals = [correlation(e, normalize(m, normalization), method) for m in self.null_maps]
        return float(np.nanmean(vals)) if np.any(np.isfinite(vals)) else float("nan")


def noise_draws(seed: int, n_splits: int, n_null: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeds of the random splits and of the score permutations of :func:`reference_noise`
    (and :func:`noise_moments`) for one map's ``seed``: ``(n_splits,), (n_null,)``."""
    ss = np.random.SeedSequence(int(seed)).generate_state(n_splits + n_null)
    return ss[:n_splits], ss[n_splits:]


#: how :func:`reference_noise` estimates a full-budget reliability
RELIABILITY_METHODS = ("spearman-brown", "bootstrap")


def half_equivalent(r_full: float | np.ndarray) -> float | np.ndarray:
    """Inverse Spearman-Brown (k = 2), ``r / (2 - r)``: the half-budget reliability whose
    step-up is ``r_full`` (so ``spearman_brown(half_equivalent(r), 2) == r``)."""
    r = np.asarray(r_full, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = r / (2.0 - r)
    return float(out) if out.ndim == 0 else out


def bootstrap_weights(levels: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """Bootstrap multiplicities of the perturbations, ``n_bootstrap x perturbations`` ints: within
    every level (``levels``: the level of each perturbation) as many draws with replacement as the
    level has perturbations, so each replicate keeps the run's budget per level."""
    lv = np.asarray(levels)
    if lv.ndim != 1 or lv.size == 0:
        raise ValueError(f"levels must be one level per perturbation, got shape {lv.shape}")
    if n_bootstrap < 2:
        raise ValueError(f"need at least 2 bootstrap replicates, got {n_bootstrap}")
    rng = np.random.default_rng(int(seed))
    out = np.zeros((int(n_bootstrap), lv.size), dtype=np.int64)
    for level in np.unique(lv):
        idx = np.flatnonzero(lv == level)
        draws = idx[rng.integers(0, idx.size, size=(int(n_bootstrap), idx.size))]
        for b in range(int(n_bootstrap)):
            out[b] += np.bincount(draws[b], minlength=lv.size)
    return out


@dataclass(frozen=True)
class BootstrapReliability:
    """What :func:`bootstrap_reliability` returns: ``reliability`` (the map's), ``per_token``
    (``1 - error_variance / total_variance`` per token, NaN for a constant token),
    ``error_variance`` (per token: the error variance of a cell of the full-budget map, averaged
    over the token's cells, calibrated), ``total_variance`` (per token: the variance over its cells
    of the full map), both on the prepared (reduced, normalized) map; ``calibration`` (the factor
    applied to the raw bootstrap variances, 1 without ``halves``), ``uncalibrated`` (the
    reliability with factor 1: the plain bootstrap); ``n_bootstrap`` replicates."""

    reliability: float
    per_token: np.ndarray
    error_variance: np.ndarray
    total_variance: np.ndarray
    calibration: float
    uncalibrated: float
    n_bootstrap: int


def bootstrap_reliability(resample: Any, levels: np.ndarray, n_bootstrap: int, seed: int, normalization: str,
                          reducer: str | None = None, factor: int = 2,
                          halves: Sequence[np.ndarray] = ()) -> BootstrapReliability:
    """Reliability of the FULL-budget map from a bootstrap over its perturbations (no Spearman-Brown).

    Parameters
    ----------
    resample : ``resample(weights) -> map``: the full map rebuilt with perturbation ``k``
        counted ``weights[k]`` times (``weights=None``: the run's map, every weight 1), e.g. a
        mean over perturbations of per-perturbation scores; maps ``tokens x ...``. A weight 0
        leaves a perturbation out, so ``weights = (split == 0)`` gives a half map.
    levels : the level of every perturbation (``SpesDesign.levels``); the bootstrap resamples
        within each level.
    n_bootstrap, seed : replicates (>= 2) and their seed (:func:`bootstrap_weights`).
    normalization, reducer, factor : exactly as in the comparison (:func:`prepared`): the reducer
        is applied to the full map and to every replicate, so its nonlinearity is in the estimate.
    halves : splits of the perturbations into two halves (``perturbations`` ints 0/1, balanced
        per level, e.g. ``SpesDesign.random_split``) to calibrate the bootstrap with (below);
        empty: the plain bootstrap.

    Estimator
    ---------
    Let ``x`` be the full map ``resample(None)`` reduced by ``reducer`` and normalized, and
    ``x*_b`` the replicate ``resample(w_b)`` for bootstrap multiplicities ``w_b``, ``b = 1..B``
    (perturbations drawn with replacement within each level, as many per level as the run has),
    reduced by ``reducer``, centred on its *own* mean (per token for ``token_z``, per map for
    ``map_z``: the correlation centres every map, so a shift common to all of a replicate's cells is
    not error; in SPES every cell is a mean over an overlapping share of the same perturbations, so
    that common shift is as large as a cell's own error) and scaled by the *full map's* spread (a
    replicate carries the sampling noise twice, the map's and the bootstrap's, so scaling it by its
    own spread would shrink the error it shows). Per token
    ``i`` with cells ``c = 1..C``:

    * raw error variance ``E*_i = (1/C) sum_c var_b(x*_{b,i,c})`` (ddof = 1 over replicates);
    * total variance ``V_i = var_c(x_{i,c})`` (ddof = 1) of the full map's cells;
    * calibration ``k`` (1 without ``halves``): for every split, the error variance of a
      half-budget map measured directly, ``mean_{i,c} (x^A - x^B)^2 / 2`` (the two halves are
      independent, so this is unbiased, the reducer's bias cancelling), over the same bootstrap
      run inside each half (each half resampled within its own levels), ``k = mean measured /
      mean bootstrapped``. Why: the bootstrap of a maximum is itself biased where the true
      values tie (it resamples around observed cells that the noise has already spread, so it
      overstates the spread of their maximum: on synthetic max-pooled maps the plain bootstrap
      is about 0.05 low); the bias is the same fraction at half and full budget where the noise
      sets the scale (exact ties) or the max is one cell (clear peaks), so the factor measured
      at half budget carries over;
    * error variance ``E_i = k E*_i``; ``per_token_i = 1 - E_i / V_i``.

    The map's reliability is ``1 - sum_i E_i / sum_i V_i``. With ``token_z`` every ``V_i`` is 1,
    so this is the plain mean of the per-token values, and it estimates the pooled Pearson
    correlation of the flattened normalized maps that :func:`split_half_reliability` and the
    comparison compute: for two independent full-budget maps ``X, X'`` of the same utterance,
    ``cov_c(X, X') = var_c(E[X_c])`` and ``var_c(X) = var_c(E[X_c]) + mean_c var(X_c)``, so their
    correlation is ``1 - mean_c var(X_c) / var_c(X)`` whatever the reducer does to the noise
    (its bias, being the same in both maps, counts as reliable variance). The budget scaling
    from half to full is the bootstrap's (``E*`` at full over ``E*`` at half), not the ``1/2``
    that Spearman-Brown assumes.

    Not corrected here: the value is raw, like one split-half correlation;
    :func:`reference_noise` null-corrects it (see there). Validated on synthetic max-pooled maps
    (tests/test_reliability.py, incl. a SPES-like design whose cells share perturbations) and on 6 real
    maps of whisper-tiny.en against repeats on other masks (within 0.04 of the map-repeat correlation:
    the ``core.config.Profile.reliability_method`` comment). Before the replicates were centred on
    their own mean it put those maps' reliability at 0.18-0.56 (SM_H) and below 0 (SM_X).
    """
    if normalization not in NORMALIZERS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {sorted(NORMALIZERS)}")
    lv = np.asarray(levels)
    raw = prepared(resample(None), reducer, "none", factor)
    n_tok = raw.shape[0]
    raw = raw.reshape(n_tok, -1)
    # the normalization as in the comparison: every map (the full one and each replicate) centred on its
    # own mean, as the correlation centres it (per token for token_z, per map for map_z: a shift common to
    # all of a replicate's cells is not error the comparison sees; every SPES cell is a mean over about
    # p_occlude of the same perturbations, so that common shift was as large as the cells' own error on
    # real maps, and a bootstrap that counted it put the reliability ~2x too far below 1), and scaled by
    # the full map's spread
    if normalization == "token_z":
        def centre(a: np.ndarray) -> np.ndarray:
            return a - a.mean(axis=1, keepdims=True)
        sd = raw.std(axis=1, ddof=1, keepdims=True) if raw.shape[1] > 1 else np.zeros((n_tok, 1))
    elif normalization == "map_z":
        def centre(a: np.ndarray) -> np.ndarray:
            return a - a.mean()
        sd = np.full((n_tok, 1), raw.std(ddof=1) if raw.size > 1 else 0.0)
    else:
        def centre(a: np.ndarray) -> np.ndarray:
            return a
        sd = np.ones((n_tok, 1))
    scale = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
    flat = centre(raw) * scale

    def on_scale(weights: np.ndarray) -> np.ndarray:
        x = prepared(resample(weights), reducer, "none", factor).reshape(n_tok, -1)
        if x.shape != flat.shape:
            raise ValueError(f"a replicate has shape {x.shape}, the full map {flat.shape}")
        return centre(x) * scale

    def boot_error(w: np.ndarray) -> np.ndarray:
        s1 = np.zeros_like(flat)
        s2 = np.zeros_like(flat)
        for row in w:
            x = on_scale(row)
            s1 += x
            s2 += x * x
        var_b = np.maximum(s2 - s1 * s1 / w.shape[0], 0.0) / (w.shape[0] - 1)
        return var_b.mean(axis=1)

    seeds = np.random.SeedSequence(int(seed)).generate_state(1 + 2 * len(halves))
    raw_err = boot_error(bootstrap_weights(lv, n_bootstrap, int(seeds[0])))
    k = 1.0
    if len(halves):
        measured, booted = [], []
        for j, h in enumerate(halves):
            h = np.asarray(h)
            if h.shape != lv.shape:
                raise ValueError(f"a split has shape {h.shape}, expected {lv.shape}")
            xa, xb = on_scale((h == 0).astype(np.int64)), on_scale((h == 1).astype(np.int64))
            measured.append(float(np.mean((xa - xb) ** 2) / 2.0))
            for half in (0, 1):
                idx = np.flatnonzero(h == half)
                w = np.zeros((int(n_bootstrap), lv.size), dtype=np.int64)
                w[:, idx] = bootstrap_weights(lv[idx], n_bootstrap, int(seeds[1 + 2 * j + half]))
                booted.append(float(np.mean(boot_error(w))))
        k = float(np.mean(measured) / np.mean(booted)) if np.mean(booted) > 0 else float("nan")
    tot = flat.var(axis=1, ddof=1) if flat.shape[1] > 1 else np.zeros(n_tok)
    err = k * raw_err
    with np.errstate(divide="ignore", invalid="ignore"):
        per_token = np.where(tot > 0, 1.0 - err / np.where(tot > 0, tot, 1.0), np.nan)
    den = float(tot.sum())
    rel = 1.0 - float(err.sum()) / den if den > 0 else float("nan")
    plain = 1.0 - float(raw_err.sum()) / den if den > 0 else float("nan")
    return BootstrapReliability(rel, per_token, err, tot, k, plain, int(n_bootstrap))


def reference_noise(resample: Any, split_of: Any, reducer: str | None, normalization: str,
                    n_splits: int = 8, n_null: int = 8, seed: int = 0, factor: int = 2,
                    method: str = "spearman-brown", weighted: Any = None,
                    n_bootstrap: int = 100, n_calibration: int = 2) -> ReferenceNoise:
    """Split-half reliability over random splits and its permutation null, for one SPES map.

    Parameters
    ----------
    resample : ``resample(halves=None, scores=None) -> (full, half_a, half_b)``, e.g.
        :meth:`~.explanations.Explanation.resample` (maps ``tokens x frames x mel`` or
        ``tokens x positions``).
    split_of : the run's :class:`~.spes.SpesDesign` (for ``random_split`` and ``permuted_scores``).
    reducer, normalization, factor : exactly as in the comparison.
    n_splits, n_null : random splits / score permutations.
    seed : seed of the splits and permutations (derive it per map).
    method : ``"spearman-brown"`` (the split halves, stepped up downstream) or ``"bootstrap"``.
    weighted : for ``"bootstrap"``: ``weighted(weights, scores=None) -> full map`` with
        perturbation ``k`` counted ``weights[k]`` times (``None``: all once), for the run's
        scores or permuted ones.
    n_bootstrap : bootstrap replicates per map (the run's and each null's).
    n_calibration : how many of the random splits calibrate the bootstrap (its ``halves``).

    With ``"bootstrap"`` the full-budget reliability is :func:`bootstrap_reliability` of the
    run's map (calibrated on the first ``n_calibration`` random splits), ``r``, and null-corrected with the same statistic on the ``n_null`` score
    permutations, ``r0`` (the mean of the clipped values): ``clip(chance_corrected(clip(r), r0))``
    (``clip``: to [0, 1), as :func:`clip_half`; ``1 - E / V`` can fall below -1 on noise).
    Why: permuted scores carry no information about the input, yet the map they give is not pure noise after the
    procedure (never-occluded cells are 0 in every replicate, and a max over windows holding
    more or smaller segments is systematically larger): that structure is as reproducible as
    the signal, so a bootstrap counts it as reliable, just as two split halves share it. The
    split-half path removes it from the half reliability before the step-up; here it is removed
    from the full-budget value, which needs no step-up. The result is stored as
    ``r_half_splits = [half_equivalent(corrected)]``, ``r_half_null = [0]`` (see
    :class:`ReferenceNoise`). Null maps (for the null of rho) are the same in both methods.

    No forward pass is run: maps are rebuilt from the stored per-perturbation scores.
    """
    if method not in RELIABILITY_METHODS:
        raise ValueError(f"unknown reliability method {method!r}; choose one of {list(RELIABILITY_METHODS)}")
    if n_splits < 1 or n_null < 1:
        raise ValueError(f"need at least one split and one permutation, got n_splits={n_splits}, n_null={n_null}")
    if method == "bootstrap" and weighted is None:
        raise ValueError("method='bootstrap' needs weighted(weights, scores=None) -> full map")
    split_seeds, null_seeds = noise_draws(seed, n_splits, n_null)
    splits, split_arrays = [], []
    for s in split_seeds:
        h = split_of.random_split(int(s))
        _, a, b = resample(halves=h)
        splits.append(split_half_reliability(a, b, reducer, normalization, factor))
        split_arrays.append(h)
    nulls, maps, null_scores = [], [], []
    for s in null_seeds:
        sc = split_of.permuted_scores(int(s))
        full, a, b = resample(scores=sc)
        nulls.append(split_half_reliability(a, b, reducer, normalization, factor))
        maps.append(reduce_to_encoder_grid(full, reducer, factor) if reducer else np.asarray(full, np.float64))
        null_scores.append(sc)
    splits_a = np.asarray(splits, dtype=np.float64)
    nulls_a = np.asarray(nulls, dtype=np.float64)
    if method == "spearman-brown":
        return ReferenceNoise(splits_a, nulls_a, tuple(maps))
    boot_seeds = np.random.SeedSequence([int(seed), 0xB007]).generate_state(1 + n_null)
    levels = np.asarray(split_of.levels)
    cal = split_arrays[: max(0, int(n_calibration))]
    r = bootstrap_reliability(lambda w: weighted(w), levels, n_bootstrap, int(boot_seeds[0]), normalization,
                              reducer, factor, halves=cal).reliability
    r0 = np.asarray([bootstrap_reliability(lambda w, sc=sc: weighted(w, scores=sc), levels, n_bootstrap, int(bs),
                                           normalization, reducer, factor, halves=cal).reliability
                     for sc, bs in zip(null_scores, boot_seeds[1:])], dtype=np.float64)
    # 1 - E / V is unbounded below (error variance above the map's variance: no reliable signal):
    # clipped to [0, 1) before the correction, as a reliability, so a very negative null cannot
    # turn a negative value positive
    r0_c = clip_half(r0)
    r0_mean = float(np.nanmean(r0_c)) if np.any(np.isfinite(r0_c)) else float("nan")
    corrected = float(clip_half(chance_corrected(clip_half(r), r0_mean)))
    return ReferenceNoise(np.asarray([half_equivalent(corrected)], dtype=np.float64), np.zeros(1), tuple(maps),
                          method="bootstrap", r_full=float(r), r_full_null=r0, split_half=splits_a,
                          split_half_null=nulls_a)
