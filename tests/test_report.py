"""Tables and the study-vs-ours claims, on hand-made result tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crossattn_saliency.evaluate import claims
from crossattn_saliency.present import report, tables


from crossattn_saliency.evaluate.views import View
from crossattn_saliency.evaluate.results import CorrelationRow, CorrelationTable, DeletionRecord, DeletionTable, MixingRow, Ranking

N_LAYERS, N_HEADS = 2, 3

from crossattn_saliency.core import config as _config

MARGIN = _config.get_profile("smoke").equivalence_margin  # the profile is the only source of the margin


def _row(cond, view, target, rho_utt, dis=None):
    rho_utt = np.asarray(rho_utt, dtype=float)
    m = float(np.tanh(np.arctanh(rho_utt).mean()))
    d, lo, hi = dis if dis is not None else (m * 1.2, m * 1.2 - 0.05, m * 1.2 + 0.05)
    n = len(rho_utt)
    if n < 8:
        lo = hi = float("nan")
    return CorrelationRow(condition=cond, model=cond.split("__")[0], set=cond.split("__")[1], task="transcribe",
                          kind="CA", view=view, n_layers=N_LAYERS, target=target, reducer="max2d",
                          normalization="token_z", utterances=n, rho=m, rho_lo=m - 0.05 if n >= 8 else float("nan"),
                          rho_hi=m + 0.05 if n >= 8 else float("nan"), rho_pooled=m, spearman=m, reliability=0.7,
                          ceiling=0.84, rho_disattenuated=d, dis_lo=lo, dis_hi=hi, rho_null=0.0, rho_corrected=m,
                          r_half=0.5, r_half_null=0.02, rho_per_utterance=tuple(rho_utt))


def _condition(cond, n, rho_all=0.5, rho_h=0.55, dis_x=None, dis_h=None, seed=0):
    """Rows of one condition: heads below the average, the last layer best."""
    rng = np.random.default_rng(seed)
    noise = lambda: rng.normal(0, 0.01, n)  # noqa: E731
    rows = []
    for target, base, dis in (("SM_X", rho_all, dis_x), ("SM_H", rho_h, dis_h)):
        rows.append(_row(cond, View("all"), target, base + noise(), dis))
        rows.append(_row(cond, View("last", n=1), target, base + noise()))
        rows += [_row(cond, View("layer", layer=l), target, base - 0.2 + 0.15 * l + noise()) for l in range(N_LAYERS)]
        rows += [_row(cond, View("head", layer=l, head=h), target, base - 0.3 + 0.05 * h + noise())
                 for l in range(N_LAYERS) for h in range(N_HEADS)]
    return rows


def _deletion(cond, n, aucs):
    recs = []
    for u in range(n):
        for rank, auc in aucs.items():
            recs.append(DeletionRecord(cond, f"u{u}", rank, (0.0, 100.0), (0.0, 0.0), (0, 1), ("", ""),
                                       auc + 0.5 * np.sin(u + len(rank.variant))))
    return recs


AGREE = {Ranking("CA", "expanded"): 40, Ranking("SM_X", "pooled max2d"): 53, Ranking("SM_X", "full"): 90,
         **{Ranking("random", f"columns {d}"): 30 + d for d in (1, 2, 3)},
         **{Ranking("random", f"segments {d}"): 60 + d for d in (1, 2, 3)}, Ranking("random", "cells"): 50}


def _tables(n=12, rho_it=0.45, dis_x=None, en_tts=True):
    conds = ["whisper-base__en-real__asr", "whisper-base__it-tts__asr", "whisper-base__it-tts__st"]
    rows = _condition(conds[0], n, dis_x=dis_x)
    rows += _condition(conds[1], n, rho_all=rho_it, dis_x=dis_x, seed=1)
    rows += _condition(conds[2], n, rho_all=rho_it - 0.05, dis_x=dis_x, seed=2)  # dis 0.48 +- 0.05: inside the widened range
    if en_tts:
        rows += _condition("whisper-base__en-tts__asr", n, rho_all=0.6, dis_x=dis_x or (0.6, 0.55, 0.65),
                           dis_h=(0.65, 0.6, 0.7), seed=3)
    corr = CorrelationTable(rows)
    mixing = [MixingRow(c, "whisper-base", "CA", "all layers", n, 0.5, 0.62, 0.12, 0.08, 0.16, 0.1, 0.05, 0.15)
              for c in conds]
    dels = DeletionTable(_deletion(conds[0], n, AGREE))
    reducers = pd.DataFrame([dict(condition="c", reducer=r, rho=v, auc=a) for r, v, a in
                             [("max2d", 0.5, 55), ("mean2d", 0.4, 50), ("max_mel_mean_time", 0.45, 52)]])
    quality = pd.DataFrame([{"model": "whisper-base", "set": "en-real", "task": "ASR", "language": "en",
                             "speech": "real", "WER (%)": 5.0}])
    return corr, mixing, dels, reducers, quality


def test_claims_hold_on_a_table_built_to_agree():
    out = claims.claims_table(*_tables(), n_bootstrap=300, margin=MARGIN).set_index("claim")
    for claim in ("single_heads", "averaging", "last_layers", "half", "rho_h", "gain", "it_st", "deletion",
                  "reducer"):
        assert out.loc[claim, "verdict"] == "holds", (claim, out.loc[claim].to_dict())
    assert "0.60 [0.55, 0.65] (n=12)" in out.loc["half", "ours (corrected)"]
    assert out.loc["wer", "ours (raw)"].endswith("5.0")
    assert "best layer 2 of 2" in out.loc["last_layers", "ours (raw)"]      # layers print 1-based
    assert "chosen on whisper-base__en-real__asr" in out.loc["best_rho_x", "ours (raw)"]
    # Spearman has no reliability correction: it stays out of the claims table (issue 23, item 6)
    assert "Spearman" not in out.loc["half", "ours (raw)"] and "pooled" in out.loc["half", "ours (raw)"]
    assert not any("Spearman" in str(v) for v in out.to_numpy().ravel())
    assert "CA +" in out.loc["deletion", "ours (corrected)"]   # gap against the same-shape floor


@pytest.mark.parametrize("dis, outcome", [
    ((0.55, 0.50, 0.60), "holds"),
    ((0.30, 0.25, 0.35), "holds, smaller than the study"),
    ((0.85, 0.80, 0.90), "holds, larger than the study"),   # wholly above 0.64 + margin, clear of it after Holm
    ((0.10, -0.05, 0.25), "undecided"),
    ((-0.30, -0.40, -0.20), "does not hold"),
])
def test_each_outcome_of_the_half_claim_on_hand_made_intervals(dis, outcome):
    out = claims.claims_table(*_tables(dis_x=dis), n_bootstrap=100, margin=MARGIN).set_index("claim")
    assert out.loc["half", "verdict"] == outcome


def test_below_eight_utterances_nothing_is_decided():
    out = claims.claims_table(*_tables(n=3), n_bootstrap=100, margin=MARGIN).set_index("claim")
    for claim in ("single_heads", "averaging", "last_layers", "half", "rho_h", "gain", "deletion", "reducer"):
        assert out.loc[claim, "verdict"] == "not testable at this size", claim
    assert "no interval below 8 utterances" in out.loc["half", "ours (corrected)"]


def test_language_and_task_compare_like_with_like():
    out = claims.claims_table(*_tables(en_tts=False), n_bootstrap=100, margin=MARGIN).set_index("claim")
    assert "no whisper-base__en-tts__asr saliency" in out.loc["it_st", "ours (raw)"]
    assert "same audio" in out.loc["it_st", "ours (raw)"]
    out = claims.claims_table(*_tables(rho_it=0.9), n_bootstrap=100, margin=MARGIN).set_index("claim")
    assert "language (whisper-base): does not hold" in out.loc["it_st", "verdict"]


def test_save_table_writes_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"a": [1.23456, float("nan")], "b|c": ["x", "y"]})
    csv, md = tables.save_table(df, tmp_path / "t.v1", title="T")
    assert csv.name == "t.v1.csv" and md.name == "t.v1.md"
    text = md.read_text()
    assert text.startswith("# T") and "| 1.23 |" in text and "b\\|c" in text


def test_report_markdown_lists_claims_and_tables(tmp_path):
    from crossattn_saliency.core import config

    table = claims.claims_table(*_tables(rho_it=0.9), n_bootstrap=100, margin=MARGIN)
    tables.save_table(pd.DataFrame({"x": [1]}), tmp_path / "quality", title="Q")
    text = report.report_markdown(config.get_profile("smoke"), table, tmp_path)
    assert "## The claims" in text and "| claim | study |" in text and "do not (clearly) hold" in text
    assert "**it_st**, not holding in: language (whisper-base): does not hold" in text
    assert "| x |" in text and "table `deletion` not produced" in text


def test_report_method_text_comes_from_the_profile(tmp_path):
    from crossattn_saliency.core import config

    table = claims.claims_table(*_tables(), n_bootstrap=100, margin=MARGIN)
    p = config.get_profile("smoke")
    a = report.report_markdown(p, table, tmp_path)
    b = report.report_markdown(p.with_overrides(reducer="mean2d", spes_perturbations=777), table, tmp_path)
    method = lambda text: text.split("## How these numbers were made")[1].split("## The claims")[0]  # noqa: E731
    assert "2D max pooling" in method(a) and "2D mean pooling" in method(b) and "2D max pooling" not in method(b)
    assert "777 perturbations" in b
    c = report.report_markdown(p.with_overrides(min_utterances=5, null_permutations=11), table, tmp_path)
    assert "from 5 utterances on" in method(c) and "11 permutations" in method(c)


def test_a_failed_disattenuation_check_moves_verdicts_to_raw_values(tmp_path):
    from crossattn_saliency.core import config

    t = _tables(dis_x=(0.55, 0.50, 0.60))       # disattenuated in range, raw (0.5 +- 0.05) in range too
    ok = claims.claims_table(*t, n_bootstrap=100, margin=MARGIN, disattenuation_ok=True).set_index("claim")
    t2 = _tables(dis_x=(0.20, 0.15, 0.25))       # disattenuated below the range, raw still in range
    fail = claims.claims_table(*t2, n_bootstrap=100, margin=MARGIN, disattenuation_ok=False).set_index("claim")
    used = claims.claims_table(*t2, n_bootstrap=100, margin=MARGIN, disattenuation_ok=True).set_index("claim")
    assert ok.loc["half", "verdict"] == "holds"
    assert used.loc["half", "verdict"] == "holds, smaller than the study"
    assert "whisper-base__en-real__asr: holds;" in fail.loc["half", "verdict"]   # decided on raw values
    p = config.get_profile("smoke")
    text = report.report_markdown(p, fail.reset_index(), tmp_path, disattenuation_ok=False)
    assert "shown but not used for verdicts" in text and "raw (the disattenuation check" in text


def test_sensitivity_section_sets_settings_beside_conditions_and_judges_agreement_by_its_interval():
    from crossattn_saliency.evaluate import claims
    from crossattn_saliency.present import report, tables
    from crossattn_saliency.evaluate import results
    from crossattn_saliency.evaluate.views import View

    rows = [{"condition": "tiny", "reference": "SM_X", "setting": s, "rho": r, "rho disattenuated": d,
             "seconds for 0.5": sec, "utterances": 8}
            for s, r, d, sec in (("study", 0.30, 0.60, 100.0), ("p0.2", 0.40, 0.62, 40.0),
                                 ("levels-one", 0.20, 0.50, 200.0))]

    def intervals(*agree):  # rows of sensitivity.agreement_intervals for the study's setting
        return {"tiny": pd.DataFrame([{"setting": "study", "with": w, "agreement": a, "lo": lo, "hi": hi,
                                       "relative": rel, "rel lo": rlo, "rel hi": rhi, "interval": "tokens of 8 utterance(s)"}
                                      for w, a, lo, hi, rel, rlo, rhi in agree])}

    nan = float("nan")
    iv = intervals(("p0.2", 0.97, 0.96, 0.99, nan, nan, nan), ("levels-one", 0.80, 0.70, 0.90, nan, nan, nan))

    def row(cond, view, rho, dis):
        return results.CorrelationRow(condition=cond, model="m", set="s", task="asr", kind="CA", view=view, n_layers=4,
                                     target="SM_X", reducer="max2d", normalization="token_z", utterances=8, rho=rho,
                                     rho_lo=np.nan, rho_hi=np.nan, rho_pooled=rho, spearman=rho, reliability=0.5,
                                     ceiling=0.7, rho_disattenuated=dis, dis_lo=np.nan, dis_hi=np.nan, rho_null=0.0,
                                     rho_corrected=rho, r_half=0.3, r_half_null=0.0)
    corr = results.CorrelationTable([row("tiny", View("all"), 0.30, 0.6), row("base", View("all"), 0.10, 0.2),
                                    row("tiny", View("layer", layer=0), 0.05, 0.1),
                                    row("tiny", View("layer", layer=3), 0.45, 0.9)])
    text = report.sensitivity_section(pd.DataFrame(rows), iv, corr)
    assert "across 3 SPES settings raw +0.20 to +0.40 (spread 0.20), disattenuated +0.50 to +0.62 (spread 0.12)" in text
    assert "across the 2 conditions of the study's setting raw +0.10 to +0.30 (spread 0.20)" in text
    assert "across its 2 single layers raw +0.05 to +0.45 (spread 0.40)" in text
    assert "over the tokens of 8 utterance(s)) p0.2 0.97 [0.96, 0.99]; levels-one 0.80 [0.70, 0.90]." in text
    assert "different maps levels-one; undecided none; equivalent p0.2." in text
    assert "Equivalent and cheaper for the same reliability (the study's cost timed in notebook 04): p0.2." in text
    # an interval that reaches below the threshold leaves it undecided, and nothing is named
    iv = intervals(("p0.2", 0.97, 0.93, 0.99, nan, nan, nan), ("levels-one", 0.80, 0.70, 0.90, nan, nan, nan))
    text = report.sensitivity_section(pd.DataFrame(rows), iv, corr)
    assert "undecided p0.2; equivalent none." in text and "the study's settings stay the reference" in text
    # the study's setting again with other masks: a yardstick beside the settings, not one of them; the verdict
    # uses the agreement relative to it, and the study's cost as timed in the same run
    rows = [r for r in rows if r["setting"] != "levels-one"] + [
        {"condition": "tiny", "reference": "SM_X", "setting": "repeat", "rho": 0.32, "rho disattenuated": 0.58,
         "seconds for 0.5": 50.0, "utterances": 8}]
    rows[0]["seconds for 0.5"] = 30.0                           # the study's maps, timed in another run
    iv = intervals(("p0.2", 1.04, 1.00, 1.08, 0.96, 0.955, 0.99), ("repeat", 1.08, 1.05, 1.12, nan, nan, nan))
    text = report.sensitivity_section(pd.DataFrame(rows), iv, corr)
    assert "across 2 SPES settings raw +0.30 to +0.40" in text
    assert "the study's setting again with other masks raw +0.32 vs +0.30, disattenuated +0.58 vs +0.60" in text
    assert "p0.2 1.04 [1.00, 1.08], relative 0.96 [0.95, 0.99]." in text
    assert "the same map in truth, agrees with it at 1.08 [1.05, 1.12]" in text
    assert "(the study's cost timed by its repeat): p0.2." in text
    iv["tiny"].loc[iv["tiny"]["with"] == "p0.2", "rel lo"] = 0.90   # raw agreement above 0.95, relative not
    assert "undecided p0.2" in report.sensitivity_section(pd.DataFrame(rows), iv, corr)
    # fewer utterances than an equivalent needs: a candidate on these clips, not a named option
    few = [{**r, "utterances": 3} for r in rows]
    iv["tiny"].loc[iv["tiny"]["with"] == "p0.2", "rel lo"] = 0.955
    text = report.sensitivity_section(pd.DataFrame(few), iv, corr, min_utterances=8)
    assert "on these 3 clip(s): p0.2, a candidate only: naming an equivalent needs 8 utterances." in text
    # SM_H agreements are listed beside, the verdict stays on SM_X
    h = pd.DataFrame([{"reference": "SM_H", "setting": "study", "with": "repeat", "agreement": 0.99, "lo": 0.97,
                       "hi": 1.03, "relative": float("nan"), "rel lo": float("nan"), "rel hi": float("nan"),
                       "interval": "tokens of 3 utterance(s)"}])
    both = {"tiny": pd.concat([iv["tiny"].assign(reference="SM_X"), h], ignore_index=True)}
    text2 = report.sensitivity_section(pd.DataFrame(few), both, corr, min_utterances=8)
    assert "- tiny: SM_H maps under other settings agree with the study's at repeat 0.99 [0.97, 1.03]." in text2
    assert "on these 3 clip(s): p0.2, a candidate only" in text2
    assert "rho(CA, SM_H) of the main tables divides by the same kind of reliability once: on these clips it is off " \
           "by a factor of about sqrt(0.99) = 0.99 (too low)." in text2
    assert "rho(CA, SM_X) of the main tables" in text2 and "sqrt(1.08) = 1.04 (too high)." in text2
    assert text2.index("- tiny: SM_X maps") < text2.index("- tiny: SM_H maps")   # the verdict first


# --------------------------------------------------------------------------- issue 23: verdicts that survive review


def _section(text):
    return text.split("## Claims that do not (clearly) hold here")[1].split("\n## ")[0]


def test_failures_section_names_only_the_conditions_that_do_not_hold(tmp_path):
    from crossattn_saliency.core import config

    # Italian conditions far below the study's range, English ones inside it
    table = claims.claims_table(*_tables(rho_it=0.25), n_bootstrap=100, margin=MARGIN)
    half = table.set_index("claim").loc["half"]
    assert "whisper-base__en-real__asr: holds" in half["verdict"]       # holds in some conditions, not all
    text = report.report_markdown(config.get_profile("smoke"), table, tmp_path)
    section = _section(text)
    line = next(x for x in section.splitlines() if x.startswith("- **half**"))
    assert "whisper-base__it-tts__asr: holds, smaller than the study" in line
    assert "whisper-base__it-tts__st: holds, smaller than the study" in line
    assert "en-real" not in line and "en-tts" not in line                # the conditions that hold are not named
    assert "- **averaging**" not in section                              # holds everywhere: not listed
    assert "| not holding here |" not in text                            # the claims table does not repeat it


def test_holm_reads_a_decision_near_an_edge_undecided_and_the_report_says_so(tmp_path):
    from crossattn_saliency.core import config

    # 0.60 [0.55, 0.67]: inside 0.40-0.69 at its own 95% level, p about 0.01 at the upper edge
    table = claims.claims_table(*_tables(dis_x=(0.60, 0.55, 0.67)), n_bootstrap=100, margin=MARGIN)
    out = table.set_index("claim")
    assert out.loc["half", "verdict"] == "undecided" and out.loc["half", "undecided by Holm"] == 4
    assert "decides as \"holds\" at its own 95% level, not after Holm" in out.loc["half", "not holding here"]
    n = int(table["decisions"].sum())
    assert n == out.loc[["single_heads", "averaging", "last_layers", "best_rho_x", "half", "rho_h", "gain", "it_st",
                         "deletion"], "decisions"].sum() and out.loc["reducer", "decisions"] == 0
    assert out.loc["half", "decisions"] == 4 and out.loc["it_st", "decisions"] == 2
    text = report.report_markdown(config.get_profile("smoke"), table, tmp_path)
    assert f"rest on {n} interval decisions" in text and f"Holm's step-down over all {n}" in text
    assert f"{int(table['undecided by Holm'].sum())} decision(s) that hold at their own 95% level" in text
    assert "widened by 0.05 on each side" in text
    text2 = report.report_markdown(config.get_profile("smoke").with_overrides(equivalence_margin=0.1), table, tmp_path)
    assert "widened by 0.1 on each side" in text2


def test_the_margin_is_required_and_widens_the_study_range():
    with pytest.raises(TypeError):
        claims.claims_table(*_tables(), n_bootstrap=100)                 # no default: the profile passes it
    # 0.41 [0.39, 0.43] with the study's 0.45-0.64: undecided at margin 0.05 (0.39 < 0.40), holds at 0.1
    t = _tables(dis_x=(0.41, 0.39, 0.43))
    assert claims.claims_table(*t, n_bootstrap=100, margin=MARGIN).set_index("claim").loc["half", "verdict"] == \
        "undecided"
    assert claims.claims_table(*t, n_bootstrap=100, margin=0.1).set_index("claim").loc["half", "verdict"] == "holds"
    assert claims.STUDY_RANGES["best_rho_x"] == (0.588, 0.633)           # the study's own figures, not widened


def _with_heads(corr, cond, offsets, n=12, seed=5):
    """``corr`` with the SM_X head rows of ``cond`` replaced: head i at all layers + offsets[i] per utterance."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    allr = corr.get(cond, "CA", "SM_X", View("all"))
    a = np.asarray(allr.rho_per_utterance)
    heads = [(l, h) for l in range(N_LAYERS) for h in range(N_HEADS)]
    new = {(l, h): _row(cond, View("head", layer=l, head=h), "SM_X", a + off + rng.normal(0, 0.01, a.size))
           for (l, h), off in zip(heads, offsets)}
    rows = [new.get((r.view.layer, r.view.head), r) if (r.condition == cond and r.target == "SM_X"
            and r.view is not None and r.view.scope == "head") else r for r in corr.rows]
    return CorrelationTable(rows)


