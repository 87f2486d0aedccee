"""Cross-attention extraction and aggregation (tiny random model)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from crossattn_saliency.explain import attention
from crossattn_saliency.evaluate.views import View
from crossattn_saliency.models import decoding


@pytest.fixture(scope="module")
def ca_and_full(tiny_loaded):
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(1.23 * 16000)) * 0.1).astype(np.float32)
    feats, n = decoding.features(tiny_loaded, audio)
    hyp = decoding.Hypothesis("u", tuple(tiny_loaded.prompt_ids()), (11, 12, 13, 14, 50256), "", n)
    logits, full = attention.forced_decoding(tiny_loaded, feats, hyp)
    return attention.extract(tiny_loaded, feats, hyp), full, logits, hyp


def test_shapes_prompt_excluded_and_time_axis(ca_and_full):
    ca, full, logits, hyp = ca_and_full
    assert full.shape == (2, 2, 5, 1500)            # layers x heads x tokens x positions
    assert logits.shape[0] == len(hyp.token_ids)    # the prompt is context, not explained
    assert ca.weights.shape == (2, 2, 5, math.ceil(hyp.n_frames / 2))
    assert ca.token_ids == list(hyp.token_ids) and len(ca.tokens) == 5
    np.testing.assert_allclose(ca.times[:3], [0.0, 0.02, 0.04])
    assert ca.times[-1] < hyp.n_frames / 100


def test_rows_sum_to_one_before_cropping(ca_and_full):
    ca, full, _, _ = ca_and_full
    np.testing.assert_allclose(full.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ca.weights.sum(-1) + ca.pad_mass, 1.0, atol=1e-5)
    np.testing.assert_allclose(ca.renormalized().weights.sum(-1), 1.0, atol=1e-5)


def test_aggregation_equals_hand_computed_mean(ca_and_full):
    ca, *_ = ca_and_full
    w = ca.weights
    np.testing.assert_allclose(ca.aggregate(View("all")), w.mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(ca.aggregate(), w.mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(ca.aggregate(View("layer", layer=1)), (w[1, 0] + w[1, 1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(ca.aggregate(View("head", layer=0, head=1)), w[0, 1])
    np.testing.assert_allclose(ca.aggregate(View("last", n=1)), w[1].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        ca.aggregate(View("head", layer=5, head=0))
    with pytest.raises(ValueError, match="view scope"):
        ca.aggregate(View("everything"))


def test_entropy_and_save_load_round_trip(ca_and_full, tmp_path):
    ca, full, _, _ = ca_and_full
    ent = -(full * np.log(full)).sum(-1)
    np.testing.assert_allclose(ca.entropy, ent, rtol=1e-4)
    back = attention.CrossAttention.load(ca.save(tmp_path / "u.npz"))
    np.testing.assert_allclose(back.weights, ca.weights, atol=1e-3)   # stored as float16
    assert back.tokens == ca.tokens and back.alignment_heads == ca.alignment_heads
    assert back.drop_last_token().weights.shape[2] == 4
    summary = attention.attention_summary([ca])
    assert list(summary["layer"]) == [0, 1]
    assert ((summary["pad_mass"] > 0) & (summary["pad_mass"] < 1)).all()
