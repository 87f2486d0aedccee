"""Typed results of the comparison steps, each with ``to_frame()``.

Functions of :mod:`..run` return these objects; notebooks show and save their
frames, and later steps (the report) take the objects themselves: no table is read
back from CSV to rebuild what a function already returned. Views stay typed
(:class:`~.views.View`; ``layer``/``head`` columns are 1-based integers).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .views import View


@dataclass(frozen=True)
class CorrelationRow:
    """rho(explanation view, reference) over the utterances of one condition.

    ``rho``: Fisher-z mean of the per-utterance Pearson correlations with a bootstrap
    95% interval over utterances (``rho_lo``/``rho_hi``; NaN below the profile's
    ``min_utterances``); ``rho_pooled``: all utterances flattened together;
    ``spearman``: Fisher-z mean of per-utterance Spearman; ``rho_null``: the same rho
    against the reference's permutation-null maps; ``rho_corrected`` =
    (rho - rho_null) / (1 - rho_null); ``r_half`` / ``r_half_null``: the reference's
    split-half reliability over random splits and under the null; ``reliability``: the
    null-corrected half reliability, clipped to [0, 1), Spearman-Brown stepped up;
    ``ceiling`` = sqrt(reliability); ``rho_disattenuated`` = rho_corrected / ceiling
    with its interval (NaN, "not estimable", below the reliability floor).
    ``rho_per_utterance``, ``rho_null_per_utterance``, ``r_half_per_utterance``,
    ``r_half_null_per_utterance``: the per-utterance values behind the set level (for paired
    comparisons such as the context-mixing gain). ``speakers``: the speaker of each utterance,
    aligned with ``rho_per_utterance`` (empty where unknown), so that set-level intervals can
    resample speakers, then clips (``stats.set_estimate(..., groups=row.groups(clusters))``).
    """

    condition: str
    model: str
    set: str
    task: str
    kind: str
    view: View | None
    n_layers: int
    target: str
    reducer: str
    normalization: str
    utterances: int
    rho: float
    rho_lo: float
    rho_hi: float
    rho_pooled: float
    spearman: float
    reliability: float
    ceiling: float
    rho_disattenuated: float
    dis_lo: float
    dis_hi: float
    rho_null: float = float("nan")
    rho_corrected: float = float("nan")
    r_half: float = float("nan")
    r_half_null: float = float("nan")
    rho_per_utterance: tuple[float, ...] = ()
    rho_null_per_utterance: tuple[float, ...] = ()
    r_half_per_utterance: tuple[float, ...] = ()
    r_half_null_per_utterance: tuple[float, ...] = ()
    speakers: tuple[str, ...] = ()

    def groups(self, clusters: str | None) -> tuple[str, ...] | None:
        """The labels a bootstrap over this row's utterances resamples first: the speakers with
        ``clusters == "speaker"`` (where every utterance has one), else ``None`` (clips alone;
        ``clusters`` ``"clip"`` or ``None``)."""
        if clusters not in (None, "speaker", "clip"):
            raise ValueError(f"unknown bootstrap clusters {clusters!r}; choose 'speaker' or 'clip'")
        if clusters == "speaker" and self.speakers and len(self.speakers) == len(self.rho_per_utterance):
            return self.speakers
        return None

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("view", "n_layers", "rho_per_utterance", "rho_null_per_utterance", "r_half_per_utterance",
                  "r_half_null_per_utterance", "speakers"):
            d.pop(k)
        view = self.view.fields(self.n_layers) if self.view is not None else \
            {"view": "map", "view_kind": "map", "layer": None, "head": None}
        out = {k: d[k] for k in ("condition", "model", "set", "task", "kind")}
        out.update(view)
        out.update({k: v for k, v in d.items() if k not in out})
        return out


@dataclass
class CorrelationTable:
    """Rows of :class:`CorrelationRow` for one or more conditions, all made with one ``reducer``
    (of input-grid maps to the encoder grid) and one ``normalization``: tables made otherwise
    refuse to merge (``+``), since their rows are not comparable."""

    rows: list[CorrelationRow] = field(default_factory=list)
    reducer: str | None = None
    normalization: str | None = None

    def __add__(self, other: "CorrelationTable") -> "CorrelationTable":
        made = {}
        for name in ("reducer", "normalization"):
            a, b = getattr(self, name), getattr(other, name)
            if a is not None and b is not None and a != b:
                raise ValueError(f"cannot merge correlation tables made with different {name}s ({a!r} and {b!r}): "
                                 "their rows are not comparable; recompute one with the other's setting")
            made[name] = a if a is not None else b
        return CorrelationTable(self.rows + other.rows, **made)

    def select(self, kind: str | None = None, target: str | None = None, view_kind: str | None = None,
               condition: str | None = None) -> list[CorrelationRow]:
        return [r for r in self.rows
                if (kind is None or r.kind == kind) and (target is None or r.target == target)
                and (condition is None or r.condition == condition)
                and (view_kind is None or (r.view.scope if r.view is not None else "map") == view_kind)]

    def get(self, condition: str, kind: str, target: str, view: View | None = View("all")) -> CorrelationRow:
        for r in self.rows:
            if r.condition == condition and r.kind == kind and r.target == target and r.view == view:
                return r
        raise KeyError(f"no row for {condition} / {kind} / {target} / {view}")

    def head_grid(self, condition: str, kind: str, target: str, value: str = "rho") -> np.ndarray:
        """``layers x heads`` grid of one column over the single-head views."""
        rows = self.select(kind=kind, target=target, view_kind="head", condition=condition)
        if not rows:
            raise KeyError(f"no single-head rows for {condition} / {kind} / {target}")
        grid = np.full((max(r.view.layer for r in rows) + 1, max(r.view.head for r in rows) + 1), np.nan)
        for r in rows:
            grid[r.view.layer, r.view.head] = getattr(r, value)
        return grid

    def to_frame(self) -> Any:
        """One row per condition x kind x view x target; ``layer``/``head`` as 1-based integers (empty where n/a)."""
        import pandas as pd

        df = pd.DataFrame([r.record() for r in self.rows])
        for col in ("layer", "head"):
            if col in df:
                df[col] = df[col].astype("Int64")
        return df


@dataclass(frozen=True)
class MixingRow:
    """Context-mixing gain rho(E, SM_H) - rho(E, SM_X) of one layered kind's view, raw
    (difference of Fisher-z means) and disattenuated (each side null-corrected and divided
    by the square root of its own reference's corrected reliability), with paired bootstrap
    95% intervals over utterances (NaN below the profile's ``min_utterances``, or where a
    reference's reliability is below the floor)."""

    condition: str
    model: str
    kind: str
    view: str
    utterances: int
    rho_SM_X: float
    rho_SM_H: float
    gain: float
    gain_lo: float
    gain_hi: float
    gain_disattenuated: float
    dis_lo: float
    dis_hi: float


def frame(rows: Iterable[Any]) -> Any:
    """A ``pandas.DataFrame`` of dataclass rows (``record()`` when a row has one)."""
    import pandas as pd

    return pd.DataFrame([r.record() if hasattr(r, "record") else asdict(r) for r in rows])


@dataclass(frozen=True)
class Ranking:
    """One ranking of the input cells for the deletion test: an explanation kind and how
    its map reaches the input grid (``"expanded"`` from the encoder grid,
    ``"pooled <reducer>"`` and back, ``"full"`` resolution), or a random floor (kind
    ``"random"``) of a shape: ``"columns <d>"`` (random encoder columns, draw d, the
    floor matched to expanded and pooled maps), ``"segments <d>"`` (random SLIC
    segments, matched to full-resolution SPES maps) or ``"cells"`` (single cells)."""

    kind: str
    variant: str

    @property
    def label(self) -> str:
        if self.kind == "random":
            return f"random {self.shape}"
        return f"{self.kind} {self.variant}".replace(" expanded", "")

    @property
    def shape(self) -> str:
        """The shape of the deleted area: ``"columns"``, ``"segments"`` or ``"cells"``."""
        if self.kind == "random":
            return self.variant.split()[0]
        return "segments" if self.variant == "full" else "columns"

    @property
    def key(self) -> str:
        return f"{self.kind}__{self.variant.replace(' ', '_')}"


@dataclass(frozen=True)
class DeletionRecord:
    """The deletion curve of one ranking on one utterance (WER in percent, AUC in WER-percent units);
    ``direction`` ``"deletion"`` (top cells deleted: higher AUC = more faithful) or ``"insertion"``
    (top cells restored into a fully deleted input: lower AUC = more faithful)."""

    condition: str
    utt_id: str
    ranking: Ranking
    percents: tuple[float, ...]
    wer: tuple[float, ...]
    n_deleted: tuple[int, ...]
    texts: tuple[str, ...]
    auc: float
    direction: str = "deletion"

    @property
    def auc_study(self) -> float:
        """The AUC on the study's 5 % grid (:func:`~.deletion.grid_auc`), NaN if not measured on it."""
        from .deletion import grid_auc

        try:
            return grid_auc(self.percents, self.wer)
        except ValueError:
            return float("nan")

    def wer_at(self, percent: float) -> float:
        """WER (%) at ``percent`` % (linear between measured points)."""
        return self.curve().wer_at(percent)

    def curve(self) -> Any:
        """The record as a :class:`~.deletion.DeletionCurve` (for plotting)."""
        from .deletion import DeletionCurve

        return DeletionCurve(np.asarray(self.percents), np.asarray(self.wer), list(self.texts),
                             np.asarray(self.n_deleted))


@dataclass
class DeletionTable:
    """Deletion records of one or more conditions."""

    records: list[DeletionRecord] = field(default_factory=list)

    def __add__(self, other: "DeletionTable") -> "DeletionTable":
        return DeletionTable(self.records + other.records)

    def of(self, direction: str) -> "DeletionTable":
        """The records of one ``direction`` (``"deletion"`` or ``"insertion"``)."""
        return DeletionTable([r for r in self.records if r.direction == direction])

    def to_frame(self, direction: str = "deletion") -> Any:
        """One row per utterance and ranking of the ``direction`` curves (deletion by default):
        ``condition, utterance, explanation, kind, variant, auc``."""
        import pandas as pd

        return pd.DataFrame([{"condition": r.condition, "utterance": r.utt_id, "explanation": r.ranking.label,
                              "kind": r.ranking.kind, "variant": r.ranking.variant, "auc": r.auc}
                             for r in self.records if r.direction == direction],
                            columns=["condition", "utterance", "explanation", "kind", "variant", "auc"])

    def mean_auc(self, direction: str = "deletion") -> Any:
        """Mean AUC per condition and explanation (``pandas.DataFrame``, conditions as rows;
        random floors of several draws averaged per shape)."""
        df = self.to_frame(direction)
        return df.pivot_table(index="condition", columns="explanation", values="auc", sort=False).reset_index()

    def low_end(self, percents: Sequence[float] = (1, 2, 5, 10), n_bootstrap: int = 1000, seed: int = 0,
                min_utterances: int | None = None) -> list[dict[str, Any]]:
        """Where deletion curves move: per condition, explanation and percent, the WER after deleting
        that share of the cells, its matched random floor's (same deleted shape, mean of the draws)
        and the gap with a bootstrap interval over utterances (as :meth:`gaps`); the study's AUC on
        its 5 % grid beside it."""
        out = []
        for p in percents:
            for g in self.of("deletion")._gaps(lambda r, p=p: r.wer_at(p), n_bootstrap, seed, min_utterances):
                out.append({"condition": g["condition"], "explanation": g["explanation"], "percent": float(p),
                            "floor": g["floor"], "utterances": g["utterances"], "wer": g["auc"],
                            "floor wer": g["floor auc"], "gap": g["gap"], "gap_lo": g["gap_lo"],
                            "gap_hi": g["gap_hi"], "faithful": g["faithful"]})
        on_grid = DeletionTable([r for r in self.of("deletion").records if np.isfinite(r.auc_study)])
        study = {(g["condition"], g["explanation"]): g["auc"]   # NaN where the curves miss the 5 % grid
                 for g in on_grid._gaps(lambda r: r.auc_study, n_bootstrap, seed, min_utterances)}
        for row in out:
            row["auc (study grid)"] = study.get((row["condition"], row["explanation"]), float("nan"))
        return out

    def gaps(self, n_bootstrap: int = 1000, seed: int = 0, min_utterances: int | None = None,
             direction: str = "deletion") -> list[dict[str, Any]]:
        """Every explanation's AUC against its matched random floor (see :meth:`_gaps`); for
        insertion curves the gap is floor - AUC (restoring the right cells first makes the WER
        fall early: a smaller area), so that a positive gap means more faithful either way."""
        sign = 1.0 if direction == "deletion" else -1.0
        return self.of(direction)._gaps(lambda r: sign * r.auc, n_bootstrap, seed, min_utterances,
                                        sign=sign)

    def _gaps(self, value: Any, n_bootstrap: int = 1000, seed: int = 0, min_utterances: int | None = None,
              sign: float = 1.0) -> list[dict[str, Any]]:
        """Every explanation's ``value`` (per record; e.g. its AUC) against its matched random floor
        (same deleted shape), per condition: mean value, mean floor value (mean of the draws, and
        their spread; both times ``sign``), and the gap value - floor with a bootstrap interval over utterances
        (:func:`~.stats.set_estimate`, plain mean; no interval below ``min_utterances``).
        ``faithful``: "yes" where the gap's interval lies above 0, "no" where it lies
        below or covers 0, "not testable at this size" without an interval."""
        from .floors import baseline_gap
        from .stats import MIN_UTTERANCES, set_estimate

        mu = MIN_UTTERANCES if min_utterances is None else int(min_utterances)
        floors: dict[tuple[str, str, str], list[float]] = {}
        for r in self.records:
            if r.ranking.kind == "random":
                floors.setdefault((r.condition, r.utt_id, r.ranking.shape), []).append(value(r))
        out = []
        keys = dict.fromkeys((r.condition, r.ranking) for r in self.records if r.ranking.kind != "random")
        for cond, rank in keys:
            recs = [r for r in self.records if r.condition == cond and r.ranking == rank
                    and (cond, r.utt_id, rank.shape) in floors]
            if not recs:
                continue
            g = baseline_gap([value(r) for r in recs], [floors[(cond, r.utt_id, rank.shape)] for r in recs])
            est = set_estimate(g.gap, average="mean", n_bootstrap=n_bootstrap, seed=seed, min_utterances=mu)
            verdict = ("not testable at this size" if not est.has_interval else
                       "yes" if est.lo > 0 else "no")
            out.append({"condition": cond, "explanation": rank.label, "floor": f"random {rank.shape}",
                        "utterances": g.n_utterances, "draws": int(np.min([len(floors[(cond, r.utt_id, rank.shape)])
                                                                            for r in recs])),
                        "auc": sign * float(np.mean(g.auc)), "floor auc": sign * float(np.mean(g.random_mean)),
                        "floor sd": float(np.nanmean(g.random_sd)) if np.any(np.isfinite(g.random_sd)) else float("nan"),
                        "gap": est.value, "gap_lo": est.lo, "gap_hi": est.hi, "faithful": verdict})
        return out

    def curves(self, condition: str, variants: Sequence[str] | None = None,
               direction: str = "deletion") -> dict[str, list[Any]]:
        """``label -> [DeletionCurve per utterance]`` of one condition (optionally only some variants)."""
        out: dict[str, list[Any]] = {}
        for r in self.records:
            if r.condition == condition and r.direction == direction and (variants is None or r.ranking.variant in variants):
                out.setdefault(r.ranking.label, []).append(r.curve())
        return out


def labels(rankings: Sequence[Ranking]) -> list[str]:
    return [r.label for r in rankings]
