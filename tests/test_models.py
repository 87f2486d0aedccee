"""Models: CTranslate2 reader and name mapping (ct2.py); conversion, loading, errors (models.py).
Unit tests on tiny models."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from crossattn_saliency.models import ct2, loading


# --------------------------------------------------------------------------- a hand-made writer


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


_CODES = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3,
          np.dtype(np.float16): 4}


def write_ct2(variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None,
              version: int = 6, spec: str = "WhisperSpec") -> bytes:
    """Serialise variables in the CTranslate2 binary layout (written from the format description)."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.asarray(arr)
        out += [_string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape),
                struct.pack("<B", _CODES[arr.dtype]), struct.pack("<I", arr.nbytes), arr.tobytes()]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for a, t in aliases.items():
        out += [_string(a), _string(t)]
    return b"".join(out)


def test_reader_on_hand_made_file():
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    raw = write_ct2({"a/weight": w, "a/num_heads": np.array(4, dtype=np.int8),
                     "b": np.array([1.5, -2], dtype=np.float32)}, {"c/weight": "a/weight"})
    m = ct2.read_ct2_model(raw)
    assert (m.version, m.spec) == (6, "WhisperSpec")
    np.testing.assert_array_equal(m.variables["a/weight"], w)
    assert m.variables["a/weight"].dtype == np.float16 and m.variables["a/weight"].shape == (2, 3)
    assert int(m.variables["a/num_heads"]) == 4 and m.variables["a/num_heads"].shape == ()
    np.testing.assert_array_equal(m.get("c/weight"), w)
    np.testing.assert_array_equal(m.variables["b"], [1.5, -2])


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-7], "truncated"),
    (lambda raw: raw + b"xx", "trailing"),
    (lambda raw: struct.pack("<I", 5) + raw[4:], "version 5"),
])
def test_reader_rejects_corrupt_files(damage, message):
    raw = write_ct2({"a": np.ones(3, np.float32)}, {"x": "a"})
    with pytest.raises(ct2.CorruptModelFile, match=message):
        ct2.read_ct2_model(damage(raw), source="model.bin")
    # the same error types are models' API (load_model and convert_ct2_whisper raise them)
    assert loading.CorruptModelFile is ct2.CorruptModelFile and issubclass(loading.ModelPackageMissing, ct2.ModelError)


# --------------------------------------------------------------------------- mapping round trip


def _tiny_whisper(vocab: int = 51864):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=vocab, d_model=8, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
                        decoder_ffn_dim=16, num_mel_bins=80, max_source_positions=1500,
                        max_target_positions=32, pad_token_id=min(50256, vocab - 2),
                        bos_token_id=min(50256, vocab - 2), eos_token_id=min(50256, vocab - 2),
                        decoder_start_token_id=min(50257, vocab - 1))
    return WhisperForConditionalGeneration(cfg).eval()


