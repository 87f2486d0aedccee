"""Shared fixtures: a tiny randomly initialised Whisper converted through the real code path."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs the real embedded models and the built smoke test sets")
    config.addinivalue_line("markers", "notebooks: runs the notebooks on the smoke profile")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Whisper (2+2 layers, d_model 8, real tiny.en tokenizer) as a
    ``transformers`` folder, made by writing a CTranslate2 file and converting it."""
    from crossattn_saliency.models import loading
    from test_models import _tiny_ct2_folder

    tmp = tmp_path_factory.mktemp("tiny")
    folder, _ = _tiny_ct2_folder(tmp)
    return loading.convert_ct2_whisper([folder / "model.bin"], folder, tmp / "hf")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    from crossattn_saliency.models import loading

    return loading.load_model(str(tiny_model_dir))
