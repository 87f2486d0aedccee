"""SPES saliency maps on the input spectrogram (SM_X) and on the encoder output (SM_H).

SPES (Fucci et al., arXiv 2411.01710; see ``shared/SPES.md``) explains every
generated token at once: it occludes random sets of units of the input, runs the
model on the perturbed input with the same forced output tokens, scores every
output position i by how much its next-token distribution moved, and gives every
input cell the mean score over the perturbations that occluded it.

The module has two layers.

* A generic engine, :class:`Spes`, built from a forward function
  ``f(batch) -> log-probs`` (``batch x tokens x vocab``) and independent of
  Whisper. It draws the masks, runs batches, scores them and accumulates the
  relevance per *segment* (``scores`` of shape ``batch x tokens`` times the
  occlusion ``batch x segments``, per level); segments are mapped to cells only at
  the end (a cell has exactly one segment per level, so its relevance is the sum
  over levels of the segment sums divided by the sum over levels of the segment
  counts). This is exact and costs next to nothing besides the forward passes.
* Whisper adapters, :class:`WhisperSpes`, :func:`spes_input`, :func:`spes_encoder`
  and :func:`saliency_for_set`, which build the units (multi-scale SLIC
  superpixels of the log-mel spectrogram; runs of encoder time positions), the
  forward functions and the per-utterance result files.

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
a float sets any other value. SM_H occludes with 0.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from . import cache

__all__ = [
    "SpesParams", "SaliencyResult", "SegmentStats", "SpesRun", "MaskSampler", "Spes",
    "WhisperSpes", "spes_input", "spes_encoder", "saliency_for_set",
    "level_segment_counts", "slic_levels", "encoder_units", "floor_value",
    "kl_scores", "prob_drop_scores",
]

#: A forward function: a batch of (perturbed) inputs ``batch x *input_shape`` ->
#: log-probabilities ``batch x tokens x vocab`` (any float dtype).
ForwardFn = Callable[[torch.Tensor], torch.Tensor]

SCORERS = ("kl", "prob_drop")
KINDS = ("input", "encoder")
DTYPES = ("float32", "bfloat16")
ATTN = ("auto", "eager", "sdpa")
#: attention implementation used for the perturbation passes when ``"auto"``
#: (measured by :mod:`crossattn_saliency.bench`: sdpa is faster on CPU and GPU)
AUTO_ATTN = "sdpa"
#: Whisper's log-mel input: mel bins x frames (30 s at a 10 ms hop)
WHISPER_MELS, WHISPER_FRAMES = 80, 3000


# --------------------------------------------------------------------------- parameters


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
        value, ``features.max() - 2.0`` for Whisper) or a float. SM_H always uses 0.
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
            if occ != "floor":
                raise bad("occlusion", "use 'floor' (Whisper's silence value) or a finite float")
        elif isinstance(occ, bool) or not isinstance(occ, (int, float, np.floating)) or not math.isfinite(occ):
            raise bad("occlusion", "use 'floor' (Whisper's silence value) or a finite float")
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


def floor_value(features: np.ndarray | torch.Tensor) -> float:
    """Whisper's silence/padding value of one utterance's features: ``max - 2.0``.

    The feature extractor clamps ``log10`` mel energies to ``max - 8`` and maps them
    with ``(x + 4) / 4``, so every cell at the clamp (silence, zero padding) equals
    ``features.max() - 2.0``.
    """
    return float(np.asarray(features, dtype=np.float32).max()) - 2.0


# --------------------------------------------------------------------------- scorers


def kl_scores(ref_logp: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """KL(P_i || Q_i) over the vocabulary, in float32.

    Parameters
    ----------
    ref_logp : ``tokens x vocab`` reference log-probabilities.
    logp : ``batch x tokens x vocab`` perturbed log-probabilities.

    Returns
    -------
    ``batch x tokens`` float32 (nats).
    """
    ref = ref_logp.float()
    return torch.einsum("iv,biv->bi", ref.exp(), ref[None] - logp.float())


def prob_drop_scores(ref_logp: torch.Tensor, logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Drop in probability of the emitted token, ``P_i(y_i) - Q_i(y_i)`` (``batch x tokens``)."""
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
    ``forward_s`` (time inside the forward function) and ``n_forward`` (calls).
    """

    stats: dict[int, SegmentStats]
    reference: torch.Tensor
    n_segments: list[int]
    timing: dict[str, float]

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

        def kl(logp: torch.Tensor) -> torch.Tensor:
            # sum_v P (log P - log Q): the difference first (exactly 0 where nothing moved), then a batched dot
            return torch.einsum("iv,biv->bi", p_ref, ref[None] - logp.float())

        return kl

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
        return SpesRun(stats=stats, reference=ref.cpu(), n_segments=n_segments, timing=timing)


# --------------------------------------------------------------------------- results


def _f16(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token scaled float16: ``x ~= q * scale[:, None, ...]`` (relative error ~5e-4 of the max)."""
    x = np.asarray(x, dtype=np.float32)
    scale = np.abs(x.reshape(x.shape[0], -1)).max(axis=1) if x.size else np.zeros(x.shape[0])
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = (x / scale.reshape((-1,) + (1,) * (x.ndim - 1))).astype(np.float16)
    return q, scale


