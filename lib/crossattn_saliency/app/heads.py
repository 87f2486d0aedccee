"""Alignment heads for any Whisper, chosen from the model itself: word timestamps after fine-tuning.

Word timestamps (openai-whisper's ``word_timestamps``, ``transformers``' ``return_token_timestamps``,
whisper-timestamped) average the cross-attention of a few "alignment heads" that ship only with
OpenAI's checkpoints; a fine-tuned model has none, or the base model's, which may no longer fit.
:func:`choose_heads` explains a few of the user's clips with cross-attention (every layer and head)
and SPES on the encoder output (SM_H), through :func:`~.clip.explain_clip`, and chooses heads
(:mod:`..evaluate.heads`):

* with reference word alignments (``references``: a folder of ``<clip>.TextGrid`` with a word tier,
  or ``<clip>.json`` holding ``[[word, start_s, end_s], ...]``): **by timing**, the heads whose
  word-start error is smallest, ``k`` by leave-one-clip-out held-out error;
* without: **by agreement**, the heads whose maps correlate best with SM_H, ``k`` by held-out
  agreement (no reference needed at all).

The hypothesis explained is the ``transcripts`` entry of the clip (forced) where given, else the
reference's words (forced), else the model's own decoding. ::

    python -m crossattn_saliency heads --model ./my-whisper --audio clips/ [--references clips/]
        --out heads.json [--write-config]

``--write-config`` writes ``alignment_heads`` (``[[layer, head], ...]``, 0-based, the form
``transformers`` reads) into the model folder's ``generation_config.json`` atomically; only a local
``transformers`` folder can be written. Bad input is refused before any long work, and nothing is
written: no audio in the folder, a clip over 30 s, a model without cross-attention, references that
do not match the transcript's words, ``--write-config`` for a model that is not a local folder.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..core import files
from .heads_input import (AUDIO_SUFFIXES, MIN_WORD_MATCH, STATED_RATE, HeadsError, _check_words, check_model,
                          estimate_seconds, list_audio, read_references, read_transcripts)

__all__ = ["HeadsError", "HeadChoice", "AUDIO_SUFFIXES", "STATED_RATE", "SPES_CHOICES", "MIN_WORD_MATCH", "list_audio",
           "read_transcripts", "read_references", "check_model", "estimate_seconds", "choose_heads",
           "write_alignment_heads", "main"]

#: how SM_H is computed: ``"exact"`` float32 PyTorch (the reference itself: no backend check), or
#: ``"profile"`` the profile's backend and dtype (under ``"auto"``, a faster one admitted by a check
#: against float32 PyTorch, run once per model and stored; minutes on a CPU)
SPES_CHOICES = ("exact", "profile")




@dataclass
class HeadChoice:
    """Alignment heads chosen for a model.

    ``heads``: ``[[layer, head], ...]`` (0-based, best first; ``generation_config.alignment_heads``);
    ``method``: ``"timing"`` (by reference word starts) or ``"agreement"`` (by agreement with SM_H);
    ``k``: how many; ``agreement``: ``layers x heads`` mean per-token correlation with SM_H over the
    clips; ``timing_ms``: ``layers x heads`` word-start error (ms; the clips' ``statistic``, averaged
    over clips) or None without references; ``held_out``: ``k`` -> held-out score of the method;
    ``clips``: the clips used; ``seconds``: wall time; ``shipped``: the heads the model came with, and
    ``shipped_score`` their score by the same method on these clips (mean over clips; comparable with
    ``held_out[k]``, as the shipped heads were not chosen on these clips), or None."""

    model: str
    heads: list[list[int]]
    method: str
    k: int
    agreement: np.ndarray
    timing_ms: np.ndarray | None
    held_out: dict[int, float]
    clips: list[str]
    seconds: float
    perturbations_h: int
    shipped: list[list[int]] = field(default_factory=list)
    rule: str = ""
    statistic: str = "median"
    shipped_score: float | None = None

    def to_json(self) -> dict[str, Any]:
        def arr(a: np.ndarray | None) -> Any:
            return None if a is None else [[None if not np.isfinite(v) else round(float(v), 6) for v in row]
                                           for row in np.asarray(a)]

        return {"model": self.model, "alignment_heads": self.heads, "method": self.method, "k": self.k,
                "rule": self.rule, "statistic": self.statistic,
                "held_out": {str(k): (None if not np.isfinite(v) else float(v)) for k, v in self.held_out.items()},
                "agreement": arr(self.agreement), "timing_ms": arr(self.timing_ms), "clips": list(self.clips),
                "seconds": round(float(self.seconds), 1), "perturbations_h": int(self.perturbations_h),
                "shipped": self.shipped,
                "shipped_score": None if self.shipped_score is None or not np.isfinite(self.shipped_score)
                else float(self.shipped_score)}

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` atomically."""
        return files.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "HeadChoice":
        """Read a file written by :meth:`save`."""
        d = files.read_json(path)

        def f(a: Any) -> np.ndarray | None:
            return None if a is None else np.array([[np.nan if v is None else v for v in r] for r in a], dtype=float)

        return cls(model=d["model"], heads=[list(map(int, h)) for h in d["alignment_heads"]], method=d["method"],
                   k=int(d["k"]), agreement=f(d["agreement"]), timing_ms=f(d["timing_ms"]),
                   held_out={int(k): (np.nan if v is None else float(v)) for k, v in d["held_out"].items()},
                   clips=list(d["clips"]), seconds=float(d["seconds"]), perturbations_h=int(d["perturbations_h"]),
                   shipped=d.get("shipped", []), rule=d.get("rule", ""), statistic=d.get("statistic", "median"),
                   shipped_score=d.get("shipped_score"))


