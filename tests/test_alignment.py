"""Reference word timings: pocketsphinx's forced alignment of real speech and the timings the TTS
engines report for the words they spoke (the synthetic sets' exact references)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crossattn_saliency.data import alignment
from crossattn_saliency.run import timing
from crossattn_saliency.present import report
from crossattn_saliency.evaluate import timestamps
from crossattn_saliency.data import DataError, SAMPLING_RATE


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def _check_timings(audio: np.ndarray, words: list[tuple[str, float, float]]) -> None:
    """Words in order, inside the audio, and the speech lies inside them: the audio before the
    first word and in the pauses between sentences is far quieter than the words."""
    starts, ends = np.array([w[1] for w in words]), np.array([w[2] for w in words])
    assert np.all(ends > starts) and np.all(starts[1:] >= ends[:-1] - 1e-6)
    assert ends[-1] <= len(audio) / SAMPLING_RATE + 1e-3
    inside = np.concatenate([audio[int(s * SAMPLING_RATE):int(e * SAMPLING_RATE)] for _, s, e in words])
    before = audio[:max(0, int(starts[0] * SAMPLING_RATE) - 160)]      # up to 10 ms before the first word
    assert _rms(before) < 0.1 * _rms(inside)


def _engine(cls):
    """A TTS engine, or a skip naming what is not installed."""
    try:
        return cls()
    except DataError as exc:
        pytest.skip(str(exc))


def test_festival_says_when_it_spoke_each_word():
    from crossattn_saliency.data.tts import FestivalTTS

    tts = _engine(FestivalTTS)
    text = "Ciao, come stai? Ho 3 pesci."
    audio, words = tts.timed(text)
    assert np.array_equal(audio, tts(text))                     # the very samples the set stores
    assert [w for w, _, _ in words] == ["ciao", "come", "stai", "ho", "tre", "pesci"]   # festival's tokens
    _check_timings(audio, words)
    # the second sentence starts after the first one's wave: the pause between them is silent
    gap = audio[int(words[2][2] * SAMPLING_RATE) + 160:int(words[3][1] * SAMPLING_RATE) - 160]
    assert len(gap) > 0.2 * SAMPLING_RATE and _rms(gap) < 0.1 * _rms(audio)


def test_piper_says_when_it_spoke_each_word():
    pytest.importorskip("onnx")
    from crossattn_saliency.data.tts import PiperTTS

    tts = _engine(PiperTTS)
    text = "Hello there, I have 25 fish. Bye now!"
    audio, words = tts.timed(text)
    assert np.array_equal(audio, tts(text))
    assert [w for w, _, _ in words] == text.split()             # "25" (two phoneme groups) is one word
    _check_timings(audio, words)
    # the 0.2 s between piper's two sentences lies between "fish." and "Bye"
    assert words[6][1] - words[5][2] >= tts.pause_s
    # a text whose words run together in the phonemes gets no timings rather than wrong ones
    with pytest.raises(DataError, match="phoneme groups"):
        tts.timed("Not bad for an octopus...")


def test_spoken_alignment_refuses_audio_it_does_not_describe():
    from crossattn_saliency.data.tts import FestivalTTS

    tts = _engine(FestivalTTS)
    row = {"id": "x", "synthetic": True, "speaker": "festival:lp_diphone", "transcript": "Ciao."}
    row["audio"] = tts(row["transcript"])
    assert [w for w, _, _ in alignment.spoken_alignment(row)] == ["ciao"]
    with pytest.raises(alignment.AlignmentError, match="rebuild the set"):
        alignment.spoken_alignment({**row, "audio": np.concatenate([row["audio"], np.zeros(160, np.float32)])})
    with pytest.raises(alignment.AlignmentError, match="no TTS engine"):
        alignment.spoken_alignment({**row, "synthetic": False})


def test_pocketsphinx_aligns_a_librivox_sentence_like_its_shipped_alignment():
    """The LibriVox sentences ship with pocketsphinx's own alignments: ours, from the same wheel
    with the cleaned transcript, put the same words at the same times (within a few frames)."""
    from crossattn_saliency import data

    root = data.fetch_sdist(*data.POCKETSPHINX_SDIST, members=["test/data/librivox", "LICENSE"])
    cand = next(c for c in data.pocketsphinx_candidates(root).candidates if c.id.endswith("-0890"))
    audio = data.read_audio(cand.audio_path)
    words = alignment.forced_alignment(audio, cand.transcript, SAMPLING_RATE)
    _check_timings(audio, words)
    e = timestamps.boundary_errors(words, list(cand.word_alignment))
    assert e["matched"] >= 0.9 * len(cand.word_alignment) and np.median(e["start_ms"]) <= 30


def test_disagreement_floor_and_report_keep_real_and_synthetic_apart():
    d = pd.DataFrame([
        {"set": "en-real", "utterance": "a", "reference": "mfa", "synthetic": False, "independent": True,
         "words": 10, "matched": 10, "start median (ms)": 10.0},
        {"set": "en-real", "utterance": "b", "reference": "pocketsphinx", "synthetic": False, "independent": False,
         "words": 10, "matched": 10, "start median (ms)": 0.0},
        {"set": "en-tts", "utterance": "c", "reference": "piper", "synthetic": True, "independent": True,
         "words": 5, "matched": 5, "start median (ms)": 40.0},
    ])
    assert timing.disagreement_floor(d) == 10.0                   # real speech, independent pairs only
    assert timing.disagreement_floor(d, "en-tts") == 40.0
    assert timing.disagreement_floor(d.iloc[1:2]) is None
    timing_rows = pd.DataFrame(columns=["condition", "kind", "view", "utterances", "words"])
    text = report.downstream_section(timing_rows, d, {}, "tables")
    assert "median of 10 ms at word starts (1 recordings, 10 words)" in text
    assert "On `en-tts` the reference is the TTS engine's own timing" in text and "median of 40 ms" in text
    assert timestamps.boundary_errors([("a", 0.0, 1.0)], [("a", 0.1, 1.0)])["start_ms"][0] == pytest.approx(100)
