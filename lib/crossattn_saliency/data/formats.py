"""File-format parsers and text cleaning for the test-set sources.

* Praat TextGrids (long and short text formats, UTF-8 or UTF-16): :func:`parse_textgrid`
  into tiers of :class:`Interval`, plus :func:`utterance_segments` and
  :func:`word_alignment`, which read utterance and word tiers.
* Fish Fillets NG dialogue scripts (``dialogs_<lang>.lua``): :func:`parse_dialogs` into
  :class:`DialogLine`.
* Text cleaning: :func:`clean_line` (game lines, also the TTS input) and
  :func:`clean_english_transcript` (MFA and pocketsphinx transcripts).

Nothing here touches audio, the network or the file system beyond reading the file given.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Interval", "parse_textgrid", "utterance_segments", "word_alignment", "DialogLine",
           "parse_dialogs", "clean_line", "MIN_SENTENCE_WORDS", "clean_english_transcript"]


# ---------------------------------------------------------------------------
# TextGrid (Praat), long and short text formats, UTF-8 or UTF-16
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """One labelled interval of a TextGrid tier (times in seconds)."""

    start: float
    end: float
    text: str


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
    """Parse a Praat TextGrid (long or short text format) into tiers of intervals, with ``praatio``
    (a maintained TextGrid library; this function decodes UTF-16 and keeps empty labels).

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
    from praatio.utilities import textgrid_io

    if isinstance(source, bytes):
        text = _decode_text(source)
    elif isinstance(source, str) and "\n" in source:
        text = source
    else:
        text = _decode_text(Path(source).read_bytes())
    head = text.lstrip()[:200]
    if "ooTextFile" not in head or "TextGrid" not in head:
        raise ValueError("not a Praat TextGrid text file (expected 'ooTextFile' 'TextGrid')")
    parsed = textgrid_io.parseTextgridStr(text, includeEmptyIntervals=True)
    tiers: dict[str, list[Interval]] = {}
    for tier in parsed["tiers"]:
        point = tier["class"] == "TextTier"
        tiers[tier["name"]] = [Interval(float(e[0]), float(e[0]) if point else float(e[1]), str(e[-1]))
                               for e in tier["entries"]]
    return tiers


#: event and noise markup: ``[laughter]``, ``<VOCNOISE>``, ``<s>``, ``{CG}``
_EVENT = re.compile(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}")


def word_alignment(tiers: Mapping[str, list[Interval]], start: float = 0.0,
                   end: float = math.inf) -> tuple[tuple[str, float, float], ...]:
    """Words of the first tier whose name contains ``word``, inside ``[start, end]`` seconds.

    Empty labels, silence labels (``sil``, ``sp``, ``<eps>``) and event markup are
    skipped. Returns ``(word, start_s, end_s)`` relative to ``start``, in seconds
    rounded to 1 ms; ``()`` when the TextGrid has no word tier.
    """
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
# MFA and pocketsphinx transcripts
# ---------------------------------------------------------------------------

_FILLERS = {"uh", "um", "hm", "hmm", "er", "ah", "mm", "uhm"}
#: the fewest words (fillers not counted) that make a clip a sentence rather than a command
MIN_SENTENCE_WORDS = 4
_UNCERTAIN = re.compile(r"<(?:cutoff|hes)[^>]*>|<unk>", re.I)


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

