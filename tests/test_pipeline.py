"""The pipeline end to end on a tiny random Whisper and synthetic rows: every registered
kind is computed, stored once, compared, ranked for deletion and reported."""
from __future__ import annotations

import contextlib
import hashlib
import json

import numpy as np

import pytest

from crossattn_saliency.core import config
from crossattn_saliency.explain import kinds
from crossattn_saliency import run
from crossattn_saliency.run import context as run_context
from crossattn_saliency.run import deleting, explaining, keys, validating
from crossattn_saliency.evaluate import claims
from crossattn_saliency.present import report
from crossattn_saliency.models import decoding
from crossattn_saliency.explain.explanation import Explanation
from crossattn_saliency.evaluate.views import View
from crossattn_saliency.run.store import ResultStore, read_meta

KINDS = ("SM_X", "SM_H", "CA", "NormCA", "IxG_X", "IG_X", "IxG_H", "IG_H")


def _rows(n: int = 2) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"id": f"spk/u{i}", "audio": (rng.standard_normal(int((0.6 + 0.2 * i) * 16000)) * 0.1).astype(np.float32),
             "sampling_rate": 16000, "transcript": "a b c", "translation_en": "", "synthetic": True}
            for i in range(n)]


@contextlib.contextmanager
def tiny_setting(tiny_model_dir, root, **overrides):
    """A smoke profile on the tiny random model and two noise utterances, its store under ``root``
    (``overrides``: more profile fields, e.g. the kinds); yields ``(profile, condition)``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.ENV_ROOT, str(root))
        mp.setattr(run_context, "dataset", lambda profile, name: _rows())
        # a random model rambles up to the window's 448 tokens: keep its hypotheses short
        real_decode = decoding.decode
        mp.setattr(decoding, "decode",
                   lambda *a, **k: real_decode(*a, **{**k, "max_new_tokens": min(k.get("max_new_tokens") or 6, 6)}))
        cond = config.Condition(str(tiny_model_dir), "toy", "transcribe", "en")
        cfg = config.get_profile("smoke", **{**dict(
            conditions=[cond], saliency_conditions=[cond.name], beam_size=1, spes_perturbations=16,
            spes_h_perturbations=16, spes_batch_size=8, saliency_utterances=2, deletion_utterances=1, deletion_step=50,
            deletion_beam=1, n_bootstrap=20, on_mismatch="error", dtype="float32", spes_backend="torch"), **overrides})
        yield cfg, cond


@pytest.fixture(scope="module")
def tiny_profile(tiny_model_dir, tmp_path_factory):
    """One store for the module: later tests reuse what earlier ones computed (as notebooks do)."""
    with tiny_setting(tiny_model_dir, tmp_path_factory.mktemp("compendium"), gradient_steps=4, gradient_batch_size=4,
                      explanations=list(KINDS)) as setting:
        yield setting


def _fake_check(calls, model, mean, worst):
    """A backend check that records its (backend, dtype) and reports the given per-token Pearson."""
    from crossattn_saliency.explain import backends

    def check(*a, **k):
        calls.append(a[5:7])
        return backends.BackendCheck(model=model, backend=a[5], dtype=a[6], n_perturbations=64, n_tokens=3,
                                     pearson_mean=mean, pearson_min=worst, seconds_reference=2.0, seconds_backend=1.0)
    return check


def _nontrivial(items):
    """Random tiny models can emit <|endoftext|> at once: keep that visible in failures."""
    assert all(it.utt.hyp.token_ids for it in items)
    return items


def test_every_kind_is_computed_on_the_same_tokens_and_stored_once(tiny_profile, monkeypatch):
    cfg, cond = tiny_profile
    items = _nontrivial(run.explain(cfg, cond, progress=False))
    assert len(items) == 2 and set(items[0].explanations) == set(KINDS)
    eot = run.model_for(cfg, cond).special_ids["eot"]
    for it in items:
        n = len(it.utt.hyp.token_ids) - 1                     # end-of-text dropped once
        for name, e in it.explanations.items():
            assert e.n_tokens == n and eot not in e.token_ids, name
            assert e.grid == kinds.get(name).grid
        assert it["SM_X"].maps.shape[1:] == (it.utt.n_frames, 80)
        assert it["CA"].maps.shape[2:] == (n, int(np.ceil(it.utt.n_frames / 2)))
        assert it["IG_H"].maps.shape == (n, int(np.ceil(it.utt.n_frames / 2)))
    root = config.cache_dir(cfg.name)
    for section in ("hypotheses", "attention", "attention_norm", "saliency_x", "saliency_h", "gradients/IG_X"):
        assert list((root / section).rglob("spk__u0*")), section
    # a second run computes nothing
    monkeypatch.setattr(ResultStore, "fetch", _fail_compute(ResultStore.fetch))
    again = run.explain(cfg, cond, progress=False)
    np.testing.assert_array_equal(again[1]["SM_X"].maps, items[1]["SM_X"].maps)


def _fail_compute(fetch):
    def wrapped(self, section, key, params, compute, save, load, **kw):
        return fetch(self, section, key, params, lambda: pytest.fail(f"recomputed {section}/{key}"), save, load, **kw)
    return wrapped


def test_changed_parameters_are_named(tiny_profile):
    from crossattn_saliency.run.store import ParamsMismatch

    cfg, cond = tiny_profile
    run.explain(cfg, cond, ["SM_H"], n=1, progress=False)
    with pytest.raises(ParamsMismatch, match="n_perturbations: stored 16, wanted 24"):
        run.explain(cfg.with_overrides(spes_h_perturbations=24), cond, ["SM_H"], n=1, progress=False)
    with pytest.warns(UserWarning, match="n_perturbations: stored 16, wanted 24.*recomputing"):
        again = run.explain(cfg.with_overrides(spes_h_perturbations=24, on_mismatch="recompute"), cond,
                                 ["SM_H"], n=1, progress=False)
    assert again[0]["SM_H"].provenance.params["n_perturbations"] == 24
    with pytest.warns(UserWarning, match="recomputing"):  # leave the module's store as the other tests expect
        run.explain(cfg.with_overrides(on_mismatch="recompute"), cond, ["SM_H"], n=1, progress=False)


def test_correlation_mixing_deletion_and_report_loop_over_the_registry(tiny_profile, monkeypatch):
    cfg, cond = tiny_profile
    items = _nontrivial(run.explain(cfg, cond, progress=False))
    corr = run.correlation(cfg, cond, items, reducer="max2d")
    df = corr.to_frame()
    assert set(df["target"]) == {"SM_X", "SM_H"}
    assert set(df["kind"]) == set(KINDS) - {"SM_X", "SM_H"}
    heads = df[(df["kind"] == "CA") & (df["view_kind"] == "head") & (df["target"] == "SM_X")]
    assert sorted(zip(heads["layer"], heads["head"]))[:2] == [(1, 1), (1, 2)]     # typed, 1-based columns
    assert corr.head_grid(cond.name, "NormCA", "SM_H").shape == (2, 2)
    # (the random tiny model's SM_X is all zeros in bfloat16: its rho is NaN, not a number made up)
    row = corr.get(cond.name, "CA", "SM_H", View("all"))
    assert -1 <= row.rho <= 1 and row.utterances == 2 and 0 < row.reliability <= 1 or row.reliability <= 0
    mix = run.context_mixing(cfg, cond, items, kind="NormCA")
    assert mix.kind == "NormCA" and mix.utterances == 2
    assert np.isnan(mix.rho_SM_X) or mix.gain == pytest.approx(mix.rho_SM_H - mix.rho_SM_X)

    seen = []
    real_batch = decoding.decode_batch

    def counting(loaded, feats, *a, **k):
        seen.extend(hashlib.sha1(np.ascontiguousarray(f).tobytes()).hexdigest() for f in feats)
        return real_batch(loaded, feats, *a, **k)

    monkeypatch.setattr(decoding, "decode_batch", counting)
    dels = run.deletion(cfg, cond, items, reference_reducers=("max2d", "mean2d"), progress=False)
    # the intact and the all-deleted inputs are shared by every ranking of an utterance: decoded once
    assert len(seen) == len(set(seen))
    model = deleting.deletion_model(cfg, cond)
    assert str(model.model.dtype) == f"torch.{cfg.deletion_precision}"
    assert model.model is not run.model_for(cfg, cond).model and model.model.config._attn_implementation == "sdpa"
    labels = set(dels.to_frame()["explanation"])
    assert {"CA", "NormCA", "SM_H", "IG_H", "SM_X pooled max2d", "SM_X pooled mean2d", "SM_X full",
            "IG_X pooled max2d", "IG_X full", "random cells"} <= labels
    # matched floors: seeded draws of random encoder columns and of random segments of the SM_X run
    draws = cfg.deletion_floor_draws
    per_utt = dels.to_frame().groupby("utterance")["explanation"].apply(list)
    for got in per_utt:
        assert got.count("random columns") == draws and got.count("random segments") == draws
    gaps = {(g["explanation"], g["floor"]) for g in dels.gaps(n_bootstrap=50)}
    assert ("CA", "random columns") in gaps and ("SM_X full", "random segments") in gaps
    assert all(g["faithful"] == "not testable at this size" for g in dels.gaps(n_bootstrap=50))
    for r in dels.records:
        assert r.wer[0] == 0.0 and r.percents[0] == 0.0     # reference = the intact decode, same settings
    costs = run.explanation_costs(cfg, {cond.name: items})
    table = claims.kinds_table(corr, dels, costs)
    assert set(table["kind"]) == set(KINDS) - {"SM_X", "SM_H"}
    assert (table["seconds per utterance"] > 0).all()
    # a SPES run shared by two conditions (ASR and ST of one clip) is charged half its time in each
    assert (costs["shared by"] == 1).all()
    info = items[0].explanations["SM_X"].provenance.info
    info["shared_by"] = 2
    halved = run.explanation_costs(cfg, {cond.name: items})
    pick = (halved["utterance"] == items[0].utt.utt_id) & (halved["kind"] == "SM_X")
    assert halved.loc[pick, "shared by"].item() == 2
    assert halved.loc[pick, "seconds"].item() == pytest.approx(costs.loc[pick, "seconds"].item() / 2)
    assert halved.loc[~pick, "seconds"].tolist() == pytest.approx(costs.loc[~pick, "seconds"].tolist())
    del info["shared_by"]


def test_a_kind_registered_on_the_fly_reaches_every_table(tiny_profile):
    """Adding an explanation kind is one register() call: correlation, deletion and the
    report's kinds table pick it up without any other change."""
    cfg, cond = tiny_profile

    def uniform(engine, utt, settings, profile):
        n_pos = int(np.ceil(utt.n_frames / 2))
        m = np.random.default_rng(len(utt.utt_id)).random((len(utt.hyp.token_ids), n_pos))
        return Explanation.from_hypothesis("Toy", utt.utt_id, utt.hyp.token_ids, ["t"] * len(utt.hyp.token_ids),
                                           "encoder", m, utt.n_frames)

    kinds.register(kinds.Kind("Toy", "a toy map", "encoder", uniform, lambda p, utt_id=None: {}))
    try:
        cfg2 = cfg.with_overrides(explanations=("SM_X", "SM_H", "CA", "Toy"))
        items = run.explain(cfg2, cond, progress=False)
        corr = run.correlation(cfg2, cond, items)
        assert "Toy" in set(corr.to_frame()["kind"])
        dels = run.deletion(cfg2, cond, items, progress=False)
        assert "Toy" in set(dels.to_frame()["explanation"])
        assert "Toy" in set(claims.kinds_table(corr, dels)["kind"])
        assert "Toy: a toy map" in report.report_markdown(cfg2, _claims_stub(), config.output_dir(cfg2.name, "tables"))
    finally:
        kinds.unregister("Toy")
    with pytest.raises(ValueError, match="unknown explanation kind"):
        kinds.selected(cfg.with_overrides(explanations=("Toy",)))


