"""The registry of explanation kinds: what each is and how it is computed.

Every table, figure and report step loops over :data:`REGISTRY`, so adding an explanation
kind is one :func:`register` call (here or in a user's module) plus its tests. A
:class:`Kind` says what it is and how it is computed, with no result store in sight:

* ``grid``: ``"input"`` (``tokens x frames x mel``) or ``"encoder"`` (``tokens x positions``);
* ``reference``: a SPES saliency map that the other kinds are compared against;
* ``stochastic``: the maps carry two independent halves (reliability);
* ``settings(profile, utt_id)``: the parameters that make its record (and key it in the store);
* ``compute(engine, utt, settings, profile)``: the kind's *record* for one utterance, from the
  model alone (a pure function: it reads and writes nothing); ``engine`` is what
  ``prepare(model, profile)`` made of the loaded model (default: the model itself), shared by the
  kinds of one ``engine`` name; ``compute_shared`` (SM_X) computes the records of several
  hypotheses of the same audio from one set of model passes;
* ``explanation(record, utt, model)``: the record as an :class:`~.explanation.Explanation`
  (default: the record is one already);
* ``save(record, path, params)`` / ``load(path)``: the record's file format, its parameters in
  its metadata (default: :meth:`Explanation.save` / ``load``).

Records are engine-internal: attention kinds keep a
:class:`~.attention.CrossAttention`, SPES kinds a :class:`~.spes_record.SaliencyResult`,
gradient kinds their arrays. Caching is the run wing's job (``run/explaining.py``): it builds
the record's key (``run/keys.py``), loads it from the store or computes it, and turns it into
the explanation.

Registered here: ``CA`` (cross-attention), ``NormCA`` (norm-weighted cross-attention, Kobayashi
et al. 2020), ``SM_X`` / ``SM_H`` (SPES on the input / encoder output), ``IxG_X`` / ``IG_X``
(input x gradient / integrated gradients on the input) and ``IxG_H`` / ``IG_H`` (the same on the
encoder output). Gradient maps are attribution magnitudes ``|a|`` (SPES's KL score is unsigned
as well). And three model-blind baselines that calibrate what "rho 0.5" means (:mod:`.baselines`):
``Diagonal`` (a monotone alignment prior), ``Energy`` (speech energy per 20 ms position, the same
row for every token) and ``DiagonalEnergy`` (their product).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from ..core import files
from .explanation import Explanation, Provenance
from .spes_record import FORMAT as SPES_FORMAT

if TYPE_CHECKING:
    from ..core.config import Profile
    from ..models.decoding import Utterance
    from ..models.loading import LoadedModel

__all__ = ["Kind", "REGISTRY", "register", "unregister", "get", "selected", "spes_params", "spes_settings",
           "spes_run_params", "spes_compute", "spes_compute_shared", "spes_explanation", "gradient_settings",
           "NORMCA_PARAMS", "SPES_DEFAULTS"]


def _identity(record: Any, utt: Any, model: Any) -> Explanation:
    return record


def _prepare_none(model: Any, profile: Any) -> Any:
    return model


def _explanation_save(e: Explanation, path: Any, params: Mapping[str, Any]) -> None:
    pv = e.provenance
    e.provenance = Provenance(pv.model, pv.kind or e.kind, dict(params), pv.seed, pv.version, pv.info)
    e.save(path)


@dataclass(frozen=True)
class Kind:
    """One registered explanation kind (see the module docstring)."""

    name: str
    title: str
    grid: str
    compute: Callable[[Any, "Utterance", Mapping[str, Any], "Profile"], Any]
    settings: Callable[["Profile", str | None], dict[str, Any]]
    reference: bool = False
    stochastic: bool = False
    layered: bool = False
    #: ranked in the deletion test
    deletion: bool = True
    description: str = ""
    explanation: Callable[[Any, "Utterance", "LoadedModel"], Explanation] = _identity
    prepare: Callable[["LoadedModel", "Profile"], Any] = _prepare_none
    #: kinds of the same engine name share one prepared engine ("spes": SM_X and SM_H, admitted by a check)
    engine: str = ""
    #: ``compute_shared(engine, utt, other_hypotheses, settings, profile) -> [record, *their records]``
    compute_shared: Callable[..., list[Any]] | None = None
    #: ``save(record, path, params)``: writes the record with the parameters that made it in its metadata
    save: Callable[[Any, Any, Mapping[str, Any]], Any] = _explanation_save
    load: Callable[[Any], Any] = Explanation.load
    #: store section of its records (``run.keys.SECTIONS``; default: the kind's own ``explanations/<name>``)
    section: str = ""
    #: the record's ``format`` tag, where it has one: a stored record of another format is stale (recomputed)
    record_format: str = ""

    def identity_of(self, token_ids: Any) -> dict[str, Any]:
        """The metadata a stored record of these explained tokens must carry to be reused."""
        out: dict[str, Any] = {"token_ids": [int(t) for t in token_ids]}
        if self.record_format:
            out["format"] = self.record_format
        return out

    @property
    def store_section(self) -> str:
        return self.section or f"explanations/{self.name}"


REGISTRY: dict[str, Kind] = {}


def register(kind: Kind, replace: bool = False) -> Kind:
    """Add a kind to :data:`REGISTRY` (``replace=True`` to redefine an existing name)."""
    if kind.grid not in ("input", "encoder"):
        raise ValueError(f"kind {kind.name}: grid {kind.grid!r} is invalid: 'input' or 'encoder'")
    if kind.name in REGISTRY and not replace:
        raise ValueError(f"an explanation kind named {kind.name!r} is already registered")
    REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a kind (tests that register one on the fly clean up with this)."""
    REGISTRY.pop(name, None)


