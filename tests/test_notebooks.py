"""Smoke run of every numbered notebook, in order, on the smoke profile (real models, real audio):
each must write the tables and figures it promises, every registered explanation kind must
reach the tables, and a rerun on unchanged inputs must rewrite identical files."""
from __future__ import annotations

import hashlib
import json
import time

import pandas as pd
import pytest

from crossattn_saliency.core import config
from crossattn_saliency.explain import kinds
from crossattn_saliency.app import notebooks

pytestmark = [pytest.mark.notebooks, pytest.mark.integration]

NUMBERS = sorted(p.name[:2] for p in (config.repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SMOKE = config.get_profile("smoke")
FIRST = SMOKE.saliency_conditions_list()[0].name

#: what each notebook promises to write (under the smoke profile's output folder)
OUTPUTS = {
    "00": ["tables/models.csv"],
    "01": ["tables/datasets.csv", "figures/datasets_spectrograms.png"],
    "02": ["tables/quality.csv"],
    "03": ["tables/attention_mass.csv", "figures/ca_mass_by_layer.png", f"figures/ca_heads_{FIRST}.pdf"],
    "04": ["tables/saliency_runs.csv", f"figures/sal_vs_ca_{FIRST}.png", f"figures/sal_x_{FIRST}.png"],
    "05": ["tables/convergence.csv", "tables/reliability_budget.csv", "figures/convergence.png",
           "tables/disattenuation_validation.csv", "figures/disattenuation_validation.png",
           "tables/budget_rule.csv"],
    "06": ["tables/correlation_all.csv", "tables/correlation.csv", "tables/context_mixing.csv",
           "tables/correlation_summary.csv", "figures/rho_by_layer.png", f"figures/rho_heads_{FIRST}.png"],
    "07": ["tables/deletion.csv", "tables/deletion_floors.csv", "tables/deletion_low_end.csv", "tables/insertion.csv",
           "tables/reducers.csv", "figures/deletion_curves.png"],
    "08": ["REPORT.md", "tables/claims.csv", "tables/explanation_kinds.csv"],
    "09": ["tables/timestamps.csv", "tables/reference_disagreement.csv", "tables/alignment_heads.csv",
           "figures/timestamp_errors.png", f"figures/word_boundaries_{FIRST}.png", "REPORT.md"],
    "10": ["tables/sensitivity.csv", f"tables/sensitivity_agreement_{SMOKE.sensitivity_conditions[0]}.csv",
           "tables/sensitivity_agreement_intervals.csv",
           "figures/sensitivity.png", f"figures/sensitivity_agreement_{SMOKE.sensitivity_conditions[0]}.png",
           "REPORT.md"],
    "11": ["tables/heads_cost.csv", "tables/heads_held_out.csv", "tables/heads_curve.csv", "figures/heads_curve.png",
           "heads/whisper-tiny.en.timing.json", "heads/whisper-base.agreement.json", "REPORT.md"],
}


def test_notebooks_exist_in_order():
    assert NUMBERS == [f"{i:02d}" for i in range(len(NUMBERS))] and len(NUMBERS) >= 9
    assert set(OUTPUTS) == set(NUMBERS)


@pytest.mark.parametrize("number", NUMBERS)
def test_notebook_writes_what_it_promises(number, tmp_path):
    import nbformat

    start = time.time() - 1
    out = notebooks.run(number, "smoke", output=tmp_path / f"{number}.ipynb")
    base = config.output_dir("smoke")
    for rel in OUTPUTS[number]:
        path = base / rel
        assert path.is_file() and path.stat().st_size > 0, f"notebook {number} did not write {rel}"
        assert path.stat().st_mtime >= start, f"notebook {number} left {rel} from an earlier run"
    nb = nbformat.read(out, as_version=4)
    assert "start_time" not in nb.metadata.get("papermill", {})            # a stable record
    assert not any("execution" in c.metadata for c in nb.cells)
    if number == "06":
        corr = pd.read_csv(base / "tables/correlation_all.csv")
        want = {k.name for k in kinds.selected(SMOKE) if not k.reference}
        assert set(corr["kind"]) == want and set(corr["target"]) == {"SM_X", "SM_H"}
    if number == "07":
        dels = pd.read_csv(base / "tables/deletion.csv")
        assert {"CA", "NormCA", "SM_H", "SM_X full", "SM_X pooled max2d", "IxG_H", "IG_H", "random cells",
                "random columns", "random segments"} <= set(dels.columns)
        floors = pd.read_csv(base / "tables/deletion_floors.csv")
        assert set(floors[floors["explanation"] == "SM_X full"]["floor"]) == {"random segments"}
        assert set(floors[floors["explanation"] == "CA"]["floor"]) == {"random columns"}
    if number == "09":
        assert "## What it means downstream" in (base / "REPORT.md").read_text()
        timing = pd.read_csv(base / "tables/timestamps.csv")
        assert {"CA", "SM_X", "SM_H"} <= set(timing["kind"])
    if number == "10":
        assert "## Sensitivity of the reference" in (base / "REPORT.md").read_text()
        sens = pd.read_csv(base / "tables/sensitivity.csv")
        assert list(sens[sens["reference"] == "SM_X"]["setting"]) == list(SMOKE.sensitivity_settings)
        iv = pd.read_csv(base / "tables/sensitivity_agreement_intervals.csv")
        assert set(iv["reference"]) == {"SM_X", "SM_H"} and set(iv["setting"]) == {"study"}
    if number == "11":
        assert "## Alignment heads for any Whisper" in (base / "REPORT.md").read_text()
        held = pd.read_csv(base / "tables/heads_held_out.csv")
        assert {"shipped", "all", "by timing", "by agreement with SM_H"} == set(held["heads"])
        assert set(held["model"]) == {"whisper-tiny.en", "whisper-base"}
        choice = json.loads((base / "heads/whisper-base.agreement.json").read_text())
        assert choice["model"] == "whisper-base" and choice["method"] == "agreement" and choice["alignment_heads"]
    if number == "08":
        report = (base / "REPORT.md").read_text()
        assert all(f"{k.name}: {k.title}" in report for k in kinds.selected(SMOKE))


def test_a_rerun_from_the_store_rewrites_identical_files(tmp_path):
    """Notebook 08 recomputes every table from stored results: a second run changes no byte."""
    base = config.output_dir("smoke")
    files = [base / "REPORT.md", base / "tables/claims.csv", base / "tables/claims.md",
             base / "tables/explanation_kinds.csv"]
    digest = lambda: [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]  # noqa: E731
    first_nb = notebooks.run("08", "smoke", output=tmp_path / "a.ipynb")
    before = digest()
    second_nb = notebooks.run("08", "smoke", output=tmp_path / "b.ipynb")
    assert digest() == before
    assert first_nb.read_bytes().replace(b"a.ipynb", b"b.ipynb") == second_nb.read_bytes()


def test_a_run_in_its_own_folder_is_compared_table_by_table_with_the_reference(tmp_path, monkeypatch):
    """What ``make reproduce`` does, on one notebook: notebook 06 run into a run folder (its own
    cache, here a copy of the smoke store) writes its tables there, and the comparison with the
    profile's tables says, per table, that they are the same; tables the run did not write are
    named as missing."""
    import shutil

    import pandas as pd

    from crossattn_saliency.app import compare

    run_dir = tmp_path / "reproduced"
    shutil.copytree(config.cache_dir("smoke"), run_dir / "cache" / "smoke")
    monkeypatch.setenv(config.ENV_RUN, str(run_dir))
    notebooks.run("06", "smoke", output=tmp_path / "06.ipynb")
    assert (run_dir / "tables" / "correlation.csv").is_file()
    monkeypatch.delenv(config.ENV_RUN)
    rc = compare.main(["--reference", str(config.output_dir("smoke")), "--run", str(run_dir)])
    table = pd.read_csv(run_dir / "comparison.csv").set_index("table")
    for name in ("correlation", "correlation_all", "context_mixing", "correlation_summary"):
        assert table.loc[name, "status"] == "same", table.loc[name].to_dict()
    assert table.loc["deletion", "status"] == "missing in run" and rc == 1
    assert "tables reproduce the reference" in (run_dir / "comparison.md").read_text()


def test_progress_bars_go_to_the_terminal_behind_a_kernel(monkeypatch, capfd):
    """Under app.notebooks the kernel's bars write to the real standard error (the terminal),
    with rate and time left; elsewhere they are tqdm.auto bars."""
    from crossattn_saliency.core import progress

    monkeypatch.setenv(progress.ENV, "terminal")
    for _ in progress.bar(range(3), desc="SPES SM_X", unit="pert", mininterval=0):
        pass
    err = capfd.readouterr().err
    assert "SPES SM_X" in err and "3/3" in err and "pert/s" in err
    monkeypatch.delenv(progress.ENV)
    assert not progress.to_terminal()


def test_executed_notebooks_name_no_machine_paths(tmp_path):
    """A warning printed by a cell names the file it comes from; the tidied record keeps the path
    relative to the repository (or to the home folder), never the machine's absolute path."""
    import os

    import nbformat

    root = config.repo_root()
    home = os.path.expanduser("~")
    warning = (f"{root}/.venv/lib/python3.11/site-packages/transformers/x.py:1: FutureWarning: old\n"
               f"{home}/.cache/crossattn-saliency/models/m.bin read\n")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=warning)]
    nb.cells = [cell]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    notebooks._tidy(path)
    text = nbformat.read(str(path), as_version=4).cells[0].outputs[0]["text"]
    assert ".venv/lib/python3.11/site-packages/transformers/x.py:1: FutureWarning" in text
    assert "~/.cache/crossattn-saliency/models/m.bin" in text or str(root) in home
    assert str(root) + "/" not in text and (home + "/" not in text or home == "/")
