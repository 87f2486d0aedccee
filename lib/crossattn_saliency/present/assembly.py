"""``REPORT.md`` put together from the parts the notebooks write, once, in a fixed order.

A notebook that reports writes its part (:func:`write_part`: ``sections/<NN>_<i>_<slug>.md`` in
the profile's output folder) and never touches another notebook's; :func:`assemble` joins the
parts in the order of their names (notebook number, then part number) into ``REPORT.md``. The
runner (:mod:`..app.notebooks`) assembles after every notebook, so a partial rerun (say, notebook
10 alone) rewrites its own part and leaves the report's order as it was.

Notebook 08 writes the report's head (:func:`summary_part`): one row per claim with the verdict
per condition in one word, and one figure, every claim's estimate per condition with its interval
against the study's range (a forest plot); details follow in its second part and in the parts of
notebooks 09 and 10.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..core import config, files

__all__ = ["PARTS", "REPORT", "part_path", "write_part", "assemble", "summary_part"]

#: the folder of the parts, under a profile's output folder
PARTS = "sections"
#: the assembled report's file name
REPORT = "REPORT.md"


def part_path(profile: str, notebook: str, index: int, title: str) -> Path:
    """Where notebook ``notebook``'s part ``index`` (titled ``title``) lives."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "part"
    return config.output_dir(profile, PARTS) / f"{notebook}_{index}_{slug}.md"


def write_part(profile: str, notebook: str, index: int, title: str, body: str) -> Path:
    """Write one part of the report (atomically), replacing the notebook's earlier part of that
    index whatever its title was; ``body`` is Markdown under the heading ``## title`` (``title``
    empty: no heading, for the report's head)."""
    folder = config.output_dir(profile, PARTS)
    for old in folder.glob(f"{notebook}_{index}_*.md"):
        old.unlink()
    path = part_path(profile, notebook, index, title)
    text = (f"## {title}\n\n" if title else "") + body.strip("\n") + "\n"
    with files.atomic_path(path, ".md") as tmp:
        tmp.write_text(text)
    return path


def assemble(profile: str) -> Path | None:
    """Join the profile's parts into ``REPORT.md`` (atomically); None where there is no part yet."""
    parts = sorted(config.output_dir(profile, PARTS).glob("[0-9][0-9]_*_*.md"))
    if not parts:
        return None
    text = "\n".join(p.read_text().rstrip("\n") + "\n" for p in parts)
    path = config.output_dir(profile) / REPORT
    with files.atomic_path(path, ".md") as tmp:
        tmp.write_text(text)
    return path


def summary_part(claims: Any, profile: Any, figures_dir: str | Path) -> str:
    """The report's head: its title, the summary table (one row per claim, one column per
    condition named for people, the verdict in one word) and the forest plot (written to
    ``figures/claims_forest.{png,pdf}``), from :func:`~..evaluate.claims.claims_table`'s frame."""
    from ..evaluate import claims as claims_mod
    from . import captions, charts, figures
    from .tables import markdown_table

    table = claims_mod.summary(claims, label=captions.condition_label)
    est = claims.attrs.get("estimates", {})
    fig = charts.plot_claims_forest(est, claims_mod.STUDY_RANGES, profile.equivalence_margin,
                                    label=captions.condition_label)
    figures.save_figure(fig, Path(figures_dir) / "claims_forest")
    words = ", ".join(f"{v}" for v in dict.fromkeys(claims_mod.SHORT.values()))
    return "\n".join([
        "# Cross-Attention is Half Explanation: the study's claims on Whisper",
        "",
        f"Profile `{profile.name}`. Each cell: the claim's verdict in that condition ({words}; "
        f"\"holds\" only where the whole 95% interval lies inside the study's range widened by "
        f"{profile.equivalence_margin:g}, after Holm over all interval decisions). Details, figures and the "
        "method follow below.",
        "",
        markdown_table(table),
        "![Every claim's estimate per condition with its 95% interval; shaded: the study's range, lighter: "
        f"widened by the margin {profile.equivalence_margin:g}](figures/claims_forest.png)",
        "",
        "*Every claim with an estimate, per condition: the dot is our value (disattenuated where the reference's "
        "reliability allows), the line its 95% interval over utterances, the dark band the study's reported "
        "range and the light band that range widened by the equivalence margin.*",
        "",
    ])