@pytest.mark.parametrize("offsets, outcome, below, above", [
    ((-0.3, -0.3, -0.2, -0.2, -0.1, -0.1), "holds", 6, 0),
    ((-0.3, -0.3, -0.3, 0.0, 0.0, 0.0), "undecided", 3, 0),          # half the heads below: not more than half
    ((-0.6, -0.6, 0.05, 0.05, 0.05, 0.05), "does not hold", 2, 4),   # most heads above the average...
])
def test_single_heads_is_decided_head_by_head(offsets, outcome, below, above):
    corr, *rest = _tables()
    cond = "whisper-base__en-real__asr"
    out = claims.claims_table(_with_heads(corr, cond, offsets), *rest, n_bootstrap=200, margin=MARGIN)
    out = out.set_index("claim")
    per = dict(x.split(": ", 1) for x in out.loc["single_heads", "verdict"].split("; ")) \
        if ";" in out.loc["single_heads", "verdict"] else {cond: out.loc["single_heads", "verdict"]}
    assert per[cond] == outcome
    assert f"{cond}: {below} of 6 heads surely below all layers, {above} surely above" in out.loc["single_heads", "ours (raw)"]
    if outcome == "does not hold":  # ...while the mean head is below it: averaging holds on the same heads
        assert "does not hold" not in out.loc["averaging", "verdict"]
        assert "holds" in out.loc["averaging", "verdict"]


