"""Audio I/O for the test sets: reading any soundfile format as 16 kHz mono float32.

Holds :data:`SAMPLING_RATE` (the rate of every stored waveform), :func:`to_mono`,
:func:`resample` and :func:`read_audio`, and :class:`DataError`, the error of the
whole ``data`` package: it lives here because this is the package's lowest module,
the one every other module of the package imports.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

__all__ = ["SAMPLING_RATE", "INSTALL_SCRIPT", "DataError", "to_mono", "resample", "read_audio"]

#: sampling rate of every stored waveform (Hz)
SAMPLING_RATE = 16_000
#: the command (run from the repository root) that fetches the system packages and game data
INSTALL_SCRIPT = "bash data/install_system_deps.sh"


class DataError(RuntimeError):
    """A test set cannot be built or read (missing source, corrupt file, missing tool)."""


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
                        f"({INSTALL_SCRIPT}, then build the set with force=True)")
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
