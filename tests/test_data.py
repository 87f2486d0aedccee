"""Tests of the offline test-set builders on hand-made fixtures and synthetic audio."""
from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from crossattn_saliency.core import config
from crossattn_saliency.data import audio, formats, sets, sources
from crossattn_saliency.data.__main__ import main

FIX = Path(__file__).parent / "fixtures" / "data"
SR = audio.SAMPLING_RATE


# ---------------------------------------------------------------- dialogue scripts

def test_parse_dialogs_pairs_ids_fonts_and_lines():
    lines = formats.parse_dialogs(FIX / "dialogs_cs.lua")
    assert list(lines) == ["tst-m-vidis", "tst-v-uveznen", "tst-x-krab", "tst-v-cesta", "tst-m-cas"]
    assert lines["tst-m-vidis"].font == "font_small"
    assert lines["tst-m-vidis"].english == "Can you see that seahorse?"
    assert lines["tst-m-vidis"].text == "Vidíš toho koníka?"
    # dialogStr( on its own line, Lua escapes \" and \\ resolved
    assert lines["tst-v-uveznen"].text == "Je uvězněný mezi amforami."
    assert lines["tst-v-uveznen"].english == "It isn’t blocked by \"amphoras\"."
    assert lines["tst-v-cesta"].text == "Cesta C:\\WINDOWS je volná…"
    # English files have no dialogStr: the text is the English line
    en = formats.parse_dialogs(FIX / "dialogs_en.lua")
    assert en["tst-x-krab"].text == en["tst-x-krab"].english == "Leave me alone!"


def test_clean_line():
    assert formats.clean_line("It isn’t blocked by \"amphoras\".") == "It isn't blocked by amphoras."
    assert formats.clean_line("It took you %1 hours!") == ""
    assert formats.clean_line("  - Well… [laughs] fine  ") == "Well... fine"
    assert formats.clean_line("E’ incastrato tra le anfore.", "it") == "È incastrato tra le anfore."
    assert formats.clean_line("E’ incastrato", "en") == "E' incastrato"
    assert formats.clean_line("...") == ""


def _game(tmp_path: Path, clips: dict[str, tuple[int, int]]) -> Path:
    """A mini Fish Fillets tree: fixture scripts in script/tst/ and OGG clips {id: (sr, channels)}."""
    game = tmp_path / "game"
    (game / "script" / "tst").mkdir(parents=True)
    for lang in ("cs", "en", "it"):
        shutil.copy(FIX / f"dialogs_{lang}.lua", game / "script" / "tst")
    (game / "sound" / "tst" / "cs").mkdir(parents=True)
    for cid, (sr, ch) in clips.items():
        x = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(0.5 * sr)) / sr)
        sf.write(game / "sound" / "tst" / "cs" / f"{cid}.ogg", np.stack([x] * ch, 1) if ch > 1 else x, sr)
    return game


