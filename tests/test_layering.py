"""The package's layering: role sub-packages ("wings") in a fixed order, no import running back up, no cycle.

The order is the one the README's layout section shows (lowest first): ``core`` (configuration and
plumbing), ``evaluate`` (the statistics of the study: numpy only, no model), ``data`` (the test
sets), ``models`` (loading and decoding), ``explain`` (the explanation kinds and their engines),
``run`` (the study's steps through the result store), ``present`` (tables, figures, the report),
``app`` (explaining one clip, benchmarks, the notebook runner). A module may import modules of
its own wing and of the wings below it. Function-local (lazy) imports count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import crossattn_saliency

PACKAGE = Path(crossattn_saliency.__file__).parent
WINGS = ["core", "evaluate", "data", "models", "explain", "run", "present", "app"]
#: the package's face and its command line sit above every wing
TOP = {"__init__", "__main__"}
#: what the evaluation wing may import from outside the standard library: no model, no torch
EVALUATE_ALLOWS = {"numpy", "scipy", "pandas", "jiwer", "sacrebleu", "whisper_normalizer", "tqdm"}


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts)


def _wing(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> set[str]:
    """Package modules (dotted, below the package) that ``path`` imports, top-level or lazy."""
    module = _module(path)
    base = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("crossattn_saliency"):
                    continue
                parts = node.module.split(".")[1:]
            else:
                up = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                parts = [*up, *((node.module or "").split(".") if node.module else [])]
            target = ".".join(parts)
            for alias in node.names:
                full = f"{target}.{alias.name}" if target else alias.name
                out.add(full if (PACKAGE / Path(*full.split("."))).with_suffix(".py").exists()
                        or (PACKAGE / Path(*full.split("."))).is_dir() else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("crossattn_saliency."):
                    out.add(alias.name.split(".", 1)[1])
    out.discard(module)
    out.discard("")
    return out


def _package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_lives_in_a_wing():
    stray = [_module(p) for p in _package_modules()
             if _module(p) not in TOP and _wing(_module(p)) not in WINGS]
    assert not stray, f"modules outside the wings {WINGS}: {stray}"


def test_no_module_imports_one_of_a_higher_wing():
    rank = {w: i for i, w in enumerate(WINGS)}
    backwards = []
    for path in _package_modules():
        mod = _module(path)
        if mod in TOP:
            continue
        for imp in _imports(path):
            if imp == "__version__" or _wing(imp) not in rank:
                continue
            if rank[_wing(imp)] > rank[_wing(mod)]:
                backwards.append(f"{mod} imports {imp}")
    assert not backwards, "imports reaching upwards:\n" + "\n".join(backwards)


def test_the_import_graph_has_no_cycle():
    graph = {}
    for path in _package_modules():
        mod = _module(path)
        graph[mod] = {i for i in _imports(path) if i in {_module(p) for p in _package_modules()}}
    done, stack, cycles = set(), [], []

    def visit(m: str) -> None:
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in done:
            return
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            visit(n)
        stack.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_evaluation_wing_loads_no_model():
    bad = []
    for path in sorted((PACKAGE / "evaluate").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for n in names:
                top = n.split(".")[0]
                if top in ("torch", "transformers", "ctranslate2", "openvino", "captum"):
                    bad.append(f"{_module(path)} imports {n}")
    assert not bad, "the evaluation wing must not touch a model:\n" + "\n".join(bad)


def test_every_wing_says_what_lives_there_and_what_may_import_it():
    for wing in WINGS:
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text())) or ""
        assert len(doc) > 120 and "import" in doc, f"{wing}/__init__.py needs a docstring naming its modules and importers"
