"""How far an explanation beats what a model-blind map scores: its margin over the best trivial baseline.

A set-level rho(CA, SM_X) of 0.5 says little on its own: a monotone diagonal or the speech energy,
which know nothing of the model, may already score 0.4. :func:`baseline_margins` reads, per
condition and reference, the margin of one explanation view (default CA, all layers and heads)
over the *best* trivial baseline of :data:`TRIVIAL_BASELINES` (the registered kinds of
``explain/baselines.py``): the baseline with the highest set-level ``rho`` in that condition
against that reference. The margin is the paired difference over utterances,
rho(kind) - rho(best baseline), with its paired bootstrap interval (:func:`.stats.paired_estimate`:
whole utterances resampled; ``average="fisher"``: the difference of the Fisher-z means, as the
context-mixing gain; ``"mean"``: the mean per-utterance difference).

Rows needed (:class:`~.results.CorrelationRow`, e.g. a :class:`~.results.CorrelationTable` from
``run.correlation``): per condition and target, the kind's row at ``view`` and the rows of the
baselines (not layered: view ``None``), all with ``rho`` and ``rho_per_utterance`` over the same
utterances in the same order (one correlation run of the condition gives that). A condition and
target without the kind's row or without any baseline row with a finite ``rho`` gives no margin.
Numpy only; nothing loads a model.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .results import CorrelationRow, CorrelationTable
from .stats import MIN_UTTERANCES, paired_estimate
from .views import View

__all__ = ["TRIVIAL_BASELINES", "TARGETS", "BaselineMargin", "best_baseline", "baseline_margins", "margins_frame"]

#: the trivial baselines' kind names (registered by ``explain/baselines.py``)
TRIVIAL_BASELINES: tuple[str, ...] = ("Diagonal", "Energy", "DiagonalEnergy")
#: the references a margin is read against
TARGETS: tuple[str, ...] = ("SM_X", "SM_H")


@dataclass(frozen=True)
class BaselineMargin:
    """rho(kind) - rho(best trivial baseline) of one condition against one reference.

    ``baseline``: the best baseline (highest set-level rho there); ``rho_kind`` / ``rho_baseline``:
    their set-level rho (the rows' ``rho``); ``margin`` with its paired bootstrap interval
    ``margin_lo`` / ``margin_hi`` over ``utterances`` complete pairs (NaN below ``min_utterances``);
    ``baselines``: every baseline's set-level rho there; ``method``: how the margin was averaged."""

    condition: str
    kind: str
    view: str
    target: str
    baseline: str
    utterances: int
    rho_kind: float
    rho_baseline: float
    margin: float
    margin_lo: float
    margin_hi: float
    method: str
    baselines: tuple[tuple[str, float], ...] = ()

    @property
    def has_interval(self) -> bool:
        return bool(math.isfinite(self.margin_lo) and math.isfinite(self.margin_hi))

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("baselines")
        d.update({f"rho {name}": rho for name, rho in self.baselines})
        return d


def _rows(table: CorrelationTable | Iterable[CorrelationRow]) -> list[CorrelationRow]:
    return list(table.rows) if isinstance(table, CorrelationTable) else list(table)


def best_baseline(rows: Sequence[CorrelationRow], condition: str, target: str,
                  baselines: Sequence[str] = TRIVIAL_BASELINES) -> CorrelationRow | None:
    """The baseline row with the highest set-level ``rho`` of ``condition`` against ``target``
    (baseline rows: view ``None``; NaN rho skipped; ties go to the first in ``baselines``), or None."""
    cands = [r for name in baselines for r in rows
             if r.condition == condition and r.target == target and r.kind == name and r.view is None
             and math.isfinite(r.rho)]
    return max(cands, key=lambda r: r.rho) if cands else None


def baseline_margins(table: CorrelationTable | Iterable[CorrelationRow], kind: str = "CA",
                     view: View | None = View("all"), targets: Sequence[str] = TARGETS,
                     baselines: Sequence[str] = TRIVIAL_BASELINES, *, average: str = "fisher",
                     n_bootstrap: int = 1000, seed: int = 0,
                     min_utterances: int = MIN_UTTERANCES, clusters: str | None = None) -> list[BaselineMargin]:
    """Per condition (in table order) and reference in ``targets``: ``kind``'s margin over the best
    of ``baselines`` (see the module docstring for the rows it needs).

    Parameters
    ----------
    table : the correlation rows (:class:`~.results.CorrelationTable` or its rows).
    kind, view : the explanation and its view (``View("all")``: all layers and heads; ``None`` for
        a kind that is not layered).
    targets : the references (``"SM_X"``, ``"SM_H"``).
    baselines : the trivial baselines' kind names; the best is the one with the highest set-level
        ``rho`` in that condition against that reference.
    average, n_bootstrap, seed, min_utterances : as in :func:`.stats.paired_estimate` (``"fisher"``:
        difference of Fisher-z means; ``"mean"``: mean of the per-utterance differences).
    clusters : the profile's ``bootstrap_clusters``: ``"speaker"`` resamples the speakers the kind's
        row carries, then clips (:meth:`~.results.CorrelationRow.groups`); ``"clip"`` or ``None``
        (the default): clips alone.

    Returns
    -------
    list of :class:`BaselineMargin`; conditions and targets lacking the kind's row or any baseline
    row are left out. Raises ``ValueError`` where the two rows' per-utterance series differ in length
    (rows of different utterance sets cannot be paired).
    """
    rows = _rows(table)
    out = []
    for cond in dict.fromkeys(r.condition for r in rows):
        for target in targets:
            mine = [r for r in rows if r.condition == cond and r.target == target and r.kind == kind and r.view == view]
            best = best_baseline(rows, cond, target, baselines)
            if not mine or best is None:
                continue
            r = mine[0]
            a, b = np.asarray(r.rho_per_utterance, float), np.asarray(best.rho_per_utterance, float)
            if a.shape != b.shape:
                raise ValueError(f"{cond} / {target}: {kind} has {a.size} per-utterance correlations, "
                                 f"{best.kind} {b.size}: rows of different utterance sets cannot be paired")
            est = paired_estimate(a, b, average=average, n_bootstrap=n_bootstrap, seed=seed,
                                  min_utterances=min_utterances, groups=r.groups(clusters))
            every = tuple((x.kind, float(x.rho)) for name in baselines for x in rows
                          if x.condition == cond and x.target == target and x.kind == name and x.view is None)
            out.append(BaselineMargin(
                condition=cond, kind=kind, view=view.label(r.n_layers) if view is not None else "map",
                target=target, baseline=best.kind, utterances=est.n, rho_kind=float(r.rho),
                rho_baseline=float(best.rho), margin=est.value, margin_lo=est.lo, margin_hi=est.hi,
                method=est.method, baselines=every))
    return out


def margins_frame(margins: Sequence[BaselineMargin]) -> Any:
    """A ``pandas.DataFrame`` of margins, one row each (every baseline's rho as ``rho <name>``)."""
    import pandas as pd

    return pd.DataFrame([m.record() for m in margins])
