"""The explanation model: one type for "an explanation of one utterance", typed views.

An :class:`Explanation` holds the maps of one explanation kind (cross-attention,
SPES on the input, SPES on the encoder output, gradients, ...) for one utterance:

* on one token axis: the model's own hypothesis *without* its final
  <|endoftext|> (dropped once, here, by :meth:`Explanation.from_hypothesis`);
* on a stated grid: ``"input"`` (``tokens x frames x mel``: 10 ms frames x mel bins,
  speech frames only) or ``"encoder"`` (``tokens x positions``: 20 ms encoder
  positions, speech positions only);
* layered kinds (attention) carry ``layers x heads x tokens x positions`` and are read
  through typed :class:`View` objects (layer and head stay integers);
* stochastic kinds carry two independent halves (for reliability);
* ``provenance`` records how the maps were made (the parameters of the store record).

Which kinds exist, how each is computed and cached, lives in :mod:`.kinds`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..evaluate import compare

GRIDS = {"input": "tokens x frames x mel (10 ms frames, speech only)",
         "encoder": "tokens x positions (20 ms encoder positions, speech only)"}

VIEW_KINDS = ("all", "last", "alignment", "layer", "head")


@dataclass(frozen=True, order=True)
class View:
    """An aggregation of a layered explanation over (layer, head) pairs.

    ``kind``: ``"all"`` (mean of every layer and head), ``"last"`` (the last ``n``
    layers), ``"alignment"`` (the heads a model ships for word timestamps),
    ``"layer"`` (every head of ``layer``), ``"head"`` (one ``layer``/``head``).
    ``layer`` and ``head`` are 0-based indices; :meth:`label` prints them 1-based.
    """

    kind: str
    layer: int | None = None
    head: int | None = None
    n: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"view kind {self.kind!r} is invalid: choose one of {list(VIEW_KINDS)}")
        if self.kind in ("layer", "head") and self.layer is None:
            raise ValueError(f"a {self.kind!r} view needs a layer index")
        if self.kind == "head" and self.head is None:
            raise ValueError("a 'head' view needs a head index")
        if self.kind == "last" and not self.n:
            raise ValueError("a 'last' view needs n >= 1 layers")

    def pairs(self, n_layers: int, n_heads: int,
              alignment_heads: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
        """The (layer, head) pairs this view averages over (0-based)."""
        if self.kind == "all":
            out = [(l, h) for l in range(n_layers) for h in range(n_heads)]
        elif self.kind == "last":
            out = [(l, h) for l in range(n_layers - self.n, n_layers) for h in range(n_heads)]
        elif self.kind == "alignment":
            if not alignment_heads:
                raise ValueError("this model ships no alignment heads")
            out = [(int(l), int(h)) for l, h in alignment_heads]
        elif self.kind == "layer":
            out = [(self.layer, h) for h in range(n_heads)]
        else:
            out = [(self.layer, self.head)]
        bad = [p for p in out if not (0 <= p[0] < n_layers and 0 <= p[1] < n_heads)]
        if bad:
            raise ValueError(f"view {self.label(n_layers)} names (layer, head) pairs {bad} outside "
                             f"{n_layers} layers x {n_heads} heads")
        return out

    def label(self, n_layers: int | None = None) -> str:
        """A human label, 1-based: ``all layers``, ``last 2 layers``, ``layer 4 of 4``, ``layer 4 head 2``."""
        if self.kind == "all":
            return "all layers"
        if self.kind == "last":
            return f"last {self.n} layers"
        if self.kind == "alignment":
            return "alignment heads"
        of = f" of {n_layers}" if n_layers else ""
        if self.kind == "layer":
            return f"layer {self.layer + 1}{of}"
        return f"layer {self.layer + 1} head {self.head + 1}"

    def fields(self, n_layers: int | None = None) -> dict[str, Any]:
        """Table columns: ``view`` (label), ``view_kind``, ``layer`` and ``head`` (1-based, or None)."""
        return {"view": self.label(n_layers), "view_kind": self.kind,
                "layer": None if self.layer is None else self.layer + 1,
                "head": None if self.head is None else self.head + 1}


def standard_views(n_layers: int, n_heads: int, has_alignment_heads: bool) -> list[View]:
    """The views the study compares, in display order: all layers, the last half of
    the layers, the alignment heads (if any), every layer, every head."""
    out = [View("all"), View("last", n=max(1, n_layers // 2))]
    if has_alignment_heads:
        out.append(View("alignment"))
    out += [View("layer", layer=l) for l in range(n_layers)]
    out += [View("head", layer=l, head=h) for l in range(n_layers) for h in range(n_heads)]
    return out


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
    provenance : how the maps were made (parameters, timings, run details).
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
    provenance: dict[str, Any] = field(default_factory=dict)
    design: Any = None

    def __post_init__(self) -> None:
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
            if view is not None and view.kind != "all":
                raise ValueError(f"{self.kind} has no layers or heads: view {view.label()} does not apply")
            return self.maps
        pairs = (view or View("all")).pairs(self.n_layers, self.n_heads, self.alignment_heads)
        return self.maps[[p[0] for p in pairs], [p[1] for p in pairs]].mean(axis=0)

    def on_encoder_grid(self, view: View | None = None, reducer: str = "max2d", factor: int = 2) -> np.ndarray:
        """``tokens x positions``: input-grid maps reduced with ``reducer`` (:mod:`.compare`)."""
        m = self.map(view)
        return compare.reduce_to_encoder_grid(m, reducer, factor) if self.grid == "input" else m

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

    def require_halves(self) -> tuple[np.ndarray, np.ndarray]:
        if self.halves is None:
            raise ValueError(f"{self.kind} is deterministic: it has no halves to estimate reliability from")
        return self.halves
