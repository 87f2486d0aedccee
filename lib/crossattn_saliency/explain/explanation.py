"""The result type of the compendium: an explanation of one utterance, and all of them together.

An :class:`Explanation` holds the maps of one explanation kind (cross-attention, SPES on the
input, SPES on the encoder output, gradients, baselines, ...) for one utterance:

* on one token axis: the model's own hypothesis *without* its final <|endoftext|> (dropped
  once, here, by :meth:`Explanation.from_hypothesis`);
* on a stated grid (:data:`GRIDS`): ``"input"`` (``tokens x frames x mel``: 10 ms frames x mel
  bins, speech frames only) or ``"encoder"`` (``tokens x positions``: 20 ms encoder positions,
  speech positions only); :attr:`Explanation.frame_seconds` says how long a cell lasts;
* layered kinds (attention) carry ``layers x heads x tokens x positions`` and are read through
  typed :class:`~..evaluate.views.View` objects (layer and head stay integers);
* stochastic kinds carry two independent halves (for reliability) and, for SPES, their run as a
  design (per-perturbation scores and units);
* :class:`Provenance` records how the maps were made: model, kind, parameters, seed, package
  version and run details (timings).

:class:`Explained` is one utterance with all its explanations (what the pipeline returns per
utterance and what ``explain_clip`` returns for a clip); both types ``save`` to and ``load`` from
one ``.npz``. Which kinds exist and how each is computed lives in :mod:`.kinds`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..core import files
from ..evaluate import grids
from ..evaluate.views import View, standard_views

if TYPE_CHECKING:
    from ..models.decoding import Utterance

__all__ = ["GRIDS", "FRAME_SECONDS", "Provenance", "Explanation", "Explained", "FORMAT"]

GRIDS = {"input": "tokens x frames x mel (10 ms frames, speech only)",
         "encoder": "tokens x positions (20 ms encoder positions, speech only)"}
#: seconds of one cell along time, per grid (Whisper: 10 ms hop, encoder subsampling 2)
FRAME_SECONDS = {"input": 0.01, "encoder": 0.02}
#: file format of :meth:`Explanation.save` and :meth:`Explained.save`
FORMAT = "crossattn_saliency.Explanation/1"


def _version() -> str:
    from .. import __version__

    return __version__


@dataclass(frozen=True)
class Provenance:
    """How an explanation was made.

    ``model``: the model's name; ``kind``: the explanation kind; ``params``: the parameters of
    its record (what the result store keys it by); ``seed``: the seed of its random draws (SPES
    masks), or None; ``version``: the package version that made it; ``info``: run details that
    do not change the maps (timings, device, a map's measured reliability)."""

    model: str = ""
    kind: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    version: str = field(default_factory=_version)
    info: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "kind": self.kind, "params": dict(self.params), "seed": self.seed,
                "version": self.version, "info": dict(self.info)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Provenance":
        return cls(model=d.get("model", ""), kind=d.get("kind", ""), params=dict(d.get("params") or {}),
                   seed=d.get("seed"), version=d.get("version", ""), info=dict(d.get("info") or {}))

    def with_info(self, **info: Any) -> "Provenance":
        """A copy with more run details."""
        return Provenance(self.model, self.kind, self.params, self.seed, self.version, {**self.info, **info})


@dataclass
class Explanation:
    """One explanation kind's maps for one utterance (see the module docstring).

    Attributes
    ----------
    kind : registry name (``"CA"``, ``"SM_X"``, ...).
    utt_id : utterance id.
    token_ids, tokens : the explained tokens (final <|endoftext|> excluded) and their text.
    grid : ``"input"`` or ``"encoder"`` (:data:`GRIDS`).
    maps : ``tokens x frames x mel`` / ``tokens x positions``; layered kinds
        ``layers x heads x tokens x positions``. float32.
    n_frames : speech frames of the input (10 ms each).
    halves : two maps of disjoint halves of a stochastic method (shaped like ``maps``), or None.
    alignment_heads : (layer, head) pairs shipped with the model (layered kinds).
    provenance : how the maps were made (:class:`Provenance`).
    design : for SPES kinds, the run as a :class:`~.spes.SpesDesign` (per-perturbation
        scores and units) over the whole hypothesis, or None; :meth:`resample` reads it.
    """

    kind: str
    utt_id: str
    token_ids: list[int]
    tokens: list[str]
    grid: str
    maps: np.ndarray
    n_frames: int
    halves: tuple[np.ndarray, np.ndarray] | None = None
    alignment_heads: list[tuple[int, int]] = field(default_factory=list)
    provenance: Provenance = field(default_factory=Provenance)
    design: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.provenance, Mapping):
            self.provenance = Provenance.from_dict(self.provenance)
        if self.grid not in GRIDS:
            raise ValueError(f"grid {self.grid!r} is invalid: choose one of {list(GRIDS)}")
        self.maps = np.asarray(self.maps, dtype=np.float32)
        want = 3 if self.grid == "input" else 2
        if self.maps.ndim not in (want, 4 if self.grid == "encoder" else want):
            raise ValueError(f"{self.kind}: maps on the {self.grid} grid must be {GRIDS[self.grid]}"
                             f"{' (or layers x heads x tokens x positions)' if self.grid == 'encoder' else ''}, "
                             f"got shape {self.maps.shape}")
        n_tok = self.maps.shape[2] if self.layered else self.maps.shape[0]
        if n_tok != len(self.token_ids) or len(self.tokens) != len(self.token_ids):
            raise ValueError(f"{self.kind} {self.utt_id}: maps explain {n_tok} tokens, token_ids has "
                             f"{len(self.token_ids)}, tokens {len(self.tokens)}")
        if self.layered and self.alignment_heads:
            heads = [(int(l), int(h)) for l, h in self.alignment_heads]
            if any(not (0 <= l < self.n_layers and 0 <= h < self.n_heads) for l, h in heads):
                import warnings

                warnings.warn(f"{self.kind} {self.utt_id}: the model's alignment heads {heads} do not fit its "
                              f"{self.n_layers} layers x {self.n_heads} heads; the 'alignment heads' view is "
                              "left out", stacklevel=2)
                heads = []
            self.alignment_heads = heads
        if self.halves is not None:
            a, b = (np.asarray(h, dtype=np.float32) for h in self.halves)
            if a.shape != self.maps.shape or b.shape != self.maps.shape:
                raise ValueError(f"{self.kind}: halves {a.shape}/{b.shape} differ from maps {self.maps.shape}")
            self.halves = (a, b)

    @classmethod
    def from_hypothesis(cls, kind: str, utt_id: str, token_ids: Sequence[int], tokens: Sequence[str], grid: str,
                        maps: np.ndarray, n_frames: int, halves: tuple[np.ndarray, np.ndarray] | None = None,
                        eot_id: int | None = None, token_axis: int = 0, **kw: Any) -> "Explanation":
        """Build from maps over the whole hypothesis (ending with <|endoftext|>): the
        final token is dropped from ``token_ids``, ``tokens``, ``maps`` and ``halves``
        (along ``token_axis``). The one place where end-of-text is handled."""
        token_ids = [int(t) for t in token_ids]
        if not token_ids:
            raise ValueError(f"{kind} {utt_id}: the hypothesis has no tokens")
        if eot_id is not None and token_ids[-1] != eot_id:
            raise ValueError(f"{kind} {utt_id}: the hypothesis does not end with <|endoftext|> ({eot_id}); "
                             f"last token {token_ids[-1]}")
        keep = lambda m: np.take(np.asarray(m), np.arange(len(token_ids) - 1), axis=token_axis)  # noqa: E731
        return cls(kind=kind, utt_id=utt_id, token_ids=token_ids[:-1], tokens=list(tokens)[:-1], grid=grid,
                   maps=keep(maps), n_frames=int(n_frames),
                   halves=None if halves is None else (keep(halves[0]), keep(halves[1])), **kw)

    @property
    def frame_seconds(self) -> float:
        """Seconds of one cell along time: 0.01 on the input grid, 0.02 on the encoder grid."""
        return FRAME_SECONDS[self.grid]

    @property
    def times(self) -> np.ndarray:
        """Start time (s) of every cell along time, ``frames`` or ``positions``."""
        return np.arange(self.maps.shape[-2 if self.grid == "input" else -1]) * self.frame_seconds

    @property
    def layered(self) -> bool:
        """True for ``layers x heads x tokens x positions`` maps (attention kinds)."""
        return self.maps.ndim == 4

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def n_layers(self) -> int:
        return int(self.maps.shape[0]) if self.layered else 0

    @property
    def n_heads(self) -> int:
        return int(self.maps.shape[1]) if self.layered else 0

    def views(self) -> list[View | None]:
        """:func:`standard_views` for layered kinds, ``[None]`` (the map itself) otherwise."""
        if not self.layered:
            return [None]
        return standard_views(self.n_layers, self.n_heads, bool(self.alignment_heads))

    def map(self, view: View | None = None) -> np.ndarray:
        """``tokens x ...`` map: the mean over the view's (layer, head) pairs for layered kinds."""
        if not self.layered:
            if view is not None and view.scope != "all":
                raise ValueError(f"{self.kind} has no layers or heads: view {view.label()} does not apply")
            return self.maps
        pairs = (view or View("all")).pairs(self.n_layers, self.n_heads, self.alignment_heads)
        return self.maps[[p[0] for p in pairs], [p[1] for p in pairs]].mean(axis=0)

    def on_encoder_grid(self, view: View | None, reducer: str, factor: int = 2) -> np.ndarray:
        """``tokens x positions``: the map (of ``view`` for layered kinds) on the comparison grid,
        input-grid maps reduced by ``reducer`` (:func:`~.grids.to_comparison_grid`)."""
        return grids.to_comparison_grid(self.map(view), self.grid, reducer, factor)

    def resample(self, halves: np.ndarray | None = None,
                 scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(full, half_a, half_b)`` maps of this explanation's tokens rebuilt from its
        SPES design for another split of the perturbations (``halves``) or other
        per-perturbation scores (e.g. permuted: a null), shaped like :attr:`maps`."""
        if self.design is None:
            raise ValueError(f"{self.kind} {self.utt_id} has no SPES design to resample (deterministic kind, "
                             "or a result written before per-perturbation scores were kept)")
        maps = self.design.cell_maps(halves, scores)
        return tuple(m[: self.n_tokens] for m in maps)  # type: ignore[return-value]

    def resample_on_grid(self, reducer: str, halves: np.ndarray | None = None,
                         scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`resample` with every map on the comparison grid (``tokens x positions``;
        input-grid maps reduced by ``reducer``, :func:`~..evaluate.grids.to_comparison_grid`)."""
        return tuple(grids.to_comparison_grid(m, self.grid, reducer) for m in self.resample(halves, scores))  # type: ignore[return-value]

    def at_budget(self, n: int) -> "Explanation":
        """This SPES explanation as a run of only its first ``n`` perturbations would have made it
        (maps and halves rebuilt from the design; no forward pass)."""
        if self.design is None:
            raise ValueError(f"{self.kind} {self.utt_id} has no SPES design: no smaller budget can be rebuilt")
        design = self.design.first(n)
        full, a, b = (m[: self.n_tokens] for m in design.cell_maps())
        return dataclasses.replace(self, maps=full, halves=(a, b), design=design,
                                   provenance=self.provenance.with_info(perturbations=int(n)))

    def require_halves(self) -> tuple[np.ndarray, np.ndarray]:
        if self.halves is None:
            raise ValueError(f"{self.kind} is deterministic: it has no halves to estimate reliability from")
        return self.halves

    # -- file format ----------------------------------------------------------------------------

    def _arrays(self, prefix: str = "") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"{prefix}maps": self.maps}
        if self.halves is not None:
            arrays[f"{prefix}half_a"], arrays[f"{prefix}half_b"] = self.halves
        meta: dict[str, Any] = {"kind": self.kind, "utt_id": self.utt_id, "token_ids": [int(t) for t in self.token_ids],
                                "tokens": list(self.tokens), "grid": self.grid, "n_frames": int(self.n_frames),
                                "alignment_heads": [list(h) for h in self.alignment_heads],
                                "provenance": self.provenance.to_dict()}
        if self.design is not None:
            d = self.design
            arrays[f"{prefix}design_scores"] = np.asarray(d.scores, dtype=np.float32)
            for i, lab in enumerate(d.labels):
                arrays[f"{prefix}design_labels{i}"] = np.asarray(lab, dtype=np.int32)
            meta["design"] = {"n_segments": [int(n) for n in d.n_segments], "p_occlude": float(d.p_occlude),
                              "seed": int(d.seed)}
        return arrays, meta

    @classmethod
    def _from_arrays(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], prefix: str = "") -> "Explanation":
        halves = (arrays[f"{prefix}half_a"], arrays[f"{prefix}half_b"]) if f"{prefix}half_a" in arrays else None
        design = None
        if "design" in meta:
            from .spes import SpesDesign

            dm = meta["design"]
            design = SpesDesign(arrays[f"{prefix}design_scores"], list(dm["n_segments"]), float(dm["p_occlude"]),
                                int(dm["seed"]), [arrays[f"{prefix}design_labels{i}"] for i in range(len(dm["n_segments"]))])
        return cls(kind=meta["kind"], utt_id=meta["utt_id"], token_ids=list(meta["token_ids"]), tokens=list(meta["tokens"]),
                   grid=meta["grid"], maps=arrays[f"{prefix}maps"], n_frames=int(meta["n_frames"]), halves=halves,
                   alignment_heads=[tuple(h) for h in meta["alignment_heads"]],
                   provenance=Provenance.from_dict(meta["provenance"]), design=design)

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` atomically: maps (float32), halves, SPES design, metadata as JSON."""
        arrays, meta = self._arrays()
        meta = {"format": FORMAT, "params": dict(self.provenance.params), **meta}
        return files.write_npz(path, meta, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Explanation":
        """Read a file written by :meth:`save`."""
        arrays, meta = files.read_npz(path)
        if meta.get("format") != FORMAT or "maps" not in arrays:
            raise ValueError(f"{path} is not a saved explanation (format {meta.get('format')!r}, want {FORMAT!r})")
        return cls._from_arrays(arrays, meta)


@dataclass
class Explained:
    """One utterance with its explanations, by kind name, all on the same tokens.

    ``utt``: the :class:`~..models.decoding.Utterance` (features ``mel x frames``, hypothesis,
    reference, the set's row without audio); ``explanations``: kind name ->
    :class:`Explanation`; ``info``: how the whole was made (profile, seed, timings).
    """

    utt: "Utterance"
    explanations: dict[str, Explanation]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = {name: tuple(e.token_ids) for name, e in self.explanations.items()}
        if len(set(ids.values())) > 1:
            raise ValueError(f"{self.utt.utt_id}: explanations cover different tokens {ids}; a stored record is stale")

    def __getitem__(self, kind: str) -> Explanation:
        if kind not in self.explanations:
            raise KeyError(f"{self.utt.utt_id} has no {kind!r} explanation; have {list(self.explanations)}")
        return self.explanations[kind]

    def with_explanations(self, more: Mapping[str, Explanation]) -> "Explained":
        """A copy with more explanations of the same tokens."""
        return Explained(self.utt, {**self.explanations, **dict(more)}, dict(self.info))

    @property
    def utt_id(self) -> str:
        return self.utt.utt_id

    @property
    def tokens(self) -> list[str]:
        return next(iter(self.explanations.values())).tokens

    @property
    def text(self) -> str:
        return self.utt.hyp.text

    @property
    def token_ids(self) -> list[int]:
        """The explained hypothesis, ending with <|endoftext|>."""
        return [int(t) for t in self.utt.hyp.token_ids]

    @property
    def n_frames(self) -> int:
        return int(self.utt.n_frames)

    @property
    def reliability(self) -> dict[str, float]:
        """Kind -> the measured (null-corrected) reliability of its map, where one was measured."""
        return {k: float(e.provenance.info["reliability"]) for k, e in self.explanations.items()
                if "reliability" in e.provenance.info}

    def maps(self, view: View | None, reducer: str) -> dict[str, np.ndarray]:
        """Every kind on the 20 ms encoder grid (``tokens x positions``): attention kinds through
        ``view`` (None: all layers and heads), input-grid kinds reduced by ``reducer``."""
        return {k: e.on_encoder_grid(view if e.layered else None, reducer) for k, e in self.explanations.items()}

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` (atomically): the features (``mel x frames``, the model's whole window),
        the hypothesis, every kind's maps, halves and design, and the metadata as JSON."""
        u = self.utt
        feats = np.asarray(u.features, dtype=np.float32)
        arrays: dict[str, np.ndarray] = {"features": feats}
        kinds_meta = {}
        for k, e in self.explanations.items():
            a, m = e._arrays(prefix=f"{k}.")
            arrays.update(a)
            kinds_meta[k] = m
        meta = {"format": FORMAT, "what": "explained utterance", "utt_id": u.utt_id, "n_frames": int(u.n_frames),
                "hypothesis": u.hyp.to_json(), "reference": u.reference,
                "row": {k: v for k, v in u.row.items() if isinstance(v, (str, int, float, bool, type(None)))},
                "info": self.info, "kinds": kinds_meta}
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        return files.write_npz(path, meta, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Explained":
        """Read a file written by :meth:`save`."""
        from ..models.decoding import Hypothesis, Utterance

        arrays, meta = files.read_npz(path)
        if meta.get("format") != FORMAT or meta.get("what") != "explained utterance":
            raise ValueError(f"{path} is not a saved explained utterance (format {meta.get('format')!r})")
        utt = Utterance(meta["utt_id"], arrays["features"], int(meta["n_frames"]), Hypothesis.from_json(meta["hypothesis"]),
                        meta["reference"], dict(meta["row"]))
        exps = {k: Explanation._from_arrays(arrays, m, prefix=f"{k}.") for k, m in meta["kinds"].items()}
        return cls(utt, exps, dict(meta.get("info") or {}))
