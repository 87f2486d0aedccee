"""Charts of the numbers: correlations per layer and head, deletion curves, reliability, timings, sensitivity.

Each function draws into ``ax`` (or a new figure) and returns the figure (:mod:`.figures`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from ..evaluate.deletion import DeletionCurve
from ..evaluate.reliability import reliability_at
from .figures import axis

__all__ = ["plot_layer_head_heatmap", "plot_rho_by_layer", "plot_deletion_curves", "plot_reliability_curve",
           "plot_attention_summary", "plot_disattenuation_validation", "plot_timing_errors", "plot_sensitivity",
           "plot_agreement_matrix", "plot_claims_forest", "head_heatmaps", "rho_by_layer_panels", "deletion_panels",
           "timing_panels"]


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
    fig, ax = axis(ax, (0.6 * n_heads + 2.5, 0.45 * n_layers + 1.5))
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
    fig, ax = axis(ax, (5.0, 3.5))
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
        One line per explanation; the legend gives the AUC (WER-percent units). Random
        floors (names starting with "random") are dashed.
    """
    if not curves:
        raise ValueError("curves is empty: pass at least one DeletionCurve")
    fig, ax = axis(ax, (5.0, 3.5))
    for name, c in curves.items():
        group = [c] if isinstance(c, DeletionCurve) else list(c)
        x = group[0].percents
        if any(g.percents.shape != x.shape or not np.allclose(g.percents, x) for g in group):
            raise ValueError(f"{name}: curves to average must share the same percents")
        wer = np.mean([g.wer for g in group], axis=0)
        auc = float(np.mean([g.auc for g in group]))
        floor = str(name).startswith("random")
        ax.plot(x, wer, marker="" if floor else ".", ls="--" if floor else "-", lw=1.0 if floor else 1.5,
                label=f"{name} (AUC {auc:.1f})")
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
    fig, ax = axis(ax, (5.0, 3.5))
    for name, (n, r) in measured.items():
        n = np.asarray(n, dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        if n.shape != r.shape or n.ndim != 1:
            raise ValueError(f"{name}: n_perturbations and reliability must be 1-D of equal length")
        (line,) = ax.plot(n, r, marker="o", label=name)
        i = int(np.nanargmax(n))
        if extrapolate_to is not None and 0 < r[i] < 1:  # Spearman-Brown is meaningless for r <= 0
            m = np.geomspace(n[i], max(float(extrapolate_to), n[i]), 50)
            ax.plot(m, reliability_at(r[i], n[i], m), linestyle="--", color=line.get_color())
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target:g}")
    ax.set_xscale("log")
    ax.set_xlabel("perturbations")
    ax.set_ylabel("reliability")
    ax.set_ylim(max(-0.2, min(0.0, ax.get_ylim()[0])), 1.0)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    return fig


