"""Speed and precision benchmark of SPES (SM_X) on the embedded Whisper models.

For every model, in one run on one machine, on the same real utterance and batch
size, it measures

* the bare batched forward pass (``model(input_features, decoder_input_ids)`` on
  copies of the unperturbed input): the physical floor of a perturbation's cost,
  for eager and SDPA attention, in float32 and bfloat16;
* SPES (SM_X) with the faster attention: perturbations per second in the
  perturbation loop and over the whole call (segmentation and reference pass
  included), and its ratio to the floor (target >= 0.9);
* the Pearson correlation between the float32 and bfloat16 maps computed on the
  same masks (after per-token z-scoring), overall and per token
  (:func:`map_agreement`).

The clip, its features, the hypothesis (greedy decoding), the decoder input, the
occlusion value and the z-scoring all come from the package's own functions
(:mod:`..data`, :mod:`..models.decoding`, :mod:`..explain.spes`, :mod:`..evaluate.correlate`), so the
benchmark times exactly what the study runs.

Run ``python -m crossattn_saliency.app.bench --out results/bench``; it writes
``bench.json`` and ``bench.md``. The default clip is a LibriVox sentence from the
pocketsphinx source distribution on PyPI (public domain; fetched once with
``pip download`` into ``config.sources_dir()``, shared with the ``en-real`` test
set), or pass ``--audio FILE`` (any format soundfile reads; resampled to 16 kHz mono).
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..core import config, files
from ..models import decoding
from ..explain.backends import map_agreement
from ..explain.spes import SpesParams, floor_value
from ..models.decoding import teacher_forcing_inputs
from ..explain.spes_whisper import WhisperSpes
from .bench_report import backends_to_markdown, deletion_precision_to_markdown, shared_to_markdown, to_markdown

#: the default clip inside the pocketsphinx sdist (``data.POCKETSPHINX_SDIST``)
CLIP_MEMBER = "test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav"
CLIP_TEXT = "unless to be rather cold hearted and rather selfish is to be ill disposed"


def default_clip() -> Path:
    """The benchmark's default clip (5.3 s of read English, 16 kHz), fetched once."""
    from .. import data

    try:
        root = data.fetch_sdist(*data.POCKETSPHINX_SDIST, members=[str(Path(CLIP_MEMBER).parent), "LICENSE"])
    except Exception as exc:  # noqa: BLE001 - re-raised with the way out
        raise RuntimeError(f"could not fetch the default clip ({exc}); pass --audio FILE.wav instead") from exc
    return root / CLIP_MEMBER


def bare_forward_rate(ws: WhisperSpes, features: np.ndarray, decoder_ids: Sequence[int], batch_size: int,
                      n_batches: int) -> float:
    """Perturbations per second of the bare batched forward pass (after one warm-up batch)."""
    x = torch.as_tensor(features, device=ws.device)[None].expand(batch_size, -1, -1).to(ws.torch_dtype)
    ids = torch.tensor([list(decoder_ids)], device=ws.device).expand(batch_size, -1)
    with torch.inference_mode():
        ws.model(input_features=x, decoder_input_ids=ids)
        _sync(ws.device)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            ws.model(input_features=x, decoder_input_ids=ids)
        _sync(ws.device)
    return batch_size * n_batches / (time.perf_counter() - t0)


