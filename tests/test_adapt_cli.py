"""``emoadapt adapt`` end to end on generated fixtures: the paper's method (no teacher: distillation
is research code in benchmarks/research/, tests/test_research_distill.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_model, write_faces_and_target

from emoadapt.cli import main
from emoadapt.data.labels import FER_CLASSES, IER_CLASSES
from emoadapt.training.checkpoint import read_metadata


@pytest.fixture
def fixtures(tmp_path):
    rng = np.random.default_rng(0)
    write_faces_and_target(tmp_path, rng)
    save_tiny_model(tmp_path / "fer.safetensors", in_chans=1, classes=FER_CLASSES)
    return tmp_path


def _adapt_args(root: Path, *extra: str) -> list[str]:
    return ["adapt", "--target", str(root / "target"), "--layout", "folder", "--source", str(root / "fer"),
            "--out", str(root / "run"), "--init", str(root / "fer.safetensors"), "--input-size", "32",
            "--epochs", "2", "--batch-size", "4", "--source-limit", "10", "--threads", "1", "--no-progress", *extra]


def test_adapt_with_a_weight_average_writes_an_ier_model_split_and_log(fixtures, one_thread):
    assert main(_adapt_args(fixtures, "--discrepancy", "mmd", "--ema", "0.9")) == 0
    extra = read_metadata(fixtures / "run" / "best.safetensors")["extra"]
    assert extra["classes"] == list(IER_CLASSES) and extra["weights"] == "ema 0.9"
    assert extra["adapt"]["discrepancy"] == "mmd" and "kd_weight" not in extra["adapt"]
    assert len(json.loads((fixtures / "run" / "split.json").read_text())["assignments"]) == 28
    assert (fixtures / "run" / "best_raw.safetensors").exists()
    log = [json.loads(line) for line in (fixtures / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all("val_acc_raw" in row for row in log)


def test_adapt_takes_a_label_map_for_a_target_without_ier_labels(fixtures, one_thread):
    for ier, own in zip(IER_CLASSES, ("joy", "sadness", "disgust", "rage")):
        (fixtures / "target" / ier).rename(fixtures / "target" / own)
    assert main(_adapt_args(fixtures, "--epochs", "1")) == 2  # no map: the one-line error asks for --label-map
    assert main(_adapt_args(fixtures, "--epochs", "1", "--label-map",
                            "joy=happy,sadness=sad,disgust=hate,rage=anger")) == 0
    assert len(json.loads((fixtures / "run" / "split.json").read_text())["assignments"]) == 28


@pytest.mark.parametrize("flag", ["--teacher", "--kd-weight", "--kd-mode", "--mixup", "--dense", "--unlabelled"])
def test_the_distillation_flags_are_gone(flag, capsys):
    with pytest.raises(SystemExit):
        main(["adapt", "--target", "t", "--out", "o", flag, "1"])
    assert "unrecognized arguments" in capsys.readouterr().err
