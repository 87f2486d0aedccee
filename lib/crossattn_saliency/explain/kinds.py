"""The registry of explanation kinds: what each is, how it is computed and cached.

Every table, figure and report step loops over :data:`REGISTRY`, so adding an
explanation kind is one :func:`register` call (here or in a user's module) plus its
tests. A :class:`Kind` says:

* ``grid``: ``"input"`` (``tokens x frames x mel``) or ``"encoder"`` (``tokens x positions``);
* ``reference``: a SPES saliency map that the other kinds are compared against;
* ``stochastic``: the maps carry two independent halves (reliability);
* ``params(profile)``: the parameters that key its store records;
* ``compute(ctx, utt)``: the :class:`~.explanations.Explanation` of one utterance,
  fetched through the context's :class:`~.store.ResultStore` (computed once).

Registered here: ``CA`` (cross-attention), ``NormCA`` (norm-weighted
cross-attention, Kobayashi et al. 2020), ``SM_X`` / ``SM_H`` (SPES on the input /
encoder output), ``IxG_X`` / ``IG_X`` (input x gradient / integrated gradients on the
input) and ``IxG_H`` / ``IG_H`` (the same on the encoder output). Gradient maps are
attribution magnitudes ``|a|`` (SPES's KL score is unsigned as well).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from .explanations import Explanation
from ..run.store import ResultStore

if TYPE_CHECKING:
    from ..core.config import Condition, Profile
    from ..models.models import LoadedModel
    from ..models.transcribe import Utterance


@dataclass
class Context:
    """What a kind needs to explain utterances of one condition: the profile, the
    condition, the result store and the model (loaded on first use, in the profile's
    ``model_dtype`` on its ``device``). ``prepared`` caches per-kind model copies."""

    profile: "Profile"
    condition: "Condition"
    store: ResultStore
    load_model: Callable[[], "LoadedModel"]
    prepared: dict[str, Any] = field(default_factory=dict)
    #: ``utt -> [(condition name, hypothesis)]`` of other conditions on the same model and audio
    siblings: Callable[["Utterance"], list[tuple[str, Any]]] | None = None
    _model: Any = None

    @property
    def model(self) -> "LoadedModel":
        if self._model is None:
            self._model = self.load_model()
        return self._model

    def key(self, utt: "Utterance") -> str:
        """Store key ``<condition>/<utterance>`` (utterance ids made file-name safe)."""
        return f"{self.condition.name}/{file_id(utt.utt_id)}"


def file_id(utt_id: str) -> str:
    """A file-name-safe version of an utterance id (``mfa/cold`` -> ``mfa__cold``)."""
    return str(utt_id).replace("/", "__")


@dataclass(frozen=True)
class Kind:
    """One registered explanation kind (see the module docstring)."""

    name: str
    title: str
    grid: str
    compute: Callable[[Context, "Utterance"], Explanation]
    params: Callable[["Profile"], dict[str, Any]]
    reference: bool = False
    stochastic: bool = False
    layered: bool = False
    #: ranked in the deletion test
    deletion: bool = True
    description: str = ""


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


def _attention_kind(name: str, section: str, extract: Callable[..., Any] | None,
                    extra: dict[str, Any]) -> Callable[[Context, "Utterance"], Explanation]:
    def compute(ctx: Context, utt: "Utterance") -> Explanation:
        ca = attention_record(ctx, utt, section, extract, extra)
        return Explanation.from_hypothesis(
            name, utt.utt_id, ca.token_ids, ca.tokens, "encoder", ca.weights, ca.n_frames, token_axis=2,
            eot_id=ctx.model.special_ids["eot"], alignment_heads=[tuple(h) for h in ca.alignment_heads],
            provenance={"params": ca.params, "seconds_per_position": ca.seconds_per_position})
    return compute


def attention_record(ctx: Context, utt: "Utterance", section: str = "attention",
                     extract: Callable[..., Any] | None = None, extra: dict[str, Any] | None = None) -> Any:
    """The :class:`~.attention.CrossAttention` record of one utterance from the store
    (``extract`` defaults to plain CA; ``extra`` adds to the record's parameters)."""
    from . import attention

    extract = extract or attention.extract
    params = {"renormalized": False, "dtype": ctx.profile.model_dtype, **(extra or {})}

    def save(obj: Any, path: Any) -> None:
        obj.params = dict(params)  # the store's parameters are the record's
        obj.save(path)

    return ctx.store.fetch(section, ctx.key(utt), params, lambda: extract(ctx.model, utt.features, utt.hyp),
                           save, attention.CrossAttention.load, identity={"token_ids": list(utt.hyp.token_ids)})


def _normca_extract(loaded: Any, feats: np.ndarray, hyp: Any) -> Any:
    from . import normca

    return normca.norm_weighted_attention(loaded, feats, hyp)


# --------------------------------------------------------------------------- SPES kinds


def spes_params(profile: "Profile", grid: str, n_perturbations: int | None = None) -> Any:
    """The profile's :class:`~.spes.SpesParams` for SM_X (``grid="input"``) or SM_H."""
    from .spes import SpesParams

    n = n_perturbations or (profile.spes_perturbations if grid == "input" else profile.spes_h_perturbations)
    return SpesParams(n_perturbations=n, batch_size=profile.spes_batch_size, seed=profile.seed)


#: what a SPES record keeps besides its maps (records without it are recomputed)
SPES_KEEPS = "per-perturbation scores and units"


def spes_record_params(profile: "Profile", grid: str, n_perturbations: int | None = None,
                       snapshots: tuple[int, ...] = (), utt_id: str | None = None,
                       seed_tag: str = "", settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The store parameters of a SPES record: the run's settings, its grid, dtype, snapshots and,
    for SM_X, the backend of its encoder passes. Every map draws its own masks: with ``utt_id`` the
    seed is the map's own, ``derive_seed(profile.seed, utt_id, grid[, seed_tag])`` (``seed_tag``
    names independent repeats of the same map); without, the profile's seed is shown.
    ``settings`` replaces fields of the study's :class:`~.spes.SpesParams` (validated)."""
    from .backends import resolve
    from ..core.config import derive_seed

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


#: parameters added to SM_X records after some were written, with the value those records had
SPES_DEFAULTS = {"backend": "torch"}


def _spes_defaults(wanted: dict[str, Any]) -> dict[str, Any] | None:
    return SPES_DEFAULTS if "backend" in wanted else None


def whisper_spes(ctx: Context, utt: "Utterance | None" = None) -> Any:
    """The context's model prepared for perturbation passes: a copy in ``profile.spes_dtype`` whose
    encoder runs on the profile's backend. A backend other than float32 PyTorch is admitted once
    per model, on ``utt``, by :func:`backend_check` (stored; an unfaithful one is refused)."""
    from .backends import resolve
    from .whisper_spes import WhisperSpes

    if "spes" not in ctx.prepared:
        p = ctx.profile
        backend = resolve(p.spes_backend, p.device)
        ws = WhisperSpes(ctx.model.model, dtype=p.spes_dtype, device=p.device, backend=backend)
        if utt is not None and (backend, p.spes_dtype) != ("torch", "float32"):
            backend_check(ctx, utt, ws)
        ctx.prepared["spes"] = ws
    return ctx.prepared["spes"]


def backend_check(ctx: Context, utt: "Utterance", ws: Any) -> Any:
    """The stored :class:`~.backends.BackendCheck` of the context's model, backend and dtype
    (computed on ``utt`` the first time, and kept whichever utterance a later condition starts
    with: one check per model); raises :class:`~.backends.BackendRefused` if unfaithful."""
    from . import backends
    from ..core.progress import say

    p = ctx.profile
    params = {"n_perturbations": backends.CHECK_PERTURBATIONS, "seed": p.seed,
              "min_mean": backends.MIN_MEAN, "min_token": backends.MIN_TOKEN, "device": p.device}

    def compute() -> dict[str, Any]:
        say(f"checking SPES backend {ws.backend} ({ws.dtype}) of {ctx.condition.model} against float32 PyTorch "
            f"on {backends.CHECK_PERTURBATIONS} masks of {utt.utt_id} ...")
        return backends.check(ctx.model.model, utt.features, utt.n_frames, utt.hyp.prompt_ids, utt.hyp.token_ids,
                              ws.backend, ws.dtype, p.device, backends.CHECK_PERTURBATIONS, p.spes_batch_size,
                              p.seed, ctx.condition.model, prepared=ws).to_dict() | {"utterance": utt.utt_id}

    rec = ctx.store.fetch_json("backend_check", f"{ctx.condition.model_label}/{ws.backend}-{ws.dtype}", params,
                               compute)
    result = backends.BackendCheck.from_dict(rec)
    say(f"SPES backend {result.backend} ({result.dtype}) for {result.model}: maps vs float32 PyTorch Pearson "
        f"{result.pearson_mean:.4f} per token (lowest {result.pearson_min:.4f}), {result.speedup:.1f}x as fast: "
        f"{'admitted' if result.faithful else 'refused'}")
    return backends.require(result)


def spes_record(ctx: Context, utt: "Utterance", grid: str, n_perturbations: int | None = None,
                snapshots: tuple[int, ...] = (), section: str | None = None, progress: bool = False,
                seed_tag: str = "", settings: Mapping[str, Any] | None = None) -> Any:
    """The :class:`~.saliency_result.SaliencyResult` of one utterance (SM_X for ``grid="input"``, else SM_H);
    ``seed_tag`` draws an independent repeat (other masks) of the same map; ``settings`` changes
    SPES's own settings (:func:`spes_record_params`)."""
    from .saliency_result import SaliencyResult
    from .spes import SpesParams

    section = section or ("saliency_x" if grid == "input" else "saliency_h")
    wanted = spes_record_params(ctx.profile, grid, n_perturbations, snapshots, utt_id=utt.utt_id, seed_tag=seed_tag,
                                settings=settings)
    params = SpesParams.from_dict({k: v for k, v in wanted.items()
                                   if k not in ("kind", "dtype", "snapshots", "keeps", "backend")})

    from ..core.progress import to_terminal

    save = lambda obj, path: obj.save(path)  # noqa: E731

    def compute() -> Any:
        ws = whisper_spes(ctx, utt)
        show = progress or to_terminal()
        pending = (_pending_siblings(ctx, utt, section, wanted)
                   if grid == "input" and not snapshots and not seed_tag and not settings else [])
        if pending:  # one encoder pass per mask for this condition and its siblings on the same audio
            hyps = [(utt.hyp.prompt_ids, utt.hyp.token_ids)] + [(h.prompt_ids, h.token_ids) for _, h in pending]
            res, *others = ws.input_shared(utt.features, utt.n_frames, hyps, params, progress=show)
            for (name, h), r in zip(pending, others):
                r.utt_id, r.params = file_id(utt.utt_id), dict(wanted)
                ctx.store.fetch(section, f"{name}/{file_id(utt.utt_id)}", wanted, lambda r=r: r, save,
                                SaliencyResult.load, identity={"token_ids": [int(t) for t in h.token_ids]},
                                defaults=_spes_defaults(wanted))
        else:
            fn = ws.input if grid == "input" else ws.encoder
            res = fn(utt.features, utt.n_frames, utt.hyp.prompt_ids, utt.hyp.token_ids, params,
                     snapshots=snapshots, progress=show)
        res.utt_id = file_id(utt.utt_id)
        res.params = dict(wanted)  # the store's parameters are the record's
        return res

    return ctx.store.fetch(section, ctx.key(utt), wanted, compute, save, SaliencyResult.load,
                           identity={"token_ids": [int(t) for t in utt.hyp.token_ids]},
                           defaults=_spes_defaults(wanted))


def _pending_siblings(ctx: Context, utt: "Utterance", section: str, wanted: dict[str, Any]) -> list[tuple[str, Any]]:
    """Sibling conditions (same model and audio) whose record of this utterance is not stored yet."""
    if ctx.siblings is None:
        return []
    out = []
    for name, h in ctx.siblings(utt):
        path = ctx.store.path(section, f"{name}/{file_id(utt.utt_id)}")
        if not h.token_ids or ctx.store.status(path, wanted, {"token_ids": [int(t) for t in h.token_ids]},
                                                 _spes_defaults(wanted)) == "valid":
            continue
        out.append((name, h))
    return out


def spes_explanation(ctx: Context, utt: "Utterance", name: str, res: Any) -> Explanation:
    """A stored SPES result as the :class:`~.explanations.Explanation` of kind ``name``."""
    from ..models.transcribe import token_strings

    return Explanation.from_hypothesis(
        name, utt.utt_id, res.token_ids, token_strings(ctx.model, res.token_ids),
        res.kind, res.scores,
        res.n_frames, halves=(res.half_a, res.half_b), eot_id=ctx.model.special_ids["eot"],
        provenance={"params": res.params, "n_perturbations": res.n_perturbations, "info": res.info},
        design=res.design() if res.has_design else None)


def _spes_kind(name: str, grid: str) -> Callable[[Context, "Utterance"], Explanation]:
    def compute(ctx: Context, utt: "Utterance") -> Explanation:
        return spes_explanation(ctx, utt, name, spes_record(ctx, utt, grid))
    return compute


# --------------------------------------------------------------------------- gradient kinds


def gradient_params(profile: "Profile", method: str, grid: str) -> dict[str, Any]:
    """Store parameters of a gradient map."""
    p = {"method": method, "grid": grid, "dtype": profile.gradient_dtype, "target": "log p(token)",
         "relevance": "abs"}
    if method == "integrated_gradients":
        p.update(n_steps=profile.gradient_steps, baseline="floor" if grid == "input" else "zero")
    return p


def _gradient_kind(name: str, method: str, grid: str) -> Callable[[Context, "Utterance"], Explanation]:
    def compute(ctx: Context, utt: "Utterance") -> Explanation:
        import time

        from . import gradients
        from ..models.transcribe import token_strings

        params = gradient_params(ctx.profile, method, grid)

        def run() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            fn = gradients.input_gradients if grid == "input" else gradients.encoder_gradients
            t0 = time.perf_counter()
            a = fn(ctx.model.model, utt.features, utt.n_frames, utt.hyp.prompt_ids, utt.hyp.token_ids,
                   method=method, n_steps=ctx.profile.gradient_steps,
                   internal_batch_size=ctx.profile.gradient_batch_size, dtype=ctx.profile.gradient_dtype,
                   device=ctx.profile.device, engine=ctx.profile.gradient_engine)
            meta = {"token_ids": [int(t) for t in utt.hyp.token_ids], "n_frames": int(utt.n_frames),
                    "info": {"seconds": time.perf_counter() - t0, "device": ctx.profile.device}}
            return {"maps": np.abs(np.asarray(a, dtype=np.float32))}, meta

        arrays, meta = ctx.store.fetch_arrays(f"gradients/{name}", ctx.key(utt), params, run,
                                              identity={"token_ids": [int(t) for t in utt.hyp.token_ids]})
        return Explanation.from_hypothesis(
            name, utt.utt_id, meta["token_ids"], token_strings(ctx.model, meta["token_ids"]), grid, arrays["maps"],
            meta["n_frames"], eot_id=ctx.model.special_ids["eot"],
            provenance={"params": meta["params"], "info": meta.get("info", {})})
    return compute


# --------------------------------------------------------------------------- the registry

NORMCA_PARAMS = {"kind": "norm_weighted", "normalized_rows": True}

register(Kind("SM_X", "SPES saliency on the input", "input", _spes_kind("SM_X", "input"),
              lambda p: spes_record_params(p, "input"), reference=True, stochastic=True,
              description="SPES: occluded multi-scale SLIC segments of the log-mel input, KL score"))
register(Kind("SM_H", "SPES saliency on the encoder output", "encoder", _spes_kind("SM_H", "encoder"),
              lambda p: spes_record_params(p, "encoder"), reference=True, stochastic=True,
              description="SPES: occluded single encoder positions, decoder only, KL score"))
register(Kind("CA", "cross-attention", "encoder", _attention_kind("CA", "attention", None, {}),
              lambda p: {"dtype": p.model_dtype}, layered=True,
              description="softmax(QK^T / sqrt(d)) of every decoder layer and head, raw weights on speech positions"))
register(Kind("NormCA", "norm-weighted cross-attention", "encoder",
              _attention_kind("NormCA", "attention_norm", _normca_extract, NORMCA_PARAMS),
              lambda p: {"dtype": p.model_dtype, **NORMCA_PARAMS}, layered=True,
              description="||alpha_ij W_O^h (W_V^h e_j + b_V^h)|| per head (Kobayashi et al., 2020)"))
for _method, _short in (("input_x_gradient", "IxG"), ("integrated_gradients", "IG")):
    for _grid, _suffix in (("input", "X"), ("encoder", "H")):
        register(Kind(f"{_short}_{_suffix}",
                      f"{'input x gradient' if _short == 'IxG' else 'integrated gradients'} on the "
                      f"{'input' if _grid == 'input' else 'encoder output'}", _grid,
                      _gradient_kind(f"{_short}_{_suffix}", _method, _grid),
                      (lambda m, g: lambda p: gradient_params(p, m, g))(_method, _grid),
                      description=f"|{_method.replace('_', ' ')}| of log p(token) (captum), per token"))