def interleaved_ratio(ws: WhisperSpes, features: np.ndarray, n_frames: int, prompt_ids: Sequence[int],
                      token_ids: Sequence[int], batch_size: int, repeats: int, seed: int = 0) -> float:
    """Speed of SPES's forward function on a perturbed batch relative to the bare
    forward pass, timed alternately (robust to a shared machine's changing load)."""
    x = torch.as_tensor(features, device=ws.device)
    rng = torch.Generator().manual_seed(seed)
    pert = x[None].repeat(batch_size, 1, 1)
    occ = (torch.rand(batch_size, x.shape[0], n_frames, generator=rng) < 0.5).to(ws.device)
    pert[:, :, :n_frames] = torch.where(occ, torch.tensor(floor_value(features), device=ws.device),
                                        pert[:, :, :n_frames])
    decoder_ids, _ = teacher_forcing_inputs(prompt_ids, token_ids)
    ids = torch.tensor([decoder_ids], device=ws.device).expand(batch_size, -1)
    bare_in = x[None].expand(batch_size, -1, -1).to(ws.torch_dtype)
    f = ws.input_forward(prompt_ids, token_ids)
    t_bare = t_spes = 0.0
    with torch.inference_mode():
        f(pert)
        for _ in range(repeats):
            t0 = time.perf_counter()
            ws.model(input_features=bare_in, decoder_input_ids=ids)
            _sync(ws.device)
            t1 = time.perf_counter()
            f(pert)
            _sync(ws.device)
            t_bare, t_spes = t_bare + t1 - t0, t_spes + time.perf_counter() - t1
    return t_bare / t_spes


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def bench_model(name: str, audio: np.ndarray, n_perturbations: int, batch_size: int, bare_batches: int,
                device: str, seed: int = 0) -> dict[str, Any]:
    """All measurements for one model (see the module docstring)."""
    from ..models.loading import load_model

    lm = load_model(name)
    features, n_frames = decoding.features(lm, audio, decoding.SAMPLING_RATE, "bench")
    prompt = lm.prompt_ids("en", "transcribe")
    tokens = decoding.decode(lm, features, "en", "transcribe", beam_size=1)
    decoder_ids, _ = teacher_forcing_inputs(prompt, tokens)
    out: dict[str, Any] = {"model": name, "n_frames": int(n_frames), "n_tokens": len(tokens),
                           "hypothesis": lm.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                           "batch_size": batch_size, "n_perturbations": n_perturbations, "bare": {}, "spes": {}}
    params = SpesParams(n_perturbations=n_perturbations, batch_size=batch_size, seed=seed)
    maps = {}
    for dtype in ("float32", "bfloat16"):
        rates = {}
        for attn in ("eager", "sdpa"):
            ws = WhisperSpes(lm.model, dtype=dtype, device=device, attn_implementation=attn)
            rates[attn] = bare_forward_rate(ws, features, decoder_ids, batch_size, bare_batches)
            del ws
        best = max(rates, key=rates.get)
        ws = WhisperSpes(lm.model, dtype=dtype, device=device, attn_implementation=best)
        t0 = time.perf_counter()
        res = ws.input(features, n_frames, prompt, tokens, params, progress=True)
        wall = time.perf_counter() - t0
        # the floor again, right after SPES, with the chosen attention (load changes over time)
        floor_after = bare_forward_rate(ws, features, decoder_ids, batch_size, bare_batches)
        floor = 0.5 * (rates[best] + floor_after)
        ab = interleaved_ratio(ws, features, n_frames, prompt, tokens, batch_size, bare_batches, seed)
        n_loop = n_perturbations
        loop_rate = n_loop / res.info["loop_s"]
        out["bare"][dtype] = {**{f"{a}_pert_per_s": r for a, r in rates.items()},
                              "chosen_attention": best, f"{best}_pert_per_s_after_spes": floor_after}
        out["spes"][dtype] = {"attention": best, "loop_pert_per_s": loop_rate, "total_pert_per_s": n_loop / wall,
                              "floor_pert_per_s": floor, "ratio_loop_to_floor": loop_rate / floor,
                              "ratio_total_to_floor": (n_loop / wall) / floor,
                              "setup_s": wall - res.info["loop_s"], "loop_s": res.info["loop_s"],
                              "forward_share_of_loop": res.info["forward_s"] / res.info["loop_s"],
                              "forward_fn_vs_bare_interleaved": ab,
                              # load-robust estimate: engine efficiency x forward-function speed vs bare
                              "ratio_robust": ab * res.info["forward_s"] / res.info["loop_s"],
                              "n_segments": res.n_segments}
        maps[dtype] = res.scores
        del ws
    out["fp32_vs_bf16"] = {**map_agreement(maps["float32"], maps["bfloat16"]),
                           "speedup_bf16_loop": out["spes"]["bfloat16"]["loop_pert_per_s"]
                           / out["spes"]["float32"]["loop_pert_per_s"]}
    return out


