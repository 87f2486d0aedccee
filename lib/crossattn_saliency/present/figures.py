"""What every figure of the compendium shares: a figure for an optional axis, saving, row scaling.

Every plotting function (:mod:`.maps`, :mod:`.charts`) takes data (numpy arrays, dicts of them,
result objects) and an optional matplotlib ``ax``; it draws into that axis (or a new figure) and
returns the figure. Nothing draws and saves at once: notebooks save with :func:`save_figure`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["axis", "save_figure", "scale_rows", "token_labels", "FRAME_SECONDS"]

#: Whisper's feature hop (s)
FRAME_SECONDS = 0.01


def axis(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``(figure, axis)``: the given axis and its figure, or a new figure of ``figsize`` (inches)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
        return fig, ax
    return ax.figure, ax


def save_figure(fig: Figure, stem: "str | Path", formats: Sequence[str] = ("png", "pdf")) -> list[str]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` (the only helper here that writes files)."""
    from pathlib import Path

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        path = stem.parent / f"{stem.name}.{fmt}"
        # no creation date in PDFs: a rerun on unchanged inputs rewrites identical files
        meta = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, dpi=150 if fmt == "png" else None, bbox_inches="tight", metadata=meta)
        out.append(str(path))
    return out


def scale_rows(m: np.ndarray) -> np.ndarray:
    """Each row (token) of a ``tokens x positions`` map scaled to [0, 1] (min to max), so
    that tokens with small scores stay visible next to tokens with large ones."""
    m = np.asarray(m, dtype=np.float64)
    lo, hi = m.min(axis=-1, keepdims=True), m.max(axis=-1, keepdims=True)
    return np.divide(m - lo, hi - lo, out=np.zeros_like(m), where=hi > lo)


def token_labels(tokens: Sequence[str]) -> list[str]:
    return [t.replace("\n", "\\n") if t.strip() else repr(t) for t in tokens]