def test_the_summary_has_one_row_per_claim_and_one_word_per_condition_and_a_forest_plot(tmp_path, monkeypatch):
    from crossattn_saliency.present import assembly

    monkeypatch.setenv(_config.ENV_ROOT, str(tmp_path))
    table = claims.claims_table(*_tables(), n_bootstrap=300, margin=MARGIN)
    summ = claims.summary(table, label=lambda c: c.replace("whisper-", ""))
    assert list(summ["claim"]) == list(table["claim"])
    half = summ.set_index("claim").loc["half"]
    assert half["base__en-real__asr"] == "holds" and set(summ.columns) >= {"claim", "overall"}
    assert all(len(str(v)) <= 24 for v in summ.drop(columns=["claim"]).to_numpy().ravel())
    assert summ.set_index("claim").loc["wer", "overall"] == "comparable models only"
    est = table.attrs["estimates"]
    assert set(est) >= {"half", "rho_h", "best_rho_x", "gain", "averaging"}
    v, lo, hi = est["half"]["whisper-base__en-real__asr"]
    assert lo <= v <= hi
    p = _config.get_profile("smoke")
    head = assembly.summary_part(table, p, tmp_path / "figures")
    assert head.startswith("# Cross-Attention is Half Explanation") and "| half |" in head
    assert (tmp_path / "figures" / "claims_forest.png").stat().st_size > 0
    assert "base · en-real · ASR" in head                                     # conditions named for people