def shared_encoder_cost(name: str, audio: np.ndarray, n_perturbations: int = 32, batch_size: int = 16,
                        device: str = "cpu", dtype: str = "float32", counts: Sequence[int] = (1, 2, 3),
                        seed: int = 0) -> dict[str, Any]:
    """Cost of SM_X for ``k`` conditions on one audio with shared encoder passes
    (:meth:`~..explain.spes_whisper.WhisperSpes.input_shared`), for each ``k`` in ``counts``.

    The ``k`` hypotheses are copies of the model's greedy hypothesis (the cost of a decoder
    pass depends on the number of tokens, not on which they are). Reports the loop seconds per
    perturbation for each ``k``, its ratio to ``k`` separate runs (``k`` x the cost of one), and
    the share of one pass spent in the encoder (from a bare encoder timing)."""
    from ..models.loading import load_model

    lm = load_model(name)
    features, n_frames = decoding.features(lm, audio, decoding.SAMPLING_RATE, "bench")
    prompt = lm.prompt_ids("en", "transcribe")
    tokens = decoding.decode(lm, features, "en", "transcribe", beam_size=1)
    ws = WhisperSpes(lm.model, dtype=dtype, device=device)
    params = SpesParams(n_perturbations=n_perturbations, batch_size=batch_size, seed=seed)
    x = torch.as_tensor(features)[None].expand(batch_size, -1, -1).to(device)
    with torch.inference_mode():
        ws.model.model.encoder(x.to(ws.torch_dtype))  # warm-up
        t0 = time.perf_counter()
        ws.model.model.encoder(x.to(ws.torch_dtype))
        enc_s = (time.perf_counter() - t0) / batch_size
    rows = []
    for k in counts:
        res = ws.input_shared(features, n_frames, [(prompt, tokens)] * k, params, progress=False)
        rows.append({"conditions": k, "loop_s_per_perturbation": res[0].info["loop_s"] / n_perturbations})
    one = rows[0]["loop_s_per_perturbation"]
    for r in rows:
        r["ratio_to_one"] = r["loop_s_per_perturbation"] / one
        r["ratio_to_separate_runs"] = r["loop_s_per_perturbation"] / (r["conditions"] * one)
    return {"model": name, "n_tokens": len(tokens), "n_frames": int(n_frames), "dtype": dtype,
            "n_perturbations": n_perturbations, "batch_size": batch_size,
            "encoder_s_per_perturbation": enc_s, "encoder_share_of_one": enc_s / one, "rows": rows}


def _per_perturbation(fn: Any, batch_size: int, repeats: int = 3) -> float:
    """Seconds per perturbation of ``fn()`` (one batch of ``batch_size``), after one warm-up call."""
    with torch.inference_mode():
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
    return (time.perf_counter() - t0) / repeats / batch_size


def pass_split(ws: WhisperSpes, features: np.ndarray, prompt_ids: Sequence[int], token_ids: Sequence[int],
               batch_size: int = 16) -> dict[str, float]:
    """Seconds per perturbation of the three parts of one SM_X pass: the encoder (on ``ws``'s
    backend), the decoder (teacher-forced, PyTorch) and the output projection with the
    log-softmax over the vocabulary."""
    x = torch.as_tensor(features, device=ws.device)[None].expand(batch_size, -1, -1).contiguous()
    ids, start = teacher_forcing_inputs(prompt_ids, token_ids)
    ids_t = torch.tensor([ids], device=ws.device).expand(batch_size, -1)
    with torch.inference_mode():
        hidden = ws._encode_batch(x)
        dec = ws.model.model.decoder(input_ids=ids_t, encoder_hidden_states=hidden, use_cache=False).last_hidden_state
    t_enc = _per_perturbation(lambda: ws._encode_batch(x), batch_size)
    t_dec = _per_perturbation(lambda: ws.model.model.decoder(input_ids=ids_t, encoder_hidden_states=hidden,
                                                             use_cache=False), batch_size)
    t_proj = _per_perturbation(lambda: torch.log_softmax(ws.model.proj_out(dec[:, start:]).float(), -1), batch_size)
    total = t_enc + t_dec + t_proj
    return {"encoder_s": t_enc, "decoder_s": t_dec, "projection_s": t_proj, "encoder_share": t_enc / total,
            "decoder_share": t_dec / total, "projection_share": t_proj / total}


