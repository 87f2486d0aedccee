"""A run is compared with the reference table by table; a reference store holds exactly what was read."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crossattn_saliency.app import compare, reference
from crossattn_saliency.core import config, files
from crossattn_saliency.run.store import ResultStore, export, reads


def _write(folder, name, df):
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "tables" / f"{name}.csv", index=False)


def test_identical_tables_are_the_same_and_a_changed_cell_names_its_row(tmp_path):
    ref = pd.DataFrame({"condition": ["a", "b"], "kind": ["CA", "CA"], "rho": [0.5, 0.25], "note": ["x", "y"]})
    same = compare.compare_table(ref, ref.copy(), "t")
    assert same.status == "same" and same.values == 8 and same.max_abs_diff == 0.0
    run = ref.copy()
    run.loc[1, "rho"] = 0.2501
    got = compare.compare_table(ref, run, "t")
    assert got.status == "differs" and got.cells_beyond == 1 and got.rows_beyond == ["b / CA"]
    assert got.max_abs_diff == pytest.approx(1e-4)
    assert compare.compare_table(ref, run, "t", atol=1e-3).status == "same"
    text = ref.copy()
    text.loc[0, "note"] = "z"
    assert compare.compare_table(ref, text, "t").rows_beyond == ["a / CA"]
    assert compare.compare_table(ref, ref.iloc[:1], "t").status == "shape"
    nan = ref.copy()
    nan.loc[0, "rho"] = np.nan
    assert compare.compare_table(ref, nan, "t").max_abs_diff == float("inf")
    both = nan.copy()
    assert compare.compare_table(nan, both, "t").status == "same"


def test_the_comparison_of_two_folders_is_written_and_printed(tmp_path, capsys):
    ref, run = tmp_path / "ref", tmp_path / "run"
    df = pd.DataFrame({"condition": ["a"], "rho": [0.5]})
    _write(ref, "kept", df)
    _write(run, "kept", df)
    _write(ref, "lost", df)
    _write(run, "new", df)
    rc = compare.main(["--reference", str(ref), "--run", str(run)])
    assert rc == 1
    out = capsys.readouterr().out
    assert "1 of 3 tables reproduce the reference" in out
    table = pd.read_csv(run / "comparison.csv").set_index("table")
    assert table.loc["kept", "status"] == "same" and table.loc["lost", "status"] == "missing in run"
    assert table.loc["new", "status"] == "only in run"
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        compare.compare_folders(ref, tmp_path / "nowhere")


def test_a_store_reads_what_its_root_lacks_from_its_reference_and_logs_every_read(tmp_path):
    def json_record(store, key, value, params):
        return store.fetch_json("hypotheses", key, params, lambda: {"v": value})

    ref = ResultStore(tmp_path / "ref")
    json_record(ref, "c/u1", 1, {"p": 1})
    json_record(ref, "c/u2", 2, {"p": 1})
    layered = ResultStore(tmp_path / "cache", reference=tmp_path / "ref", on_mismatch="error")
    assert json_record(layered, "c/u1", 99, {"p": 1})["v"] == 1           # from the reference, not computed
    assert layered.from_reference and not layered.written
    assert json_record(layered, "c/u2", 7, {"p": 2})["v"] == 7            # stale there: computed into the root
    assert layered.written == [str(tmp_path / "cache" / "hypotheses" / "c" / "u2.json")]
    assert not (tmp_path / "ref" / "hypotheses" / "c" / "u2.json").read_text().count('"v": 7')
    json_record(layered, "c/u1", 99, {"p": 1})
    assert reads(tmp_path / "cache") == ["hypotheses/c/u1.json", "hypotheses/c/u2.json"]
    sizes = export(tmp_path / "cache", tmp_path / "new", reference=tmp_path / "ref")
    got = sorted(p.relative_to(tmp_path / "new").as_posix() for p in (tmp_path / "new").rglob("*.json"))
    assert got == ["hypotheses/c/u1.json", "hypotheses/c/u2.json"] and set(sizes) == {"hypotheses"}
    assert files.read_json(tmp_path / "new" / "hypotheses" / "c" / "u2.json")["v"] == 7


def test_the_reference_store_refuses_a_store_over_its_budget(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path))
    store = ResultStore(config.cache_dir("smoke"))
    store.fetch_arrays("attention", "c/u1", {}, lambda: ({"x": np.random.default_rng(0).random(1000)}, {}))
    monkeypatch.setattr(reference, "BUDGET_MB", 0.001)
    with pytest.raises(ValueError, match="over the reference store's budget"):
        reference.export("smoke")
    assert not reference.store_dir("smoke").exists()
    monkeypatch.setattr(reference, "BUDGET_MB", 60.0)
    assert set(reference.export("smoke")) == {"attention"}


def test_a_run_dir_takes_outputs_and_cache_and_turns_the_reference_store_off(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path))
    (tmp_path / "results" / "store" / "default").mkdir(parents=True)
    assert config.reference_store_dir("default") == tmp_path / "results" / "store" / "default"
    monkeypatch.setenv(config.ENV_RUN, str(tmp_path / "run"))
    assert config.output_dir("default", "tables") == tmp_path / "run" / "tables"
    assert config.cache_dir("default") == tmp_path / "run" / "cache" / "default"
    assert config.reference_store_dir("default") is None
    assert reference.reproduced_dir("default") == tmp_path / "results" / "reproduced" / "default"
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        reference.adopt("default")