def plot_attention_summary(summary: Mapping[str, "object"], title: str | None = None) -> Figure:
    """Where attention mass goes per decoder layer, one line per model/condition.

    ``summary`` maps a label to a DataFrame from ``attention.attention_summary`` (columns
    ``layer``, ``pad_mass``, ``first_mass``, ``entropy``).
    """
    fig, axes = plt.subplots(1, 3, figsize=(11, 3), constrained_layout=True)
    cols = [("pad_mass", "share of mass on padding"), ("first_mass", "share on first 0.1 s"),
            ("entropy", "row entropy (nats)")]
    for ax, (col, label) in zip(axes, cols):
        for name, df in summary.items():
            ax.plot(df["layer"], df[col], marker="o", label=name)
        ax.set_xlabel("decoder layer")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_disattenuation_validation(table: Any, ax: Axes | None = None) -> Figure:
    """The disattenuation check: per condition and reference, the disattenuated rho of the
    high-budget map (square, with its token-bootstrap 95% interval) and of the independent
    low-budget repeats (dots).

    ``table``: ``run.disattenuation_validation`` frames, concatenated (a ``target``
    column tells the references apart).
    """
    fig, ax = axis(ax, (7.5, 1.2 + 0.6 * max(1, table.groupby(["condition", "target"]).ngroups)))
    labels = []
    for y, ((cond, target), g) in enumerate(table.groupby(["condition", "target"], sort=False)):
        high = g[g["map"] == "high"].iloc[0]
        ax.plot([high["lo"], high["hi"]], [y, y], color="k", lw=2, solid_capstyle="butt")
        ax.plot(high["disattenuated"], y, "s", color="k",
                label="high budget, 95% interval" if y == 0 else None)
        low = g[g["map"] != "high"]
        ax.plot(low["disattenuated"], [y + 0.15] * len(low), "o", color="tab:orange", alpha=0.8,
                label="default budget, independent seeds" if y == 0 else None)
        labels.append(f"{cond}\n{target}: {int(high['perturbations']):,} vs {int(low['perturbations'].iloc[0]):,}")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel("disattenuated rho(CA all layers, reference)")
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_timing_errors(errors: Mapping[str, np.ndarray], ax: Axes | None = None, title: str | None = None,
                       clip_ms: float = 1000.0, floor_ms: float | None = None) -> Figure:
    """Distribution of word-start errors (ms) per explanation (one box per name, best median on top;
    errors above ``clip_ms`` drawn at ``clip_ms``); ``floor_ms``: a dashed line at the disagreement
    of two reference alignments, below which no error can be measured."""
    names = sorted(errors, key=lambda k: -np.median(errors[k]) if len(errors[k]) else 0.0)
    fig, ax = axis(ax, (7.5, 0.32 * len(names) + 1.4))
    data = [np.minimum(np.asarray(errors[k], dtype=np.float64), clip_ms) for k in names]
    ax.boxplot(data, vert=False, showfliers=True, widths=0.6, flierprops={"markersize": 2, "alpha": 0.4},
               medianprops={"color": "crimson"})
    ax.set_yticks(range(1, len(names) + 1))
    ax.set_yticklabels([f"{k} (n={len(errors[k])})" for k in names], fontsize=7)
    for ms in (20, 50, 100, 200):
        ax.axvline(ms, color="grey", lw=0.5, ls=":")
    if floor_ms is not None:
        ax.axvline(floor_ms, color="black", lw=1.0, ls="--", label=f"reference disagreement ({floor_ms:.0f} ms)")
        ax.legend(frameon=False, fontsize=7, loc="lower right")
    ax.set_xlim(0, clip_ms * 1.02)
    ax.set_xlabel(f"|word start - reference start| (ms; above {clip_ms:.0f} drawn at {clip_ms:.0f})")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_sensitivity(table: Any, value: str = "rho", ax: Axes | None = None, title: str | None = None) -> Figure:
    """rho(CA, reference) under each SPES setting (``sensitivity.sensitivity_table`` rows of one or
    more conditions): ``value`` (``"rho"`` raw or ``"rho disattenuated"``) with its 95% interval
    where there is one, one marker per condition; the study's setting first, dotted line at its value."""
    import pandas as pd

    df = pd.DataFrame(table)
    lo, hi = ("rho lo", "rho hi") if value == "rho" else ("dis lo", "dis hi")
    settings = list(dict.fromkeys(df["setting"]))
    conds = list(dict.fromkeys(df["condition"]))
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(settings) + 2), 3.6), constrained_layout=True)
    else:
        fig = ax.figure
    width = 0.6 / max(1, len(conds))
    for k, c in enumerate(conds):
        sub = df[df["condition"] == c].set_index("setting")
        x = np.array([settings.index(s) for s in sub.index]) + (k - (len(conds) - 1) / 2) * width
        y = sub[value].to_numpy(dtype=float)
        err = np.vstack([y - sub[lo].to_numpy(dtype=float), sub[hi].to_numpy(dtype=float) - y])
        line = ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0), fmt="o", capsize=3, label=c)
        if "study" in sub.index:
            ax.axhline(float(sub.loc["study", value]), ls=":", lw=1, color=line[0].get_color())
    if not np.isfinite(df[value].to_numpy(dtype=float)).any():
        ax.text(0.5, 0.5, "not estimable\n(references below the reliability floor)", ha="center", va="center",
                transform=ax.transAxes, fontsize=9, color="grey")
    ax.set_xticks(range(len(settings)))
    ax.set_xticklabels(settings, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(f"{value}(CA all layers, reference)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(frameon=False, fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_agreement_matrix(matrix: Any, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Settings x settings agreement of SPES maps (``sensitivity.agreement_matrix``), numbers
    printed in the cells; blank: not estimable (a map below the reliability floor)."""
    import pandas as pd

    df = pd.DataFrame(matrix)
    values = df.to_numpy(dtype=float)
    if ax is None:
        side = 0.55 * len(df) + 2
        fig, ax = plt.subplots(figsize=(side + 1, side), constrained_layout=True)
    else:
        fig = ax.figure
    im = ax.imshow(np.ma.masked_invalid(values), vmin=0, vmax=1, cmap="viridis")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(df.columns)))
    ax.set_xticklabels(df.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(df.index)))
    ax.set_yticklabels(df.index, fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="disattenuated agreement")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def plot_claims_forest(estimates: Mapping[str, Mapping[str, tuple[float, float, float]]],
                       study: Mapping[str, tuple[float, float]], margin: float,
                       label: Any = str, titles: Mapping[str, str] | None = None) -> Figure:
    """Every claim's estimate per condition with its 95% interval, against the study's range.

    One panel per claim (``estimates``: claim -> condition -> ``(value, lo, hi)``; a NaN interval
    draws the point alone); the study's reported range (``study``: claim -> ``(lo, hi)``) is shaded,
    widened by ``margin`` in a lighter band (the equivalence rule's range), and 0 is marked where
    the claim is a difference with no range. ``label`` names a condition on the y axis.
    """
    claims = [c for c in estimates if estimates[c]]
    fig, axes = plt.subplots(1, max(len(claims), 1), figsize=(3.2 * max(len(claims), 1), 0.45 * max(
        (len(estimates[c]) for c in claims), default=1) + 1.4), squeeze=False, sharey=False, constrained_layout=True)
    for ax, claim in zip(axes[0], claims):
        rows = list(estimates[claim].items())
        ys = np.arange(len(rows))[::-1]
        if claim in study:
            a, b = study[claim]
            ax.axvspan(a - margin, b + margin, color="tab:green", alpha=0.10, lw=0)
            ax.axvspan(a, b, color="tab:green", alpha=0.25, lw=0, label="the study")
        else:
            ax.axvline(0.0, color="grey", lw=0.8, ls="--")
        for y, (cond, (v, lo, hi)) in zip(ys, rows):
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y, y], color="black", lw=1.4)
            ax.plot([v], [y], "o", color="black", ms=4)
        ax.set_yticks(ys, [label(c) for c, _ in rows], fontsize=7)
        ax.set_title((titles or {}).get(claim, claim), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    return fig


def head_heatmaps(corr: Any, condition: str, kinds: Sequence[str], targets: Sequence[str] = ("SM_X", "SM_H")
                  ) -> Figure:
    """One condition's layer x head heatmaps of rho(head, reference): a row per layered kind, a
    column per reference (``corr``: a :class:`~..evaluate.results.CorrelationTable`)."""
    fig, axes = plt.subplots(len(kinds), len(targets), figsize=(6 * len(targets), 3.4 * len(kinds)), squeeze=False,
                             constrained_layout=True)
    for row, kind in zip(axes, kinds):
        for ax, target in zip(row, targets):
            plot_layer_head_heatmap(corr.head_grid(condition, kind, target), ax=ax, title=f"rho({kind} head, {target})")
    fig.suptitle(condition)
    return fig


def rho_by_layer_panels(corr: Any, conditions: Sequence[str], kind: str = "CA",
                        targets: Sequence[str] = ("SM_X", "SM_H")) -> Figure:
    """rho(``kind`` layer, reference) with its interval per decoder layer, one panel per reference,
    one line per condition (relative depth on the x axis: models of different depth side by side)."""
    fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets), 3.6), constrained_layout=True,
                             squeeze=False)
    for ax, target in zip(axes[0], targets):
        by = {name: [[r.rho, r.rho_lo, r.rho_hi] for r in corr.select(kind, target, "layer", name)]
              for name in conditions}
        plot_rho_by_layer(by, ax=ax, relative_depth=True)
        ax.set_title(f"rho({kind} layer, {target})")
    return fig


def deletion_panels(dels: Any, conditions: Sequence[str], variants: Sequence[str]) -> Figure:
    """Deletion curves of ``variants`` (ranking variants, floors included), one panel per condition
    (``dels``: a :class:`~..evaluate.results.DeletionTable`)."""
    fig, axes = plt.subplots(1, len(conditions), figsize=(4.6 * len(conditions), 4.0), squeeze=False,
                             constrained_layout=True)
    for ax, name in zip(axes[0], conditions):
        plot_deletion_curves(dels.curves(name, variants=tuple(variants)), ax=ax)
        ax.set_title(name, fontsize=9)
        ax.legend(frameon=False, fontsize=6)
    return fig


def timing_panels(errors: Sequence[Any], conditions: Sequence[str],
                  floors_ms: Mapping[str, float | None] | None = None) -> Figure:
    """Word-start errors (ms) of every explanation, one panel per condition (``errors``:
    :class:`~..run.timing.TimedWords`-like rows with ``condition``, ``label``, ``start_ms``);
    ``floors_ms``: condition -> the measurable floor (two references' disagreement) or None."""
    fig, axes = plt.subplots(1, len(conditions), figsize=(7.5 * len(conditions), 5.2), squeeze=False,
                             constrained_layout=True)
    for ax, name in zip(axes[0], conditions):
        by: dict[str, list[np.ndarray]] = {}
        for r in errors:
            if r.condition == name:
                by.setdefault(r.label, []).append(r.start_ms)
        plot_timing_errors({k: np.concatenate(v) for k, v in by.items()}, ax=ax, title=name,
                           floor_ms=(floors_ms or {}).get(name))
    return fig


def heads_curve_panels(curve: Any, reference_ms: Mapping[str, Mapping[str, float]]) -> Figure:
    """One panel per model: held-out median word-start error (ms) of heads chosen on ``n`` clips
    (x, log scale), by timing and by agreement with SM_H at each budget (mean over the random
    subsets, bars from the smallest to the largest subset), with horizontal lines at
    ``reference_ms[model]`` (e.g. ``{"shipped heads": 60.0, "all heads": 90.0}``). ``curve``:
    :func:`..app.heads_study.selection_curve` rows."""
    models = list(dict.fromkeys(curve["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False, sharey=True)
    for ax, model in zip(axes[0], models):
        d = curve[curve["model"] == model]
        for (method, budget), g in d.groupby(["method", "budget"], sort=True):
            label = "by timing (references)" if method == "timing" else f"by agreement with SM_H, {budget} perturbations"
            s = g.groupby("clips")["start median (ms)"].agg(["mean", "min", "max"])
            x = s.index.to_numpy(dtype=float)
            ax.errorbar(x, s["mean"], yerr=[s["mean"] - s["min"], s["max"] - s["mean"]], marker="o", capsize=3,
                        label=label, linestyle="-" if method == "timing" else "--")
        for i, (name, ms) in enumerate(reference_ms.get(model, {}).items()):
            if np.isfinite(ms):
                ax.axhline(ms, color=("0.2", "0.55", "0.75")[i % 3], linestyle=":", linewidth=1.2, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(d["clips"])))
        ax.set_xticklabels([str(n) for n in sorted(set(d["clips"]))])
        ax.set_xlabel("clips the heads were chosen on")
        ax.set_title(model)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out median word-start error (ms)")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig
