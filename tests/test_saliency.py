"""Tests of SPES (crossattn_saliency.spes, .whisper_spes, .saliency_result) on
synthetic forward functions and a tiny randomly initialised Whisper model."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata, spearmanr

from crossattn_saliency.explain import backends
from crossattn_saliency.explain import spes as sal
from crossattn_saliency.explain.spes_record import FORMAT, ReplayMismatch, SaliencyRecord, SaliencyResult, stored_scores
from crossattn_saliency.explain.spes import MaskSampler, Spes, SpesParams, encoder_units, occlusion_value, slic_levels
from crossattn_saliency.models.decoding import teacher_forcing_inputs
from crossattn_saliency.explain.spes_whisper import WhisperSpes, spes_encoder, spes_input

FIXTURES = Path(__file__).parent / "fixtures"

# --------------------------------------------------------------------------- fixtures


class BlockModel(torch.nn.Module):
    """Token i's distribution depends only on the mean of the input over block i.

    Input ``batch x *shape``; ``blocks`` is ``tokens x *shape`` (0/1); output
    log-probs ``batch x tokens x vocab``.
    """

    def __init__(self, blocks: np.ndarray, vocab: int = 7, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.blocks = torch.as_tensor(blocks, dtype=torch.float32)
        self.w = torch.randn(blocks.shape[0], vocab, generator=g) * 3.0
        self.calls = 0
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen.append(x.clone())
        dims = tuple(range(1, x.ndim))
        b = self.blocks
        a = (x[:, None] * b[None]).sum(dim=tuple(d + 1 for d in dims)) / b.sum(dim=dims)[None]
        return torch.log_softmax(a[..., None] * self.w[None], dim=-1)


class ChangeModel(BlockModel):
    """Token i's distribution depends only on how far the cells of block i moved from ``reference``
    (mean squared change): any occlusion value that differs from the cells is seen."""

    def __init__(self, blocks: np.ndarray, reference: np.ndarray, vocab: int = 7, seed: int = 0) -> None:
        super().__init__(blocks, vocab, seed)
        self.reference = torch.as_tensor(reference, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward((x - self.reference[None]) ** 2 + 1.0)


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth positive image (no cell equals 0, the occlusion value)."""
    img = gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2.0)
    return (0.5 + (img - img.min()) / (img.max() - img.min())).astype(np.float32)


T, F = 40, 16


def _blocks_2d() -> np.ndarray:
    b = np.zeros((3, T, F))
    b[0, :20] = 1          # first half of the frames
    b[1, :, :8] = 1        # lower half of the mel bins
    b[2, 10:30] = 1        # middle frames
    return b


def _levels_2d(img: np.ndarray, levels: tuple[int, ...] = (20, 30, 40)) -> list[np.ndarray]:
    return slic_levels(img, SpesParams(levels=levels, frames_ref=T))


def _spectrogram_with_edges(seed: int = 0) -> np.ndarray:
    """A smooth image with steps at frames 10, 20, 30 and mel 8 (where the blocks
    end), as SLIC superpixels follow content edges in a real spectrogram."""
    img = 0.5 + 0.2 * _image((T, F), seed)
    img[10:20] += 0.6
    img[30:] += 0.3
    img[:, 8:] += 0.45
    return img.astype(np.float32)


def _spearman_per_token(maps: np.ndarray, blocks: np.ndarray) -> list[float]:
    # with a 0/1 indicator covering half of the cells, a perfect ranking gives sqrt(3)/2 = 0.866
    return [spearmanr(m.ravel(), b.ravel())[0] for m, b in zip(maps, blocks)]


def _run(model, x, levels, n=64, bs=16, seed=0, snapshots=(), scorer="kl", targets=None):
    return Spes(model, scorer=scorer, batch_size=bs).attribute(
        torch.as_tensor(x), levels, occlusion_value=0.0, n_perturbations=n, seed=seed,
        snapshots=snapshots, targets=targets, progress=False)


@pytest.fixture(scope="module")
def tiny_whisper():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=60, num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=32,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                        attn_implementation="eager")
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(cfg).eval()


