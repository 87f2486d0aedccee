"""The sentence under each figure says what the numbers say; the table catalogue writes what it names."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crossattn_saliency.core import config
from crossattn_saliency.evaluate.deletion import DeletionCurve
from crossattn_saliency.present import captions, catalog


def test_conditions_are_named_for_people():
    assert captions.condition_label("whisper-base__it-tts__st") == "base · it-tts · ST"
    assert captions.condition_label("whisper-tiny.en__en-real__asr") == "tiny.en · en-real · ASR"
    assert captions.condition_label("my-model") == "my-model"


def test_head_heatmap_names_the_best_head_and_counts_heads_above_all_layers():
    g = np.array([[0.1, 0.2], [0.6, np.nan]])
    text = captions.head_heatmap("whisper-base__en-real__asr", "CA", {"SM_H": g}, {"SM_H": 0.15})
    assert "layer 2, head 1 (rho 0.60)" in text and "2 of 4 heads above the all-layers value (0.15)" in text
    assert text.startswith("base · en-real · ASR, CA:")
    assert "no head estimable" in captions.head_heatmap("c", "CA", {"SM_X": np.full((2, 2), np.nan)}, {})


def test_rho_by_layer_reports_the_peak_layer():
    text = captions.rho_by_layer({"SM_H": {"whisper-base__en-real__asr": [0.1, 0.5, 0.3]}})
    assert "peak at layer 2 of 3 (0.50)" in text


def test_deletion_caption_interpolates_the_wer_at_the_asked_percent_and_ranks():
    def curve(wer):
        return DeletionCurve(np.array([0.0, 20.0]), np.array(wer, dtype=float), ["", ""], np.array([0, 10]))

    text = captions.deletion_curves("c", {"CA": [curve([0, 40]), curve([0, 60])], "SM_X full": [curve([0, 100])]})
    assert text == "c: WER after deleting 10 % of the input, by ranking: SM_X full 50 %, CA 25 %."


def test_timestamp_caption_picks_the_smallest_median_error():
    t = pd.DataFrame([{"condition": "c", "kind": "CA", "view": "alignment heads", "start_median (ms)": 80.0},
                      {"condition": "c", "kind": "SM_H", "view": "map", "start_median (ms)": 40.0},
                      {"condition": "d", "kind": "SM_H", "view": "map", "start_median (ms)": 1.0}])
    assert captions.timestamp_errors(t, "c") == ("c: smallest median word-start error 40 ms from SM_H; "
                                                  "CA's shipped alignment heads 80 ms.")
    assert "no word matched" in captions.timestamp_errors(t, "e")


def test_reliability_sensitivity_and_agreement_captions_read_their_tables():
    conv = pd.DataFrame({"condition": ["c"] * 4, "utterance": ["u", "u", "v", "v"], "resolution": ["max2d"] * 4,
                         "perturbations": [100, 200, 100, 200], "reliability": [0.2, 0.4, 0.3, 0.6]})
    assert captions.reliability_curves(conv, "max2d", 1600) == \
        "max2d: median reliability 0.50 after 200 perturbations over 2 map(s) (profile budget 1,600)."
    sens = pd.DataFrame({"condition": ["c"] * 3, "setting": ["study", "p0.1", "levels-one"],
                         "rho": [0.3, 0.5, 0.1]})
    assert "from 0.10 (levels-one) to 0.50 (p0.1), the study's setting 0.30" in captions.sensitivity(sens, "rho")
    m = pd.DataFrame([[1.0, 0.9, np.nan], [0.9, 1.0, 0.7], [np.nan, 0.7, 1.0]],
                     index=["study", "a", "b"], columns=["study", "a", "b"])
    assert captions.agreement("c", m) == "c: agreement with the study setting's maps from 0.90 (a) to 0.90 (a)."


def test_the_catalogue_renders_profile_fields_and_keeps_its_columns(tmp_path):
    p = config.get_profile("smoke")
    stem, title, note = catalog.spec("correlation").render(p)
    assert stem == "correlation" and f"only from {p.min_utterances} utterances on" in note
    df = pd.DataFrame({c: [1.0] for c in catalog.spec("correlation").columns} | {"extra": [2.0]})
    shown = catalog.save("correlation", df, tmp_path, p)
    assert "extra" not in shown.columns
    assert "extra" not in (tmp_path / "correlation.csv").read_text()
    md = (tmp_path / "correlation.md").read_text()
    assert md.startswith(f"# {title}\n\n") and md.endswith(f"\n{note}\n")
    catalog.save("sensitivity_agreement", pd.DataFrame({"a": [1]}), tmp_path, p, condition="x__y__asr")
    assert (tmp_path / "sensitivity_agreement_x__y__asr.md").read_text().startswith(
        "# Disattenuated agreement of SM_X maps between SPES settings (x__y__asr)")
    with pytest.raises(KeyError, match="no table named 'nope'"):
        catalog.spec("nope")
