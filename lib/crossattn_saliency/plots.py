"""Figures of the comparison: layer x head correlations, per-layer curves, deletion, reliability.

Every function takes data (numpy arrays, dicts of them, result objects) and an
optional matplotlib ``ax``; it draws into that axis (or a new figure) and returns
the figure. Nothing here saves or shows a figure: notebooks do that.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from .deletion import DeletionCurve
from .reliability import reliability_at

__all__ = ["plot_layer_head_heatmap", "plot_rho_by_layer", "plot_deletion_curves", "plot_reliability_curve"]


def _axis(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, constrained_layout=True)
        return fig, ax
    return ax.figure, ax


def plot_layer_head_heatmap(rho: np.ndarray, ax: Axes | None = None, title: str | None = None,
                            annotate: bool = True, fmt: str = ".2f", cmap: str = "RdBu_r",
                            vmax: float | None = None, colorbar: bool = True,
                            label: str = "Pearson r") -> Figure:
    """Correlation of every single cross-attention head with saliency.

    Parameters
    ----------
    rho : np.ndarray
        ``layers x heads`` correlations (NaN cells are left blank). Rows and columns
        are labelled by their 0-based index (decoder layer, head).
    ax : Axes, optional
        Axis to draw into; a new figure if omitted.
    title : str, optional
    annotate : bool
        Write each value into its cell (``fmt``).
    cmap : str
        A diverging colormap; it is centered at 0.
    vmax : float, optional
        Colour limit (symmetric, ``[-vmax, vmax]``); default the largest ``|rho|``.
    colorbar : bool
        Add a colorbar (a second axis on the figure).
    label : str
        Colorbar label.

    Returns
    -------
    Figure
    """
    r = np.asarray(rho, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rho must be layers x heads (2-D), got shape {r.shape}")
    n_layers, n_heads = r.shape
    fig, ax = _axis(ax, (0.6 * n_heads + 2.5, 0.45 * n_layers + 1.5))
    finite = r[np.isfinite(r)]
    lim = float(vmax) if vmax is not None else (float(np.abs(finite).max()) if finite.size else 1.0)
    lim = lim if lim > 0 else 1.0
    im = ax.imshow(np.ma.masked_invalid(r), cmap=cmap, norm=TwoSlopeNorm(0.0, -lim, lim),
                   aspect="auto", origin="upper", interpolation="nearest")
    ax.set_xticks(range(n_heads))
    ax.set_yticks(range(n_layers))
    ax.set_xlabel("decoder head")
    ax.set_ylabel("decoder layer")
    if title:
        ax.set_title(title)
    if annotate:
        for i in range(n_layers):
            for j in range(n_heads):
                if np.isfinite(r[i, j]):
                    ax.text(j, i, format(r[i, j], fmt), ha="center", va="center", fontsize=8,
                            color="white" if abs(r[i, j]) > 0.6 * lim else "black")
    if colorbar:
        fig.colorbar(im, ax=ax, label=label)
    return fig


def plot_rho_by_layer(rho_by_model: Mapping[str, np.ndarray], ax: Axes | None = None,
                      relative_depth: bool = False, title: str | None = None,
                      ylabel: str = "Pearson r (CA vs saliency)") -> Figure:
    """Correlation of each decoder layer's cross-attention (mean over heads), one line per model.

    Parameters
    ----------
    rho_by_model : mapping
        Model name -> ``layers`` correlations, or ``layers x 3`` rows of
        ``(estimate, lo, hi)`` (the interval is drawn as a band).
    ax : Axes, optional
    relative_depth : bool
        x = (layer + 1) / layers, to put models of different depth on one axis;
        otherwise the 0-based layer index.
    title, ylabel : str

    Returns
    -------
    Figure
        One line per model.
    """
    if not rho_by_model:
        raise ValueError("rho_by_model is empty: pass at least one model's per-layer correlations")
    fig, ax = _axis(ax, (5.0, 3.5))
    for name, values in rho_by_model.items():
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 2 and v.shape[1] == 3:
            est, lo, hi = v[:, 0], v[:, 1], v[:, 2]
        elif v.ndim == 1:
            est, lo, hi = v, None, None
        else:
            raise ValueError(f"{name}: expected layers or layers x 3 (estimate, lo, hi), got shape {v.shape}")
        n = len(est)
        x = (np.arange(n) + 1) / n if relative_depth else np.arange(n)
        (line,) = ax.plot(x, est, marker="o", label=name)
        if lo is not None:
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("relative decoder depth" if relative_depth else "decoder layer")
    ax.set_ylabel(ylabel)
    if not relative_depth:
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return fig


def plot_deletion_curves(curves: Mapping[str, DeletionCurve | Sequence[DeletionCurve]], ax: Axes | None = None,
                         title: str | None = None) -> Figure:
    """WER against percent of cells deleted, one line per explanation (AUC in the legend).

    Parameters
    ----------
    curves : mapping
        Explanation name -> a :class:`DeletionCurve`, or a list of curves (of several
        utterances, same percents) that are averaged point by point.
    ax : Axes, optional
    title : str, optional

    Returns
    -------
    Figure
        One line per explanation; the legend gives the AUC (WER-percent units).
    """
    if not curves:
        raise ValueError("curves is empty: pass at least one DeletionCurve")
    fig, ax = _axis(ax, (5.0, 3.5))
    for name, c in curves.items():
        group = [c] if isinstance(c, DeletionCurve) else list(c)
        x = group[0].percents
        if any(g.percents.shape != x.shape or not np.allclose(g.percents, x) for g in group):
            raise ValueError(f"{name}: curves to average must share the same percents")
        wer = np.mean([g.wer for g in group], axis=0)
        auc = float(np.mean([g.auc for g in group]))
        ax.plot(x, wer, marker=".", label=f"{name} (AUC {auc:.1f})")
    ax.set_xlabel("cells deleted (%)")
    ax.set_ylabel("WER vs original output (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 105)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return fig


def plot_reliability_curve(measured: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                           ax: Axes | None = None, extrapolate_to: float | None = None,
                           target: float | None = None, title: str | None = None) -> Figure:
    """Reliability of saliency maps against the number of SPES perturbations.

    Parameters
    ----------
    measured : mapping
        Series name -> ``(n_perturbations, reliability)``, two equally long sequences
        (e.g. Spearman-Brown-corrected split-half reliabilities at several budgets).
    ax : Axes, optional
    extrapolate_to : float, optional
        Draw, for every series, a dashed Spearman-Brown prediction from its largest
        measured budget up to this many perturbations.
    target : float, optional
        A horizontal reference line (e.g. 0.9).
    title : str, optional

    Returns
    -------
    Figure
        Per series one line (plus one dashed prediction if ``extrapolate_to``); plus
        one line for ``target``. The x axis is logarithmic.
    """
    if not measured:
        raise ValueError("measured is empty: pass at least one (n_perturbations, reliability) series")
    fig, ax = _axis(ax, (5.0, 3.5))
    for name, (n, r) in measured.items():
        n = np.asarray(n, dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        if n.shape != r.shape or n.ndim != 1:
            raise ValueError(f"{name}: n_perturbations and reliability must be 1-D of equal length")
        (line,) = ax.plot(n, r, marker="o", label=name)
        if extrapolate_to is not None:
            i = int(np.nanargmax(n))
            m = np.geomspace(n[i], max(float(extrapolate_to), n[i]), 50)
            ax.plot(m, reliability_at(np.clip(r[i], -1, 1), n[i], m), linestyle="--",
                    color=line.get_color())
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target:g}")
    ax.set_xscale("log")
    ax.set_xlabel("perturbations")
    ax.set_ylabel("reliability")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return fig
