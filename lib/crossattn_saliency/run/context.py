"""What every step of the study needs: the profile's data, its models, its store, per condition.

* data: :func:`dataset` (the profile's selection of a test set), :func:`condition_rows` (a
  condition's rows), :func:`reference_of` (transcript or translation), :func:`speaker_capped`
  (the explained utterances of a set with several speakers: at most ``saliency_per_speaker`` each);
* models: :func:`model_for` (the condition's model in the profile's dtype and device);
* store: :func:`store` (the profile's :class:`~.store.ResultStore`, its sections
  :data:`~.keys.SECTIONS`);
* :class:`Context`: all of it for one condition, with the model loaded on first use and
  per-kind prepared copies of it (SPES's perturbation engine, ...); made by
  :func:`.utterances.context_for`, beside the utterances it explains.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core import config
from ..core.config import Condition, Profile
from ..models.decoding import Hypothesis, Utterance
from ..models.loading import LoadedModel, load_model
from . import keys
from .store import ResultStore

__all__ = ["Context", "dataset", "condition_rows", "reference_of", "model_for", "store", "speaker_capped", "condition"]


def dataset(profile: Profile, set_name: str) -> Any:
    """The profile's selection of a test set (``datasets.Dataset``)."""
    from .. import data

    return data.load_set(set_name, profile.set_sizes.get(set_name))


def reference_of(row: dict[str, Any], cond: Condition) -> str:
    """The reference text of a row: transcript for ASR, English translation for ST."""
    return row["transcript"] if cond.task == "transcribe" else row["translation_en"]


def condition_rows(profile: Profile, cond: Condition) -> list[dict[str, Any]]:
    """The rows of a condition's set (with audio); translation conditions keep the rows with a translation."""
    ds = dataset(profile, cond.dataset)
    out = [dict(r) for r in ds]
    if cond.task == "translate":
        out = [r for r in out if r.get("translation_en")]
    return out


def model_for(profile: Profile, cond: Condition) -> LoadedModel:
    """The condition's model in the profile's ``model_dtype`` on its ``device``."""
    return load_model(cond.model, dtype=profile.model_dtype, device=profile.device)


def store(profile: Profile) -> ResultStore:
    """The profile's result store (``results/cache/<profile>/``), on top of its committed
    reference store where there is one (:func:`~..core.config.reference_store_dir`)."""
    return ResultStore(config.cache_dir(profile.name), on_mismatch=profile.on_mismatch, sections=keys.SECTIONS,
                       reference=config.reference_store_dir(profile.name))


def condition(profile: Profile, name: str) -> Condition:
    """A condition of the profile by name (``whisper-base__it-tts__st``)."""
    for c in profile.conditions:
        if c.matches(name):
            return c
    raise ValueError(f"no condition {name!r} in profile {profile.name}; have {[c.name for c in profile.conditions]}")


def speaker_capped(rows: list[dict[str, Any]], n: int, cap: int) -> list[dict[str, Any]]:
    """The first ``n`` rows in set order with at most ``cap`` per speaker while rows of speakers
    under the cap remain; short of ``n``, the skipped rows fill up in set order. A set with one
    speaker keeps its first ``n`` rows."""
    chosen, skipped, count = [], [], collections.Counter()
    for i, r in enumerate(rows):
        if len(chosen) >= n:
            break
        spk = r["speaker"]
        if count[spk] >= cap and any(count[x["speaker"]] < cap for x in rows[i + 1:]):
            skipped.append(i)
            continue
        chosen.append(i)
        count[spk] += 1
    chosen += skipped[:max(0, n - len(chosen))]
    return [rows[i] for i in sorted(chosen)]


@dataclass
class Context:
    """What a step needs to explain utterances of one condition: the profile, the condition,
    the result store and the model (loaded on first use, in the profile's ``model_dtype`` on its
    ``device``). ``prepared`` keeps per-kind prepared copies of the model; ``siblings`` gives, for
    an utterance, the other saliency conditions on the same model and audio with their
    hypotheses (ASR and translation of one set), so that SM_X encodes each mask once for all."""

    profile: Profile
    condition: Condition
    store: ResultStore
    load_model: Callable[[], LoadedModel]
    prepared: dict[str, Any] = field(default_factory=dict)
    siblings: Callable[[Utterance], list[tuple[str, Hypothesis]]] | None = None
    _model: Any = None

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            self._model = self.load_model()
        return self._model
