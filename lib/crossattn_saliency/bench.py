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
  same masks (after per-token z-scoring), overall and per token.

Run ``python -m crossattn_saliency.bench --out results/bench``; it writes
``bench.json`` and ``bench.md``. The default clip is a LibriVox sentence from the
pocketsphinx source distribution on PyPI (public domain; fetched once with
``pip download`` into ``config.assets_dir()/bench``), or pass ``--audio FILE.wav``
(16 kHz mono).
"""
from __future__ import annotations

import argparse
import math
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import cache, config
from .saliency import SpesParams, WhisperSpes

CLIP_PACKAGE = "pocketsphinx==5.1.1"
CLIP_MEMBER = "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-0890.wav"
CLIP_TEXT = "unless to be rather cold hearted and rather selfish is to be ill disposed"


def default_clip() -> Path:
    """The benchmark's default clip (5.3 s of read English, 16 kHz), fetched once."""
    dest = config.assets_dir() / "bench" / Path(CLIP_MEMBER).name
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp,
               CLIP_PACKAGE]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("pocketsphinx-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            raise RuntimeError(f"could not download {CLIP_PACKAGE} from PyPI ({proc.stderr.strip()[-300:]}); "
                               "pass --audio FILE.wav (16 kHz mono) instead")
        with tarfile.open(sdists[0]) as tar:
            data = tar.extractfile(CLIP_MEMBER).read()
    with cache.atomic_path(dest, ".wav") as tmp_path:
        tmp_path.write_bytes(data)
    return dest


def load_clip(path: str | Path) -> np.ndarray:
    """Mono float32 samples of a 16 kHz audio file."""
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != 16000:
        raise ValueError(f"{path}: sample rate {sr} Hz; Whisper needs 16 kHz audio (resample it first)")
    return audio.mean(axis=1)


def greedy_hypothesis(model: Any, features: np.ndarray, prompt_ids: Sequence[int], eot: int,
                      max_tokens: int = 120) -> list[int]:
    """Greedy decoding (no cache; fine for short clips): the tokens after the
    prompt, ending with ``eot``."""
    x = torch.as_tensor(features)[None].to(next(model.parameters()).dtype)
    ids = list(prompt_ids)
    with torch.inference_mode():
        hidden = model.model.encoder(x).last_hidden_state
        for _ in range(max_tokens):
            out = model.model.decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=hidden, use_cache=False)
            nxt = int(model.proj_out(out.last_hidden_state[:, -1]).argmax(-1))
            ids.append(nxt)
            if nxt == eot:
                break
    toks = ids[len(prompt_ids):]
    return toks if toks[-1] == eot else toks + [eot]


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
    pert[:, :, :n_frames] = torch.where(occ, torch.tensor(float(features.max()) - 2.0, device=ws.device),
                                        pert[:, :, :n_frames])
    decoder_ids, _ = WhisperSpes.decoder_inputs(prompt_ids, token_ids)
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


def zscore_tokens(maps: np.ndarray) -> np.ndarray:
    """Per-token z-score over all cells (``tokens x ...``; sample std)."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    sd = flat.std(axis=1, ddof=1, keepdims=True)
    return ((flat - flat.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)).reshape(maps.shape)


def bench_model(name: str, audio: np.ndarray, n_perturbations: int, batch_size: int, bare_batches: int,
                device: str, seed: int = 0) -> dict[str, Any]:
    """All measurements for one model (see the module docstring)."""
    from .models import load_model

    lm = load_model(name)
    features = lm.processor.feature_extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    n_frames = min(features.shape[1], math.ceil(len(audio) / 160))
    prompt = lm.prompt_ids("en", "transcribe")
    eot = lm.special_ids.get("eot", lm.tokenizer.eos_token_id)
    tokens = greedy_hypothesis(lm.model, features, prompt, eot)
    decoder_ids, _ = WhisperSpes.decoder_inputs(prompt, tokens)
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
    z32, z16 = zscore_tokens(maps["float32"]), zscore_tokens(maps["bfloat16"])
    per_tok = [float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(z32, z16)]
    out["fp32_vs_bf16"] = {"pearson_all": float(np.corrcoef(z32.ravel(), z16.ravel())[0, 1]),
                           "pearson_per_token_mean": float(np.mean(per_tok)),
                           "pearson_per_token_min": float(np.min(per_tok)),
                           "speedup_bf16_loop": out["spes"]["bfloat16"]["loop_pert_per_s"]
                           / out["spes"]["float32"]["loop_pert_per_s"]}
    return out


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

    clip = Path(audio) if audio else default_clip()
    samples = load_clip(clip)
    dev = torch.cuda.get_device_name(0) if str(device).startswith("cuda") else (platform.processor() or "cpu")
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "clip": clip.name, "clip_seconds": len(samples) / 16000,
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
    ap.add_argument("--audio", default=None, help="16 kHz WAV (default: a LibriVox clip from pocketsphinx's sdist)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    report = run(a.out, a.models, a.n_perturbations, a.batch_size, a.bare_batches, a.device, a.audio, a.seed)
    print(to_markdown(report))


if __name__ == "__main__":
    main()
