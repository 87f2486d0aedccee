"""Tables and the study-vs-ours claims, on hand-made result tables."""
from __future__ import annotations

import pandas as pd

from crossattn_saliency import report


def _corr(rho_all: float, heads: list[float], layers: list[float], rho_h: float, cond: str, model: str):
    """Rows shaped like ``CorrelationTable.to_frame()`` (1-based layer/head columns)."""
    rows = []
    for target, base in (("SM_X", rho_all), ("SM_H", rho_h)):
        views = [("all layers", "all", None, None, base), ("alignment heads", "alignment", None, None, base - 0.05)]
        views += [(f"layer {i + 1} of {len(layers)}", "layer", i + 1, None, v) for i, v in enumerate(layers)]
        views += [(f"layer 1 head {i + 1}", "head", 1, i + 1, v) for i, v in enumerate(heads)]
        for label, vk, layer, head, r in views:
            rows.append(dict(condition=cond, model=model, kind="CA", view=label, view_kind=vk, layer=layer,
                             head=head, target=target, rho=r, rho_disattenuated=r * 1.5, ceiling=0.7))
    return rows


def _tables(rho_it: float):
    corr = pd.DataFrame(_corr(0.5, [0.1, 0.2, 0.3], [0.2, 0.4], 0.6, "whisper-base__en-real__asr", "whisper-base")
                        + _corr(rho_it, [0.1, 0.2, 0.3], [0.2, 0.35], 0.55, "whisper-base__it-tts__asr", "whisper-base"))
    mixing = pd.DataFrame([dict(condition=c, kind="CA", gain=0.1, gain_lo=0.05, gain_hi=0.15, gain_disattenuated=0.05)
                           for c in corr["condition"].unique()])
    deletion = pd.DataFrame([dict(condition="c", explanation=e, auc=a) for e, a in
                             [("CA", 40), ("SM_X pooled max2d", 50), ("SM_X full", 90), ("random", 30)]])
    reducers = pd.DataFrame([dict(condition="c", reducer=r, rho=v, auc=a) for r, v, a in
                             [("max2d", 0.5, 55), ("mean2d", 0.4, 50), ("max_mel_mean_time", 0.45, 52)]])
    quality = pd.DataFrame([{"model": "whisper-base", "set": "en-real", "task": "ASR", "language": "en",
                             "speech": "real", "WER (%)": 5.0}])
    return corr, mixing, deletion, reducers, quality


def test_claims_hold_on_a_table_built_to_agree():
    out = report.claims_table(*_tables(rho_it=0.45)).set_index("claim")
    for claim in ("single_heads", "averaging", "last_layers", "half", "rho_h", "gain", "it_st", "deletion", "reducer"):
        assert out.loc[claim, "verdict"] == "holds", (claim, out.loc[claim].to_dict())
    assert "0.50" in out.loc["half", "ours (raw)"] and "0.75" in out.loc["half", "ours (disattenuated)"]
    assert out.loc["wer", "ours (raw)"].endswith("5.0")
    assert "layer 2 of 2" in out.loc["last_layers", "ours (raw)"]      # layers print 1-based


def test_claims_fail_when_the_numbers_disagree():
    out = report.claims_table(*_tables(rho_it=0.9)).set_index("claim")
    assert out.loc["it_st", "verdict"] == "does not hold"
    assert out.loc["half", "verdict"] == "partly"


def test_save_table_writes_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"a": [1.23456, float("nan")], "b|c": ["x", "y"]})
    csv, md = report.save_table(df, tmp_path / "t.v1", title="T")
    assert csv.name == "t.v1.csv" and md.name == "t.v1.md"
    text = md.read_text()
    assert text.startswith("# T") and "| 1.23 |" in text and "b\\|c" in text


def test_report_markdown_lists_claims_and_tables(tmp_path):
    from crossattn_saliency import config

    claims = report.claims_table(*_tables(rho_it=0.9))
    report.save_table(pd.DataFrame({"x": [1]}), tmp_path / "quality", title="Q")
    text = report.report_markdown(config.get_profile("smoke"), claims, tmp_path)
    assert "## The claims" in text and "| claim | study |" in text and "do not (fully) hold" in text
    assert "**it_st** (does not hold)" in text
    assert "| x |" in text and "table `deletion` not produced" in text


def test_report_method_text_comes_from_the_profile(tmp_path):
    from crossattn_saliency import config

    claims = report.claims_table(*_tables(rho_it=0.45))
    p = config.get_profile("smoke")
    a = report.report_markdown(p, claims, tmp_path)
    b = report.report_markdown(p.with_overrides(reducer="mean2d", spes_perturbations=777), claims, tmp_path)
    method = lambda text: text.split("## How these numbers were made")[1].split("## The claims")[0]  # noqa: E731
    assert "2D max pooling" in method(a) and "2D mean pooling" in method(b) and "2D max pooling" not in method(b)
    assert "777 perturbations" in b
