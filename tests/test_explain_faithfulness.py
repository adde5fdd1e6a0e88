"""Deletion / insertion curves: end points, cost, and that they rank a right map above a wrong one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoadapt.attribution import DnCShap
from emoadapt.attribution.faithfulness import deletion_insertion, pixel_order


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread (see conftest.one_thread)."""


def right_half_model(images: torch.Tensor) -> torch.Tensor:
    """Two-class probabilities driven by the mean of the right half of the image only."""
    p = torch.sigmoid(12 * images[:, :, :, images.shape[3] // 2:].mean(dim=(1, 2, 3)) - 3)
    return torch.stack([p, 1 - p], dim=1)


def test_end_points_and_cost():
    image = torch.rand(3, 10, 12, generator=torch.Generator().manual_seed(0))
    attribution = np.random.default_rng(0).normal(size=(10, 12))
    curves = deletion_insertion(right_half_model, image, attribution, target=0, steps=5, batch_size=4)
    full, empty = right_half_model(image[None])[0, 0].item(), right_half_model(torch.zeros(1, 3, 10, 12))[0, 0].item()
    np.testing.assert_allclose([curves.deletion[0], curves.insertion[-1]], full, rtol=1e-6)
    np.testing.assert_allclose([curves.deletion[-1], curves.insertion[0]], empty, rtol=1e-6)
    assert curves.evaluations == 12 and len(curves.fractions) == 6
    assert curves.fractions[0] == 0 and curves.fractions[-1] == 1


def test_the_right_map_beats_the_wrong_one():
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    right = np.zeros((16, 16))
    right[:, 8:] = 1.0
    good = deletion_insertion(right_half_model, image, right, target=0)
    bad = deletion_insertion(right_half_model, image, -right, target=0)
    assert good.deletion_auc < bad.deletion_auc - 0.1
    assert good.insertion_auc > bad.insertion_auc + 0.1


def test_dncshap_map_is_more_faithful_than_its_mirror():
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    e = DnCShap(right_half_model, depth=4).attribute(image, target=0)
    ours = deletion_insertion(right_half_model, image, e.map, 0)
    mirrored = deletion_insertion(right_half_model, image, e.map[:, ::-1], 0)
    assert ours.deletion_auc < mirrored.deletion_auc and ours.insertion_auc > mirrored.insertion_auc


def test_pixel_order_breaks_ties_without_raster_bias():
    order = pixel_order(np.zeros((8, 8)))
    assert sorted(order.tolist()) == list(range(64)) and order[:8].tolist() != list(range(8))
    ranked = pixel_order(np.arange(64.0).reshape(8, 8))
    assert ranked.tolist() == list(range(63, -1, -1))


def test_bad_inputs():
    image = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="same size"):
        deletion_insertion(right_half_model, image, np.zeros((8, 7)), 0)
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion(right_half_model, image, np.zeros((8, 8)), 0, steps=0)
