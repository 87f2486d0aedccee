"""The package's layering: no module imports one that is meant to sit above it.

The order is the one the README's layout section lists (lowest first); ``config`` and
``cache`` may be imported by anything. Function-local (lazy) imports count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import crossattn_saliency

PACKAGE = Path(crossattn_saliency.__file__).parent
ORDER = ["config", "progress", "cache", "store", "data", "ct2", "models", "metrics", "transcribe", "alignment", "attention", "normca",
         "spes", "saliency_result", "whisper_spes", "gradients", "compare", "backends", "verdicts", "reliability", "deletion", "timestamps",
         "explanations", "kinds", "tables", "pipeline", "executor", "sensitivity", "downstream", "plots", "report", "clip", "bench", "run_notebook", "__main__"]
ANYWHERE = {"config", "cache", "progress"}


def _unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """Package modules that ``path`` imports (relative or absolute, top-level or lazy)."""
    out = set()
    unit = _unit(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("crossattn_saliency"):
                parts = node.module.split(".")[1:]
            elif node.level == 1:
                parts = (node.module or "").split(".") if node.module else []
                if unit == "data" and len(path.relative_to(PACKAGE).parts) > 1:
                    parts = ["data"] + parts  # a sibling inside the data package
            elif node.level == 2:
                parts = (node.module or "").split(".") if node.module else []
            else:
                continue
            if parts and parts[0]:
                out.add(parts[0])
            else:  # "from . import a, b"
                out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("crossattn_saliency."):
                    out.add(alias.name.split(".")[1])
    out.discard(unit)
    return out


def test_every_module_has_a_place_in_the_order():
    units = {_unit(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert units <= set(ORDER), f"modules missing from the layering order: {sorted(units - set(ORDER))}"


def test_no_module_imports_one_above_it():
    rank = {m: i for i, m in enumerate(ORDER)}
    backwards = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        if unit == "__init__":
            continue
        for imp in _imports(path) - ANYWHERE:
            if imp in rank and rank[imp] > rank[unit]:
                backwards.append(f"{path.relative_to(PACKAGE)} imports {imp}")
    assert not backwards, "imports reaching upwards:\n" + "\n".join(backwards)
