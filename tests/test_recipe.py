"""``emoadapt train``: the recipe file's checks, and tiny end-to-end runs (a few images, one epoch)
that go from images to a model ``emoadapt predict`` uses — a user's own classes, and the IER
classes with FER2013 faces in the paper's loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import write_image
from emoadapt.models.registry import load_model
from emoadapt.recipe import RecipeError, load_recipe, recipe_from_dict

REPO = Path(__file__).resolve().parents[1]


def test_shipped_recipes_load():
    for path in sorted((REPO / "configs").glob("*.toml")):
        recipe = load_recipe(path)
        assert recipe.name and recipe.head.epochs >= 1


@pytest.mark.parametrize("data, message", [
    ({"head": {"epoch": 3}}, "unknown key(s) epoch"),
    ({"heads": {}}, "unknown table(s) heads"),
    ({"head": {"epochs": "ten"}}, "expected int"),
    ({"head": {"discrepancy": "kl"}}, "discrepancy must be one of"),
    ({"data": {"source": ""}, "head": {"alpha": 0.5}}, "alpha and lam need source faces"),
    ({"output": {"fit": "stretch"}}, "fit must be one of"),
    ({"scene": {"stages": [7, 6]}}, "stages must be increasing"),
    ({"scene": {"stages": [8]}}, "stages must be increasing"),
    ({"scene": {"stages": "6,7"}}, "expected a list of integers"),
])
def test_recipe_errors_say_what_is_wrong(data, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        recipe_from_dict(data)


def test_missing_recipe_file_names_the_default(tmp_path):
    with pytest.raises(RecipeError, match="configs/emoadapt-ier.toml"):
        load_recipe(tmp_path / "nope.toml")


def _tiny_face(path: Path) -> Path:
    import torch

    from emoadapt.models.efficientnet_lite import EfficientNetLite, EfficientNetLiteConfig
    from emoadapt.models.weights import save_weights

    torch.manual_seed(0)
    model = EfficientNetLite(EfficientNetLiteConfig(num_classes=7, input_size=32)).eval()
    save_weights(path, model, model.config.to_dict(), {"classes": ["angry", "disgust", "fear", "happy", "neutral",
                                                                   "sad", "surprise"]})
    return path


def _write_recipe(path: Path, face: Path, target: Path, **tables) -> Path:
    scene = [f"{key} = {json.dumps(value)}" for key, value in tables.pop("scene", {}).items()]
    lines = ['name = "tiny"', "[face]", f'source = "{face}"', "[scene]", "input_size = 32", *scene, "[data]",
             f'target = "{target}"', 'layout = "folder"', 'folds = ""']
    for table, values in tables.items():
        if table != "data":
            lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_tiny_run_with_own_classes_trains_ships_and_predicts(tmp_path, one_thread, monkeypatch):
    from emoadapt.cli import main

    monkeypatch.setattr("emoadapt.data.arrays.DEFAULT_CACHE", tmp_path / "cache")
    rng = np.random.default_rng(0)
    for label in ("calm", "tense", "joyful"):
        for i in range(5):
            write_image(tmp_path / "images" / label / f"{i}.png", rng, size=40)
    recipe = _write_recipe(tmp_path / "r.toml", _tiny_face(tmp_path / "face.safetensors"), tmp_path / "images",
                           data={"source": ""}, head={"alpha": 0.0, "epochs": 1, "views": 3, "batch_size": 4},
                           output={"affect": False}, scene={"stages": [6, 7]})
    out = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--out", str(out), "--cv", "--ship"]) == 0
    cv = json.loads((out / "cv.json").read_text())
    assert len(cv["folds"]) == 5 and cv["classes"] == ["calm", "joyful", "tense"]
    model, _ = load_model(out / "model.safetensors")
    assert model.config.scene_stages == (6, 7) and model.widths["scene"] == 1280 + 192 + 320
    assert sum(row["n_test"] for row in cv["folds"].values()) == 15  # every image tested once
    card = (out / "model.md").read_text()
    assert "emoadapt train --config" in card and json.loads((out / "model.json").read_text())["sha256"] in card
    calibration = json.loads((out / "model.calibration.json").read_text())
    assert calibration["temperature"] > 0 and calibration["fitted"]["n_val"] == 15
    # resuming finds every step done and changes nothing
    before = (out / "model.safetensors").read_bytes()
    assert main(["train", "--config", str(recipe), "--out", str(out), "--cv", "--ship"]) == 0
    assert (out / "model.safetensors").read_bytes() == before
    # the trained file is a model predict uses, with its own classes
    results = tmp_path / "results.csv"
    assert main(["predict", str(tmp_path / "images" / "calm" / "0.png"), "--model", str(out / "model.safetensors"),
                 "--out", str(results), "--runtime", "torch"]) == 0
    header = results.read_text().splitlines()[0].split(",")
    assert all(any(column.endswith(name) for column in header) for name in ("calm", "joyful", "tense")), header


@pytest.mark.slow
def test_tiny_run_with_faces_uses_the_source_term(tmp_path, one_thread, monkeypatch):
    """IER classes + FER2013 faces: the source faces are encoded and the fold rows score faces too."""
    from emoadapt.data.labels import FER_CLASSES, IER_CLASSES
    from emoadapt import recipe as steps

    rng = np.random.default_rng(1)
    for label in IER_CLASSES:
        for i in range(5):
            write_image(tmp_path / "images" / label / f"{i}.png", rng, size=40)
    fer = tmp_path / "data" / "fer2013"
    for label in FER_CLASSES:
        for i in range(3):
            write_image(fer / "train" / label / f"Training_{label}{i}.jpg", rng, "L", 48)
        write_image(fer / "test" / label / f"PublicTest_{label}.jpg", rng, "L", 48)
        write_image(fer / "test" / label / f"PrivateTest_{label}.jpg", rng, "L", 48)
    monkeypatch.setenv("EMOADAPT_DATA", str(tmp_path / "data"))
    monkeypatch.setattr("emoadapt.data.arrays.DEFAULT_CACHE", tmp_path / "cache")
    recipe = load_recipe(_write_recipe(tmp_path / "r.toml", _tiny_face(tmp_path / "face.safetensors"),
                                       tmp_path / "images", data={"source": "fer2013", "source_limit": 8},
                                       head={"alpha": 0.5, "discrepancy": "coral", "lam": 0.1, "epochs": 1,
                                             "views": 2, "batch_size": 4}, output={"affect": False}))
    cv = steps.cross_validate(recipe, tmp_path / "run", say=lambda message: None, folds=[0], mode="select")
    row = cv["folds"]["fold0"]
    assert set(row) >= {"test", "val", "faces_val", "faces_test"} and 0 <= row["faces_test"] <= 1
    data = np.load(sorted((tmp_path / "cache" / "features").glob("*/faces-Training-8-*/part-00000.npy"))[0])
    assert data.shape[:2] == (2, 8)  # plain and mirrored, the 8 chosen faces