def test_fillets_real_pairs_main_voices_with_clips(tmp_path):
    game = _game(tmp_path, {"tst-m-vidis": (22050, 1), "tst-v-uveznen": (44100, 2), "tst-x-krab": (22050, 1),
                            "tst-v-extra": (22050, 1)})
    pool = sources.fillets_real_candidates(game, "cs", "fixture")
    by_id = {c.id: c for c in pool.candidates}
    assert set(by_id) == {"tst/tst-m-vidis", "tst/tst-v-uveznen"}
    assert by_id["tst/tst-m-vidis"].speaker == "small_fish"
    assert by_id["tst/tst-v-uveznen"].speaker == "big_fish"
    assert by_id["tst/tst-v-uveznen"].translation_en == "It isn't blocked by amphoras."
    assert by_id["tst/tst-m-vidis"].audio_path.name == "tst-m-vidis.ogg"
    assert pool.dropped == collections.Counter({"not a main voice": 1, "line without a clip": 2,
                                                "clip without a script line": 1})
    # the 44.1 kHz stereo clip comes back as 16 kHz mono of the same length in seconds
    wave = audio.read_audio(by_id["tst/tst-v-uveznen"].audio_path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - SR // 2) <= 1


def test_fillets_tts_lines(tmp_path):
    game = _game(tmp_path, {})
    it = sources.fillets_tts_candidates(game, "it", "festival:lp_diphone", "fixture")
    assert [c.id for c in it.candidates] == ["tst/tst-m-vidis", "tst/tst-v-uveznen"]
    assert it.candidates[1].transcript == it.candidates[1].tts_text == "È incastrato tra le anfore."
    assert it.candidates[1].translation_en == "It isn't blocked by amphoras."
    assert all(c.synthetic and c.speaker == "festival:lp_diphone" for c in it.candidates)
    assert it.dropped == collections.Counter({"not translated": 1})
    en = sources.fillets_tts_candidates(game, "en", "piper", "fixture")
    # the crab is not a main voice; the %1 line is kept with empty text for the selection to count
    assert [c.id for c in en.candidates] == ["tst/tst-m-cas", "tst/tst-m-vidis", "tst/tst-v-cesta",
                                             "tst/tst-v-uveznen"]
    assert en.candidates[0].transcript == "" and en.candidates[0].translation_en == ""


# ---------------------------------------------------------------- audio

def test_resample_preserves_length_and_frequency():
    for orig in (22050, 44100, 48000):
        t = np.arange(int(1.5 * orig)) / orig
        x = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
        y = audio.resample(x, orig, SR)
        assert y.dtype == np.float32
        assert abs(len(y) - int(1.5 * SR)) <= 1
        spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        peak_hz = np.argmax(spec) * SR / len(y)
        assert abs(peak_hz - 440.0) < 2.0
    x = np.ones(100, np.float32)
    assert audio.resample(x, SR, SR) is not None and len(audio.resample(x, SR, SR)) == 100


def test_to_mono_averages_channels_and_read_audio_picks_channel(tmp_path):
    x = np.stack([np.full(160, 0.5), np.full(160, -0.25)], axis=1)
    np.testing.assert_allclose(audio.to_mono(x), 0.125)
    assert audio.to_mono(np.zeros(7)).shape == (7,)
    with pytest.raises(ValueError, match="samples x channels"):
        audio.to_mono(np.zeros((2, 2, 2)))
    path = tmp_path / "st.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    np.testing.assert_allclose(audio.read_audio(path), 0.125, atol=1e-6)
    np.testing.assert_allclose(audio.read_audio(path, channel=1), -0.25, atol=1e-6)
    assert len(audio.read_audio(path, start_s=0.0025, end_s=0.005)) == 40


def test_corrupt_or_missing_audio_names_file_and_set(tmp_path):
    bad = tmp_path / "broken-clip.ogg"
    bad.write_bytes(b"OggS" + b"\x00garbage" * 20)
    with pytest.raises(audio.DataError, match=r"broken-clip\.ogg.*'cs-real'"):
        audio.read_audio(bad, set_name="cs-real")
    with pytest.raises(audio.DataError, match=r"nowhere\.ogg.*missing"):
        audio.read_audio(tmp_path / "nowhere.ogg", set_name="nl-real")


# ---------------------------------------------------------------- TextGrid

def test_textgrid_long_format_with_quotes_and_points():
    tiers = formats.parse_textgrid(FIX / "long_format.TextGrid")
    assert list(tiers) == ["words", "events"]
    assert tiers["words"][1] == formats.Interval(0.5, 1.25, 'he said "hi"')
    assert [iv.text for iv in tiers["words"]] == ["", 'he said "hi"', "there", ""]
    assert tiers["events"] == [formats.Interval(1.5, 1.5, "click")]
    assert formats.word_alignment(tiers) == (('he said "hi"', 0.5, 1.25), ("there", 1.25, 2.0))


def test_textgrid_short_format_utf16_and_segments():
    raw = (FIX / "short_format.TextGrid").read_text()
    for source in (FIX / "short_format.TextGrid", raw.encode("utf-16"), raw):
        tiers = formats.parse_textgrid(source)
        assert list(tiers) == ["alice", "bob"]
        assert tiers["bob"][1] == formats.Interval(20.0, 23.5, "uh fine thanks and you")
    segs = formats.utterance_segments(tiers)
    assert [(k, name, iv.start) for k, name, iv in segs] == [(0, "alice", 1.0), (1, "bob", 20.0)]
    with pytest.raises(ValueError, match="not a Praat TextGrid"):
        formats.parse_textgrid(b"hello\nworld")


def test_clean_english_transcript():
    clean = formats.clean_english_transcript
    assert clean("HE BEGAN A CONFUSED COMPLAINT\n") == ("HE BEGAN A CONFUSED COMPLAINT", None)
    assert clean("so i'm gonna cough <VOCNOISE> [laughter] here")[0] == "so i'm gonna cough here"
    assert clean("montreal uh forced aligner")[1].startswith("not a sentence")
    assert clean("montreal forced <unk> aligner")[1].startswith("cut-off")


def test_mfa_tree_cuts_long_stereo_recording_and_keeps_alignments(tmp_path):
    data = tmp_path / "mfa" / "tests" / "data"
    for sub in ("wav", "lab", "textgrid"):
        (data / sub).mkdir(parents=True)
    n = int(32.5 * SR)
    left, right = np.zeros(n), np.zeros(n)
    left[SR:4 * SR], right[20 * SR:int(23.5 * SR)] = 0.1, -0.1
    sf.write(data / "wav" / "dialogue.wav", np.stack([left, right], 1), SR)
    shutil.copy(FIX / "short_format.TextGrid", data / "textgrid" / "dialogue.TextGrid")
    sf.write(data / "wav" / "long_noboundary.wav", np.zeros(31 * SR), SR)
    (data / "lab" / "long_noboundary.lab").write_text("a long recording without any boundaries at all")
    sf.write(data / "wav" / "said.flac", np.zeros(int(2.5 * SR)), SR)
    (data / "lab" / "said.lab").write_text("he said hi there to me")
    shutil.copy(FIX / "long_format.TextGrid", data / "textgrid" / "said.TextGrid")
    sf.write(data / "wav" / "cmd.wav", np.zeros(SR), SR)
    (data / "lab" / "cmd.lab").write_text("six")
    sf.write(data / "wav" / "nolab.wav", np.zeros(SR), SR)
    (tmp_path / "mfa" / "tests" / "conftest.py").write_text(
        "def f():\n    return {'mfa_x': 'montreal forced aligner is here', 'mfa_y': 'no'}\n")
    sf.write(data / "wav" / "mfa_x.flac", np.zeros(SR), SR)

    pool = sources.mfa_candidates(tmp_path / "mfa", "fixture")
    by_id = {c.id: c for c in pool.candidates}
    assert set(by_id) == {"mfa/dialogue_000", "mfa/dialogue_001", "mfa/said", "mfa/mfa_x"}
    a, b = by_id["mfa/dialogue_000"], by_id["mfa/dialogue_001"]
    assert (a.channel, a.start_s, a.end_s, a.speaker) == (0, 1.0, 4.0, "mfa-alice")
    assert (b.channel, b.transcript) == (1, "uh fine thanks and you")
    wave = audio.read_audio(b.audio_path, channel=b.channel, start_s=b.start_s, end_s=b.end_s)
    assert len(wave) == int(3.5 * SR) and np.allclose(wave, -0.1, atol=1e-3)
    assert by_id["mfa/mfa_x"].transcript == "montreal forced aligner is here"
    assert json.loads(json.dumps(by_id["mfa/said"].word_alignment))[1] == ["there", 1.25, 2.0]
    assert pool.dropped == collections.Counter({"longer than 30 s, no utterance boundaries": 1,
                                                "not a sentence (< 4 words)": 1, "no transcript": 1})


# ---------------------------------------------------------------- selection

def _cands(n: int, **special) -> list[sources.Candidate]:
    out = []
    for i in range(n):
        cid = f"c{i:03d}"
        text, dur = special.get(cid, ("words here", 2.0))
        out.append(sources.Candidate(id=cid, language="en", transcript=text, speaker="s", source="t",
                               duration_s=dur))
    return out


def _fake_load(c: sources.Candidate) -> np.ndarray:
    # duration unknown from headers (TTS): the length comes from "synthesis"
    return np.zeros(int((c.duration_s or 1.0) * SR), np.float32)


def test_selection_is_seeded_deterministic_and_prefix():
    cands = _cands(30)
    ids = lambda n, seed: [c.id for c, _ in sources.iter_selected(cands, n, seed, _fake_load, collections.Counter())]
    assert ids(10, 0) == ids(10, 0)
    assert ids(10, 0) != ids(10, 1)
    assert ids(3, 0) == ids(10, 0)[:3] == ids(None, 0)[:3]
    assert sorted(ids(None, 0)) == [c.id for c in cands]
    # the order does not depend on how the candidates were listed
    shuffled = list(reversed(cands))
    assert [c.id for c, _ in sources.iter_selected(shuffled, 10, 0, _fake_load, collections.Counter())] == ids(10, 0)
    with pytest.raises(ValueError, match="unique"):
        sources.selection_order(["a", "a"], 0)


def test_selection_drops_and_counts_long_and_empty():
    special = {"c001": ("", 2.0), "c002": ("   ", 2.0), "c003": ("long header", 31.0)}
    cands = _cands(8, **special)
    # c004 is long only once synthesized (header duration unknown)
    cands[4] = sources.Candidate(id="c004", language="en", transcript="long tts", speaker="s", source="t")
    loads = []

    def load(c):
        loads.append(c.id)
        return np.zeros(int(31 * SR) if c.id == "c004" else SR, np.float32)

    dropped = collections.Counter()
    kept = [c.id for c, _ in sources.iter_selected(cands, None, 0, load, dropped)]
    assert sorted(kept) == ["c000", "c005", "c006", "c007"]
    assert dropped == collections.Counter({"empty text": 2, "longer than 30 s": 2})
    assert "c001" not in loads and "c003" not in loads  # no audio loaded for known drops
    order = [cands[i].id for i in sources.selection_order([c.id for c in cands], 0)]
    assert kept == [i for i in order if i in kept]


# ---------------------------------------------------------------- build, idempotency, atomicity

@pytest.fixture()
def fake_sets(tmp_path, monkeypatch):
    """build_set on 12 synthetic candidates in a temporary assets folder; counts audio loads."""
    monkeypatch.setenv("CROSSATTN_SALIENCY_CACHE", str(tmp_path / "assets"))
    cands = _cands(12, c005=("", 1.0))
    state = {"loads": 0, "fail_after": None}

    def load(c):
        state["loads"] += 1
        if state["fail_after"] is not None and state["loads"] > state["fail_after"]:
            raise audio.DataError(f"cannot decode audio file {c.id}.ogg (test set 'nl-real')")
        return np.full(int(c.duration_s * SR), 0.01 * int(c.id[1:]), np.float32)

    monkeypatch.setattr(sets, "prepare_set",
                        lambda name: sets.PreparedSet(sources.CandidatePool(list(cands)), load, {"fake": "1"}))
    return state


def test_build_set_writes_columns_and_is_idempotent_and_prefix(fake_sets):
    path = sets.build_set("nl-real", 4, seed=3)
    ds = sets.load_set("nl-real")
    assert ds.column_names == list(sets.COLUMNS) and len(ds) == 4
    row = ds[0]
    assert row["sampling_rate"] == SR and row["duration"] == 2.0 and len(row["audio"]) == 2 * SR
    assert isinstance(row["audio"][0], float) and row["word_alignment"] == ""
    info = json.loads((path / "build_info.json").read_text())
    assert (info["seed"], info["max_utterances"], info["utterances"], info["exhausted"]) == (3, 4, 4, False)
    small_ids = ds["id"]

    loads = fake_sets["loads"]
    sets.build_set("nl-real", 4, seed=3)
    sets.build_set("nl-real", 2, seed=3)
    assert fake_sets["loads"] == loads  # same or smaller size: nothing rebuilt
    assert sets.load_set("nl-real", 2)["id"] == small_ids[:2]

    sets.build_set("nl-real", None, seed=3)  # larger: rebuilt, the smaller build is a prefix
    full = sets.load_set("nl-real")
    assert full["id"][:4] == small_ids and len(full) == 11
    info = json.loads((path / "build_info.json").read_text())
    assert info["dropped_while_selecting"] == {"empty text": 1} and info["exhausted"]
    loads = fake_sets["loads"]
    sets.build_set("nl-real", 50, seed=3)  # all there are are already built
    assert fake_sets["loads"] == loads
    sets.build_set("nl-real", 4, seed=4)  # another seed: rebuilt
    assert sets.load_set("nl-real")["id"] != small_ids
    s = sets.set_summary(sets.load_set("nl-real"))
    assert s["utterances"] == 4 and s["total_duration_s"] == 8.0 and s["synthetic"] == [False]


def test_interrupted_build_keeps_previous_set(fake_sets):
    sets.build_set("cs-real", 3, seed=0)
    before = sets.load_set("cs-real")["id"]
    fake_sets["fail_after"] = fake_sets["loads"] + 2
    with pytest.raises(audio.DataError, match="cannot decode"):
        sets.build_set("cs-real", 8, seed=0)
    assert sets.load_set("cs-real")["id"] == before
    leftovers = [p.name for p in config.sets_dir().iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_load_set_errors(fake_sets):
    with pytest.raises(audio.DataError, match="not built"):
        sets.load_set("en-tts")
    sets.build_set("en-tts", 2)
    with pytest.raises(audio.DataError, match="built with 2 utterances"):
        sets.load_set("en-tts", 5)
    with pytest.raises(ValueError, match="unknown test set"):
        sets.build_set("fr-real", 2)


def test_cli_builds_profile_sets(fake_sets, capsys):
    assert main(["build", "--profile", "smoke", "--sets", "en-real,cs-real"]) == 0
    out = capsys.readouterr().out
    assert "en-real" in out and "cs-real" in out and "2 utt" in out


def test_registry_is_the_one_list_of_set_names():
    assert sets.SET_NAMES == tuple(sets.SET_SPECS) == ("en-real", "en-tts", "it-tts", "nl-real", "cs-real")
    assert {n: (s.language, s.synthetic) for n, s in sets.SET_SPECS.items()} == {
        "en-real": ("en", False), "en-tts": ("en", True), "it-tts": ("it", True),
        "nl-real": ("nl", False), "cs-real": ("cs", False)}
    for profile in config.PROFILES.values():  # every profile sizes every registered set, and no other
        assert list(profile.set_sizes) == list(sets.SET_NAMES)
        sets.check_profile(profile)
    assert not hasattr(config, "SETS")
    with pytest.raises(TypeError):
        sets.SET_SPECS["xx-real"] = sets.SET_SPECS["en-real"]  # read-only


def test_profile_with_unknown_set_is_refused_naming_the_known_sets(fake_sets, capsys):
    bad = config.get_profile("smoke", set_sizes={"fr-real": 2})
    with pytest.raises(ValueError, match=r"profile 'smoke'.*'fr-real'.*known sets are \('en-real'"):
        sets.build_sets(bad)
    assert fake_sets["loads"] == 0
    with pytest.raises(ValueError, match=r"unknown test set 'fr-real'; choose one of \('en-real'"):
        sets.load_set("fr-real")
    assert main(["build", "--profile", "smoke", "--sets", "fr-real"]) == 1
    assert "unknown test set(s) ['fr-real']" in capsys.readouterr().err


def test_package_reexports_the_public_api():
    from crossattn_saliency import data

    for name in data.__all__:
        assert hasattr(data, name), name
    assert data.load_set is sets.load_set and data.DataError is audio.DataError
    assert data.SET_NAMES is sets.SET_NAMES and data.read_audio is audio.read_audio


def test_lower_modules_do_not_import_higher_ones():
    import ast

    folder = Path(sets.__file__).parent
    order = ["audio", "formats", "sources", "tts", "sets", "__main__"]
    allowed = {"audio": set(), "formats": set(), "sources": {"audio", "formats"}, "tts": {"audio"},
               "sets": {"audio", "formats", "sources", "tts"}, "__main__": {"audio", "sets"}}
    for name in order:
        tree = ast.parse((folder / f"{name}.py").read_text())
        siblings = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
        assert siblings <= allowed[name], (name, siblings)
    cfg = ast.parse(Path(config.__file__).read_text())  # config is the lowest layer: it never imports data
    assert not [n for n in ast.walk(cfg) if isinstance(n, ast.ImportFrom) and "data" in (n.module or "").split(".")]
    assert not [n for n in ast.walk(cfg) if isinstance(n, ast.ImportFrom) and any(a.name == "data" for a in n.names)]


def test_missing_fillets_sources_say_to_run_the_script(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSATTN_SALIENCY_CACHE", str(tmp_path))
    with pytest.raises(audio.DataError, match="install_system_deps.sh"):
        sources.fillets_game_dir()


# ---------------------------------------------------------------- integration (real sources)

@pytest.mark.integration
def test_build_en_real_from_real_sources(tmp_path, monkeypatch):
    try:
        sources.en_real_candidates()
    except audio.DataError as exc:
        pytest.skip(f"en-real sources cannot be obtained here (PyPI sdists): {exc}")
    monkeypatch.setattr(sets, "sets_dir", lambda: tmp_path / "sets")
    sets.build_set("en-real", 2, seed=0)
    ds = sets.load_set("en-real")
    assert len(ds) == 2 and set(ds["language"]) == {"en"} and not any(ds["synthetic"])
    for row in ds:
        assert row["transcript"] and 0 < row["duration"] <= 30
        assert abs(len(row["audio"]) / SR - row["duration"]) < 1e-3
        assert np.abs(np.asarray(row["audio"])).max() > 0.01  # real speech, not silence


def test_a_users_own_set_loads_by_name(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv(config.ENV_CACHE, str(tmp_path))
    rows = {"id": ["a", "b", "c"], "audio": [[0.0] * 160] * 3, "sampling_rate": [16000] * 3,
            "transcript": ["x", "y", "z"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(config.sets_dir() / "my-clips"))
    from crossattn_saliency import data as data_pkg

    assert len(data_pkg.load_set("my-clips")) == 3 and len(data_pkg.load_set("my-clips", 2)) == 2
    with pytest.raises((data_pkg.DataError, ValueError), match="unknown test set"):
        data_pkg.load_set("nobody-saved-this")
