"""The result store: parameter keys, atomic writes, resume, and loud mismatches."""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency.core import files
from crossattn_saliency.run.store import ParamsMismatch, ResultStore, params_diff


def _arrays(calls: list) -> tuple[dict, dict]:
    calls.append(1)
    return {"x": np.arange(3, dtype=np.float32)}, {"token_ids": [1, 2]}


def test_computes_once_then_reads_back(tmp_path):
    store, calls = ResultStore(tmp_path), []
    a, meta = store.fetch_arrays("sec", "cond/utt", {"n": 1}, lambda: _arrays(calls))
    b, meta2 = store.fetch_arrays("sec", "cond/utt", {"n": 1}, lambda: _arrays(calls))
    assert calls == [1]
    np.testing.assert_array_equal(a["x"], b["x"])
    assert meta["params"] == meta2["params"] == {"n": 1}
    assert (tmp_path / "sec" / "cond" / "utt.npz").is_file()


def test_mismatch_recomputes_with_a_warning_naming_the_field(tmp_path):
    store, calls = ResultStore(tmp_path), []
    store.fetch_arrays("sec", "k", {"n": 1, "seed": 0}, lambda: _arrays(calls))
    with pytest.warns(UserWarning, match=r"n: stored 1, wanted 2"):
        store.fetch_arrays("sec", "k", {"n": 2, "seed": 0}, lambda: _arrays(calls))
    assert calls == [1, 1] and store.recomputed


def test_mismatch_is_an_error_when_asked(tmp_path):
    ResultStore(tmp_path).fetch_json("sec", "k", {"beam": 1}, lambda: {"text": "a"})
    with pytest.raises(ParamsMismatch, match=r"beam: stored 1, wanted 5.*delete it"):
        ResultStore(tmp_path, on_mismatch="error").fetch_json("sec", "k", {"beam": 5}, lambda: {"text": "b"})


def test_identity_fields_must_match_too(tmp_path):
    store, calls = ResultStore(tmp_path, on_mismatch="error"), []
    store.fetch_arrays("sec", "k", {"n": 1}, lambda: _arrays(calls), identity={"token_ids": [1, 2]})
    with pytest.raises(ParamsMismatch, match="token_ids"):
        store.fetch_arrays("sec", "k", {"n": 1}, lambda: _arrays(calls), identity={"token_ids": [1, 3]})


def test_ignored_and_defaulted_parameters(tmp_path):
    assert params_diff({"n": 1, "batch_size": 8}, {"n": 1, "batch_size": 16}, ignore=("batch_size",)) == {}
    assert params_diff({"n": 1}, {"n": 1, "dtype": "float32"}, defaults={"dtype": "float32"}) == {}
    assert params_diff({"levels": (1, 2)}, {"levels": [1, 2]}) == {}
    assert params_diff({"n": 1}, {"n": 1, "dtype": "bfloat16"}) == {"dtype": ("<missing>", "bfloat16")}


def test_a_failed_computation_leaves_no_file(tmp_path):
    store = ResultStore(tmp_path)

    def boom() -> dict:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        store.fetch_json("sec", "k", {"n": 1}, boom)
    assert not list(tmp_path.rglob("*.json"))

    def half_written(obj, path):  # a writer that dies midway: the atomic rename never happens
        with files.atomic_path(path, ".npz") as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.fetch("sec", "k2", {"n": 1}, lambda: 1, half_written, lambda p: 1)
    assert not list(tmp_path.rglob("*k2*"))


@pytest.mark.parametrize("key", ["", "a//b", ".hidden", "cond/.x"])
def test_bad_keys_are_refused(tmp_path, key):
    with pytest.raises(ValueError, match="cannot name a file"):
        ResultStore(tmp_path).path("sec", key)


def test_bad_mismatch_policy(tmp_path):
    with pytest.raises(ValueError, match="recompute"):
        ResultStore(tmp_path, on_mismatch="ignore")
