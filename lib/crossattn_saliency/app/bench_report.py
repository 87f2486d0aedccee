"""The benchmarks' results as Markdown pages (``results/bench/*.md``), from :mod:`.bench`'s records."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["backends_to_markdown", "shared_to_markdown", "to_markdown", "deletion_precision_to_markdown"]


def backends_to_markdown(results: Sequence[dict[str, Any]], machine: str) -> str:
    """Markdown tables of :func:`bench_backends` results."""
    from ..explain import backends

    lines = ["# SPES backends: throughput and faithfulness on the same masks", "",
             f"Machine: {machine}. SM_X of one clip per model, batch {results[0]['batch_size']}, "
             f"{results[0]['n_perturbations']} perturbations with the same masks for every backend. A backend is "
             f"faithful when its maps (z-scored per token) correlate with float32 PyTorch's at >= {backends.MIN_MEAN} "
             f"on average over tokens and >= {backends.MIN_TOKEN} for every token "
             "(`crossattn_saliency.backends.check`, run by the pipeline before a backend's first map).", "",
             "| model | tokens | backend | dtype | SPES loop (pert/s) | bare PyTorch forward (pert/s) | warm-up (s) "
             "| Pearson vs float32, mean / lowest token | faithful | encoder / decoder / projection (ms per pert) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            bare = f"{row['bare_torch_pert_per_s']:.2f}" if row["bare_torch_pert_per_s"] else ""
            lines.append(f"| {r['model']} | {r['n_tokens']} | {row['backend']} | {row['dtype']} | "
                         f"{row['loop_pert_per_s']:.2f} | {bare} | {row['warmup_s']:.1f} | "
                         f"{row['pearson_mean']:.4f} / {row['pearson_min']:.4f} | {'yes' if row['faithful'] else 'no'} | "
                         f"{1e3 * row['encoder_s']:.1f} / {1e3 * row['decoder_s']:.1f} / {1e3 * row['projection_s']:.1f} |")
    lines += ["", "Fastest faithful backend: " + ", ".join(
        f"{r['model']}: {r['fastest_faithful']['backend']} ({r['fastest_faithful']['dtype']})" for r in results), "",
        "## How the cost of a pass grows (fastest faithful backend, ms per perturbation)", ""]
    for key, label in (("tokens", "tokens"), ("batch_size", "batch size"), ("clip_seconds", "clip seconds")):
        cols = [str(x[key]) for x in results[0]["scaling"][key]]
        lines += [f"| model | {label}: " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for r in results:
            lines.append(f"| {r['model']} | " + " | ".join(f"{1e3 * x['s_per_perturbation']:.1f}"
                                                           for x in r["scaling"][key]) + " |")
        lines.append("")
    lines.append("The encoder always sees Whisper's 30 s window (3,000 frames), so the clip length does not "
                 "change the cost; the decoder and projection grow with the tokens.")
    return "\n".join(lines) + "\n"


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


def deletion_precision_to_markdown(rows: Sequence[dict[str, Any]], machine: str) -> str:
    """Per condition and ranking: AUC in each dtype, their difference, and the decoding time."""
    import pandas as pd

    df = pd.DataFrame(rows)
    piv = df.pivot_table(index=["condition", "utterance", "ranking"], columns="dtype", values=["auc", "seconds"])
    lines = [f"# Deletion test: float32 vs bfloat16 decoding ({machine})", "",
             "Same rankings, same masks, greedy decoding of each masked input; AUC in WER-percent units "
             "(0-100); seconds: decoding time of one curve (batched, intact and all-deleted inputs counted "
             "once per utterance).", "",
             "| condition | utterance | ranking | AUC float32 | AUC bfloat16 | difference | s float32 | s bfloat16 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for (c, u, r), row in piv.iterrows():
        a32, a16 = row[("auc", "float32")], row[("auc", "bfloat16")]
        lines.append(f"| {c} | {u} | {r} | {a32:.1f} | {a16:.1f} | {a16 - a32:+.1f} | "
                     f"{row[('seconds', 'float32')]:.1f} | {row[('seconds', 'bfloat16')]:.1f} |")
    d = piv[("auc", "bfloat16")] - piv[("auc", "float32")]
    t = piv["seconds"].sum()
    same = np.mean([a == b for a, b in zip(df[df.dtype == "float32"]["texts"], df[df.dtype == "bfloat16"]["texts"])])
    lines += ["", f"Over {len(piv)} curves: AUC difference mean {d.mean():+.2f}, mean absolute {d.abs().mean():.2f}, "
                  f"largest {d.abs().max():.2f} (WER-percent units); identical outputs along the whole curve in "
                  f"{100 * same:.0f} % of curves; decoding time bfloat16 / float32 = "
                  f"{t['bfloat16'] / t['float32']:.2f}."]
    return "\n".join(lines) + "\n"
