"""The record of one SPES run: what determines its maps, stored; the maps themselves, replayed.

:class:`SaliencyResult` is what :mod:`.spes_whisper` returns: the maps of one utterance
(``tokens x frames x mel`` for SM_X, ``tokens x positions`` for SM_H), their split halves,
counts, snapshots and the run as a design (the score of every perturbation and the units it
occluded). What the result store keeps of it is the *record* (:meth:`SaliencyResult.save`,
format :data:`FORMAT`): the per-perturbation scores (``perturbations x tokens``, float16 relative
to each token's largest score, with that scale), the
run's settings and seed, the segment counts and a checksum of the units, and no map. Because
the mask of perturbation ``k`` depends only on ``k`` and the seed, the maps are rebuilt exactly
from it (:meth:`SaliencyRecord.replay`): the units are made again from the utterance's features
(SLIC superpixels for SM_X, runs of encoder positions for SM_H), checked against the stored
checksum (:class:`ReplayMismatch` names the cause where they differ: another scikit-image,
other audio), and every map, half, count and snapshot is accumulated from the scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import files

__all__ = ["SaliencyResult", "SaliencyRecord", "ReplayMismatch", "KINDS", "FORMAT", "labels_checksum", "stored_scores"]

#: Map kinds: ``"input"`` (SM_X, on the log-mel input) and ``"encoder"`` (SM_H, on
#: the encoder output).
KINDS = ("input", "encoder")
#: Format tag stored in every result file's metadata.
FORMAT = "crossattn_saliency.SaliencyRecord/2"


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
    perturbation_scores : the score of every perturbation, ``perturbations x tokens``
        (float32), or None (results written before they were kept).
    labels : the units of every level over the map's cells (``frames x mel`` SLIC labels
        for SM_X, ``enc_frames`` units for SM_H), or None. With ``perturbation_scores``
        they make :meth:`design` (maps for any split or permuted scores, no forward pass).
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
    perturbation_scores: np.ndarray | None = None
    labels: list[np.ndarray] | None = None

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

        if self.perturbation_scores is not None:
            ps = np.asarray(self.perturbation_scores)
            if ps.shape != (self.n_perturbations, self.n_tokens):
                raise ValueError(f"perturbation_scores has shape {ps.shape}, want perturbations x tokens = "
                                 f"({self.n_perturbations}, {self.n_tokens})")
        if self.labels is not None and any(np.shape(l) != self.scores.shape[1:] for l in self.labels):
            raise ValueError(f"labels {[np.shape(l) for l in self.labels]} do not match the map's cells "
                             f"{self.scores.shape[1:]}")

    @property
    def n_tokens(self) -> int:
        return int(self.scores.shape[0])

    @property
    def has_design(self) -> bool:
        """True when the per-perturbation scores and labels were kept (see :meth:`design`)."""
        return self.perturbation_scores is not None and self.labels is not None

    def design(self) -> Any:
        """The run as a :class:`~.spes.SpesDesign` (maps for any split or permuted scores)."""
        from .spes import SpesDesign

        if not self.has_design:
            raise ValueError("this saliency result kept no per-perturbation scores (it was written by an older "
                             "version): recompute it to resample its perturbations")
        return SpesDesign(self.perturbation_scores, list(self.n_segments), float(self.params["p_occlude"]),
                          int(self.params["seed"]), list(self.labels))

    def save(self, path: str | Path) -> Path:
        """Write the run's record (format :data:`FORMAT`, atomically): per-perturbation scores as
        float16 per token scale, the units' checksum, settings and metadata; no map (:meth:`SaliencyRecord.replay`
        rebuilds them)."""
        if not self.has_design:
            raise ValueError("this saliency result has no per-perturbation scores and units: it cannot be stored")
        meta = {"format": FORMAT, "kind": self.kind, "params": self.params, "n_perturbations": int(self.n_perturbations),
                "snapshots": sorted(int(n) for n in self.snapshots), "token_ids": [int(t) for t in self.token_ids],
                "prompt_ids": [int(t) for t in self.prompt_ids], "n_frames": int(self.n_frames),
                "occlusion_value": float(self.occlusion_value), "n_segments": [int(n) for n in self.n_segments],
                "utt_id": self.utt_id, "info": self.info, "units": {
                    "checksum": labels_checksum(self.labels), "shape": list(np.shape(self.labels[0])),
                    "made_by": _units_maker(self.kind)}}
        scaled, scale = _to_float16(self.perturbation_scores)
        return files.write_npz(path, meta, perturbation_scores=scaled, token_scale=scale)

    @classmethod
    def load(cls, path: str | Path) -> "SaliencyRecord":
        """The record of a file written by :meth:`save` (:meth:`SaliencyRecord.replay` gives the maps)."""
        return SaliencyRecord.load(path)


def _to_float16(scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """``perturbations x tokens`` scores as float16 relative to each token's largest magnitude
    (float32 ``tokens``): about 3 significant digits for every score, even the smallest KL values
    (plain float16 has none below 6e-5)."""
    x = np.asarray(scores, dtype=np.float64)
    scale = np.abs(x).max(axis=0) if len(x) else np.ones(x.shape[1])
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return (x / scale).astype(np.float16), scale


def stored_scores(scaled: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The ``perturbations x tokens`` scores (float32, as a run keeps them) of a record's float16
    ``scaled`` scores and float32 ``tokens`` scale."""
    return (np.asarray(scaled, dtype=np.float64) * np.asarray(scale, dtype=np.float64)[None, :]).astype(np.float32)


