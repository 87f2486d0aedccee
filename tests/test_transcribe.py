"""Features, audio checks, decoding and the hypothesis cache (tiny random model)."""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency.evaluate import metrics
from crossattn_saliency.models import decoding


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


@pytest.mark.parametrize("audio, sr, message", [
    (_noise(1.0), 8000, "8000 Hz"),
    (_noise(31.0), 16000, "longer than the model's 30 s window"),
    (np.zeros(0, np.float32), 16000, "empty audio"),
    (np.stack([_noise(1.0), _noise(1.0)]), 16000, "mono"),
    (np.full(1600, np.nan, np.float32), 16000, "NaN"),
])
def test_bad_audio_is_a_clear_error(audio, sr, message):
    with pytest.raises(decoding.AudioError, match=message):
        decoding.check_audio(audio, sr, "utt1")


def test_features_shape_and_speech_frames(tiny_loaded):
    feats, n = decoding.features(tiny_loaded, _noise(2.5))
    assert feats.shape == (80, 3000) and feats.dtype == np.float32
    assert n == 250
    # padding frames carry the log-mel floor: max - 2 in Whisper's normalised units
    np.testing.assert_allclose(feats[:, n + 2:].max(), feats.max() - 2.0, atol=1e-5)


def test_a_batch_decodes_as_one_by_one(tiny_loaded):
    """The deletion test decodes a curve's inputs in one batch: each row gives what decoding it alone
    gives (float32; the inputs fill the window, so no padding enters)."""
    feats = [decoding.features(tiny_loaded, _noise(s, seed=k))[0] for k, s in enumerate((1.0, 2.5, 4.0))]
    alone = [decoding.decode(tiny_loaded, f, beam_size=1, max_new_tokens=8) for f in feats]
    assert decoding.decode_batch(tiny_loaded, feats, beam_size=1, max_new_tokens=8) == alone
    assert all(ids[-1] == tiny_loaded.special_ids["eot"] for ids in alone)
    assert decoding.decode_batch(tiny_loaded, [], beam_size=1) == []


def test_transcribe_set_caches_and_resumes(tiny_loaded, tmp_path, monkeypatch):
    from crossattn_saliency.run import transcribing
    from crossattn_saliency.run.store import ParamsMismatch, ResultStore

    utts = [{"id": f"u{i}", "audio": _noise(1.0 + i, seed=i), "sampling_rate": 16000} for i in range(2)]
    store = ResultStore(tmp_path)
    first = transcribing.transcribe_set(tiny_loaded, utts, "en", "transcribe", 1, store, "cond", progress=False)
    assert [h.utt_id for h in first] == ["u0", "u1"]
    assert all(h.token_ids[-1] == tiny_loaded.special_ids["eot"] for h in first)
    assert first[0].prompt_ids == tuple(tiny_loaded.prompt_ids())
    assert (tmp_path / "hypotheses" / "cond" / "u1.json").is_file()
    monkeypatch.setattr(decoding, "decode", lambda *a, **k: pytest.fail("decoded again"))
    again = transcribing.transcribe_set(tiny_loaded, utts, "en", "transcribe", 1, store, "cond", progress=False)
    assert again == first
    strict = ResultStore(tmp_path, on_mismatch="error")
    with pytest.raises(ParamsMismatch, match="beam_size: stored 1, wanted 5"):
        transcribing.transcribe_set(tiny_loaded, utts, "en", "transcribe", 5, strict, "cond", progress=False)


def test_wer_uses_whisper_normalizer():
    assert metrics.wer(["Mr. Smith is here."], ["mister smith is here"]) == 0.0
    assert metrics.wer(["a b c d"], ["a x c"], normalize=False) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="empty reference"):
        metrics.wer(["  "], ["a"])


def test_bleu_and_chrf_on_known_pairs():
    assert metrics.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert metrics.bleu(["the cat sat on the mat"], ["dogs run"]) < 5
    assert metrics.chrf(["abc def"], ["abc def"]) == pytest.approx(100.0)
