"""Distillation from a teacher (research code in benchmarks/research/, which trained no shipped
model): a fixed bank of views, online function matching with mixup, hints on the dense layer and on
feature maps. The product's ``emoadapt adapt`` has none of it (tests/test_adapt_cli.py)."""

import sys
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from research.bank import distillation_bank  # noqa: E402
from research.config import DistillConfig, build_student, distillation_loss  # noqa: E402
from research.distill import OnlineTeacher, crops, mixed_views, online_teacher  # noqa: E402
from research.hints import spatial_pairs, teacher_taps  # noqa: E402
from research.train import adapt_with_teacher  # noqa: E402

from emoadapt.adapt.train import adapt  # noqa: E402
from emoadapt.models.emonet import EmoNet, EmoNetConfig  # noqa: E402
from emoadapt.data.labels import FER_CLASSES  # noqa: E402
from emoadapt.training.checkpoint import load_tensors, save_weights  # noqa: E402
from emoadapt.training.metrics import predict_arrays  # noqa: E402

from test_adapt_train import FER_TINY, _arrays, fer_checkpoint  # noqa: E402,F401 (fixture)
from test_adapt_train import _config as _adapt_config  # noqa: E402


def _config(path, **changes) -> DistillConfig:
    """The adaptation tests' configuration as a :class:`DistillConfig`, with ``changes``."""
    return replace(DistillConfig(**asdict(_adapt_config(path))), **changes)


def _train(train, val, source, cfg, out, teacher=None, **options):
    """A run with the teacher (research trainer), or without one (emoadapt's own ``adapt``)."""
    if teacher is None:
        return adapt(train, val, source, cfg, out, progress=False, **options)
    return adapt_with_teacher(train, val, source, cfg, out, teacher=teacher, progress=False, **options)


def _last_model(cfg, run_dir):
    """The network as the run's last epoch left it (``last.safetensors`` is a training state)."""
    model = build_student(cfg)
    model.load_state_dict(load_tensors(run_dir / "last.safetensors", prefix="model."))
    return model.eval()


