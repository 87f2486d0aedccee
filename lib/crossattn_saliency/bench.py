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
(:mod:`crossattn_saliency.data`, :mod:`crossattn_saliency.transcribe`,
:mod:`crossattn_saliency.spes`, :mod:`crossattn_saliency.compare`), so the
benchmark times exactly what the study runs.

Run ``python -m crossattn_saliency.bench --out results/bench``; it writes
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

from . import cache, config, transcribe
from .backends import map_agreement
from .spes import SpesParams, floor_value
from .transcribe import teacher_forcing_inputs
from .whisper_spes import WhisperSpes

#: the default clip inside the pocketsphinx sdist (``data.POCKETSPHINX_SDIST``)
CLIP_MEMBER = "test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav"
CLIP_TEXT = "unless to be rather cold hearted and rather selfish is to be ill disposed"


def default_clip() -> Path:
    """The benchmark's default clip (5.3 s of read English, 16 kHz), fetched once."""
    from . import data

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
    from .models import load_model

    lm = load_model(name)
    features, n_frames = transcribe.features(lm, audio, transcribe.SAMPLING_RATE, "bench")
    prompt = lm.prompt_ids("en", "transcribe")
    tokens = transcribe.decode(lm, features, "en", "transcribe", beam_size=1)
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
    (:meth:`~.whisper_spes.WhisperSpes.input_shared`), for each ``k`` in ``counts``.

    The ``k`` hypotheses are copies of the model's greedy hypothesis (the cost of a decoder
    pass depends on the number of tokens, not on which they are). Reports the loop seconds per
    perturbation for each ``k``, its ratio to ``k`` separate runs (``k`` x the cost of one), and
    the share of one pass spent in the encoder (from a bare encoder timing)."""
    from .models import load_model

    lm = load_model(name)
    features, n_frames = transcribe.features(lm, audio, transcribe.SAMPLING_RATE, "bench")
    prompt = lm.prompt_ids("en", "transcribe")
    tokens = transcribe.decode(lm, features, "en", "transcribe", beam_size=1)
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


def shared_to_markdown(results: Sequence[dict[str, Any]], machine: str) -> str:
    """Markdown table of :func:`shared_encoder_cost` results."""
    lines = ["# SM_X for several conditions of one audio: shared encoder passes", "",
             f"Machine: {machine}. Each mask is encoded once and decoded once per condition; "
             "ratio to separate runs = cost of the shared run / (k x cost of one condition).", "",
             "| model | dtype | tokens | encoder share of one pass | conditions | s per perturbation "
             "| ratio to one | ratio to separate runs |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            lines.append(f"| {r['model']} | {r['dtype']} | {r['n_tokens']} | {r['encoder_share_of_one']:.2f} | "
                         f"{row['conditions']} | {row['loop_s_per_perturbation']:.3f} | {row['ratio_to_one']:.2f} | "
                         f"{row['ratio_to_separate_runs']:.2f} |")
    return "\n".join(lines) + "\n"


def to_markdown(report: dict[str, Any]) -> str:
    """A short human-readable table of :func:`run` 's report."""
    m = report["machine"]
    lines = [f"# SPES benchmark ({report['date']})", "",
             f"Machine: {m['device']}, {m['cpu_threads']} torch threads, torch {m['torch']}, "
             f"transformers {m['transformers']}. Clip: `{report['clip']}`. "
             f"{report['n_perturbations']} perturbations, batch size {report['batch_size']}.", "",
             "| model | dtype | bare eager (pert/s) | bare sdpa (pert/s) | SPES loop (pert/s) | SPES total (pert/s) "
             "| loop / floor | total / floor | robust ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        for dt in ("float32", "bfloat16"):
            b, s = r["bare"][dt], r["spes"][dt]
            lines.append(f"| {r['model']} | {dt} | {b['eager_pert_per_s']:.2f} | {b['sdpa_pert_per_s']:.2f} | "
                         f"{s['loop_pert_per_s']:.2f} | {s['total_pert_per_s']:.2f} | "
                         f"{s['ratio_loop_to_floor']:.2f} | {s['ratio_total_to_floor']:.2f} | "
                         f"{s['ratio_robust']:.2f} |")
    lines += ["", "| model | tokens | frames | bf16 speed-up (SPES loop) | Pearson fp32 vs bf16 (all) "
              "| per token mean | per token min |", "|---|---|---|---|---|---|---|"]
    for r in report["models"]:
        c = r["fp32_vs_bf16"]
        lines.append(f"| {r['model']} | {r['n_tokens']} | {r['n_frames']} | {c['speedup_bf16_loop']:.2f} | "
                     f"{c['pearson_all']:.3f} | {c['pearson_per_token_mean']:.3f} | {c['pearson_per_token_min']:.3f} |")
    lines += ["", "Floor = the bare batched forward pass `model(input_features, decoder_input_ids)` on copies of "
              "the unperturbed input, same model, dtype, attention and batch size (mean of a measurement before "
              "and one after SPES). SPES loop = perturbation batches only; total = the whole call (SLIC "
              "segmentation and the reference pass included). Robust ratio = (share of the SPES loop spent in the "
              "forward function) x (bare / forward-function time, timed alternately on one perturbed batch): "
              "insensitive to load changes on a shared machine. Pearson: maps z-scored per token, same masks.", ""]
    for r in report["models"]:
        lines.append(f"- {r['model']} hypothesis: \"{r['hypothesis']}\"")
    return "\n".join(lines) + "\n"


def run(out: str | Path, models: Sequence[str] = ("whisper-tiny.en", "whisper-base"), n_perturbations: int = 192,
        batch_size: int = 16, bare_batches: int = 3, device: str = "cpu", audio: str | Path | None = None,
        seed: int = 0) -> dict[str, Any]:
    """Run the benchmark and write ``bench.json`` and ``bench.md`` into ``out``."""
    import transformers

    from . import data

    clip = Path(audio) if audio else default_clip()
    samples = data.read_audio(clip)  # 16 kHz mono float32
    dev = torch.cuda.get_device_name(0) if str(device).startswith("cuda") else (platform.processor() or "cpu")
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "clip": clip.name,
        "clip_seconds": len(samples) / transcribe.SAMPLING_RATE,
        "n_perturbations": n_perturbations, "batch_size": batch_size, "device": device,
        "machine": {"device": f"{device} ({dev})", "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "python": platform.python_version()},
        "models": [bench_model(m, samples, n_perturbations, batch_size, bare_batches, device, seed) for m in models],
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache.write_json(out / "bench.json", report)
    md = to_markdown(report)
    with cache.atomic_path(out / "bench.md", ".md") as tmp:
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
    ap.add_argument("--shared-encoder", action="store_true",
                    help="only measure SM_X for 1, 2, 3 conditions of one audio with shared encoder passes "
                         "(writes shared_encoder.json / .md)")
    a = ap.parse_args(argv)
    if a.shared_encoder:
        from . import data

        samples = data.read_audio(Path(a.audio) if a.audio else default_clip())
        dtype = "bfloat16" if config.native_bf16(a.device) else "float32"
        res = [shared_encoder_cost(m, samples, a.n_perturbations, a.batch_size, a.device, dtype, seed=a.seed)
               for m in a.models]
        dev = torch.cuda.get_device_name(0) if str(a.device).startswith("cuda") else (platform.processor() or "cpu")
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        cache.write_json(out / "shared_encoder.json", {"date": time.strftime("%Y-%m-%d"), "device": dev,
                                                       "threads": torch.get_num_threads(), "models": res})
        md = shared_to_markdown(res, f"{a.device} ({dev}), {torch.get_num_threads()} torch threads")
        with cache.atomic_path(out / "shared_encoder.md", ".md") as tmp:
            tmp.write_text(md)
        print(md)
        return
    report = run(a.out, a.models, a.n_perturbations, a.batch_size, a.bare_batches, a.device, a.audio, a.seed)
    print(to_markdown(report))


if __name__ == "__main__":
    main()