def _claims_stub():
    import pandas as pd

    return pd.DataFrame([{"claim": "x", "study": "s", "ours (raw)": "o", "ours (corrected)": "", "verdict": "holds"}])


def test_profile_dtype_and_device_reach_the_models(tiny_profile):
    cfg, cond = tiny_profile
    loaded = run.model_for(cfg.with_overrides(model_dtype="bfloat16"), cond)
    assert str(loaded.model.dtype) == "torch.bfloat16"
    ctx = run.context_for(cfg, cond)
    assert explaining.engine(ctx, kinds.get("SM_X")).dtype == cfg.spes_dtype and explaining.engine(ctx, kinds.get("SM_X")).device == cfg.device


def test_asr_and_translation_of_the_same_audio_share_the_encoder_passes(tiny_profile, monkeypatch, tmp_path):
    """SM_X of two conditions on the same model and audio: computing the first stores the second
    from the same perturbation passes, and its maps equal those of a separate run. (The tiny model
    is English-only, so the sibling condition's hypothesis is made by hand.)"""
    import dataclasses

    from crossattn_saliency.explain import spes_whisper
    from crossattn_saliency.explain.spes_record import SaliencyResult

    cfg, cond = tiny_profile
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path))   # a fresh store
    calls = []
    real = spes_whisper.WhisperSpes.input_shared
    monkeypatch.setattr(spes_whisper.WhisperSpes, "input_shared",
                        lambda self, *a, **k: calls.append(len(a[2])) or real(self, *a, **k))
    ctx = run.context_for(cfg, cond)
    u = next(run.utterances(cfg, cond, 1))
    eot = u.hyp.token_ids[-1]
    other = dataclasses.replace(u.hyp, token_ids=[int(t) for t in u.hyp.token_ids[:-1][::-1]] + [eot] * 2)
    ctx.siblings = lambda utt: [("sibling__toy__st", other)]
    mine = explaining.spes_record(ctx, u, "input").replay(u.features)
    assert calls == [2]                                   # one run for both conditions
    path = ctx.store.path("saliency_x", f"sibling__toy__st/{keys.file_id(u.utt_id)}")
    theirs = SaliencyResult.load(path).replay(u.features)
    assert theirs.token_ids == other.token_ids and theirs.info["shared_by"] == 2
    explaining.spes_record(ctx, u, "input")
    assert calls == [2]                                   # both stored: nothing recomputed
    ws = spes_whisper.WhisperSpes(run.model_for(cfg, cond).model, dtype=cfg.spes_dtype)
    params = kinds.spes_params(cfg, "input").replace(seed=config.derive_seed(cfg.seed, u.utt_id, "input"))
    for hyp, got in ((u.hyp, mine), (other, theirs)):
        alone = ws.input(u.features, u.n_frames, hyp.prompt_ids, hyp.token_ids, params, progress=False)
        tol = 2e-3 * max(np.abs(alone.scores).max(), 1e-12)
        np.testing.assert_allclose(got.scores, alone.scores, rtol=1e-3, atol=tol)
        np.testing.assert_array_equal(got.counts, alone.counts)


