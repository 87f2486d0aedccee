"""What each explanation costs (notebook 04's ``saliency_runs`` table), from the times stored with it.

SPES and gradient maps record the seconds their computation took; attention kinds are cheap
(one teacher-forced pass) and are timed once by extracting them again (stored under
``timings/<kind>``, so a rerun changes no table).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.config import Profile
from ..explain import kinds
from ..explain.explanation import Explained
from . import keys
from .context import Context, condition
from .utterances import context_for
from .store import ResultStore

__all__ = ["recorded_seconds", "timing_params", "explanation_costs"]


def recorded_seconds(e: Any) -> float:
    """Seconds the computation of a stored map took, as recorded with it, charged to its own
    condition: a SPES map's reference pass + perturbation loop, a gradient map's ``seconds``;
    a run shared by ``k`` conditions of one clip (``shared_by``) counts ``1/k`` of its time.
    NaN where nothing was recorded (attention kinds)."""
    info = e.provenance.info or {}
    if "loop_s" in info:
        sec = float(info.get("setup_s", 0.0)) + float(info["loop_s"])
    elif "seconds" in info:
        sec = float(info["seconds"])
    else:
        return float("nan")
    return sec / int(info.get("shared_by", 1))


def timing_params(kind: str, profile: Profile) -> dict[str, Any]:
    """The parameters of an attention kind's timing record: its record's dtype and kind (the
    ``renormalized`` flag of the attention record does not change its cost) and the device."""
    settings = {k: v for k, v in kinds.get(kind).settings(profile, None).items() if k != "renormalized"}
    return {**settings, "device": profile.device}


def explanation_costs(profile: Profile, items: dict[str, list[Explained]]) -> Any:
    """Measured cost of every explanation kind per utterance (``pandas.DataFrame``).

    SPES and gradient maps report the time their computation took (stored with the
    map); attention kinds are cheap (one teacher-forced pass) and are timed here by
    extracting them again. A SPES run shared by ``k`` conditions of the same audio (ASR and ST
    of one clip: each mask encoded once, decoded once per condition) is charged ``1/k`` of its
    time in each, so summing ``seconds`` over conditions gives the compute spent. Columns:
    ``condition``, ``utterance``, ``kind``, ``seconds``, ``shared by`` (conditions sharing the
    run, 1 if none), ``audio seconds``, ``tokens``, ``device``, ``dtype``, ``backend`` (SM_X's encoder passes).
    """
    import time

    import pandas as pd

    rows = []
    for name, its in items.items():
        cond = condition(profile, name)
        ctx = context_for(profile, cond)
        for it in its:
            for kind, e in it.explanations.items():
                info = e.provenance.info
                params = e.provenance.params or {}
                sec = recorded_seconds(e)
                if np.isnan(sec) and e.layered:  # timed once by extracting again, and stored (a rerun changes no table)
                    def timed(kind: str = kind, it: Explained = it) -> dict[str, Any]:
                        from .explaining import explanation

                        scratch = Context(profile, cond, ResultStore(_scratch()), ctx.load_model)
                        t0 = time.perf_counter()
                        explanation(scratch, kinds.get(kind), it.utt)
                        return {"seconds": time.perf_counter() - t0}
                    sec = ctx.store.fetch_json(*keys.timing(kind, name, it.utt.utt_id), timing_params(kind, profile),
                                               timed)["seconds"]
                rows.append({"condition": name, "utterance": it.utt.utt_id, "kind": kind, "seconds": sec,
                             "shared by": int(info.get("shared_by", 1)),
                             "audio seconds": it.utt.n_frames / 100, "tokens": e.n_tokens,
                             "device": info.get("device", profile.device), "dtype": params.get("dtype", ""),
                             "backend": params.get("backend", "")})
    return pd.DataFrame(rows)


def _scratch() -> Any:
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="crossattn-scratch-"))