def test_the_report_is_assembled_from_parts_in_their_order_whatever_reruns_first(tmp_path, monkeypatch):
    from crossattn_saliency.present import assembly

    monkeypatch.setenv(_config.ENV_ROOT, str(tmp_path))
    assert assembly.assemble("smoke") is None
    assembly.write_part("smoke", "10", 0, "Sensitivity of the reference", "ten")
    assembly.write_part("smoke", "08", 0, "", "# Title\n\nhead")
    assembly.write_part("smoke", "09", 0, "What it means downstream", "nine")
    first = assembly.assemble("smoke").read_text()
    assert first.index("# Title") < first.index("## What it means downstream") < first.index("## Sensitivity")
    assembly.write_part("smoke", "10", 0, "Sensitivity, renamed", "ten again")   # a partial rerun of 10
    again = assembly.assemble("smoke").read_text()
    assert again.count("## Sensitivity") == 1 and "ten again" in again and again.endswith("ten again\n")
    assert again.index("nine") < again.index("ten again")


def test_the_claims_table_reads_ca_against_the_best_model_blind_baseline():
    import dataclasses

    corr, mixing, dels, reducers, quality = _tables()
    rng = np.random.default_rng(9)
    extra = []
    for cond in dict.fromkeys(r.condition for r in corr.rows):
        for name, level in (("Diagonal", 0.1), ("Energy", 0.3)):        # CA is at 0.45-0.6 against SM_X
            for target in ("SM_X", "SM_H"):
                row = _row(cond, None, target, level + rng.normal(0, 0.01, 12))
                extra.append(dataclasses.replace(row, kind=name))
    out = claims.claims_table(CorrelationTable(corr.rows + extra), mixing, dels, reducers, quality, n_bootstrap=300,
                              margin=MARGIN).set_index("claim")
    assert out.loc["beats_baselines_x", "verdict"] == "holds"
    assert "best baseline Energy 0.30" in out.loc["beats_baselines_x", "ours (raw)"]
    assert "beats_baselines_x" in out.attrs["estimates"]
    plain = claims.claims_table(*_tables(), n_bootstrap=300, margin=MARGIN).set_index("claim")
    assert plain.loc["beats_baselines_x", "verdict"] == "not testable at this size"      # no baseline kinds