def test_disattenuation_validation_runs_high_and_independent_low_budget_maps(tiny_profile):
    cfg, cond = tiny_profile
    df = validating.disattenuation_validation(cfg, cond, "SM_H", factor=3, repeats=2, progress=False)
    assert list(df["map"]) == ["high", "repeat 1", "repeat 2"]
    assert list(df["perturbations"]) == [3 * cfg.spes_h_perturbations] + [cfg.spes_h_perturbations] * 2
    assert df["within"].iloc[0] is None and set(df["within"].iloc[1:]) <= {True, False}
    assert len(set(df["rho"].round(12))) == 3          # independent masks: three different maps
    root = config.cache_dir(cfg.name) / "validation_SM_H"
    n_files = len(list(root.rglob("*.npz")))
    again = validating.disattenuation_validation(cfg, cond, "SM_H", factor=3, repeats=2, progress=False)
    assert len(list(root.rglob("*.npz"))) == n_files == 3
    pd_equal = again.drop(columns=["within"]).equals(df.drop(columns=["within"]))
    assert pd_equal                                     # read back from the store: the same numbers


def test_an_unfaithful_backend_is_refused_before_any_map_is_stored(tiny_profile, monkeypatch, tmp_path):
    """The pipeline admits a SPES backend other than float32 PyTorch only after its check (stored once per
    model); a refused one stops the run with the numbers, and no saliency record is written."""
    from crossattn_saliency.explain import backends

    cfg, cond = tiny_profile
    calls = []

    monkeypatch.setattr(backends, "check", _fake_check(calls, cond.model, 0.9, 0.5))
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path))
    bad = cfg.with_overrides(dtype="bfloat16", spes_backend="torch")
    with pytest.raises(backends.BackendRefused, match="0.9000 per token"):
        run.explain(bad, cond, ["SM_X"], n=1, progress=False)
    assert calls == [("torch", "bfloat16")]
    assert not list((config.cache_dir(bad.name) / "saliency_x").rglob("*.npz"))
    # the refusal is stored: a rerun refuses again without checking again
    with pytest.raises(backends.BackendRefused):
        run.explain(bad, cond, ["SM_X"], n=1, progress=False)
    assert len(calls) == 1


