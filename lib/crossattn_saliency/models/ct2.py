"""Reader of CTranslate2 Whisper models: the ``model.bin`` binary format and its tensor names.

CTranslate2 stores a model as one ``model.bin`` (binary version 6, little-endian):
a spec name, a revision, named variables (rank, dims, dtype code, raw bytes) and
aliases. :func:`read_ct2_model` parses it into a :class:`Ct2Model` without the
``ctranslate2`` runtime; :func:`ct2_to_transformers_state` maps a Whisper spec's
variables onto ``transformers`` ``WhisperForConditionalGeneration`` parameter
names (float32 arrays), and :func:`unaccounted_variables` lists what was neither
mapped nor a known scalar setting (:data:`SCALAR_SETTINGS`). Model discovery,
conversion and loading are in :mod:`crossattn_saliency.models`.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ModelError", "CorruptModelFile", "Ct2Model", "read_ct2_model", "ct2_to_transformers_state",
           "unaccounted_variables", "n_layers", "SCALAR_SETTINGS"]


class ModelError(RuntimeError):
    """A model cannot be found, read or converted; the message says how to fix it."""


class CorruptModelFile(ModelError):
    """A CTranslate2 ``model.bin`` is truncated or not in the expected format."""


# --------------------------------------------------------------------------- CTranslate2 reader

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_CT2_BF16 = 5


@dataclass
class Ct2Model:
    """Contents of a CTranslate2 ``model.bin``.

    ``variables`` maps names (``encoder/layer_0/ffn/linear_0/weight``) to arrays in
    their stored dtype; rank-0 variables are scalars (``encoder/num_heads``).
    ``aliases`` maps an alias name to the variable it points to.
    """

    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        """The variable ``name`` or the one it is an alias of."""
        return self.variables[self.aliases.get(name, name)]


def read_ct2_model(data: bytes | bytearray | memoryview, source: str = "model.bin") -> Ct2Model:
    """Parse a CTranslate2 binary model (version 6, little-endian).

    Parameters
    ----------
    data : the whole file's bytes (parts of a split file concatenated in order).
    source : a name for error messages.

    Raises
    ------
    CorruptModelFile : if the bytes are truncated, have trailing garbage, an
        unsupported version or an unknown dtype code.
    """
    buf = memoryview(data)
    pos = 0

    def take(n: int) -> memoryview:
        nonlocal pos
        if pos + n > len(buf):
            raise CorruptModelFile(
                f"{source}: truncated at byte {pos} (needed {n} more bytes of {len(buf)}); "
                "the file is incomplete or corrupt: reinstall the model package (make setup)")
        out = buf[pos:pos + n]
        pos += n
        return out

    def u(fmt: str) -> int:
        return struct.unpack("<" + fmt, take(struct.calcsize("<" + fmt)))[0]

    def string() -> str:
        n = u("H")
        raw = bytes(take(n))
        if n == 0 or raw[-1] != 0:
            raise CorruptModelFile(f"{source}: malformed string at byte {pos - n}")
        return raw[:-1].decode("utf-8")

    version = u("I")
    if version != 6:
        raise CorruptModelFile(f"{source}: unsupported CTranslate2 binary version {version} (expected 6)")
    spec = string()
    revision = u("I")
    n_vars = u("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = string()
        rank = u("B")
        dims = tuple(u("I") for _ in range(rank))
        code = u("B")
        nbytes = u("I")
        raw = take(nbytes)
        if code == _CT2_BF16:
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif code in _CT2_DTYPES:
            arr = np.frombuffer(raw, dtype=_CT2_DTYPES[code])
        else:
            raise CorruptModelFile(f"{source}: variable {name!r} has unknown dtype code {code}")
        expected = int(np.prod(dims)) if rank else 1
        if arr.size != expected:
            raise CorruptModelFile(
                f"{source}: variable {name!r} holds {arr.size} values but its shape {dims} needs {expected}")
        variables[name] = arr.reshape(dims) if rank else arr.reshape(())
    aliases = {}
    for _ in range(u("I")):
        alias = string()
        aliases[alias] = string()
    if pos != len(buf):
        raise CorruptModelFile(f"{source}: {len(buf) - pos} unexpected trailing bytes")
    return Ct2Model(version, spec, revision, variables, aliases)


# --------------------------------------------------------------------------- name mapping

_LAYER_RE = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


def n_layers(ct2: Ct2Model, side: str) -> int:
    """Number of ``layer_<i>`` blocks on one side (``"encoder"`` or ``"decoder"``); 0 if none."""
    ids = {int(m.group(2)) for n in ct2.variables if (m := _LAYER_RE.match(n)) and m.group(1) == side}
    return max(ids) + 1 if ids else 0


def ct2_to_transformers_state(ct2: Ct2Model) -> tuple[dict[str, np.ndarray], set[str]]:
    """Map CTranslate2 Whisper tensors onto ``transformers`` parameter names.

    Returns
    -------
    state : parameter name -> float32 array (what ``WhisperForConditionalGeneration``
        expects, without the tied ``proj_out.weight``).
    used : the CTranslate2 variable names that were consumed (for accounting).
    """
    state: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def var(name: str) -> np.ndarray:
        real = ct2.aliases.get(name, name)
        if real not in ct2.variables:
            raise ModelError(f"CTranslate2 model lacks variable {name!r}; is it a Whisper model?")
        used.add(real)
        return np.asarray(ct2.variables[real], dtype=np.float32)

    def linear(dst: str, src: str, bias: bool = True) -> None:
        state[f"{dst}.weight"] = var(f"{src}/weight")
        if bias:
            state[f"{dst}.bias"] = var(f"{src}/bias")

    def norm(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = var(f"{src}/gamma")
        state[f"{dst}.bias"] = var(f"{src}/beta")

    def split(src: str, dsts: Sequence[str]) -> None:
        w, b = var(f"{src}/weight"), var(f"{src}/bias")
        n = len(dsts)
        for part, (wp, bp) in zip(dsts, zip(np.split(w, n, axis=0), np.split(b, n, axis=0))):
            state[f"{part}.weight"] = wp
            if not part.endswith("k_proj"):  # transformers' Whisper k projections have no bias
                state[f"{part}.bias"] = bp
            elif np.any(bp != 0):
                raise ModelError(f"{src}: non-zero key bias cannot be represented in transformers Whisper")

    for side in ("encoder", "decoder"):
        p = f"model.{side}"
        state[f"{p}.embed_positions.weight"] = var(f"{side}/position_encodings/encodings")
        norm(f"{p}.layer_norm", f"{side}/layer_norm")
        for i in range(n_layers(ct2, side)):
            s, d = f"{side}/layer_{i}", f"{p}.layers.{i}"
            norm(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
            split(f"{s}/self_attention/linear_0", [f"{d}.self_attn.{x}_proj" for x in "qkv"])
            linear(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
            norm(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
            linear(f"{d}.fc1", f"{s}/ffn/linear_0")
            linear(f"{d}.fc2", f"{s}/ffn/linear_1")
            if side == "decoder":
                norm(f"{d}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
                linear(f"{d}.encoder_attn.q_proj", f"{s}/attention/linear_0")
                split(f"{s}/attention/linear_1", [f"{d}.encoder_attn.{x}_proj" for x in "kv"])
                linear(f"{d}.encoder_attn.out_proj", f"{s}/attention/linear_2")
    linear("model.encoder.conv1", "encoder/conv1")
    linear("model.encoder.conv2", "encoder/conv2")
    state["model.decoder.embed_tokens.weight"] = var("decoder/embeddings/weight")
    var("decoder/projection/weight")  # alias of the embeddings: the tied output layer
    return state, used


#: rank-0 settings of the CTranslate2 spec; they become config values, not tensors
SCALAR_SETTINGS = {"encoder/num_heads", "decoder/num_heads", "decoder/activation", "decoder/alibi",
                   "decoder/alignment_heads", "decoder/alignment_layer", "decoder/pre_norm",
                   "decoder/scale_embeddings", "decoder/start_from_zero_embedding"}


def unaccounted_variables(ct2: Ct2Model, used: set[str]) -> list[str]:
    """CTranslate2 variables that are neither mapped tensors nor known scalar settings."""
    return sorted(n for n in ct2.variables if n not in used and n not in SCALAR_SETTINGS)
