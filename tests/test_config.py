"""Profiles, overrides and paths."""
from __future__ import annotations

import pytest

from crossattn_saliency.core import config


def test_profiles_and_overrides():
    smoke = config.get_profile("smoke")
    assert smoke.spes_perturbations < config.get_profile("default").spes_perturbations \
        < config.get_profile("paper").spes_perturbations == 20000
    p = config.get_profile("default", spes_perturbations=50, seed=None)
    assert p.spes_perturbations == 50 and p.seed == config.get_profile("default").seed
    with pytest.raises(ValueError, match="unknown profile field"):
        config.get_profile("default", spes_perturbation=5)
    with pytest.raises(ValueError, match="unknown profile"):
        config.get_profile("fast")


def test_conditions_from_json_lists():
    p = config.get_profile("smoke", conditions=[["openai/whisper-small", "en-real", "transcribe", "en"]],
                           saliency_conditions=["openai/whisper-small__en-real__asr"], set_sizes={"en-real": 3})
    assert p.conditions[0].name == "openai--whisper-small__en-real__asr"   # folder-safe
    assert [c.model for c in p.saliency_conditions_list()] == ["openai/whisper-small"]
    assert p.set_sizes["en-real"] == 3 and p.set_sizes["it-tts"] == 2


def test_cache_env_moves_assets(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_CACHE, str(tmp_path / "assets"))
    assert config.models_dir() == tmp_path / "assets" / "models"
    assert config.output_dir("default") == config.results_dir()
    assert config.output_dir("smoke", "tables") == config.results_dir() / "profiles" / "smoke" / "tables"


def test_auto_dtype_resolves_to_what_the_hardware_computes_natively(monkeypatch):
    p = config.get_profile("smoke")
    assert p.dtype == "auto" and p.spes_dtype in ("bfloat16", "float32")
    monkeypatch.setattr(config, "native_bf16", lambda device="cpu": True)
    assert p.spes_dtype == "bfloat16"
    monkeypatch.setattr(config, "native_bf16", lambda device="cpu": False)
    assert p.spes_dtype == "float32"
    assert p.with_overrides(dtype="bfloat16").spes_dtype == "bfloat16"     # an explicit dtype is kept
    assert p.deletion_precision == "float32" and p.with_overrides(deletion_dtype="bfloat16").deletion_precision \
        == "bfloat16"
    monkeypatch.setattr(config, "native_bf16", lambda device="cpu": True)
    assert p.deletion_precision == "bfloat16" and config.get_profile("paper").deletion_precision == "float32"


def test_condition_names_are_folder_safe():
    assert config.Condition("whisper-base", "en-real", "translate", "it").name == "whisper-base__en-real__st"
    assert config.Condition("openai/whisper-small", "x", "transcribe", "en").name == "openai--whisper-small__x__asr"
    local = config.Condition("/models/my-ft", "x", "transcribe", "en").name
    assert "/" not in local and local.startswith("my-ft-")