def test_an_admitted_backend_is_checked_once_per_model_whichever_utterance_comes_first(tiny_profile, monkeypatch,
                                                                                        tmp_path):
    """A resumed run (or the model's next condition) starts at another utterance: the model's stored
    check stands, it is not recomputed on the new first utterance."""
    from crossattn_saliency.explain import backends

    cfg, cond = tiny_profile
    calls = []

    monkeypatch.setattr(backends, "check", _fake_check(calls, cond.model, 0.999, 0.99))
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path))
    good = cfg.with_overrides(dtype="bfloat16", spes_backend="torch")
    run.explain(good, cond, ["SM_X"], n=1, progress=False)     # checked on the first utterance
    items = run.explain(good, cond, ["SM_X"], n=2, progress=False)   # starts computing at the second
    assert calls == [("torch", "bfloat16")] and len(items) == 2
    rec, = (config.cache_dir(good.name) / "backend_check").rglob("*.json")
    assert "utterance" not in json.loads(rec.read_text())["params"]


def test_under_auto_a_refused_backend_falls_back_and_the_maps_are_the_fallback_s(tiny_profile, monkeypatch,
                                                                                   tmp_path):
    """``spes_backend="auto"``: a planted unfaithful backend (PyTorch bfloat16 here) is reported and
    the next candidate (float32 PyTorch) used; its maps are those of a run that named float32 PyTorch."""
    from crossattn_saliency.explain import backends, spes_whisper

    cfg, cond = tiny_profile
    calls = []

    monkeypatch.setattr(backends, "check", _fake_check(calls, cond.model, 0.9, 0.5))
    monkeypatch.setattr(spes_whisper, "backend_available", lambda b: b != "openvino")
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path / "auto"))
    auto = cfg.with_overrides(dtype="bfloat16", spes_backend="auto")
    assert backends.candidates("auto", "bfloat16") == [("torch", "bfloat16"), ("torch", "float32")]
    got, = run.explain(auto, cond, ["SM_X"], n=1, progress=False)
    assert calls == [("torch", "bfloat16")]
    rec, = (config.cache_dir(auto.name) / "saliency_x").rglob("*.npz")
    assert read_meta(rec)["params"]["dtype"] == "float32" and read_meta(rec)["params"]["backend"] == "torch"
    run.explain(auto, cond, ["SM_X"], n=1, progress=False)              # the refusal is stored: no second check
    assert calls == [("torch", "bfloat16")]
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path / "named"))
    want, = run.explain(cfg.with_overrides(dtype="float32", spes_backend="torch"), cond, ["SM_X"], n=1,
                        progress=False)
    np.testing.assert_array_equal(got["SM_X"].maps, want["SM_X"].maps)
    assert calls == [("torch", "bfloat16")]                              # float32 PyTorch needs no check


