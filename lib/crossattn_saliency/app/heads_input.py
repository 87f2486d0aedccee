"""The input of the heads command (:mod:`.heads`), read and checked before any long work: the
user's clips, transcripts and reference word alignments, the model's shape, and a time estimate.

Every refusal is a :class:`HeadsError` whose message names the fix; nothing is written.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["HeadsError", "AUDIO_SUFFIXES", "STATED_RATE", "CLIP_OVERHEAD_S", "MIN_WORD_MATCH", "list_audio",
           "read_transcripts", "read_references", "check_model", "estimate_seconds"]

#: audio files a folder is searched for (what soundfile reads)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
#: SM_H perturbations per second of whisper-tiny.en on an idle 2-core CPU (batch 16, 8-11-token
#: hypotheses, the decoder's cross-attention keys/values reused: ``FAST_ENCODER``), measured with this
#: compendium: float32 PyTorch (``spes="exact"``: 54-59/s) and the profile's dtype (``spes="profile"``,
#: bfloat16: 106-122/s); other models are scaled by their decoder's size (layers x d_model^2), which
#: is conservative (whisper-base measured 24-34/s float32, 60/s bfloat16); longer hypotheses are slower
STATED_RATE = {"exact": 50.0, "profile": 100.0}
#: seconds per clip besides the SM_H loop (decoding, cross-attention, the reliability estimate)
CLIP_OVERHEAD_S = 5.0
#: share of the reference's words and of the transcript's words that must match each other
MIN_WORD_MATCH = 0.9
_TINY_DECODER = 4 * 384 ** 2


class HeadsError(ValueError):
    """Input that heads cannot be chosen from; the message names the fix. Nothing was written."""


def list_audio(audio: str | Path | Sequence[str | Path]) -> list[Path]:
    """The audio files of a folder (by suffix, :data:`AUDIO_SUFFIXES`, sorted) or the files given."""
    if isinstance(audio, (str, Path)):
        folder = Path(audio)
        if folder.is_file():
            return [folder]
        if not folder.is_dir():
            raise HeadsError(f"{folder} is neither an audio folder nor a file: give a folder of clips")
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not found:
            raise HeadsError(f"no audio files in {folder} (looked for {', '.join(AUDIO_SUFFIXES)}): put the clips "
                             "there, at most 30 s each")
        return found
    paths = [Path(p) for p in audio]
    if not paths:
        raise HeadsError("no audio files given: give a folder of clips")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise HeadsError(f"audio file(s) {missing} do not exist")
    return paths


def read_transcripts(transcripts: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    """Clip name (file stem) -> transcript: a mapping, a JSON object file, or a text file of lines
    ``<clip stem><TAB><transcript>``."""
    if transcripts is None:
        return {}
    if isinstance(transcripts, Mapping):
        return {str(k): str(v) for k, v in transcripts.items()}
    path = Path(transcripts)
    if not path.is_file():
        raise HeadsError(f"transcripts file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HeadsError(f"{path} is not valid JSON ({exc}): write {{\"clip stem\": \"transcript\", ...}}") from exc
        if not isinstance(d, dict):
            raise HeadsError(f"{path} must hold a JSON object {{\"clip stem\": \"transcript\", ...}}")
        return {str(k): str(v) for k, v in d.items()}
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise HeadsError(f"{path} line {n}: expected '<clip stem><TAB><transcript>', got {line[:60]!r}")
        stem, words = line.split("\t", 1)
        out[stem.strip()] = words.strip()
    return out


def _words_file(path: Path) -> list[tuple[str, float, float]]:
    if path.suffix.lower() == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [(str(w), float(s), float(e)) for w, s, e in rows]
    from ..data.formats import parse_textgrid, word_alignment

    words = list(word_alignment(parse_textgrid(path)))
    if not words:
        raise HeadsError(f"{path} has no word tier (a tier whose name contains 'word') or no words in it")
    return words


def read_references(references: str | Path | Mapping[str, Sequence[tuple[str, float, float]]] | None
                    ) -> dict[str, list[tuple[str, float, float]]]:
    """Clip name (file stem) -> reference words ``(word, start_s, end_s)``: a mapping, or a folder of
    ``<stem>.TextGrid`` (word tier) / ``<stem>.json`` (``[[word, start, end], ...]``) files."""
    if references is None:
        return {}
    if isinstance(references, Mapping):
        return {str(k): [(str(w), float(s), float(e)) for w, s, e in v] for k, v in references.items()}
    folder = Path(references)
    if not folder.is_dir():
        raise HeadsError(f"references folder {folder} does not exist: give a folder of <clip>.TextGrid or "
                         "<clip>.json word alignments")
    out = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in (".textgrid", ".json") and p.is_file():
            try:
                out[p.stem] = _words_file(p)
            except HeadsError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised with the file and the formats
                raise HeadsError(f"cannot read reference {p} ({exc.__class__.__name__}: {exc}): use a Praat "
                                 "TextGrid with a word tier or JSON [[word, start_s, end_s], ...]") from exc
    if not out:
        raise HeadsError(f"no references (<clip>.TextGrid or <clip>.json) in {folder}")
    return out


def _norm_words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def _check_words(name: str, transcript: str, ref: Sequence[tuple[str, float, float]]) -> None:
    import difflib

    a = _norm_words(transcript)
    b = _norm_words(" ".join(w for w, _, _ in ref))
    matched = sum(blk.size for blk in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks())
    if not b or matched < MIN_WORD_MATCH * len(b) or matched < MIN_WORD_MATCH * len(a):
        raise HeadsError(f"{name}: the reference's words do not match the transcript's ({matched} of {len(b)} "
                         f"reference and {len(a)} transcript words match; reference begins "
                         f"{' '.join(b[:8])!r}, transcript {' '.join(a[:8])!r}): give the reference of this clip, "
                         "or a transcript of the words it aligns (or no transcript: the reference's words are used)")


def check_model(model: str, write_config: bool = False) -> dict[str, Any]:
    """What is known of ``model`` before loading it: ``folder`` (a local ``transformers`` folder, or
    None), ``layers``, ``heads``, ``d_model`` (None for a hub id) and ``shipped`` alignment heads.
    Refuses a model without cross-attention and ``write_config`` for anything but a local folder
    with a ``generation_config.json``."""
    from ..core import config
    from ..models import loading

    if model in loading.EMBEDDED_MODELS:
        if write_config:
            raise HeadsError(f"--write-config writes into a local model folder, and {model!r} is an embedded "
                             f"model: copy its folder ({config.models_dir() / model}) and pass the copy's "
                             "path as --model")
        folder = loading.ensure_converted(model)
    elif Path(model).expanduser().is_dir():
        folder = Path(model).expanduser()
    else:
        if write_config:
            raise HeadsError(f"--write-config writes into a local model folder, and {model!r} is not one: "
                             "download the model to a folder and pass its path")
        return {"folder": None, "layers": None, "heads": None, "d_model": None, "shipped": []}
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise HeadsError(f"{folder} has no config.json: give a transformers Whisper folder (or a CTranslate2 one)")
    cfg = json.loads(cfg_file.read_text())
    if (folder / "model.bin").is_file() and "model_type" not in cfg:  # a CTranslate2 Whisper folder
        if write_config:
            raise HeadsError(f"{folder} is a CTranslate2 folder: --write-config writes generation_config.json of a "
                             "transformers folder; convert it first, or put the heads in its config.json yourself")
        return {"folder": folder, "layers": None, "heads": None, "d_model": None,
                "shipped": [list(map(int, h)) for h in cfg.get("alignment_heads", [])]}
    layers = cfg.get("decoder_layers")
    if cfg.get("model_type") != "whisper" or not cfg.get("is_encoder_decoder", True) or not layers:
        raise HeadsError(f"{folder} is a {cfg.get('model_type', 'unknown')!r} model without a decoder's cross-"
                         "attention (alignment heads are cross-attention heads of an encoder-decoder): give a "
                         "Whisper model folder")
    gen_file = folder / "generation_config.json"
    shipped = []
    if gen_file.is_file():
        shipped = [list(map(int, h)) for h in (json.loads(gen_file.read_text()).get("alignment_heads") or [])]
    elif write_config:
        raise HeadsError(f"{folder} has no generation_config.json to write alignment_heads into: save the model's "
                         "GenerationConfig there first (model.generation_config.save_pretrained(folder))")
    return {"folder": folder, "layers": int(layers), "heads": int(cfg.get("decoder_attention_heads") or 0),
            "d_model": int(cfg.get("d_model") or 0), "shipped": shipped}


def estimate_seconds(n_clips: int, perturbations_h: int, info: Mapping[str, Any], spes: str = "exact"
                     ) -> tuple[float, float]:
    """``(seconds, perturbations per second)``: a stated estimate for ``n_clips`` clips at this SM_H
    budget (:data:`STATED_RATE` scaled by the decoder's size, plus :data:`CLIP_OVERHEAD_S` a clip)."""
    rate = STATED_RATE[spes]
    if info.get("layers") and info.get("d_model"):
        rate = rate * _TINY_DECODER / (info["layers"] * info["d_model"] ** 2)
    return n_clips * (perturbations_h / rate + CLIP_OVERHEAD_S), rate