class ReplayMismatch(RuntimeError):
    """The units rebuilt for a stored SPES record are not the ones it was made with."""


def labels_checksum(labels: Any) -> str:
    """SHA-256 of a run's units (one integer label array per level), shapes included."""
    import hashlib

    h = hashlib.sha256()
    for lab in labels:
        a = np.ascontiguousarray(np.asarray(lab, dtype=np.int32))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _units_maker(kind: str) -> str:
    if kind == "encoder":
        return "runs of encoder positions (spes.encoder_units)"
    import importlib.metadata

    return f"SLIC superpixels of the log-mel speech frames (spes.slic_levels), scikit-image " \
           f"{importlib.metadata.version('scikit-image')}"


@dataclass
class SaliencyRecord:
    """What the result store keeps of a SPES run (see the module docstring): the score of every
    perturbation (``perturbations x tokens``), the run's parameters (``SpesParams`` fields and
    ``kind``, ``dtype``, ``snapshots``...), the segment counts per level, and the checksum of the
    units. :meth:`replay` turns it into the :class:`SaliencyResult` with every map."""

    kind: str
    params: dict[str, Any]
    n_perturbations: int
    perturbation_scores: np.ndarray
    n_segments: list[int]
    token_ids: list[int]
    prompt_ids: list[int]
    n_frames: int
    occlusion_value: float
    snapshots: list[int]
    units: dict[str, Any]
    utt_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> "SaliencyRecord":
        arrays, meta = files.read_npz(path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a SPES record of format {FORMAT!r} (format {meta.get('format')!r}); "
                             "recompute it")
        return cls(kind=meta["kind"], params=meta["params"], n_perturbations=int(meta["n_perturbations"]),
                   perturbation_scores=stored_scores(arrays["perturbation_scores"], arrays["token_scale"]), n_segments=list(meta["n_segments"]),
                   token_ids=list(meta["token_ids"]), prompt_ids=list(meta["prompt_ids"]), n_frames=int(meta["n_frames"]),
                   occlusion_value=float(meta["occlusion_value"]), snapshots=list(meta["snapshots"]), units=meta["units"],
                   utt_id=meta.get("utt_id"), info=meta.get("info", {}))

    @property
    def n_tokens(self) -> int:
        return int(self.perturbation_scores.shape[1])

    def units_of(self, features: np.ndarray) -> list[np.ndarray]:
        """The run's units made again from the utterance's ``mel x frames`` features, checked
        against the stored checksum (:class:`ReplayMismatch` where they differ)."""
        from .spes import SpesParams, encoder_units, slic_levels

        p = SpesParams.from_dict({k: v for k, v in self.params.items()
                                  if k not in ("kind", "dtype", "snapshots", "keeps", "backend")})
        if self.kind == "input":
            spec = np.asarray(features, dtype=np.float32)[:, : self.n_frames].T
            labels = slic_levels(spec, p)
        else:
            labels = [encoder_units(int(self.units["shape"][0]), p.run_length)]
        labels = [np.asarray(l, dtype=np.int32) for l in labels]
        got = labels_checksum(labels)
        if got != self.units["checksum"]:
            now = _units_maker(self.kind)
            raise ReplayMismatch(
                f"SPES record {self.utt_id or ''}: the units made again from this utterance's features are not the "
                f"ones the record was made with (checksum {got[:12]} != {self.units['checksum'][:12]}; made by "
                f"{self.units.get('made_by', '?')}, now {now}). Either another scikit-image version segments "
                "differently (install the version in requirements.txt) or the audio differs (rebuild the test sets "
                "with `make data`); or recompute the map.")
        if [int(l.max()) + 1 for l in labels] != list(self.n_segments):
            raise ReplayMismatch(f"SPES record {self.utt_id or ''}: segment counts {self.n_segments} do not match the "
                                 "units made again")
        return labels

    def replay(self, features: np.ndarray) -> SaliencyResult:
        """The :class:`SaliencyResult` of this record: every map accumulated from the stored scores on
        the units made again from ``features`` (``mel x frames``, the utterance's model input)."""
        from .spes import SpesDesign

        labels = self.units_of(features)
        scores = np.asarray(self.perturbation_scores, dtype=np.float32)
        p_occ, seed = float(self.params["p_occlude"]), int(self.params["seed"])
        design = SpesDesign(scores, list(self.n_segments), p_occ, seed, labels)
        full, a, b, den = design.stats().cell_maps(labels)
        snaps = {}
        for n in sorted(int(x) for x in self.snapshots):
            f_, a_, b_, _ = SpesDesign(scores[:n], list(self.n_segments), p_occ, seed, labels).stats().cell_maps(labels)
            snaps[n] = (f_, a_, b_)
        return SaliencyResult(scores=full, half_a=a, half_b=b, counts=den.sum(0), half_counts=den,
                              n_perturbations=self.n_perturbations, params=self.params, kind=self.kind, snapshots=snaps,
                              token_ids=self.token_ids, prompt_ids=self.prompt_ids, n_frames=self.n_frames,
                              occlusion_value=self.occlusion_value, n_segments=list(self.n_segments), utt_id=self.utt_id,
                              info=self.info, perturbation_scores=scores, labels=labels)