# --------------------------------------------------------------------------- clips nested in speakers

def _with_speakers(corr, spk):
    """The rows with the speakers of their condition's utterances (``spk``: condition -> labels)."""
    import dataclasses

    return CorrelationTable([dataclasses.replace(r, speakers=tuple(spk[r.condition])) if r.condition in spk else r
                             for r in corr.rows])


def test_the_claims_table_passes_the_speakers_of_the_rows_through(tmp_path):
    from crossattn_saliency.evaluate import stats

    corr, *rest = _tables()
    real, it_asr, it_st = "whisper-base__en-real__asr", "whisper-base__it-tts__asr", "whisper-base__it-tts__st"
    spk = {real: [f"s{i // 3}" for i in range(12)], it_asr: ["it voice"] * 12, it_st: ["it voice"] * 12,
           "whisper-base__en-tts__asr": ["en voice"] * 12}
    corr_s = _with_speakers(corr, spk)
    row = corr_s.get(real, "CA", "SM_X", View("all"))
    assert row.groups("speaker") == tuple(spk[real]) and row.groups("clip") is None and row.groups(None) is None
    assert "speakers" not in row.record()                                # per-utterance, like rho_per_utterance
    with pytest.raises(ValueError, match="bootstrap clusters"):
        row.groups("utterance")
    nested = claims.claims_table(corr_s, *rest, n_bootstrap=300, margin=MARGIN, clusters="speaker")
    flat = claims.claims_table(corr_s, *rest, n_bootstrap=300, margin=MARGIN, clusters="clip")
    plain = claims.claims_table(corr, *rest, n_bootstrap=300, margin=MARGIN)
    assert nested.attrs["clusters"] == "speaker" and nested.attrs["speakers"][real] == 4
    assert nested.attrs["speakers"][it_asr] == 1 and plain.attrs["speakers"][real] == 0
    # the mean head against all layers, by hand: speakers resampled, then clips
    heads = np.array([r.rho_per_utterance for r in corr_s.select("CA", "SM_X", "head", real)])
    want = stats.paired_estimate(row.rho_per_utterance, heads.mean(axis=0), average="mean", n_bootstrap=300,
                                 groups=spk[real])
    assert "resampling speakers, then clips (4 speakers)" in want.method
    assert nested.attrs["estimates"]["averaging"][real] == (want.value, want.lo, want.hi)
    assert nested.attrs["estimates"]["averaging"][real] != flat.attrs["estimates"]["averaging"][real]
    # "clip" (and no clusters) give today's numbers; one voice resamples clips either way
    pd.testing.assert_frame_equal(flat, plain)
    assert flat.attrs["estimates"] == plain.attrs["estimates"]
    assert nested.attrs["estimates"]["averaging"][it_asr] == flat.attrs["estimates"]["averaging"][it_asr]
    with pytest.raises(ValueError, match="bootstrap_clusters"):
        claims.claims_table(corr_s, *rest, n_bootstrap=100, margin=MARGIN, clusters="speakers")
    # the report: how intervals resample, and "on these clips" for the one-voice conditions
    config = _config
    text = report.report_markdown(config.get_profile("smoke"), nested, tmp_path)
    assert "intervals resample speakers, then clips within each drawn speaker" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("- One speaker:"))
    assert "on these clips" in line and it_asr in line and it_st in line and real not in line
    assert "intervals resample clips as if independent" in report.report_markdown(config.get_profile("smoke"), flat, tmp_path)
    assert "- One speaker:" not in report.report_markdown(config.get_profile("smoke"), plain, tmp_path)


