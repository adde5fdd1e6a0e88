"""``emoadapt adapt`` end to end on generated fixtures, with distillation from a teacher."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model
from PIL import Image

from emoadapt.cli import main
from emoadapt.data.labels import FER_CLASSES, IER_CLASSES
from emoadapt.models.emonet import EmoNet, EmoNetConfig
from emoadapt.training.checkpoint import read_metadata, save_weights


def _image(path: Path, rng, mode="RGB", size=32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 255, (size, size, channels), dtype=np.uint8)
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode).save(path)


@pytest.fixture
def fixtures(tmp_path):
    rng = np.random.default_rng(0)
    for label in FER_CLASSES:  # FER2013 layout: train/<class>/Training_*.jpg, test/<class>/PrivateTest_*.jpg
        for i in range(2):
            _image(tmp_path / "fer" / "train" / label / f"Training_{label}{i}.jpg", rng, "L", 48)
        _image(tmp_path / "fer" / "test" / label / f"PrivateTest_{label}.jpg", rng, "L", 48)
    for label in IER_CLASSES:
        for i in range(7):
            _image(tmp_path / "target" / label / f"{i}.png", rng)
    for i in range(5):
        _image(tmp_path / "unlabelled" / "sub" / f"{i}.jpg", rng)
    (tmp_path / "unlabelled" / "broken.jpg").write_bytes(b"not an image")
    fer = EmoNet(EmoNetConfig(num_classes=7, in_chans=1, input_size=32, width=0.125, batch_norm=True, head="pool",
                              hidden=(16,)))
    save_weights(tmp_path / "fer.safetensors", fer, fer.config.to_dict(), extra={"classes": list(FER_CLASSES)})
    save_tiny_model(tmp_path / "teacher.safetensors")
    return tmp_path


def _adapt_args(root: Path, *extra: str) -> list[str]:
    return ["adapt", "--target", str(root / "target"), "--layout", "folder", "--source", str(root / "fer"),
            "--out", str(root / "run"), "--init", str(root / "fer.safetensors"), "--input-size", "32",
            "--epochs", "2", "--batch-size", "4", "--source-limit", "10", "--threads", "1", "--no-progress", *extra]


def test_adapt_with_distillation_writes_a_model_that_records_its_teacher(fixtures, one_thread):
    with pytest.warns(UserWarning, match="broken.jpg"):
        rc = main(_adapt_args(fixtures, "--teacher", str(fixtures / "teacher.safetensors"), "--kd-weight", "2",
                              "--views", "3", "--unlabelled", str(fixtures / "unlabelled"), "--discrepancy", "mmd"))
    assert rc == 0
    extra = read_metadata(fixtures / "run" / "best.safetensors")["extra"]
    assert extra["adapt"]["kd_weight"] == 2.0 and extra["adapt"]["teacher"].endswith("teacher.safetensors")
    assert extra["classes"] == list(IER_CLASSES)
    assert len(json.loads((fixtures / "run" / "split.json").read_text())["assignments"]) == 28


def test_distillation_without_a_teacher_is_a_clear_error(fixtures, capsys, one_thread):
    rc = main(_adapt_args(fixtures, "--kd-weight", "1"))
    err = capsys.readouterr().err
    assert rc != 0 and "--teacher" in err and "Traceback" not in err
