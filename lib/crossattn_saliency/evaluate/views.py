"""Views of a layered explanation: which (layer, head) pairs of attention to average.

Cross-attention comes as ``layers x heads x tokens x positions``; the study compares aggregated
views: plain means over a set of (layer, head) pairs (``shared/PAPER.md`` step 3). A
:class:`View` names one such set by its *scope*: ``"all"`` layers and heads, the ``"last"`` n
layers, the ``"alignment"`` heads a model ships for word timestamps, one ``"layer"``, one
``"head"``. Layer and head stay integers (0-based); labels print them 1-based.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["SCOPES", "View", "standard_views"]


#: what a view averages over
SCOPES = ("all", "last", "alignment", "layer", "head")


@dataclass(frozen=True, order=True)
class View:
    """An aggregation of a layered explanation over (layer, head) pairs.

    ``scope``: ``"all"`` (mean of every layer and head), ``"last"`` (the last ``n``
    layers), ``"alignment"`` (the heads a model ships for word timestamps),
    ``"layer"`` (every head of ``layer``), ``"head"`` (one ``layer``/``head``).
    ``layer`` and ``head`` are 0-based indices; :meth:`label` prints them 1-based.
    """

    scope: str
    layer: int | None = None
    head: int | None = None
    n: int | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"view scope {self.scope!r} is invalid: choose one of {list(SCOPES)}")
        if self.scope in ("layer", "head") and self.layer is None:
            raise ValueError(f"a {self.scope!r} view needs a layer index")
        if self.scope == "head" and self.head is None:
            raise ValueError("a 'head' view needs a head index")
        if self.scope == "last" and not self.n:
            raise ValueError("a 'last' view needs n >= 1 layers")

    def pairs(self, n_layers: int, n_heads: int,
              alignment_heads: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
        """The (layer, head) pairs this view averages over (0-based)."""
        if self.scope == "all":
            out = [(l, h) for l in range(n_layers) for h in range(n_heads)]
        elif self.scope == "last":
            out = [(l, h) for l in range(n_layers - self.n, n_layers) for h in range(n_heads)]
        elif self.scope == "alignment":
            if not alignment_heads:
                raise ValueError("this model ships no alignment heads")
            out = [(int(l), int(h)) for l, h in alignment_heads]
        elif self.scope == "layer":
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
        if self.scope == "all":
            return "all layers"
        if self.scope == "last":
            return f"last {self.n} layers"
        if self.scope == "alignment":
            return "alignment heads"
        of = f" of {n_layers}" if n_layers else ""
        if self.scope == "layer":
            return f"layer {self.layer + 1}{of}"
        return f"layer {self.layer + 1} head {self.head + 1}"

    def fields(self, n_layers: int | None = None) -> dict[str, Any]:
        """Table columns: ``view`` (label), ``view_kind``, ``layer`` and ``head`` (1-based, or None)."""
        return {"view": self.label(n_layers), "view_kind": self.scope,
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