def test_auto_tries_every_backend_that_runs_here_then_float32_pytorch():
    from crossattn_saliency.explain import backends, spes_whisper

    cpu = backends.candidates("auto", "bfloat16", "cpu")
    assert cpu[0] == (backends.resolve("auto", "cpu"), "bfloat16") and cpu[-1] == ("torch", "float32")
    assert ("torch", "bfloat16") in cpu and len(set(cpu)) == len(cpu)
    if spes_whisper.backend_available("openvino"):
        assert [b for b, _ in cpu] == ["openvino", "inductor", "torch", "torch"]
    assert backends.candidates("auto", "bfloat16", "cuda") == [("torch", "bfloat16"), ("torch", "float32")]
    assert backends.candidates("auto", "float32", "cuda") == [("torch", "float32")]
    assert backends.candidates("openvino", "bfloat16") == [("openvino", "bfloat16")]   # named: no fallback


def test_backend_auto_resolves_to_an_installed_backend():
    from crossattn_saliency.explain import backends, spes_whisper

    assert backends.resolve("auto", "cuda") == "torch"
    want = "openvino" if spes_whisper.backend_available("openvino") else "torch"
    assert backends.resolve("auto", "cpu") == want
    with pytest.raises(ValueError, match="spes_backend='onnx' is invalid"):
        backends.resolve("onnx")


