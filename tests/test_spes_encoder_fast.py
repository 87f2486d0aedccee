"""SM_H's fast path (crossattn_saliency.explain.spes_whisper._CrossKV): the decoder's cross-attention
keys and values computed once per utterance and selected per perturbation give the same
per-perturbation scores and maps as projecting every perturbed encoder output again."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from crossattn_saliency.explain import spes_whisper
from crossattn_saliency.explain.spes import Spes, SpesParams, encoder_units
from crossattn_saliency.explain.spes_whisper import WhisperSpes

N_FRAMES = 90
PARAMS = SpesParams(n_perturbations=40, batch_size=8)
#: (prompt, tokens): one token, a short and a long hypothesis
HYPOTHESES = [([1, 3, 4], [2]), ([1, 3, 4], [10, 11, 12, 13, 2]),
              ([1], [5, 17, 9, 30, 41, 22, 8, 8, 50, 12, 33, 7, 19, 2])]


@pytest.fixture(scope="module")
def whisper():
    """A tiny random Whisper whose decoder is sensitive to its encoder output (larger init than
    the default, so the scores are far from float rounding)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=60, num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=32,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                        init_std=0.5, attn_implementation="eager")
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(cfg).eval()


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(1)
    feats = np.full((80, 3000), -0.5, dtype=np.float32)
    feats[:, :N_FRAMES] = rng.uniform(-0.5, 1.5, size=(80, N_FRAMES))
    return feats


@pytest.fixture(scope="module")
def ws(whisper):
    return WhisperSpes(whisper, dtype="float32")


def _projection_inputs(ws: WhisperSpes) -> tuple[list[tuple[int, ...]], list[torch.utils.hooks.RemovableHandle]]:
    """Shapes of the inputs of the decoder's real cross-attention k_proj / v_proj (hooks)."""
    seen: list[tuple[int, ...]] = []
    hooks = [proj.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
             for layer in ws.model.model.decoder.layers
             for proj in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)]
    return seen, hooks


def _assert_same(full, fast, rel: float = 1e-4) -> None:
    np.testing.assert_array_equal(full.counts, fast.counts)  # same masks
    scale = np.abs(full.perturbation_scores).max()
    assert scale > 1e-3, "the test model is not sensitive enough to compare the paths"
    assert np.abs(full.perturbation_scores - fast.perturbation_scores).max() <= rel * scale
    for a, b in ((full.scores, fast.scores), (full.half_a, fast.half_a), (full.half_b, fast.half_b)):
        assert np.abs(a - b).max() <= rel * np.abs(a).max()
    assert full.occlusion_value == fast.occlusion_value == 0.0
    assert full.params == fast.params and full.n_segments == fast.n_segments


def test_fast_is_the_default():
    assert spes_whisper.FAST_ENCODER is True


