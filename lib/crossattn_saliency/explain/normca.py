"""Norm-weighted cross-attention (Kobayashi et al. 2020, "Attention is not only a weight").

A head's output at decoder position i is ``sum_j alpha_ij f_h(e_j)`` (plus the
out_proj bias, which does not depend on j), with ``e_j`` the encoder output at
position j and ``f_h(e) = W_O^h (W_V^h e + b_V^h)`` the value vector of head h
mapped through the head's column slice of ``out_proj``. Kobayashi et al. measure
how much position j contributes by the norm of its summand,
``|| alpha_ij f_h(e_j) || = alpha_ij || f_h(e_j) ||`` (``alpha >= 0``), instead of
by ``alpha_ij`` alone.

The module holds the model-free product (:func:`norm_weighted`), the per-head
value norms of a Whisper decoder (:func:`value_norms`), the full norm-weighted
rows of one utterance (:func:`norm_weighted_rows`) and the
:class:`~crossattn_saliency.attention.CrossAttention` built from them
(:func:`norm_weighted_attention`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .attention import CrossAttention, from_rows
from ..models.loading import LoadedModel
from ..models.decoding import Hypothesis, teacher_forcing_inputs

__all__ = ["norm_weighted", "value_norms", "norm_weighted_rows", "norm_weighted_attention"]


def norm_weighted(alpha: np.ndarray, value_norms: np.ndarray) -> np.ndarray:
    """``alpha_ij * ||f(e_j)||``: attention weights scaled by the norm of what they pick up.

    Parameters
    ----------
    alpha : ``... x tokens x positions`` attention weights (``>= 0``), e.g.
        ``layers x heads x tokens x 1500``.
    value_norms : ``... x positions`` norms ``||W_O^h (W_V^h e_j + b_V^h)||`` with
        the same leading axes as ``alpha`` (or broadcastable to them), e.g.
        ``layers x heads x 1500``.

    Returns
    -------
    ``alpha.shape`` float32 (units of the model's hidden state).
    """
    alpha = np.asarray(alpha, dtype=np.float32)
    norms = np.asarray(value_norms, dtype=np.float32)
    if alpha.ndim < 2 or norms.ndim < 1 or norms.shape[-1] != alpha.shape[-1]:
        raise ValueError(f"alpha must be ... x tokens x positions and value_norms ... x positions with the "
                         f"same number of positions, got {alpha.shape} and {norms.shape}")
    if np.any(norms < 0):
        raise ValueError("value_norms must be >= 0 (they are vector norms)")
    try:
        return (alpha * norms[..., None, :]).astype(np.float32)
    except ValueError as exc:
        raise ValueError(f"value_norms {norms.shape} does not broadcast to alpha {alpha.shape} "
                         "(leading axes must match, e.g. layers x heads)") from exc


def value_norms(model: Any, encoder_hidden: Any) -> np.ndarray:
    """Per-head norms of the transformed value vectors of every decoder layer.

    Parameters
    ----------
    model : a transformers ``WhisperForConditionalGeneration``.
    encoder_hidden : ``positions x d_model`` encoder output (numpy or torch).

    Returns
    -------
    ``layers x heads x positions`` float32:
    ``||W_O^h (W_V^h e_j + b_V^h)||_2`` per decoder layer's cross-attention, with
    ``W_V^h``/``b_V^h`` head h's rows of ``v_proj`` and ``W_O^h`` head h's
    columns of ``out_proj`` (its bias excluded). Computed in float32.
    """
    import torch

    e = torch.as_tensor(np.asarray(encoder_hidden, dtype=np.float32) if not torch.is_tensor(encoder_hidden)
                        else encoder_hidden.detach().float().cpu())
    if e.ndim != 2:
        raise ValueError(f"encoder_hidden must be positions x d_model, got shape {tuple(e.shape)}")
    out = []
    with torch.no_grad():
        for layer in model.model.decoder.layers:
            attn = layer.encoder_attn
            n_heads, d_head = attn.num_heads, attn.head_dim
            w_v = attn.v_proj.weight.detach().float().cpu()
            b_v = attn.v_proj.bias.detach().float().cpu() if attn.v_proj.bias is not None else None
            v = torch.nn.functional.linear(e, w_v, b_v).view(e.shape[0], n_heads, d_head)   # T x H x dh
            w_o = attn.out_proj.weight.detach().float().cpu().view(-1, n_heads, d_head)     # d x H x dh
            f = torch.einsum("thk,dhk->htd", v, w_o)                                         # H x T x d
            out.append(torch.linalg.vector_norm(f, dim=-1))
    return torch.stack(out).numpy().astype(np.float32)


def norm_weighted_rows(loaded: LoadedModel, feats: np.ndarray, hyp: Hypothesis) -> tuple[np.ndarray, np.ndarray]:
    """One teacher-forced pass: plain and norm-weighted full cross-attention rows.

    Parameters
    ----------
    loaded : the model (eager attention, as :func:`~crossattn_saliency.models.load_model` gives it).
    feats : ``mel x frames`` (80 x 3000) features.
    hyp : the hypothesis to explain (prompt excluded from the rows).

    Returns
    -------
    alpha : ``layers x heads x tokens x 1500`` float32 softmax weights.
    weighted : ``layers x heads x tokens x 1500`` float32 ``alpha_ij ||f_h(e_j)||``
        (not normalised).
    """
    import torch

    model = loaded.model
    ids, start = teacher_forcing_inputs(hyp.prompt_ids, hyp.token_ids)
    x = torch.as_tensor(np.asarray(feats), dtype=model.dtype, device=model.device)[None]
    dec_in = torch.tensor([ids], device=model.device)
    with torch.inference_mode():
        out = model(input_features=x, decoder_input_ids=dec_in, output_attentions=True, use_cache=False)
    if out.cross_attentions is None:
        raise RuntimeError("the model returned no cross-attentions; load it with attn_implementation='eager'")
    sl = slice(start, start + len(hyp.token_ids))
    alpha = torch.stack([a[0, :, sl] for a in out.cross_attentions]).float().cpu().numpy()
    norms = value_norms(model, out.encoder_last_hidden_state[0])
    return alpha, norm_weighted(alpha, norms)


def norm_weighted_attention(loaded: LoadedModel, feats: np.ndarray, hyp: Hypothesis) -> CrossAttention:
    """Norm-weighted cross-attention of every layer and head, as a :class:`CrossAttention`.

    Each full 1500-position row ``alpha_ij ||f_h(e_j)||`` is normalised to sum to 1
    (the share of the row's total norm mass at each position); ``weights`` are
    those shares on the speech positions (``layers x heads x tokens x
    ceil(n_frames / 2)``), ``pad_mass`` the share on padding and ``entropy`` (nats)
    that of the normalised full row, so ``weights.sum(-1) + pad_mass == 1`` as for
    plain cross-attention and :meth:`CrossAttention.renormalized` works the same.
    The unnormalised rows are :func:`norm_weighted_rows`. The prompt is context;
    the final <|endoftext|> is kept.
    """
    _, raw = norm_weighted_rows(loaded, feats, hyp)
    total = raw.astype(np.float64).sum(-1, keepdims=True)
    rows = raw / np.clip(total, 1e-30, None)
    return from_rows(loaded, hyp, rows, {"kind": "norm_weighted", "renormalized": False, "normalized_rows": True,
                                         "dtype": str(loaded.model.dtype).replace("torch.", "")})