def get(name: str) -> Kind:
    if name not in REGISTRY:
        raise KeyError(f"unknown explanation kind {name!r}; registered: {list(REGISTRY)}")
    return REGISTRY[name]


def selected(profile: "Profile") -> list[Kind]:
    """The kinds a profile computes (``profile.explanations``; ``None`` = all registered), references first."""
    names = list(REGISTRY) if profile.explanations is None else list(profile.explanations)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"profile {profile.name}: unknown explanation kind(s) {unknown}; registered: {list(REGISTRY)}")
    ks = [REGISTRY[n] for n in names]
    return [k for k in ks if k.reference] + [k for k in ks if not k.reference]


# --------------------------------------------------------------------------- attention kinds

#: parameters of norm-weighted attention records (besides the dtype)
NORMCA_PARAMS = {"kind": "norm_weighted", "normalized_rows": True}


def _attention_settings(extra: Mapping[str, Any]) -> Callable[["Profile", str | None], dict[str, Any]]:
    return lambda p, utt_id=None: {"renormalized": False, "dtype": p.model_dtype, **dict(extra)}


def _attention_compute(extract: str) -> Callable[[Any, "Utterance", Mapping[str, Any], "Profile"], Any]:
    def compute(loaded: Any, utt: "Utterance", settings: Mapping[str, Any], profile: "Profile") -> Any:
        from . import attention, normca

        fn = attention.extract if extract == "plain" else normca.norm_weighted_attention
        return fn(loaded, utt.features, utt.hyp)
    return compute


def _attention_explanation(name: str) -> Callable[[Any, "Utterance", "LoadedModel"], Explanation]:
    def explanation(ca: Any, utt: "Utterance", loaded: "LoadedModel") -> Explanation:
        return Explanation.from_hypothesis(
            name, utt.utt_id, ca.token_ids, ca.tokens, "encoder", ca.weights, ca.n_frames, token_axis=2,
            eot_id=loaded.special_ids["eot"], alignment_heads=[tuple(h) for h in ca.alignment_heads],
            provenance=Provenance(model=loaded.name, kind=name, params=ca.params))
    return explanation