#: the backends compared, with their dtype (float32 PyTorch is the reference of the maps)
BACKEND_RUNS = (("torch", "float32"), ("torch", "bfloat16"), ("inductor", "bfloat16"), ("openvino", "bfloat16"))


def bench_backends(name: str, audio: np.ndarray, n_perturbations: int = 128, batch_size: int = 16,
                   device: str = "cpu", seed: int = 0, runs: Sequence[tuple[str, str]] = BACKEND_RUNS) -> dict[str, Any]:
    """Every backend of SM_X on one clip and the same masks: perturbations per second of the SPES
    loop (after a warm-up run that compiles the backend), map agreement with float32 PyTorch
    (:func:`~.backends.map_agreement`), the bare batched forward pass of the same model and dtype
    (``model(input_features, decoder_input_ids)``, the plain-script floor), and the split of one
    pass into encoder, decoder and projection; plus how the cost of a pass grows with the number
    of tokens, the batch size and the clip length (fastest faithful backend)."""
    from ..explain import backends
    from ..models.loading import load_model

    lm = load_model(name)
    features, n_frames = decoding.features(lm, audio, decoding.SAMPLING_RATE, "bench")
    prompt = lm.prompt_ids("en", "transcribe")
    tokens = decoding.decode(lm, features, "en", "transcribe", beam_size=1)
    decoder_ids, _ = teacher_forcing_inputs(prompt, tokens)
    params = SpesParams(n_perturbations=n_perturbations, batch_size=batch_size, seed=seed)
    out: dict[str, Any] = {"model": name, "n_frames": int(n_frames), "n_tokens": len(tokens),
                           "clip_seconds": len(audio) / decoding.SAMPLING_RATE, "batch_size": batch_size,
                           "n_perturbations": n_perturbations, "rows": []}
    maps, prepared = {}, {}
    for backend, dtype in runs:
        from ..explain.spes_whisper import backend_available

        if not backend_available(backend):
            continue
        ws = WhisperSpes(lm.model, dtype=dtype, device=device, backend=backend)
        t0 = time.perf_counter()
        ws.input(features, n_frames, prompt, tokens, params.replace(n_perturbations=batch_size), progress=False)
        warm = time.perf_counter() - t0
        res = ws.input(features, n_frames, prompt, tokens, params, progress=True)
        maps[(backend, dtype)] = res.scores
        row = {"backend": backend, "dtype": dtype, "warmup_s": warm,
               "loop_pert_per_s": n_perturbations / res.info["loop_s"],
               "forward_share_of_loop": res.info["forward_s"] / res.info["loop_s"],
               "bare_torch_pert_per_s": bare_forward_rate(ws, features, decoder_ids, batch_size, 3)
               if backend == "torch" else None,
               **pass_split(ws, features, prompt, tokens, batch_size)}
        out["rows"].append(row)
        prepared[(backend, dtype)] = ws
    ref = maps[("torch", "float32")]
    for row in out["rows"]:
        agree = backends.map_agreement(ref, maps[(row["backend"], row["dtype"])])
        row.update(pearson_mean=agree["pearson_per_token_mean"], pearson_min=agree["pearson_per_token_min"])
        row["faithful"] = bool(row["pearson_mean"] >= backends.MIN_MEAN and row["pearson_min"] >= backends.MIN_TOKEN)
    faithful = [r for r in out["rows"] if r["faithful"]] or out["rows"][:1]
    best = max(faithful, key=lambda r: r["loop_pert_per_s"])
    out["fastest_faithful"] = {"backend": best["backend"], "dtype": best["dtype"]}
    ws = prepared[(best["backend"], best["dtype"])]
    out["scaling"] = _scaling(ws, lm, audio, prompt, tokens, batch_size)
    return out


