"""Explaining one clip outside the test sets (real model, real audio, smoke budgets)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from crossattn_saliency import data
from crossattn_saliency.models import decoding
from crossattn_saliency.app.clip import ClipError, explain_clip, main
from crossattn_saliency.explain.explanation import Explained

pytestmark = pytest.mark.integration

CLIP = "sense_and_sensibility_01_austen_64kb-0880"  # 3.0 s of read English (LibriVox, public domain)
SMOKE = dict(perturbations=32, perturbations_h=64, profile="smoke")


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """The LibriVox clip as a 44.1 kHz stereo FLAC: any rate, any channel count."""
    root = data.fetch_sdist(*data.POCKETSPHINX_SDIST, members=["test/data/librivox", "LICENSE"])
    mono = data.read_audio(root / "test" / "data" / "librivox" / f"{CLIP}.wav")
    from scipy.signal import resample_poly

    hi = resample_poly(mono, 441, 160).astype(np.float32)
    path = tmp_path_factory.mktemp("clip") / "austen.flac"
    sf.write(path, np.stack([hi, 0.5 * hi], axis=1), 44100)
    return path


def test_a_real_clip_is_explained_from_the_command_line_and_from_python(clip_file, tmp_path, capsys):
    cache, out, fig = tmp_path / "store", tmp_path / "austen.npz", tmp_path / "austen.png"
    assert main([str(clip_file), "--model", "whisper-tiny.en", "--perturbations", "32", "--perturbations-h", "64",
                 "--profile", "smoke", "--cache", str(cache), "--out", str(out), "--figure", str(fig)]) == 0
    printed = capsys.readouterr().out
    assert "reliability" in printed and out.is_file() and fig.stat().st_size > 10_000
    back = Explained.load(out)
    assert back.text.lower().startswith("and") or len(back.tokens) >= 5
    assert set(back.explanations) == {"CA", "SM_X", "SM_H"} and set(back.reliability) == {"SM_X", "SM_H"}
    ca, sm_x, sm_h = (back.explanations[k] for k in ("CA", "SM_X", "SM_H"))
    n_pos = int(np.ceil(back.n_frames / 2))
    assert sm_x.maps.shape == (len(back.tokens), back.n_frames, 80) and sm_h.maps.shape == (len(back.tokens), n_pos)
    assert ca.maps.shape[2:] == (len(back.tokens), n_pos) and sm_x.halves is not None
    # the same clip from Python, same settings and store: the stored maps, identical arrays
    res = explain_clip(clip_file, model="whisper-tiny.en", cache=cache, progress=False, **SMOKE)
    assert res.text == back.text and res.token_ids == back.token_ids
    for k, e in res.explanations.items():
        np.testing.assert_array_equal(e.maps, back.explanations[k].maps)
        if e.halves is not None:
            np.testing.assert_array_equal(e.halves[0], back.explanations[k].halves[0])
    np.testing.assert_array_equal(res.utt.features, back.utt.features)
    assert res.reliability == pytest.approx(back.reliability)
    # a round trip of the Python result is exact too
    again = Explained.load(res.save(tmp_path / "again.npz"))
    for k, e in res.explanations.items():
        np.testing.assert_array_equal(e.maps, again.explanations[k].maps)
    # a given transcript is explained as forced output
    forced = explain_clip(clip_file, model="whisper-tiny.en", transcript="Hello world", kinds=["CA"], cache=cache,
                          progress=False, **SMOKE)
    assert forced.info["forced"] and forced.text == "Hello world" and len(forced.tokens) == 2


def _silent(path, seconds, rate=16000):
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)
    return path


@pytest.mark.parametrize("case, message", [
    ("unreadable", "cannot read .* as audio"),
    ("missing", "does not exist"),
    ("empty", "empty audio"),
    ("too long", "longer than the model's 30 s window"),
    ("unknown model", "cannot load model 'no-such-org/no-such-whisper'"),
    ("no tokens", "has no tokens"),
])
def test_bad_input_gives_one_clear_error_and_writes_nothing(case, message, clip_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    audio, args = str(clip_file), []
    if case == "unreadable":
        audio = str(tmp_path / "notes.wav")
        (tmp_path / "notes.wav").write_text("not audio")
    elif case == "missing":
        audio = str(tmp_path / "nowhere.wav")
    elif case == "empty":
        audio = str(_silent(tmp_path / "empty.wav", 0))
    elif case == "too long":
        audio = str(_silent(tmp_path / "long.wav", 31))
    elif case == "unknown model":
        args = ["--model", "no-such-org/no-such-whisper"]
    else:
        args = ["--transcript", "   "]
    cache, out = tmp_path / "store", tmp_path / "result.npz"
    with pytest.raises(SystemExit) as exc:
        main([audio, "--model", "whisper-tiny.en", *args, "--perturbations", "32", "--perturbations-h", "64",
              "--profile", "smoke", "--cache", str(cache), "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    import re

    assert re.search(message, err), err
    assert not out.exists() and not cache.exists()
    with pytest.raises(ClipError, match=message):
        explain_clip(audio, **{"model": "whisper-tiny.en", "cache": cache, "progress": False, **SMOKE,
                               **({"model": args[1]} if case == "unknown model" else {}),
                               **({"transcript": "   "} if case == "no tokens" else {})})
    assert not cache.exists()


def test_an_array_at_another_rate_is_resampled(clip_file):
    from crossattn_saliency.app.clip import load_clip_audio

    samples, rate = sf.read(clip_file, dtype="float32")
    got, _ = load_clip_audio(samples, rate)
    want = data.read_audio(clip_file)
    assert abs(len(got) - len(want)) <= 2 and decoding.SAMPLING_RATE == 16000
    with pytest.raises(ClipError, match="sampling_rate"):
        load_clip_audio(samples)