def test_spes_settings_are_validated_by_name():
    from crossattn_saliency.run import sensitivity as sens

    assert sens.setting_overrides("p0.2", "input") == {"p_occlude": 0.2}
    assert sens.setting_overrides("study", "encoder") == {}
    with pytest.raises(ValueError, match="unknown SPES setting 'p0.4'"):
        sens.setting_overrides("p0.4", "input")
    with pytest.raises(ValueError, match=r"\['levels'\] do not apply to SM_H"):
        sens.setting_overrides("levels-one", "encoder")
    with pytest.raises(ValueError, match="SpesParams.p_occlude=1.5"):
        sens.setting_overrides({"p_occlude": 1.5}, "input")
    with pytest.raises(ValueError, match="SpesParams.occlusion='silence'"):
        sens.setting_overrides({"occlusion": "silence"}, "input")
    with pytest.raises(ValueError, match="SpesParams.scorer="):
        sens.setting_overrides({"scorer": "l1"}, "encoder")
    assert not sens.applies("occlusion-mean", "encoder") and sens.applies("p0.1", "encoder")


def test_spes_settings_become_reference_kinds_with_their_own_masks(tiny_profile):
    """Each setting's map is another reference beside the study's: its own masks (seed tag), its
    parameters in the store, rho(CA, map) and an agreement matrix over settings from the same code."""
    from crossattn_saliency.run import sensitivity as sens

    cfg, cond = tiny_profile
    items = _nontrivial(run.explain(cfg, cond, progress=False))
    settings = ["study", "repeat", "p0.2", "occlusion-mean", "levels-one"]
    more = sens.explain_settings(cfg, cond, items, settings, progress=False)
    assert {"SM_X@p0.2", "SM_X@occlusion-mean", "SM_X@levels-one", "SM_H@p0.2"} <= set(more[0].explanations)
    # the study's setting again: the same parameters, other masks
    rep, study = more[0]["SM_H@repeat"].provenance.params, more[0]["SM_H"].provenance.params
    assert rep["seed"] != study["seed"] and {k: v for k, v in rep.items() if k != "seed"} == \
        {k: v for k, v in study.items() if k != "seed"}
    assert not np.array_equal(more[0]["SM_H@repeat"].map(), more[0]["SM_H"].map())
    assert "SM_H@occlusion-mean" not in more[0].explanations        # does not apply to the encoder output
    p02 = more[0]["SM_X@p0.2"].provenance.params
    assert p02["p_occlude"] == 0.2 and p02["seed"] != more[0]["SM_X"].provenance.params["seed"]
    assert more[0]["SM_X@levels-one"].provenance.params["levels"] == [2500]
    again = sens.explain_settings(cfg, cond, items, settings, progress=False)   # read back, not recomputed
    np.testing.assert_array_equal(again[1]["SM_X@p0.2"].map(), more[1]["SM_X@p0.2"].map())
    table = sens.sensitivity_table(cfg, cond, more, settings, base="SM_X")
    assert list(table["setting"]) == settings and (table["perturbations"] == cfg.spes_perturbations).all()
    assert (table["perturbations/s"] > 0).all() and table["rho"].between(-1, 1).all()
    h = sens.sensitivity_table(cfg, cond, more, settings, base="SM_H")
    assert list(h["setting"]) == ["study", "repeat", "p0.2"]
    agree = sens.agreement_matrix(cfg, cond, more, settings, base="SM_X")
    assert list(agree.index) == settings and np.allclose(np.diag(agree.to_numpy()), 1.0)
    # fewer utterances than min_utterances: intervals over the tokens of these utterances
    assert len(more) < cfg.min_utterances and set(table["interval"]) == {f"tokens of {len(more)} utterance(s)"}
    assert ((table["rho lo"] <= table["rho"]) & (table["rho"] <= table["rho hi"])).all()   # raw: always estimable
    ok = table.dropna(subset=["rho disattenuated"])          # a random model's maps may sit below the floor
    assert (ok["dis lo"] <= ok["rho disattenuated"]).all() and (ok["rho disattenuated"] <= ok["dis hi"]).all()
    iv = sens.agreement_intervals(cfg, cond, more, settings, base="SM_X", progress=False)
    assert list(iv["with"]) == settings[1:] and set(iv["setting"]) == {"study"}
    for _, r in iv.iterrows():                                     # unit weights: the matrix's value
        assert r["agreement"] == pytest.approx(agree.loc["study", r["with"]], nan_ok=True, abs=1e-5)
    est = iv.dropna(subset=["agreement", "lo"])
    assert ((est["lo"] <= est["agreement"]) & (est["agreement"] <= est["hi"])).all()
    rel = iv[iv["with"] != "repeat"].dropna(subset=["relative"])   # divided by the study's agreement with its repeat
    np.testing.assert_allclose(rel["relative"], rel["agreement"] / float(iv.loc[iv["with"] == "repeat", "agreement"].iloc[0]))
    assert iv.loc[iv["with"] == "repeat", "relative"].isna().all()