def _unf16(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale.reshape((-1,) + (1,) * (q.ndim - 1)).astype(np.float32)


@dataclass
class SaliencyResult:
    """SPES maps of one utterance.

    Attributes
    ----------
    scores : full map, ``tokens x frames x mel`` (kind ``"input"``, speech frames
        only) or ``tokens x enc_frames`` (kind ``"encoder"``, speech positions only);
        the pooled estimate over all perturbations (float32).
    half_a, half_b : the maps of the even / odd perturbations (same shape).
    counts : times each cell was occluded, over all perturbations
        (``frames x mel`` or ``enc_frames``, int64).
    half_counts : the same per half, ``2 x ...``.
    n_perturbations : perturbations used.
    params : how the map was made (``SpesParams`` fields plus ``kind``, ``dtype``,
        ``snapshots``).
    kind : ``"input"`` (SM_X) or ``"encoder"`` (SM_H).
    snapshots : ``n -> (full, half_a, half_b)`` after the first ``n`` perturbations.
    token_ids, prompt_ids : the explained tokens and the decoder prompt.
    n_frames : speech frames of the input (10 ms each).
    occlusion_value : the value occluded cells took.
    n_segments : segments per level.
    utt_id : utterance id (optional).
    info : run details that do not change the map (batch size, device, timings).
    """

    scores: np.ndarray
    half_a: np.ndarray
    half_b: np.ndarray
    counts: np.ndarray
    half_counts: np.ndarray
    n_perturbations: int
    params: dict[str, Any]
    kind: str
    snapshots: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    token_ids: list[int] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)
    n_frames: int = 0
    occlusion_value: float = float("nan")
    n_segments: list[int] = field(default_factory=list)
    utt_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is invalid: choose one of {list(KINDS)}")
        want_ndim = 3 if self.kind == "input" else 2
        if self.scores.ndim != want_ndim:
            raise ValueError(f"{self.kind} maps must have {want_ndim} dims "
                             f"({'tokens x frames x mel' if want_ndim == 3 else 'tokens x enc_frames'}), "
                             f"got shape {self.scores.shape}")
        for name in ("half_a", "half_b"):
            if getattr(self, name).shape != self.scores.shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, scores {self.scores.shape}")
        if self.counts.shape != self.scores.shape[1:] or self.half_counts.shape != (2,) + self.scores.shape[1:]:
            raise ValueError(f"counts {self.counts.shape} / half_counts {self.half_counts.shape} do not match "
                             f"the map's cells {self.scores.shape[1:]}")
        for n, maps in self.snapshots.items():
            if len(maps) != 3 or any(m.shape != self.scores.shape for m in maps):
                raise ValueError(f"snapshot {n} must be (full, half_a, half_b) of shape {self.scores.shape}")

    @property
    def n_tokens(self) -> int:
        return int(self.scores.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` (atomically). Maps are stored as per-token scaled
        float16 (relative error about 5e-4 of each token's maximum); counts exactly."""
        arrays: dict[str, np.ndarray] = {"counts": self.counts.astype(np.int64),
                                         "half_counts": self.half_counts.astype(np.int64)}
        for name in ("scores", "half_a", "half_b"):
            arrays[name], arrays[name + "__scale"] = _f16(getattr(self, name))
        for n, maps in self.snapshots.items():
            for name, m in zip(("full", "half_a", "half_b"), maps):
                arrays[f"snap{n}_{name}"], arrays[f"snap{n}_{name}__scale"] = _f16(m)
        meta = {"format": "crossattn_saliency.SaliencyResult/1", "kind": self.kind, "params": self.params,
                "n_perturbations": int(self.n_perturbations), "snapshots": sorted(int(n) for n in self.snapshots),
                "token_ids": [int(t) for t in self.token_ids], "prompt_ids": [int(t) for t in self.prompt_ids],
                "n_frames": int(self.n_frames), "occlusion_value": float(self.occlusion_value),
                "n_segments": [int(n) for n in self.n_segments], "utt_id": self.utt_id, "info": self.info}
        return cache.write_npz(path, meta, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "SaliencyResult":
        """Read a file written by :meth:`save` (maps come back as float32)."""
        arrays, meta = cache.read_npz(path)
        if meta.get("format") != "crossattn_saliency.SaliencyResult/1":
            raise ValueError(f"{path} is not a saliency result file (format {meta.get('format')!r})")

        def m(name: str) -> np.ndarray:
            return _unf16(arrays[name], arrays[name + "__scale"])

        snaps = {int(n): (m(f"snap{n}_full"), m(f"snap{n}_half_a"), m(f"snap{n}_half_b"))
                 for n in meta["snapshots"]}
        return cls(scores=m("scores"), half_a=m("half_a"), half_b=m("half_b"), counts=arrays["counts"],
                   half_counts=arrays["half_counts"], n_perturbations=int(meta["n_perturbations"]),
                   params=meta["params"], kind=meta["kind"], snapshots=snaps, token_ids=meta["token_ids"],
                   prompt_ids=meta["prompt_ids"], n_frames=int(meta["n_frames"]),
                   occlusion_value=float(meta["occlusion_value"]), n_segments=meta["n_segments"],
                   utt_id=meta.get("utt_id"), info=meta.get("info", {}))


# --------------------------------------------------------------------------- Whisper adapters


def _torch_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is invalid: choose one of {list(DTYPES)}")
    return getattr(torch, dtype)


class WhisperSpes:
    """A Whisper model prepared for SPES: a private copy in the requested dtype,
    device and attention implementation (the caller's model is not touched).

    Parameters
    ----------
    model : a ``transformers`` ``WhisperForConditionalGeneration``.
    dtype : ``"float32"`` or ``"bfloat16"`` (scores are computed in float32 either way).
    device : torch device string.
    attn_implementation : ``"auto"`` (:data:`AUTO_ATTN`), ``"eager"`` or ``"sdpa"``;
        attention weights are not needed for the perturbation passes.
    """

    def __init__(self, model: Any, dtype: str = "bfloat16", device: str = "cpu",
                 attn_implementation: str = "auto") -> None:
        if attn_implementation not in ATTN:
            raise ValueError(f"attn_implementation={attn_implementation!r} is invalid: choose one of {list(ATTN)}")
        tdt = _torch_dtype(dtype)
        if not (hasattr(model, "model") and hasattr(model.model, "encoder") and hasattr(model, "proj_out")):
            raise TypeError(f"expected a transformers WhisperForConditionalGeneration, got {type(model).__name__}")
        attn = AUTO_ATTN if attn_implementation == "auto" else attn_implementation
        self.model = copy.deepcopy(model).to(device=device, dtype=tdt).eval()
        self.model.set_attn_implementation(attn)
        self.dtype, self.device, self.attn_implementation = dtype, str(device), attn
        self.torch_dtype = tdt

    # -- forward functions -------------------------------------------------------------------

    @staticmethod
    def decoder_inputs(prompt_ids: Sequence[int], token_ids: Sequence[int]) -> tuple[list[int], int]:
        """Decoder input ``prompt + tokens[:-1]`` and the first explained position
        ``len(prompt) - 1`` (the ``len(tokens)`` positions from there predict ``tokens``)."""
        prompt, toks = [int(t) for t in prompt_ids], [int(t) for t in token_ids]
        if not prompt:
            raise ValueError("prompt_ids is empty: pass the decoder prompt, e.g. [<|startoftranscript|>, ...]")
        if not toks:
            raise ValueError("token_ids is empty: pass the hypothesis to explain (ending with <|endoftext|>)")
        return prompt + toks[:-1], len(prompt) - 1

    def _decode(self, ids: torch.Tensor, start: int, hidden: torch.Tensor) -> torch.Tensor:
        out = self.model.model.decoder(input_ids=ids.expand(hidden.shape[0], -1), encoder_hidden_states=hidden,
                                       use_cache=False)
        logits = self.model.proj_out(out.last_hidden_state[:, start:])
        return torch.log_softmax(logits.float(), dim=-1)

    def input_forward(self, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> ForwardFn:
        """``features (batch x mel x frames) -> log-probs (batch x tokens x vocab)``, encoder + decoder."""
        ids, start = self.decoder_inputs(prompt_ids, token_ids)
        ids_t = torch.tensor([ids], dtype=torch.long, device=self.device)

        def f(features: torch.Tensor) -> torch.Tensor:
            hidden = self.model.model.encoder(features.to(self.torch_dtype)).last_hidden_state
            return self._decode(ids_t, start, hidden)

        return f

    def encoder_forward(self, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> ForwardFn:
        """``encoder output (batch x positions x d_model) -> log-probs (batch x tokens x vocab)``, decoder only."""
        ids, start = self.decoder_inputs(prompt_ids, token_ids)
        ids_t = torch.tensor([ids], dtype=torch.long, device=self.device)

        def f(hidden: torch.Tensor) -> torch.Tensor:
            return self._decode(ids_t, start, hidden.to(self.torch_dtype))

        return f

    def encode(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Encoder output ``positions x d_model`` (1500 x d for Whisper) of one ``mel x frames`` input."""
        with torch.inference_mode():
            x = self._features(features)[None].to(self.torch_dtype)
            return self.model.model.encoder(x).last_hidden_state[0]

    def _features(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(features, dtype=np.float32) if not torch.is_tensor(features)
                            else features.float())
        n_mel = self.model.config.num_mel_bins
        n_fr = 2 * self.model.config.max_source_positions
        if tuple(x.shape) != (n_mel, n_fr):
            raise ValueError(f"features must be mel x frames = ({n_mel}, {n_fr}) as Whisper's feature extractor "
                             f"gives (padded to 30 s), got {tuple(x.shape)}")
        return x.to(self.device)

    # -- SPES -----------------------------------------------------------------------------

    @staticmethod
    def _engine(forward_fn: ForwardFn, params: SpesParams) -> Spes:
        if not isinstance(params, SpesParams):
            raise TypeError(f"params must be a SpesParams, got {type(params).__name__}")
        return Spes(forward_fn, scorer=params.scorer, batch_size=params.batch_size)

    def _record(self, params: SpesParams, kind: str, snapshots: Sequence[int]) -> dict[str, Any]:
        return {**params.to_dict(), "kind": kind, "dtype": self.dtype, "snapshots": sorted(int(s) for s in snapshots)}

    def input(self, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
              token_ids: Sequence[int], params: SpesParams, snapshots: Sequence[int] = (),
              progress: bool = True) -> SaliencyResult:
        """SM_X; see :func:`spes_input`."""
        x = self._features(features)
        n_frames = int(n_frames)
        if not 1 <= n_frames <= x.shape[1]:
            raise ValueError(f"n_frames={n_frames} must lie in 1..{x.shape[1]} (speech frames of the input)")
        engine = self._engine(self.input_forward(prompt_ids, token_ids), params)
        spec = x[:, :n_frames].T.cpu().numpy()  # frames x mel
        levels = slic_levels(spec, params)
        grids = []
        for lab in levels:
            g = np.full(tuple(x.shape), -1, dtype=np.int64)
            g[:, :n_frames] = lab.T
            grids.append(g)
        occ = floor_value(x.cpu().numpy()) if params.occlusion == "floor" else float(params.occlusion)
        run = engine.attribute(x, grids, occlusion_value=occ, n_perturbations=params.n_perturbations,
                               p_occlude=params.p_occlude, seed=params.seed, snapshots=snapshots,
                               targets=list(token_ids), progress=progress, desc="SPES SM_X")
        return self._result(run, levels, params, "input", snapshots, token_ids, prompt_ids, n_frames, occ)

    def encoder(self, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
                token_ids: Sequence[int], params: SpesParams, snapshots: Sequence[int] = (),
                progress: bool = True) -> SaliencyResult:
        """SM_H; see :func:`spes_encoder`."""
        x = self._features(features)
        n_frames = int(n_frames)
        if not 1 <= n_frames <= x.shape[1]:
            raise ValueError(f"n_frames={n_frames} must lie in 1..{x.shape[1]} (speech frames of the input)")
        engine = self._engine(self.encoder_forward(prompt_ids, token_ids), params)
        hidden = self.encode(x)
        n_pos = min(math.ceil(n_frames / 2), hidden.shape[0])
        units = encoder_units(n_pos, params.run_length)
        grid = np.full((hidden.shape[0], 1), -1, dtype=np.int64)
        grid[:n_pos, 0] = units
        run = engine.attribute(hidden, [grid], occlusion_value=0.0, n_perturbations=params.n_perturbations,
                               p_occlude=params.p_occlude, seed=params.seed, snapshots=snapshots,
                               targets=list(token_ids), progress=progress, desc="SPES SM_H")
        return self._result(run, [units], params, "encoder", snapshots, token_ids, prompt_ids, n_frames, 0.0)

    def _result(self, run: SpesRun, labels: list[np.ndarray], params: SpesParams, kind: str,
                snapshots: Sequence[int], token_ids: Sequence[int], prompt_ids: Sequence[int],
                n_frames: int, occ: float) -> SaliencyResult:
        full, a, b, den = run.final.cell_maps(labels)
        snaps = {}
        for n in sorted({int(s) for s in snapshots}):
            f_, a_, b_, _ = run.stats[n].cell_maps(labels)
            snaps[n] = (f_, a_, b_)
        info = {"batch_size": params.batch_size, "device": self.device,
                "attn_implementation": self.attn_implementation, **{k: float(v) for k, v in run.timing.items()}}
        return SaliencyResult(scores=full, half_a=a, half_b=b, counts=den.sum(0), half_counts=den,
                              n_perturbations=params.n_perturbations,
                              params=self._record(params, kind, snapshots), kind=kind, snapshots=snaps,
                              token_ids=[int(t) for t in token_ids], prompt_ids=[int(t) for t in prompt_ids],
                              n_frames=n_frames, occlusion_value=float(occ), n_segments=list(run.n_segments),
                              info=info)


def _prepare(model: Any, dtype: str, device: str, attn_implementation: str) -> WhisperSpes:
    if isinstance(model, WhisperSpes):
        if model.dtype != dtype:
            raise ValueError(f"the prepared model runs in {model.dtype}, but dtype={dtype!r} was asked: "
                             "prepare another WhisperSpes or pass the raw model")
        return model
    return WhisperSpes(model, dtype=dtype, device=device, attn_implementation=attn_implementation)


def spes_input(model: Any, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
               token_ids: Sequence[int], params: SpesParams | None = None, dtype: str = "bfloat16",
               device: str = "cpu", snapshots: Sequence[int] = (), progress: bool = True,
               attn_implementation: str = "auto") -> SaliencyResult:
    """SPES saliency of one utterance's input spectrogram (SM_X).

    Parameters
    ----------
    model : ``WhisperForConditionalGeneration`` (copied, cast to ``dtype``, moved to
        ``device``) or a prepared :class:`WhisperSpes`.
    features : ``mel x frames`` = ``(80, 3000)`` log-mel features as Whisper's
        feature extractor gives them.
    n_frames : speech frames (the rest is padding and is never occluded).
    prompt_ids : decoder prompt (context, not explained).
    token_ids : the model's hypothesis, ending with ``<|endoftext|>`` (I tokens).
    params : :class:`SpesParams` (default: the study's settings).
    dtype, device : where and how the perturbation passes run.
    snapshots : also return the maps after the first ``n`` perturbations.
    progress : show a progress bar.

    Returns
    -------
    :class:`SaliencyResult` with maps ``tokens x frames x mel`` (``I x n_frames x 80``).
    """
    params = params or SpesParams()
    return _prepare(model, dtype, device, attn_implementation).input(
        features, n_frames, prompt_ids, token_ids, params, snapshots=snapshots, progress=progress)


def spes_encoder(model: Any, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
                 token_ids: Sequence[int], params: SpesParams | None = None, dtype: str = "bfloat16",
                 device: str = "cpu", snapshots: Sequence[int] = (), progress: bool = True,
                 attn_implementation: str = "auto") -> SaliencyResult:
    """SPES saliency of one utterance's encoder output (SM_H).

    The encoder runs once; its speech positions (``ceil(n_frames / 2)`` of 1500)
    are occluded (set to 0) singly or in runs of ``params.run_length``, and only
    the decoder runs per perturbation. Arguments as in :func:`spes_input`.

    Returns
    -------
    :class:`SaliencyResult` with maps ``tokens x enc_frames`` (``I x ceil(n_frames/2)``).
    """
    params = params or SpesParams()
    return _prepare(model, dtype, device, attn_implementation).encoder(
        features, n_frames, prompt_ids, token_ids, params, snapshots=snapshots, progress=progress)


def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        if name not in item:
            raise KeyError(f"item has no {name!r}; items need utt_id, features, n_frames, prompt_ids, token_ids")
        return item[name]
    if not hasattr(item, name):
        raise AttributeError(f"item has no {name!r}; items need utt_id, features, n_frames, prompt_ids, token_ids")
    return getattr(item, name)


def _same_params(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    ignore = {"batch_size"}  # does not change the maps
    return {k: v for k, v in stored.items() if k not in ignore} == {k: v for k, v in wanted.items() if k not in ignore}


def saliency_for_set(model: Any, items: Iterable[Any], out_dir: str | Path, params: SpesParams | None = None,
                     kind: str = "input", dtype: str = "bfloat16", device: str = "cpu",
                     snapshots: Sequence[int] = (), progress: bool = True,
                     attn_implementation: str = "auto") -> list[Path]:
    """SPES maps for many utterances, one file each, with resume.

    Parameters
    ----------
    model : ``WhisperForConditionalGeneration`` or a prepared :class:`WhisperSpes`
        (prepared once, and only if some utterance is not cached yet).
    items : objects or dicts with ``utt_id``, ``features`` (``mel x frames``),
        ``n_frames``, ``prompt_ids``, ``token_ids``.
    out_dir : folder of the ``<utt_id>.npz`` files (:class:`SaliencyResult`).
    params, kind, dtype, device, snapshots : as in :func:`spes_input`;
        ``kind`` is ``"input"`` (SM_X) or ``"encoder"`` (SM_H).

    Returns
    -------
    The file paths, in the order of ``items``. A file that exists with the same
    parameters (and tokens) is kept; one with different ones raises
    ``ValueError``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid: choose one of {list(KINDS)}")
    params = params or SpesParams()
    _torch_dtype(dtype)
    out_dir = Path(out_dir)
    wanted = {**params.to_dict(), "kind": kind, "dtype": dtype, "snapshots": sorted(int(s) for s in snapshots)}
    items = list(items)
    prepared: WhisperSpes | None = None
    paths = []
    for item in tqdm(items, desc=f"saliency ({kind})", unit="utt", disable=not progress):
        utt_id = str(_field(item, "utt_id"))
        if not utt_id or "/" in utt_id or utt_id.startswith("."):
            raise ValueError(f"utt_id {utt_id!r} cannot be a file name")
        path = out_dir / f"{utt_id}.npz"
        token_ids = [int(t) for t in _field(item, "token_ids")]
        if path.exists():
            _, meta = cache.read_npz(path)
            if not _same_params(meta.get("params", {}), wanted) or meta.get("token_ids") != token_ids:
                what = "parameters" if not _same_params(meta.get("params", {}), wanted) else "hypothesis tokens"
                raise ValueError(
                    f"{path} exists with different {what} (stored {meta.get('params')}, "
                    f"tokens {meta.get('token_ids')}; wanted {wanted}, tokens {token_ids}): use another "
                    "out_dir or delete the file")
            paths.append(path)
            continue
        if prepared is None:
            prepared = _prepare(model, dtype, device, attn_implementation)
        fn = prepared.input if kind == "input" else prepared.encoder
        res = fn(_field(item, "features"), int(_field(item, "n_frames")), _field(item, "prompt_ids"), token_ids,
                 params, snapshots=snapshots, progress=progress)
        res.utt_id = utt_id
        paths.append(res.save(path))
    return paths
