"""Integration: the real embedded Whisper models on real speech (LibriVox, pocketsphinx sdist)."""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency import attention, data, metrics, models, transcribe

pytestmark = pytest.mark.integration

CLIP = "sense_and_sensibility_01_austen_64kb-0890"


@pytest.fixture(scope="module")
def librivox():
    """(audio, transcript) of one LibriVox sentence shipped in the pocketsphinx sdist."""
    root = data.fetch_sdist(*data.POCKETSPHINX_SDIST, members=["test/data/librivox", "LICENSE"])
    folder = root / "test" / "data" / "librivox"
    audio = data.read_audio(folder / f"{CLIP}.wav")  # 16 kHz mono float32
    return audio, transcribe.SAMPLING_RATE, (folder / f"{CLIP}.txt").read_text().strip()


@pytest.fixture(scope="module", params=["whisper-tiny.en", "whisper-base"])
def loaded(request):
    return models.load_model(request.param)


def test_every_converted_tensor_is_accounted_for(loaded):
    parts, _, _ = models.embedded_source(loaded.name)
    ct2 = models.read_ct2_model(b"".join(p.read_bytes() for p in parts))
    state, used = models.ct2_to_transformers_state(ct2)
    assert models.unaccounted_variables(ct2, used) == []
    assert set(state) | {"proj_out.weight"} == set(loaded.model.state_dict())
    for k in ("model.encoder.conv1.weight", "model.decoder.layers.0.encoder_attn.v_proj.weight"):
        np.testing.assert_array_equal(loaded.model.state_dict()[k].numpy(), state[k])


def test_decodes_real_clip_to_the_known_words(loaded, librivox):
    audio, sr, text = librivox
    feats, _ = transcribe.features(loaded, audio, sr, CLIP)
    ids = transcribe.decode(loaded, feats, "en", "transcribe", beam_size=1)
    hyp = loaded.tokenizer.decode(ids, skip_special_tokens=True)
    assert metrics.wer([text], [hyp]) == 0.0, hyp


def test_greedy_tokens_match_ctranslate2(loaded, librivox):
    pytest.importorskip("ctranslate2", reason="the ctranslate2 wheel is not installed")
    audio, sr, _ = librivox
    feats, _ = transcribe.features(loaded, audio, sr, CLIP)
    ours = transcribe.decode(loaded, feats, "en", "transcribe", beam_size=1)[:-1]
    assert models.ctranslate2_greedy(loaded.name, feats, loaded.prompt_ids("en", "transcribe")) == ours


def test_forced_decoding_reproduces_the_hypothesis(loaded, librivox):
    audio, sr, _ = librivox
    feats, n = transcribe.features(loaded, audio, sr, CLIP)
    ids = transcribe.decode(loaded, feats, "en", "transcribe", beam_size=1)
    hyp = transcribe.Hypothesis(CLIP, tuple(loaded.prompt_ids()), tuple(ids), "", n)
    logits, cross = attention.forced_decoding(loaded, feats, hyp)
    assert logits.argmax(-1).tolist() == ids
    info = loaded.info
    assert cross.shape == (info.decoder_layers, info.decoder_heads, len(ids), 1500)
    np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-4)
    ca = attention.extract(loaded, feats, hyp)
    assert ca.weights.shape[-1] == int(np.ceil(n / 2)) and ca.seconds_per_position == 0.02


def test_base_translates_italian_speech():
    base = models.load_model("whisper-base")
    row = data.load_set("it-tts", 2)[0]
    feats, _ = transcribe.features(base, row["audio"], row["sampling_rate"], row["id"])
    ids = transcribe.decode(base, feats, "it", "translate", beam_size=1)
    assert base.tokenizer.decode(ids[:1]).strip()  # a non-empty English output
    assert ids[-1] == base.special_ids["eot"]
