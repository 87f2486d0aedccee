"""The committed reference of a profile: its tables and figures, and the store of the
intermediate results that notebooks 05-10 read (``results/store/<profile>``).

``make reproduce`` recomputes everything into :func:`reproduced_dir` and compares its tables with
the committed ones (:mod:`.compare`); ``make adopt`` makes such a run the new reference in one
step: its tables, figures, executed notebooks and REPORT.md replace the committed ones, and the
records its notebooks read (the store's read log) become the new reference store, whose size is
checked against :data:`BUDGET_MB`. ``make figures`` then reruns notebooks 05-10 from that store on
any clone, without recomputing a map.

Command line: ``python -m crossattn_saliency.app.reference {adopt,export,sizes} --profile P``.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Sequence

from ..core import config
from ..run import store as result_store

__all__ = ["BUDGET_MB", "committed_dir", "reproduced_dir", "store_dir", "sizes", "export", "adopt", "main"]

#: the largest reference store git should carry (compressed records), per profile
BUDGET_MB = 60.0
#: what a run's output folder holds besides its cache, and adopting copies
OUTPUTS = ("tables", "figures", "notebooks", "sections", "REPORT.md")


def committed_dir(profile: str) -> Path:
    """Where a profile's committed tables and figures are (``results/`` for default)."""
    return config.results_dir() if profile == "default" else config.results_dir() / "profiles" / profile


def reproduced_dir(profile: str) -> Path:
    """Where ``make reproduce`` puts a profile's run (outputs and its own cache)."""
    return config.results_dir() / "reproduced" / profile


def store_dir(profile: str) -> Path:
    """The profile's committed reference store."""
    return config.results_dir() / "store" / profile


def sizes(root: str | Path) -> dict[str, int]:
    """Bytes per section (first folder) of a store."""
    out: dict[str, int] = {}
    for f in Path(root).rglob("*"):
        if f.is_file() and f.name != result_store.READS_LOG:
            sec = f.relative_to(root).parts[0]
            out[sec] = out.get(sec, 0) + f.stat().st_size
    return dict(sorted(out.items()))


def _report(by_section: dict[str, int]) -> str:
    total = sum(by_section.values())
    lines = [f"  {sec:<28} {n / 1e6:8.2f} MB" for sec, n in by_section.items()]
    return "\n".join(lines + [f"  {'total':<28} {total / 1e6:8.2f} MB (budget {BUDGET_MB:g} MB)"])


def export(profile: str, cache: str | Path | None = None) -> dict[str, int]:
    """The records read through ``cache`` (default: the profile's cache) become the profile's
    reference store; refuses a store over :data:`BUDGET_MB` (nothing replaced)."""
    cache = Path(cache) if cache else config.cache_dir(profile)
    need = 0
    for rel in result_store.reads(cache):
        src = cache / rel
        if not src.is_file() and store_dir(profile).is_dir():
            src = store_dir(profile) / rel
        need += src.stat().st_size if src.is_file() else 0
    if need > BUDGET_MB * 1e6:
        raise ValueError(f"the records read come to {need / 1e6:.1f} MB, over the reference store's budget of "
                         f"{BUDGET_MB:g} MB: store them more compactly before committing them")
    return result_store.export(cache, store_dir(profile), reference=store_dir(profile))


def adopt(profile: str) -> dict[str, int]:
    """Make the run in :func:`reproduced_dir` the profile's reference (outputs and store)."""
    run = reproduced_dir(profile)
    if not (run / "tables").is_dir():
        raise FileNotFoundError(f"{run} holds no run: `make reproduce PROFILE={profile}` first")
    by_section = export(profile, run / "cache" / profile)
    dest = committed_dir(profile)
    for name in OUTPUTS:
        src = run / name
        if src.is_dir():
            shutil.rmtree(dest / name, ignore_errors=True)
            shutil.copytree(src, dest / name)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return by_section


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crossattn_saliency.app.reference", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("adopt", "export", "sizes"))
    ap.add_argument("--profile", default="default", choices=sorted(config.PROFILES))
    a = ap.parse_args(argv)
    if a.command == "adopt":
        by = adopt(a.profile)
        print(f"adopted {reproduced_dir(a.profile)} as the reference of profile {a.profile}; store:\n{_report(by)}")
    elif a.command == "export":
        by = export(a.profile)
        print(f"wrote {store_dir(a.profile)}:\n{_report(by)}")
    else:
        print(f"{store_dir(a.profile)}:\n{_report(sizes(store_dir(a.profile)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
