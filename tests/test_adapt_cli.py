"""``emoadapt adapt`` end to end on generated fixtures, with distillation from a teacher."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model, write_faces_and_target, write_image

from emoadapt.cli import main
from emoadapt.data.labels import FER_CLASSES, IER_CLASSES
from emoadapt.training.checkpoint import read_metadata


@pytest.fixture
def fixtures(tmp_path):
    rng = np.random.default_rng(0)
    write_faces_and_target(tmp_path, rng)
    for i in range(5):
        write_image(tmp_path / "unlabelled" / "sub" / f"{i}.jpg", rng)
    (tmp_path / "unlabelled" / "broken.jpg").write_bytes(b"not an image")
    save_tiny_model(tmp_path / "fer.safetensors", in_chans=1, classes=FER_CLASSES)
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


def test_adapt_with_an_online_teacher_and_mixup(fixtures, one_thread):
    with pytest.warns(UserWarning, match="broken.jpg"):
        rc = main(_adapt_args(fixtures, "--teacher", str(fixtures / "teacher.safetensors"), "--kd-weight", "1",
                              "--kd-hint-weight", "1", "--kd-mode", "online", "--mixup", "1",
                              "--unlabelled", str(fixtures / "unlabelled"), "--discrepancy", "none", "--alpha", "0"))
    assert rc == 0
    adapt_config = read_metadata(fixtures / "run" / "best.safetensors")["extra"]["adapt"]
    assert adapt_config["kd_mode"] == "online" and adapt_config["mixup"] == 1.0


def test_adapt_online_with_feature_map_hints_and_a_weight_average(fixtures, one_thread):
    with pytest.warns(UserWarning, match="broken.jpg"):
        rc = main(_adapt_args(fixtures, "--teacher", str(fixtures / "teacher.safetensors"), "--kd-weight", "1",
                              "--kd-mode", "online", "--kd-spatial-weight", "1", "--kd-spatial", "b3:b3,merged:merged",
                              "--ema", "0.9", "--unlabelled", str(fixtures / "unlabelled"), "--discrepancy", "none",
                              "--alpha", "0"))
    assert rc == 0
    extra = read_metadata(fixtures / "run" / "best.safetensors")["extra"]
    assert extra["adapt"]["kd_spatial_weight"] == 1.0 and extra["weights"] == "ema 0.9"
    assert (fixtures / "run" / "best_raw.safetensors").exists()
    log = [json.loads(line) for line in (fixtures / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all("val_acc_raw" in row for row in log)
