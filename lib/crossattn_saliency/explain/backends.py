"""Backends of SPES's perturbation passes, and the check that admits one for results.

A backend (:data:`~.spes_whisper.BACKENDS`) is how the encoder of a perturbation pass
runs: eager PyTorch, ``torch.compile`` (inductor, frozen weights, static shapes) or
OpenVINO (the encoder converted once with ``openvino.convert_model``). The decoder always
runs in PyTorch. Faster is only useful if the maps stay the maps: :func:`check` runs SPES
on one real utterance twice with the same masks, once in float32 eager PyTorch (the
reference) and once with the backend in its dtype, and compares the per-token z-scored maps
(:func:`map_agreement`). A backend is *faithful* when their Pearson correlation is at least
:data:`MIN_MEAN` on average over tokens and at least :data:`MIN_TOKEN` for every token;
:func:`require` refuses an unfaithful one with the numbers and the way out.

Measured on the embedded models (``results/bench/backends.md``): bfloat16 maps agree with
float32 at 0.997-0.999 on average per token, with single tokens down to 0.98 (a token whose
KL scores are tiny, so that rounding is a larger share of them); hence the two thresholds.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..core.config import Profile
from ..evaluate import correlate

__all__ = ["MIN_MEAN", "MIN_TOKEN", "CHECK_PERTURBATIONS", "BackendCheck", "BackendRefused", "resolve",
           "map_agreement", "check", "require"]

#: a faithful backend's maps correlate with float32 PyTorch's at least this much, on average over tokens
MIN_MEAN = 0.99
#: ... and at least this much for every token
MIN_TOKEN = 0.95
#: perturbations of a check (the same masks for the reference and the backend): the profile's default
#: (``Profile.backend_check_perturbations``, which the pipeline passes)
CHECK_PERTURBATIONS = Profile.backend_check_perturbations


class BackendRefused(RuntimeError):
    """A backend's maps differ from float32 PyTorch's on the same masks."""


@dataclass(frozen=True)
class BackendCheck:
    """The outcome of :func:`check` for one model, backend and dtype.

    ``pearson_mean`` / ``pearson_min``: per-token Pearson correlation of the z-scored maps
    with the float32 PyTorch maps (mean over tokens, lowest token); ``seconds_reference`` /
    ``seconds_backend``: wall time of the two runs' perturbation loops (the backend's after
    one warm-up batch, which compiles it).
    """

    model: str
    backend: str
    dtype: str
    n_perturbations: int
    n_tokens: int
    pearson_mean: float
    pearson_min: float
    seconds_reference: float
    seconds_backend: float

    @property
    def faithful(self) -> bool:
        return self.pearson_mean >= MIN_MEAN and self.pearson_min >= MIN_TOKEN

    @property
    def speedup(self) -> float:
        """How many times faster the backend's loop ran than float32 PyTorch's."""
        return self.seconds_reference / self.seconds_backend if self.seconds_backend > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "faithful": self.faithful}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BackendCheck":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def resolve(backend: str, device: str = "cpu") -> str:
    """The backend a profile's ``spes_backend`` names here: ``"auto"`` is ``"openvino"`` on a CPU
    where the ``openvino`` package is installed, ``"torch"`` elsewhere; other names as they are
    (checked against :data:`~.spes_whisper.BACKENDS`)."""
    from .spes_whisper import BACKENDS, backend_available

    if backend == "auto":
        cpu = str(device).startswith("cpu")
        return "openvino" if cpu and backend_available("openvino") else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"spes_backend={backend!r} is invalid: choose 'auto' or one of {list(BACKENDS)}")
    return backend


def map_agreement(maps_a: np.ndarray, maps_b: np.ndarray) -> dict[str, float]:
    """How alike two runs' maps are after per-token z-scoring (``correlate.normalize(maps, "token_z")``).

    Parameters
    ----------
    maps_a, maps_b : ``tokens x ...`` maps of the same utterance and masks (e.g.
        float32 and bfloat16 SM_X, ``tokens x frames x mel``).

    Returns
    -------
    ``pearson_all`` (all cells of all tokens at once; with every token z-scored this equals the
    mean of the per-token values), ``pearson_per_token_mean`` and ``pearson_per_token_min``
    (one Pearson correlation per token; NaN for a constant token).
    """
    za, zb = correlate.normalize(maps_a, "token_z"), correlate.normalize(maps_b, "token_z")
    per_tok = [correlate.correlation(a, b, "pearson") for a, b in zip(za, zb)]
    return {"pearson_all": correlate.correlation(za, zb, "pearson"),
            "pearson_per_token_mean": float(np.mean(per_tok)), "pearson_per_token_min": float(np.min(per_tok))}


def check(model: Any, features: np.ndarray, n_frames: int, prompt_ids: Sequence[int], token_ids: Sequence[int],
          backend: str, dtype: str, device: str = "cpu", n_perturbations: int = CHECK_PERTURBATIONS,
          batch_size: int = 16, seed: int = 0, model_name: str = "", prepared: Any = None) -> BackendCheck:
    """SM_X of one utterance with float32 eager PyTorch and with ``backend`` in ``dtype``, on the
    same masks (``n_perturbations``, ``seed``), and how alike the maps are.

    Parameters
    ----------
    model : ``WhisperForConditionalGeneration`` (copied, never changed).
    features, n_frames, prompt_ids, token_ids : one utterance (``mel x frames`` features, speech
        frames, decoder prompt, hypothesis), as for :func:`~.spes_whisper.spes_input`.
    prepared : an already prepared :class:`~.spes_whisper.WhisperSpes` of ``backend`` / ``dtype``
        (reused, so the backend is compiled once).
    """
    from .spes import SpesParams
    from .spes_whisper import WhisperSpes

    params = SpesParams(n_perturbations=int(n_perturbations), batch_size=int(batch_size), seed=int(seed))
    args = (features, n_frames, prompt_ids, token_ids)
    reference = WhisperSpes(model, dtype="float32", device=device, backend="torch")
    ref = reference.input(*args, params, progress=False)
    del reference
    ws = prepared if prepared is not None else WhisperSpes(model, dtype=dtype, device=device, backend=backend)
    ws.input(*args, params.replace(n_perturbations=min(batch_size, n_perturbations)), progress=False)  # warm-up
    t0 = time.perf_counter()
    res = ws.input(*args, params, progress=False)
    t_backend = time.perf_counter() - t0
    agree = map_agreement(ref.scores, res.scores)
    return BackendCheck(model=model_name, backend=backend, dtype=dtype, n_perturbations=int(n_perturbations),
                        n_tokens=len(token_ids), pearson_mean=agree["pearson_per_token_mean"],
                        pearson_min=agree["pearson_per_token_min"],
                        seconds_reference=float(ref.info["setup_s"] + ref.info["loop_s"]),
                        seconds_backend=float(t_backend))


def require(result: BackendCheck) -> BackendCheck:
    """``result`` if the backend is faithful, else :class:`BackendRefused` naming the numbers and the fix."""
    if not result.faithful:
        fix = ("set the profile's dtype='float32', or spes_backend='auto' to fall back to the next faithful backend"
               if result.backend == "torch" else
               "set the profile's spes_backend='auto' (falls back to the next faithful backend), "
               "spes_backend='torch', or dtype='float32'")
        raise BackendRefused(
            f"SPES backend {result.backend!r} in {result.dtype} is not faithful for {result.model or 'this model'}: "
            f"its maps correlate with float32 PyTorch's on the same {result.n_perturbations} masks at "
            f"{result.pearson_mean:.4f} per token on average (needs >= {MIN_MEAN}) and {result.pearson_min:.4f} "
            f"for the worst token (needs >= {MIN_TOKEN}). To go on, {fix}.")
    return result


#: the backends ``spes_backend="auto"`` tries on a CPU, in order, each in the profile's dtype; float32
#: PyTorch (the reference, never refused) comes last
AUTO_ORDER = ("openvino", "inductor", "torch")


def candidates(backend: str, dtype: str, device: str = "cpu") -> list[tuple[str, str]]:
    """The ``(backend, dtype)`` pairs a run tries for SPES, in order, until one is admitted.

    A named ``backend`` is the only candidate (a refusal stops the run). ``"auto"`` starts at
    :func:`resolve`'s choice and falls back through the rest of :data:`AUTO_ORDER` that can run
    here (OpenVINO only on a CPU), in ``dtype``, then to float32 PyTorch."""
    from .spes_whisper import backend_available

    first = resolve(backend, device)
    if backend != "auto":
        return [(first, dtype)]
    cpu = str(device).startswith("cpu")
    order = AUTO_ORDER[AUTO_ORDER.index(first):] if cpu else ("torch",)
    out = [(b, dtype) for b in order if backend_available(b)] + [("torch", "float32")]
    return list(dict.fromkeys(out))
