"""Alignment heads chosen from the model itself (issue 25, item 1): the selection on planted maps,
every refusal writing nothing, and the command line end to end on two real clips with tiny.en,
with the heads read back by ``transformers``."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from crossattn_saliency.app import heads as app_heads
from crossattn_saliency.evaluate import heads as H

L, NH = 4, 6
PLANTED = [(1, 2), (2, 4), (3, 0)]


def _planted_clip(rng: np.random.Generator, T: int = 10, P: int = 120):
    """One clip: words of one token each; the planted heads follow the words (plus noise), the other
    heads are noise that attends to a shifted alignment; SM_H follows the words."""
    edges = np.concatenate([[2], np.sort(rng.choice(np.arange(6, P - 6, 4), T - 1, replace=False)), [P - 2]])
    sig = np.zeros((T, P))
    for i in range(T):
        sig[i, edges[i]:edges[i + 1]] = 1.0
    ca = rng.random((L, NH, T, P)) + np.roll(sig, 40, axis=1)[None, None] * rng.random((L, NH, 1, 1))
    for l, h in PLANTED:
        ca[l, h] = sig + 1.5 * rng.standard_normal((T, P))
    sm = sig + 0.3 * rng.standard_normal((T, P))
    toks = [f" w{i}" for i in range(T)]
    ref = [(f"w{i}", edges[i] * 0.02, edges[i + 1] * 0.02) for i in range(T)]
    return ca, sm, toks, P * 0.02, ref


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    return [_planted_clip(rng) for _ in range(6)]


def test_agreement_recovers_planted_heads(planted):
    sel = H.select_by_agreement([c[0] for c in planted], [c[1] for c in planted])
    assert sel.method == "agreement" and sel.higher_is_better
    assert sorted(map(tuple, sel.heads)) == sorted(PLANTED) and sel.k == 3
    assert sel.scores.shape == (L, NH) and sel.per_clip.shape == (6, L, NH)
    assert max(sel.held_out, key=sel.held_out.get) == 3


def test_timing_recovers_planted_heads(planted):
    sel = H.select_by_timing([c[0] for c in planted], [c[2] for c in planted], [c[3] for c in planted],
                             [c[4] for c in planted])
    assert sel.method == "timing" and not sel.higher_is_better
    assert sorted(map(tuple, sel.heads)) == sorted(PLANTED) and sel.k == 3
    assert {tuple(p) for p, _ in sel.ranking[:3]} == set(PLANTED)
    assert min(sel.held_out, key=sel.held_out.get) == 3


def test_choose_k_ties_go_to_the_smaller_k():
    assert H.choose_k({1: 30.0, 2: 20.0, 3: 20.0, 4: 25.0}, higher_is_better=False) == 2
    assert H.choose_k({1: 0.30, 2: 0.41, 3: 0.42}, higher_is_better=True, tolerance=0.02) == 2
    assert H.choose_k({1: float("nan"), 2: 0.1}, higher_is_better=True) == 2
    with pytest.raises(ValueError):
        H.choose_k({1: float("nan")}, higher_is_better=True)


def test_selection_needs_two_clips(planted):
    with pytest.raises(ValueError, match="at least 2 clips"):
        H.select_by_agreement([planted[0][0]], [planted[0][1]])
    with pytest.raises(ValueError, match="SM_H"):
        H.agreement_scores([planted[0][0]], [planted[0][1][:, :10]])


# --------------------------------------------------------------------------- refusals (nothing written)


def _wav(path: Path, seconds: float, seed: int = 0) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.05 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
    return path


def _refused(tmp_path: Path, args: list[str], message: str, capsys) -> None:
    from crossattn_saliency.__main__ import main

    out, cache = tmp_path / "out" / "heads.json", tmp_path / "store"
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exc:
        main(["heads", *args, "--out", str(out), "--cache", str(cache)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists() and not out.parent.exists() and not cache.exists()
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_refuses_a_folder_without_audio(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "notes.txt").write_text("no audio here")
    _refused(tmp_path, ["--model", "whisper-tiny.en", "--audio", str(tmp_path / "clips")], "no audio files in", capsys)


def test_refuses_a_clip_over_30_s(tmp_path, capsys):
    _wav(tmp_path / "clips" / "a.wav", 1.0)
    _wav(tmp_path / "clips" / "long.wav", 31.0)
    _refused(tmp_path, ["--model", "whisper-tiny.en", "--audio", str(tmp_path / "clips")], "30 s", capsys)


def test_refuses_a_model_without_cross_attention(tmp_path, capsys):
    _wav(tmp_path / "clips" / "a.wav", 1.0)
    _wav(tmp_path / "clips" / "b.wav", 1.0, 1)
    folder = tmp_path / "ctc"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForCTC"]}))
    _refused(tmp_path, ["--model", str(folder), "--audio", str(tmp_path / "clips")],
             "without a decoder's cross-attention", capsys)


def test_refuses_references_that_do_not_match_the_transcripts(tmp_path, capsys):
    _wav(tmp_path / "clips" / "a.wav", 1.0)
    _wav(tmp_path / "clips" / "b.wav", 1.0, 1)
    (tmp_path / "t.tsv").write_text("a\thello there world\nb\tgood morning\n")
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "a.json").write_text(json.dumps([["hello", 0.1, 0.3], ["there", 0.3, 0.5], ["world", 0.5, 0.9]]))
    (refs / "b.json").write_text(json.dumps([["completely", 0.1, 0.4], ["different", 0.4, 0.9]]))
    _refused(tmp_path, ["--model", "whisper-tiny.en", "--audio", str(tmp_path / "clips"), "--transcripts",
                        str(tmp_path / "t.tsv"), "--references", str(refs)], "b: the reference's words do not match",
             capsys)


def test_refuses_write_config_for_an_embedded_model(tmp_path, capsys):
    _wav(tmp_path / "clips" / "a.wav", 1.0)
    _wav(tmp_path / "clips" / "b.wav", 1.0, 1)
    _refused(tmp_path, ["--model", "whisper-tiny.en", "--audio", str(tmp_path / "clips"), "--write-config"],
             "copy its folder", capsys)


def test_refuses_a_single_clip(tmp_path, capsys):
    _wav(tmp_path / "clips" / "a.wav", 1.0)
    _refused(tmp_path, ["--model", "whisper-tiny.en", "--audio", str(tmp_path / "clips")], "at least 2", capsys)


def test_write_alignment_heads_keeps_the_other_settings(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 50256, "alignment_heads": [[1, 0]]}))
    app_heads.write_alignment_heads(tmp_path, [(3, 1), (2, 0)])
    assert json.loads((tmp_path / "generation_config.json").read_text()) == {
        "eos_token_id": 50256, "alignment_heads": [[3, 1], [2, 0]]}
    with pytest.raises(app_heads.HeadsError):
        app_heads.write_alignment_heads(tmp_path / "nowhere", [(0, 0)])


# --------------------------------------------------------------------------- end to end, real clips, tiny.en

COLD_CUT_S = 4.44  # the cold_corpus recording of en-real cut after "... i have a" (a pause follows)


@pytest.fixture(scope="module")
def real_clips(tmp_path_factory):
    """Two short real clips of the smoke en-real set with their shipped word alignments (one as a
    TextGrid, one as JSON), and a copy of tiny.en's converted folder."""
    import soundfile as sf

    from crossattn_saliency.data import DataError, sets
    from crossattn_saliency.models import loading

    try:
        rows = {str(r["id"]): r for r in sets.load_set("en-real")}
        folder = loading.ensure_converted("whisper-tiny.en")
    except (DataError, loading.ModelError) as exc:
        pytest.skip(f"needs the built en-real set and the embedded tiny.en: {exc}")
    sense = next((r for i, r in rows.items() if "sense_and_sensibility" in i), None)
    cold = next((r for i, r in rows.items() if "cold_corpus" in i), None)
    if sense is None or cold is None:
        pytest.skip("the smoke en-real set lacks its two clips")
    root = tmp_path_factory.mktemp("heads")
    clips, refs = root / "clips", root / "refs"
    clips.mkdir()
    refs.mkdir()
    sf.write(clips / "sense.wav", np.asarray(sense["audio"], dtype=np.float32), 16000)
    sf.write(clips / "cold.wav", np.asarray(cold["audio"], dtype=np.float32)[: int(COLD_CUT_S * 16000)], 16000)
    sense_words = json.loads(sense["word_alignment"])
    cold_words = [w for w in json.loads(cold["word_alignment"]) if w[2] <= COLD_CUT_S]
    (refs / "sense.json").write_text(json.dumps(sense_words))
    from praatio import textgrid

    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier("words", [(s, e, w) for w, s, e in cold_words], 0, COLD_CUT_S))
    tg.save(str(refs / "cold.TextGrid"), format="long_textgrid", includeBlankSpaces=True)
    (root / "transcripts.tsv").write_text("".join(f"{n}\t{' '.join(w for w, _, _ in ws)}\n"
                                                  for n, ws in (("sense", sense_words), ("cold", cold_words))))
    shutil.copytree(folder, root / "tinycopy")
    return root


