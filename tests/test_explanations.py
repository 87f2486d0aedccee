"""The explanation model: typed views, end-of-text handled once, grids and halves."""
from __future__ import annotations

import numpy as np
import pytest

from crossattn_saliency.evaluate import grids
from crossattn_saliency.explain.explanation import Explanation
from crossattn_saliency.evaluate.views import View, standard_views

EOT = 99


def _layered(n_tok: int = 4, L: int = 3, H: int = 2, T: int = 5) -> Explanation:
    w = np.random.default_rng(0).random((L, H, n_tok, T)).astype(np.float32)
    return Explanation.from_hypothesis("CA", "u", [1, 2, 3][: n_tok - 1] + [EOT], list("abcd")[:n_tok], "encoder",
                                       w, n_frames=2 * T, token_axis=2, eot_id=EOT, alignment_heads=[(2, 1)])


def test_views_are_typed_and_print_one_based():
    assert View("all").label() == "all layers"
    assert View("layer", layer=3).label(4) == "layer 4 of 4"
    assert View("head", layer=0, head=1).label() == "layer 1 head 2"
    assert View("head", layer=0, head=1).fields(4) == {"view": "layer 1 head 2", "view_kind": "head",
                                                      "layer": 1, "head": 2}
    assert View("last", n=2).pairs(4, 2) == [(2, 0), (2, 1), (3, 0), (3, 1)]
    with pytest.raises(ValueError, match="outside"):
        View("head", layer=5, head=0).pairs(4, 2)
    with pytest.raises(ValueError, match="view scope"):
        View("mean")
    with pytest.raises(ValueError, match="no alignment heads"):
        View("alignment").pairs(2, 2, [])


def test_standard_views_order_and_count():
    v = standard_views(4, 6, has_alignment_heads=True)
    assert [x.scope for x in v[:4]] == ["all", "last", "alignment", "layer"]
    assert len(v) == 3 + 4 + 24


def test_end_of_text_is_dropped_once_on_every_array():
    e = _layered()
    assert e.token_ids == [1, 2, 3] and e.tokens == ["a", "b", "c"]
    assert e.maps.shape == (3, 2, 3, 5) and e.layered and e.n_layers == 3
    x = np.random.default_rng(1).random((4, 10, 80))
    sx = Explanation.from_hypothesis("SM_X", "u", [5, 6, 7, EOT], list("wxyz"), "input", x, 10,
                                     halves=(x, x * 2), eot_id=EOT)
    assert sx.maps.shape == (3, 10, 80) and sx.halves[1].shape == (3, 10, 80)
    np.testing.assert_allclose(sx.halves[1], 2 * x[:3], rtol=1e-6)
    with pytest.raises(ValueError, match="does not end with"):
        Explanation.from_hypothesis("SM_X", "u", [5, 6, 7], list("wxy"), "input", x[:3], 10, eot_id=EOT)


def test_map_averages_the_view_and_reduces_to_the_encoder_grid():
    e = _layered()
    np.testing.assert_allclose(e.map(View("all")), e.maps.mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(e.map(View("head", layer=1, head=0)), e.maps[1, 0])
    np.testing.assert_allclose(e.map(View("alignment")), e.maps[2, 1])
    x = np.random.default_rng(2).random((3, 9, 80)).astype(np.float32)
    sx = Explanation("SM_X", "u", [1, 2, 3], list("abc"), "input", x, 9)
    np.testing.assert_allclose(sx.on_encoder_grid(None, "max2d"), grids.reduce_to_encoder_grid(x, "max2d"))
    assert sx.views() == [None] and not sx.layered
    with pytest.raises(ValueError, match="no layers or heads"):
        sx.map(View("layer", layer=0))
    with pytest.raises(ValueError, match="deterministic"):
        sx.require_halves()


@pytest.mark.parametrize("grid, shape, message", [
    ("input", (3, 9), "tokens x frames x mel"),
    ("encoder", (3, 9, 2), "tokens x positions"),
    ("mel", (3, 9), "grid"),
])
def test_bad_shapes_and_grids_are_clear_errors(grid, shape, message):
    with pytest.raises(ValueError, match=message):
        Explanation("K", "u", [1, 2, 3], list("abc"), grid, np.zeros(shape), 9)


def test_token_count_must_match():
    with pytest.raises(ValueError, match="explain 3 tokens"):
        Explanation("K", "u", [1, 2], list("ab"), "encoder", np.zeros((3, 5)), 9)
