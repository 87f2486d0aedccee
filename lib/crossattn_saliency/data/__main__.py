"""Command line: ``python -m crossattn_saliency.data build --profile default [--sets a,b] [--force]``.

Builds the test sets of a profile (see :func:`~crossattn_saliency.data.sets.build_sets`)
and prints one summary line per set; a set already on disk that covers the request is
left as it is. Exit status 0 on success, 1 when a set cannot be built (the reason goes
to stderr).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from ..core.config import get_profile
from .audio import DataError
from .sets import SET_NAMES, build_sets, load_set, set_summary

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crossattn_saliency.data build --profile default [--sets a,b] [--force]``.

    Returns the exit status (0: every set built or already up to date).
    """
    parser = argparse.ArgumentParser(prog="python -m crossattn_saliency.data",
                                     description="Build the offline test sets.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the test sets of a profile and print a summary")
    b.add_argument("--profile", default="default", help="smoke, default or paper (sizes per set)")
    b.add_argument("--sets", default=",".join(SET_NAMES), help="comma-separated set names")
    b.add_argument("--force", action="store_true", help="rebuild even if the sets on disk cover the request")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    try:
        paths = {}
        for name in names:
            t0 = time.perf_counter()
            paths[name] = build_sets(profile, force=args.force, names=[name])[name]
            size = profile.set_sizes.get(name)
            ds = load_set(name, size)
            s = set_summary(ds)
            print(f"{name:8s} {s['utterances']:5d} utt  {s['total_duration_s']:8.1f} s total  "
                  f"median {s['median_duration_s']:5.2f} s  {s['speakers']:2d} speaker(s)  "
                  f"synthetic={s['synthetic']}  ({time.perf_counter() - t0:.1f} s)  {paths[name]}", flush=True)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
