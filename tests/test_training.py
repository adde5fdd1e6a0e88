"""Training loop: it learns, it checkpoints atomically, and --resume equals an uninterrupted run."""

import json
import warnings

import numpy as np
import pytest
import torch

from ddp_toy import CONFIG, toy_data  # the toy problem, shared with the DDP worker
from emoadapt.models.emonet import EmoNet
from emoadapt.models.registry import load_model
from emoadapt.training.checkpoint import load_tensors
from emoadapt.training.loop import TrainConfig, class_weights, fit, lr_at

def _train(out, epochs, resume=False, stop_after=None, ema=0.0):
    torch.manual_seed(123)
    model = EmoNet(CONFIG)
    if resume:  # a new process would build a fresh model and load the checkpoint into it
        torch.manual_seed(999)
        model = EmoNet(CONFIG)
    x, y = toy_data(96)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, warmup_epochs=0.5, augment=True, seed=7, threads=1, ema=ema)
    state = fit(model, x, y, x[:32], y[:32], ("a", "b"), cfg, out, model_config=CONFIG.to_dict(),
                resume=resume, stop_after_epochs=stop_after, progress=False)
    return model, state


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 4-epoch run, shared by the tests that only read it: (model, state, run
    folder, warnings it raised)."""
    out = tmp_path_factory.mktemp("full") / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, state = _train(out, epochs=4)
    return model, state, out, list(caught)


def test_resume_after_a_kill_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, full_run):
    full, full_state, _, _ = full_run
    _train(tmp_path / "killed", epochs=4, stop_after=1)
    assert json.loads((tmp_path / "killed" / "log.jsonl").read_text().splitlines()[0])["epoch"] == 1
    resumed, resumed_state = _train(tmp_path / "killed", epochs=4, resume=True)
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert full_state["history"][-1]["val_acc"] == resumed_state["history"][-1]["val_acc"]
    assert len((tmp_path / "killed" / "log.jsonl").read_text().splitlines()) == 4


def test_training_learns_a_separable_toy_problem_and_ships_the_best_epoch(full_run):
    _, state, out, _ = full_run
    assert state["best"]["val_acc"] >= 0.9
    model, extra = load_model(out / "best.safetensors")
    assert extra["classes"] == ["a", "b"] and extra["epoch"] == state["best"]["epoch"]
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_resume_refuses_other_settings(tmp_path):
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


def test_weight_average_follows_its_recursion_and_ramps_its_decay():
    from emoadapt.training.ema import WeightAverage

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.9)
    expected = 0.0
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        d = min(0.9, (1 + step) / (10 + step))  # 0.1, 0.18, 0.25, 0.31: the start weight fades fast
        expected = d * expected + (1 - d) * value
        average.update(model)
        assert average.tensors["weight"].item() == pytest.approx(expected)
    with average.applied(model):
        assert model.weight.item() == pytest.approx(expected)
    assert model.weight.item() == 4.0  # the trained weights come back
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_ema_run_ships_the_average_keeps_the_trained_weights_and_resumes_exactly(tmp_path):
    full, full_state = _train(tmp_path / "full", epochs=3, ema=0.9)
    record = full_state["history"][-1]
    assert {"val_acc", "val_acc_raw"} <= set(record) and full_state["best_raw"]["val_acc_raw"] >= record["val_acc_raw"]
    shipped, extra = load_model(tmp_path / "full" / "best.safetensors")
    trained, trained_extra = load_model(tmp_path / "full" / "best_raw.safetensors")
    assert extra["weights"] == "ema 0.9" and trained_extra["weights"] == "trained"
    differs = [not torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), trained.state_dict().values())
               if a.is_floating_point()]
    assert any(differs)  # the shipped file is the average, not a copy of the trained weights

    _train(tmp_path / "killed", epochs=3, stop_after=1, ema=0.9)
    resumed, resumed_state = _train(tmp_path / "killed", epochs=3, resume=True, ema=0.9)
    assert [r["val_acc"] for r in resumed_state["history"]] == [r["val_acc"] for r in full_state["history"]]
    for name in ("last.safetensors", "best.safetensors"):  # the average survived the kill
        a = load_tensors(tmp_path / "full" / name)
        b = load_tensors(tmp_path / "killed" / name)
        assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a) == (name == "last.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], msg=f"{name}: {key}")


def test_one_pass_gives_the_plain_and_the_flip_averaged_probabilities():
    from emoadapt.training.metrics import predict_arrays, predict_plain_and_flip

    torch.manual_seed(0)
    model = EmoNet(CONFIG)
    images, _ = toy_data(10)
    plain, flipped = predict_plain_and_flip(model, images, batch_size=4)
    assert plain.shape == flipped.shape == (10, 2)
    np.testing.assert_array_equal(plain, predict_arrays(model, images, batch_size=4))
    np.testing.assert_array_equal(flipped, predict_arrays(model, images, batch_size=4, tta_flip=True))
    mirrored = predict_arrays(model, np.ascontiguousarray(images[:, :, ::-1]), batch_size=4)
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(plain, flipped)  # the mirror image changes the answer of this net
    assert predict_plain_and_flip(model, images, with_flip=False)[1] is None


def test_a_collapsed_run_warns_once_and_a_healthy_one_does_not(tmp_path, full_run):
    healthy_warnings = full_run[3]
    assert not [w for w in healthy_warnings if "predicts one class" in str(w.message)]
    torch.manual_seed(123)
    model = EmoNet(CONFIG)
    with torch.no_grad():  # every dense unit off: the classifier sees zeros, whatever the image
        model.dense[-2].weight.zero_()
        model.dense[-2].bias.fill_(-1e3)
    x, y = toy_data(96)
    cfg = TrainConfig(epochs=6, batch_size=16, lr=3e-3, warmup_epochs=0.5, augment=False, seed=7, threads=1)
    with pytest.warns(RuntimeWarning, match="predicts one class") as caught:
        state = fit(model, x, y, x[:32], y[:32], ("a", "b"), cfg, tmp_path / "dead", model_config=CONFIG.to_dict(),
                    progress=False)
    assert [r["val_classes_predicted"] for r in state["history"]] == [1] * 6
    assert len([w for w in caught if "predicts one class" in str(w.message)]) == 1
    assert "epochs 1-5" in str(caught[0].message)
