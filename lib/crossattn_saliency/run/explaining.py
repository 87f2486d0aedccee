"""Explanations through the store: every kind of every explained utterance, computed once (notebook 04).

The kinds compute (:mod:`..explain.kinds`: pure functions of the model and the utterance); this
module caches. :func:`record` is the one path from a kind to its stored record: the key from
:mod:`.keys`, the parameters from the kind's ``settings``, the model prepared once per condition
(:func:`engine`; SPES on the first backend admitted by its check, :func:`spes_profile`), SM_X's
perturbation passes shared with the sibling conditions of the same audio (ASR and translation of
one clip: each mask encoded once). :func:`explain` turns the records of a condition's explained
utterances into :class:`~..explain.explanation.Explained` objects.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..core.config import Condition, Profile
from ..explain import kinds
from ..explain.explanation import Explained, Explanation
from ..explain.kinds import Kind
from ..models.decoding import Utterance
from . import keys
from .context import Context
from .utterances import context_for, utterances

__all__ = ["engine", "admit_backend", "spes_profile", "record", "explanation", "spes_record", "spes_explanation", "explain",
           "cross_attention", "convergence_runs"]


def admit_backend(ctx: Context, utt: Utterance, ws: Any) -> Any:
    """The stored :class:`~..explain.backends.BackendCheck` of the context's model, backend and
    dtype (computed on ``utt`` the first time, and kept whichever utterance a later condition
    starts with: one check per model), whether faithful or not. ``ws`` is the prepared
    :class:`~..explain.spes_whisper.WhisperSpes`, or a function that makes it (called only if the
    check runs). Float32 PyTorch, the reference itself, needs no check (returns None)."""
    from ..core.progress import say
    from ..explain import backends

    if (ws.backend, ws.dtype) == ("torch", "float32"):
        return None
    p = ctx.profile
    n = int(p.backend_check_perturbations)
    params = {"n_perturbations": n, "seed": p.seed,
              "min_mean": backends.MIN_MEAN, "min_token": backends.MIN_TOKEN, "device": p.device}

    def compute() -> dict[str, Any]:
        say(f"checking SPES backend {ws.backend} ({ws.dtype}) of {ctx.condition.model} against float32 PyTorch "
            f"on {n} masks of {utt.utt_id} ...")
        return backends.check(ctx.model.model, utt.features, utt.n_frames, utt.hyp.prompt_ids, utt.hyp.token_ids,
                              ws.backend, ws.dtype, p.device, n, p.spes_batch_size,
                              p.seed, ctx.condition.model, prepared=ws.engine()).to_dict() | {"utterance": utt.utt_id}

    rec = ctx.store.fetch_json(*keys.backend_check(ctx.condition.model_label, ws.backend, ws.dtype), params, compute)
    result = backends.BackendCheck.from_dict(rec)
    say(f"SPES backend {result.backend} ({result.dtype}) for {result.model}: maps vs float32 PyTorch Pearson "
        f"{result.pearson_mean:.4f} per token (lowest {result.pearson_min:.4f}), {result.speedup:.1f}x as fast: "
        f"{'admitted' if result.faithful else 'refused'}")
    return result


class _Candidate:
    """A SPES backend and dtype to try, with its engine made on first use (and kept)."""

    def __init__(self, ctx: Context, profile: Profile) -> None:
        self.ctx, self.profile = ctx, profile
        self.backend, self.dtype = profile.spes_backend, profile.spes_dtype
        self.made: Any = None

    def engine(self) -> Any:
        if self.made is None:
            self.made = kinds.get("SM_X").prepare(self.ctx.model, self.profile)
        return self.made


_ADMITTED = "spes:admitted"


def spes_profile(ctx: Context, utt: Utterance) -> Profile:
    """The profile SPES runs under in this context: the profile's own with ``spes_backend`` and
    ``dtype`` set to the first admitted candidate of :func:`~..explain.backends.candidates`.

    Each candidate other than float32 PyTorch is admitted only by its stored check
    (:func:`admit_backend`, run on ``utt`` the first time). A named backend that is refused stops
    the run (:class:`~..explain.backends.BackendRefused`, with the numbers and the fix); under
    ``spes_backend="auto"`` a refusal is reported and the next candidate tried, down to float32
    PyTorch. Decided once per context; the engine a check prepared is kept for the maps."""
    from ..core.progress import say
    from ..explain import backends

    if _ADMITTED in ctx.prepared:
        return ctx.prepared[_ADMITTED]
    p = ctx.profile
    tried = backends.candidates(p.spes_backend, p.spes_dtype, p.device)
    for i, (backend, dtype) in enumerate(tried):
        cand = _Candidate(ctx, p.with_overrides(spes_backend=backend, dtype=dtype))
        result = admit_backend(ctx, utt, cand)
        if result is not None and not result.faithful:
            if p.spes_backend != "auto" or i == len(tried) - 1:
                backends.require(result)
            nxt = tried[i + 1]
            say(f"SPES backend {backend} ({dtype}) refused for {ctx.condition.model}: trying {nxt[0]} ({nxt[1]})")
            continue
        if cand.made is not None:
            ctx.prepared["spes"] = cand.made
        ctx.prepared[_ADMITTED] = cand.profile
        return cand.profile
    raise AssertionError("unreachable: float32 PyTorch is always admitted")


def engine(ctx: Context, kind: Kind, utt: Utterance | None = None) -> Any:
    """What ``kind.compute`` takes: ``kind.prepare(model, profile)``, made once per context and
    shared by kinds of the same ``engine`` name (SM_X and SM_H share one SPES engine, on the
    backend and dtype :func:`spes_profile` admitted)."""
    name = kind.engine or kind.name
    if name not in ctx.prepared:
        profile = spes_profile(ctx, utt) if kind.engine == "spes" and utt is not None else ctx.profile
        if name not in ctx.prepared:
            ctx.prepared[name] = kind.prepare(ctx.model, profile)
    return ctx.prepared[name]


def _profile_for(ctx: Context, kind: Kind, utt: Utterance) -> Profile:
    return spes_profile(ctx, utt) if kind.engine == "spes" else ctx.profile


def _defaults(kind: Kind, settings: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return kinds.SPES_DEFAULTS if kind.engine == "spes" and "backend" in settings else None


def _pending_siblings(ctx: Context, kind: Kind, utt: Utterance, section: str,
                      settings: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Sibling conditions (same model and audio) whose record of this utterance is not stored yet."""
    if ctx.siblings is None or kind.compute_shared is None:
        return []
    out = []
    for name, h in ctx.siblings(utt):
        path = ctx.store.path(section, keys.utterance(name, utt.utt_id))
        if not h.token_ids or ctx.store.status(path, settings, {"token_ids": [int(t) for t in h.token_ids]},
                                                 _defaults(kind, settings)) == "valid":
            continue
        out.append((name, h))
    return out


