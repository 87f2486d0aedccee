"""SPES saliency maps for a set of utterances, cached one file each; the SPES names in one place.

SPES (Fucci et al., arXiv 2411.01710; see ``shared/SPES.md``) gives saliency maps
on the input spectrogram (SM_X) and on the encoder output (SM_H). The work is
split over three modules:

* :mod:`crossattn_saliency.spes`: the model-agnostic engine (:class:`SpesParams`,
  units, scorers, masks, :class:`Spes`);
* :mod:`crossattn_saliency.whisper_spes`: the Whisper adapter (:class:`WhisperSpes`,
  :func:`spes_input`, :func:`spes_encoder`);
* :mod:`crossattn_saliency.saliency_result`: the result type
  :class:`SaliencyResult` and its ``.npz`` format
  (``"crossattn_saliency.SaliencyResult/1"``).

This module holds the set driver, :func:`saliency_for_set` (one
``<utt_id>.npz`` per utterance, with resume), and re-exports the names above so
that ``from crossattn_saliency.saliency import SpesParams, WhisperSpes, ...`` keeps
working for existing callers; new code imports them from their own modules.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from . import cache
# KINDS, prepare, recorded_params and torch_dtype are used below; the other names are re-exported
# for existing callers (pipeline, notebooks) only: they live in the modules they are imported from
from .saliency_result import KINDS, SaliencyResult  # noqa: F401
from .spes import (SCORERS, ForwardFn, MaskSampler, SegmentStats, Spes, SpesParams, SpesRun,  # noqa: F401
                   encoder_units, floor_value, kl_scores, level_segment_counts, prob_drop_scores, slic_levels)
from .whisper_spes import (ATTN, AUTO_ATTN, DTYPES, WhisperSpes, prepare, recorded_params,  # noqa: F401
                           spes_encoder, spes_input, torch_dtype)

__all__ = [
    "SpesParams", "SaliencyResult", "SegmentStats", "SpesRun", "MaskSampler", "Spes",
    "WhisperSpes", "spes_input", "spes_encoder", "saliency_for_set",
    "level_segment_counts", "slic_levels", "encoder_units", "floor_value",
    "kl_scores", "prob_drop_scores",
]


def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        if name not in item:
            raise KeyError(f"item has no {name!r}; items need utt_id, features, n_frames, prompt_ids, token_ids")
        return item[name]
    if not hasattr(item, name):
        raise AttributeError(f"item has no {name!r}; items need utt_id, features, n_frames, prompt_ids, token_ids")
    return getattr(item, name)


def _same_params(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    ignore = {"batch_size"}  # does not change the maps
    return {k: v for k, v in stored.items() if k not in ignore} == {k: v for k, v in wanted.items() if k not in ignore}


def saliency_for_set(model: Any, items: Iterable[Any], out_dir: str | Path, params: SpesParams | None = None,
                     kind: str = "input", dtype: str = "bfloat16", device: str = "cpu",
                     snapshots: Sequence[int] = (), progress: bool = True,
                     attn_implementation: str = "auto") -> list[Path]:
    """SPES maps for many utterances, one file each, with resume.

    Parameters
    ----------
    model : ``WhisperForConditionalGeneration`` or a prepared :class:`WhisperSpes`
        (prepared once, and only if some utterance is not cached yet).
    items : objects or dicts with ``utt_id``, ``features`` (``mel x frames``),
        ``n_frames``, ``prompt_ids``, ``token_ids``.
    out_dir : folder of the ``<utt_id>.npz`` files (:class:`SaliencyResult`).
    params, kind, dtype, device, snapshots : as in :func:`spes_input`;
        ``kind`` is ``"input"`` (SM_X) or ``"encoder"`` (SM_H).

    Returns
    -------
    The file paths, in the order of ``items``. A file that exists with the same
    parameters (and tokens) is kept; one with different ones raises
    ``ValueError``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid: choose one of {list(KINDS)}")
    params = params or SpesParams()
    torch_dtype(dtype)
    out_dir = Path(out_dir)
    wanted = recorded_params(params, kind, dtype, snapshots)
    items = list(items)
    prepared: WhisperSpes | None = None
    paths = []
    for item in tqdm(items, desc=f"saliency ({kind})", unit="utt", disable=not progress):
        utt_id = str(_field(item, "utt_id"))
        if not utt_id or "/" in utt_id or utt_id.startswith("."):
            raise ValueError(f"utt_id {utt_id!r} cannot be a file name")
        path = out_dir / f"{utt_id}.npz"
        token_ids = [int(t) for t in _field(item, "token_ids")]
        if path.exists():
            _, meta = cache.read_npz(path)
            if not _same_params(meta.get("params", {}), wanted) or meta.get("token_ids") != token_ids:
                what = "parameters" if not _same_params(meta.get("params", {}), wanted) else "hypothesis tokens"
                raise ValueError(
                    f"{path} exists with different {what} (stored {meta.get('params')}, "
                    f"tokens {meta.get('token_ids')}; wanted {wanted}, tokens {token_ids}): use another "
                    "out_dir or delete the file")
            paths.append(path)
            continue
        if prepared is None:
            prepared = prepare(model, dtype, device, attn_implementation)
        fn = prepared.input if kind == "input" else prepared.encoder
        res = fn(_field(item, "features"), int(_field(item, "n_frames")), _field(item, "prompt_ids"), token_ids,
                 params, snapshots=snapshots, progress=progress)
        res.utt_id = utt_id
        paths.append(res.save(path))
    return paths
