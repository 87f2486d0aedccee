"""The result type of SPES: one utterance's maps, their split halves, counts and provenance.

:class:`SaliencyResult` is what :mod:`crossattn_saliency.whisper_spes` returns and
what the pipeline stores (:mod:`crossattn_saliency.store`), one ``.npz`` per
utterance in the format ``"crossattn_saliency.SaliencyResult/1"`` (maps as
per-token scaled float16, counts exactly, metadata as JSON; see
:meth:`SaliencyResult.save`). It sits below both so that the Whisper adapter and
the set driver share it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import files

__all__ = ["SaliencyResult", "KINDS", "FORMAT"]

#: Map kinds: ``"input"`` (SM_X, on the log-mel input) and ``"encoder"`` (SM_H, on
#: the encoder output).
KINDS = ("input", "encoder")
#: Format tag stored in every result file's metadata.
FORMAT = "crossattn_saliency.SaliencyResult/1"


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
        """Write one ``.npz`` (atomically). Maps are stored as per-token scaled
        float16 (relative error about 5e-4 of each token's maximum); counts exactly."""
        arrays: dict[str, np.ndarray] = {"counts": self.counts.astype(np.int64),
                                         "half_counts": self.half_counts.astype(np.int64)}
        for name in ("scores", "half_a", "half_b"):
            arrays[name], arrays[name + "__scale"] = _f16(getattr(self, name))
        for n, maps in self.snapshots.items():
            for name, m in zip(("full", "half_a", "half_b"), maps):
                arrays[f"snap{n}_{name}"], arrays[f"snap{n}_{name}__scale"] = _f16(m)
        if self.perturbation_scores is not None:
            arrays["perturbation_scores"] = np.asarray(self.perturbation_scores, dtype=np.float32)
        for i, lab in enumerate(self.labels or []):
            arrays[f"labels{i}"] = np.asarray(lab, dtype=np.int32)
        meta = {"format": FORMAT, "kind": self.kind, "params": self.params,
                "n_perturbations": int(self.n_perturbations), "snapshots": sorted(int(n) for n in self.snapshots),
                "token_ids": [int(t) for t in self.token_ids], "prompt_ids": [int(t) for t in self.prompt_ids],
                "n_frames": int(self.n_frames), "occlusion_value": float(self.occlusion_value),
                "n_segments": [int(n) for n in self.n_segments], "utt_id": self.utt_id, "info": self.info}
        return files.write_npz(path, meta, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "SaliencyResult":
        """Read a file written by :meth:`save` (maps come back as float32)."""
        arrays, meta = files.read_npz(path)
        if meta.get("format") != FORMAT:
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
                   utt_id=meta.get("utt_id"), info=meta.get("info", {}),
                   perturbation_scores=arrays.get("perturbation_scores"),
                   labels=[arrays[f"labels{i}"] for i in range(len(meta["n_segments"]))]
                   if "labels0" in arrays else None)