def record(ctx: Context, kind: Kind, utt: Utterance, settings: Mapping[str, Any] | None = None,
           section: str | None = None) -> Any:
    """The stored record of ``kind`` for ``utt`` (computed and stored if missing or stale).

    ``settings``: the record's parameters (default: ``kind.settings(profile, utt_id)``);
    ``section``: another store section (default: the kind's own), for variants of a map
    (notebooks 05 and 10); only the kind's own records share passes with sibling conditions.
    """
    p = _profile_for(ctx, kind, utt)
    settings = dict(settings if settings is not None else kind.settings(p, utt.utt_id))
    own = section is None
    sec, key = keys.explanation(section or kind.store_section, ctx.condition.name, utt.utt_id)
    defaults = _defaults(kind, settings)

    def save(rec: Any, path: Any, settings: Mapping[str, Any] = settings) -> None:
        kind.save(rec, path, settings)

    def compute() -> Any:
        eng = engine(ctx, kind, utt)
        pending = _pending_siblings(ctx, kind, utt, sec, settings) if own else []
        if not pending:
            return kind.compute(eng, utt, settings, p)
        # one pass per perturbation for this condition and its siblings on the same audio
        rec, *others = kind.compute_shared(eng, utt, [h for _, h in pending], settings, p)
        for (name, h), r in zip(pending, others):
            ctx.store.fetch(sec, keys.utterance(name, utt.utt_id), settings, lambda r=r: r, save, kind.load,
                            identity=kind.identity_of(h.token_ids), defaults=defaults)
        return rec

    return ctx.store.fetch(sec, key, settings, compute, save, kind.load, identity=kind.identity_of(utt.hyp.token_ids),
                           defaults=defaults)


