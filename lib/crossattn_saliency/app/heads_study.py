"""How well chosen alignment heads time words, on utterances they were not chosen on.

The measurement behind the ``heads`` command (:mod:`.heads`), run on the compendium's test sets as a
user would run it on their own clips:

* :func:`export_clips` writes the utterances of the sets that have word references (``en-real``:
  the shipped alignment or pocketsphinx's; ``en-tts``, ``it-tts``: the TTS engine's timings;
  :func:`..run.timing.reference_alignments`) as a folder per set of ``<id>.wav`` (float32, 16 kHz:
  the set's samples exactly), ``<id>.json`` (``[[word, start_s, end_s], ...]``) and
  ``transcripts.tsv``; a *pool* of ``profile.heads_pool_size`` utterances of
  ``profile.heads_pool_set`` (spread over its speakers) is what heads are chosen on, every other
  utterance is held out;
* :func:`without_heads` is a model folder with its ``alignment_heads`` removed (weights linked, not
  copied): the user's situation after fine-tuning;
* :func:`pool_maps` explains the pool with cross-attention and SM_H through the ``heads`` command's
  own path (:func:`~.clip.explain_clip`, one store), and :func:`held_out_maps` the held-out
  utterances with cross-attention;
* :func:`choose` picks heads on a subset of the pool, by timing or by agreement with SM_H at any
  budget up to the run's (SM_H rebuilt from the run's first perturbations,
  :meth:`~..explain.explanation.Explanation.at_budget`);
* :func:`word_errors`, :func:`heads_table` and :func:`selection_curve` score head sets on the
  held-out utterances: median and 90th-percentile word-start and word-end error (ms), the share
  of starts within 50 / 100 ms and F1 of word starts at 50 / 100 ms, with intervals over utterances,
  and differences to the shipped heads paired by utterance.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..core import files
from .heads import HeadsError

__all__ = ["StudyClips", "PoolMaps", "HeldOut", "study_dir", "export_clips", "without_heads", "shipped_heads",
           "store_dir", "pool_maps", "held_out_maps", "choose", "all_heads", "word_errors", "heads_table", "selection_curve",
           "with_heads", "pipeline_words", "save_choice", "TOLERANCES_MS"]

#: word-start tolerances (ms) of the share-within and F1 columns
TOLERANCES_MS = (50, 100)


@dataclass(frozen=True)
class StudyClips:
    """Exported utterances: ``pool`` and ``held_out`` map a set name to its clip files (``.wav``,
    references beside them as ``.json``); ``languages`` per set; ``transcripts`` per clip stem."""

    folder: Path
    pool: dict[str, list[Path]]
    held_out: dict[str, list[Path]]
    languages: dict[str, str]
    transcripts: dict[str, str]

    def references(self, path: Path) -> list[tuple[str, float, float]]:
        """The reference words ``(word, start_s, end_s)`` of a clip."""
        return [(str(w), float(s), float(e)) for w, s, e in json.loads(path.with_suffix(".json").read_text())]

    @property
    def pool_files(self) -> list[Path]:
        return [p for ps in self.pool.values() for p in ps]


def study_dir(profile: Any) -> Path:
    """``<assets>/heads/<profile>``: the exported clips and model folders with chosen heads (derived
    assets, rebuilt by :func:`export_clips`)."""
    from ..core import config

    return config.assets_dir() / "heads" / profile.name


def store_dir(profile: Any) -> Path:
    """The result store of the study's explanations: ``heads/`` in the profile's cache
    (:func:`..core.config.cache_dir`; a ``make reproduce`` run has its own)."""
    from ..core import config

    return config.cache_dir(profile.name) / "heads"


def _write_wav(path: Path, samples: np.ndarray) -> None:
    import soundfile as sf

    with files.atomic_path(path, ".wav") as tmp:
        sf.write(str(tmp), np.asarray(samples, dtype=np.float32), 16000, subtype="FLOAT", format="WAV")


def _spread(rows: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` rows taken round-robin over speakers (each speaker's rows in set order)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(str(r.get("speaker", "")), []).append(r)
    out: list[dict[str, Any]] = []
    while len(out) < n and any(by.values()):
        for spk in list(by):
            if by[spk] and len(out) < n:
                out.append(by[spk].pop(0))
    return out


def export_clips(profile: Any, sets: Sequence[str] | None = None) -> StudyClips:
    """Write the utterances of ``sets`` (default: ``profile.heads_sets``) that have a reference
    alignment, at most 30 s long, under ``<study_dir>/clips`` (unchanged files are not rewritten):
    the pool (``profile.heads_pool_size`` of ``profile.heads_pool_set``, spread over its speakers, of
    the durations ``profile.saliency_seconds`` allows) in ``clips/pool``, the
    held-out rest in ``clips/<set>``; each folder with its ``transcripts.tsv``."""
    from ..core.config import Condition
    from ..run.context import condition_rows
    from ..run.timing import reference_alignments

    folder = study_dir(profile) / "clips"
    pool: dict[str, list[Path]] = {}
    held: dict[str, list[Path]] = {}
    langs: dict[str, str] = {}
    texts: dict[str, str] = {}
    for set_name in (sets or profile.heads_sets):
        cond = next((c for c in profile.conditions if c.dataset == set_name and c.task == "transcribe"), None)
        if cond is None:
            raise HeadsError(f"set {set_name!r} has no transcription condition in profile {profile.name!r}")
        refs = reference_alignments(profile, cond)
        rows = [r for r in condition_rows(profile, cond) if str(r["id"]) in refs and float(r["duration"]) <= 30.0]
        langs[set_name] = cond.language
        low, high = profile.saliency_seconds or (0.0, 30.0)
        short = [r for r in rows if low <= float(r["duration"]) <= high]  # SM_H's cost grows with the tokens
        chosen = _spread(short, profile.heads_pool_size) if set_name == profile.heads_pool_set else []
        chosen_ids = {str(r["id"]) for r in chosen}
        for r in rows:
            stem = str(r["id"]).replace("/", "_")
            in_pool = str(r["id"]) in chosen_ids
            out = folder / ("pool" if in_pool else set_name)
            out.mkdir(parents=True, exist_ok=True)
            wav = out / f"{stem}.wav"
            if not wav.is_file():
                _write_wav(wav, np.asarray(r["audio"], dtype=np.float32))
            words = [[w, round(float(s), 3), round(float(e), 3)] for w, s, e in refs[str(r["id"])]]
            ref = out / f"{stem}.json"
            if not ref.is_file() or json.loads(ref.read_text()) != words:
                files.write_json(ref, words)
            texts[stem] = str(r["transcript"])
            (pool if in_pool else held).setdefault(set_name, []).append(wav)
    for sub in {p.parent for ps in (*pool.values(), *held.values()) for p in ps}:
        lines = "".join(f"{p.stem}\t{texts[p.stem]}\n" for p in sorted(sub.glob("*.wav")) if p.stem in texts)
        files.write_text(sub / "transcripts.tsv", lines)
    if not pool.get(profile.heads_pool_set):
        raise HeadsError(f"no utterance of {profile.heads_pool_set!r} with a reference alignment to choose heads on")
    return StudyClips(folder, pool, held, langs, texts)


def shipped_heads(model: str) -> list[list[int]]:
    """The alignment heads a model folder (or embedded model) ships with, ``[[layer, head], ...]``."""
    return [list(map(int, h)) for h in _generation_config(_model_folder(model)).get("alignment_heads") or []]


def _model_folder(model: str) -> Path:
    from ..models import loading

    if model in loading.EMBEDDED_MODELS:
        return loading.ensure_converted(model)
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise HeadsError(f"{model} is neither an embedded model nor a local model folder")
    return path


def _generation_config(folder: Path) -> dict[str, Any]:
    path = folder / "generation_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def without_heads(model: str, folder: str | Path | None = None) -> Path:
    """A model folder like ``model``'s with no ``alignment_heads`` in its ``generation_config.json``
    (every other file linked to the original; default ``<assets>/heads/models/<name>-no-heads``)."""
    from ..core import config

    src = _model_folder(model)
    dst = Path(folder) if folder else config.assets_dir() / "heads" / "models" / f"{src.name}-no-heads"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        target = dst / f.name
        if f.name == "generation_config.json" or not f.is_file():
            continue
        if not target.exists():
            try:
                target.hardlink_to(f)
            except OSError:
                shutil.copy2(f, target)
    cfg = _generation_config(src)
    cfg.pop("alignment_heads", None)
    want = json.dumps(cfg, indent=2, sort_keys=True)
    gen = dst / "generation_config.json"
    if not gen.is_file() or json.loads(gen.read_text()) != cfg:
        files.write_text(gen, want + "\n")
    return dst


@dataclass
class PoolMaps:
    """The pool explained: per clip its cross-attention (``layers x heads x tokens x positions``), its
    SM_H explanation (rebuildable at smaller budgets), tokens, speech end (s) and references."""

    model: str
    clips: list[str]
    ca: list[np.ndarray]
    sm_h: list[Any]
    tokens: list[list[str]]
    ends: list[float]
    references: list[list[tuple[str, float, float]]]
    budget: int
    seconds: float
    #: compute seconds of the stored runs (cross-attention and SM_H of every clip; the same on a rerun)
    compute_seconds: float = 0.0
    _at: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)

    def sm_at(self, i: int, budget: int) -> np.ndarray:
        """SM_H of clip ``i`` (``tokens x positions``) after its first ``budget`` perturbations."""
        key = (i, int(budget))
        if key not in self._at:
            e = self.sm_h[i] if budget >= self.budget else self.sm_h[i].at_budget(budget)
            self._at[key] = e.on_encoder_grid(None, "max2d")
        return self._at[key]


def _explain(path: Path, model: str, transcript: str, language: str, kinds: Sequence[str], profile: Any,
             budget: int | None, cache: Path) -> Any:
    from ..core import config
    from .clip import explain_clip
    from .heads import _spes_overrides

    prof = profile.name if profile.name in config.PROFILES else "default"
    return explain_clip(path, model=model, task="transcribe", language=language, transcript=transcript,
                        kinds=list(kinds), perturbations_h=budget, profile=prof, seed=profile.seed, cache=cache,
                        progress=False, overrides=_spes_overrides(prof, "exact") if "SM_H" in kinds else None)


def _run_seconds(e: Any) -> float:
    """Compute seconds a stored explanation took (``seconds``, or a SPES run's setup and loop)."""
    info = e.provenance.info
    return float(info.get("seconds") or (info.get("setup_s", 0.0) + info.get("loop_s", 0.0)) or 0.0)


def pool_maps(profile: Any, model: str, clips: StudyClips, label: str | None = None,
              progress: bool = True) -> PoolMaps:
    """Cross-attention and SM_H (``profile.heads_perturbations_h``, float32 PyTorch: the ``heads``
    command's default) of every pool clip, from the store the command writes to (computed once);
    ``label``: the model's name in tables (default: the folder's name)."""
    from ..core.progress import bar

    t0 = time.perf_counter()
    cache = store_dir(profile)
    out = PoolMaps(label or Path(model).name, [], [], [], [], [], [], int(profile.heads_perturbations_h), 0.0)
    for set_name, paths in clips.pool.items():
        for p in bar(paths, desc=f"pool {Path(model).name}", unit="clip", disable=not progress):
            res = _explain(p, model, clips.transcripts[p.stem], clips.languages[set_name], ["CA", "SM_H"], profile,
                           out.budget, cache)
            out.clips.append(p.stem)
            out.ca.append(res["CA"].maps)
            out.sm_h.append(res["SM_H"])
            out.tokens.append(list(res["CA"].tokens))
            out.ends.append(res["CA"].n_frames / 100.0)
            out.references.append(clips.references(p))
            out.compute_seconds += _run_seconds(res["CA"]) + _run_seconds(res["SM_H"])
    out.seconds = time.perf_counter() - t0
    return out


@dataclass
class HeldOut:
    """Held-out utterances explained with cross-attention: per clip its set, maps, tokens, speech end
    (s) and reference words."""

    clips: list[str]
    sets: list[str]
    ca: list[np.ndarray]
    tokens: list[list[str]]
    ends: list[float]
    references: list[list[tuple[str, float, float]]]


def held_out_maps(profile: Any, model: str, clips: StudyClips, progress: bool = True) -> HeldOut:
    """Cross-attention of every held-out clip the model can transcribe (an English-only model: the
    English sets), forced to the set's transcript."""
    from ..core.progress import bar
    from ..models import loading

    multilingual = loading.load_model(model, dtype=profile.model_dtype, device=profile.device).info.multilingual

    cache = store_dir(profile)
    out = HeldOut([], [], [], [], [], [])
    for set_name, paths in clips.held_out.items():
        if clips.languages[set_name] != "en" and not multilingual:
            continue
        for p in bar(paths, desc=f"held out {set_name}", unit="clip", disable=not progress):
            res = _explain(p, model, clips.transcripts[p.stem], clips.languages[set_name], ["CA"], profile, None, cache)
            out.clips.append(p.stem)
            out.sets.append(set_name)
            out.ca.append(res["CA"].maps)
            out.tokens.append(list(res["CA"].tokens))
            out.ends.append(res["CA"].n_frames / 100.0)
            out.references.append(clips.references(p))
    return out


def all_heads(ca: np.ndarray) -> list[list[int]]:
    """Every ``[layer, head]`` of a ``layers x heads x ...`` cross-attention array."""
    n_layers, n_heads = np.shape(ca)[:2]
    return [[l, h] for l in range(n_layers) for h in range(n_heads)]


def choose(pool: PoolMaps, method: str, idx: Sequence[int], budget: int | None = None, k_max: int | None = 16
           ) -> list[list[int]]:
    """Heads chosen on the pool clips ``idx`` by ``"timing"`` (reference word starts) or
    ``"agreement"`` (with SM_H after ``budget`` perturbations), as the ``heads`` command chooses
    them (:mod:`..evaluate.heads`). With one clip no ``k`` can be held out: the heads are the top
    ``k`` of that clip with ``k`` scored on the same clip (optimistic; the command asks for 2+)."""
    from ..evaluate import heads as select

    idx = list(idx)
    ca = [pool.ca[i] for i in idx]
    if method == "timing":
        args = ([pool.tokens[i] for i in idx], [pool.ends[i] for i in idx], [pool.references[i] for i in idx])
        if len(idx) >= 2:
            return select.select_by_timing(ca, *args, k_max=k_max).heads
        per = select.timing_scores(ca, *args)
        order = [p for p, _ in select.rank_heads(per, False)]
        score = lambda k: select.combined_timing_error(ca[0], order[:k], args[0][0], args[1][0], args[2][0])  # noqa: E731
        higher = False
    elif method == "agreement":
        sm = [pool.sm_at(i, budget or pool.budget) for i in idx]
        if len(idx) >= 2:
            return select.select_by_agreement(ca, sm, k_max=k_max).heads
        per = select.agreement_scores(ca, sm)
        order = [p for p, _ in select.rank_heads(per, True)]
        score = lambda k: select.combined_agreement(ca[0], order[:k], sm[0])  # noqa: E731
        higher = True
    else:
        raise ValueError(f"method={method!r}: 'timing' or 'agreement'")
    ks = range(1, min(k_max or len(order), len(order)) + 1)
    k = select.choose_k({k: score(k) for k in ks}, higher)
    return [list(map(int, p)) for p in order[:k]]


def word_errors(held: HeldOut, heads: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """Per held-out clip: :func:`..evaluate.timestamps.boundary_errors` of Whisper's recipe on
    ``heads`` against the clip's reference (``start_ms``, ``end_ms`` arrays over matched words...)."""
    from ..evaluate import timestamps

    pairs = [(int(l), int(h)) for l, h in heads]
    out = []
    for ca, toks, end, ref in zip(held.ca, held.tokens, held.ends, held.references):
        starts = timestamps.token_starts(np.stack([np.asarray(ca, dtype=np.float64)[l, h] for l, h in pairs]), 0.02)
        out.append(timestamps.boundary_errors(timestamps.word_times(list(toks), starts, end), ref))
    return out


def _pooled(errs: Sequence[Mapping[str, Any]], which: str) -> np.ndarray:
    vals = [np.asarray(e[which], dtype=np.float64) for e in errs]
    return np.concatenate(vals) if vals else np.zeros(0)


def _metrics(errs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    s, e = _pooled(errs, "start_ms"), _pooled(errs, "end_ms")
    hyp = sum(int(x["hyp_words"]) for x in errs)
    ref = sum(int(x["ref_words"]) for x in errs)
    out = {"start median (ms)": float(np.median(s)) if s.size else float("nan"),
           "start p90 (ms)": float(np.quantile(s, 0.9)) if s.size else float("nan"),
           "end median (ms)": float(np.median(e)) if e.size else float("nan"),
           "end p90 (ms)": float(np.quantile(e, 0.9)) if e.size else float("nan")}
    for tol in TOLERANCES_MS:
        hits = float((s <= tol).sum())
        out[f"starts within {tol} ms (%)"] = 100.0 * hits / s.size if s.size else float("nan")
        p, r = (hits / hyp if hyp else 0.0), (hits / ref if ref else 0.0)
        out[f"F1 at {tol} ms (%)"] = 100.0 * (2 * p * r / (p + r) if p + r else 0.0)
    return out


def heads_table(model: str, held: HeldOut, head_sets: Mapping[str, Sequence[Sequence[int]]],
                baseline: str = "shipped", n_bootstrap: int = 1000, seed: int = 0, min_utterances: int = 8) -> Any:
    """One row per held-out set (and ``all``) and head set: :func:`_metrics` of the pooled words,
    the 95% interval of the median start error resampling utterances, and the difference of each
    utterance's median start error to ``baseline``'s, paired by utterance (mean and 95% interval;
    no interval below ``min_utterances``). ``pandas.DataFrame``."""
    import pandas as pd

    from ..evaluate import stats

    per = {name: word_errors(held, heads) for name, heads in head_sets.items()}
    groups = {"all": list(range(len(held.clips)))}
    for i, s in enumerate(held.sets):
        groups.setdefault(s, []).append(i)
    rows = []
    for set_name, idx in groups.items():
        base = [per[baseline][i] for i in idx] if baseline in per else None
        for name, heads in head_sets.items():
            errs = [per[name][i] for i in idx]
            row = {"model": Path(model).name, "set": set_name, "heads": name, "k": len(heads),
                   "utterances": len(idx), "words": int(_pooled(errs, "start_ms").size), **_metrics(errs)}
            lo = hi = dlo = dhi = float("nan")
            med = np.array([np.median(e["start_ms"]) if len(e["start_ms"]) else np.nan for e in errs])
            if len(idx) >= min_utterances:
                def pooled_median(pick: np.ndarray, errs: Sequence[Mapping[str, Any]] = errs) -> float:
                    return float(np.median(_pooled([errs[j] for j in pick], "start_ms")))

                lo, hi = stats.resampled_interval(pooled_median, len(idx), n_bootstrap=n_bootstrap, seed=seed)
            d = float("nan")
            if base is not None and name != baseline:
                bmed = np.array([np.median(e["start_ms"]) if len(e["start_ms"]) else np.nan for e in base])
                ok = np.isfinite(med) & np.isfinite(bmed)
                if ok.any():
                    d = float(np.mean(med[ok] - bmed[ok]))
                    if ok.sum() >= min_utterances:
                        d, dlo, dhi = stats.paired_bootstrap_ci(med[ok], bmed[ok], n_bootstrap=n_bootstrap, seed=seed)
            row.update({"start median lo": lo, "start median hi": hi,
                        f"start median vs {baseline} (ms)": d, "vs lo": dlo, "vs hi": dhi,
                        "heads list": json.dumps(heads)})
            rows.append(row)
    return pd.DataFrame(rows)


def selection_curve(pool: PoolMaps, held: HeldOut, clip_counts: Sequence[int], budgets: Sequence[int],
                    repeats: int, seed: int = 0, k_max: int | None = 16) -> Any:
    """Held-out word-start error (pooled median, ms, over every held-out utterance) of heads chosen on
    ``n`` pool clips, for each ``n`` in ``clip_counts``: by timing, and by agreement with SM_H at each
    of ``budgets`` (perturbations per clip); ``repeats`` random subsets of the pool per ``n`` (one
    where ``n`` is the whole pool), seeded. One row per (method, budget, n, subset):
    ``pandas.DataFrame`` with the subset's clips, its heads and the error."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_pool = len(pool.clips)
    rows = []
    for n in clip_counts:
        if n > n_pool:
            raise ValueError(f"{n} clips asked of a pool of {n_pool}")
        subsets = [tuple(range(n_pool))] if n == n_pool else \
            list(dict.fromkeys(tuple(sorted(rng.choice(n_pool, n, replace=False).tolist())) for _ in range(repeats)))
        for r, idx in enumerate(subsets):
            for method, budget in [("timing", None)] + [("agreement", b) for b in budgets]:
                heads = choose(pool, method, idx, budget, k_max)
                errs = word_errors(held, heads)
                s = _pooled(errs, "start_ms")
                rows.append({"model": Path(pool.model).name, "method": method,
                             "budget": 0 if budget is None else int(budget), "clips": n, "subset": r,
                             "pool clips": ",".join(pool.clips[i] for i in idx), "k": len(heads),
                             "start median (ms)": float(np.median(s)) if s.size else float("nan"),
                             "heads list": json.dumps(heads)})
    return pd.DataFrame(rows)


def with_heads(model: str, heads: Sequence[Sequence[int]], folder: str | Path) -> Path:
    """A model folder like ``model``'s (files linked) whose ``generation_config.json`` holds
    ``heads`` as its ``alignment_heads``, written as ``heads --write-config`` writes them."""
    from .heads import write_alignment_heads

    dst = without_heads(model, folder)
    write_alignment_heads(dst, heads)
    return dst


def pipeline_words(folder: str | Path, clip: str | Path) -> list[tuple[str, float, float]]:
    """Word timestamps ``(word, start_s, end_s)`` of ``transformers.pipeline(...,
    return_timestamps="word")`` on a model folder, unchanged: it reads the folder's
    ``alignment_heads`` (and refuses a folder that has none)."""
    import soundfile as sf
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(folder), device="cpu",
                   model_kwargs={"attn_implementation": "eager"})
    audio, rate = sf.read(str(clip), dtype="float32")
    out = asr({"raw": audio, "sampling_rate": rate}, return_timestamps="word")
    return [(str(c["text"]).strip(), float(c["timestamp"][0]), float(c["timestamp"][1]))
            for c in out["chunks"] if c["timestamp"][0] is not None]


def save_choice(choice: Any, model: str, pool: PoolMaps, path: str | Path) -> Path:
    """Write a :class:`~.heads.HeadChoice` for the results folder: named by ``model`` (not the
    folder it was chosen with) and with the pool's stored compute seconds instead of this run's
    wall time, so a rerun on unchanged inputs writes the same bytes."""
    import dataclasses

    return dataclasses.replace(choice, model=model, seconds=round(pool.compute_seconds, 1)).save(path)
