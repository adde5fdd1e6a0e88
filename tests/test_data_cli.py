"""``emoadapt data summary`` and ``emoadapt data split``."""

from __future__ import annotations

import json

from conftest import skip_without
from PIL import Image

from emoadapt.cli import main


def make_folder(root, per_class=4):
    for label in ("happy", "sad", "anger"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (20 + i, 10), (i, i, i)).save(root / label / f"{i}.png")
    return root


def test_summary_table(tmp_path, capsys):
    root = make_folder(tmp_path / "ds")
    assert main(["data", "summary", str(root), "--sizes", "5"]) == 0
    out = capsys.readouterr().out
    assert "dataset  folder" in out and "samples  12" in out
    assert [line.split() for line in out.splitlines() if line.startswith(("happy", "total"))] == [
        ["happy", "4", "4"], ["total", "12", "12"]]
    assert "IER classes: happy 4, sad 4, hate 0, anger 4" in out
    assert "image sizes (headers of 5 of 12 files)" in out


def test_summary_json(tmp_path, capsys):
    root = make_folder(tmp_path / "ds")
    assert main(["data", "summary", str(root), "--layout", "folder", "--json", "--sizes", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"] == {"anger": 4, "happy": 4, "sad": 4} and "sizes" not in summary


def test_split_and_folds(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", per_class=10)
    out_file = tmp_path / "split.json"
    assert main(["data", "split", str(root), "--out", str(out_file), "--seed", "3", "--val", "0.2",
                 "--test", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out_file}" in printed and "train" in printed
    manifest = json.loads(out_file.read_text())
    assert manifest["seed"] == 3 and manifest["counts"] == {"train": 18, "val": 6, "test": 6}
    assert main(["data", "split", str(root), "--out", str(out_file), "--folds", "3"]) == 0
    assert json.loads(out_file.read_text())["counts"] == {"fold0": 10, "fold1": 10, "fold2": 10}


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "summary", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emoadapt data: error:") and "does not exist" in err and "Traceback" not in err


def test_summary_on_ckplus48(capsys):
    root = skip_without("ckplus48")
    assert main(["data", "summary", str(root), "--sizes", "3"]) == 0
    out = capsys.readouterr().out
    assert "subjects 118" in out and ["total", "981", "981"] in [line.split() for line in out.splitlines()]


def test_models_lists_every_preset_and_which_ship_weights(capsys):
    from emoadapt.models.registry import list_models

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "emoadapt-ier   4 classes, 224 px RGB, shipped weights" in out
    assert "fer-cpu-wide   7 classes, 48 px grey, no weights" in out
