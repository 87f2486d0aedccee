"""Smoke run of every numbered notebook, in order, on the smoke profile (real models, real audio)."""
from __future__ import annotations

import pytest

from crossattn_saliency import config, run_notebook

pytestmark = [pytest.mark.notebooks, pytest.mark.integration]

NUMBERS = sorted(p.name[:2] for p in (config.repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_exist_in_order():
    assert NUMBERS == [f"{i:02d}" for i in range(len(NUMBERS))] and len(NUMBERS) >= 9


@pytest.mark.parametrize("number", NUMBERS)
def test_notebook_runs_on_smoke_profile(number, tmp_path):
    out = run_notebook.run(number, "smoke", output=tmp_path / f"{number}.ipynb")
    import nbformat

    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert any(c.get("metadata", {}).get("tags") == ["parameters"] for c in nb.cells)