def _scaling(ws: WhisperSpes, lm: Any, audio: np.ndarray, prompt: Sequence[int], tokens: Sequence[int],
             batch_size: int) -> dict[str, list[dict[str, float]]]:
    """Seconds per perturbation of one pass (encoder + decoder + projection) as the tokens, the
    batch size and the clip length change, one at a time (the others as in the benchmark clip)."""
    sr = decoding.SAMPLING_RATE
    features, _ = decoding.features(lm, audio, sr, "bench")
    body = list(tokens[:-1]) or list(tokens)
    out: dict[str, list[dict[str, float]]] = {"tokens": [], "batch_size": [], "clip_seconds": []}
    for n_tok in (8, 16, 32, 64, 128):
        toks = (body * (n_tok // len(body) + 1))[:n_tok - 1] + [tokens[-1]]
        s = pass_split(ws, features, prompt, toks, batch_size)
        out["tokens"].append({"tokens": n_tok, "s_per_perturbation": s["encoder_s"] + s["decoder_s"] + s["projection_s"],
                              "decoder_and_projection_s": s["decoder_s"] + s["projection_s"]})
    for b in (4, 8, 16, 32):
        s = pass_split(ws, features, prompt, tokens, b)
        out["batch_size"].append({"batch_size": b, "s_per_perturbation": s["encoder_s"] + s["decoder_s"]
                                  + s["projection_s"]})
    for sec in (2.0, 5.0, 10.0, 20.0, 30.0):
        clip = np.resize(audio, int(sec * sr))  # the clip repeated or cut to this length
        f, _ = decoding.features(lm, clip, sr, "bench")
        s = pass_split(ws, f, prompt, tokens, batch_size)
        out["clip_seconds"].append({"clip_seconds": sec, "s_per_perturbation": s["encoder_s"] + s["decoder_s"]
                                    + s["projection_s"]})
    return out


def deletion_precision(profile: str = "default", conditions: Sequence[str] | None = None, n_utterances: int = 2,
                       rankings: Sequence[str] = ("CA", "SM_X pooled max2d", "SM_X full", "random cells"),
                       dtypes: Sequence[str] = ("float32", "bfloat16")) -> list[dict[str, Any]]:
    """The deletion test's curves in each of ``dtypes``: for the first ``n_utterances`` explained
    utterances of each condition (default: the profile's saliency conditions) and each ranking in
    ``rankings`` (``Ranking.key`` labels of :func:`~..run.deleting.deletion_rankings`), the curve of
    :func:`~..run.deleting.deletion_curve_of` with the model in that dtype (nothing stored). One row per
    curve and dtype: ``auc`` (WER-percent units), ``seconds`` (decoding time of the curve),
    ``decodes`` (distinct inputs decoded), ``texts`` (the outputs along the curve)."""
    from .. import run
    from ..run import deleting

    cfg = config.get_profile(profile)
    names = list(conditions) if conditions else [c.name for c in cfg.saliency_conditions_list()]
    rows = []
    for name in names:
        cond = run.condition(cfg, name)
        items = run.explain(cfg, cond, n=n_utterances, progress=False)
        for dt in dtypes:
            dcfg = cfg.with_overrides(deletion_dtype=dt)
            loaded = deleting.deletion_model(dcfg, cond)
            for it in items:
                ranks = deleting.deletion_rankings(it, cfg.reducer, (cfg.reducer,), cfg.normalization, cfg.seed,
                                                    cfg.deletion_floor_draws)
                memo: dict[Any, str] = {}
                for rank, score in ranks.items():
                    if rank.label not in rankings:
                        continue
                    before = len(memo)
                    t0 = time.perf_counter()
                    rec = deleting.deletion_curve_of(dcfg, cond, loaded, it.utt, rank, score, memo)
                    rows.append({"condition": name, "utterance": it.utt.utt_id, "ranking": rank.label, "dtype": dt,
                                 "auc": rec["auc"], "seconds": time.perf_counter() - t0,
                                 "decodes": len(memo) - before, "texts": rec["texts"]})
            del loaded
    return rows


def run(out: str | Path, models: Sequence[str] = ("whisper-tiny.en", "whisper-base"), n_perturbations: int = 192,
        batch_size: int = 16, bare_batches: int = 3, device: str = "cpu", audio: str | Path | None = None,
        seed: int = 0) -> dict[str, Any]:
    """Run the benchmark and write ``bench.json`` and ``bench.md`` into ``out``."""
    import transformers

    from .. import data

    clip = Path(audio) if audio else default_clip()
    samples = data.read_audio(clip)  # 16 kHz mono float32
    dev = torch.cuda.get_device_name(0) if str(device).startswith("cuda") else (platform.processor() or "cpu")
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "clip": clip.name,
        "clip_seconds": len(samples) / decoding.SAMPLING_RATE,
        "n_perturbations": n_perturbations, "batch_size": batch_size, "device": device,
        "machine": {"device": f"{device} ({dev})", "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "python": platform.python_version()},
        "models": [bench_model(m, samples, n_perturbations, batch_size, bare_batches, device, seed) for m in models],
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / "bench.json", report)
    md = to_markdown(report)
    with files.atomic_path(out / "bench.md", ".md") as tmp:
        tmp.write_text(md)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default=str(config.results_dir() / "bench"), help="output folder")
    ap.add_argument("--models", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    ap.add_argument("--n-perturbations", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--bare-batches", type=int, default=3, help="timed batches of the bare forward pass")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--audio", default=None,
                    help="audio file, resampled to 16 kHz mono (default: a LibriVox clip from pocketsphinx's sdist)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backends", action="store_true",
                    help="only compare the backends of SM_X's passes (writes backends.json / .md)")
    ap.add_argument("--shared-encoder", action="store_true",
                    help="only measure SM_X for 1, 2, 3 conditions of one audio with shared encoder passes "
                         "(writes shared_encoder.json / .md)")
    ap.add_argument("--deletion-precision", action="store_true",
                    help="only compare the deletion test's curves decoded in float32 and bfloat16 on the default "
                         "profile's cached explanations (writes deletion_precision.json / .md)")
    ap.add_argument("--utterances", type=int, default=2, help="utterances per condition (--deletion-precision)")
    ap.add_argument("--conditions", nargs="+", default=None,
                    help="condition names (--deletion-precision; default: the profile's saliency conditions)")
    a = ap.parse_args(argv)
    if a.deletion_precision:
        rows = deletion_precision(conditions=a.conditions, n_utterances=a.utterances)
        machine = f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} torch threads"
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        files.write_json(out / "deletion_precision.json", {"date": time.strftime("%Y-%m-%d"), "machine": machine,
                                                           "curves": rows})
        md = deletion_precision_to_markdown(rows, machine)
        with files.atomic_path(out / "deletion_precision.md", ".md") as tmp:
            tmp.write_text(md)
        print(md)
        return
    if a.backends:
        from .. import data

        samples = data.read_audio(Path(a.audio) if a.audio else default_clip())
        res = [bench_backends(m, samples, a.n_perturbations, a.batch_size, a.device, a.seed) for m in a.models]
        dev = torch.cuda.get_device_name(0) if str(a.device).startswith("cuda") else (platform.processor() or "cpu")
        machine = f"{a.device} ({dev}, {'native' if config.native_bf16(a.device) else 'no native'} bfloat16), " \
                  f"{torch.get_num_threads()} torch threads"
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        files.write_json(out / "backends.json", {"date": time.strftime("%Y-%m-%d"), "machine": machine, "models": res})
        md = backends_to_markdown(res, machine)
        with files.atomic_path(out / "backends.md", ".md") as tmp:
            tmp.write_text(md)
        print(md)
        return
    if a.shared_encoder:
        from .. import data

        samples = data.read_audio(Path(a.audio) if a.audio else default_clip())
        dtype = "bfloat16" if config.native_bf16(a.device) else "float32"
        res = [shared_encoder_cost(m, samples, a.n_perturbations, a.batch_size, a.device, dtype, seed=a.seed)
               for m in a.models]
        dev = torch.cuda.get_device_name(0) if str(a.device).startswith("cuda") else (platform.processor() or "cpu")
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        files.write_json(out / "shared_encoder.json", {"date": time.strftime("%Y-%m-%d"), "device": dev,
                                                       "threads": torch.get_num_threads(), "models": res})
        md = shared_to_markdown(res, f"{a.device} ({dev}), {torch.get_num_threads()} torch threads")
        with files.atomic_path(out / "shared_encoder.md", ".md") as tmp:
            tmp.write_text(md)
        print(md)
        return
    report = run(a.out, a.models, a.n_perturbations, a.batch_size, a.bare_batches, a.device, a.audio, a.seed)
    print(to_markdown(report))


if __name__ == "__main__":
    main()