def test_from_a_reference_store_another_reducer_is_rerun_without_any_forward_pass(tiny_profile, monkeypatch, tmp_path):
    """What ``make figures`` does on a fresh clone: the records an earlier run read become the
    reference store; with no cache and models that refuse every forward pass, the explanations
    come back from the store and a correlation with another reducer is computed from them."""
    import shutil

    from crossattn_saliency.app import reference
    from crossattn_saliency.models import loading

    cfg, cond = tiny_profile
    cache = config.cache_dir(cfg.name)
    (cache / "reads.log").unlink(missing_ok=True)
    items = run.explain(cfg, cond, progress=False)
    want = run.correlation(cfg, cond, items).to_frame()
    by_section = reference.export(cfg.name)
    assert {"hypotheses", "saliency_x", "saliency_h", "attention", "noise"} <= set(by_section)
    assert reference.sizes(reference.store_dir(cfg.name)) == by_section
    shutil.move(str(cache), str(tmp_path / "cache"))                    # a fresh clone: the store only
    monkeypatch.setenv(loading.NO_FORWARD_ENV, "1")
    monkeypatch.setattr(loading, "_LOADED", {})
    try:
        again = run.explain(cfg, cond, progress=False)
        same = run.correlation(cfg, cond, again).to_frame()
        other = run.correlation(cfg.with_overrides(reducer="mean2d"), cond, again).to_frame()
        with pytest.raises(loading.ForwardRefused, match="make figures"):
            run.model_for(cfg, cond).model.model.encoder(again[0].utt.features[None].astype(np.float32))
        wrote = sorted(p.relative_to(cache).parts[0] for p in cache.rglob("*.*") if p.name != "reads.log")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.move(str(tmp_path / "cache"), str(cache))
        shutil.rmtree(reference.store_dir(cfg.name))
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(same, want)
    assert not other.equals(want) and set(other["kind"]) == set(want["kind"])
    assert set(wrote) <= {"noise"}                      # only the new reducer's noise records, no map
