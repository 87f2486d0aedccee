"""Explain one audio clip with any Whisper: the compendium's explanations outside its test sets.

::

    from crossattn_saliency.app.clip import explain_clip, figure, widget
    result = explain_clip("clip.wav", model="whisper-base", task="translate", language="it")
    figure(result)                       # spectrogram, CA, SM_X, SM_H; one row per output token
    widget(result)                       # in JupyterLab: choose a token and an attention view
    result.save("clip.npz"); Explained.load("clip.npz")

or, from a shell, ``python -m crossattn_saliency explain clip.wav --model whisper-base --task
translate --language it --out clip.npz --figure clip.png``.

The clip goes through exactly the code the study's notebooks use: the hypothesis is the model's
own decoding (or a transcript you give, forced), and every explanation kind is computed by its
registered function (:mod:`..explain.kinds`) through a result store in ``cache`` (default
``<assets>/clips``), keyed by the audio's content, so a rerun of the same clip with the same
settings loads what it finished. The result is the compendium's one per-utterance type,
:class:`~..explain.explanation.Explained`. Each SPES map comes with its null-corrected reliability
(:class:`~..evaluate.map_noise.ReferenceNoise`; ``result.reliability``), which says how much of the
map is sampling noise at the chosen budget.

Bad input is refused before anything is computed or written: an unreadable or empty file, audio
longer than Whisper's 30 s window, an unknown model, a transcript with no tokens.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..core import config
from ..evaluate.views import View
from ..explain.explanation import Explained

__all__ = ["ClipError", "DEFAULT_KINDS", "explain_clip", "load_clip_audio", "figure", "widget", "main"]

#: explanation kinds computed for a clip unless others are named
DEFAULT_KINDS = ("CA", "SM_X", "SM_H")


class ClipError(ValueError):
    """A clip, model or transcript that cannot be explained; the message names the fix."""


def load_clip_audio(audio: str | Path | np.ndarray, sampling_rate: int | None = None) -> tuple[np.ndarray, str]:
    """``(samples, name)``: 16 kHz mono float32 samples of a file (any format and rate soundfile
    reads, mono or stereo) or of an array (``sampling_rate`` required; channels last are averaged),
    checked for Whisper (non-empty, finite, at most 30 s)."""
    from ..models import decoding
    from ..data import audio as audio_io

    if isinstance(audio, (str, Path)):
        path = Path(audio)
        if not path.is_file():
            raise ClipError(f"audio file {path} does not exist")
        try:
            samples = audio_io.read_audio(path)
        except Exception as exc:  # noqa: BLE001 - re-raised with the file and the formats
            raise ClipError(f"cannot read {path} as audio ({exc.__class__.__name__}: {exc}); use a format "
                            "soundfile reads (WAV, FLAC, OGG/Vorbis, MP3 ...)") from exc
        name = path.stem
    else:
        if sampling_rate is None:
            raise ClipError("an audio array needs its sampling_rate (Hz)")
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1 if samples.shape[1] < samples.shape[0] else 0)
        if int(sampling_rate) != decoding.SAMPLING_RATE and samples.size:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(int(sampling_rate), decoding.SAMPLING_RATE)
            samples = resample_poly(samples, decoding.SAMPLING_RATE // g, int(sampling_rate) // g).astype(np.float32)
        name = "clip"
    try:
        samples = decoding.check_audio(samples, decoding.SAMPLING_RATE, name)
    except decoding.AudioError as exc:
        raise ClipError(str(exc)) from exc
    return samples, name


def figure(result: Explained, view: View | None = None, reducer: str | None = None,
           tokens: Sequence[int] | None = None) -> Any:
    """The spectrogram above every kind's map of an explained clip (one row per output token, each
    row on its own scale); ``tokens`` keeps only those token indices. Returns the figure."""
    from ..present import maps as map_plots

    maps = result.maps(view, reducer or result.info.get("reducer", "max2d"))
    names = result.tokens
    if tokens is not None:
        idx = [int(i) for i in tokens]
        maps = {k: m[idx] for k, m in maps.items()}
        names = [names[i] for i in idx]
    rel = result.reliability
    labels = {}
    for k, m in maps.items():
        e = result.explanations[k]
        extra = f", {view.label(e.n_layers)}" if (e.layered and view is not None) else ""
        labels[f"{k}{extra}" + (f" (reliability {rel[k]:.2f})" if k in rel else "")] = m
    return map_plots.plot_spectrogram_and_maps(result.utt.features, result.n_frames, labels, names, 0.02,
                                           title=f"{result.info.get('model', '')} · {result.info.get('task', '')} · "
                                                 f"“{result.text[:70]}”", per_token=True)


def widget(result: Explained) -> Any:
    """An interactive view of an explained clip for JupyterLab: choose a token (or all) and an
    attention view; the figure redraws. Needs ``ipywidgets``."""
    import ipywidgets as w
    from IPython.display import display
    from matplotlib import pyplot as plt

    layered = [e for e in result.explanations.values() if e.layered]
    views = layered[0].views() if layered else [None]
    token_opts = [("all tokens", -1)] + [(f"{i + 1}: {t!r}", i) for i, t in enumerate(result.tokens)]
    view_opts = [(v.label(layered[0].n_layers) if v else "map", i) for i, v in enumerate(views)]
    tok = w.Dropdown(options=token_opts, value=-1, description="token")
    vw = w.Dropdown(options=view_opts, value=0, description="attention")
    out = w.Output()

    def draw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            fig = figure(result, view=views[vw.value], tokens=None if tok.value < 0 else [tok.value])
            display(fig)
            plt.close(fig)

    tok.observe(draw, "value")
    vw.observe(draw, "value")
    draw()
    return w.VBox([w.HBox([tok, vw]), out])


def _transcript_ids(loaded: Any, transcript: str) -> list[int]:
    text = " " + transcript.strip()
    ids = loaded.tokenizer(text, add_special_tokens=False).input_ids if transcript.strip() else []
    if not ids:
        raise ClipError(f"the transcript {transcript!r} has no tokens: give the words spoken (or translated), "
                        "or leave it out to explain the model's own output")
    return [int(i) for i in ids] + [loaded.special_ids["eot"]]


def explain_clip(audio: str | Path | np.ndarray, model: str = "whisper-base", task: str = "transcribe",
                 language: str = "en", transcript: str | None = None, kinds: Sequence[str] = DEFAULT_KINDS,
                 perturbations: int | None = None, perturbations_h: int | None = None,
                 sampling_rate: int | None = None, profile: str = "default", seed: int = 0,
                 cache: str | Path | None = None, progress: bool = True,
                 overrides: Mapping[str, Any] | None = None) -> Explained:
    """Explain one clip with every kind in ``kinds`` (see the module docstring).

    Parameters
    ----------
    audio : a file path (any format and rate soundfile reads; stereo is averaged) or samples.
    model : an embedded name (``whisper-tiny.en``, ``whisper-base``), a local folder or a hub id.
    task, language : ``"transcribe"`` or ``"translate"`` (into English) and the spoken language.
    transcript : explain this text (forced) instead of the model's own decoding.
    kinds : registered explanation kinds (:data:`.kinds.REGISTRY`).
    perturbations, perturbations_h : SPES budgets of SM_X and SM_H (default: the profile's).
    profile : the run profile whose other settings apply (decoding beam, dtype, backend, reducer).
    overrides : profile fields to change for this clip (e.g. ``{"spes_backend": "torch", "dtype":
        "float32"}`` for exact SPES passes); the result store keys every record by them.
    cache : result store folder (default ``<assets>/clips``; ``config.assets_dir()``).
    """
    from ..core.config import Condition, derive_seed
    from ..core.progress import say
    from ..evaluate import map_noise
    from ..explain import kinds as K
    from ..models import decoding, loading
    from ..run.context import Context
    from ..run.explaining import explanation, spes_profile
    from ..run.store import ResultStore

    if task not in ("transcribe", "translate"):
        raise ClipError(f"task={task!r} is invalid: 'transcribe' or 'translate'")
    unknown = [k for k in kinds if k not in K.REGISTRY]
    if unknown or not kinds:
        raise ClipError(f"unknown explanation kind(s) {unknown or '(none given)'}; registered: {list(K.REGISTRY)}")
    samples, name = load_clip_audio(audio, sampling_rate)
    try:
        base = config.get_profile(profile, **dict(overrides or {}))
    except ValueError as exc:
        raise ClipError(str(exc)) from exc
    try:
        loaded = loading.load_model(model, dtype=base.model_dtype, device=base.device)
    except loading.ModelError as exc:
        raise ClipError(str(exc)) from exc
    try:
        prompt = [int(t) for t in loaded.prompt_ids(language, task)]
    except ValueError as exc:
        raise ClipError(f"{model} cannot {task} {language!r}: {exc}") from exc
    forced = transcript is not None
    token_ids = _transcript_ids(loaded, transcript) if forced else None
    digest = hashlib.sha256(samples.tobytes()).hexdigest()[:12]
    utt_id = f"{name}-{digest}"  # the store keys a clip by its samples and, when forced, by its transcript
    if forced:
        utt_id += "-t" + hashlib.sha256(transcript.encode()).hexdigest()[:8]
    cond = Condition(model, "clip", task, language)
    cfg = base.with_overrides(conditions=(cond,), saliency_conditions=(cond.name,), explanations=tuple(kinds), seed=seed,
                              spes_perturbations=int(perturbations or base.spes_perturbations),
                              spes_h_perturbations=int(perturbations_h or base.spes_h_perturbations))
    feats, n_frames = decoding.features(loaded, samples, decoding.SAMPLING_RATE, utt_id)
    t0 = time.perf_counter()
    if token_ids is None:
        token_ids = decoding.decode(loaded, feats, language, task, cfg.beam_size)
        if len(token_ids) < 2:
            raise ClipError(f"{model} produced no output for {name} ({task}, {language}); give a transcript "
                            "to explain instead")
    text = loaded.tokenizer.decode(token_ids, skip_special_tokens=True).strip()
    hyp = decoding.Hypothesis(utt_id, tuple(prompt), tuple(token_ids), text, n_frames)
    row = {"id": utt_id, "name": name, "model": model, "task": task, "language": language, "forced": forced}
    utt = decoding.Utterance(utt_id, feats, n_frames, hyp, transcript or "", row)
    store = ResultStore(Path(cache) if cache else config.assets_dir() / "clips", on_mismatch="recompute")
    ctx = Context(cfg, cond, store, lambda: loaded)
    spes = [k for k in kinds if K.get(k).reference]
    if spes and progress:
        say(f"{name}: {n_frames / 100:.1f} s, {len(token_ids)} tokens; SPES budgets SM_X {cfg.spes_perturbations}, "
            f"SM_H {cfg.spes_h_perturbations} ({', '.join(spes)})")
    # the SPES backend is admitted (or, under spes_backend="auto", fallen back from) before any long work
    spes_cfg = spes_profile(ctx, utt) if spes else cfg
    exps = {k: explanation(ctx, K.get(k), utt) for k in kinds}
    for k in spes:
        e = exps[k]
        if e.design is not None:
            nz = map_noise.reference_noise(lambda **kw: e.resample_on_grid(cfg.reducer, **kw), e.design, None,
                                             cfg.normalization, cfg.reliability_splits, cfg.null_permutations,
                                             derive_seed(seed, utt_id, k, "noise"))
            e.provenance = e.provenance.with_info(reliability=float(nz.reliability))
    info = {"name": name, "model": model, "task": task, "language": language, "forced": forced, "profile": profile,
            "seed": seed, "beam_size": cfg.beam_size, "reducer": cfg.reducer, "normalization": cfg.normalization,
            "spes_perturbations": cfg.spes_perturbations, "spes_h_perturbations": cfg.spes_h_perturbations,
            "spes_dtype": spes_cfg.spes_dtype, "spes_backend": spes_cfg.spes_backend, "kinds": list(kinds), "seconds": round(time.perf_counter() - t0, 1)}
    return Explained(utt, exps, info)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crossattn_saliency explain CLIP [options]``."""
    import argparse

    from ..explain import kinds as K

    ap = argparse.ArgumentParser(prog="python -m crossattn_saliency explain",
                                 description="Explain one audio clip with a Whisper model: cross-attention, SPES "
                                             "saliency on the input (SM_X) and on the encoder output (SM_H), and "
                                             "any other registered explanation kind.")
    ap.add_argument("audio", help="audio file (any format and rate soundfile reads; stereo is averaged)")
    ap.add_argument("--model", default="whisper-base",
                    help="embedded name (whisper-tiny.en, whisper-base), local folder or Hugging Face id")
    ap.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    ap.add_argument("--language", default="en", help="spoken language code (en, it, ...)")
    ap.add_argument("--transcript", default=None, help="explain this text instead of the model's own output")
    ap.add_argument("--kinds", nargs="+", default=list(DEFAULT_KINDS), help=f"of {list(K.REGISTRY)}")
    ap.add_argument("--perturbations", type=int, default=None, help="SM_X budget (default: the profile's)")
    ap.add_argument("--perturbations-h", type=int, default=None, help="SM_H budget (default: the profile's)")
    ap.add_argument("--profile", default="default", choices=sorted(config.PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="result store folder (default: <assets>/clips)")
    ap.add_argument("--out", default=None, help="write the result here (.npz)")
    ap.add_argument("--figure", default=None, help="write the side-by-side figure here (.png or .pdf)")
    a = ap.parse_args(argv)
    try:
        res = explain_clip(a.audio, model=a.model, task=a.task, language=a.language, transcript=a.transcript,
                           kinds=a.kinds, perturbations=a.perturbations, perturbations_h=a.perturbations_h,
                           profile=a.profile, seed=a.seed, cache=a.cache)
    except ClipError as exc:
        ap.exit(2, f"error: {exc}\n")
    print(f"{res.info['name']}: {res.text!r} ({len(res.tokens)} tokens, {res.n_frames / 100:.1f} s)")
    for k, r in res.reliability.items():
        print(f"  {k}: reliability {r:.2f}")
    if a.out:
        print(f"wrote {res.save(a.out)}")
    if a.figure:
        from ..present import figures

        fig = figure(res)
        stem = Path(a.figure)
        written = figures.save_figure(fig, stem.with_suffix(""), formats=(stem.suffix.lstrip(".") or "png",))
        print(f"wrote {', '.join(written)}")
    return 0
