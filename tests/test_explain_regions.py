"""DnCShap's content-following regions (``regions="content"``): the tree, its cuts, and the
explainer's axioms on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoadapt.errors import EmoadaptError
from emoadapt.attribution import DnCShap, build_partition, content_partition, max_depth, resolve_baseline
from emoadapt.attribution.partition import CUT_RANGE
from emoadapt.attribution.settings import CONTEXTS
from test_explain_dncshap import brute_force_shapley, model_value, tiny_cnn


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (see conftest.one_thread)."""


def coverage(part) -> np.ndarray:
    """(H, W) count of leaves covering each pixel."""
    count = np.zeros((part.height, part.width), dtype=np.int64)
    for top, left, bottom, right in part.leaves:
        count[top:bottom, left:right] += 1
    return count


@pytest.mark.parametrize("height,width", [(160, 160), (224, 224), (48, 48), (13, 200), (9, 33), (7, 5), (1, 50), (64, 3)])
def test_content_leaves_tile_the_image_at_every_depth(height, width):
    image = np.random.default_rng(height * width).random((3, height, width))
    for depth in sorted({0, 1, max_depth(height, width) // 2, max_depth(height, width)}):
        part = content_partition(image, depth)
        assert len(part.leaves) == 2 ** depth
        assert (coverage(part) == 1).all()  # every pixel in exactly one region, none empty
        for d in range(depth):  # children split their parent along the recorded axis
            parents, children = part.levels[d], part.levels[d + 1]
            for i, (box, axis) in enumerate(zip(parents, part.axes[d])):
                a, b = children[2 * i], children[2 * i + 1]
                keep = [1, 3] if axis == 0 else [0, 2]  # the other axis' bounds are unchanged
                assert (a[keep] == box[keep]).all() and (b[keep] == box[keep]).all()


def test_flat_image_gets_the_grid_tree():
    flat, grid = content_partition(np.full((3, 160, 160), 0.3), 6), build_partition(160, 160, 6)
    for ours, theirs in zip(flat.levels, grid.levels):
        np.testing.assert_array_equal(ours, theirs)


def test_cut_falls_on_the_edge_and_stays_in_range():
    image = np.zeros((1, 100, 100))
    image[:, :62] = 1.0  # an edge between rows 61 and 62
    assert content_partition(image, 1).levels[1][0].tolist() == [0, 0, 62, 100]
    image = np.zeros((1, 100, 100))
    image[:, :10] = 1.0  # an edge outside the allowed range: the cut stops at its bound
    top_half = content_partition(image, 1).levels[1][0]
    assert top_half[2] == int(np.ceil(CUT_RANGE[0] * 100))
    image = np.zeros((3, 80, 80))
    image[:, :, 50:] = 1.0  # a vertical edge: found by the second level's cuts (columns)
    level2 = content_partition(image, 2).levels[2]
    assert {int(b[3]) for b in level2[::2]} == {50}


def test_same_image_same_tree_and_colour_matters():
    rng = np.random.default_rng(0)
    image = rng.random((3, 40, 40))
    a, b = content_partition(image, 4), content_partition(image.copy(), 4)
    assert all((x == y).all() for x, y in zip(a.levels, b.levels))
    shifted = image.copy()
    shifted[:, :17] += 2.0
    c = content_partition(shifted, 1)
    assert c.levels[1][0].tolist() == [0, 0, 17, 40]


@pytest.mark.parametrize("context", CONTEXTS)
def test_content_regions_keep_efficiency_and_two_region_exactness(context):
    model = tiny_cnn(1, height=12, width=10)
    image = torch.rand(3, 12, 10, generator=torch.Generator().manual_seed(4))
    image[:, :4] += 1.0  # an edge off the middle row
    e = DnCShap(model, depth=4, context=context, regions="content").attribute(image)
    np.testing.assert_array_equal(e.boxes, content_partition(image.numpy(), 4).leaves)
    assert abs(e.values.sum() - (e.full_value - e.base_value)) < 1e-5
    assert abs(float(e.map.sum(dtype=np.float64)) - e.values.sum()) < 1e-5
    two = DnCShap(model, depth=1, context=context, regions="content").attribute(image)
    assert two.boxes[0].tolist() == [0, 0, 4, 10]  # the cut followed the edge, not the middle (6)
    base, _ = resolve_baseline("zero", image)
    expected = brute_force_shapley(model_value(model, two.target), image, base, two.boxes)
    np.testing.assert_allclose(two.values, expected, atol=1e-6)


def test_regions_option_is_checked_and_reaches_the_api():
    with pytest.raises(EmoadaptError, match="regions"):
        DnCShap(tiny_cnn(0), regions="superpixels")
    import emoadapt

    def model(images):  # a plain callable returning probabilities
        p = torch.sigmoid(images[:, 0, :6].mean(dim=(1, 2)) * 4 - 2)
        return torch.stack([p, 1 - p], dim=1)

    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    image[:, :, :5] = 0.0
    content = emoadapt.explain(image, model=model, depth=2, regions="content", class_names=["a", "b"], target=0)
    grid = emoadapt.explain(image, model=model, depth=2, class_names=["a", "b"], target=0)
    np.testing.assert_array_equal(content.boxes, content_partition(image.numpy(), 2).leaves)
    np.testing.assert_array_equal(grid.boxes, build_partition(16, 16, 2).leaves)
    assert not np.array_equal(content.boxes, grid.boxes)


@pytest.mark.parametrize("seed", [0, 1])
def test_benchmark_owen_top_variant_is_exact_owen_at_depth_three_and_efficient(seed, monkeypatch):
    """docs/dncshap.md §10's experiment (benchmarks/lib/explain_methods.py OwenTopDnCShap): the 8
    regions of depth 3 get exact Owen values, and a budget cut keeps the scores adding up."""
    from pathlib import Path

    from test_explain_dncshap import brute_force_owen

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from benchmarks.lib.explain_methods import OwenTopDnCShap

    model, image = tiny_cnn(seed, height=8, width=6), torch.rand(3, 8, 6, generator=torch.Generator().manual_seed(seed))
    e = OwenTopDnCShap(model, depth=3).attribute(image)
    base, _ = resolve_baseline("zero", image)
    expected = brute_force_owen(model_value(model, e.target), image, base, build_partition(8, 6, 3))
    np.testing.assert_allclose(e.values, expected, atol=1e-8)
    assert e.evaluations == 44  # 2 + 2 + 8 + 4 × (4 + 4)
    cut = OwenTopDnCShap(model, depth=4, max_evals=50).attribute(image)
    assert cut.evaluations <= 50 and len(cut.values) == 9  # one split of the last level fits
    assert abs(cut.values.sum() - (cut.full_value - cut.base_value)) < 1e-9
