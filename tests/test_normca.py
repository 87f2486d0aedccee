"""Norm-weighted cross-attention (crossattn_saliency.normca) on the tiny random model."""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from crossattn_saliency.explain import attention, normca
from crossattn_saliency.models import decoding


@pytest.fixture(scope="module")
def utt(tiny_loaded):
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(1.23 * 16000)) * 0.1).astype(np.float32)
    feats, n = decoding.features(tiny_loaded, audio)
    hyp = decoding.Hypothesis("u", tuple(tiny_loaded.prompt_ids()), (11, 12, 13, 14, 50256), "", n)
    return feats, hyp


def _variant(loaded, edit):
    """A copy of ``loaded`` whose model copy has been changed by ``edit(model)``."""
    model = copy.deepcopy(loaded.model)
    with torch.no_grad():
        edit(model)
    return dataclasses.replace(loaded, model=model)


def _expected_norms(model, e: np.ndarray) -> np.ndarray:
    """Per-head value norms written out head by head (independent of normca)."""
    out = []
    for layer in model.model.decoder.layers:
        a = layer.encoder_attn
        wv, bv = a.v_proj.weight.detach().double().numpy(), a.v_proj.bias.detach().double().numpy()
        wo = a.out_proj.weight.detach().double().numpy()
        heads = []
        for h in range(a.num_heads):
            rows = slice(h * a.head_dim, (h + 1) * a.head_dim)
            v = e.astype(np.float64) @ wv[rows].T + bv[rows]      # positions x head_dim
            heads.append(np.linalg.norm(v @ wo[:, rows].T, axis=-1))
        out.append(heads)
    return np.array(out)


def test_model_free_product_shapes_and_errors():
    alpha = np.random.default_rng(0).random((2, 3, 4, 5))
    norms = np.arange(30, dtype=float).reshape(2, 3, 5)
    got = normca.norm_weighted(alpha, norms)
    assert got.shape == (2, 3, 4, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got[1, 2, 3], alpha[1, 2, 3] * norms[1, 2], rtol=1e-6)
    with pytest.raises(ValueError, match="positions"):
        normca.norm_weighted(alpha, norms[..., :4])
    with pytest.raises(ValueError, match="broadcast"):
        normca.norm_weighted(alpha, norms[:1, :2])
    with pytest.raises(ValueError, match=">= 0"):
        normca.norm_weighted(alpha, -norms)


def test_equal_value_norms_give_plain_attention_up_to_a_constant_per_head(tiny_loaded, utt):
    feats, hyp = utt

    def constant_values(model):
        for layer in model.model.decoder.layers:
            layer.encoder_attn.v_proj.weight.zero_()
            layer.encoder_attn.v_proj.bias.fill_(0.3)

    loaded = _variant(tiny_loaded, constant_values)
    alpha, raw = normca.norm_weighted_rows(loaded, feats, hyp)
    assert raw.shape == alpha.shape == (2, 2, 5, 1500)
    ratio = raw / alpha
    const = ratio[..., :1, :1]
    np.testing.assert_allclose(ratio, np.broadcast_to(const, ratio.shape), rtol=1e-4)
    assert not np.allclose(const[:, 0], const[:, 1])          # one constant per head, not one overall
    plain = attention.extract(loaded, feats, hyp)
    nw = normca.norm_weighted_attention(loaded, feats, hyp)
    np.testing.assert_allclose(nw.weights, plain.weights, atol=1e-6)
    np.testing.assert_allclose(nw.pad_mass, plain.pad_mass, atol=1e-5)
    np.testing.assert_allclose(nw.entropy, plain.entropy, rtol=1e-4)


def test_value_norms_are_per_head_and_a_doubled_value_doubles_the_weight(tiny_loaded, utt):
    feats, hyp = utt
    d = tiny_loaded.model.config.d_model
    e = np.tile(np.random.default_rng(2).standard_normal(d), (1500, 1)).astype(np.float32)
    j0 = 7
    e[j0] *= 2.0

    def uniform_attention_linear_values(model):
        for layer in model.model.decoder.layers:
            layer.encoder_attn.k_proj.weight.zero_()            # every score equal: alpha = 1/1500
            layer.encoder_attn.v_proj.bias.zero_()              # value linear in e_j

    loaded = _variant(tiny_loaded, uniform_attention_linear_values)

    def fixed_encoder_output(module, args, output):
        output.last_hidden_state = torch.as_tensor(e, dtype=output.last_hidden_state.dtype)[None]
        return output

    hook = loaded.model.model.encoder.register_forward_hook(fixed_encoder_output)
    try:
        alpha, raw = normca.norm_weighted_rows(loaded, feats, hyp)
    finally:
        hook.remove()
    np.testing.assert_allclose(alpha, 1 / 1500, rtol=1e-4)
    expected = _expected_norms(loaded.model, e)
    np.testing.assert_allclose(normca.value_norms(loaded.model, e), expected, rtol=1e-5)
    np.testing.assert_allclose(raw, np.broadcast_to(expected[:, :, None, :] / 1500, raw.shape), rtol=1e-4)
    np.testing.assert_allclose(raw[..., j0], 2 * raw[..., j0 + 1], rtol=1e-5)
    other = np.delete(raw, j0, axis=-1)
    np.testing.assert_allclose(other, np.broadcast_to(other[..., :1], other.shape), rtol=1e-5)
    assert not np.allclose(expected[:, 0], expected[:, 1])   # heads differ: a pooled norm would fail


def test_cross_attention_object(tiny_loaded, utt):
    feats, hyp = utt
    nw = normca.norm_weighted_attention(tiny_loaded, feats, hyp)
    assert isinstance(nw, attention.CrossAttention)
    assert nw.weights.shape == (2, 2, 5, math.ceil(hyp.n_frames / 2))
    assert nw.params["kind"] == "norm_weighted"
    np.testing.assert_allclose(nw.weights.sum(-1) + nw.pad_mass, 1.0, atol=1e-5)
    np.testing.assert_allclose(nw.renormalized().weights.sum(-1), 1.0, atol=1e-5)
    plain = attention.extract(tiny_loaded, feats, hyp)
    assert not np.allclose(nw.weights, plain.weights, atol=1e-6)   # random values: norms do matter


@pytest.mark.integration
def test_real_tiny_en_norm_weighted_attention():
    from crossattn_saliency.models import loading

    loaded = loading.load_model("whisper-tiny.en")
    t = np.arange(int(2.0 * 16000)) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 220 * t) * (t > 1.0)).astype(np.float32)
    feats, n = decoding.features(loaded, audio)
    ids = decoding.decode(loaded, feats, beam_size=1, max_new_tokens=8)
    hyp = decoding.Hypothesis("tone", tuple(loaded.prompt_ids()), tuple(ids), "", n)
    nw = normca.norm_weighted_attention(loaded, feats, hyp)
    plain = attention.extract(loaded, feats, hyp)
    assert nw.weights.shape == plain.weights.shape == (4, 6, len(ids), math.ceil(n / 2))
    np.testing.assert_allclose(nw.weights.sum(-1) + nw.pad_mass, 1.0, atol=1e-4)
    assert np.isfinite(nw.entropy).all() and not np.allclose(nw.weights, plain.weights, atol=1e-4)