@pytest.mark.parametrize("hyp", range(len(HYPOTHESES)))
def test_fast_path_gives_the_same_scores_and_maps(ws, features, hyp):
    prompt, tokens = HYPOTHESES[hyp]
    full = ws.encoder(features, N_FRAMES, prompt, tokens, PARAMS, progress=False, fast=False)
    seen, hooks = _projection_inputs(ws)
    try:
        fast = ws.encoder(features, N_FRAMES, prompt, tokens, PARAMS, progress=False)  # default: fast
    finally:
        for h in hooks:
            h.remove()
    _assert_same(full, fast)
    assert fast.scores.shape == (len(tokens), (N_FRAMES + 1) // 2)
    # the real projections ran only on single inputs: per layer once on the clean output, once on
    # the occlusion vector, and once in the check of the selected ones on a blend (_CrossKV.check)
    n_layers = len(ws.model.model.decoder.layers)
    assert sorted(seen) == sorted([(1, 1500, 16)] * 4 * n_layers + [(1, 1, 16)] * 2 * n_layers)
    # and the model is left as it was (its own projections back in place)
    for layer in ws.model.model.decoder.layers:
        assert isinstance(layer.encoder_attn.k_proj, torch.nn.Linear)
        assert isinstance(layer.encoder_attn.v_proj, torch.nn.Linear)


def test_fast_path_with_runs_and_other_seed(ws, features):
    p = PARAMS.replace(run_length=3, seed=7, batch_size=5, n_perturbations=23)
    prompt, tokens = HYPOTHESES[1]
    _assert_same(ws.encoder(features, N_FRAMES, prompt, tokens, p, progress=False, fast=False),
                 ws.encoder(features, N_FRAMES, prompt, tokens, p, progress=False, fast=True))


def test_module_constant_selects_the_old_path(ws, features, monkeypatch):
    monkeypatch.setattr(spes_whisper, "FAST_ENCODER", False)
    prompt, tokens = HYPOTHESES[1]
    seen, hooks = _projection_inputs(ws)
    try:
        ws.encoder(features, N_FRAMES, prompt, tokens, PARAMS.replace(n_perturbations=8), progress=False)
    finally:
        for h in hooks:
            h.remove()
    assert all(s[0] >= 1 and s[1] == 1500 for s in seen) and max(s[0] for s in seen) == 8  # whole batches


@pytest.mark.parametrize("occ", [0.0, 0.7, -1.25])
def test_occlusion_value_is_honoured(ws, features, occ):
    """At the forward-function level, with an engine occluding with ``occ``: same scores both ways,
    and the scores depend on the occlusion value."""
    prompt, tokens = HYPOTHESES[2]
    hidden = ws.encode(features)
    n_pos = (N_FRAMES + 1) // 2
    grid = np.full((hidden.shape[0], 1), -1, dtype=np.int64)
    grid[:n_pos, 0] = encoder_units(n_pos)
    runs = {}
    for fast in (False, True):
        f = ws.encoder_forward(prompt, tokens, clean=hidden, occlusion_value=occ, fast=fast)
        runs[fast] = Spes(f, batch_size=8).attribute(hidden, [grid], occlusion_value=occ, n_perturbations=24,
                                                     targets=tokens, progress=False)
    scale = np.abs(runs[False].scores).max()
    assert scale > 1e-3
    assert np.abs(runs[False].scores - runs[True].scores).max() <= 1e-4 * scale
    # another occlusion value gives other scores (the occlusion vector's projections are used)
    f = ws.encoder_forward(prompt, tokens, clean=hidden, occlusion_value=occ + 0.5, fast=True)
    other = Spes(f, batch_size=8).attribute(hidden, [grid], occlusion_value=occ + 0.5, n_perturbations=24,
                                            targets=tokens, progress=False)
    assert not np.allclose(other.scores, runs[True].scores, rtol=1e-3, atol=0)


def test_inputs_that_are_not_blends_run_the_full_decoder(ws, features):
    """A forward function prepared for one occlusion value, fed other inputs (another occlusion
    value, noise, another batch), returns what the full decoder returns."""
    prompt, tokens = HYPOTHESES[1]
    hidden = ws.encode(features)
    full = ws.encoder_forward(prompt, tokens, fast=False)
    fast = ws.encoder_forward(prompt, tokens, clean=hidden, occlusion_value=0.0, fast=True)
    g = torch.Generator().manual_seed(3)
    other_occ = hidden[None].repeat(3, 1, 1)
    other_occ[0, :10] = 0.3
    other_occ[1, 5:20] = 0.0
    other_occ[1, 30] = 0.3  # one position neither clean nor 0: the whole batch runs in full
    noisy = hidden[None] + 0.1 * torch.randn((2,) + tuple(hidden.shape), generator=g)
    blend = hidden[None].repeat(4, 1, 1)
    for i in range(4):
        blend[i, i::4] = 0.0
    with torch.inference_mode():
        for x in (other_occ, noisy, blend, hidden[None]):
            want, got = full(x), fast(x)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(full(blend)[0], full(hidden[None])[0], atol=1e-4)  # the blends matter


def test_a_failed_check_falls_back_to_the_full_decoder(ws, features, monkeypatch):
    """If the selected keys/values disagree with the real projections (another transformers'
    attention), the forward function warns and decodes every input in full."""
    prompt, tokens = HYPOTHESES[1]
    hidden = ws.encode(features)
    monkeypatch.setattr(spes_whisper._Selected, "forward", lambda self, x: torch.zeros(x.shape[:2] + (16,)))
    with pytest.warns(RuntimeWarning, match="full decoder"):
        fast = ws.encoder_forward(prompt, tokens, clean=hidden, occlusion_value=0.0, fast=True)
    blend = hidden[None].repeat(2, 1, 1)
    blend[:, ::3] = 0.0
    with torch.inference_mode():
        torch.testing.assert_close(fast(blend), ws.encoder_forward(prompt, tokens, fast=False)(blend))


def test_bfloat16_fast_path_stays_close(whisper, features):
    prompt, tokens = HYPOTHESES[1]
    ws16 = WhisperSpes(whisper, dtype="bfloat16")
    p = PARAMS.replace(n_perturbations=16)
    full = ws16.encoder(features, N_FRAMES, prompt, tokens, p, progress=False, fast=False)
    fast = ws16.encoder(features, N_FRAMES, prompt, tokens, p, progress=False, fast=True)
    np.testing.assert_array_equal(full.counts, fast.counts)
    scale = np.abs(full.perturbation_scores).max()
    assert np.abs(full.perturbation_scores - fast.perturbation_scores).max() <= 2e-2 * scale