def _record_save(record: Any, path: Any, params: Mapping[str, Any]) -> None:
    """Save a record object (CrossAttention, SaliencyResult) with ``params`` as its parameters."""
    record.params = dict(params)
    record.save(path)


def _attention_load(path: Any) -> Any:
    from .attention import CrossAttention

    return CrossAttention.load(path)


# --------------------------------------------------------------------------- SPES kinds


def spes_params(profile: "Profile", grid: str, n_perturbations: int | None = None) -> Any:
    """The profile's :class:`~.spes.SpesParams` for SM_X (``grid="input"``) or SM_H."""
    from .spes import SpesParams

    n = n_perturbations or (profile.spes_perturbations if grid == "input" else profile.spes_h_perturbations)
    return SpesParams(n_perturbations=n, batch_size=profile.spes_batch_size, seed=profile.seed)


#: what a SPES record keeps besides its maps (records without it are recomputed)
SPES_KEEPS = "per-perturbation scores and units"
#: parameters added to SM_X records after some were written, with the value those records had
SPES_DEFAULTS = {"backend": "torch"}


def spes_settings(profile: "Profile", grid: str, n_perturbations: int | None = None,
                  snapshots: tuple[int, ...] = (), utt_id: str | None = None,
                  seed_tag: str = "", settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of a SPES record: the run's settings, its grid, dtype, snapshots and, for
    SM_X, the backend of its encoder passes. Every map draws its own masks: with ``utt_id`` the
    seed is the map's own, ``derive_seed(profile.seed, utt_id, grid[, seed_tag])`` (``seed_tag``
    names independent repeats of the same map); without, the profile's seed is shown.
    ``settings`` replaces fields of the study's :class:`~.spes.SpesParams` (validated)."""
    from ..core.config import derive_seed
    from .backends import resolve

    params = spes_params(profile, grid, n_perturbations)
    if settings:
        params = params.replace(**dict(settings))
    if utt_id is not None:
        params = params.replace(seed=derive_seed(profile.seed, utt_id, grid, *([seed_tag] if seed_tag else [])))
    out = {**params.to_dict(), "kind": grid, "dtype": profile.spes_dtype,
           "snapshots": sorted(int(s) for s in snapshots), "keeps": SPES_KEEPS}
    if grid == "input":  # SM_H runs the decoder only, always in PyTorch
        out["backend"] = resolve(profile.spes_backend, profile.device)
    return out


def spes_run_params(settings: Mapping[str, Any]) -> Any:
    """The :class:`~.spes.SpesParams` inside a SPES record's parameters."""
    from .spes import SpesParams

    return SpesParams.from_dict({k: v for k, v in settings.items()
                                 if k not in ("kind", "dtype", "snapshots", "keeps", "backend")})


def _spes_prepare(loaded: "LoadedModel", profile: "Profile") -> Any:
    """The model prepared for perturbation passes: a copy in ``profile.spes_dtype`` whose encoder
    runs on the profile's backend (admitted by its check before use: ``run/explaining.py``)."""
    from .backends import resolve
    from .spes_whisper import WhisperSpes

    return WhisperSpes(loaded.model, dtype=profile.spes_dtype, device=profile.device,
                       backend=resolve(profile.spes_backend, profile.device))


def spes_compute(ws: Any, utt: "Utterance", settings: Mapping[str, Any], profile: "Profile" = None) -> Any:
    """One SPES record (:class:`~.spes_record.SaliencyResult`) made as its parameters
    ``settings`` (:func:`spes_settings`) say: SM_X for ``settings["kind"] == "input"``, else SM_H."""
    from ..core.progress import to_terminal

    params = spes_run_params(settings)
    fn = ws.input if settings["kind"] == "input" else ws.encoder
    res = fn(utt.features, utt.n_frames, utt.hyp.prompt_ids, utt.hyp.token_ids, params,
             snapshots=tuple(settings.get("snapshots", ())), progress=to_terminal())
    res.utt_id = utt.utt_id
    return res


