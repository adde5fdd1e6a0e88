"""Adaptation trainer on tiny synthetic data: both protocols run, heads and channels are set up
correctly, and a killed run resumes to the same result."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from emoadapt.adapt.config import AdaptConfig, lam_at
from emoadapt.adapt.start import build_start_model, grey_to_rgb
from emoadapt.adapt.train import adapt
from emoadapt.data.labels import FER_CLASSES, fer_to_ier_indices
from emoadapt.models.emonet import EmoNet, EmoNetConfig
from emoadapt.training.checkpoint import save_weights

FER_TINY = EmoNetConfig(num_classes=7, in_chans=1, input_size=32, width=0.125, batch_norm=True, head="pool", hidden=(16,))


@pytest.fixture
def fer_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = EmoNet(FER_TINY).eval()
    path = tmp_path / "fer.safetensors"
    save_weights(path, model, FER_TINY.to_dict(), extra={"classes": list(FER_CLASSES)})
    return path, model


def _arrays(n, channels, classes, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 80, size=(n, 32, 32, channels), dtype=np.uint8)
    for k in range(classes):  # a class-specific bright horizontal band (mirroring keeps the class)
        images[labels == k, 8 * (k % 4):8 * (k % 4) + 6, :] = 230
    return images, labels.astype(np.int64)


def _config(path, **changes):
    return replace(AdaptConfig(init=str(path), input_size=32, epochs=3, batch_size=8, lr=3e-3, threads=1,
                               backbone_lr_scale=1.0, warmup_epochs=0.5), **changes)


@pytest.mark.parametrize("freeze", ["none", "features"])
@pytest.mark.parametrize("discrepancy", ["mmd", "coral", "none"])
def test_both_protocols_train_and_write_checkpoints(tmp_path, fer_checkpoint, freeze, discrepancy):
    path, _ = fer_checkpoint
    state = adapt(_arrays(48, 3, 4, 1), _arrays(16, 3, 4, 2), _arrays(40, 1, 7, 3),
                  _config(path, freeze=freeze, discrepancy=discrepancy), tmp_path / "run", progress=False)
    assert len(state["history"]) == 3 and (tmp_path / "run" / "best.safetensors").exists()
    assert all(np.isfinite(h["train_loss"]) for h in state["history"])


def test_discrepancy_on_several_layers(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    state = adapt(_arrays(32, 3, 4, 1), _arrays(16, 3, 4, 2), _arrays(40, 1, 7, 3),
                  _config(path, epochs=1, layer="b3,merged,pre_logits"), tmp_path / "run", progress=False)
    assert np.isfinite(state["history"][0]["train_loss"])


def test_full_fine_tuning_learns_the_target_task(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    train = _arrays(96, 3, 4, 1)
    state = adapt(train, train, _arrays(40, 1, 7, 3), _config(path, epochs=6, discrepancy="mmd"),
                  tmp_path / "run", progress=False)
    assert state["best"]["val_acc"] >= 0.6  # chance is 0.25


def test_a_killed_cached_run_resumes_to_the_same_result(tmp_path, fer_checkpoint):
    path, _ = fer_checkpoint
    data = (_arrays(48, 3, 4, 1), _arrays(16, 3, 4, 2), _arrays(40, 1, 7, 3))
    cfg = _config(path, freeze="features", epochs=4)
    full = adapt(*data, cfg, tmp_path / "full", progress=False)
    adapt(*data, cfg, tmp_path / "killed", progress=False, stop_after_epochs=2)
    resumed = adapt(*data, cfg, tmp_path / "killed", progress=False, resume=True)
    assert [h["train_loss"] for h in full["history"]] == pytest.approx([h["train_loss"] for h in resumed["history"]])


def test_mapped_head_starts_from_the_fer_rows(fer_checkpoint):
    path, fer = fer_checkpoint
    model = build_start_model(_config(path, head="mapped", rgb=False)).eval()
    rows = [FER_CLASSES.index(c) for c in ("happy", "sad", "disgust", "angry")]
    torch.testing.assert_close(model.classifier.weight, fer.classifier.weight[rows])
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), fer(x)[:, rows])


def test_grey_to_rgb_gives_the_grey_output_on_grey_rgb_images(fer_checkpoint):
    _, fer = fer_checkpoint
    rgb = grey_to_rgb(fer).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rgb(x.repeat(1, 3, 1, 1)), fer(x), atol=1e-5, rtol=1e-4)


def test_source_labels_map_onto_ier_and_the_lambda_ramp():
    fer = np.array([FER_CLASSES.index(c) for c in ("angry", "disgust", "fear", "happy", "neutral", "sad")])
    assert fer_to_ier_indices(fer).tolist() == [3, 2, -1, 0, -1, 1]
    cfg = AdaptConfig(lam=2.0)
    assert lam_at(0.0, cfg) == 0 and lam_at(1.0, cfg) == pytest.approx(2.0, abs=1e-3)
    assert lam_at(0.3, replace(cfg, lam_schedule="constant")) == 2.0


def test_the_protocol_follows_from_the_configuration_alone():
    from emoadapt.adapt.config import ConfigError, Protocol, protocol

    cfg = AdaptConfig()
    assert protocol(cfg, None) is Protocol.JOINT
    assert protocol(replace(cfg, freeze="features"), "features") is Protocol.CACHED
    assert set(Protocol) == {Protocol.JOINT, Protocol.CACHED}  # distillation is research code (benchmarks/research)
    with pytest.raises(ConfigError, match="discrepancy must be mmd, linear-mmd, coral or none"):
        protocol(replace(cfg, discrepancy="mdd"), None)


@pytest.mark.parametrize("freeze", ["none", "features"])
def test_fusionnet_trains_with_both_protocols(tmp_path, freeze, one_thread):
    """FusionNet has the feature/head interface of the other models: `emoadapt adapt --init` a
    FusionNet file trains it end to end (joint) or on cached pooled features (head only)."""
    from conftest import save_tiny_affect_model

    from emoadapt.models.registry import load_model

    path = save_tiny_affect_model(tmp_path / "fusion.safetensors")
    before, _ = load_model(path)
    cfg = _config(path, input_size=64, epochs=1, freeze=freeze, discrepancy="coral", lam=0.5)
    arrays = [(np.repeat(np.repeat(x, 2, 1), 2, 2), y) for x, y in (_arrays(16, 3, 4, 1), _arrays(8, 3, 4, 2))]
    source = _arrays(16, 1, 7, 3)
    state = adapt(*arrays, (np.repeat(np.repeat(source[0], 2, 1), 2, 2), source[1]), cfg, tmp_path / "run",
                  progress=False)
    assert state["epoch"] == 1
    after, _ = load_model(tmp_path / "run" / "best.safetensors")
    changed = {name for name, value in after.state_dict().items()
               if not torch.equal(value, before.state_dict()[name])}
    assert any(name.startswith("classifier") for name in changed)
    assert any(name.startswith("branches.scene") for name in changed) == (freeze == "none")


def test_lp_ft_starts_from_the_probe_and_trains_without_source_faces(tmp_path, one_thread):
    """--head probe (LP-FT): before fine-tuning, the fresh linear layer computes the probe's decision
    function (StandardScaler + LogisticRegression folded into it) on the flip-averaged frozen
    features; source_limit 0 trains on target images alone (no source faces in the batches)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from emoadapt.adapt.config import ConfigError, check
    from emoadapt.adapt.probe import fit_probe, frozen_features, probe_head

    cfg = _config("imagenet-lite0", head="probe", bottleneck=0, source_limit=0, alpha=0.0, discrepancy="none",
                  epochs=1)
    model = build_start_model(cfg)
    images, labels = _arrays(24, 3, 4, 1)
    features = frozen_features(model, images)
    weight, bias, c = fit_probe(features, labels)
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(features, labels)
    np.testing.assert_allclose(features @ weight.T + bias, reference.decision_function(features), atol=1e-6)
    probe_head(model, images, labels)
    layer = model.classifier[-1]
    np.testing.assert_allclose(layer(torch.from_numpy(features)).detach().numpy(), features @ weight.T + bias,
                               rtol=1e-4, atol=1e-4)
    state = adapt((images, labels), _arrays(8, 3, 4, 2), (np.zeros((0, 32, 32, 1), np.uint8), np.zeros(0, np.int64)),
                  cfg, tmp_path / "run", progress=False, model=model)
    assert state["epoch"] == 1 and np.isfinite(state["history"][0]["train_loss"])
    with pytest.raises(ConfigError, match="source_limit 0"):
        check(replace(cfg, alpha=0.5))
    with pytest.raises(ConfigError, match="--bottleneck 0"):
        probe_head(build_start_model(replace(cfg, bottleneck=16)), images, labels)