def test_the_profile_decides_what_intervals_resample():
    config = _config
    assert config.Profile.__dataclass_fields__["bootstrap_clusters"].default == "speaker"
    assert {config.get_profile(n).bootstrap_clusters for n in ("smoke", "paper")} == {"speaker"}


def test_correlation_rows_redraw_their_intervals_over_speakers_then_clips():
    from types import SimpleNamespace

    from crossattn_saliency.evaluate import reliability
    from crossattn_saliency.run import correlating

    cfg = _config.get_profile("smoke").with_overrides(n_bootstrap=300, min_utterances=8)
    items = [SimpleNamespace(utt=SimpleNamespace(row={"speaker": f"s{i // 3}"})) for i in range(12)]
    spk = correlating.speakers_of(items)
    assert spk == tuple(f"s{i // 3}" for i in range(12))
    assert correlating.speakers_of(items[:2] + [SimpleNamespace(utt=SimpleNamespace(row={}))]) == ()
    assert correlating._groups(cfg, spk, 12) == spk
    assert correlating._groups(cfg.with_overrides(bootstrap_clusters="clip"), spk, 12) is None
    assert correlating._groups(cfg, (), 12) is None
    rng = np.random.default_rng(0)
    rho = np.repeat([0.2, 0.4, 0.6, 0.8], 3) + 0.01 * rng.standard_normal(12)   # speakers far apart
    cc = reliability.corrected_correlation(rho, np.full(12, 0.02), np.full(12, 0.6), np.full(12, 0.01),
                                           n_bootstrap=300, seed=cfg.seed, min_utterances=8)
    assert correlating._clustered(cfg, cc, None) == (cc.rho.lo, cc.rho.hi, cc.disattenuated.lo, cc.disattenuated.hi)
    one = correlating._clustered(cfg, cc, ("voice",) * 12)                    # one voice: clips, today's numbers
    assert one == pytest.approx((cc.rho.lo, cc.rho.hi, cc.disattenuated.lo, cc.disattenuated.hi))
    lo, hi, dlo, dhi = correlating._clustered(cfg, cc, spk)
    assert hi - lo > cc.rho.hi - cc.rho.lo and dhi - dlo > cc.disattenuated.hi - cc.disattenuated.lo
