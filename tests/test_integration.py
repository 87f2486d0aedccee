"""Integration: the real embedded Whisper models on real speech (LibriVox, pocketsphinx sdist)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from crossattn_saliency.explain import attention
from crossattn_saliency.models import ct2, loading, decoding
from crossattn_saliency import data
from crossattn_saliency.evaluate import metrics

pytestmark = pytest.mark.integration

CLIP = "sense_and_sensibility_01_austen_64kb-0890"


@pytest.fixture(scope="module")
def librivox():
    """(audio, transcript) of one LibriVox sentence shipped in the pocketsphinx sdist."""
    root = data.fetch_sdist(*data.POCKETSPHINX_SDIST, members=["test/data/librivox", "LICENSE"])
    folder = root / "test" / "data" / "librivox"
    audio = data.read_audio(folder / f"{CLIP}.wav")  # 16 kHz mono float32
    return audio, decoding.SAMPLING_RATE, (folder / f"{CLIP}.txt").read_text().strip()


@pytest.fixture(scope="module", params=["whisper-tiny.en", "whisper-base"])
def loaded(request):
    return loading.load_model(request.param)


def test_every_converted_tensor_is_accounted_for(loaded):
    parts, _, _ = loading.embedded_source(loaded.name)
    c = ct2.read_ct2_model(b"".join(p.read_bytes() for p in parts))
    state, used = ct2.ct2_to_transformers_state(c)
    assert ct2.unaccounted_variables(c, used) == []
    assert set(state) | {"proj_out.weight"} == set(loaded.model.state_dict())
    for k in ("model.encoder.conv1.weight", "model.decoder.layers.0.encoder_attn.v_proj.weight"):
        np.testing.assert_array_equal(loaded.model.state_dict()[k].numpy(), state[k])


def test_decodes_real_clip_to_the_known_words(loaded, librivox):
    audio, sr, text = librivox
    feats, _ = decoding.features(loaded, audio, sr, CLIP)
    ids = decoding.decode(loaded, feats, "en", "transcribe", beam_size=1)
    hyp = loaded.tokenizer.decode(ids, skip_special_tokens=True)
    assert metrics.wer([text], [hyp]) == 0.0, hyp


def test_greedy_tokens_match_ctranslate2(loaded, librivox):
    pytest.importorskip("ctranslate2", reason="the ctranslate2 wheel is not installed")
    audio, sr, _ = librivox
    feats, _ = decoding.features(loaded, audio, sr, CLIP)
    ours = decoding.decode(loaded, feats, "en", "transcribe", beam_size=1)[:-1]
    assert loading.ctranslate2_greedy(loaded.name, feats, loaded.prompt_ids("en", "transcribe")) == ours


def test_forced_decoding_reproduces_the_hypothesis(loaded, librivox):
    audio, sr, _ = librivox
    feats, n = decoding.features(loaded, audio, sr, CLIP)
    ids = decoding.decode(loaded, feats, "en", "transcribe", beam_size=1)
    hyp = decoding.Hypothesis(CLIP, tuple(loaded.prompt_ids()), tuple(ids), "", n)
    logits, cross = attention.forced_decoding(loaded, feats, hyp)
    assert logits.argmax(-1).tolist() == ids
    info = loaded.info
    assert cross.shape == (info.decoder_layers, info.decoder_heads, len(ids), 1500)
    np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-4)
    ca = attention.extract(loaded, feats, hyp)
    assert ca.weights.shape[-1] == int(np.ceil(n / 2)) and ca.seconds_per_position == 0.02


def test_base_translates_italian_speech():
    base = loading.load_model("whisper-base")
    row = data.load_set("it-tts", 2)[0]
    feats, n = decoding.features(base, row["audio"], row["sampling_rate"], row["id"])
    ids = decoding.decode(base, feats, "it", "translate", beam_size=1)
    eot = base.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert eot == base.tokenizer.eos_token_id
    # <|endoftext|> closes the hypothesis and appears nowhere else; every other token is text
    # (special tokens, timestamps included, have ids >= <|endoftext|>'s)
    assert ids[-1] == eot and eot not in ids[:-1]
    assert len(ids) >= 2 and all(t < eot for t in ids[:-1]), ids
    # the model itself ends the output there: decode did not stop at the length limit and
    # append <|endoftext|>, the model predicts it at the last position when teacher-forced
    hyp = decoding.Hypothesis(row["id"], tuple(base.prompt_ids("it", "translate")), tuple(ids), "", n)
    logits, _ = attention.forced_decoding(base, feats, hyp, output_attentions=False)
    assert int(logits[-1].argmax()) == eot
    # the decoded text holds no special token and is English words (Latin letters)
    raw = base.tokenizer.decode(ids[:-1], skip_special_tokens=False)
    text = base.tokenizer.decode(ids, skip_special_tokens=True)
    assert "<|" not in raw and raw == text, raw
    assert re.search(r"[A-Za-z]{2,}", text), text


@pytest.fixture(scope="module")
def tiny_en_utterance(librivox):
    lm = loading.load_model("whisper-tiny.en")
    audio, sr, _ = librivox
    feats, n = decoding.features(lm, audio, sr, CLIP)
    ids = decoding.decode(lm, feats, "en", "transcribe", beam_size=1)
    return lm, feats, n, lm.prompt_ids("en", "transcribe"), ids


@pytest.mark.parametrize("backend", ["openvino", "inductor"])
def test_a_fast_backend_is_admitted_on_the_same_masks(tiny_en_utterance, backend):
    from crossattn_saliency.explain import backends, spes_whisper

    if not spes_whisper.backend_available(backend):
        pytest.skip(f"{backend} is not installed")
    lm, feats, n, prompt, ids = tiny_en_utterance
    dtype = "bfloat16" if backend == "openvino" else "float32"
    result = backends.check(lm.model, feats, n, prompt, ids, backend, dtype, n_perturbations=32, batch_size=16,
                            model_name=lm.name)
    assert result.faithful, result
    assert backends.require(result) is result and result.n_tokens == len(ids)


def test_an_unfaithful_backend_is_refused_by_the_check(tiny_en_utterance, monkeypatch):
    """A backend whose encoder output is off by noise of 30 % of its spread gives other maps on the same
    masks: the check measures it and refuses it, naming the numbers and the way out."""
    import torch

    from crossattn_saliency.explain import backends, spes_whisper

    lm, feats, n, prompt, ids = tiny_en_utterance
    real = spes_whisper.WhisperSpes._encode_batch
    gen = torch.Generator().manual_seed(0)

    def noisy(self, x):
        h = real(self, x)
        return h if self.dtype == "float32" else h + 0.3 * h.float().std() * torch.randn(h.shape, generator=gen).to(h.dtype)

    monkeypatch.setattr(spes_whisper.WhisperSpes, "_encode_batch", noisy)
    result = backends.check(lm.model, feats, n, prompt, ids, "torch", "bfloat16", n_perturbations=32, batch_size=16,
                            model_name=lm.name)
    assert not result.faithful and result.pearson_mean < backends.MIN_MEAN
    with pytest.raises(backends.BackendRefused, match="not faithful.*dtype=.float32."):
        backends.require(result)