@pytest.fixture(scope="module")
def utt():
    rng = np.random.default_rng(1)
    feats = np.full((80, 3000), -0.5, dtype=np.float32)
    n_frames = 90
    feats[:, :n_frames] = rng.uniform(-0.5, 1.5, size=(80, n_frames))
    return {"utt_id": "u1", "features": feats, "n_frames": n_frames, "prompt_ids": [1, 3, 4],
            "token_ids": [10, 11, 12, 13, 2]}


SMALL = SpesParams(n_perturbations=24, batch_size=8, levels=(200, 250, 300))

# --------------------------------------------------------------------------- planted answers


def test_planted_input_blocks_get_the_highest_relevance():
    img = _spectrogram_with_edges()
    blocks = _blocks_2d()
    levels = _levels_2d(img, (40, 60, 80))
    run = _run(BlockModel(blocks), img, levels, n=6000, bs=1000)
    full, a, b, _ = run.final.cell_maps(levels)
    assert full.shape == (3, T, F)
    rhos = _spearman_per_token(full, blocks)
    assert min(rhos) >= 0.8, f"Spearman per token {rhos}"
    # each half alone finds it too (split-half reliability)
    assert min(_spearman_per_token(a, blocks) + _spearman_per_token(b, blocks)) >= 0.75


def test_planted_encoder_positions_get_the_highest_relevance():
    n_pos, dim = 60, 4
    hidden = _image((n_pos, dim), seed=3)
    blocks = np.zeros((3, n_pos, dim))
    blocks[0, :30] = 1
    blocks[1, 30:] = 1
    blocks[2, 15:45] = 1
    units = encoder_units(n_pos, run_length=1)
    run = _run(BlockModel(blocks), hidden, [units[:, None]], n=2000, bs=500)
    full, _, _, _ = run.final.cell_maps([units])
    assert full.shape == (3, n_pos)
    rhos = _spearman_per_token(full, blocks[:, :, 0])
    assert min(rhos) >= 0.8, f"Spearman per token {rhos}"


def test_prob_drop_scorer_finds_the_planted_block():
    img = _spectrogram_with_edges()
    blocks = _blocks_2d()
    levels = _levels_2d(img, (40, 60, 80))
    model = BlockModel(blocks)
    targets = model(torch.as_tensor(img)[None])[0].argmax(-1)
    run = _run(model, img, levels, n=6000, bs=1000, scorer="prob_drop", targets=targets)
    full, _, _, _ = run.final.cell_maps(levels)
    rhos = _spearman_per_token(full, blocks)
    assert min(rhos) >= 0.8, f"Spearman per token {rhos}"
    with pytest.raises(ValueError, match="targets"):
        _run(model, img, levels, scorer="prob_drop")


@pytest.mark.parametrize("setting", [
    {"p_occlude": 0.1}, {"p_occlude": 0.2}, {"p_occlude": 0.3}, {"occlusion": "mean"}, {"occlusion": 1.0},
    {"levels": (60,)}, {"levels": (20, 30, 40)}, {"levels": (80, 120, 160)}, {"scorer": "prob_drop"},
])
def test_every_spes_setting_still_finds_the_planted_blocks(setting):
    """The settings a sensitivity study varies (mask probability, occlusion value, SLIC levels,
    score) change the estimate, not what it points at: on the planted model every one puts the
    highest relevance on the planted cells."""
    img = _spectrogram_with_edges()
    blocks = _blocks_2d()
    params = SpesParams(levels=(40, 60, 80), frames_ref=T).replace(**setting)
    levels = slic_levels(img, params)
    feats = img.T                                   # mel x frames, as occlusion_value reads it
    occ = occlusion_value(feats, T, params.occlusion) if params.occlusion != "floor" else 0.0
    # a model that reacts to the block's mean reads little from an occlusion value near that mean:
    # for other occlusion values, token i reacts to any change of the cells of block i
    model = BlockModel(blocks) if params.occlusion == "floor" else ChangeModel(blocks, img)
    targets = model(torch.as_tensor(img)[None])[0].argmax(-1) if params.scorer == "prob_drop" else None
    run = Spes(model, scorer=params.scorer, batch_size=1000).attribute(
        torch.as_tensor(img), levels, occlusion_value=occ, n_perturbations=6000, p_occlude=params.p_occlude,
        seed=0, targets=targets, progress=False)
    full, _, _, _ = run.final.cell_maps(levels)
    # the planted cells outrank the others: the probability that a planted cell gets more relevance than
    # an unplanted one (ROC AUC, 1 = perfect, 0.5 = chance), per token
    aucs = [float((rankdata(m.ravel())[b.ravel() > 0].sum() - b.sum() * (b.sum() + 1) / 2)
                  / (b.sum() * (b.size - b.sum()))) for m, b in zip(full, blocks)]
    assert min(aucs) >= 0.8, f"{setting}: planted-cell AUC per token {aucs}"


