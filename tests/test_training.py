"""Training loop: it learns, it checkpoints atomically, and --resume equals an uninterrupted run."""

import json

import numpy as np
import torch

from emoadapt.models.emonet import EmoNet, EmoNetConfig
from emoadapt.models.registry import load_model
from emoadapt.training.loop import TrainConfig, class_weights, fit, lr_at

CONFIG = EmoNetConfig(num_classes=2, in_chans=1, input_size=32, width=0.125, batch_norm=True, head="pool", hidden=(16,))


def _toy_data(n=96, seed=0):
    """Class 1 has a bright square in the top-left corner, class 0 in the bottom-right."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, 32, 32, 1), dtype=np.uint8)
    labels = np.arange(n) % 2
    images[labels == 1, 2:12, 2:12] = 250
    images[labels == 0, 20:30, 20:30] = 250
    return images, labels.astype(np.int64)


def _train(out, epochs, resume=False, stop_after=None):
    torch.manual_seed(123)
    model = EmoNet(CONFIG)
    if resume:  # a new process would build a fresh model and load the checkpoint into it
        torch.manual_seed(999)
        model = EmoNet(CONFIG)
    x, y = _toy_data()
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, warmup_epochs=0.5, augment=True, seed=7, threads=1)
    state = fit(model, x, y, x[:32], y[:32], ("a", "b"), cfg, out, model_config=CONFIG.to_dict(),
                resume=resume, stop_after_epochs=stop_after, progress=False)
    return model, state


def test_resume_after_a_kill_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    full, full_state = _train(tmp_path / "full", epochs=3)
    _train(tmp_path / "killed", epochs=3, stop_after=1)
    assert json.loads((tmp_path / "killed" / "log.jsonl").read_text().splitlines()[0])["epoch"] == 1
    resumed, resumed_state = _train(tmp_path / "killed", epochs=3, resume=True)
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert full_state["history"][-1]["val_acc"] == resumed_state["history"][-1]["val_acc"]
    assert len((tmp_path / "killed" / "log.jsonl").read_text().splitlines()) == 3


def test_training_learns_a_separable_toy_problem_and_ships_the_best_epoch(tmp_path):
    _, state = _train(tmp_path / "run", epochs=4)
    assert state["best"]["val_acc"] >= 0.9
    model, extra = load_model(tmp_path / "run" / "best.safetensors")
    assert extra["classes"] == ["a", "b"] and extra["epoch"] == state["best"]["epoch"]
    assert not list(tmp_path.glob("run/.*"))  # no temporary files left behind


def test_resume_refuses_other_settings(tmp_path):
    import pytest

    _train(tmp_path / "run", epochs=1)
    with pytest.raises(ValueError, match="other settings"):
        _train(tmp_path / "run", epochs=2, resume=True)


def test_schedule_warms_up_then_decays_to_the_floor():
    values = [lr_at(s, 100, 10, 1.0, 0.01) for s in range(100)]
    assert values[0] == 0.1 and values[9] == 1.0
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert abs(values[-1] - 0.01) < 1e-3


def test_class_weights_average_to_one_per_sample():
    labels = np.array([0] * 90 + [1] * 10)
    for kind in ("sqrt", "balanced"):
        w = class_weights(labels, 2, kind)
        assert w[1] > w[0]
        assert abs(float((w[torch.as_tensor(labels)]).mean()) - 1) < 1e-6
    assert class_weights(labels, 2, "none") is None
