"""Batch prediction, the Python API and ONNX parity, with a tiny model (the shipped one is tested
in test_shipped.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CLASSES as CLASSES
from conftest import save_tiny_model

from emoadapt.api import Predictor, to_pil
from emoadapt.cli import main

@pytest.fixture()
def weights(tmp_path):
    return save_tiny_model(tmp_path / "tiny.safetensors")


@pytest.fixture()
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg", "c.png"):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(images / name)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return images


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_one_row_per_image_and_reports_bad_files(tmp_path, folder, weights, capsys):
    out = tmp_path / "results.csv"
    status = main(["predict", str(folder), "--out", str(out), "--model", str(weights), "--no-progress",
                   "--batch-size", "2"])
    assert status == 1  # one image failed
    rows = _rows(out)
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["a.png", "b.jpg", "broken.jpg", "c.png"]
    broken = rows[2]
    assert broken["emotion"] == "" and "broken.jpg" in broken["error"]
    for row in rows[:2] + rows[3:]:
        probs = [float(row[f"prob_{c}"]) for c in CLASSES]
        assert abs(sum(probs) - 1) < 1e-4 and row["emotion"] == CLASSES[int(np.argmax(probs))]
    assert "1 failed" in capsys.readouterr().err


def test_resume_skips_done_images_and_redoes_a_torn_row(tmp_path, folder, weights):
    out = tmp_path / "results.jsonl"
    good = [str(folder / n) for n in ("a.png", "b.jpg")]
    assert main(["predict", *good, "--out", str(out), "--model", str(weights), "--no-progress"]) == 0
    first = out.read_text().splitlines()
    out.write_text(first[0] + "\n" + first[1][:20])  # killed while writing the second row
    assert main(["predict", str(folder / "*.png"), *good, "--out", str(out), "--model", str(weights),
                 "--no-progress", "--resume"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in rows) == ["a.png", "b.jpg", "c.png"]
    assert rows[0] == json.loads(first[0])


def test_predict_with_explanations_writes_overlays(tmp_path, folder, weights):
    out = tmp_path / "r.csv"
    assert main(["predict", str(folder / "a.png"), "--out", str(out), "--model", str(weights), "--explain",
                 "--depth", "3", "--no-progress"]) == 0
    [overlay] = (tmp_path / "r_explanations").glob("a-*_overlay.png")  # a-<hash of the full path>
    assert overlay.stat().st_size > 0


def test_api_analyze_and_explain(weights, folder):
    predictor = Predictor(str(weights))
    result = predictor.analyze(folder / "a.png")
    assert set(result["emotion"]) == set(CLASSES)
    assert abs(sum(result["emotion"].values()) - 1) < 1e-5
    assert result["dominant_emotion"] == max(result["emotion"], key=result["emotion"].get)
    explanation = predictor.explain(folder / "a.png", depth=4, target="anger")
    # the map comes back at the image's own resolution; input_map is over the 32 px input
    assert explanation.target_name == "anger" and explanation.input_map.shape == (32, 32)
    assert explanation.map.shape == Image.open(folder / "a.png").size[::-1]
    with pytest.raises(ValueError, match="unknown class"):
        predictor.explain(folder / "a.png", target="joy")


def test_to_pil_accepts_arrays_in_rgb_order_and_rejects_bad_shapes():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    assert to_pil(rgb).getpixel((0, 0)) == (255, 0, 0)
    assert to_pil(np.full((4, 5), 0.5)).getpixel((0, 0)) == (128, 128, 128)
    with pytest.raises(ValueError, match="shape"):
        to_pil(np.zeros((2, 3, 4, 5)))


def test_onnx_runtime_matches_torch(weights, folder):
    pytest.importorskip("onnxruntime")
    images = [folder / "a.png", folder / "b.jpg", folder / "c.png"]
    torch_probs = Predictor(str(weights), runtime="torch").predict(images)
    onnx_probs = Predictor(str(weights), runtime="onnx").predict(images)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4, rtol=0)


def test_export_command_writes_a_dynamic_batch_model(tmp_path, weights, capsys):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "m.onnx"
    assert main(["export", "--onnx", str(path), "--model", str(weights)]) == 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": np.random.rand(5, 3, 32, 32).astype(np.float32)})[0]
    assert logits.shape == (5, 4)
    assert json.loads(capsys.readouterr().out)["classes"] == CLASSES


def test_a_model_whose_card_uses_flip_tta_is_predicted_with_it(tmp_path, folder):
    from emoadapt.models.registry import load_model
    from emoadapt.training.checkpoint import save_weights

    plain = save_tiny_model(tmp_path / "plain.safetensors")
    model, extra = load_model(plain)
    flipped = tmp_path / "flip.safetensors"
    save_weights(flipped, model, model.config.to_dict(), {**extra, "tta": "flip"})
    x = Predictor(str(plain), runtime="torch").preprocess(folder / "a.png")[None]
    base = Predictor(str(plain), runtime="torch")
    expected = (base.predict_tensors(x) + base.predict_tensors(x.flip(3))) / 2
    np.testing.assert_allclose(Predictor(str(flipped), runtime="torch").predict_tensors(x), expected, atol=1e-6)


def test_explain_puts_overlay_paths_in_the_csv_and_says_where(tmp_path, folder, weights, capsys):
    out = tmp_path / "r.csv"
    assert main(["predict", str(folder / "a.png"), str(folder / "c.png"), "--out", str(out), "--model", str(weights),
                 "--explain", "--depth", "2", "--no-progress"]) == 0
    rows = _rows(out)
    assert [r["overlay"].rsplit("/", 1)[0] for r in rows] == [str(tmp_path / "r_explanations")] * 2
    assert all(Path(r["overlay"]).stat().st_size > 0 for r in rows)
    assert f"overlays: {tmp_path / 'r_explanations'}/" in capsys.readouterr().err
    # resuming with --explain keeps the column; without it is refused with the reason
    assert main(["predict", str(folder / "a.png"), "--out", str(out), "--model", str(weights), "--explain",
                 "--depth", "2", "--no-progress", "--resume"]) == 0
    assert main(["predict", str(folder / "a.png"), "--out", str(out), "--model", str(weights), "--no-progress",
                 "--resume"]) == 2
    assert "written with --explain" in capsys.readouterr().err


def test_a_bad_out_is_refused_before_the_model_loads(tmp_path, folder, monkeypatch, capsys):
    import emoadapt.cli.predict_cmd as predict_cmd

    def no_model(args):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(predict_cmd, "load_predictor", no_model)
    (tmp_path / "folder").mkdir()
    for out, said in ((f"{tmp_path}/folder/", "is a directory"), (str(tmp_path / "folder"), "is a directory"),
                      (f"{tmp_path}/new/", "is a directory"), (str(tmp_path / "r.txt"), ".csv or .jsonl")):
        assert main(["predict", str(folder / "a.png"), "--out", out, "--no-progress"]) == 2
        assert said in capsys.readouterr().err


def test_progress_reaches_100_percent_once(tmp_path, folder, weights, capsys):
    out = tmp_path / "r.csv"
    assert main(["predict", str(folder), "--out", str(out), "--model", str(weights), "--batch-size", "2"]) in (0, 1)
    err = capsys.readouterr().err
    lines = [line for chunk in err.split("\n") for line in chunk.split("\r") if "100%" in line]
    assert len(lines) == 1, lines
    import io

    from tqdm import tqdm

    from emoadapt.cli.predict_cmd import _progress

    stream = io.StringIO()
    bar = tqdm(total=4, file=stream, mininterval=0)  # every step drawn: a slow run, or a log file
    on_batch = _progress(bar)
    on_batch(2, 0)
    on_batch(2, 1)
    bar.close()
    lines = [line for line in stream.getvalue().replace("\r", "\n").split("\n") if "100%" in line]
    assert len(lines) == 1 and "failed=1" in lines[0], lines


def test_overlay_of_an_uncertain_prediction_says_so(tmp_path, weights):
    from emoadapt.results import overlay_note, plain_uncertainty

    reason = "unlike the images the model was trained on (OOD score -1.49 > threshold -1.76)"
    assert plain_uncertainty(reason) == "the model has not seen images like this: treat the label as a guess"
    assert overlay_note({"uncertain": False, "uncertain_reason": None}) is None
    note = overlay_note({"uncertain": True, "uncertain_reason": reason})
    assert note.startswith("uncertain: the model has not seen")
    from emoadapt.attribution import save_overlay

    image = Image.new("RGB", (40, 30), (200, 30, 30))
    predictor = Predictor(str(weights))
    explanation = predictor.explain(image, depth=2)
    plain = save_overlay(predictor.preprocess(image), explanation, tmp_path / "plain.png", picture=image)
    noted = save_overlay(predictor.preprocess(image), explanation, tmp_path / "noted.png", picture=image, note=note)
    assert Image.open(noted).height > Image.open(plain).height  # the note is a line under the title
