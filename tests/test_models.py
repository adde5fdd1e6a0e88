"""Registry-driven contract tests for every model preset and both architectures."""

from dataclasses import replace

import pytest
import torch

from emoadapt.models.emonet import EmoNet, EmoNetConfig
from emoadapt.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from emoadapt.models.registry import build_from_config, create_model, get_preset, list_models, load_model
from emoadapt.training.checkpoint import save_weights

TINY = EmoNetConfig(num_classes=4, in_chans=1, input_size=32, width=0.125, batch_norm=True, head="pool", hidden=(16,))


def test_paper_preset_has_the_papers_parameter_count_and_runs():
    model = create_model("paper")
    assert sum(p.numel() for p in model.parameters()) == 74_733_383
    model.eval()
    with torch.no_grad():
        taps = model.forward_taps(torch.rand(1, 3, 224, 224))
    assert taps["b5"].shape == (1, 512, 7, 7) and taps["merged"].shape == (1, 512, 7, 7)
    assert taps["b1"].shape == (1, 64, 112, 112)
    assert taps["logits"].shape == (1, 7)


@pytest.mark.parametrize("name", [n for n in list_models() if n != "paper"])
def test_every_preset_builds_and_gives_one_logit_per_class(name):
    preset = get_preset(name)
    model = create_model(name).eval()
    size, chans = preset.config["input_size"], preset.config["in_chans"]
    with torch.no_grad():
        out = model(torch.rand(2, chans, size, size))
    assert out.shape == (2, len(preset.classes))


@pytest.mark.parametrize("config", [TINY, EmoNetConfig(num_classes=3, in_chans=3, input_size=40, width=0.125,
                                                       head="flatten", hidden=(8, 8))])
def test_forward_from_every_tap_reproduces_the_full_forward(config):
    model = EmoNet(config).eval()
    x = torch.rand(2, config.in_chans, config.input_size, config.input_size)
    with torch.no_grad():
        taps = model.forward_taps(x)
        for tap in ("b1", "b2", "b3", "b4", "b5", "merged", "pre_logits"):
            torch.testing.assert_close(model.forward_from(tap, taps[tap], taps), taps["logits"])
        torch.testing.assert_close(model(x), taps["logits"])


def test_forward_from_broadcasts_a_batch_one_context():
    model = EmoNet(TINY).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        taps = model.forward_taps(x)
        edited = taps["b3"].repeat(3, 1, 1, 1)
        edited[1] = 0
        out = model.forward_from("b3", edited, taps)
    torch.testing.assert_close(out[0], taps["logits"][0])
    assert not torch.allclose(out[1], out[0])


def test_mobilenetv2_taps_and_forward_from():
    model = MobileNetV2(MobileNetV2Config(num_classes=4, input_size=64)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        taps = model.forward_taps(x)
        for tap in ("s1", "s2", "s3", "s4", "s5", "pre_logits"):
            torch.testing.assert_close(model.forward_from(tap, taps[tap], taps), taps["logits"])
    assert taps["s5"].shape == (2, 1280, 2, 2)


def test_mobilenetv2_imagenet_weights_load_when_the_wheel_is_installed():
    mobilenet = pytest.importorskip("emoadapt.models.mobilenetv2")
    try:
        path = mobilenet.imagenet_weights_file()
    except ValueError as exc:
        pytest.skip(str(exc))
    model = mobilenet.load_imagenet_backbone(MobileNetV2(MobileNetV2Config(num_classes=4)))
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.features[0][0].weight, state["features.0.0.weight"])


def test_reset_classifier_changes_the_outputs_and_the_config():
    model = EmoNet(replace(TINY, num_classes=7))
    model.reset_classifier(4)
    assert model.config.num_classes == 4
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 4)


def test_weights_round_trip_through_safetensors_in_fp16(tmp_path):
    model = EmoNet(TINY).eval()
    path = tmp_path / "w.safetensors"
    save_weights(path, model, model.config.to_dict(), extra={"classes": ["a", "b", "c", "d"]}, dtype=torch.float16)
    loaded, extra = load_model(path)
    assert extra["classes"] == ["a", "b", "c", "d"]
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).softmax(1), model(x).softmax(1), atol=2e-3, rtol=0)


def test_load_model_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_model(bad)


def test_unknown_preset_and_bad_configs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("nope")
    with pytest.raises(ValueError, match="input_size"):
        build_from_config({**TINY.to_dict(), "input_size": 16})


@pytest.mark.parametrize("in_side, out_side", [(112, 14), (24, 2), (3, 2), (6, 2), (7, 2), (5, 3), (12, 6)])
def test_branch_pooling_equals_adaptive_max_pooling(in_side, out_side):
    from emoadapt.models.emonet import _max_pool_to

    x = torch.randn(2, 3, in_side, in_side)
    torch.testing.assert_close(_max_pool_to(in_side, out_side)(x), torch.nn.AdaptiveMaxPool2d(out_side)(x))


def test_the_48_px_preset_uses_only_exportable_pooling():
    model = create_model("fer-cpu")
    assert not any(isinstance(m, torch.nn.AdaptiveMaxPool2d) for m in model.modules())