def _to_ct2_variables(model) -> dict[str, np.ndarray]:
    """Inverse mapping, written independently from OFFLINE.md's name table."""
    sd = {k: v.detach().numpy().astype(np.float16) for k, v in model.state_dict().items()}
    v: dict[str, np.ndarray] = {}
    for side in ("encoder", "decoder"):
        p = f"model.{side}"
        v[f"{side}/position_encodings/encodings"] = sd[f"{p}.embed_positions.weight"]
        v[f"{side}/layer_norm/gamma"], v[f"{side}/layer_norm/beta"] = sd[f"{p}.layer_norm.weight"], sd[f"{p}.layer_norm.bias"]
        v[f"{side}/num_heads"] = np.array(2, dtype=np.int8)
        for i in range(2):
            d, s = f"{p}.layers.{i}", f"{side}/layer_{i}"
            for ct, hf in [("self_attention/layer_norm", "self_attn_layer_norm"), ("ffn/layer_norm", "final_layer_norm")]:
                v[f"{s}/{ct}/gamma"], v[f"{s}/{ct}/beta"] = sd[f"{d}.{hf}.weight"], sd[f"{d}.{hf}.bias"]
            zeros = np.zeros_like(sd[f"{d}.self_attn.q_proj.bias"])
            v[f"{s}/self_attention/linear_0/weight"] = np.concatenate([sd[f"{d}.self_attn.{x}_proj.weight"] for x in "qkv"])
            v[f"{s}/self_attention/linear_0/bias"] = np.concatenate([sd[f"{d}.self_attn.q_proj.bias"], zeros, sd[f"{d}.self_attn.v_proj.bias"]])
            for ct, hf in [("self_attention/linear_1", "self_attn.out_proj"), ("ffn/linear_0", "fc1"), ("ffn/linear_1", "fc2")]:
                v[f"{s}/{ct}/weight"], v[f"{s}/{ct}/bias"] = sd[f"{d}.{hf}.weight"], sd[f"{d}.{hf}.bias"]
            if side == "decoder":
                v[f"{s}/attention/layer_norm/gamma"] = sd[f"{d}.encoder_attn_layer_norm.weight"]
                v[f"{s}/attention/layer_norm/beta"] = sd[f"{d}.encoder_attn_layer_norm.bias"]
                v[f"{s}/attention/linear_0/weight"] = sd[f"{d}.encoder_attn.q_proj.weight"]
                v[f"{s}/attention/linear_0/bias"] = sd[f"{d}.encoder_attn.q_proj.bias"]
                v[f"{s}/attention/linear_1/weight"] = np.concatenate([sd[f"{d}.encoder_attn.k_proj.weight"], sd[f"{d}.encoder_attn.v_proj.weight"]])
                v[f"{s}/attention/linear_1/bias"] = np.concatenate([zeros, sd[f"{d}.encoder_attn.v_proj.bias"]])
                v[f"{s}/attention/linear_2/weight"] = sd[f"{d}.encoder_attn.out_proj.weight"]
                v[f"{s}/attention/linear_2/bias"] = sd[f"{d}.encoder_attn.out_proj.bias"]
    for c in ("conv1", "conv2"):
        v[f"encoder/{c}/weight"], v[f"encoder/{c}/bias"] = sd[f"model.encoder.{c}.weight"], sd[f"model.encoder.{c}.bias"]
    v["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    v["decoder/activation"] = np.array(3, dtype=np.int8)
    return v


def test_name_mapping_accounts_for_every_tensor():
    model = _tiny_whisper(vocab=64)
    c = ct2.read_ct2_model(write_ct2(_to_ct2_variables(model), {"decoder/projection/weight": "decoder/embeddings/weight"}))
    state, used = ct2.ct2_to_transformers_state(c)
    assert ct2.unaccounted_variables(c, used) == []
    assert ct2.n_layers(c, "encoder") == ct2.n_layers(c, "decoder") == 2
    expected = set(model.state_dict()) - {"proj_out.weight"}
    assert set(state) == expected, (expected - set(state), set(state) - expected)
    for k, v in state.items():
        ref = model.state_dict()[k].numpy().astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(v, ref, err_msg=k)


def test_unknown_variable_is_reported():
    model = _tiny_whisper(vocab=64)
    var = _to_ct2_variables(model)
    var["decoder/layer_0/mystery/weight"] = np.ones(2, np.float16)
    c = ct2.read_ct2_model(write_ct2(var, {"decoder/projection/weight": "decoder/embeddings/weight"}))
    _, used = ct2.ct2_to_transformers_state(c)
    assert ct2.unaccounted_variables(c, used) == ["decoder/layer_0/mystery/weight"]


def _tiny_ct2_folder(tmp_path: Path) -> tuple[Path, object]:
    """A CTranslate2 folder holding a tiny random Whisper with the real tiny.en tokenizer."""
    parts, meta, _ = loading.embedded_source("whisper-tiny.en")
    model = _tiny_whisper()
    folder = tmp_path / "ct2"
    folder.mkdir()
    (folder / "model.bin").write_bytes(write_ct2(_to_ct2_variables(model), {"decoder/projection/weight": "decoder/embeddings/weight"}))
    for f in ("config.json", "tokenizer.json"):
        (folder / f).write_bytes((meta / f).read_bytes())
    return folder, model


def test_conversion_reproduces_the_model(tmp_path):
    folder, model = _tiny_ct2_folder(tmp_path)
    out = loading.convert_ct2_whisper([folder / "model.bin"], folder, tmp_path / "hf")
    loaded = loading.load_model(str(out))
    torch.manual_seed(1)
    x = torch.randn(1, 80, 3000)
    dec = torch.tensor([[50257, 50362, 11, 12]])
    with torch.no_grad():
        ref = model.half().float()(input_features=x, decoder_input_ids=dec).logits
        got = loaded.model(input_features=x, decoder_input_ids=dec).logits
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert loaded.model.proj_out.weight.data_ptr() == loaded.model.model.decoder.embed_tokens.weight.data_ptr()
    assert not loaded.info.multilingual and loaded.prompt_ids() == [50257, 50362]
    with pytest.raises(ValueError, match="English-only"):
        loaded.prompt_ids("it", "translate")


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    folder, _ = _tiny_ct2_folder(tmp_path)
    from transformers import WhisperProcessor

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(WhisperProcessor, "save_pretrained", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        loading.convert_ct2_whisper([folder / "model.bin"], folder, tmp_path / "hf")
    assert list(tmp_path.glob("*hf*")) == []


def test_corrupt_model_bin_is_a_clear_error(tmp_path):
    folder, _ = _tiny_ct2_folder(tmp_path)
    raw = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(loading.CorruptModelFile, match="truncated"):
        loading.convert_ct2_whisper([folder / "model.bin"], folder, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_missing_model_package_names_the_fix(monkeypatch):
    fake = loading.EmbeddedModel("whisper-fake", (("no_such_pkg_xyz", "no-such-pkg-xyz==1.0"),),
                                ("model.bin",), "model", "fake")
    monkeypatch.setitem(loading.EMBEDDED_MODELS, "whisper-fake", fake)
    with pytest.raises(loading.ModelPackageMissing, match="pip install no-such-pkg-xyz==1.0"):
        loading.embedded_source("whisper-fake")


def test_unknown_model_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(loading.ModelError, match="not an embedded model"):
        loading.load_model("no-such-org/no-such-whisper")
