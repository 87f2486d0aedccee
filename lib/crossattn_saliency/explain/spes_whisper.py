"""The Whisper adapter of SPES: forward functions, units and results for one utterance.

:class:`WhisperSpes` prepares a private copy of a ``transformers``
``WhisperForConditionalGeneration`` (dtype, device, attention implementation) and
builds the forward functions the model-agnostic engine
(:class:`crossattn_saliency.spes.Spes`) needs: encoder + decoder for SM_X (the
input log-mel spectrogram, ``mel x frames`` = 80 x 3000) and decoder only for SM_H
(the encoder output, ``positions x d_model`` = 1500 x d). The decoder is
teacher-forced on ``prompt + tokens[:-1]``
(:func:`crossattn_saliency.transcribe.teacher_forcing_inputs`).
:func:`spes_input` and :func:`spes_encoder` are the one-call entry points; both
return a :class:`~.spes_record.SaliencyResult`.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np
import torch

from .spes_record import SaliencyResult
from .spes import ForwardFn, Spes, SpesParams, SpesRun, encoder_units, occlusion_value, slic_levels
from ..models.decoding import teacher_forcing_inputs

__all__ = ["WhisperSpes", "prepare", "spes_input", "spes_encoder", "recorded_params", "torch_dtype",
           "DTYPES", "ATTN", "AUTO_ATTN", "BACKENDS", "FAST_ENCODER", "backend_available"]

#: dtypes the perturbation passes can run in (scores are float32 either way)
DTYPES = ("float32", "bfloat16")
#: attention implementations of the perturbation passes
ATTN = ("auto", "eager", "sdpa")
#: attention implementation used for the perturbation passes when ``"auto"``
#: (measured by :mod:`crossattn_saliency.bench`: sdpa is faster on CPU and GPU)
AUTO_ATTN = "sdpa"
#: how the encoder of the perturbation passes runs: ``"torch"`` (eager PyTorch), ``"inductor"``
#: (``torch.compile`` with freezing, static shapes) or ``"openvino"`` (the encoder converted with
#: ``openvino.convert_model``, ``dtype`` as its inference precision). The decoder always runs in
#: PyTorch. A backend is used for results only after :func:`crossattn_saliency.backends.check`
#: found its maps equal to float32 PyTorch's on the same masks.
BACKENDS = ("torch", "inductor", "openvino")
#: whether SM_H's perturbation passes reuse the decoder's cross-attention keys and values computed
#: once per utterance (:class:`_CrossKV`) instead of projecting every perturbed encoder output again;
#: the default of :meth:`WhisperSpes.encoder` / :meth:`WhisperSpes.encoder_forward` (``fast=None``).
#: Both paths give the same scores up to float rounding (tests/test_spes_encoder_fast.py).
FAST_ENCODER = True


def backend_available(backend: str) -> bool:
    """Whether ``backend`` can run here (``"openvino"`` needs the ``openvino`` package)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is invalid: choose one of {list(BACKENDS)}")
    if backend == "openvino":
        import importlib.util

        return importlib.util.find_spec("openvino") is not None
    return True


def recorded_params(params: SpesParams, kind: str, dtype: str, snapshots: Sequence[int]) -> dict[str, Any]:
    """What a :class:`SaliencyResult` records as ``params``: the :class:`SpesParams`
    fields plus ``kind`` (``"input"`` / ``"encoder"``), ``dtype`` and the sorted ``snapshots``."""
    return {**params.to_dict(), "kind": kind, "dtype": dtype, "snapshots": sorted(int(s) for s in snapshots)}


