"""Maps over time: spectrograms, explanation maps per token, attention heads, word boundaries.

Each function draws into ``ax`` (or a new figure) and returns the figure (:mod:`.figures`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .figures import FRAME_SECONDS, axis, scale_rows, token_labels

__all__ = ["plot_spectrogram", "plot_token_map", "plot_spectrogram_and_maps", "plot_head_grid", "plot_saliency_overlay",
           "plot_word_boundaries"]


def plot_spectrogram(features: np.ndarray, n_frames: int, ax: Axes | None = None,
                     title: str | None = None) -> Figure:
    """Log-mel spectrogram of the speech part.

    ``features`` is ``mel x frames`` (Whisper's 80 x 3000); only the first ``n_frames``
    (10 ms each) are drawn. x axis in seconds, y axis mel bin.
    """
    fig, ax = axis(ax, (8, 2.2))
    spec = features[:, :n_frames]
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma",
              extent=(0, n_frames * FRAME_SECONDS, 0, spec.shape[0]))
    ax.set_ylabel("mel bin")
    ax.set_xlabel("time (s)")
    if title:
        ax.set_title(title)
    return fig


def plot_token_map(scores: np.ndarray, tokens: Sequence[str], seconds_per_position: float,
                   ax: Axes | None = None, title: str | None = None, cmap: str = "viridis",
                   colorbar_label: str | None = None) -> Figure:
    """A ``tokens x positions`` map: one row per output token (text on the y axis),
    time in seconds on the x axis (``seconds_per_position`` per column)."""
    n_tok, n_pos = scores.shape
    fig, ax = axis(ax, (8, 0.25 * n_tok + 1.2))
    im = ax.imshow(scores, aspect="auto", cmap=cmap, interpolation="nearest",
                   extent=(0, n_pos * seconds_per_position, n_tok - 0.5, -0.5))
    ax.set_yticks(range(n_tok))
    ax.set_yticklabels(token_labels(tokens), fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("output token")
    if title:
        ax.set_title(title)
    if colorbar_label:
        fig.colorbar(im, ax=ax, label=colorbar_label, pad=0.01)
    return fig


def plot_spectrogram_and_maps(features: np.ndarray, n_frames: int, maps: Mapping[str, np.ndarray],
                              tokens: Sequence[str], seconds_per_position: Mapping[str, float] | float,
                              title: str | None = None, per_token: bool = False) -> Figure:
    """The spectrogram above one or more ``tokens x positions`` maps sharing the time axis.

    ``maps`` is an ordered dict name -> map (e.g. cross-attention, SM_X reduced,
    SM_H); ``seconds_per_position`` gives each map's column width in seconds;
    ``per_token`` scales every row to its own range (:func:`scale_rows`).
    """
    if per_token:
        maps = {name: scale_rows(m) for name, m in maps.items()}
    n_tok = len(tokens)
    heights = [1.2] + [max(1.5, 0.18 * n_tok)] * len(maps)
    fig, axes = plt.subplots(len(maps) + 1, 1, figsize=(9, sum(heights) + 0.6), sharex=True,
                             gridspec_kw={"height_ratios": heights}, constrained_layout=True)
    plot_spectrogram(features, n_frames, ax=axes[0], title=title)
    axes[0].set_xlabel("")
    for ax, (name, m) in zip(axes[1:], maps.items()):
        sec = seconds_per_position if isinstance(seconds_per_position, (int, float)) else seconds_per_position[name]
        plot_token_map(m, tokens, sec, ax=ax, title=name, colorbar_label=None)
        ax.set_xlabel("")
    axes[-1].set_xlabel("time (s)")
    return fig


def plot_head_grid(weights: np.ndarray, seconds_per_position: float, title: str | None = None,
                   row_label: str = "layer", col_label: str = "head") -> Figure:
    """Grid of ``layers x heads`` small maps; ``weights`` is ``layers x heads x tokens x positions``.

    Each panel has its own colour scale (attention is sharp in some heads, diffuse in others).
    """
    n_l, n_h, n_tok, n_pos = weights.shape
    fig, axes = plt.subplots(n_l, n_h, figsize=(1.6 * n_h + 0.5, 1.1 * n_l + 0.6), sharex=True, sharey=True,
                             squeeze=False, constrained_layout=True)
    ext = (0, n_pos * seconds_per_position, n_tok - 0.5, -0.5)
    for l in range(n_l):
        for h in range(n_h):
            ax = axes[l, h]
            ax.imshow(weights[l, h], aspect="auto", cmap="viridis", interpolation="nearest", extent=ext)
            ax.set_xticks([])
            ax.set_yticks([])
            if l == 0:
                ax.set_title(f"{col_label} {h}", fontsize=8)
            if h == 0:
                ax.set_ylabel(f"{row_label} {l}", fontsize=8)
    fig.supxlabel(f"time (0 to {n_pos * seconds_per_position:.1f} s)", fontsize=9)
    fig.supylabel("output tokens (top to bottom)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_saliency_overlay(features: np.ndarray, n_frames: int, saliency: np.ndarray, tokens: Sequence[str],
                          token_indices: Sequence[int], title: str | None = None) -> Figure:
    """Spectrogram (grey) with SPES relevance overlaid, for some tokens and summed over tokens.

    ``saliency`` is ``tokens x frames x mel`` (speech frames only); each panel shows
    the per-token z-scored map, positive relevance only, on top of the spectrogram.
    """
    panels = [("all tokens (mean of z-scored maps)", None)] + [(f"token {i}: {tokens[i]!r}", i) for i in token_indices]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.7 * len(panels) + 0.4), sharex=True,
                             squeeze=False, constrained_layout=True)
    spec = features[:, :n_frames]
    ext = (0, n_frames * FRAME_SECONDS, 0, spec.shape[0])
    z = saliency - saliency.mean(axis=(1, 2), keepdims=True)
    z = z / np.clip(saliency.std(axis=(1, 2), ddof=1, keepdims=True), 1e-12, None)
    for ax, (label, i) in zip(axes[:, 0], panels):
        m = z.mean(0) if i is None else z[i]
        ax.imshow(spec, origin="lower", aspect="auto", cmap="gray", extent=ext)
        over = np.ma.masked_less_equal(m.T, 0.0)
        im = ax.imshow(over, origin="lower", aspect="auto", cmap="hot", alpha=0.75, extent=ext,
                       vmin=0, vmax=float(np.nanpercentile(m, 99.5)) or 1.0)
        ax.set_ylabel("mel")
        ax.set_title(label, fontsize=9, loc="left")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="relevance (z-score)", pad=0.01)
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    return fig


def plot_word_boundaries(features: np.ndarray, n_frames: int,
                         words: Mapping[str, Sequence[tuple[str, float, float]]], title: str | None = None) -> Figure:
    """The spectrogram with the word boundaries of several sources drawn below it, one tier per
    source (the reference first): each word a box from its start to its end, labelled."""
    fig, axes = plt.subplots(len(words) + 1, 1, figsize=(10, 1.9 + 0.55 * len(words)), sharex=True,
                             gridspec_kw={"height_ratios": [3] + [1] * len(words)}, constrained_layout=True)
    plot_spectrogram(features, n_frames, ax=axes[0], title=title)
    axes[0].set_xlabel("")
    colours = plt.get_cmap("tab10")
    for row, (ax, (name, ws)) in enumerate(zip(axes[1:], words.items())):
        for k, (w, a, b) in enumerate(ws):
            ax.axvspan(a, b, ymin=0.1, ymax=0.9, color=colours(row % 10), alpha=0.25 if k % 2 else 0.45)
            ax.text((a + b) / 2, 0.5, w, ha="center", va="center", fontsize=6, clip_on=True)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
        ax.set_xlim(0, n_frames * FRAME_SECONDS)
    axes[-1].set_xlabel("time (s)")
    return fig
