"""Layer-wise DnCShap on a tiny EmoNet, and the figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoadapt.attribution.settings import tree_evaluations
from PIL import Image

from emoadapt.attribution import LAYER_TAPS, DnCShap, LayerDnCShap, explain_layers, save_layer_grid, save_overlay
from emoadapt.attribution.figures import kept_values
from emoadapt.models.emonet import EmoNet, EmoNetConfig

CONFIG = EmoNetConfig(in_chans=1, input_size=32, width=0.125, batch_norm=True, head="pool", hidden=(16,), num_classes=4)
#: Tap sides for a 32 px input: b1 16, b2 8, b3 4, b4 2, b5 1, merged 1.
EFFECTIVE_DEPTH_AT_4 = {"b1": 4, "b2": 4, "b3": 4, "b4": 2, "b5": 0, "merged": 0}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def net() -> EmoNet:
    torch.manual_seed(0)
    model = EmoNet(CONFIG)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("baseline", ["zero", "mean-activation"])
def test_efficiency_in_each_layer_value_function(net, baseline):
    image = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(1))
    results = explain_layers(net, image, depth=4, baseline=baseline, class_names=("a", "b", "c", "d"))
    assert list(results) == list(LAYER_TAPS)
    with torch.no_grad():
        probs = torch.softmax(net(image[None]).double(), dim=1)[0]
    target = int(probs.argmax())
    for tap, e in results.items():
        assert (e.tap, e.target, e.target_name, e.baseline) == (tap, target, "abcd"[target], baseline)
        assert abs(e.values.sum() - (e.full_value - e.base_value)) < 1e-5
        assert abs(e.full_value - float(probs[target])) < 1e-5  # forward_from agrees with forward
        assert abs(e.probability - float(probs[target])) < 1e-9
        assert (e.depth, e.requested_depth) == (EFFECTIVE_DEPTH_AT_4[tap], 4)
        assert e.evaluations == tree_evaluations(e.depth) + 1
        assert e.map.shape == (32, 32) and abs(float(e.map.sum(dtype=np.float64)) - e.values.sum()) < 1e-5
        cover = np.zeros((32, 32), dtype=int)
        for top, left, bottom, right in e.boxes:
            cover[top:bottom, left:right] += 1
        assert (cover == 1).all()


def test_layer_two_regions_equal_brute_force_shapley(net):
    image = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(2))
    e = LayerDnCShap(net, "b2", depth=1).attribute(image)
    with torch.no_grad():
        taps = net.forward_taps(image[None])

    @torch.no_grad()
    def v(top_present: bool, bottom_present: bool) -> float:
        edited = taps["b2"].clone()
        if not top_present:
            edited[:, :, :4] = 0
        if not bottom_present:
            edited[:, :, 4:] = 0
        return float(torch.softmax(net.forward_from("b2", edited, taps).double(), dim=1)[0, e.target])

    top = 0.5 * (v(True, False) - v(False, False)) + 0.5 * (v(True, True) - v(False, True))
    bottom = 0.5 * (v(False, True) - v(False, False)) + 0.5 * (v(True, True) - v(True, False))
    np.testing.assert_allclose(e.values, [top, bottom], atol=1e-6)
    assert e.boxes.tolist() == [[0, 0, 16, 32], [16, 0, 32, 32]]


def test_layer_explainer_rejects_bad_arguments(net):
    with pytest.raises(ValueError):
        LayerDnCShap(net, "logits")
    with pytest.raises(ValueError):
        LayerDnCShap(net, "b1", baseline="blur")


def test_kept_values_keeps_the_top_of_abs_of_both_signs():
    values = np.array([[-10.0, -1.0, 0.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0, 7.0]])
    kept = kept_values(values, percentile=70)  # 70th percentile of |values| is 5.3; -10 is negative evidence
    assert kept.mask.tolist() == [[False, True, True, True, True], [True, True, True, False, False]]
    with_nan = kept_values(np.array([np.nan, -3.0, 1.0, 2.0]), percentile=50)  # NaN: not analysed, never drawn
    assert with_nan.mask.tolist() == [True, False, True, False]


def test_figures_are_written(net, tmp_path):
    image = torch.rand(1, 32, 32)
    e = DnCShap(net, depth=4).attribute(image)
    overlay = save_overlay(image, e, tmp_path / "figs" / "overlay.png")
    grid = save_layer_grid(image, explain_layers(net, image, ("b1", "b3"), depth=3), tmp_path / "grid.png")
    for path in (overlay, grid):
        with Image.open(path) as png:
            assert png.format == "PNG" and png.size[0] > 100
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["figs", "grid.png", "overlay.png"]  # no temp files left
    with pytest.raises(ValueError):
        save_overlay(torch.rand(1, 16, 16), e, tmp_path / "bad.png")
