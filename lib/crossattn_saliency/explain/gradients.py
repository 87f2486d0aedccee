"""Gradient saliency per output token with captum: input x gradient and integrated gradients.

The explained quantity of token i is its log-probability ``log P(y_i | y_<i, X)``
under teacher forcing on the model's own hypothesis (decoder input from
:func:`~crossattn_saliency.transcribe.teacher_forcing_inputs`). Two grids, as for
SPES (:mod:`crossattn_saliency.spes`):

* the input log-mel spectrogram (:func:`input_gradients`, ``tokens x frames x
  mel`` on the speech frames, the grid of SM_X);
* the encoder output (:func:`encoder_gradients`, ``tokens x positions`` on the
  speech positions, attributions summed over the model dimension, the grid of SM_H).

Attributions are **signed** (positive: the cell raises the token's
log-probability relative to the baseline), in log-probability units (nats) per
cell. Integrated gradients start from the value SPES occludes with: the
utterance's floor value ``features.max() - 2.0`` on the speech frames of the
input, 0 on the speech positions of the encoder output; padding cells keep their
own values in the baseline (SPES never occludes them either), so their
attribution is 0 and, by completeness, the maps sum to ``log P(y_i | x) -
log P(y_i | baseline)`` (captum's Gauss-Legendre rule, ``n_steps`` points).

The model-agnostic core is :func:`attribute_tokens`.

Cost: one backward pass per token and integration point, through the whole
encoder (30 s window) for the input grid, through the decoder only for the
encoder grid. On a 2-core AVX2 CPU (5.3 s clip, 19-20 tokens, float32) input x
gradient took ~0.5-1 min (tiny.en) / ~3.5 min (base) on the input grid and
~0.5 min on the encoder grid; integrated gradients cost ``n_steps`` times that.
``bfloat16`` is 4-8x slower on such CPUs (no native bf16) and gives the same maps
(Pearson >= 0.998); ``engine="batched"`` is 1.3-1.6x faster than captum's loop.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..models.decoding import teacher_forcing_inputs

__all__ = ["METHODS", "ENGINES", "attribute_tokens", "GradientModel", "input_gradients", "encoder_gradients"]

METHODS = ("input_x_gradient", "integrated_gradients")
ENGINES = ("captum", "batched")
DTYPES = ("float32", "bfloat16")

#: ``batch x *input_shape -> batch x tokens`` scalars (one explained quantity per token)
TokenFn = Callable[[torch.Tensor], torch.Tensor]


def _check_method(method: str, engine: str = "captum") -> None:
    if method not in METHODS:
        raise ValueError(f"unknown gradient method {method!r}: choose one of {list(METHODS)}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {list(ENGINES)}")


def attribute_tokens(forward_fn: TokenFn, inputs: torch.Tensor, n_tokens: int,
                     method: str = "input_x_gradient", baseline: float | torch.Tensor = 0.0,
                     n_steps: int = 16, internal_batch_size: int = 8, engine: str = "captum") -> torch.Tensor:
    """Attribution of each of ``n_tokens`` scalar outputs to every cell of one input.

    Parameters
    ----------
    forward_fn : maps a batch ``batch x *inputs.shape`` to ``batch x n_tokens`` scalars.
    inputs : one example (no batch axis), any shape.
    n_tokens : number of outputs to explain (columns of ``forward_fn``'s result).
    method : ``"input_x_gradient"`` (captum ``InputXGradient``: ``x * d out_t / dx``)
        or ``"integrated_gradients"`` (captum ``IntegratedGradients``, Gauss-Legendre).
    baseline : integrated gradients' starting point: a float (every cell) or a
        tensor of ``inputs.shape``; ignored by input x gradient.
    n_steps : integration points of integrated gradients.
    internal_batch_size : examples per forward/backward pass (tokens, or token x
        integration point pairs); bounds memory, does not change the result.
    engine : ``"captum"`` (captum's attribute, one forward per token and point) or
        ``"batched"`` (one forward per chunk of points shared by all tokens, the
        per-token gradients as one batched vector-Jacobian product; captum's own
        integration rule, so the same maps up to float rounding, and faster).

    Returns
    -------
    ``n_tokens x *inputs.shape`` float32 tensor (on ``inputs.device``), signed.
    """
    _check_method(method, engine)
    if int(n_tokens) < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    if int(internal_batch_size) < 1 or int(n_steps) < 1:
        raise ValueError(f"n_steps and internal_batch_size must be >= 1, got {n_steps}, {internal_batch_size}")
    x = inputs.detach()
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    if engine == "batched":
        return _batched(forward_fn, x, int(n_tokens), method, base, int(n_steps), int(internal_batch_size))
    from captum.attr import InputXGradient, IntegratedGradients

    ibs = int(internal_batch_size)
    explainer = IntegratedGradients(forward_fn) if method == "integrated_gradients" else InputXGradient(forward_fn)
    out = []
    for lo in range(0, int(n_tokens), ibs):
        targets = list(range(lo, min(lo + ibs, int(n_tokens))))
        batch = x[None].repeat(len(targets), *([1] * x.ndim))
        if method == "integrated_gradients":
            attr = explainer.attribute(batch, baselines=base[None].repeat(len(targets), *([1] * x.ndim)),
                                       target=targets, n_steps=int(n_steps), internal_batch_size=ibs)
        else:
            attr = explainer.attribute(batch.requires_grad_(), target=targets)
        out.append(attr.detach().float())
    return torch.cat(out)


def _batched(forward_fn: TokenFn, x: torch.Tensor, n_tokens: int, method: str, base: torch.Tensor,
             n_steps: int, ibs: int) -> torch.Tensor:
    """The ``"batched"`` engine of :func:`attribute_tokens` (same arguments, validated)."""
    if method == "integrated_gradients":
        nodes, w_gl = np.polynomial.legendre.leggauss(n_steps)   # captum's "gausslegendre" rule on [0, 1]
        weights, points = (0.5 * w_gl).tolist(), (0.5 * (1 + nodes)).tolist()
        start = base
    else:
        weights, points, start = [1.0], [1.0], torch.zeros_like(x)
    shape = (-1,) + (1,) * x.ndim
    total = torch.zeros((n_tokens,) + tuple(x.shape), dtype=torch.float32, device=x.device)
    n_pts = max(1, min(len(points), ibs // n_tokens))          # points per forward
    for lo in range(0, len(points), n_pts):
        a = torch.tensor(points[lo:lo + n_pts], dtype=x.dtype, device=x.device).view(shape)
        w = torch.tensor(weights[lo:lo + n_pts], dtype=torch.float32, device=x.device).view(shape)
        pts = (start + a * (x - start)).requires_grad_()
        y = forward_fn(pts)                                      # points x tokens
        per = max(1, ibs // pts.shape[0])                        # tokens per batched backward
        for t0 in range(0, n_tokens, per):
            t1 = min(t0 + per, n_tokens)
            cot = torch.zeros((t1 - t0,) + tuple(y.shape), dtype=y.dtype, device=y.device)
            cot[torch.arange(t1 - t0), :, torch.arange(t0, t1)] = 1.0
            (g,) = torch.autograd.grad(y, pts, cot, is_grads_batched=True, retain_graph=t1 < n_tokens)
            total[t0:t1] += (g.float() * w).sum(1)
    return total * (x - start).float()


class GradientModel:
    """A Whisper model prepared for gradients: a private copy in ``dtype`` on
    ``device``, eval mode, parameters frozen (the caller's model is not touched).

    Parameters
    ----------
    model : a transformers ``WhisperForConditionalGeneration``.
    dtype : ``"float32"`` or ``"bfloat16"`` (the passes; attributions are float32).
    device : where the passes run.
    """

    def __init__(self, model: Any, dtype: str = "float32", device: str = "cpu") -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is invalid: choose one of {list(DTYPES)}")
        if not (hasattr(model, "model") and hasattr(model.model, "encoder") and hasattr(model, "proj_out")):
            raise TypeError(f"expected a transformers WhisperForConditionalGeneration, got {type(model).__name__}")
        self.torch_dtype = getattr(torch, dtype)
        self.dtype, self.device = dtype, str(device)
        self.model = copy.deepcopy(model).to(device=device, dtype=self.torch_dtype).eval()
        self.model.requires_grad_(False)
        self.model.set_attn_implementation("sdpa")

    def features(self, features: np.ndarray | torch.Tensor, n_frames: int) -> torch.Tensor:
        """``mel x frames`` float32 features on the device, shape and ``n_frames`` checked."""
        x = features.detach().float() if torch.is_tensor(features) else \
            torch.as_tensor(np.asarray(features, dtype=np.float32))
        shape = (self.model.config.num_mel_bins, 2 * self.model.config.max_source_positions)
        if tuple(x.shape) != shape:
            raise ValueError(f"features must be mel x frames = {shape} as Whisper's feature extractor gives "
                             f"them (padded to 30 s), got {tuple(x.shape)}")
        if not 1 <= int(n_frames) <= shape[1]:
            raise ValueError(f"n_frames={n_frames} must lie in 1..{shape[1]} (speech frames of the input)")
        return x.to(self.device)

    def _log_probs(self, ids: Sequence[int], start: int, token_ids: Sequence[int]) -> TokenFn:
        ids_t = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        tgt = torch.tensor([int(t) for t in token_ids], dtype=torch.long, device=self.device)

        def decode(hidden: torch.Tensor) -> torch.Tensor:
            out = self.model.model.decoder(input_ids=ids_t.expand(hidden.shape[0], -1),
                                           encoder_hidden_states=hidden, use_cache=False)
            logits = self.model.proj_out(out.last_hidden_state[:, start:start + len(tgt)]).float()
            logp = torch.log_softmax(logits, dim=-1)
            return logp.gather(-1, tgt[None, :, None].expand(hidden.shape[0], -1, 1))[..., 0]

        return decode

    def input_fn(self, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> TokenFn:
        """``features (batch x mel x frames) -> log P(y_i) (batch x tokens)``, encoder + decoder."""
        decode = self._log_probs(*teacher_forcing_inputs(prompt_ids, token_ids), token_ids)
        return lambda x: decode(self.model.model.encoder(x.to(self.torch_dtype)).last_hidden_state)

    def encoder_fn(self, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> TokenFn:
        """``encoder output (batch x positions x d_model) -> log P(y_i) (batch x tokens)``, decoder only."""
        decode = self._log_probs(*teacher_forcing_inputs(prompt_ids, token_ids), token_ids)
        return lambda h: decode(h.to(self.torch_dtype))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output ``positions x d_model`` (float32) of one ``mel x frames`` input."""
        with torch.no_grad():
            return self.model.model.encoder(x[None].to(self.torch_dtype)).last_hidden_state[0].float()


def _prepare(model: Any, dtype: str, device: str) -> GradientModel:
    if isinstance(model, GradientModel):
        if model.dtype != dtype or model.device != str(device):
            raise ValueError(f"the prepared model runs in {model.dtype} on {model.device}, not {dtype} on "
                             f"{device}: prepare another GradientModel or pass the raw model")
        return model
    return GradientModel(model, dtype=dtype, device=device)


def input_gradients(model: Any, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
                    token_ids: Sequence[int], method: str = "input_x_gradient", n_steps: int = 16,
                    internal_batch_size: int = 8, dtype: str = "float32", device: str = "cpu",
                    engine: str = "captum") -> np.ndarray:
    """Gradient saliency of every hypothesis token on the input spectrogram (SM_X's grid).

    Parameters
    ----------
    model : ``WhisperForConditionalGeneration`` (copied; cast to ``dtype``; moved
        to ``device``) or a prepared :class:`GradientModel`.
    features : ``mel x frames`` = ``(80, 3000)`` log-mel features.
    n_frames : speech frames (1..3000).
    prompt_ids, token_ids : decoder prompt (context) and the I hypothesis tokens.
    method, n_steps, internal_batch_size, engine : see :func:`attribute_tokens`.
    dtype, device : where and how the passes run.

    Returns
    -------
    ``I x n_frames x mel`` float32, signed, nats per cell. The integrated-gradients
    baseline is :func:`~crossattn_saliency.spes.floor_value` on the speech frames.
    """
    from .spes import floor_value

    _check_method(method, engine)
    teacher_forcing_inputs(prompt_ids, token_ids)  # clear errors before the model is copied
    gm = _prepare(model, dtype, device)
    x = gm.features(features, n_frames)
    n = int(n_frames)
    base = x.clone()
    base[:, :n] = floor_value(x.cpu().numpy())
    attr = attribute_tokens(gm.input_fn(prompt_ids, token_ids), x, len(token_ids), method, base,
                            n_steps, internal_batch_size, engine)
    return attr[:, :, :n].transpose(1, 2).cpu().numpy().astype(np.float32)


def encoder_gradients(model: Any, features: np.ndarray | torch.Tensor, n_frames: int, prompt_ids: Sequence[int],
                      token_ids: Sequence[int], method: str = "input_x_gradient", n_steps: int = 16,
                      internal_batch_size: int = 8, dtype: str = "float32", device: str = "cpu",
                      engine: str = "captum") -> np.ndarray:
    """Gradient saliency of every hypothesis token on the encoder output (SM_H's grid).

    The encoder runs once; only the decoder is differentiated. Arguments as in
    :func:`input_gradients`; the integrated-gradients baseline is 0 (SM_H's
    occlusion value) on the speech positions.

    Returns
    -------
    ``I x ceil(n_frames / 2)`` float32, signed, attributions summed over the
    model dimension (nats per position).
    """
    _check_method(method, engine)
    teacher_forcing_inputs(prompt_ids, token_ids)
    gm = _prepare(model, dtype, device)
    hidden = gm.encode(gm.features(features, n_frames))
    n_pos = min(math.ceil(int(n_frames) / 2), hidden.shape[0])
    base = hidden.clone()
    base[:n_pos] = 0.0
    attr = attribute_tokens(gm.encoder_fn(prompt_ids, token_ids), hidden, len(token_ids), method, base,
                            n_steps, internal_batch_size, engine)
    return attr[:, :n_pos].sum(-1).cpu().numpy().astype(np.float32)
