"""Trivial, model-blind baselines on the encoder grid: what a map scores without the model.

A correlation of 0.5 with SPES reads differently if a map that knows nothing of the model already
scores 0.4. The three baselines here are computed from the utterance alone (its length, its token
count and its log-mel features), with no forward pass: their ``compute`` ignores the engine it is
given (``None`` works) and never touches a model.

All three live on the **encoder** grid, ``tokens x positions`` (``T' = ceil(n_frames / 2)`` speech
positions of 20 ms, :func:`~..evaluate.grids.encoder_length`, the count cross-attention keeps), and
follow the cross-attention token convention: a record has one row per token of the *whole*
hypothesis, ``<|endoftext|>`` included, and :meth:`~.explanation.Explanation.from_hypothesis` drops
the last row. ``I`` below is the number of *explained* tokens, ``len(token_ids) - 1``; the dropped
end-of-text row is the same formula at ``i = I``.

* :func:`diagonal` (``Diagonal``): a monotone alignment prior. Token ``i`` (0-based, of ``I``) is a
  Gaussian over the position centres ``t = p + 0.5`` (``p = 0 .. T'-1``) with mean
  ``mu_i = (i + 0.5) / I * T'`` and standard deviation ``sd = T' / I`` (the one width rule: the
  speech length divided by the number of explained tokens, i.e. one token's share of the speech),
  each row normalised to sum 1 over the speech positions.
* :func:`energy` (``Energy``): the mean log-mel of each encoder position, i.e. the mean over its
  two 10 ms input frames (one at the end of an odd-length utterance) and all mel bins of
  ``features[:, :n_frames]`` (:func:`~..evaluate.grids.reduce_to_encoder_grid` with ``"mean2d"``);
  the same row for every token.
* :func:`diagonal_energy` (``DiagonalEnergy``): ``Diagonal * (Energy - min(Energy))``, the energy
  shifted so that the quietest speech position of the utterance is 0 (non-negative, scale kept); a
  flat energy (``max == min``) gives the Diagonal itself. Not renormalised.

:data:`SETTINGS` names each rule (with a version) so that their records are keyed by it.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..evaluate import grids
from ..evaluate.margins import TRIVIAL_BASELINES
from .explanation import Explanation, Provenance

if TYPE_CHECKING:
    from ..core.config import Profile
    from ..models.decoding import Utterance
    from ..models.loading import LoadedModel

__all__ = ["NAMES", "SETTINGS", "diagonal", "energy_profile", "energy", "diagonal_energy", "MAPS", "maps_of", "compute",
           "explanation", "to_explanation"]

#: the baseline kinds' names (:data:`~..evaluate.margins.TRIVIAL_BASELINES`)
NAMES: tuple[str, ...] = TRIVIAL_BASELINES

#: the parameters of each baseline's record: the rule that makes it (and its version)
SETTINGS: dict[str, dict[str, Any]] = {
    "Diagonal": {"rule": "gaussian over position centres p+0.5, mean (i+0.5)/I*T', sd = T'/I, rows sum 1",
                 "grid": "encoder", "version": 1},
    "Energy": {"rule": "mean log-mel over each position's 2 input frames x all mel bins, same row for every token",
               "grid": "encoder", "version": 1},
    "DiagonalEnergy": {"rule": "Diagonal * (Energy - min Energy over speech positions); flat energy -> Diagonal",
                       "grid": "encoder", "version": 1},
}


def _n_positions(n_frames: int) -> int:
    if int(n_frames) < 1:
        raise ValueError(f"need at least one speech frame, got n_frames={n_frames}")
    return grids.encoder_length(int(n_frames))


def diagonal(n_tokens: int, n_frames: int) -> np.ndarray:
    """The Diagonal rows of a hypothesis of ``n_tokens`` tokens (``<|endoftext|>`` included) over
    ``n_frames`` speech frames: ``n_tokens x T'`` float64, row ``i`` a Gaussian over the position
    centres ``p + 0.5`` with mean ``(i + 0.5) / I * T'`` and sd ``T' / I``, ``I = n_tokens - 1`` the
    explained tokens (``max(I, 1)`` for a hypothesis of end-of-text alone), each row summing to 1."""
    if int(n_tokens) < 1:
        raise ValueError(f"the hypothesis has no tokens (n_tokens={n_tokens})")
    t = _n_positions(n_frames)
    i_expl = max(int(n_tokens) - 1, 1)
    centres = (np.arange(int(n_tokens), dtype=np.float64) + 0.5) / i_expl * t  # n_tokens
    sd = t / i_expl
    pos = np.arange(t, dtype=np.float64) + 0.5  # T'
    g = np.exp(-0.5 * ((pos[None, :] - centres[:, None]) / sd) ** 2)  # n_tokens x T'
    s = g.sum(axis=1, keepdims=True)
    # a centre far beyond the speech (only ever the dropped end-of-text row) can underflow: uniform then
    return np.where(s > 0, g / np.where(s > 0, s, 1.0), 1.0 / t)


def energy_profile(features: np.ndarray, n_frames: int) -> np.ndarray:
    """``T'`` float64: the mean log-mel of each encoder position of ``features`` (``mel x frames``),
    over its input frames (2, or 1 at an odd end) and all mel bins of the speech part."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be mel x frames, got shape {f.shape}")
    n = int(n_frames)
    if n < 1 or n > f.shape[1]:
        raise ValueError(f"n_frames={n_frames} does not fit features of {f.shape[1]} frames")
    return grids.reduce_to_encoder_grid(f[:, :n].T, "mean2d")


