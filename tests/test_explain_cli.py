"""``emoadapt explain`` on a folder with good and corrupt images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CLASSES as CLASSES
from conftest import save_tiny_model

from emoadapt.cli import main
from emoadapt.attribution.settings import tree_evaluations



@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (see conftest.one_thread)."""


@pytest.fixture()
def weights(tmp_path):
    return save_tiny_model(tmp_path / "tiny.safetensors", in_chans=1)


@pytest.fixture()
def folder(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 256, (36, 36), dtype=np.uint8)).save(images / "sub" / "b.jpg")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (images / "notes.txt").write_text("not an image, not picked up from a folder")
    return images


def test_explain_folder_with_a_corrupt_file(tmp_path, folder, weights, capsys):
    out = tmp_path / "out"
    status = main(["explain", str(folder), "--out", str(out), "--weights", str(weights), "--depth", "3",
                   "--layers", "all", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 1
    assert "broken.png" in captured.err and "notes.txt" not in captured.err
    assert "explained 2 of 3 images (1 failed)" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json", "a.npy", "a_layers.png", "a_overlay.png", "b.json", "b.npy", "b_layers.png", "b_overlay.png"]
    data = json.loads((out / "a.json").read_text())
    assert data["target_name"] in CLASSES and data["depth"] == 3 and data["evaluations"] == tree_evaluations(3)
    assert abs(sum(data["values"]) - (data["full_value"] - data["base_value"])) < 1e-6
    saved = np.load(out / "a.npy")  # the map at the image's own resolution (40 × 30), not the 32 px input
    assert saved.shape == (40, 30) and np.isfinite(saved).all()
    assert abs(float(saved.sum()) - sum(data["values"])) < 0.05 * max(1e-3, sum(abs(v) for v in data["values"]))


def test_explain_globs_folders_and_reference_variant(tmp_path, folder, weights, capsys):
    out = tmp_path / "out"
    status = main(["explain", str(folder / "*.png"), str(folder / "sub" / "b.jpg"), "--out", str(out),
                   "--weights", str(weights), "--depth", "2", "--variant", "reference", "--baseline", "0.5",
                   "--no-progress"])
    assert status == 1  # the glob also matches broken.png
    status = main(["explain", str(folder / "a.*"), str(folder / "sub"), "--out", str(out), "--weights",
                   str(weights), "--depth", "2", "--variant", "reference", "--baseline", "0.5", "--no-progress"])
    assert status == 0
    data = json.loads((out / "a.json").read_text())
    assert (data["variant"], data["baseline"]) == ("reference", "constant(0.5)")
    assert "explained 2 of 2 images (0 failed)" in capsys.readouterr().out


def test_explain_with_a_budget(tmp_path, folder, weights, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(folder / "a.png"), "--out", str(out), "--weights", str(weights), "--depth", "5",
                 "--max-evals", "12", "--no-progress"]) == 0
    data = json.loads((out / "a.json").read_text())  # v(x), v(∅), the root split (2), two splits of 4 (both contexts)
    assert (data["evaluations"], len(data["values"]), data["max_evals"]) == (12, 4, 12)
    assert abs(sum(data["values"]) - (data["full_value"] - data["base_value"])) < 1e-6
    assert main(["explain", str(folder / "a.png"), "--out", str(out), "--weights", str(weights), "--depth", "2",
                 "--max-evals", "full", "--no-progress"]) == 0
    assert json.loads((out / "a.json").read_text())["evaluations"] == tree_evaluations(2)
    for bad in ("1", "lots"):
        with pytest.raises(SystemExit):
            main(["explain", str(folder / "a.png"), "--out", str(out), "--max-evals", bad])
    assert "max-evals must be" in capsys.readouterr().err


def test_explain_rejects_unknown_layers(tmp_path, folder, weights, capsys):
    status = main(["explain", str(folder), "--out", str(tmp_path / "o"), "--weights", str(weights),
                   "--layers", "b9"])
    assert status == 2 and "unknown layer(s) b9" in capsys.readouterr().err


def test_explain_explains_the_class_predict_reports(tmp_path, folder, weights, monkeypatch):
    """The class of ``emoadapt explain`` is ``predict``'s (its test-time augmentation included), not the
    argmax of one pass of the explainer's model."""
    from emoadapt.predictor import Predictor

    def always_anger(self, batch):
        return np.tile([[0.1, 0.1, 0.1, 0.7]], (len(batch), 1))

    monkeypatch.setattr(Predictor, "predict_tensors", always_anger)
    out = tmp_path / "out"
    assert main(["explain", str(folder / "a.png"), "--out", str(out), "--weights", str(weights), "--depth", "2",
                 "--no-progress"]) == 0
    assert json.loads((out / "a.json").read_text())["target_name"] == CLASSES[3]
