"""Cross-attention: extraction by forced decoding, cropping, aggregation, storage.

For each generated token, every decoder layer l and head h distributes attention
over the encoder's time positions: CA(l, h) = softmax(Q K^T / sqrt(d_k)). One
forced-decoding pass over the model's own hypothesis gives all of it at once.

Whisper's encoder always sees a 30 s window (1500 positions of 20 ms); only the
first ceil(n_frames / 2) positions hold real audio. :class:`CrossAttention` keeps
the weights on those positions, plus, for every (layer, head, token), the mass
that fell on padding and the entropy of the full row, so nothing about the full
rows is lost for the attention-sink summary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core import files
from ..evaluate.views import View
from ..models.loading import LoadedModel
from ..models.decoding import Hypothesis, teacher_forcing_inputs

@dataclass
class CrossAttention:
    """Cross-attention of one utterance on the model's own hypothesis.

    Attributes
    ----------
    weights : ``layers x heads x tokens x enc_frames`` float32, the raw softmax
        weights on the speech positions only (rows sum to ``1 - pad_mass``).
    pad_mass : ``layers x heads x tokens``, attention mass on padding positions.
    entropy : ``layers x heads x tokens``, entropy (nats) of each full 1500-position row.
    token_ids, tokens : the explained tokens (prompt excluded) and their text.
    seconds_per_position : 0.02 for Whisper (10 ms hop x subsampling 2).
    """

    utt_id: str
    model: str
    token_ids: list[int]
    tokens: list[str]
    weights: np.ndarray
    pad_mass: np.ndarray
    entropy: np.ndarray
    n_frames: int
    seconds_per_position: float
    alignment_heads: list[tuple[int, int]]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        L, H, I, T = self.weights.shape
        if self.pad_mass.shape != (L, H, I) or self.entropy.shape != (L, H, I):
            raise ValueError(f"pad_mass {self.pad_mass.shape} / entropy {self.entropy.shape} "
                             f"do not match weights {self.weights.shape}")
        if len(self.tokens) != I or len(self.token_ids) != I:
            raise ValueError(f"{len(self.tokens)} tokens but weights have {I} token rows")

    @property
    def n_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def n_heads(self) -> int:
        return self.weights.shape[1]

    @property
    def times(self) -> np.ndarray:
        """Start time (s) of each encoder position on the speech part."""
        return np.arange(self.weights.shape[-1]) * self.seconds_per_position

    def renormalized(self) -> "CrossAttention":
        """Rows rescaled to sum to 1 over the speech positions (padding mass removed)."""
        w = self.weights / np.clip(1.0 - self.pad_mass[..., None], 1e-12, None)
        return replace(self, weights=w.astype(np.float32), params={**self.params, "renormalized": True})

    def drop_last_token(self) -> "CrossAttention":
        """Without the final token (usually <|endoftext|>)."""
        return replace(self, token_ids=self.token_ids[:-1], tokens=self.tokens[:-1],
                       weights=self.weights[:, :, :-1], pad_mass=self.pad_mass[:, :, :-1],
                       entropy=self.entropy[:, :, :-1])

    def aggregate(self, view: View | None = None) -> np.ndarray:
        """Plain mean over the view's (layer, head) pairs (default all layers and heads):
        ``tokens x enc_frames``."""
        pairs = (view or View("all")).pairs(self.n_layers, self.n_heads, self.alignment_heads)
        return self.weights[[p[0] for p in pairs], [p[1] for p in pairs]].mean(axis=0)

    def save(self, path: str | Path) -> Path:
        meta = {k: getattr(self, k) for k in ("utt_id", "model", "token_ids", "tokens", "n_frames",
                                              "seconds_per_position", "alignment_heads", "params")}
        return files.write_npz(path, meta, weights=self.weights.astype(np.float16),
                               pad_mass=self.pad_mass.astype(np.float32), entropy=self.entropy.astype(np.float32))

    @classmethod
    def load(cls, path: str | Path) -> "CrossAttention":
        arrays, meta = files.read_npz(path)
        meta["alignment_heads"] = [tuple(x) for x in meta["alignment_heads"]]
        return cls(weights=arrays["weights"].astype(np.float32), pad_mass=arrays["pad_mass"],
                   entropy=arrays["entropy"], **meta)


def forced_decoding(loaded: LoadedModel, feats: np.ndarray, hyp: Hypothesis,
                    output_attentions: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """One teacher-forced pass over ``prompt + hypothesis``
    (decoder input from :func:`crossattn_saliency.transcribe.teacher_forcing_inputs`).

    Returns
    -------
    logits : ``tokens x vocab`` float32, the logits that predict each hypothesis token.
    cross : ``layers x heads x tokens x 1500`` float32 full cross-attention rows
        (``None`` if ``output_attentions`` is False).
    """
    import torch

    model = loaded.model
    ids, start = teacher_forcing_inputs(hyp.prompt_ids, hyp.token_ids)
    dec_in = torch.tensor([ids], device=model.device)
    x = torch.as_tensor(feats, dtype=model.dtype, device=model.device)[None]
    with torch.inference_mode():
        out = model(input_features=x, decoder_input_ids=dec_in, output_attentions=output_attentions,
                    use_cache=False)
    sl = slice(start, start + len(hyp.token_ids))
    logits = out.logits[0, sl].float().cpu().numpy()
    if not output_attentions:
        return logits, None
    if out.cross_attentions is None:
        raise RuntimeError("the model returned no cross-attentions; load it with attn_implementation='eager'")
    cross = torch.stack([a[0, :, sl] for a in out.cross_attentions]).float().cpu().numpy()
    return logits, cross


def extract(loaded: LoadedModel, feats: np.ndarray, hyp: Hypothesis) -> CrossAttention:
    """Cross-attention of every layer and head for the model's own hypothesis.

    ``feats`` is ``mel x frames`` (80 x 3000). The decoder prompt is context and is
    not explained; the final <|endoftext|> is kept (drop it with
    :meth:`CrossAttention.drop_last_token`).
    """
    _, cross = forced_decoding(loaded, feats, hyp)
    return from_rows(loaded, hyp, cross, {"renormalized": False,
                                          "dtype": str(loaded.model.dtype).replace("torch.", "")})


def from_rows(loaded: LoadedModel, hyp: Hypothesis, rows: np.ndarray, params: dict[str, Any]) -> CrossAttention:
    """A :class:`CrossAttention` from full rows ``layers x heads x tokens x 1500`` (each summing
    to 1): the speech positions kept, the padding mass and the entropy of each full row recorded."""
    from ..models.decoding import token_strings

    t_speech = int(math.ceil(hyp.n_frames / loaded.info.subsampling))
    entropy = -(rows * np.log(np.clip(rows.astype(np.float64), 1e-30, None))).sum(-1)
    return CrossAttention(
        utt_id=hyp.utt_id, model=loaded.name, token_ids=list(hyp.token_ids),
        tokens=token_strings(loaded, hyp.token_ids),
        weights=rows[..., :t_speech].astype(np.float32),
        pad_mass=rows[..., t_speech:].sum(-1).astype(np.float32),
        entropy=entropy.astype(np.float32), n_frames=hyp.n_frames,
        seconds_per_position=loaded.info.seconds_per_encoder_position,
        alignment_heads=[tuple(h) for h in loaded.info.alignment_heads],
        params=dict(params),
    )


def attention_summary(cas: Sequence[CrossAttention], first_positions: int = 5) -> "Any":
    """Where attention mass goes, per layer: a ``pandas.DataFrame`` with columns
    ``layer``, ``pad_mass`` (share on padding), ``first_mass`` (share on the first
    ``first_positions`` encoder positions, ~0.1 s), ``entropy`` (nats, full rows) and
    ``max_weight`` (mean over rows of the largest weight), averaged over heads,
    tokens and utterances.
    """
    import pandas as pd

    rows = []
    for ca in cas:
        for l in range(ca.n_layers):
            rows.append({
                "utt_id": ca.utt_id, "layer": l,
                "pad_mass": float(ca.pad_mass[l].mean()),
                "first_mass": float(ca.weights[l, :, :, :first_positions].sum(-1).mean()),
                "entropy": float(ca.entropy[l].mean()),
                "max_weight": float(ca.weights[l].max(-1).mean()),
            })
    df = pd.DataFrame(rows)
    return df.groupby("layer")[["pad_mass", "first_mass", "entropy", "max_weight"]].mean().reset_index()
