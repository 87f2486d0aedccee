"""The model-agnostic SPES engine: parameters, units, scorers, masks, accumulation.

SPES (Fucci et al., arXiv 2411.01710; see ``shared/SPES.md``) explains every
generated token at once: it occludes random sets of units of the input, runs the
model on the perturbed input with the same forced output tokens, scores every
output position i by how much its next-token distribution moved, and gives every
input cell the mean score over the perturbations that occluded it.

This module holds the engine, :class:`Spes`, built from a forward function
``f(batch) -> log-probs`` (``batch x tokens x vocab``) and independent of any
model: it draws the masks (:class:`MaskSampler`), runs batches, scores them
(:func:`kl_scores`, :func:`prob_drop_scores`) and accumulates the relevance per
*segment* (:class:`SegmentStats`; ``scores`` of shape ``batch x tokens`` times the
occlusion ``batch x segments``, per level); segments are mapped to cells only at
the end (a cell has exactly one segment per level, so its relevance is the sum
over levels of the segment sums divided by the sum over levels of the segment
counts). This is exact and costs next to nothing besides the forward passes.
It also holds the run settings (:class:`SpesParams`) and the units: multi-scale
SLIC superpixels of a spectrogram (:func:`slic_levels`) and runs of encoder
positions (:func:`encoder_units`), plus the silence value of Whisper-style
log-mel features (:func:`floor_value`).

The Whisper adapter lives in :mod:`.spes_whisper`, the result
type in :mod:`.spes_record`; the pipeline stores results
through :mod:`crossattn_saliency.store`.

Masks and reproducibility
-------------------------
Perturbation ``k`` (0-based) belongs to split half ``k % 2``; the two halves draw
their masks from independent streams (``np.random.SeedSequence(seed).spawn(2)``).
Within a half, its ``j``-th perturbation (``j = k // 2``) uses level
``j % n_levels`` and occludes each segment of that level independently with
probability ``p_occlude``. The mask of perturbation ``k`` therefore depends only on
``k`` and the seed: the same seed gives the same maps whatever the batch size,
and the map after the first ``n`` perturbations of a long run (a *snapshot*) is
exactly the map of a run with budget ``n``.

Occlusion value (SM_X)
----------------------
Whisper's features are not mean-normalised: the feature extractor computes
``log10`` mel energies, clamps them to ``max - 8`` and maps them with
``(x + 4) / 4``. Silence and the zero padding after the audio therefore all take
the utterance's floor value ``features.max() - 2.0``. The default occlusion
``"floor"`` uses that value (an occluded cell looks like silence to the model);
``"mean"`` the mean of the utterance's speech cells (an occluded cell keeps the
utterance's average energy), a float any other value (``0.0``: zero in Whisper's
normalised units); :func:`occlusion_value`. SM_H occludes with 0.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from ..core.progress import bar as tqdm

__all__ = [
    "ForwardFn", "SCORERS", "SpesParams", "SegmentStats", "SpesRun", "SpesDesign", "MaskSampler", "Spes",
    "level_segment_counts", "slic_levels", "encoder_units", "floor_value", "occlusion_value", "OCCLUSIONS",
    "kl_scores", "prob_drop_scores",
]

#: A forward function: a batch of (perturbed) inputs ``batch x *input_shape`` ->
#: log-probabilities ``batch x tokens x vocab`` (any float dtype).
ForwardFn = Callable[[torch.Tensor], torch.Tensor]

#: Scores of a perturbation per output position: ``"kl"`` (KL(P_i || Q_i) over the
#: vocabulary, :func:`kl_scores`) or ``"prob_drop"`` (:func:`prob_drop_scores`).
SCORERS = ("kl", "prob_drop")


# --------------------------------------------------------------------------- parameters


#: named SM_X occlusion values (:func:`occlusion_value`); any finite float is allowed too
OCCLUSIONS = ("floor", "mean")


@dataclass(frozen=True)
class SpesParams:
    """Settings of one SPES run (defaults: the study's configuration).

    Parameters
    ----------
    n_perturbations : perturbations per utterance (the study: 20,000), split
        evenly across the levels and across the two halves.
    levels : SM_X target segment counts of the SLIC levels for a ``frames_ref``-frame
        utterance (scaled by ``n_frames / frames_ref``; at least 1 per level).
    frames_ref : number of frames that the ``levels`` counts refer to.
    max_frames : utterances longer than this use the counts of a ``max_frames`` one.
    compactness, sigma : SLIC compactness and Gaussian pre-smoothing (in cells).
    p_occlude : probability that a segment is occluded in a perturbation.
    occlusion : SM_X occlusion value: ``"floor"`` (the utterance's silence/padding
        value, ``features.max() - 2.0`` for Whisper), ``"mean"`` (the mean of its speech
        cells) or a float. SM_H always uses 0.
    scorer : ``"kl"`` (KL(P_i || P_i^pert) over the vocabulary) or ``"prob_drop"``
        (probability of the emitted token before minus after).
    batch_size : perturbations per forward pass (does not change the results).
    seed : seed of the mask streams.
    run_length : SM_H unit: runs of this many adjacent encoder positions.
    """

    n_perturbations: int = 20000
    levels: tuple[int, ...] = (2000, 2500, 3000)
    frames_ref: int = 500
    max_frames: int = 750
    compactness: float = 0.1
    sigma: float = 1.0
    p_occlude: float = 0.5
    occlusion: str | float = "floor"
    scorer: str = "kl"
    batch_size: int = 16
    seed: int = 0
    run_length: int = 1

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"SpesParams.{name}={getattr(self, name)!r} is invalid: {allowed}")

        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        for name in ("n_perturbations", "frames_ref", "max_frames", "batch_size", "run_length"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "use an integer >= 1")
        if not is_int(self.seed) or self.seed < 0:
            raise bad("seed", "use an integer >= 0")
        levels = self.levels
        if isinstance(levels, (int, np.integer)) or not isinstance(levels, Sequence) or len(levels) == 0 \
                or not all(is_int(c) and c >= 1 for c in levels):
            raise bad("levels", "use a non-empty sequence of integers >= 1, e.g. (2000, 2500, 3000)")
        object.__setattr__(self, "levels", tuple(int(c) for c in levels))
        if not isinstance(self.compactness, (int, float)) or not self.compactness > 0:
            raise bad("compactness", "use a float > 0 (the study: 0.1)")
        if not isinstance(self.sigma, (int, float)) or not self.sigma >= 0:
            raise bad("sigma", "use a float >= 0 (the study: 1.0)")
        if not isinstance(self.p_occlude, (int, float)) or not 0 < self.p_occlude < 1:
            raise bad("p_occlude", "use a probability strictly between 0 and 1 (the study: 0.5)")
        occ = self.occlusion
        if isinstance(occ, str):
            if occ not in OCCLUSIONS:
                raise bad("occlusion", "use 'floor' (Whisper's silence value), 'mean' (the speech cells' mean) "
                                       "or a finite float")
        elif isinstance(occ, bool) or not isinstance(occ, (int, float, np.floating)) or not math.isfinite(occ):
            raise bad("occlusion", "use 'floor' (Whisper's silence value), 'mean' (the speech cells' mean) "
                                   "or a finite float")
        else:
            object.__setattr__(self, "occlusion", float(occ))
        if self.scorer not in SCORERS:
            raise bad("scorer", f"choose one of {list(SCORERS)}")
        for name in ("n_perturbations", "frames_ref", "max_frames", "batch_size", "run_length", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``levels`` as a list)."""
        d = dataclasses.asdict(self)
        d["levels"] = list(self.levels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpesParams":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown SpesParams field(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "SpesParams":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- units


def level_segment_counts(n_frames: int, params: SpesParams) -> list[int]:
    """SLIC target segment count of every level for an ``n_frames``-frame utterance.

    ``max(1, round(count * min(n_frames, max_frames) / frames_ref))`` per level.
    """
    eff = min(int(n_frames), params.max_frames)
    return [max(1, int(round(c * eff / params.frames_ref))) for c in params.levels]


def slic_levels(spectrogram: np.ndarray, params: SpesParams) -> list[np.ndarray]:
    """Multi-scale SLIC superpixels of one spectrogram.

    Parameters
    ----------
    spectrogram : ``frames x mel`` array (the speech part only).
    params : SLIC settings (``levels``, ``frames_ref``, ``max_frames``,
        ``compactness``, ``sigma``).

    Returns
    -------
    One ``frames x mel`` int64 label array per level, labels ``0 .. n_l - 1``
    (consecutive; ``n_l`` may differ from the target count, as SLIC's does).
    """
    from skimage.segmentation import slic

    spec = np.asarray(spectrogram, dtype=np.float64)
    if spec.ndim != 2 or spec.size == 0:
        raise ValueError(f"spectrogram must be a non-empty frames x mel array, got shape {spec.shape}")
    lo, hi = float(spec.min()), float(spec.max())
    img = (spec - lo) / (hi - lo) if hi > lo else np.zeros_like(spec)
    out = []
    for n in level_segment_counts(spec.shape[0], params):
        lab = slic(img, n_segments=n, compactness=params.compactness, sigma=params.sigma,
                   channel_axis=None, start_label=0)
        _, inv = np.unique(lab, return_inverse=True)
        out.append(inv.reshape(spec.shape).astype(np.int64))
    return out


def encoder_units(n_positions: int, run_length: int = 1) -> np.ndarray:
    """SM_H units: runs of ``run_length`` adjacent encoder positions.

    Returns an int64 array of length ``n_positions`` with labels
    ``position // run_length``.
    """
    if n_positions < 1 or run_length < 1:
        raise ValueError(f"need n_positions >= 1 and run_length >= 1, got {n_positions}, {run_length}")
    return np.arange(n_positions, dtype=np.int64) // int(run_length)


def occlusion_value(features: np.ndarray, n_frames: int, occlusion: str | float) -> float:
    """The value SM_X writes into occluded cells of one utterance (``features``: ``mel x frames``,
    the first ``n_frames`` of them speech): :func:`floor_value` for ``"floor"``, the mean of the
    speech cells for ``"mean"``, else the float given."""
    if occlusion == "floor":
        return floor_value(features)
    if occlusion == "mean":
        return float(np.asarray(features, dtype=np.float64)[:, :n_frames].mean())
    if isinstance(occlusion, str):
        raise ValueError(f"occlusion={occlusion!r} is invalid: use one of {list(OCCLUSIONS)} or a float")
    return float(occlusion)


def floor_value(features: np.ndarray | torch.Tensor) -> float:
    """Whisper's silence/padding value of one utterance's features: ``max - 2.0``.

    The feature extractor clamps ``log10`` mel energies to ``max - 8`` and maps them
    with ``(x + 4) / 4``, so every cell at the clamp (silence, zero padding) equals
    ``features.max() - 2.0``.
    """
    return float(np.asarray(features, dtype=np.float32).max()) - 2.0


# --------------------------------------------------------------------------- scorers


def kl_scores(ref_logp: torch.Tensor, logp: torch.Tensor, ref_prob: torch.Tensor | None = None) -> torch.Tensor:
    """KL(P_i || Q_i) over the vocabulary, in float32: the SPES ``"kl"`` score.

    ``sum_v P (log P - log Q)``: the difference first (exactly 0 where nothing
    moved), then a batched dot product.

    Parameters
    ----------
    ref_logp : ``tokens x vocab`` reference log-probabilities.
    logp : ``batch x tokens x vocab`` perturbed log-probabilities.
    ref_prob : ``ref_logp.float().exp()`` when the caller already has it (the
        engine computes it once per run instead of once per batch).

    Returns
    -------
    ``batch x tokens`` float32 (nats).
    """
    ref = ref_logp.float()
    p_ref = ref.exp() if ref_prob is None else ref_prob
    return torch.einsum("iv,biv->bi", p_ref, ref[None] - logp.float())


def prob_drop_scores(ref_logp: torch.Tensor, logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Drop in probability of the emitted token, ``P_i(y_i) - Q_i(y_i)``: the SPES ``"prob_drop"`` score.

    Parameters
    ----------
    ref_logp : ``tokens x vocab`` reference log-probabilities.
    logp : ``batch x tokens x vocab`` perturbed log-probabilities.
    targets : ``tokens`` emitted token ids ``y_i``.

    Returns
    -------
    ``batch x tokens`` float32 (probability, -1 .. 1).
    """
    idx = targets.to(logp.device).long()
    p_ref = ref_logp.float().gather(-1, idx[:, None])[:, 0].exp()
    p = logp.float().gather(-1, idx[None, :, None].expand(logp.shape[0], -1, 1))[..., 0].exp()
    return p_ref[None, :] - p


# --------------------------------------------------------------------------- masks


class MaskSampler:
    """Draws the occlusion masks of perturbations ``0, 1, 2, ...`` in order.

    Perturbation ``k`` belongs to half ``k % 2``; half ``h`` draws from
    ``np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[h])``; its
    ``j``-th perturbation (``j = k // 2``) uses level ``j % n_levels`` and
    occludes each segment with probability ``p``
    (``rng.random(n_segments[level]) < p``).

    Parameters
    ----------
    n_segments : number of segments of every level.
    p : occlusion probability.
    seed : seed of the two streams.
    """

    def __init__(self, n_segments: Sequence[int], p: float, seed: int) -> None:
        self.n_segments = [int(n) for n in n_segments]
        self.p = float(p)
        self._rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2)]
        self.position = 0

    def draw(self, count: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The next ``count`` perturbations.

        Returns
        -------
        halves : ``count`` ints (0 or 1).
        levels : ``count`` ints (level index).
        masks : ``count`` bool arrays, each ``n_segments[level]`` long (True = occluded).
        """
        ks = np.arange(self.position, self.position + count)
        halves = ks % 2
        levels = (ks // 2) % len(self.n_segments)
        masks = [self._rngs[h].random(self.n_segments[lv]) < self.p for h, lv in zip(halves, levels)]
        self.position += count
        return halves, levels, masks


# --------------------------------------------------------------------------- accumulation


@dataclass
class SegmentStats:
    """Per-segment sums after the first ``n`` perturbations, per half.

    ``sums[l]`` is ``2 x tokens x n_segments[l]`` (float64): per half, the sum of
    the scores of the perturbations of level ``l`` that occluded the segment;
    ``counts[l]`` is ``2 x n_segments[l]`` (int64): how many did.
    """

    n: int
    sums: list[np.ndarray]
    counts: list[np.ndarray]

    def copy(self) -> "SegmentStats":
        """A deep copy (the arrays are copied)."""
        return SegmentStats(self.n, [s.copy() for s in self.sums], [c.copy() for c in self.counts])

    def cell_maps(self, labels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Map segments to cells.

        Parameters
        ----------
        labels : one label array per level, all of the same cell shape ``C``
            (e.g. ``frames x mel``); label ``-1`` marks a cell that is never occluded.

        Returns
        -------
        full, half_a, half_b : ``tokens x C`` float32 relevance (0 where a cell was
            never occluded).
        counts : ``2 x C`` int64, times each cell was occluded in half a / half b.
        """
        if len(labels) != len(self.sums):
            raise ValueError(f"need {len(self.sums)} label arrays (one per level), got {len(labels)}")
        shape = np.shape(labels[0])
        n_tok = self.sums[0].shape[1]
        num = np.zeros((2, n_tok) + shape, dtype=np.float64)
        den = np.zeros((2,) + shape, dtype=np.int64)
        for lab, s, c in zip(labels, self.sums, self.counts):
            lab = np.asarray(lab)
            if lab.shape != shape:
                raise ValueError(f"label arrays differ in shape: {lab.shape} vs {shape}")
            # label -1 -> an appended empty segment
            s_ext = np.concatenate([s, np.zeros(s.shape[:2] + (1,))], axis=2)
            c_ext = np.concatenate([c, np.zeros((2, 1), dtype=np.int64)], axis=1)
            num += s_ext[:, :, lab]
            den += c_ext[:, lab]
        with np.errstate(invalid="ignore", divide="ignore"):
            halves = np.where(den[:, None] > 0, num / np.maximum(den[:, None], 1), 0.0)
            tot = den.sum(0)
            full = np.where(tot[None] > 0, num.sum(0) / np.maximum(tot[None], 1), 0.0)
        return full.astype(np.float32), halves[0].astype(np.float32), halves[1].astype(np.float32), den


@dataclass
class SpesRun:
    """What :meth:`Spes.attribute` returns.

    ``stats`` maps a number of perturbations (the snapshots and the total) to the
    :class:`SegmentStats` after that many; ``reference`` is the unperturbed
    ``tokens x vocab`` log-probabilities (float32, CPU); ``timing`` holds
    ``setup_s`` (reference pass), ``loop_s`` (all perturbation batches),
    ``forward_s`` (time inside the forward function) and ``n_forward`` (calls);
    ``scores`` is the score of every perturbation, ``perturbations x tokens`` (float64,
    in the order of :class:`MaskSampler`), from which :class:`SpesDesign` rebuilds the
    maps for any split of the perturbations or any permutation of the scores.
    """

    stats: dict[int, SegmentStats]
    reference: torch.Tensor
    n_segments: list[int]
    timing: dict[str, float]
    scores: np.ndarray | None = None

    @property
    def final(self) -> SegmentStats:
        return self.stats[max(self.stats)]


def _bounding_box(grids: Sequence[np.ndarray]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the label grid and of the input around all cells with label >= 0."""
    valid = np.zeros(grids[0].shape, dtype=bool)
    for g in grids:
        valid |= g >= 0
    lab_sl, in_sl = [], []
    for ax, size in enumerate(valid.shape):
        idx = np.flatnonzero(valid.any(axis=tuple(a for a in range(valid.ndim) if a != ax)))
        sl = slice(int(idx[0]), int(idx[-1]) + 1)
        lab_sl.append(sl)
        in_sl.append(slice(None) if size == 1 else sl)
    return tuple(lab_sl), tuple(in_sl)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg
                                              or "not enough memory" in msg)


class Spes:
    """SPES engine built from a forward function (Captum-like).

    Parameters
    ----------
    forward_fn : ``f(batch) -> log-probs``: takes ``batch x *input_shape`` inputs and
        returns ``batch x tokens x vocab`` log-probabilities (any float dtype; scores
        are computed in float32).
    scorer : ``"kl"`` or ``"prob_drop"``.
    batch_size : perturbations per forward call.

    Examples
    --------
    >>> engine = Spes(f, scorer="kl", batch_size=16)          # doctest: +SKIP
    >>> run = engine.attribute(x, [labels], occlusion_value=0.0, n_perturbations=1000)
    >>> full, a, b, counts = run.final.cell_maps([labels])
    """

    def __init__(self, forward_fn: ForwardFn, scorer: str = "kl", batch_size: int = 16) -> None:
        if scorer not in SCORERS:
            raise ValueError(f"scorer={scorer!r} is invalid: choose one of {list(SCORERS)}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: use an integer >= 1")
        self.forward_fn = forward_fn
        self.scorer = scorer
        self.batch_size = int(batch_size)

    def _scorer(self, ref: torch.Tensor, targets: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """``logp (batch x tokens x vocab) -> scores (batch x tokens)`` against ``ref`` (float32)."""
        if self.scorer == "prob_drop":
            return lambda logp: prob_drop_scores(ref, logp, targets)
        p_ref = ref.exp()
        return lambda logp: kl_scores(ref, logp, ref_prob=p_ref)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        try:
            with torch.inference_mode():
                return self.forward_fn(batch)
        except Exception as exc:  # noqa: BLE001 - re-raised with context below
            if _is_oom(exc):
                raise MemoryError(
                    f"out of memory running a batch of {batch.shape[0]} perturbations "
                    f"(batch_size={self.batch_size}) on {batch.device}: use a smaller batch size, "
                    f"e.g. batch_size={max(1, self.batch_size // 2)}") from exc
            raise

    def attribute(self, inputs: torch.Tensor, levels: Sequence[np.ndarray], *, occlusion_value: float,
                  n_perturbations: int, p_occlude: float = 0.5, seed: int = 0,
                  snapshots: Iterable[int] = (), targets: Sequence[int] | torch.Tensor | None = None,
                  progress: bool = True, desc: str = "SPES") -> SpesRun:
        """Run SPES on one input.

        Parameters
        ----------
        inputs : the unperturbed input, shape ``S`` (no batch dimension).
        levels : one int label array per level, shape ``G`` with ``len(G) == len(S)``
            and ``G`` broadcastable to ``S`` (e.g. ``G = (positions, 1)`` occludes
            whole rows of ``S = (positions, dim)``). Labels ``0 .. n_l - 1`` name the
            segments; ``-1`` marks cells that are never occluded (padding).
        occlusion_value : value of occluded cells.
        n_perturbations : total number of perturbations.
        p_occlude : probability that a segment is occluded.
        seed : seed of the mask streams (see :class:`MaskSampler`).
        snapshots : numbers of perturbations after which the statistics are kept
            too (each ``<= n_perturbations``); no extra forward passes.
        targets : ``tokens`` emitted token ids (needed by ``"prob_drop"``).
        progress : show a progress bar (perturbations per second).

        Returns
        -------
        :class:`SpesRun`.
        """
        if not isinstance(n_perturbations, (int, np.integer)) or n_perturbations < 1:
            raise ValueError(f"n_perturbations={n_perturbations!r} is invalid: use an integer >= 1")
        snaps = sorted({int(s) for s in snapshots})
        if snaps and (snaps[0] < 1 or snaps[-1] > n_perturbations):
            raise ValueError(f"snapshots {snaps} must lie in 1..n_perturbations={n_perturbations}")
        if self.scorer == "prob_drop" and targets is None:
            raise ValueError("scorer 'prob_drop' needs the emitted token ids: pass targets=token_ids")
        if not levels:
            raise ValueError("levels is empty: pass at least one label array")
        device = inputs.device
        n_segments, grids = [], []
        for lab in levels:
            lab = np.asarray(lab)
            if lab.ndim != inputs.ndim or any(g not in (1, s) for g, s in zip(lab.shape, inputs.shape)):
                raise ValueError(f"label array of shape {lab.shape} does not broadcast to the input "
                                 f"shape {tuple(inputs.shape)} (same number of dimensions, each 1 or equal)")
            if grids and lab.shape != grids[0].shape:
                raise ValueError(f"label arrays differ in shape: {lab.shape} vs {grids[0].shape}")
            if lab.min() < -1:
                raise ValueError("labels must be >= -1 (-1 = never occluded)")
            n_seg = int(lab.max()) + 1
            if n_seg < 1:
                raise ValueError("a level has no segment (all labels are -1): nothing to occlude")
            n_segments.append(n_seg)
            grids.append(lab)
        # only the bounding box of the occludable cells is gathered and rewritten
        lab_sl, in_sl = _bounding_box(grids)
        # label -1 -> index n_seg, an appended never-occluded column
        labs_t = [torch.as_tensor(np.where(g[lab_sl] < 0, n, g[lab_sl]), dtype=torch.long, device=device)
                  for g, n in zip(grids, n_segments)]
        tgt = None if targets is None else torch.as_tensor(np.asarray(targets), dtype=torch.long)

        t0 = time.perf_counter()
        ref = self._forward(inputs[None])[0].float()
        n_tok = ref.shape[0]
        if tgt is not None and tgt.shape[0] != n_tok:
            raise ValueError(f"targets has {tgt.shape[0]} tokens but the forward function returns {n_tok}")
        score = self._scorer(ref, tgt)
        timing = {"setup_s": time.perf_counter() - t0, "forward_s": 0.0, "n_forward": 1}
        sums = [np.zeros((2, n_tok, n), dtype=np.float64) for n in n_segments]
        counts = [np.zeros((2, n), dtype=np.int64) for n in n_segments]
        sampler = MaskSampler(n_segments, p_occlude, seed)
        value = torch.tensor(float(occlusion_value), dtype=inputs.dtype, device=device)
        region = inputs[in_sl][None]
        stats: dict[int, SegmentStats] = {}
        bounds = sorted(set(snaps) | {int(n_perturbations)})

        t_loop = time.perf_counter()
        bar = tqdm(total=int(n_perturbations), desc=desc, unit="pert", disable=not progress, leave=False)
        done = 0
        per_perturbation: list[np.ndarray] = []
        try:
            for bound in bounds:
                while done < bound:
                    size = min(self.batch_size, bound - done)
                    halves, lvls, masks = sampler.draw(size)
                    cell = torch.empty((size,) + tuple(labs_t[0].shape), dtype=torch.bool, device=device)
                    groups = []
                    for lv in np.unique(lvls):
                        sel = np.flatnonzero(lvls == lv)
                        occ = np.zeros((len(sel), n_segments[lv] + 1), dtype=bool)
                        occ[:, :-1] = np.stack([masks[i] for i in sel])
                        groups.append((lv, sel, occ[:, :-1]))
                        cell[torch.as_tensor(sel, device=device)] = torch.from_numpy(occ).to(device)[:, labs_t[lv]]
                    batch = inputs[None].expand((size,) + tuple(inputs.shape)).clone()
                    batch[(slice(None),) + in_sl] = torch.where(cell, value, region)
                    tf = time.perf_counter()
                    logp = self._forward(batch)
                    timing["forward_s"] += time.perf_counter() - tf
                    timing["n_forward"] += 1
                    sc = score(logp).double().cpu().numpy()  # batch x tokens
                    per_perturbation.append(sc)
                    for lv, sel, occ in groups:
                        for h in (0, 1):
                            keep = halves[sel] == h
                            if keep.any():
                                o = occ[keep].astype(np.float64)
                                # einsum, not BLAS: tiny products, exact same order for any batch split
                                sums[lv][h] += np.einsum("bi,bs->is", sc[sel[keep]], o)
                                counts[lv][h] += occ[keep].sum(0)
                    done += size
                    bar.update(size)
                stats[bound] = SegmentStats(bound, [s.copy() for s in sums], [c.copy() for c in counts])
        finally:
            bar.close()
        timing["loop_s"] = time.perf_counter() - t_loop
        return SpesRun(stats=stats, reference=ref.cpu(), n_segments=n_segments, timing=timing,
                       scores=np.concatenate(per_perturbation, axis=0))


# --------------------------------------------------------------------------- resampling


@dataclass
class SpesDesign:
    """A finished SPES run as data: the score of every perturbation and how to redraw its masks.

    Because the mask of perturbation ``k`` depends only on ``k`` and the seed
    (:class:`MaskSampler`), the per-perturbation ``scores`` (``perturbations x tokens``)
    are all it takes to rebuild the maps for *any* assignment of perturbations to two
    halves (random splits, for reliability from more than one split) or for scores
    permuted across perturbations with the masks kept (a null: what the procedure,
    including a shared segmentation and a pooling step, gives when the scores carry
    no information about the input). No forward pass is needed.

    Attributes
    ----------
    scores : ``perturbations x tokens`` float64.
    n_segments : segments per level.
    p_occlude, seed : as in the run.
    labels : one label array per level over the map's cells (``frames x mel`` for SM_X,
        ``positions`` for SM_H); ``-1`` = never occluded.
    """

    scores: np.ndarray
    n_segments: list[int]
    p_occlude: float
    seed: int
    labels: list[np.ndarray]

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.ndim != 2:
            raise ValueError(f"scores must be perturbations x tokens, got shape {self.scores.shape}")
        if len(self.labels) != len(self.n_segments):
            raise ValueError(f"{len(self.labels)} label arrays for {len(self.n_segments)} levels")
        halves, levels, masks = MaskSampler(self.n_segments, self.p_occlude, self.seed).draw(self.n_perturbations)
        self.halves = halves.astype(np.int8)
        self.levels = levels
        self._masks = [np.stack([masks[i] for i in np.flatnonzero(levels == lv)]) if np.any(levels == lv)
                       else np.zeros((0, n), dtype=bool) for lv, n in enumerate(self.n_segments)]

    @property
    def n_perturbations(self) -> int:
        return int(self.scores.shape[0])

    def stats(self, halves: np.ndarray | None = None, scores: np.ndarray | None = None) -> SegmentStats:
        """Per-segment sums for a split (``halves``: ``perturbations`` ints 0/1; default:
        the run's alternating split) and ``scores`` (default: the run's)."""
        h = self.halves if halves is None else np.asarray(halves)
        sc = self.scores if scores is None else np.asarray(scores, dtype=np.float64)
        if h.shape != (self.n_perturbations,) or sc.shape != self.scores.shape:
            raise ValueError(f"halves {h.shape} / scores {sc.shape} do not match {self.n_perturbations} "
                             f"perturbations x {self.scores.shape[1]} tokens")
        sums, counts = [], []
        for lv, m in enumerate(self._masks):
            idx = np.flatnonzero(self.levels == lv)
            s = np.zeros((2, sc.shape[1], m.shape[1]))
            c = np.zeros((2, m.shape[1]), dtype=np.int64)
            for half in (0, 1):
                keep = h[idx] == half
                o = m[keep].astype(np.float64)
                s[half] = sc[idx[keep]].T @ o
                c[half] = m[keep].sum(0)
            sums.append(s)
            counts.append(c)
        return SegmentStats(self.n_perturbations, sums, counts)

    def cell_maps(self, halves: np.ndarray | None = None,
                  scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(full, half_a, half_b)`` maps, ``tokens x cells``, for a split and scores (see :meth:`stats`)."""
        full, a, b, _ = self.stats(halves, scores).cell_maps(self.labels)
        return full, a, b

    def first(self, n: int) -> "SpesDesign":
        """The same run stopped after its first ``n`` perturbations (what a budget of ``n`` with the
        same seed would have given: the mask of perturbation ``k`` depends only on ``k`` and the seed)."""
        if not 1 <= int(n) <= self.n_perturbations:
            raise ValueError(f"first({n}): a budget in 1..{self.n_perturbations} perturbations")
        return SpesDesign(self.scores[: int(n)], list(self.n_segments), self.p_occlude, self.seed, self.labels)

    def random_split(self, seed: int) -> np.ndarray:
        """A random split into two halves, balanced within every level (``perturbations`` ints 0/1)."""
        rng = np.random.default_rng(seed)
        out = np.empty(self.n_perturbations, dtype=np.int8)
        for lv in range(len(self.n_segments)):
            idx = np.flatnonzero(self.levels == lv)
            out[idx] = rng.permutation(np.arange(idx.size) % 2)
        return out

    def permuted_scores(self, seed: int) -> np.ndarray:
        """The scores shuffled across perturbations of the same level (whole rows: a
        perturbation keeps its tokens' scores together); masks stay where they were."""
        rng = np.random.default_rng(seed)
        out = self.scores.copy()
        for lv in range(len(self.n_segments)):
            idx = np.flatnonzero(self.levels == lv)
            out[idx] = self.scores[rng.permutation(idx)]
        return out