def test_distillation_loss_is_zero_only_when_student_matches_teacher():
    teacher = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 0.0, 0.0]])
    assert float(distillation_loss(teacher.clone(), teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(teacher.flip(1), teacher, 2.0)) > 0.1
    assert float(distillation_loss(teacher[:0], teacher[:0], 2.0)) == 0.0


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


PERMUTATION = np.array([1, 2, 3, 0])  # what the disagreeing teacher answers for each true class


def _follow_data():
    """(train, val, source) of the 'follows the teacher' tests."""
    return _arrays(96, 3, 4, 1), _arrays(32, 3, 4, 2), _arrays(40, 1, 7, 3)


def _agreement(cfg, run_dir, val) -> float:
    """How often the run's last model answers what the disagreeing teacher answers on ``val``."""
    return float((predict_arrays(_last_model(cfg, run_dir), val[0]).argmax(1) == PERMUTATION[val[1]]).mean())


@pytest.fixture(scope="module")
def plain_agreement(tmp_path_factory):
    """The baseline both distillation modes must beat: the same student trained on the labels alone
    (4 epochs, no teacher), trained once for the bank and the online test."""
    root = tmp_path_factory.mktemp("plain")
    torch.manual_seed(0)  # the fer_checkpoint fixture's network, saved once for this module
    save_weights(root / "fer.safetensors", EmoNet(FER_TINY).eval(), FER_TINY.to_dict(),
                 extra={"classes": list(FER_CLASSES)})
    train, val, source = _follow_data()
    cfg = _config(root / "fer.safetensors", epochs=4, discrepancy="none", alpha=0.0)
    _train(train, val, source, cfg, root / "run")
    return _agreement(cfg, root / "run", val)


def test_the_student_follows_the_teacher_when_distillation_weighs_more(tmp_path, fer_checkpoint, plain_agreement):
    path, _ = fer_checkpoint
    train, val, source = _follow_data()
    bank = distillation_bank(BandTeacher(PERMUTATION), train[0], val[0], views=2, seed=0, student_size=32)
    cfg = _config(path, epochs=4, discrepancy="none", alpha=0.0, kd_weight=8.0, teacher="band")
    _train(train, val, source, cfg, tmp_path / "kd", bank)
    agreement = {"plain": plain_agreement, "kd": _agreement(cfg, tmp_path / "kd", val)}
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

    before = hint_error(build_student(cfg).eval())
    _train(train, val, source, cfg, tmp_path / "run", bank)
    assert hint_error(_last_model(cfg, tmp_path / "run")) < 0.7 * before  # 0.53 -> 0.28 when measured
    narrow = distillation_bank(BandTeacher([0, 1, 2, 3], hidden=8), train[0], val[0], views=2, seed=0, student_size=32)
    with pytest.raises(ValueError, match="equal widths"):
        _train(train, val, source, cfg, tmp_path / "narrow", narrow)


def test_a_hint_on_the_teachers_conv_features_needs_and_gets_a_new_dense_layer(tmp_path, fer_checkpoint):
    path, fer = fer_checkpoint
    train, val, source = _arrays(32, 3, 4, 1), _arrays(16, 3, 4, 2), _arrays(40, 1, 7, 3)
    bank = distillation_bank(BandTeacher([0, 1, 2, 3]), train[0], val[0], views=2, seed=0, student_size=32)
    cfg = _config(path, epochs=1, discrepancy="none", alpha=0.0, kd_hint_weight=1.0, kd_hint_tap="features",
                  teacher="band", dense=32)
    student = build_student(cfg)
    assert student.dense[-2].out_features == 32 and student.classifier.in_features == 32
    torch.testing.assert_close(student.blocks[1][0].weight, fer.blocks[1][0].weight)  # conv layers kept
    state = _train(train, val, source, cfg, tmp_path / "run", bank)
    assert np.isfinite(state["history"][0]["train_loss"])


def test_the_research_options_are_checked_and_the_product_ignores_them(tmp_path, fer_checkpoint):
    from emoadapt.adapt.config import Protocol, protocol
    from research.config import check_distill

    path, _ = fer_checkpoint
    assert protocol(DistillConfig(kd_weight=1.0), None) is Protocol.JOINT
    with pytest.raises(ValueError, match="kd_mode=online"):
        check_distill(DistillConfig(kd_spatial_weight=1.0))
    with pytest.raises(ValueError, match="freeze=none"):
        adapt_with_teacher(_arrays(8, 3, 4, 1), _arrays(8, 3, 4, 2), _arrays(8, 1, 7, 3),
                           _config(path, kd_weight=1.0, freeze="features"), tmp_path / "run", teacher={},
                           progress=False)


def test_distillation_without_a_bank_is_refused(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    with pytest.raises(ValueError, match="teacher bank"):
        adapt_with_teacher(_arrays(8, 3, 4, 1), _arrays(8, 3, 4, 2), _arrays(8, 1, 7, 3),
                           _config(path, kd_weight=1.0), tmp_path / "run", teacher=None, progress=False)


def _flat_pool(count: int = 4, side: int = 40) -> np.ndarray:
    """Image i is one flat grey value 60·i: any crop of it keeps that value."""
    return np.stack([np.full((side, side, 3), 60 * i, np.uint8) for i in range(count)])


def test_crops_cut_the_same_box_at_both_sizes():
    image = np.zeros((1, 40, 40, 3), np.uint8)
    image[0, :20, :20] = 255  # a bright top-left quarter
    boxes = np.array([[0.0, 0.0, 0.5, 0.5, 0.0], [0.5, 0.5, 1.0, 1.0, 0.0]])  # that quarter, the opposite one
    big, small = crops(np.repeat(image, 2, axis=0), boxes, (32, 8))
    assert big.shape == (2, 3, 32, 32) and small.shape == (2, 3, 8, 8)
    for views in (big, small):  # (the bilinear filter blurs the box's edge a little)
        assert float(views[0].mean()) > 0.9 and float(views[1].mean()) < 0.1


def test_mixed_views_blend_two_crops_and_agree_across_sizes():
    pool, rng = _flat_pool(), np.random.default_rng(0)
    plain_big, plain_small = mixed_views(pool, 50, rng, 0.0, (24, 8))
    levels = {round(float(v) * 255) for v in plain_big.mean(dim=(1, 2, 3))}
    assert levels <= {0, 60, 120, 180}  # no blend: one flat image per view
    big, small = mixed_views(pool, 200, rng, 1.0, (24, 8))
    assert big.shape == (200, 3, 24, 24) and small.shape == (200, 3, 8, 8)
    values = big.mean(dim=(1, 2, 3)) * 255
    off_level = (values - (values / 60).round() * 60).abs()
    assert float((off_level > 5).float().mean()) > 0.5  # most blends fall between the flat levels
    torch.testing.assert_close(big.mean(dim=(1, 2, 3)), small.mean(dim=(1, 2, 3)), atol=1e-4, rtol=0)


def test_the_student_follows_an_online_teacher_that_disagrees_with_every_label(tmp_path, fer_checkpoint,
                                                                                 plain_agreement):
    path, _ = fer_checkpoint
    train, val, source = _follow_data()
    band = BandTeacher(PERMUTATION)
    teacher = OnlineTeacher(lambda x: band.forward_taps(x, ("pre_logits", "logits")), 32, train[0], val[0])
    cfg = _config(path, epochs=4, discrepancy="none", alpha=0.0, kd_weight=8.0, teacher="band", kd_mode="online",
                  mixup=0.0)
    _train(train, val, source, cfg, tmp_path / "kd", teacher)
    agreement = {"plain": plain_agreement, "kd": _agreement(cfg, tmp_path / "kd", val)}
    assert agreement["kd"] > agreement["plain"] + 0.3, agreement


def test_the_kd_mode_must_match_what_teaches(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    train, val, source = _arrays(8, 3, 4, 1), _arrays(8, 3, 4, 2), _arrays(8, 1, 7, 3)
    band = BandTeacher([0, 1, 2, 3])
    teacher = OnlineTeacher(lambda x: band.forward_taps(x, ("pre_logits", "logits")), 32, train[0], val[0])
    with pytest.raises(ValueError, match="teacher bank"):
        _train(train, val, source, _config(path, kd_weight=1.0), tmp_path / "bank", teacher)
    with pytest.raises(ValueError, match="OnlineTeacher"):
        _train(train, val, source, _config(path, kd_weight=1.0, kd_mode="online"), tmp_path / "online",
               {"target_views": train[0][None]})
    with pytest.raises(ValueError, match="kd_mode"):
        _train(train, val, source, _config(path, kd_weight=1.0, kd_mode="offline"), tmp_path / "typo", teacher)


@pytest.mark.parametrize("in_chans", [3, 1])
def test_the_onnx_teacher_answers_like_the_pytorch_model(tmp_path, in_chans):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = EmoNet(EmoNetConfig(in_chans=in_chans, input_size=32, width=0.125, batch_norm=True, head="pool",
                                hidden=(16,), num_classes=4)).eval()
    images = _arrays(6, 3, 4, 1)[0]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    fast = online_teacher(model, images, images[:0], cache_dir=tmp_path).predict(x)
    slow = online_teacher(model, images, images[:0], use_onnx=False).predict(x)
    assert fast["pre_logits"].shape == (6, 16) and fast["logits"].shape == (6, 4)
    for key in ("pre_logits", "logits"):
        torch.testing.assert_close(fast[key], slow[key], atol=1e-4, rtol=1e-4)


def test_online_distillation_keeps_the_papers_source_and_discrepancy_terms(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    train, val, source = _arrays(16, 3, 4, 1), _arrays(8, 3, 4, 2), _arrays(12, 1, 7, 3)  # grey faces
    band = BandTeacher([0, 1, 2, 3])
    teacher = OnlineTeacher(lambda x: band.forward_taps(x, ("pre_logits", "logits")), 32, train[0], val[0])
    cfg = _config(path, epochs=2, discrepancy="mmd", alpha=0.5, kd_weight=1.0, kd_hint_weight=1.0, teacher="band",
                  kd_mode="online", mixup=0.5)
    state = _train(train, val, source, cfg, tmp_path / "run", teacher)
    assert len(state["history"]) == 2 and all(np.isfinite(h["train_loss"]) for h in state["history"])
    with pytest.raises(ValueError, match="pre_logits only"):
        _train(train, val, source, replace(cfg, kd_hint_tap="features"), tmp_path / "features", teacher)


def test_grey_students_and_teachers_see_luma_as_the_decoder_makes_it():
    from PIL import Image

    from emoadapt.data.transforms import rgb_to_grey, uint8_to_tensor

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    pillow = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in rgb])[:, None] / 255
    grey = rgb_to_grey(uint8_to_tensor(rgb)).numpy()
    np.testing.assert_allclose(grey, pillow, atol=1 / 255)
    assert float(np.abs(grey - uint8_to_tensor(rgb).mean(1, keepdim=True).numpy()).max()) > 0.05  # not the mean


def test_feature_hint_is_zero_for_a_matching_map_and_ignores_scale():
    from research.hints import FeatureHint

    hint = FeatureHint(3, 3)
    with torch.no_grad():  # identity regressor
        hint.regressor.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        hint.regressor.bias.zero_()
    student = torch.rand(2, 3, 2, 2) + 0.1
    teacher = student.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3) * 7.0  # 2× the grid, 7× the scale
    assert hint(student, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert hint(student, -teacher).item() == pytest.approx(4.0, abs=1e-5)  # opposite vectors: distance² 4


def _map_teacher(train, val):
    """BandTeacher plus a feature map ``map``: the view itself, pooled to 8 × 8 (N, 3, 8, 8)."""
    band = BandTeacher([0, 1, 2, 3])

    def predict(x):
        return {**band.forward_taps(x, ("pre_logits", "logits")),
                "map": torch.nn.functional.adaptive_avg_pool2d(x, 8)}
    return OnlineTeacher(predict, 32, train[0], val[0])


def test_feature_map_hint_trains_beside_the_student_and_resumes_exactly(tmp_path, fer_checkpoint):
    from emoadapt.training.checkpoint import load_tensors

    path, _ = fer_checkpoint
    train, val, source = _arrays(16, 3, 4, 1), _arrays(8, 3, 4, 2), _arrays(8, 1, 7, 3)
    cfg = _config(path, epochs=3, discrepancy="none", alpha=0.0, kd_weight=1.0, teacher="band", kd_mode="online",
                  mixup=0.5, kd_spatial_weight=2.0, kd_spatial="b2:map,merged:map")
    _train(train, val, source, cfg, tmp_path / "full", _map_teacher(train, val))
    _train(train, val, source, cfg, tmp_path / "killed", _map_teacher(train, val), stop_after_epochs=1)
    _train(train, val, source, cfg, tmp_path / "killed", _map_teacher(train, val), resume=True)
    full, killed = load_tensors(tmp_path / "full" / "last.safetensors"), load_tensors(tmp_path / "killed" / "last.safetensors")
    helper_keys = [k for k in full if k.startswith("helper.feature_hints.")]
    assert {k.split(".")[2] for k in helper_keys} == {"b2->map", "merged->map"}
    for key in full:  # student, optimizer and regressors all continue where the kill left them
        torch.testing.assert_close(full[key], killed[key], msg=key)
    assert not [k for k in load_tensors(tmp_path / "full" / "best.safetensors") if "feature_hints" in k]
    with pytest.raises(ValueError, match="feature map"):
        _train(train, val, source, replace(cfg, kd_spatial="pre_logits:map"), tmp_path / "flat",
               _map_teacher(train, val))
    with pytest.raises(ValueError, match="kd_mode=online"):
        _train(train, val, source, replace(cfg, kd_mode="bank"), tmp_path / "bank", {"target_views": train[0][None]})


def test_spatial_pairs_parse_and_name_each_teacher_map_once():
    assert spatial_pairs(" b3:s4, b4:s4 ,merged:s5") == [("b3", "s4"), ("b4", "s4"), ("merged", "s5")]
    assert teacher_taps("b3:s4,b4:s4,merged:s5") == ("s4", "s5")
    for bad in ("b4", "b4:", ":s4", " , "):
        with pytest.raises(ValueError):
            spatial_pairs(bad)

