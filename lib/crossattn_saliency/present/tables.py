"""Tables for readers: every table is written as CSV and Markdown, atomically, with its title and note."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..core import files

__all__ = ["markdown_table", "save_table"]


def markdown_table(df: Any, floatfmt: str = ".3g") -> str:
    """A GitHub-flavoured Markdown table of a ``pandas.DataFrame`` (no extra dependency)."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    cols = [str(c).replace("|", "\\|") for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def save_table(df: Any, stem: str | Path, title: str | None = None, note: str | None = None,
               floatfmt: str = ".3g") -> list[Path]:
    """Write ``<stem>.csv`` and ``<stem>.md`` atomically; returns both paths."""
    stem = Path(stem)
    csv_path, md_path = stem.parent / f"{stem.name}.csv", stem.parent / f"{stem.name}.md"
    with files.atomic_path(csv_path, ".csv") as tmp:
        df.to_csv(tmp, index=False)
    text = (f"# {title}\n\n" if title else "") + markdown_table(df, floatfmt) + (f"\n{note}\n" if note else "")
    with files.atomic_path(md_path, ".md") as tmp:
        tmp.write_text(text)
    return [csv_path, md_path]
