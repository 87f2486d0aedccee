"""Run one numbered notebook through papermill: ``python -m crossattn_saliency.app.notebooks 03``.

The executed copy (with its outputs) is written to ``results/notebooks/`` for the
default profile and under ``results/profiles/<profile>/notebooks/`` otherwise.
Overrides of profile fields go in as JSON: ``--set spes_perturbations=500``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..core import config, progress


def find_notebook(number: str) -> Path:
    """``notebooks/<NN>_*.ipynb`` for a two-digit number (``"3"`` means ``"03"``)."""
    nb_dir = config.repo_root() / "notebooks"
    matches = sorted(nb_dir.glob(f"{int(number):02d}_*.ipynb"))
    if not matches:
        have = ", ".join(p.name for p in sorted(nb_dir.glob("[0-9][0-9]_*.ipynb")))
        raise SystemExit(f"no notebook {number!r} in {nb_dir}; have: {have}")
    return matches[0]


def run(number: str, profile: str = "default", overrides: dict[str, Any] | None = None,
        output: Path | None = None) -> Path:
    """Execute a notebook with papermill; returns the executed notebook's path."""
    import papermill as pm

    config.get_profile(profile, **(overrides or {}))  # fail early on bad names
    src = find_notebook(number)
    out = output or config.output_dir(profile, "notebooks") / src.name
    t0 = time.time()
    print(f"> {src.name} [{profile}] started {time.strftime('%H:%M:%S')}: cells below, then each long loop's "
          "progress (rate, i of n, time left)", file=sys.stderr, flush=True)
    # the kernel inherits this process's standard error: the package's bars go there, not into the notebook
    os.environ[progress.ENV] = "terminal"
    try:
        # the kernel's own log (its "running over TCP without encryption" notice on a local machine) stays
        # out of the terminal; errors still show
        pm.execute_notebook(str(src), str(out), parameters={"profile": profile, "overrides": overrides or {}},
                            cwd=str(src.parent), kernel_name="python3", progress_bar=sys.stderr.isatty(),
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    finally:
        os.environ.pop(progress.ENV, None)
    _tidy(out)
    from ..present import assembly

    report = assembly.assemble(profile)  # the report from every notebook's part, in their order
    print(f"{src.name} [{profile}] done in {time.time() - t0:.0f} s -> {out}"
          + (f"; {report.name} assembled" if report else ""))
    return out


#: metadata that changes on every run without changing a result
_TIMING_KEYS = ("start_time", "end_time", "duration")


def _is_progress(output: Any) -> bool:
    """A progress bar (tqdm) written to the notebook: it belongs to the terminal, not the record."""
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        text = output.get("text", "")
        return any(m in text for m in ("it/s]", "s/it]", "%|", "utt/s]", "map/s]", "curve/s]"))
    data = output.get("data", {}) if output.get("output_type") in ("display_data", "update_display_data") else {}
    return "application/vnd.jupyter.widget-view+json" in data


def _tidy(path: Path) -> None:
    """Make an executed notebook a stable record: papermill's paths relative to the repository
    (no machine paths in results), no run timestamps or durations, no progress bars, so that
    a rerun on unchanged inputs rewrites an identical file."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    meta = nb.metadata.get("papermill", {})
    root = config.repo_root()
    for key in ("input_path", "output_path"):
        if meta.get(key):
            p = Path(meta[key]).resolve()
            meta[key] = str(p.relative_to(root)) if p.is_relative_to(root) else p.name
    for key in _TIMING_KEYS:
        meta.pop(key, None)
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # papermill gives its injected parameters cell a random id
        cell.metadata.pop("execution", None)
        for key in _TIMING_KEYS:
            cell.metadata.get("papermill", {}).pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _is_progress(o)]
            for o in cell.outputs:  # warnings name the files they come from: no machine paths in the record
                if o.get("output_type") == "stream":
                    o["text"] = _relative_paths(o.get("text", ""), root)
    nbformat.write(nb, str(path))


def _relative_paths(text: str, root: Path) -> str:
    """``text`` with the repository root and the home folder left out of the paths it names
    (``<root>/.venv/lib/...`` -> ``.venv/lib/...``, ``<home>/.cache/...`` -> ``~/.cache/...``)."""
    import os

    text = text.replace(str(root) + os.sep, "")
    home = os.path.expanduser("~")
    return text.replace(home + os.sep, "~" + os.sep) if home not in ("", os.sep) else text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("number", help="notebook number, e.g. 03")
    ap.add_argument("--profile", default="default", choices=sorted(config.PROFILES))
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="override a profile field, e.g. --set spes_perturbations=500")
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    run(args.number, args.profile, overrides)


if __name__ == "__main__":
    sys.exit(main())