def energy(features: np.ndarray, n_frames: int, n_tokens: int) -> np.ndarray:
    """The Energy rows: :func:`energy_profile` repeated for each of ``n_tokens`` tokens (``n_tokens x T'``)."""
    if int(n_tokens) < 1:
        raise ValueError(f"the hypothesis has no tokens (n_tokens={n_tokens})")
    e = energy_profile(features, n_frames)
    return np.repeat(e[None, :], int(n_tokens), axis=0)


def diagonal_energy(features: np.ndarray, n_frames: int, n_tokens: int) -> np.ndarray:
    """The DiagonalEnergy rows: ``diagonal * (energy - min energy)`` (``n_tokens x T'``); a flat
    energy profile (``max == min``) leaves the Diagonal as it is."""
    e = energy_profile(features, n_frames)
    shifted = e - e.min()
    if not np.any(shifted > 0):
        shifted = np.ones_like(e)
    return diagonal(n_tokens, n_frames) * shifted[None, :]


#: name -> maps(utt) over the whole hypothesis (``len(token_ids) x T'``, end-of-text row last)
MAPS = {
    "Diagonal": lambda u: diagonal(len(u.hyp.token_ids), u.n_frames),
    "Energy": lambda u: energy(u.features, u.n_frames, len(u.hyp.token_ids)),
    "DiagonalEnergy": lambda u: diagonal_energy(u.features, u.n_frames, len(u.hyp.token_ids)),
}


def maps_of(name: str, utt: "Utterance") -> np.ndarray:
    """One baseline's maps over ``utt``'s whole hypothesis (end-of-text row last), float32."""
    if name not in MAPS:
        raise KeyError(f"unknown baseline {name!r}; have {list(MAPS)}")
    return MAPS[name](utt).astype(np.float32)


def compute(name: str) -> Any:
    """The kind's ``compute(engine, utt, settings, profile)``: ``(arrays, meta)`` like a gradient
    record, from the utterance alone (``engine`` and ``profile`` are not used; pass ``None``); its
    ``info`` records the seconds it took (the cost table reads them) and zero forward passes."""
    def run(engine: Any, utt: "Utterance", settings: Mapping[str, Any], profile: "Profile") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        t0 = time.perf_counter()
        maps = maps_of(name, utt)
        meta = {"token_ids": [int(t) for t in utt.hyp.token_ids], "n_frames": int(utt.n_frames),
                "params": dict(settings),
                "info": {"seconds": time.perf_counter() - t0, "device": "cpu", "forward_passes": 0}}
        return {"maps": maps}, meta
    return run


def to_explanation(name: str, record: Any, utt: "Utterance", tokens: Sequence[str] | None = None,
                   eot_id: int | None = None, model: str = "") -> Explanation:
    """A baseline record as its :class:`~.explanation.Explanation` (end-of-text row dropped);
    without ``tokens`` the token ids stand for their text (no tokenizer needed)."""
    arrays, meta = record
    ids = [int(t) for t in meta["token_ids"]]
    toks = list(tokens) if tokens is not None else [str(t) for t in ids]
    return Explanation.from_hypothesis(
        name, utt.utt_id, ids, toks, "encoder", arrays["maps"], meta["n_frames"], eot_id=eot_id,
        provenance=Provenance(model=model, kind=name, params=dict(meta.get("params") or SETTINGS[name]),
                              info=dict(meta.get("info") or {})))


def explanation(name: str) -> Any:
    """The kind's ``explanation(record, utt, model)``: the model is read only for its tokenizer
    (token text) and end-of-text id, as for every other kind."""
    def make(record: Any, utt: "Utterance", loaded: "LoadedModel") -> Explanation:
        from ..models.decoding import token_strings

        _, meta = record
        return to_explanation(name, record, utt, token_strings(loaded, meta["token_ids"]),
                              loaded.special_ids["eot"], loaded.name)
    return make
