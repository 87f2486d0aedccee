"""Features and the model's own hypotheses, decoded once and cached.

Every explanation in the study is about the model's own output: the hypothesis
y_1..y_I obtained by decoding (beam 5 in the study), later re-scored with forced
decoding. This module turns audio into Whisper features, decodes, and caches
the hypotheses (with their token ids and decoder prompt) per model x condition.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from .loading import LoadedModel


SAMPLING_RATE = 16000
#: Whisper's feature hop: 10 ms at 16 kHz
HOP_SAMPLES = 160
#: Whisper's encoder window: 30 s = 3000 feature frames
WINDOW_SECONDS = 30.0


class AudioError(ValueError):
    """Audio that the model cannot take; the message names the fix."""


@dataclass(frozen=True)
class Hypothesis:
    """A model's output for one utterance.

    ``prompt_ids`` is the decoder prompt (start, language, task, no-timestamps
    tokens: context, not explained); ``token_ids`` are the generated tokens, ending
    with <|endoftext|>; ``n_frames`` is the number of feature frames (10 ms each)
    covered by real audio.
    """

    utt_id: str
    prompt_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    text: str
    n_frames: int

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["prompt_ids"], d["token_ids"] = list(self.prompt_ids), list(self.token_ids)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Hypothesis":
        return cls(d["utt_id"], tuple(d["prompt_ids"]), tuple(d["token_ids"]), d["text"], int(d["n_frames"]))


def teacher_forcing_inputs(prompt_ids: Sequence[int], token_ids: Sequence[int]) -> tuple[list[int], int]:
    """Decoder input for a teacher-forced pass over a hypothesis.

    Returns ``(prompt + tokens[:-1], start)``: the ``len(tokens)`` decoder positions
    from ``start = len(prompt) - 1`` on predict ``tokens`` (the last one predicts
    <|endoftext|>). The one place where this convention lives.
    """
    prompt, toks = [int(t) for t in prompt_ids], [int(t) for t in token_ids]
    if not prompt:
        raise ValueError("prompt_ids is empty: pass the decoder prompt, e.g. [<|startoftranscript|>, ...]")
    if not toks:
        raise ValueError("token_ids is empty: pass the hypothesis to explain (ending with <|endoftext|>)")
    return prompt + toks[:-1], len(prompt) - 1


def check_audio(audio: np.ndarray, sampling_rate: int, utt_id: str = "audio") -> np.ndarray:
    """Validate a waveform for Whisper: 1-D float, 16 kHz, non-empty, finite, <= 30 s."""
    audio = np.asarray(audio, dtype=np.float32)
    if sampling_rate != SAMPLING_RATE:
        raise AudioError(f"{utt_id}: sampling rate {sampling_rate} Hz; Whisper needs {SAMPLING_RATE} Hz "
                         "(resample it, e.g. scipy.signal.resample_poly, or rebuild the set with `make data`)")
    if audio.ndim != 1:
        raise AudioError(f"{utt_id}: audio has shape {audio.shape}; expected mono (average the channels)")
    if audio.size == 0:
        raise AudioError(f"{utt_id}: empty audio")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{utt_id}: audio contains NaN or infinite samples")
    seconds = audio.size / SAMPLING_RATE
    if seconds > WINDOW_SECONDS:
        raise AudioError(f"{utt_id}: {seconds:.1f} s is longer than the model's {WINDOW_SECONDS:.0f} s window; "
                         "cut it into shorter utterances")
    return audio


def speech_frames(n_samples: int) -> int:
    """Feature frames (10 ms) whose centre lies inside the audio: ceil(samples / 160)."""
    return min(int(math.ceil(n_samples / HOP_SAMPLES)), int(WINDOW_SECONDS * 100))


def features(loaded: LoadedModel, audio: np.ndarray, sampling_rate: int = SAMPLING_RATE,
             utt_id: str = "audio") -> tuple[np.ndarray, int]:
    """Whisper log-mel features of one utterance.

    Returns
    -------
    feats : ``mel x frames`` float32 array (80 x 3000: the 30 s window, padded).
    n_frames : frames covered by real audio (the rest is padding).
    """
    audio = check_audio(audio, sampling_rate, utt_id)
    fe = loaded.processor.feature_extractor
    feats = fe(audio, sampling_rate=SAMPLING_RATE, return_tensors="np").input_features[0]
    return feats.astype(np.float32), speech_frames(audio.size)


def decode(loaded: LoadedModel, feats: np.ndarray, language: str = "en", task: str = "transcribe",
           beam_size: int = 5, max_new_tokens: int | None = None) -> list[int]:
    """Decode one utterance; returns generated token ids ending with <|endoftext|>.

    ``feats`` is ``mel x frames`` (80 x 3000). Beam search when ``beam_size > 1``,
    greedy otherwise; Whisper's suppressed tokens apply, no timestamps.
    ``max_new_tokens`` caps the output (default: the model's 448-position limit).
    """
    return decode_batch(loaded, [feats], language, task, beam_size, max_new_tokens)[0]


def decode_batch(loaded: LoadedModel, feats: Sequence[np.ndarray], language: str = "en", task: str = "transcribe",
                 beam_size: int = 5, max_new_tokens: int | None = None) -> list[list[int]]:
    """Decode several inputs of the same model in one ``generate`` call (a batch of
    ``len(feats)``; each ``mel x frames``, 80 x 3000); returns each one's generated token ids
    ending with <|endoftext|>, as :func:`decode` would (the inputs all fill the 30 s window, so
    no padding enters the batch; a batch can differ from one-by-one decoding only by the
    rounding of batched matrix products)."""
    import torch

    if not len(feats):
        return []
    model = loaded.model
    kwargs: dict[str, Any] = dict(num_beams=beam_size, do_sample=False)
    if max_new_tokens is not None:
        kwargs["max_new_tokens"] = int(max_new_tokens)
    if loaded.info.multilingual:
        kwargs.update(language=language, task=task)
    else:
        loaded.prompt_ids(language, task)  # raises for tasks an English-only model cannot do
    x = torch.as_tensor(np.stack([np.asarray(f) for f in feats]), dtype=model.dtype, device=model.device)
    with torch.inference_mode():
        out = model.generate(x, **kwargs)
    prompt = loaded.prompt_ids(language, task)
    eot = loaded.special_ids["eot"]
    result = []
    for row in out.tolist():
        ids = [int(i) for i in row]
        if ids[:len(prompt)] == prompt:  # some versions return the prompt too
            ids = ids[len(prompt):]
        if eot in ids:
            ids = ids[:ids.index(eot)]
        result.append(ids + [eot])
    return result


@dataclass
class Utterance:
    """One utterance of a condition, ready for explanation.

    ``features`` is ``mel x frames`` (80 x 3000, padded to 30 s); ``n_frames`` counts the
    frames (10 ms) covered by speech; ``hyp`` is the model's own cached output;
    ``reference`` the reference text (transcript or translation); ``row`` the set's
    row without its audio.
    """

    utt_id: str
    features: np.ndarray
    n_frames: int
    hyp: Hypothesis
    reference: str
    row: dict[str, Any]


def token_strings(loaded: LoadedModel, token_ids: Sequence[int]) -> list[str]:
    """Readable text of each token (byte-level BPE decoded; specials as <|...|>)."""
    return [loaded.tokenizer.decode([t]) for t in token_ids]