def explanation(ctx: Context, kind: Kind, utt: Utterance) -> Explanation:
    """The :class:`~..explain.explanation.Explanation` of ``kind`` for ``utt``, from its stored record."""
    return kind.explanation(record(ctx, kind, utt), utt, ctx.model)


def spes_record(ctx: Context, utt: Utterance, grid: str, n_perturbations: int | None = None,
                snapshots: tuple[int, ...] = (), purpose: str = "", run: str = "", seed_tag: str = "",
                settings: Mapping[str, Any] | None = None) -> Any:
    """The stored SPES record (:class:`~..explain.spes_record.SaliencyRecord`) of one utterance:
    SM_X for ``grid="input"``, else SM_H; the study's map by default, or a variant of it for
    ``purpose`` (``"convergence"``, ``"validation"``, ``"sensitivity"``; :func:`.keys.spes_section`)
    with ``n_perturbations``, ``snapshots``, an independent repeat (``seed_tag``: other masks) or
    SPES's own ``settings`` changed (:func:`~..explain.kinds.spes_settings`)."""
    kind = kinds.get("SM_X" if grid == "input" else "SM_H")
    wanted = kinds.spes_settings(spes_profile(ctx, utt), grid, n_perturbations, snapshots, utt_id=utt.utt_id, seed_tag=seed_tag,
                                 settings=settings)
    section = keys.spes_section(grid, purpose, run) if purpose else None
    return record(ctx, kind, utt, wanted, section)


def spes_explanation(ctx: Context, utt: Utterance, name: str, res: Any) -> Explanation:
    """A SPES record as the :class:`~..explain.explanation.Explanation` of kind ``name``."""
    return kinds.spes_explanation(name)(res, utt, ctx.model)


def explain(profile: Profile, cond: Condition, kind_names: Sequence[str] | None = None, n: int | None = None,
            progress: bool = True, utts: list[Utterance] | None = None) -> list[Explained]:
    """Every selected explanation kind (default: the profile's) for the first ``n`` explained
    utterances (default: ``profile.saliency_utterances``), computed once and stored.

    All kinds of one utterance explain the same tokens (checked).
    """
    from ..core.progress import bar as tqdm

    selected = [kinds.get(k) for k in kind_names] if kind_names is not None else kinds.selected(profile)
    n = profile.saliency_utterances if n is None else n
    utts = utts if utts is not None else list(utterances(profile, cond, n, saliency=True))
    ctx = context_for(profile, cond)
    out = []
    bar = tqdm(total=len(utts) * len(selected), desc=f"explain {cond.name}", unit="map", disable=not progress)
    for u in utts:
        maps = {}
        for k in selected:
            bar.set_postfix_str(f"{k.name} · {u.utt_id[-24:]}", refresh=False)
            maps[k.name] = explanation(ctx, k, u)
            bar.update()
        out.append(Explained(u, maps))
    bar.close()
    return out


def cross_attention(profile: Profile, cond: Condition, n: int | None = None,
                    progress: bool = True, utts: list[Utterance] | None = None) -> list[Any]:
    """Cross-attention records (:class:`~..explain.attention.CrossAttention`: layers x heads x
    tokens x positions, with padding mass and entropy) of the first ``n`` utterances, from the
    store; ``utts`` passes prepared utterances."""
    from ..core.progress import bar as tqdm

    ctx = context_for(profile, cond)
    utts = utts if utts is not None else list(utterances(profile, cond, n))
    kind = kinds.get("CA")
    return [record(ctx, kind, u) for u in tqdm(utts, desc=f"cross-attention {cond.name}", disable=not progress,
                                               unit="utt")]


def convergence_runs(profile: Profile, cond: Condition, snapshots: tuple[int, ...] | None = None) -> list[Any]:
    """Long SPES runs on the input (``profile.convergence_budget`` perturbations) with snapshots,
    for the ``profile.convergence_utterances`` shortest explainable utterances (SaliencyResult)."""
    budget = profile.convergence_budget
    if snapshots is None:
        snapshots = tuple(n for n in (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800) if n < budget)
    utts = sorted(utterances(profile, cond, saliency=True), key=lambda u: u.n_frames)[:profile.convergence_utterances]
    ctx = context_for(profile, cond)
    return [spes_record(ctx, u, "input", budget, snapshots, purpose="convergence").replay(u.features) for u in utts]