# --------------------------------------------------------------------------- choosing


def _spes_overrides(profile: str, spes: str) -> dict[str, str]:
    """The profile fields :func:`~.clip.explain_clip` changes for the SM_H runs: none for
    ``spes="profile"``; for ``"exact"`` float32 PyTorch passes (no backend check needed)."""
    from ..core import config

    if spes not in SPES_CHOICES:
        raise HeadsError(f"spes={spes!r} is invalid: choose one of {list(SPES_CHOICES)}")
    base = config.get_profile(profile)
    if spes == "profile" or (base.spes_backend == "torch" and base.spes_dtype == "float32"):
        return {}
    return {"spes_backend": "torch", "dtype": "float32"}


def choose_heads(audio_files: str | Path | Sequence[str | Path], model: str,
                 transcripts: str | Path | Mapping[str, str] | None = None,
                 references: str | Path | Mapping[str, Sequence[tuple[str, float, float]]] | None = None,
                 perturbations_h: int | None = None, k_max: int | None = 16, tolerance: float = 0.0,
                 statistic: str = "median", language: str = "en", task: str = "transcribe",
                 profile: str = "default", seed: int = 0, cache: str | Path | None = None,
                 progress: bool = True, write_config: bool = False, spes: str = "exact") -> HeadChoice:
    """Choose alignment heads for ``model`` from ``audio_files`` (a folder or files; see the module
    docstring). ``perturbations_h``: SM_H budget per clip (default: the profile's); ``k_max``,
    ``tolerance``, ``statistic``: of the selection (:mod:`..evaluate.heads`); ``write_config``: only
    checked here (refused for a model that is not a local folder), :func:`main` writes; ``spes``: one
    of :data:`SPES_CHOICES`."""
    from ..core import config
    from ..core.progress import bar, say
    from ..evaluate import heads as select
    from .clip import ClipError, explain_clip, load_clip_audio

    t0 = time.perf_counter()
    if statistic not in ("median", "mean"):
        raise HeadsError(f"statistic={statistic!r} is invalid: 'median' or 'mean'")
    if k_max is not None and k_max < 1:
        raise HeadsError(f"k_max={k_max} is invalid: at least 1 (or None: every head)")
    paths = list_audio(audio_files)
    if len(paths) < 2:
        raise HeadsError(f"{len(paths)} clip given: choosing the number of heads holds one clip out, so give at "
                         "least 2 (5-20 short clips are better)")
    names = [p.stem for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HeadsError(f"clips {dup} share a file name stem: rename them (transcripts and references go by stem)")
    for p in paths:
        try:
            load_clip_audio(p)
        except ClipError as exc:
            raise HeadsError(f"{exc}" + (" (cut the clip into pieces of at most 30 s, with their transcripts and "
                                         "references)" if "window" in str(exc) else "")) from exc
    texts = read_transcripts(transcripts)
    refs = read_references(references)
    if refs:
        missing = [n for n in names if n not in refs]
        if missing:
            raise HeadsError(f"no reference for clip(s) {missing} in {references}: add <clip>.TextGrid or "
                             "<clip>.json for every clip, or leave --references out (heads then agree with SM_H)")
    unknown = sorted(set(texts) - set(names))
    if unknown:
        raise HeadsError(f"transcripts name clips that are not in the audio: {unknown[:5]}; name them by file stem")
    forced: dict[str, str | None] = {}
    for n in names:
        if n in texts:
            forced[n] = texts[n]
            if n in refs:
                _check_words(n, texts[n], refs[n])
        elif n in refs:
            forced[n] = " ".join(w for w, _, _ in refs[n])
        else:
            forced[n] = None
    info = check_model(model, write_config)
    run_overrides = _spes_overrides(profile, spes)
    base = config.get_profile(profile, **run_overrides)
    budget = int(perturbations_h or base.spes_h_perturbations)
    est, rate = estimate_seconds(len(paths), budget, info, spes)
    if progress:
        say(f"choosing alignment heads of {model} on {len(paths)} clips "
            f"({'by timing against the references' if refs else 'by agreement with SM_H'}): SM_H {budget} "
            f"perturbations a clip at ~{rate:.0f}/s (stated for an idle 2-core CPU, "
            f"{'float32 PyTorch' if spes == 'exact' else 'the profile backend'}) -> about {est / 60:.1f} min"
            + (", plus a one-time check of the SPES backend per model (stored; minutes)" if spes == "profile" else ""))
    ca, sm, toks, ends, used = [], [], [], [], []
    for p in bar(paths, desc="heads", unit="clip", disable=not progress):
        n = p.stem
        try:
            res = explain_clip(p, model=model, task=task, language=language, transcript=forced[n],
                               kinds=["CA", "SM_H"], perturbations_h=budget, profile=profile, seed=seed,
                               cache=cache, progress=False, overrides=run_overrides)
        except ClipError as exc:
            raise HeadsError(str(exc)) from exc
        e = res["CA"]
        if not e.layered:
            raise HeadsError(f"{model}: cross-attention came back without layers and heads")
        ca.append(e.maps)
        sm.append(res["SM_H"].on_encoder_grid(None, res.info.get("reducer", "max2d")))
        toks.append(list(e.tokens))
        ends.append(e.n_frames / 100.0)
        used.append(n)
        if not info["shipped"] and e.alignment_heads:
            info["shipped"] = [list(map(int, h)) for h in e.alignment_heads]
    try:
        agree = select.select_by_agreement(ca, sm, k_max=k_max, tolerance=tolerance)
        chosen, timing = agree, None
        if refs:
            chosen = select.select_by_timing(ca, toks, ends, [refs[n] for n in used], k_max=k_max,
                                             tolerance=tolerance, statistic=statistic)
            timing = chosen.scores
    except ValueError as exc:  # e.g. no hypothesis word matched any reference word on any clip
        raise HeadsError(f"no heads could be chosen ({exc}): check that the references belong to these clips "
                         "(the explained maps are stored; a rerun with fixed references reuses them)") from exc
    n_layers, n_heads = np.shape(ca[0])[:2]
    shipped = [(int(l), int(h)) for l, h in info["shipped"]]
    shipped_score = None
    if shipped and all(0 <= l < n_layers and 0 <= h < n_heads for l, h in shipped):
        if refs:
            vals = [select.combined_timing_error(a, shipped, t, end, refs[n], statistic)
                    for a, t, end, n in zip(ca, toks, ends, used)]
        else:
            vals = [select.combined_agreement(a, shipped, s) for a, s in zip(ca, sm)]
        v = np.asarray(vals, dtype=np.float64)
        shipped_score = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else None
    return HeadChoice(model=model, heads=chosen.heads, method=chosen.method, k=chosen.k, agreement=agree.scores,
                      timing_ms=timing, held_out=chosen.held_out, clips=used, seconds=time.perf_counter() - t0,
                      perturbations_h=budget, shipped=info["shipped"], rule=chosen.rule,
                      statistic=statistic if refs else "", shipped_score=shipped_score)


def write_alignment_heads(folder: str | Path, heads: Sequence[Sequence[int]]) -> Path:
    """Set ``alignment_heads`` (``[[layer, head], ...]``) in ``folder/generation_config.json``
    atomically, every other setting kept. Returns the file."""
    path = Path(folder) / "generation_config.json"
    if not path.is_file():
        raise HeadsError(f"{path} does not exist: save the model's GenerationConfig there first")
    cfg = json.loads(path.read_text())
    cfg["alignment_heads"] = [[int(l), int(h)] for l, h in heads]
    return files.write_json(path, cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crossattn_saliency heads --model M --audio FOLDER [options] --out heads.json``."""
    import argparse

    from ..core import config

    ap = argparse.ArgumentParser(prog="python -m crossattn_saliency heads",
                                 description="Choose alignment heads (for word timestamps) of any Whisper from its "
                                             "own cross-attention: by timing against reference word alignments, or "
                                             "by agreement with SPES saliency (SM_H) with no reference at all.")
    ap.add_argument("--model", required=True,
                    help="embedded name (whisper-tiny.en, whisper-base), local folder or hub id")
    ap.add_argument("--audio", required=True, help="folder of clips (at most 30 s each)")
    ap.add_argument("--transcripts", default=None,
                    help="file of '<clip stem><TAB><transcript>' lines (or a JSON object): explain these texts")
    ap.add_argument("--references", default=None,
                    help="folder of <clip stem>.TextGrid (word tier) or .json [[word, start, end], ...] alignments")
    ap.add_argument("--out", required=True, help="write the choice here (JSON)")
    ap.add_argument("--write-config", action="store_true",
                    help="write alignment_heads into the model folder's generation_config.json (local folders only)")
    ap.add_argument("--perturbations-h", type=int, default=None, help="SM_H budget per clip (default: the profile's)")
    ap.add_argument("--spes", default="exact", choices=list(SPES_CHOICES),
                    help="SM_H in float32 PyTorch (exact, default) or on the profile's backend (profile: faster "
                         "loops after a one-time stored check of the backend per model)")
    ap.add_argument("--k-max", type=int, default=16, help="the most heads tried")
    ap.add_argument("--statistic", default="median", choices=["median", "mean"], help="of word-start errors")
    ap.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    ap.add_argument("--language", default="en")
    ap.add_argument("--profile", default="default", choices=sorted(config.PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="result store folder (default: <assets>/clips)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    try:
        if out.exists() and out.is_dir():
            raise HeadsError(f"--out {out} is a folder: give a file name (heads.json)")
        choice = choose_heads(a.audio, a.model, transcripts=a.transcripts, references=a.references,
                              perturbations_h=a.perturbations_h, k_max=a.k_max, statistic=a.statistic,
                              language=a.language, task=a.task, profile=a.profile, seed=a.seed, cache=a.cache,
                              write_config=a.write_config, spes=a.spes)
    except HeadsError as exc:
        ap.exit(2, f"error: {exc}\n")
    unit = " ms" if choice.method == "timing" else ""
    print(f"{a.model}: {choice.k} alignment heads by {choice.method} on {len(choice.clips)} clips "
          f"({choice.seconds:.0f} s): {choice.heads}; held-out {choice.method} {choice.held_out[choice.k]:.3g}{unit}"
          + (f" (shipped {choice.shipped}: {choice.shipped_score:.3g}{unit})" if choice.shipped_score is not None
             else ""))
    print(f"wrote {choice.save(out)}")
    if a.write_config:
        print(f"wrote alignment_heads into {write_alignment_heads(Path(a.model).expanduser(), choice.heads)}")
    return 0
