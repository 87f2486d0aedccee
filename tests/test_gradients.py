"""Gradient saliency (crossattn_saliency.gradients): planted linear models, the tiny
random Whisper, and (integration) the real whisper-tiny.en."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crossattn_saliency.explain import gradients as gr
from crossattn_saliency.explain.gradients import attribute_tokens, encoder_gradients, input_gradients

SHAPE = (3, 5)


def _linear(n_tokens: int = 4, seed: int = 0):
    """y_t = sum(W_t * x): ``batch x *SHAPE -> batch x tokens``."""
    w = torch.randn(n_tokens, *SHAPE, generator=torch.Generator().manual_seed(seed))
    return w, lambda x: (w[None] * x[:, None]).sum(dim=(2, 3))


def _nonlinear(n_tokens: int = 4, seed: int = 0):
    w = torch.randn(n_tokens, *SHAPE, generator=torch.Generator().manual_seed(seed))
    return lambda x: torch.tanh((w[None] * torch.sin(x[:, None])).sum(dim=(2, 3)))


X = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))

# --------------------------------------------------------------------------- planted answers


@pytest.mark.parametrize("engine", gr.ENGINES)
def test_planted_linear_input_x_gradient_is_w_times_x(engine):
    w, f = _linear()
    got = attribute_tokens(f, X, 4, "input_x_gradient", engine=engine)
    assert got.shape == (4, *SHAPE) and got.dtype == torch.float32
    torch.testing.assert_close(got, w * X)


@pytest.mark.parametrize("engine", gr.ENGINES)
def test_planted_linear_integrated_gradients_is_w_times_x_minus_baseline(engine):
    w, f = _linear()
    torch.testing.assert_close(attribute_tokens(f, X, 4, "integrated_gradients", 0.0, n_steps=3, engine=engine),
                               w * X)
    torch.testing.assert_close(attribute_tokens(f, X, 4, "integrated_gradients", -0.7, n_steps=5, engine=engine),
                               w * (X + 0.7))
    b = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(attribute_tokens(f, X, 4, "integrated_gradients", b, n_steps=2, engine=engine),
                               w * (X - b))


def test_internal_batch_size_and_engine_do_not_change_the_maps():
    f = _nonlinear(n_tokens=5)
    for method in gr.METHODS:
        ref = attribute_tokens(f, X, 5, method, 0.3, n_steps=6, internal_batch_size=1)
        for engine in gr.ENGINES:
            for ibs in (1, 3, 8, 64):
                got = attribute_tokens(f, X, 5, method, 0.3, n_steps=6, internal_batch_size=ibs, engine=engine)
                torch.testing.assert_close(got, ref, msg=f"{method} {engine} internal_batch_size={ibs}")


def test_integrated_gradients_completeness_on_a_nonlinear_model():
    f = _nonlinear()
    attr = attribute_tokens(f, X, 4, "integrated_gradients", 0.0, n_steps=64)
    gap = f(X[None])[0] - f(torch.zeros(1, *SHAPE))[0]
    torch.testing.assert_close(attr.sum(dim=(1, 2)), gap, atol=1e-4, rtol=1e-4)


def test_core_errors():
    _, f = _linear()
    with pytest.raises(ValueError, match="input_x_gradient.*integrated_gradients"):
        attribute_tokens(f, X, 4, "saliency")
    with pytest.raises(ValueError, match="'captum', 'batched'"):
        attribute_tokens(f, X, 4, engine="vmap")
    with pytest.raises(ValueError, match="n_tokens"):
        attribute_tokens(f, X, 0)
    with pytest.raises(ValueError, match="internal_batch_size"):
        attribute_tokens(f, X, 4, internal_batch_size=0)

# --------------------------------------------------------------------------- tiny Whisper


@pytest.fixture(scope="module")
def utt():
    rng = np.random.default_rng(1)
    feats = np.full((80, 3000), -0.5, dtype=np.float32)
    n_frames = 61
    feats[:, :n_frames] = rng.uniform(-0.5, 1.5, size=(80, n_frames))
    return {"features": feats, "n_frames": n_frames, "prompt_ids": [50257, 50362],
            "token_ids": [11, 12, 13, 50256]}


@pytest.fixture(scope="module")
def prepared(tiny_loaded):
    return gr.GradientModel(tiny_loaded.model)


def _logp(gm: gr.GradientModel, x: torch.Tensor, utt) -> torch.Tensor:
    with torch.no_grad():
        return gm.input_fn(utt["prompt_ids"], utt["token_ids"])(x[None])[0]


def test_whisper_shapes_and_input_x_gradient_by_hand(prepared, utt):
    x = torch.as_tensor(utt["features"])
    n = utt["n_frames"]
    sm_x = input_gradients(prepared, **utt)
    assert sm_x.shape == (4, n, 80) and sm_x.dtype == np.float32 and np.isfinite(sm_x).all()
    xg = x.clone().requires_grad_()
    lp = prepared.input_fn(utt["prompt_ids"], utt["token_ids"])(xg[None])[0]
    (g,) = torch.autograd.grad(lp[2], xg)
    np.testing.assert_allclose(sm_x[2], (g * x)[:, :n].T.numpy(), rtol=1e-4, atol=1e-7)
    sm_h = encoder_gradients(prepared, **utt)
    assert sm_h.shape == (4, math.ceil(n / 2)) and np.isfinite(sm_h).all()


def test_whisper_integrated_gradients_baselines_and_completeness(prepared, utt):
    from crossattn_saliency.explain.spes import floor_value

    x = torch.as_tensor(utt["features"])
    n = utt["n_frames"]
    sm_x = input_gradients(prepared, **utt, method="integrated_gradients", n_steps=8, internal_batch_size=16)
    base = x.clone()
    base[:, :n] = floor_value(utt["features"])
    gap = (_logp(prepared, x, utt) - _logp(prepared, base, utt)).numpy()
    np.testing.assert_allclose(sm_x.sum(axis=(1, 2)), gap, rtol=0.05, atol=1e-4)

    hidden = prepared.encode(x)
    dec = prepared.encoder_fn(utt["prompt_ids"], utt["token_ids"])
    hb = hidden.clone()
    hb[:math.ceil(n / 2)] = 0.0
    with torch.no_grad():
        gap_h = (dec(hidden[None])[0] - dec(hb[None])[0]).numpy()
    sm_h = encoder_gradients(prepared, **utt, method="integrated_gradients", n_steps=16, internal_batch_size=4)
    np.testing.assert_allclose(sm_h.sum(-1), gap_h, rtol=0.05, atol=1e-4)


def test_whisper_batch_and_engine_invariance(prepared, utt):
    a = encoder_gradients(prepared, **utt, method="integrated_gradients", n_steps=4, internal_batch_size=1)
    b = encoder_gradients(prepared, **utt, method="integrated_gradients", n_steps=4, internal_batch_size=8)
    c = encoder_gradients(prepared, **utt, method="integrated_gradients", n_steps=4, internal_batch_size=8,
                          engine="batched")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(c, a, rtol=1e-4, atol=1e-6)
    x1 = input_gradients(prepared, **utt)
    x2 = input_gradients(prepared, **utt, engine="batched", internal_batch_size=3)
    np.testing.assert_allclose(x2, x1, rtol=1e-4, atol=1e-7)


def test_callers_model_is_untouched(tiny_loaded, utt):
    model = tiny_loaded.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    impl, training = model.config._attn_implementation, model.training
    encoder_gradients(model, **utt, method="integrated_gradients", n_steps=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == grads and all(p.grad is None for p in model.parameters())
    assert model.config._attn_implementation == impl and model.training == training


def test_device_is_honoured_and_tensor_input_equals_numpy(tiny_loaded, prepared, utt):
    assert prepared.device == "cpu" and next(prepared.model.parameters()).device.type == "cpu"
    kw = {k: v for k, v in utt.items() if k != "features"}
    a = encoder_gradients(prepared, utt["features"], **kw)
    b = encoder_gradients(prepared, torch.as_tensor(utt["features"]), **kw)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match="prepared model runs in float32 on cpu"):
        encoder_gradients(prepared, **utt, device="meta")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the cuda half of the device check is skipped")
    c = encoder_gradients(tiny_loaded.model, **utt, device="cuda")
    np.testing.assert_allclose(c, a, rtol=1e-3, atol=1e-5)


def test_whisper_errors(prepared, utt):
    kw = {k: v for k, v in utt.items() if k != "token_ids"}
    with pytest.raises(ValueError, match="token_ids is empty"):
        input_gradients(prepared, **kw, token_ids=[])
    with pytest.raises(ValueError, match="'input_x_gradient', 'integrated_gradients'"):
        encoder_gradients(prepared, **utt, method="occlusion")
    for bad in (0, 3001):
        with pytest.raises(ValueError, match="n_frames"):
            input_gradients(prepared, **{**utt, "n_frames": bad})
    with pytest.raises(ValueError, match="mel x frames"):
        encoder_gradients(prepared, **{**utt, "features": utt["features"][:, :100]})
    with pytest.raises(ValueError, match="dtype"):
        gr.GradientModel(prepared.model, dtype="float16")

# --------------------------------------------------------------------------- real model


@pytest.mark.integration
def test_real_tiny_en_engines_agree_and_integrated_gradients_are_complete():
    from crossattn_saliency.models import loading, decoding

    loaded = loading.load_model("whisper-tiny.en")
    t = np.arange(int(2.0 * 16000)) / 16000
    audio = (0.1 * np.sin(2 * np.pi * 220 * t) * (t > 1.0)).astype(np.float32)   # 1 s silence, 1 s tone
    feats, n = decoding.features(loaded, audio)
    ids = decoding.decode(loaded, feats, beam_size=1, max_new_tokens=8)[:3]  # a prefix: same maps, less work
    gm = gr.GradientModel(loaded.model)
    args = (gm, feats, n, loaded.prompt_ids(), ids)
    a = encoder_gradients(*args)
    b = encoder_gradients(*args, engine="batched")
    assert a.shape == (len(ids), math.ceil(n / 2)) and np.isfinite(a).all() and np.abs(a).sum() > 0
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5 * np.abs(a).max())
    ig = encoder_gradients(*args, method="integrated_gradients", n_steps=16, engine="batched")
    hidden = gm.encode(gm.features(feats, n))
    base = hidden.clone()
    base[:math.ceil(n / 2)] = 0.0
    dec = gm.encoder_fn(loaded.prompt_ids(), ids)
    with torch.no_grad():
        gap = (dec(hidden[None])[0] - dec(base[None])[0]).numpy()
    np.testing.assert_allclose(ig.sum(-1), gap, rtol=0.1, atol=0.05)
