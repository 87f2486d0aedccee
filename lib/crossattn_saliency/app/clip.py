"""Explain one audio clip with any Whisper: the compendium's explanations outside its test sets.

::

    from crossattn_saliency.clip import explain_clip
    result = explain_clip("clip.wav", model="whisper-base", task="translate", language="it")
    result.figure()                      # spectrogram, CA, SM_X, SM_H; one row per output token
    result.widget()                      # in JupyterLab: choose a token and an attention view
    result.save("clip.npz"); ClipExplanation.load("clip.npz")

or, from a shell, ``python -m crossattn_saliency explain clip.wav --model whisper-base --task
translate --language it --out clip.npz --figure clip.png``.

The clip goes through exactly the code the study's notebooks use: the hypothesis is the model's
own decoding (or a transcript you give, forced), and every explanation kind is computed by its
registered function (:mod:`.kinds`) through a result store in ``cache`` (default
``<assets>/clips``), keyed by the audio's content, so a rerun of the same clip with the same
settings loads what it finished. Each SPES map comes with its null-corrected reliability
(:class:`~.reliability.ReferenceNoise`), which says how much of the map is sampling noise at the
chosen budget.

Bad input is refused before anything is computed or written: an unreadable or empty file, audio
longer than Whisper's 30 s window, an unknown model, a transcript with no tokens.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core import config
from ..explain.explanations import Explanation, View

__all__ = ["ClipError", "ClipExplanation", "DEFAULT_KINDS", "explain_clip", "load_clip_audio", "main"]

#: explanation kinds computed for a clip unless others are named
DEFAULT_KINDS = ("CA", "SM_X", "SM_H")
#: file format version of :meth:`ClipExplanation.save`
FORMAT = 1


class ClipError(ValueError):
    """A clip, model or transcript that cannot be explained; the message names the fix."""


def load_clip_audio(audio: str | Path | np.ndarray, sampling_rate: int | None = None) -> tuple[np.ndarray, str]:
    """``(samples, name)``: 16 kHz mono float32 samples of a file (any format and rate soundfile
    reads, mono or stereo) or of an array (``sampling_rate`` required; channels last are averaged),
    checked for Whisper (non-empty, finite, at most 30 s)."""
    from ..models import transcribe
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
        if int(sampling_rate) != transcribe.SAMPLING_RATE and samples.size:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(int(sampling_rate), transcribe.SAMPLING_RATE)
            samples = resample_poly(samples, transcribe.SAMPLING_RATE // g, int(sampling_rate) // g).astype(np.float32)
        name = "clip"
    try:
        samples = transcribe.check_audio(samples, transcribe.SAMPLING_RATE, name)
    except transcribe.AudioError as exc:
        raise ClipError(str(exc)) from exc
    return samples, name


@dataclass
class ClipExplanation:
    """Every explanation of one clip, on one token axis (the explained output without its final
    <|endoftext|>).

    Attributes
    ----------
    name : the clip's name (file stem) and ``utt_id``: name plus a hash of the samples.
    model, task, language : what was explained.
    text : the explained output; ``forced``: True when it is a given transcript, not the model's decoding.
    prompt_ids, token_ids : decoder prompt and explained tokens (ending with <|endoftext|>).
    features : ``mel x frames`` log-mel features of the speech part (10 ms frames).
    explanations : kind name -> :class:`~.explanations.Explanation`.
    reliability : SPES kind -> null-corrected reliability of its map (on the comparison grid).
    params : budgets, seed, dtype, backend and timings of the run.
    """

    name: str
    utt_id: str
    model: str
    task: str
    language: str
    text: str
    forced: bool
    prompt_ids: list[int]
    token_ids: list[int]
    features: np.ndarray
    explanations: dict[str, Explanation]
    reliability: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[1])

    @property
    def tokens(self) -> list[str]:
        return next(iter(self.explanations.values())).tokens

    def maps(self, view: View | None = None, reducer: str | None = None) -> dict[str, np.ndarray]:
        """Every kind on the 20 ms encoder grid (``tokens x positions``): attention kinds through
        ``view`` (default all layers and heads), input-grid kinds reduced by ``reducer``."""
        red = reducer or self.params.get("reducer", "max2d")
        return {k: e.on_encoder_grid(view if e.layered else None, red) for k, e in self.explanations.items()}

    def figure(self, view: View | None = None, reducer: str | None = None, tokens: Sequence[int] | None = None) -> Any:
        """The spectrogram above every kind's map (one row per output token, each row on its own
        scale); ``tokens`` keeps only those token indices. Returns the matplotlib figure."""
        from ..present import plots

        maps = self.maps(view, reducer)
        names = self.tokens
        if tokens is not None:
            idx = [int(i) for i in tokens]
            maps = {k: m[idx] for k, m in maps.items()}
            names = [names[i] for i in idx]
        labels = {}
        for k, m in maps.items():
            e = self.explanations[k]
            extra = f", {view.label(e.n_layers)}" if (e.layered and view is not None) else ""
            rel = f" (reliability {self.reliability[k]:.2f})" if k in self.reliability else ""
            labels[f"{k}{extra}{rel}"] = m
        return plots.plot_spectrogram_and_maps(self.features, self.n_frames, labels, names, 0.02,
                                               title=f"{self.model} · {self.task} · “{self.text[:70]}”",
                                               per_token=True)

    def widget(self) -> Any:
        """An interactive view for JupyterLab: choose a token (or all) and an attention view; the
        figure redraws. Needs ``ipywidgets``."""
        import ipywidgets as w
        from IPython.display import display
        from matplotlib import pyplot as plt

        layered = [e for e in self.explanations.values() if e.layered]
        views = layered[0].views() if layered else [None]
        token_opts = [("all tokens", -1)] + [(f"{i + 1}: {t!r}", i) for i, t in enumerate(self.tokens)]
        view_opts = [(v.label(layered[0].n_layers) if v else "map", i) for i, v in enumerate(views)]
        tok = w.Dropdown(options=token_opts, value=-1, description="token")
        vw = w.Dropdown(options=view_opts, value=0, description="attention")
        out = w.Output()

        def draw(*_: Any) -> None:
            with out:
                out.clear_output(wait=True)
                fig = self.figure(view=views[vw.value], tokens=None if tok.value < 0 else [tok.value])
                display(fig)
                plt.close(fig)

        tok.observe(draw, "value")
        vw.observe(draw, "value")
        draw()
        return w.VBox([w.HBox([tok, vw]), out])

    # -- file format ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` (atomically): every kind's maps and halves plus JSON metadata."""
        from ..core import cache

        arrays: dict[str, np.ndarray] = {"features": self.features.astype(np.float32)}
        kinds_meta = {}
        for k, e in self.explanations.items():
            arrays[f"{k}.maps"] = e.maps
            if e.halves is not None:
                arrays[f"{k}.half_a"], arrays[f"{k}.half_b"] = e.halves
            kinds_meta[k] = {"grid": e.grid, "token_ids": e.token_ids, "tokens": e.tokens,
                             "alignment_heads": [list(h) for h in e.alignment_heads], "n_frames": e.n_frames,
                             "provenance": e.provenance}
        meta = {"format": FORMAT, "name": self.name, "utt_id": self.utt_id, "model": self.model, "task": self.task,
                "language": self.language, "text": self.text, "forced": self.forced, "prompt_ids": self.prompt_ids,
                "token_ids": self.token_ids, "reliability": self.reliability, "params": self.params,
                "kinds": kinds_meta}
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        cache.write_npz(path, meta, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ClipExplanation":
        """Read a file written by :meth:`save`."""
        from ..core import cache

        try:
            arrays, meta = cache.read_npz(path)
        except (OSError, ValueError) as exc:
            raise ClipError(f"cannot read {path} as a saved clip explanation ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise ClipError(f"{path} is not a clip explanation of format {FORMAT} (got {meta.get('format')!r})")
        exps = {}
        for k, km in meta["kinds"].items():
            halves = (arrays[f"{k}.half_a"], arrays[f"{k}.half_b"]) if f"{k}.half_a" in arrays else None
            exps[k] = Explanation(kind=k, utt_id=meta["utt_id"], token_ids=km["token_ids"], tokens=km["tokens"],
                                  grid=km["grid"], maps=arrays[f"{k}.maps"], n_frames=km["n_frames"], halves=halves,
                                  alignment_heads=[tuple(h) for h in km["alignment_heads"]],
                                  provenance=km["provenance"])
        return cls(name=meta["name"], utt_id=meta["utt_id"], model=meta["model"], task=meta["task"],
                   language=meta["language"], text=meta["text"], forced=meta["forced"], prompt_ids=meta["prompt_ids"],
                   token_ids=meta["token_ids"], features=arrays["features"], explanations=exps,
                   reliability=meta["reliability"], params=meta["params"])


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
                 cache: str | Path | None = None, progress: bool = True) -> ClipExplanation:
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
    cache : result store folder (default ``<assets>/clips``; ``config.assets_dir()``).
    """
    from ..explain import kinds as K
    from ..models import models, transcribe
    from ..evaluate import reliability
    from ..core.config import Condition, derive_seed
    from ..core.progress import say
    from ..run.store import ResultStore

    if task not in ("transcribe", "translate"):
        raise ClipError(f"task={task!r} is invalid: 'transcribe' or 'translate'")
    unknown = [k for k in kinds if k not in K.REGISTRY]
    if unknown or not kinds:
        raise ClipError(f"unknown explanation kind(s) {unknown or '(none given)'}; registered: {list(K.REGISTRY)}")
    samples, name = load_clip_audio(audio, sampling_rate)
    base = config.get_profile(profile)
    try:
        loaded = models.load_model(model, dtype=base.model_dtype, device=base.device)
    except models.ModelError as exc:
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
    feats, n_frames = transcribe.features(loaded, samples, transcribe.SAMPLING_RATE, utt_id)
    t0 = time.perf_counter()
    if token_ids is None:
        token_ids = transcribe.decode(loaded, feats, language, task, cfg.beam_size)
        if len(token_ids) < 2:
            raise ClipError(f"{model} produced no output for {name} ({task}, {language}); give a transcript "
                            "to explain instead")
    text = loaded.tokenizer.decode(token_ids, skip_special_tokens=True).strip()
    hyp = transcribe.Hypothesis(utt_id, tuple(prompt), tuple(token_ids), text, n_frames)
    utt = transcribe.Utterance(utt_id, feats, n_frames, hyp, transcript or "", {"id": utt_id})
    store = ResultStore(Path(cache) if cache else config.assets_dir() / "clips", on_mismatch="recompute")
    ctx = K.Context(cfg, cond, store, lambda: loaded)
    spes = [k for k in kinds if K.get(k).reference]
    if spes and progress:
        say(f"{name}: {n_frames / 100:.1f} s, {len(token_ids)} tokens; SPES budgets SM_X {cfg.spes_perturbations}, "
            f"SM_H {cfg.spes_h_perturbations} ({', '.join(spes)})")
    exps = {}
    for k in kinds:
        exps[k] = K.get(k).compute(ctx, utt)
    rel = {}
    for k in spes:
        e = exps[k]
        if e.design is not None:
            nz = reliability.reference_noise(e.resample, e.design, cfg.reducer if e.grid == "input" else None,
                                             cfg.normalization, cfg.reliability_splits, cfg.null_permutations,
                                             derive_seed(seed, utt_id, k, "noise"))
            rel[k] = nz.reliability
    params = {"profile": profile, "seed": seed, "beam_size": cfg.beam_size, "reducer": cfg.reducer,
              "normalization": cfg.normalization, "spes_perturbations": cfg.spes_perturbations,
              "spes_h_perturbations": cfg.spes_h_perturbations, "spes_dtype": cfg.spes_dtype,
              "kinds": list(kinds), "seconds": round(time.perf_counter() - t0, 1)}
    return ClipExplanation(name=name, utt_id=utt_id, model=model, task=task, language=language, text=text,
                           forced=forced, prompt_ids=prompt, token_ids=[int(t) for t in token_ids],
                           features=np.ascontiguousarray(feats[:, :n_frames]), explanations=exps, reliability=rel,
                           params=params)


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
    print(f"{res.name}: {res.text!r} ({len(res.tokens)} tokens, {res.n_frames / 100:.1f} s)")
    for k, r in res.reliability.items():
        print(f"  {k}: reliability {r:.2f}")
    if a.out:
        print(f"wrote {res.save(a.out)}")
    if a.figure:
        from ..present import plots

        fig = res.figure()
        stem = Path(a.figure)
        written = plots.save_figure(fig, stem.with_suffix(""), formats=(stem.suffix.lstrip(".") or "png",))
        print(f"wrote {', '.join(written)}")
    return 0
