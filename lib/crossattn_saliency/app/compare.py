"""Did a run reproduce the reference? Every table of a run compared with the committed one.

``make reproduce`` recomputes the study from the audio into its own folder
(``results/reproduced/<profile>``) and ends with ``python -m crossattn_saliency.app.compare``:
for each table (``tables/*.csv``) present in the reference or the run, how many values were
compared, the largest absolute difference of the numeric cells, how many cells differ beyond
the tolerance, and which rows (by their key columns) they are in; text cells must match
exactly. The result is written as ``comparison.md`` (and ``comparison.csv``) in the run's
folder and printed.

Tolerance: ``atol + rtol * |reference|`` per numeric cell (defaults: :data:`ATOL`,
:data:`RTOL`). A rerun on the same machine and inputs gives identical tables; another CPU or
library build changes float rounding in the SPES passes (bfloat16) and so the last digits.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["ATOL", "RTOL", "TableComparison", "compare_table", "compare_folders", "write_comparison", "main"]

#: absolute tolerance of a numeric cell (correlations and shares are in [0, 1]; WER and ms larger)
ATOL = 1e-6
#: relative tolerance of a numeric cell
RTOL = 1e-6
#: columns that name a row, where a table has them (the rest are values)
KEY_COLUMNS = ("condition", "kind", "view", "target", "reference", "setting", "utterance", "map", "resolution",
               "perturbations", "layer", "claim", "set", "model", "explanation", "floor", "heads", "reducer",
               "set_name", "name")


@dataclass
class TableComparison:
    """One table of a run against the reference: ``status`` is ``"same"`` (every cell within the
    tolerance), ``"differs"``, ``"shape"`` (other columns or number of rows), ``"missing in run"``
    or ``"only in run"``."""

    table: str
    status: str
    values: int = 0
    max_abs_diff: float = 0.0
    cells_beyond: int = 0
    rows_beyond: list[str] = field(default_factory=list)
    detail: str = ""

    def record(self) -> dict[str, Any]:
        return {"table": self.table, "status": self.status, "values compared": self.values,
                "max abs difference": self.max_abs_diff, "cells beyond tolerance": self.cells_beyond,
                "rows beyond tolerance": "; ".join(self.rows_beyond[:5]) + (" ..." if len(self.rows_beyond) > 5 else ""),
                "detail": self.detail}


def _row_name(row: Any, keys: Sequence[str]) -> str:
    return " / ".join(str(row[k]) for k in keys) if keys else str(row.name)


def compare_table(reference: Any, run: Any, name: str = "", atol: float = ATOL, rtol: float = RTOL) -> TableComparison:
    """Compare two ``pandas.DataFrame`` versions of one table, cell by cell in row order."""
    import pandas as pd

    if list(reference.columns) != list(run.columns) or len(reference) != len(run):
        return TableComparison(name, "shape", detail=f"reference {len(reference)} rows x {list(reference.columns)}; "
                                                     f"run {len(run)} rows x {list(run.columns)}")
    keys = [c for c in KEY_COLUMNS if c in reference.columns]
    values, worst, beyond_cells, rows = 0, 0.0, 0, []
    bad_rows = np.zeros(len(reference), dtype=bool)
    for col in reference.columns:
        a, b = reference[col], run[col]
        num_a, num_b = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
        numeric = num_a.notna() | num_b.notna()
        if numeric.all() and a.notna().any():
            x, y = num_a.to_numpy(float), num_b.to_numpy(float)
            both_nan = np.isnan(x) & np.isnan(y)
            diff = np.where(both_nan, 0.0, np.abs(x - y))
            diff = np.where(np.isnan(diff), np.inf, diff)        # NaN on one side only
            values += int(len(x))
            finite = diff[np.isfinite(diff)]
            worst = max(worst, float(finite.max()) if finite.size else 0.0)
            if np.isinf(diff).any():
                worst = math.inf
            out = diff > atol + rtol * np.abs(np.nan_to_num(x))
        else:
            sa, sb = a.astype(str).where(a.notna(), ""), b.astype(str).where(b.notna(), "")
            values += int(len(sa))
            out = (sa != sb).to_numpy()
        beyond_cells += int(out.sum())
        bad_rows |= out
    for i in np.flatnonzero(bad_rows):
        rows.append(_row_name(reference.iloc[i], keys))
    return TableComparison(name, "same" if not beyond_cells else "differs", values, worst, beyond_cells, rows)


def compare_folders(reference: str | Path, run: str | Path, atol: float = ATOL, rtol: float = RTOL
                    ) -> list[TableComparison]:
    """Every ``tables/*.csv`` of ``reference`` and of ``run`` (folders with a ``tables`` sub-folder)."""
    import pandas as pd

    ref_dir, run_dir = Path(reference) / "tables", Path(run) / "tables"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} does not exist: run the notebooks first (make reproduce)")
    names = sorted({p.stem for p in ref_dir.glob("*.csv")} | {p.stem for p in run_dir.glob("*.csv")})
    out = []
    for name in names:
        a, b = ref_dir / f"{name}.csv", run_dir / f"{name}.csv"
        if not b.is_file():
            out.append(TableComparison(name, "missing in run"))
        elif not a.is_file():
            out.append(TableComparison(name, "only in run"))
        else:
            out.append(compare_table(pd.read_csv(a), pd.read_csv(b), name, atol, rtol))
    return out


def write_comparison(comparisons: Sequence[TableComparison], folder: str | Path, reference: str, atol: float = ATOL,
                     rtol: float = RTOL) -> Path:
    """Write ``comparison.md`` and ``comparison.csv`` into ``folder``; returns the Markdown path."""
    import pandas as pd

    from ..present.tables import save_table

    df = pd.DataFrame([c.record() for c in comparisons])
    same = sum(c.status == "same" for c in comparisons)
    note = (f"{same} of {len(comparisons)} tables reproduce the reference ({reference}) within |difference| <= "
            f"{atol:g} + {rtol:g} x |reference value| in every numeric cell and exactly in every text cell.")
    save_table(df, Path(folder) / "comparison", title="This run against the committed reference tables", note=note)
    return Path(folder) / "comparison.md"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crossattn_saliency.app.compare", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default=None, help="compare results/reproduced/PROFILE with PROFILE's reference")
    ap.add_argument("--reference", default=None, help="folder with the reference tables/ (e.g. results)")
    ap.add_argument("--run", default=None, help="folder with this run's tables/ (e.g. results/reproduced/default)")
    ap.add_argument("--atol", type=float, default=ATOL)
    ap.add_argument("--rtol", type=float, default=RTOL)
    a = ap.parse_args(argv)
    if a.profile:
        from . import reference

        a.reference = a.reference or str(reference.committed_dir(a.profile))
        a.run = a.run or str(reference.reproduced_dir(a.profile))
    if not (a.reference and a.run):
        ap.error("give --profile, or both --reference and --run")
    comparisons = compare_folders(a.reference, a.run, a.atol, a.rtol)
    path = write_comparison(comparisons, a.run, a.reference, a.atol, a.rtol)
    print(path.read_text())
    return 0 if all(c.status == "same" for c in comparisons) else 1


if __name__ == "__main__":
    raise SystemExit(main())