def torch_dtype(dtype: str) -> torch.dtype:
    """The ``torch`` dtype of a :data:`DTYPES` name; a ``ValueError`` naming the choices otherwise."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is invalid: choose one of {list(DTYPES)}")
    return getattr(torch, dtype)


class _Selected(torch.nn.Module):
    """Stands in for a cross-attention ``k_proj`` / ``v_proj`` during one decoder call: returns the
    precomputed projection of the clean encoder output (``kept`` positions) or of the occlusion
    vector (the others) instead of multiplying the perturbed encoder output again.

    The selection is written in the attention's head layout (``batch x heads x positions x
    head_dim``, contiguous) and returned as its ``batch x positions x heads x head_dim`` view, so
    the attention's ``.view(batch, -1, heads, head_dim).transpose(1, 2).contiguous()`` copies
    nothing more (:meth:`_CrossKV.check` verifies the result against the real projections)."""

    def __init__(self, clean: torch.Tensor, occluded: torch.Tensor, heads: int) -> None:
        super().__init__()
        n_pos, d = clean.shape
        self.clean = clean.reshape(n_pos, heads, d // heads).transpose(0, 1).contiguous()  # heads x pos x hd
        self.occluded = occluded.reshape(heads, 1, d // heads)  # heads x 1 x hd
        self.kept: torch.Tensor | None = None  # batch x 1 x positions x 1 (bool), set per call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = self.kept
        if kept is None or x.shape[0] != kept.shape[0] or x.shape[1] != kept.shape[2]:
            raise RuntimeError(f"cross-attention projection of an unexpected input {tuple(x.shape)}")
        return torch.where(kept, self.clean, self.occluded).transpose(1, 2)


class _CrossKV:
    """The decoder's cross-attention keys and values of one utterance, for SM_H's perturbations.

    The key / value projections act on each encoder position separately, so those of a perturbed
    encoder output (every position either the clean ``hidden[p]`` or the occlusion vector ``o``,
    all of whose elements are ``occlusion_value``) are, position by position, those of ``hidden``
    or those of ``o``: ``K(m*h + (1-m)*o) = m*K(h) + (1-m)*K(o)`` (bias included). They are
    computed once here, for ``hidden`` and for ``o``, per decoder layer, and :meth:`decode`
    selects them per perturbation (a selection, not arithmetic: the same values the projections
    give row by row). The masks are read off the perturbed inputs themselves (a position is kept
    iff it equals ``hidden``'s), so the forward function keeps its plain ``hidden -> log-probs``
    contract. An input that is not such a blend (some position neither ``hidden[p]`` nor ``o``)
    runs the full decoder, as does everything else in the decoder (self-attention, queries,
    feed-forward, output projection)."""

    def __init__(self, ws: "WhisperSpes", hidden: torch.Tensor, occlusion_value: float) -> None:
        self.ws = ws
        self.hidden = hidden.to(ws.torch_dtype)  # positions x d
        # the engine writes torch.tensor(occlusion_value, dtype=inputs.dtype): the same rounding here
        self.occ = torch.tensor(float(occlusion_value), dtype=self.hidden.dtype,
                                device=self.hidden.device).expand(self.hidden.shape[-1])
        self.modules: list[tuple[Any, _Selected, _Selected]] = []
        with torch.inference_mode():
            for layer in ws.model.model.decoder.layers:
                attn = layer.encoder_attn
                sel = [_Selected(proj(self.hidden[None])[0], proj(self.occ[None, None])[0, 0], attn.num_heads)
                       for proj in (attn.k_proj, attn.v_proj)]
                self.modules.append((attn, *sel))

    def kept(self, batch: torch.Tensor) -> torch.Tensor | None:
        """``batch x positions`` (bool): positions equal to the clean encoder output's; ``None`` if
        some position is neither that nor the occlusion vector (not a blend: decode in full)."""
        if batch.ndim != 3 or tuple(batch.shape[1:]) != tuple(self.hidden.shape) or batch.dtype != self.hidden.dtype:
            return None
        kept = (batch == self.hidden).all(-1)
        if not bool((kept | (batch == self.occ).all(-1)).all()):
            return None
        return kept

    def check(self, ids: torch.Tensor, start: int) -> bool:
        """Whether the selected keys and values give what the full decoder gives on a blend
        (every other position occluded): a guard against a ``transformers`` whose cross-attention
        uses its projections otherwise. ``False`` (with a warning) sends every input to the full
        decoder."""
        probe = self.hidden.clone()
        probe[1::2] = self.occ
        try:
            with torch.inference_mode():
                want = self.ws._decode(ids, start, probe[None])
                got = self.decode(ids, start, probe[None])
            tol = 1e-4 if self.hidden.dtype == torch.float32 else 5e-2
            ok = bool(torch.allclose(got, want, rtol=tol, atol=tol))
        except Exception as exc:  # noqa: BLE001 - any failure means: use the full decoder
            ok, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = f"max log-prob difference {float((got - want).abs().max()):.3g}"
        if not ok:
            import warnings

            warnings.warn(f"SM_H: precomputed cross-attention keys/values disagree with the full decoder ({why}); "
                          "using the full decoder for every perturbation", RuntimeWarning, stacklevel=3)
        return ok

    def decode(self, ids: torch.Tensor, start: int, batch: torch.Tensor) -> torch.Tensor:
        """:meth:`WhisperSpes._decode` of ``batch`` with the precomputed keys and values."""
        kept = self.kept(batch)
        if kept is None:
            return self.ws._decode(ids, start, batch)
        saved = []
        try:
            for attn, k, v in self.modules:
                k.kept = v.kept = kept[:, None, :, None]
                saved.append((attn, attn.k_proj, attn.v_proj))
                attn.k_proj, attn.v_proj = k, v
            return self.ws._decode(ids, start, batch)
        finally:
            for attn, k_proj, v_proj in saved:
                attn.k_proj, attn.v_proj = k_proj, v_proj
            for _, k, v in self.modules:
                k.kept = v.kept = None


class WhisperSpes:
    """A Whisper model prepared for SPES: a private copy in the requested dtype,
    device and attention implementation (the caller's model is not touched).

    Parameters
    ----------
    model : a ``transformers`` ``WhisperForConditionalGeneration``.
    dtype : ``"float32"`` or ``"bfloat16"`` (scores are computed in float32 either way).
    device : torch device string.
    attn_implementation : ``"auto"`` (:data:`AUTO_ATTN`), ``"eager"`` or ``"sdpa"``;
        attention weights are not needed for the perturbation passes.
    backend : how the encoder runs (:data:`BACKENDS`); the decoder runs in PyTorch.
    """

    def __init__(self, model: Any, dtype: str = "bfloat16", device: str = "cpu",
                 attn_implementation: str = "auto", backend: str = "torch") -> None:
        if attn_implementation not in ATTN:
            raise ValueError(f"attn_implementation={attn_implementation!r} is invalid: choose one of {list(ATTN)}")
        if not backend_available(backend):
            raise ImportError(f"backend={backend!r} needs the {backend} package: pip install {backend} "
                              "(see requirements.txt), or use backend='torch'")
        if backend == "openvino" and not str(device).startswith("cpu"):
            raise ValueError(f"backend='openvino' runs on the CPU here, not on {device!r}: use backend='torch'")
        tdt = torch_dtype(dtype)
        if not (hasattr(model, "model") and hasattr(model.model, "encoder") and hasattr(model, "proj_out")):
            raise TypeError(f"expected a transformers WhisperForConditionalGeneration, got {type(model).__name__}")
        attn = AUTO_ATTN if attn_implementation == "auto" else attn_implementation
        self.model = copy.deepcopy(model).to(device=device, dtype=tdt).eval()
        self.model.set_attn_implementation(attn)
        self.dtype, self.device, self.attn_implementation = dtype, str(device), attn
        self.torch_dtype = tdt
        self.backend = backend
        self._compiled: Any = None

    # -- the encoder, by backend -----------------------------------------------------------------

    def _encode_batch(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder output ``batch x positions x d_model`` (in :attr:`torch_dtype`) of ``batch x mel x frames``."""
        if self.backend == "torch":
            return self.model.model.encoder(features.to(self.torch_dtype)).last_hidden_state
        if self._compiled is None:
            self._compiled = self._compile_encoder()
        return self._compiled(features)

    def _compile_encoder(self) -> Any:
        encoder = self.model.model.encoder
        if self.backend == "inductor":
            fn = torch.compile(encoder, dynamic=False, options={"freezing": True})
            return lambda x: fn(x.to(self.torch_dtype)).last_hidden_state
        import openvino as ov

        class _Encoder(torch.nn.Module):
            def __init__(self, enc: Any) -> None:
                super().__init__()
                self.enc = enc

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.enc(x).last_hidden_state

        n_mel, n_fr = self.model.config.num_mel_bins, 2 * self.model.config.max_source_positions
        fp32 = copy.deepcopy(encoder).float().eval()  # converted from float32 weights; precision set below
        example = torch.zeros(1, n_mel, n_fr)
        with torch.no_grad():
            graph = ov.convert_model(_Encoder(fp32), example_input=example,
                                     input=[ov.PartialShape([-1, n_mel, n_fr])])
        del fp32
        precision = "bf16" if self.dtype == "bfloat16" else "f32"
        compiled = ov.Core().compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                          "PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_NUM_THREADS": str(torch.get_num_threads())})
        request = compiled.create_infer_request()

        def run(x: torch.Tensor) -> torch.Tensor:
            out = request.infer({0: x.float().cpu().numpy()})[0]
            return torch.from_numpy(np.array(out)).to(self.torch_dtype)

        return run

    # -- forward functions -------------------------------------------------------------------

    def _decode(self, ids: torch.Tensor, start: int, hidden: torch.Tensor) -> torch.Tensor:
        out = self.model.model.decoder(input_ids=ids.expand(hidden.shape[0], -1), encoder_hidden_states=hidden,
                                       use_cache=False)
        logits = self.model.proj_out(out.last_hidden_state[:, start:])
        return torch.log_softmax(logits.float(), dim=-1)

    def input_forward(self, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> ForwardFn:
        """``features (batch x mel x frames) -> log-probs (batch x tokens x vocab)``, encoder + decoder
        (:meth:`shared_input_forward` of one hypothesis)."""
        return self.shared_input_forward([(prompt_ids, token_ids)])

    def shared_input_forward(self, hypotheses: Sequence[tuple[Sequence[int], Sequence[int]]]) -> ForwardFn:
        """``features (batch x mel x frames) -> log-probs (batch x sum of tokens x vocab)``: the encoder
        runs once per input and the decoder once per hypothesis ``(prompt_ids, token_ids)`` on the same
        encoder output; the hypotheses' tokens are concatenated in order. For ASR and translation of
        the same audio (one mask, one encoder pass, one decoder pass per condition)."""
        prepared = []
        for prompt_ids, token_ids in hypotheses:
            ids, start = teacher_forcing_inputs(prompt_ids, token_ids)
            prepared.append((torch.tensor([ids], dtype=torch.long, device=self.device), start))

        def f(features: torch.Tensor) -> torch.Tensor:
            hidden = self._encode_batch(features)
            return torch.cat([self._decode(ids_t, start, hidden) for ids_t, start in prepared], dim=1)

        return f

    def encoder_forward(self, prompt_ids: Sequence[int], token_ids: Sequence[int],
                        clean: torch.Tensor | None = None, occlusion_value: float = 0.0,
                        fast: bool | None = None) -> ForwardFn:
        """``encoder output (batch x positions x d_model) -> log-probs (batch x tokens x vocab)``, decoder only.

        With ``clean`` (the unperturbed encoder output, ``positions x d_model``) and ``fast``
        (default :data:`FAST_ENCODER`), inputs whose every position is either ``clean``'s or
        ``occlusion_value`` throughout (SPES's perturbations of ``clean``) reuse the cross-attention
        keys and values of ``clean`` and of the occlusion vector, computed once (:class:`_CrossKV`);
        other inputs, and every input without ``clean`` or with ``fast=False``, run the full decoder."""
        ids, start = teacher_forcing_inputs(prompt_ids, token_ids)
        ids_t = torch.tensor([ids], dtype=torch.long, device=self.device)
        fast = FAST_ENCODER if fast is None else bool(fast)
        cross = _CrossKV(self, clean, occlusion_value) if fast and clean is not None else None
        if cross is not None and not cross.check(ids_t, start):
            cross = None

        def f(hidden: torch.Tensor) -> torch.Tensor:
            hidden = hidden.to(self.torch_dtype)
            if cross is not None:
                return cross.decode(ids_t, start, hidden)
            return self._decode(ids_t, start, hidden)

        return f

    def encode(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Encoder output ``positions x d_model`` (1500 x d for Whisper) of one ``mel x frames`` input
        (always eager PyTorch: SM_H's starting point does not depend on the backend)."""
        with torch.inference_mode():
            x = self._features(features)[None].to(self.torch_dtype)
            return self.model.model.encoder(x).last_hidden_state[0]

    def _features(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(features, dtype=np.float32) if not torch.is_tensor(features)
                            else features.float())
        n_mel = self.model.config.num_mel_bins
        n_fr = 2 * self.model.config.max_source_positions
        if tuple(x.shape) != (n_mel, n_fr):
            raise ValueError(f"features must be mel x frames = ({n_mel}, {n_fr}) as Whisper's feature extractor "
                             f"gives (padded to 30 s), got {tuple(x.shape)}")
        return x.to(self.device)

    def _speech(self, features: np.ndarray | torch.Tensor, n_frames: int) -> tuple[torch.Tensor, int]:
        """Checked features (``mel x frames`` on the device) and the count of speech frames."""
        x = self._features(features)
        n_frames = int(n_frames)
        if not 1 <= n_frames <= x.shape[1]:
            raise ValueError(f"n_frames={n_frames} must lie in 1..{x.shape[1]} (speech frames of the input)")
        return x, n_frames

    # -- SPES -----------------------------------------------------------------------------

    @staticmethod
    def _engine(forward_fn: ForwardFn, params: SpesParams) -> Spes:
        if not isinstance(params, SpesParams):
            raise TypeError(f"params must be a SpesParams, got {type(params).__name__}")
        return Spes(forward_fn, scorer=params.scorer, batch_size=params.batch_size)

    def input(self, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
              token_ids: Sequence[int], params: SpesParams, snapshots: Sequence[int] = (),
              progress: bool = True) -> SaliencyResult:
        """SM_X; see :func:`spes_input`."""
        return self.input_shared(features, n_frames, [(prompt_ids, token_ids)], params, snapshots, progress)[0]

    def input_shared(self, features: np.ndarray | torch.Tensor, n_frames: int,
                     hypotheses: Sequence[tuple[Sequence[int], Sequence[int]]], params: SpesParams,
                     snapshots: Sequence[int] = (), progress: bool = True) -> list[SaliencyResult]:
        """SM_X of several hypotheses of the same input (e.g. ASR and translation of one clip) from
        one set of perturbation passes: every mask is encoded once and decoded once per hypothesis
        (:meth:`shared_input_forward`). Each result equals that of a separate :meth:`input` run with
        the same parameters (same masks, same per-token scores)."""
        if not hypotheses:
            raise ValueError("hypotheses is empty: pass at least one (prompt_ids, token_ids) pair")
        x, n_frames = self._speech(features, n_frames)
        engine = self._engine(self.shared_input_forward(hypotheses), params)
        spec = x[:, :n_frames].T.cpu().numpy()  # frames x mel
        levels = slic_levels(spec, params)
        grids = []
        for lab in levels:
            g = np.full(tuple(x.shape), -1, dtype=np.int64)
            g[:, :n_frames] = lab.T
            grids.append(g)
        occ = occlusion_value(x.cpu().numpy(), n_frames, params.occlusion)
        targets = [int(t) for _, tok in hypotheses for t in tok]
        run = engine.attribute(x, grids, occlusion_value=occ, n_perturbations=params.n_perturbations,
                               p_occlude=params.p_occlude, seed=params.seed, snapshots=snapshots,
                               targets=targets, progress=progress, desc="SPES SM_X")
        out, start = [], 0
        for prompt_ids, token_ids in hypotheses:
            rows = slice(start, start + len(token_ids))
            start += len(token_ids)
            out.append(self._result(run, levels, params, "input", snapshots, token_ids, prompt_ids, n_frames, occ,
                                    rows=rows, shared_by=len(hypotheses)))
        return out

    def encoder(self, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
                token_ids: Sequence[int], params: SpesParams, snapshots: Sequence[int] = (),
                progress: bool = True, fast: bool | None = None) -> SaliencyResult:
        """SM_H; see :func:`spes_encoder`. ``fast`` (default :data:`FAST_ENCODER`): the decoder reuses
        the cross-attention keys and values computed once (:meth:`encoder_forward`); same scores."""
        x, n_frames = self._speech(features, n_frames)
        hidden = self.encode(x)
        occ = 0.0  # SM_H's occlusion value (params.occlusion is SM_X's)
        engine = self._engine(self.encoder_forward(prompt_ids, token_ids, clean=hidden, occlusion_value=occ,
                                                   fast=fast), params)
        n_pos = min(math.ceil(n_frames / 2), hidden.shape[0])
        units = encoder_units(n_pos, params.run_length)
        grid = np.full((hidden.shape[0], 1), -1, dtype=np.int64)
        grid[:n_pos, 0] = units
        run = engine.attribute(hidden, [grid], occlusion_value=occ, n_perturbations=params.n_perturbations,
                               p_occlude=params.p_occlude, seed=params.seed, snapshots=snapshots,
                               targets=list(token_ids), progress=progress, desc="SPES SM_H")
        return self._result(run, [units], params, "encoder", snapshots, token_ids, prompt_ids, n_frames, occ)

    def _result(self, run: SpesRun, labels: list[np.ndarray], params: SpesParams, kind: str,
                snapshots: Sequence[int], token_ids: Sequence[int], prompt_ids: Sequence[int],
                n_frames: int, occ: float, rows: slice = slice(None), shared_by: int = 1) -> SaliencyResult:
        """The result of the tokens ``rows`` of a run (all of them unless the run explained
        several hypotheses at once)."""
        full, a, b, den = (m[rows] if i < 3 else m for i, m in enumerate(run.final.cell_maps(labels)))
        snaps = {}
        for n in sorted({int(s) for s in snapshots}):
            f_, a_, b_, _ = run.stats[n].cell_maps(labels)
            snaps[n] = (f_[rows], a_[rows], b_[rows])
        info = {"batch_size": params.batch_size, "device": self.device,
                "attn_implementation": self.attn_implementation, **{k: float(v) for k, v in run.timing.items()}}
        if shared_by > 1:  # the timings are those of the shared run
            info["shared_by"] = int(shared_by)
        return SaliencyResult(scores=full, half_a=a, half_b=b, counts=den.sum(0), half_counts=den,
                              n_perturbations=params.n_perturbations,
                              params=recorded_params(params, kind, self.dtype, snapshots), kind=kind, snapshots=snaps,
                              token_ids=[int(t) for t in token_ids], prompt_ids=[int(t) for t in prompt_ids],
                              n_frames=n_frames, occlusion_value=float(occ), n_segments=list(run.n_segments),
                              info=info, perturbation_scores=run.scores[:, rows].astype(np.float32),
                              labels=[np.asarray(l, dtype=np.int32) for l in labels])


def prepare(model: Any, dtype: str = "bfloat16", device: str = "cpu",
            attn_implementation: str = "auto") -> WhisperSpes:
    """``model`` as a :class:`WhisperSpes`: a raw ``WhisperForConditionalGeneration`` is
    copied and prepared; a prepared one is returned as is if it runs in ``dtype``
    (``ValueError`` otherwise; its device and attention are kept)."""
    if isinstance(model, WhisperSpes):
        if model.dtype != dtype:
            raise ValueError(f"the prepared model runs in {model.dtype}, but dtype={dtype!r} was asked: "
                             "prepare another WhisperSpes or pass the raw model")
        return model
    return WhisperSpes(model, dtype=dtype, device=device, attn_implementation=attn_implementation)


def spes_input(model: Any, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
               token_ids: Sequence[int], params: SpesParams | None = None, dtype: str = "bfloat16",
               device: str = "cpu", snapshots: Sequence[int] = (), progress: bool = True,
               attn_implementation: str = "auto") -> SaliencyResult:
    """SPES saliency of one utterance's input spectrogram (SM_X).

    Parameters
    ----------
    model : ``WhisperForConditionalGeneration`` (copied, cast to ``dtype``, moved to
        ``device``) or a prepared :class:`WhisperSpes`.
    features : ``mel x frames`` = ``(80, 3000)`` log-mel features as Whisper's
        feature extractor gives them.
    n_frames : speech frames (the rest is padding and is never occluded).
    prompt_ids : decoder prompt (context, not explained).
    token_ids : the model's hypothesis, ending with ``<|endoftext|>`` (I tokens).
    params : :class:`SpesParams` (default: the study's settings).
    dtype, device : where and how the perturbation passes run.
    snapshots : also return the maps after the first ``n`` perturbations.
    progress : show a progress bar.

    Returns
    -------
    :class:`SaliencyResult` with maps ``tokens x frames x mel`` (``I x n_frames x 80``).
    """
    params = params or SpesParams()
    return prepare(model, dtype, device, attn_implementation).input(
        features, n_frames, prompt_ids, token_ids, params, snapshots=snapshots, progress=progress)


def spes_encoder(model: Any, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
                 token_ids: Sequence[int], params: SpesParams | None = None, dtype: str = "bfloat16",
                 device: str = "cpu", snapshots: Sequence[int] = (), progress: bool = True,
                 attn_implementation: str = "auto") -> SaliencyResult:
    """SPES saliency of one utterance's encoder output (SM_H).

    The encoder runs once; its speech positions (``ceil(n_frames / 2)`` of 1500)
    are occluded (set to 0) singly or in runs of ``params.run_length``, and only
    the decoder runs per perturbation. Arguments as in :func:`spes_input`.

    Returns
    -------
    :class:`SaliencyResult` with maps ``tokens x enc_frames`` (``I x ceil(n_frames/2)``).
    """
    params = params or SpesParams()
    return prepare(model, dtype, device, attn_implementation).encoder(
        features, n_frames, prompt_ids, token_ids, params, snapshots=snapshots, progress=progress)