def test_occlusion_values_by_name():
    feats = np.full((4, 10), -1.0, dtype=np.float32)
    feats[:, :6] = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert occlusion_value(feats, 6, "floor") == pytest.approx(23.0 - 2.0)
    assert occlusion_value(feats, 6, "mean") == pytest.approx(11.5)        # speech cells only
    assert occlusion_value(feats, 6, 0.0) == 0.0
    with pytest.raises(ValueError, match="occlusion='zero' is invalid"):
        occlusion_value(feats, 6, "zero")


# --------------------------------------------------------------------------- exactness and reproducibility


def test_segment_accumulation_equals_naive_cell_accumulation():
    img = _image((T, F))
    levels = _levels_2d(img)
    model = BlockModel(_blocks_2d())
    run = _run(model, img, levels, n=40, bs=16)
    full, a, b, counts = run.final.cell_maps(levels)
    x = torch.as_tensor(img)
    ref = model.seen[0][0]
    assert torch.equal(ref, x)
    batches = torch.cat(model.seen[1:])  # perturbations in order
    occl = (batches == 0).numpy()  # the image has no zeros, so 0 = occluded
    sc = sal.kl_scores(run.reference, model(batches)).double().numpy()  # 40 x tokens
    for h, mp in ((0, a), (1, b)):
        o = occl[h::2].astype(float)
        naive = np.einsum("ki,ktf->itf", sc[h::2], o) / np.maximum(o.sum(0), 1)
        np.testing.assert_allclose(mp, naive, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(counts[h], o.sum(0))
    naive_full = np.einsum("ki,ktf->itf", sc, occl.astype(float)) / np.maximum(occl.sum(0), 1)
    np.testing.assert_allclose(full, naive_full, rtol=1e-5, atol=1e-7)


def test_full_map_is_the_pooled_estimate_of_the_halves():
    img = _image((T, F))
    levels = _levels_2d(img)
    run = _run(BlockModel(_blocks_2d()), img, levels, n=30)
    full, a, b, cnt = run.final.cell_maps(levels)
    pooled = (a * cnt[0] + b * cnt[1]) / np.maximum(cnt.sum(0), 1)
    np.testing.assert_allclose(full, pooled, rtol=1e-5, atol=1e-7)


def test_same_seed_same_maps_other_seed_other_maps():
    img = _image((T, F))
    levels = _levels_2d(img)
    m1 = _run(BlockModel(_blocks_2d()), img, levels, seed=5).final.cell_maps(levels)[0]
    m2 = _run(BlockModel(_blocks_2d()), img, levels, seed=5).final.cell_maps(levels)[0]
    m3 = _run(BlockModel(_blocks_2d()), img, levels, seed=6).final.cell_maps(levels)[0]
    np.testing.assert_array_equal(m1, m2)
    assert not np.allclose(m1, m3)


@pytest.mark.parametrize("bs", [1, 7, 64])
def test_results_do_not_depend_on_the_batch_size(bs):
    img = _image((T, F))
    levels = _levels_2d(img)
    ref = _run(BlockModel(_blocks_2d()), img, levels, n=50, bs=16).final
    got = _run(BlockModel(_blocks_2d()), img, levels, n=50, bs=bs).final
    for s1, s2, c1, c2 in zip(ref.sums, got.sums, ref.counts, got.counts):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_allclose(s1, s2, rtol=1e-12, atol=1e-15)


def test_halves_are_disjoint_and_drawn_from_independent_streams():
    n_seg = [5, 9, 7]
    sampler = MaskSampler(n_seg, 0.5, seed=11)
    h1, l1, m1 = sampler.draw(5)
    h2, l2, m2 = sampler.draw(7)  # drawing in two calls = drawing at once
    halves, lv, masks = np.concatenate([h1, h2]), np.concatenate([l1, l2]), m1 + m2
    np.testing.assert_array_equal(halves, np.arange(12) % 2)
    np.testing.assert_array_equal(lv, (np.arange(12) // 2) % 3)  # levels split evenly, per half
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(11).spawn(2)]
    for k in range(12):
        expect = streams[k % 2].random(n_seg[(k // 2) % 3]) < 0.5
        np.testing.assert_array_equal(masks[k], expect)
    # the two halves' masks differ although they use the same levels in the same order
    assert any(not np.array_equal(masks[2 * j], masks[2 * j + 1]) for j in range(6))
    # one-shot sampler gives the same sequence
    _, _, again = MaskSampler(n_seg, 0.5, seed=11).draw(12)
    assert all(np.array_equal(x, y) for x, y in zip(masks, again))


def test_snapshots_equal_separate_runs_with_that_budget():
    img = _image((T, F))
    levels = _levels_2d(img)
    model = BlockModel(_blocks_2d())
    run = _run(model, img, levels, n=60, bs=16, snapshots=(10, 25))
    assert sorted(run.stats) == [10, 25, 60]
    assert model.calls == 1 + 5  # reference + 1 + 1 + 3 batches: no extra passes
    for n in (10, 25):
        alone = _run(BlockModel(_blocks_2d()), img, levels, n=n, bs=16).final.cell_maps(levels)
        snap = run.stats[n].cell_maps(levels)
        for x, y in zip(alone, snap):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="snapshots"):
        _run(model, img, levels, n=20, snapshots=(30,))


def test_cells_labelled_minus_one_are_never_occluded():
    img = _image((T, F))
    lab = _levels_2d(img)[0].copy()
    lab[30:] = -1
    model = BlockModel(_blocks_2d())
    run = _run(model, img, [lab], n=20)
    seen = torch.cat(model.seen)
    assert torch.equal(seen[:, 30:], torch.as_tensor(img)[None, 30:].expand(len(seen), -1, -1))
    full, _, _, cnt = run.final.cell_maps([lab])
    assert (cnt[:, 30:] == 0).all() and (full[:, 30:] == 0).all()


def test_out_of_memory_names_the_batch_size():
    def oom(batch):
        if batch.shape[0] > 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.zeros(batch.shape[0], 2, 3)

    with pytest.raises(MemoryError, match="batch_size=12.*batch_size=6"):
        Spes(oom, batch_size=12).attribute(torch.ones(4, 4), [np.zeros((4, 4), int)], occlusion_value=0.0,
                                           n_perturbations=24, progress=False)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("kw, field", [
    ({"n_perturbations": 0}, "n_perturbations"), ({"levels": ()}, "levels"), ({"levels": (10, 0)}, "levels"),
    ({"p_occlude": 1.0}, "p_occlude"), ({"p_occlude": 0.0}, "p_occlude"), ({"occlusion": "zero"}, "occlusion"),
    ({"occlusion": float("nan")}, "occlusion"), ({"scorer": "l2"}, "scorer"), ({"batch_size": 0}, "batch_size"),
    ({"seed": -1}, "seed"), ({"compactness": 0}, "compactness"), ({"run_length": 0}, "run_length"),
    ({"batch_size": 2.5}, "batch_size"),
])
def test_bad_parameters_are_rejected_by_name(kw, field):
    with pytest.raises(ValueError, match=f"SpesParams.{field}="):
        SpesParams(**kw)


def test_params_round_trip_and_segment_counts():
    p = SpesParams(occlusion=-1, levels=[3, 4])
    assert p.occlusion == -1.0 and p.levels == (3, 4)
    assert SpesParams.from_dict(p.to_dict()) == p
    d = SpesParams()
    assert sal.level_segment_counts(500, d) == [2000, 2500, 3000]
    assert sal.level_segment_counts(250, d) == [1000, 1250, 1500]
    assert sal.level_segment_counts(5000, d) == sal.level_segment_counts(750, d) == [3000, 3750, 4500]
    assert sal.level_segment_counts(1, SpesParams(levels=(1,))) == [1]
    with pytest.raises(ValueError, match="unknown SpesParams"):
        SpesParams.from_dict({"n_perturbation": 3})


# --------------------------------------------------------------------------- Whisper adapters


def test_whisper_unperturbed_forward_matches_the_model(tiny_whisper, utt):
    ws = WhisperSpes(tiny_whisper, dtype="float32")
    ids, start = teacher_forcing_inputs(utt["prompt_ids"], utt["token_ids"])
    assert ids == [1, 3, 4, 10, 11, 12, 13] and start == 2
    x = torch.as_tensor(utt["features"])[None]
    with torch.inference_mode():
        logits = tiny_whisper(input_features=x, decoder_input_ids=torch.tensor([ids])).logits
        want = torch.log_softmax(logits[:, start:].float(), -1)
        got = ws.input_forward(utt["prompt_ids"], utt["token_ids"])(x)
        got_h = ws.encoder_forward(utt["prompt_ids"], utt["token_ids"])(ws.encode(utt["features"])[None])
    assert got.shape == (1, 5, 60)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_h, want, rtol=1e-5, atol=1e-5)
    # explained positions predict the tokens: position start+i is followed by token i
    assert got.shape[1] == len(utt["token_ids"])
    # the caller's model is untouched (dtype, attention implementation)
    assert next(tiny_whisper.parameters()).dtype == torch.float32
    assert tiny_whisper.config._attn_implementation == "eager"
    assert ws.model is not tiny_whisper


def test_whisper_input_saliency_shapes_and_padding(tiny_whisper, utt):
    seen = []
    ws = WhisperSpes(tiny_whisper, dtype="float32")
    hook = ws.model.model.encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        res = ws.input(utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"], SMALL,
                       progress=False)
    finally:
        hook.remove()
    n = utt["n_frames"]
    assert res.kind == "input" and res.scores.shape == (5, n, 80)
    assert res.half_a.shape == res.half_b.shape == res.scores.shape
    assert res.counts.shape == (n, 80) and res.half_counts.shape == (2, n, 80)
    assert res.occlusion_value == pytest.approx(utt["features"].max() - 2.0)
    assert res.params["kind"] == "input" and res.params["dtype"] == "float32"
    feats = torch.cat(seen)
    assert feats.shape[0] == 1 + SMALL.n_perturbations
    pad = torch.as_tensor(utt["features"])[:, n:]
    assert torch.equal(feats[:, :, n:], pad[None].expand(len(feats), -1, -1))  # padding never masked
    occluded = (feats[1:, :, :n] == res.occlusion_value).sum()
    assert occluded > 0
    assert np.isfinite(res.scores).all() and (res.scores >= -1e-6).all()  # KL >= 0


def test_whisper_encoder_saliency_shapes(tiny_whisper, utt):
    p = SMALL.replace(run_length=2)
    res = spes_encoder(tiny_whisper, utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"], p,
                       dtype="float32", progress=False)
    n_pos = math.ceil(utt["n_frames"] / 2)
    assert res.kind == "encoder" and res.scores.shape == (5, n_pos)
    assert res.counts.shape == (n_pos,)
    # runs of 2 adjacent positions are occluded together
    np.testing.assert_array_equal(res.counts[0::2][: n_pos // 2], res.counts[1::2][: n_pos // 2])
    assert res.n_segments == [math.ceil(n_pos / 2)]


def test_whisper_batch_size_invariance_and_bfloat16(tiny_whisper, utt):
    args = (utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"])
    ws = WhisperSpes(tiny_whisper, dtype="float32")
    r1 = ws.encoder(*args, SMALL.replace(batch_size=3), progress=False)
    r2 = ws.encoder(*args, SMALL.replace(batch_size=24), progress=False)
    np.testing.assert_array_equal(r1.counts, r2.counts)
    np.testing.assert_allclose(r1.scores, r2.scores, rtol=1e-4, atol=1e-7)
    rb = spes_encoder(tiny_whisper, *args, SMALL, dtype="bfloat16", progress=False)
    np.testing.assert_array_equal(rb.counts, r1.counts)  # same masks
    assert rb.params["dtype"] == "bfloat16" and np.isfinite(rb.scores).all()
    assert not np.array_equal(rb.scores, r1.scores)  # it really ran in another dtype


def test_whisper_rejects_bad_inputs(tiny_whisper, utt):
    with pytest.raises(ValueError, match=r"\(80, 3000\)"):
        spes_input(tiny_whisper, utt["features"][:, :100], 50, [1], [2], SMALL, dtype="float32", progress=False)
    with pytest.raises(ValueError, match="n_frames"):
        spes_input(tiny_whisper, utt["features"], 0, [1], [2], SMALL, dtype="float32", progress=False)
    with pytest.raises(ValueError, match="token_ids is empty"):
        spes_input(tiny_whisper, utt["features"], 50, [1], [], SMALL, dtype="float32", progress=False)
    with pytest.raises(ValueError, match="dtype"):
        WhisperSpes(tiny_whisper, dtype="float16")


# --------------------------------------------------------------------------- results on disk


def test_save_load_round_trip(tiny_whisper, utt, tmp_path):
    res = spes_input(tiny_whisper, utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"],
                     SMALL, dtype="float32", snapshots=(8,), progress=False)
    assert sorted(res.snapshots) == [8]
    path = res.save(tmp_path / "r.npz")
    record = SaliencyResult.load(path)
    assert isinstance(record, SaliencyRecord)
    back = record.replay(utt["features"])
    for name in ("scores", "half_a", "half_b"):
        x, y = getattr(res, name), getattr(back, name)
        tol = 1e-3 * np.abs(x).reshape(len(x), -1).max(1)[:, None, None]
        assert np.all(np.abs(x - y) <= tol + 1e-12)
    np.testing.assert_array_equal(back.counts, res.counts)
    np.testing.assert_array_equal(back.half_counts, res.half_counts)
    assert back.params == res.params and back.token_ids == res.token_ids and back.kind == "input"
    assert back.n_frames == res.n_frames and back.n_segments == res.n_segments
    np.testing.assert_allclose(back.snapshots[8][0], res.snapshots[8][0],
                               atol=1e-3 * np.abs(res.snapshots[8][0]).max())


def test_a_stored_record_holds_no_map_and_replays_into_the_run_s_maps(tiny_whisper, utt, tmp_path):
    from crossattn_saliency.core import files
    from crossattn_saliency.explain.spes import SpesDesign

    for fn in (spes_input, spes_encoder):
        res = fn(tiny_whisper, utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"],
                 SMALL, dtype="float32", progress=False)
        path = res.save(tmp_path / f"{fn.__name__}.npz")
        arrays, meta = files.read_npz(path)
        assert set(arrays) == {"perturbation_scores", "token_scale"} and meta["format"] == FORMAT
        assert arrays["perturbation_scores"].dtype == np.float16
        back = SaliencyResult.load(path).replay(utt["features"])
        # the replayed maps are exactly the run's maps accumulated from its stored (float16) scores ...
        f16 = stored_scores(arrays["perturbation_scores"], arrays["token_scale"])
        want = SpesDesign(f16, list(res.n_segments), SMALL.p_occlude, SMALL.seed, list(res.labels)).cell_maps()
        for x, y in zip((back.scores, back.half_a, back.half_b), want):
            np.testing.assert_array_equal(x, y)
        # ... on the run's own units, and within float16 rounding of the run's float32 maps
        for a, b in zip(back.labels, res.labels):
            np.testing.assert_array_equal(a, b)
        for x, y in ((back.scores, res.scores), (back.half_a, res.half_a)):
            np.testing.assert_allclose(x, y, atol=2e-3 * np.abs(y).max())


def test_a_record_whose_units_do_not_replay_is_refused_with_the_cause(tiny_whisper, utt, tmp_path):
    res = spes_input(tiny_whisper, utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"],
                     SMALL, dtype="float32", progress=False)
    record = SaliencyResult.load(res.save(tmp_path / "r.npz"))
    other = np.array(utt["features"], copy=True)
    other[:, : utt["n_frames"]] = other[:, : utt["n_frames"]][:, ::-1]        # other audio, same length
    with pytest.raises(ReplayMismatch, match="scikit-image.*make data"):
        record.replay(other)
    record.units["checksum"] = "0" * 64                                        # masks made otherwise
    with pytest.raises(ReplayMismatch, match="checksum"):
        record.replay(utt["features"])


def _tiny_encoder_result(tiny_whisper, utt) -> SaliencyResult:
    """The run that wrote ``fixtures/saliency_result_v1.npz`` (before saliency.py was split)."""
    res = spes_encoder(tiny_whisper, utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"],
                       SMALL, dtype="float32", snapshots=(8,), progress=False)
    res.utt_id = "u1"
    return res


def test_a_result_file_of_the_older_format_is_refused_and_recomputed_by_the_store(tiny_whisper, utt, tmp_path):
    from crossattn_saliency.core import files
    from crossattn_saliency.run.store import ParamsMismatch, ResultStore

    old_path = FIXTURES / "saliency_result_v1.npz"
    arrays_old, meta_old = files.read_npz(old_path)
    assert meta_old["format"] == "crossattn_saliency.SaliencyResult/1" and "perturbation_scores" not in arrays_old
    with pytest.raises(ValueError, match="recompute it"):
        SaliencyResult.load(old_path)
    # the same run today draws the same masks as the run that wrote the old file: the same counts
    # exactly (its maps are float32 rounding on a tiny random model: nothing to compare across machines)
    new = _tiny_encoder_result(tiny_whisper, utt)
    assert new.params == {**SMALL.to_dict(), "kind": "encoder", "dtype": "float32", "snapshots": [8]}
    assert new.params == meta_old["params"] and new.token_ids == meta_old["token_ids"]
    np.testing.assert_array_equal(new.counts, arrays_old["counts"])
    np.testing.assert_array_equal(new.half_counts, arrays_old["half_counts"])
    # the store sees the old file as stale by its format (same params and tokens) and recomputes it
    identity = {"token_ids": new.token_ids, "format": FORMAT}
    for mode in ("error", "recompute"):
        store = ResultStore(tmp_path / mode, on_mismatch=mode)
        path = store.path("saliency_h", "cond/u1")
        path.parent.mkdir(parents=True)
        path.write_bytes(old_path.read_bytes())
        if mode == "error":
            with pytest.raises(ParamsMismatch, match="format"):
                store.fetch("saliency_h", "cond/u1", new.params, lambda: new, lambda obj, p: obj.save(p),
                            SaliencyResult.load, identity=identity)
            continue
        with pytest.warns(UserWarning, match="SaliencyResult/1"):
            got = store.fetch("saliency_h", "cond/u1", new.params, lambda: new, lambda obj, p: obj.save(p),
                              SaliencyResult.load, identity=identity)
        assert store.written == [str(path)]
        np.testing.assert_array_equal(got.replay(utt["features"]).counts, new.counts)


def test_engine_does_not_import_the_whisper_layers():
    code = ("import sys; import crossattn_saliency.explain.spes; "
            "bad = [m for m in ('crossattn_saliency.explain.whisper_spes', "
            "'crossattn_saliency.explain.saliency_result', 'transformers') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_engine_kl_scorer_is_kl_scores():
    g = torch.Generator().manual_seed(0)
    ref = torch.log_softmax(torch.randn(4, 9, generator=g), -1)
    logp = torch.log_softmax(torch.randn(3, 4, 9, generator=g), -1)
    got = Spes(lambda b: b, scorer="kl")._scorer(ref, None)(logp)
    torch.testing.assert_close(got, sal.kl_scores(ref, logp), rtol=0, atol=0)
    want = (ref.exp()[None] * (ref[None] - logp)).sum(-1)  # KL(P || Q) written out
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert torch.equal(sal.kl_scores(ref, ref[None]), torch.zeros(1, 4))


def test_map_agreement_z_scores_per_token(tiny_whisper, utt):
    from crossattn_saliency.app import bench

    rng = np.random.default_rng(0)
    maps = rng.normal(3.0, 2.0, size=(4, 6, 5))
    # a per-token affine change (what a dtype's scale drift would do) does not change the agreement
    same = backends.map_agreement(maps, maps * np.array([1.0, 10.0, 0.1, 2.0])[:, None, None] + 5.0)
    assert same["pearson_all"] == pytest.approx(1.0) and same["pearson_per_token_min"] == pytest.approx(1.0)
    noisy = backends.map_agreement(maps, maps + rng.normal(0.0, 2.0, size=maps.shape))
    assert 0.3 < noisy["pearson_per_token_min"] <= noisy["pearson_per_token_mean"] < 0.95
    ws = WhisperSpes(tiny_whisper, dtype="float32", attn_implementation="eager")
    ids, _ = teacher_forcing_inputs(utt["prompt_ids"], utt["token_ids"])
    assert bench.bare_forward_rate(ws, utt["features"], ids, batch_size=2, n_batches=1) > 0
    ratio = bench.interleaved_ratio(ws, utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"],
                                    batch_size=2, repeats=1)
    assert math.isfinite(ratio) and ratio > 0


# --------------------------------------------------------------------------- resampling the design


def _design_run(n=96, seed=3):
    img = _spectrogram_with_edges()
    levels = _levels_2d(img)
    run = _run(BlockModel(_blocks_2d()), img, levels, n=n, bs=16, seed=seed)
    design = sal.SpesDesign(run.scores, run.n_segments, 0.5, seed, levels)
    return run, design, levels


def test_design_rebuilds_the_runs_maps_from_per_perturbation_scores():
    run, design, levels = _design_run()
    assert run.scores.shape == (96, 3)
    for got, want in zip(design.cell_maps(), run.final.cell_maps(levels)[:3]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_random_splits_are_balanced_per_level_and_keep_the_full_map():
    run, design, _ = _design_run()
    split = design.random_split(7)
    assert not np.array_equal(split, design.halves)
    for lv in range(3):
        h = split[design.levels == lv]
        assert abs(int(h.sum()) - h.size / 2) <= 0.5
    np.testing.assert_array_equal(split, design.random_split(7))
    full, a, b = design.cell_maps(halves=split)
    np.testing.assert_allclose(full, design.cell_maps()[0], rtol=1e-6, atol=1e-9)  # same perturbations in all
    assert not np.allclose(a, design.cell_maps()[1])


def test_permuted_scores_keep_rows_and_levels_and_destroy_the_signal():
    run, design, _ = _design_run(n=240)
    perm = design.permuted_scores(1)
    for lv in range(3):
        sel = design.levels == lv
        assert sorted(map(tuple, perm[sel])) == sorted(map(tuple, design.scores[sel]))
    full, _, _ = design.cell_maps(scores=perm)
    real = _spearman_per_token(design.cell_maps()[0], _blocks_2d())
    null = _spearman_per_token(full, _blocks_2d())
    assert min(real) > 0.5 and max(np.abs(null)) < 0.35


def test_whisper_result_keeps_its_design_through_save_and_load(tiny_whisper, utt, tmp_path):
    for fn in (spes_input, spes_encoder):
        res = fn(tiny_whisper, utt["features"], utt["n_frames"], utt["prompt_ids"], utt["token_ids"],
                 SMALL, dtype="float32", progress=False)
        back = SaliencyResult.load(res.save(tmp_path / f"{fn.__name__}.npz")).replay(utt["features"])
        assert back.has_design and back.perturbation_scores.shape == (SMALL.n_perturbations, 5)
        full, a, b = back.design().cell_maps()
        for x, y in ((full, back.scores), (a, back.half_a), (b, back.half_b)):
            np.testing.assert_array_equal(x, y)
        # the stored scores are float16 per token scale: 3 significant digits of the run's own
        np.testing.assert_allclose(back.perturbation_scores, res.perturbation_scores, rtol=0,
                                   atol=6e-4 * np.abs(res.perturbation_scores).max())


def test_shared_encoder_maps_equal_separate_runs(tiny_whisper, utt):
    """ASR and translation of one clip: one encoder pass per mask, one decoder pass per hypothesis,
    and each map equals the one of a separate run with the same masks."""
    ws = WhisperSpes(tiny_whisper, dtype="float32")
    hyps = [(utt["prompt_ids"], utt["token_ids"]), ([1, 5, 4], [20, 21, 2])]
    shared = ws.input_shared(utt["features"], utt["n_frames"], hyps, SMALL, snapshots=(8,), progress=False)
    for (prompt, tokens), got in zip(hyps, shared):
        want = ws.input(utt["features"], utt["n_frames"], prompt, tokens, SMALL, snapshots=(8,), progress=False)
        assert got.token_ids == want.token_ids and got.scores.shape == want.scores.shape
        for name in ("scores", "half_a", "half_b", "perturbation_scores"):
            x, y = getattr(got, name), getattr(want, name)
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5 * np.abs(y).max())
        np.testing.assert_allclose(got.snapshots[8][0], want.snapshots[8][0], rtol=1e-4,
                                   atol=1e-5 * np.abs(want.snapshots[8][0]).max())
        np.testing.assert_array_equal(got.counts, want.counts)
        assert got.info["shared_by"] == 2 and "shared_by" not in want.info