def spes_compute_shared(ws: Any, utt: "Utterance", others: list[Any], settings: Mapping[str, Any],
                        profile: "Profile" = None) -> list[Any]:
    """SM_X records of ``utt``'s hypothesis and of ``others`` (hypotheses of the same audio) from one
    set of perturbation passes: each mask encoded once, decoded once per hypothesis."""
    from ..core.progress import to_terminal

    hyps = [(utt.hyp.prompt_ids, utt.hyp.token_ids)] + [(h.prompt_ids, h.token_ids) for h in others]
    out = ws.input_shared(utt.features, utt.n_frames, hyps, spes_run_params(settings), progress=to_terminal())
    for r in out:
        r.utt_id = utt.utt_id
    return out


def spes_explanation(name: str) -> Callable[[Any, "Utterance", "LoadedModel"], Explanation]:
    """A stored SPES record (:class:`~.spes_record.SaliencyRecord`, replayed on the utterance's
    features) or a :class:`~.spes_record.SaliencyResult` as the :class:`~.explanation.Explanation`
    of kind ``name``."""
    def explanation(res: Any, utt: "Utterance", loaded: "LoadedModel") -> Explanation:
        from ..models.decoding import token_strings
        from .spes_record import SaliencyRecord

        if isinstance(res, SaliencyRecord):
            res = res.replay(utt.features)
        return Explanation.from_hypothesis(
            name, utt.utt_id, res.token_ids, token_strings(loaded, res.token_ids), res.kind, res.scores,
            res.n_frames, halves=(res.half_a, res.half_b), eot_id=loaded.special_ids["eot"],
            provenance=Provenance(model=loaded.name, kind=name, params=res.params, seed=res.params.get("seed"),
                                  info=res.info),
            design=res.design() if res.has_design else None)
    return explanation


def _spes_load(path: Any) -> Any:
    from .spes_record import SaliencyRecord

    return SaliencyRecord.load(path)


# --------------------------------------------------------------------------- gradient kinds


def gradient_settings(profile: "Profile", method: str, grid: str) -> dict[str, Any]:
    """Parameters of a gradient record."""
    p = {"method": method, "grid": grid, "dtype": profile.gradient_dtype, "target": "log p(token)",
         "relevance": "abs"}
    if method == "integrated_gradients":
        p.update(n_steps=profile.gradient_steps, baseline="floor" if grid == "input" else "zero")
    return p


def _gradient_compute(method: str, grid: str) -> Callable[[Any, "Utterance", Mapping[str, Any], "Profile"], Any]:
    def compute(loaded: Any, utt: "Utterance", settings: Mapping[str, Any],
                profile: "Profile") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        from . import gradients

        fn = gradients.input_gradients if grid == "input" else gradients.encoder_gradients
        t0 = time.perf_counter()
        a = fn(loaded.model, utt.features, utt.n_frames, utt.hyp.prompt_ids, utt.hyp.token_ids, method=method,
               n_steps=profile.gradient_steps, internal_batch_size=profile.gradient_batch_size,
               dtype=profile.gradient_dtype, device=profile.device, engine=profile.gradient_engine)
        meta = {"token_ids": [int(t) for t in utt.hyp.token_ids], "n_frames": int(utt.n_frames),
                "info": {"seconds": time.perf_counter() - t0, "device": profile.device}}
        return {"maps": np.abs(np.asarray(a, dtype=np.float32))}, meta
    return compute


def _gradient_explanation(name: str, grid: str) -> Callable[[Any, "Utterance", "LoadedModel"], Explanation]:
    def explanation(record: Any, utt: "Utterance", loaded: "LoadedModel") -> Explanation:
        from ..models.decoding import token_strings

        arrays, meta = record
        return Explanation.from_hypothesis(
            name, utt.utt_id, meta["token_ids"], token_strings(loaded, meta["token_ids"]), grid, arrays["maps"],
            meta["n_frames"], eot_id=loaded.special_ids["eot"],
            provenance=Provenance(model=loaded.name, kind=name, params=meta["params"], info=meta.get("info", {})))
    return explanation