def _token_timestamps(folder: Path, clip: Path) -> tuple[list, np.ndarray]:
    import soundfile as sf
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(str(folder), attn_implementation="eager").eval()
    proc = WhisperProcessor.from_pretrained(str(folder))
    audio, _ = sf.read(clip, dtype="float32")
    feats = proc.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    out = model.generate(feats, return_token_timestamps=True)
    return model.generation_config.alignment_heads, out["token_timestamps"][0].numpy()


@pytest.mark.integration
def test_cli_end_to_end_writes_heads_transformers_reads(real_clips, monkeypatch, capsys):
    from crossattn_saliency.__main__ import main

    # a relative model path: its result-store label ("tinycopy") is the same on every run, so the
    # SPES backend check and the SM_H maps of these clips are computed once and then reused
    monkeypatch.chdir(real_clips)
    gen = real_clips / "tinycopy" / "generation_config.json"
    before = json.loads(gen.read_text())
    t0 = time.perf_counter()
    rc = main(["heads", "--model", "tinycopy", "--audio", "clips", "--references", "refs", "--out", "heads.json",
               "--write-config", "--perturbations-h", "64", "--profile", "smoke"])
    seconds = time.perf_counter() - t0
    assert rc == 0
    printed = capsys.readouterr()
    assert "about" in printed.err and "min" in printed.err  # the time estimate came first
    choice = json.loads((real_clips / "heads.json").read_text())
    assert choice["method"] == "timing" and choice["clips"] == ["cold", "sense"]
    heads = choice["alignment_heads"]
    assert 1 <= choice["k"] == len(heads) <= 16 and all(0 <= l < 4 and 0 <= h < 6 for l, h in heads)
    assert np.asarray(choice["timing_ms"], dtype=float).shape == (4, 6)
    assert np.asarray(choice["agreement"], dtype=float).shape == (4, 6)
    assert choice["shipped"] == before["alignment_heads"]
    best = min(v for v in choice["held_out"].values() if v is not None)
    assert choice["held_out"][str(choice["k"])] == pytest.approx(best)
    assert choice["shipped_score"] is not None and choice["shipped_score"] > 0
    after = json.loads(gen.read_text())
    assert after["alignment_heads"] == heads
    assert {k: v for k, v in after.items() if k != "alignment_heads"} == \
        {k: v for k, v in before.items() if k != "alignment_heads"}
    print(f"\nheads CLI end to end (2 clips, SM_H 64): {seconds:.1f} s; chose {heads}")

    # transformers reads the heads back, and its token timestamps follow them
    read, ts_chosen = _token_timestamps(real_clips / "tinycopy", real_clips / "clips" / "sense.wav")
    assert [list(h) for h in read] == heads
    other = [[0, 0]] if heads != [[0, 0]] else [[0, 1]]
    app_heads.write_alignment_heads(real_clips / "tinycopy", other)
    read2, ts_other = _token_timestamps(real_clips / "tinycopy", real_clips / "clips" / "sense.wav")
    assert [list(h) for h in read2] == other
    assert ts_chosen.shape == ts_other.shape and not np.allclose(ts_chosen, ts_other)

    # no references: heads by agreement with SM_H (the same forced texts: the stored maps are reused)
    rc = main(["heads", "--model", "tinycopy", "--audio", "clips", "--transcripts", "transcripts.tsv", "--out",
               "agree.json", "--perturbations-h", "64", "--profile", "smoke"])
    assert rc == 0
    agree = app_heads.HeadChoice.load(real_clips / "agree.json")
    assert agree.method == "agreement" and agree.timing_ms is None and agree.k == len(agree.heads) >= 1
    assert np.allclose(agree.agreement, np.asarray(choice["agreement"], dtype=float), equal_nan=True)