def _arrays_save(record: Any, path: Any, params: Mapping[str, Any]) -> None:
    arrays, meta = record
    files.write_npz(path, {**dict(meta), "params": dict(params)}, **dict(arrays))


# --------------------------------------------------------------------------- the registry

register(Kind("SM_X", "SPES saliency on the input", "input", spes_compute,
              lambda p, utt_id=None: spes_settings(p, "input", utt_id=utt_id), reference=True, stochastic=True,
              description="SPES: occluded multi-scale SLIC segments of the log-mel input, KL score",
              explanation=spes_explanation("SM_X"), prepare=_spes_prepare, save=_record_save, load=_spes_load,
              record_format=SPES_FORMAT, section="saliency_x", engine="spes", compute_shared=spes_compute_shared))
register(Kind("SM_H", "SPES saliency on the encoder output", "encoder", spes_compute,
              lambda p, utt_id=None: spes_settings(p, "encoder", utt_id=utt_id), reference=True, stochastic=True,
              description="SPES: occluded single encoder positions, decoder only, KL score",
              explanation=spes_explanation("SM_H"), prepare=_spes_prepare, save=_record_save, load=_spes_load,
              record_format=SPES_FORMAT, section="saliency_h", engine="spes"))
register(Kind("CA", "cross-attention", "encoder", _attention_compute("plain"), _attention_settings({}), layered=True,
              description="softmax(QK^T / sqrt(d)) of every decoder layer and head, raw weights on speech positions",
              explanation=_attention_explanation("CA"), save=_record_save, load=_attention_load, section="attention"))
register(Kind("NormCA", "norm-weighted cross-attention", "encoder", _attention_compute("norm"),
              _attention_settings(NORMCA_PARAMS), layered=True,
              description="||alpha_ij W_O^h (W_V^h e_j + b_V^h)|| per head (Kobayashi et al., 2020)",
              explanation=_attention_explanation("NormCA"), save=_record_save, load=_attention_load,
              section="attention_norm"))
for _method, _short in (("input_x_gradient", "IxG"), ("integrated_gradients", "IG")):
    for _grid, _suffix in (("input", "X"), ("encoder", "H")):
        register(Kind(f"{_short}_{_suffix}",
                      f"{'input x gradient' if _short == 'IxG' else 'integrated gradients'} on the "
                      f"{'input' if _grid == 'input' else 'encoder output'}", _grid,
                      _gradient_compute(_method, _grid),
                      (lambda m, g: lambda p, utt_id=None: gradient_settings(p, m, g))(_method, _grid),
                      description=f"|{_method.replace('_', ' ')}| of log p(token) (captum), per token",
                      explanation=_gradient_explanation(f"{_short}_{_suffix}", _grid), save=_arrays_save,
                      load=files.read_npz, section=f"gradients/{_short}_{_suffix}"))


def _prepare_nothing(model: Any, profile: Any) -> None:
    """Model-blind kinds (the trivial baselines) use no engine: nothing is prepared from the model."""
    return None


# trivial, model-blind baselines on the encoder grid (explain/baselines.py: the formulas); no forward pass
from . import baselines as _baselines  # noqa: E402

for _name, _title, _desc in (
        ("Diagonal", "diagonal alignment prior",
         "Gaussian per token over speech positions, mean (i+0.5)/I of the speech, sd = speech length / I"),
        ("Energy", "speech energy", "mean log-mel of each 20 ms position (2 frames x all mel bins), same row per token"),
        ("DiagonalEnergy", "diagonal prior x energy", "Diagonal * (Energy - its minimum over speech positions)")):
    register(Kind(_name, _title, "encoder", _baselines.compute(_name),
                  (lambda n: lambda p, utt_id=None: dict(_baselines.SETTINGS[n]))(_name),
                  description=f"model-blind baseline: {_desc}", explanation=_baselines.explanation(_name),
                  prepare=_prepare_nothing, engine="baselines", save=_arrays_save, load=files.read_npz))
