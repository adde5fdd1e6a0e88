"""Issue #22: the whole image, a legend, an honest "I don't know", a web app that works offline.

One test per surface: the whole-image fits and the maps at the image's resolution, the calibration
maths, ``analyze()`` keys, the CLI row's ``uncertain``, ``emoadapt calibrate`` end to end,
``--model x.onnx``, and the web app's JSON, offline ``/docs`` and the polled layer-grid job."""

from __future__ import annotations

import csv
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from conftest import save_tiny_model
from emoadapt.api import Predictor
from emoadapt.cli import main
from emoadapt.errors import EmoadaptError
from emoadapt.data.transforms import fit_square, image_to_tensor, square_map_to_image, square_to_image
from emoadapt.models.calibration import (Calibration, auroc, energy_scores, expected_calibration_error,
                                         fit_temperature, softmax)


def wide_image() -> Image.Image:
    """300 × 100: the left third red, the rest blue (a centre crop never sees the red)."""
    array = np.zeros((100, 300, 3), dtype=np.uint8)
    array[:, :100, 0] = 255
    array[:, 100:, 2] = 255
    return Image.fromarray(array)


# ----------------------------------------------------------------------------- whole image
def test_squash_and_pad_keep_the_whole_image_centre_does_not():
    image = wide_image()
    squash = image_to_tensor(image, 30, 3, "squash")
    centre = image_to_tensor(image, 30, 3, "centre")
    pad = image_to_tensor(image, 30, 3, "pad")
    assert squash.shape == centre.shape == pad.shape == (3, 30, 30)
    assert squash[0, :, :9].min() > 0.9 and squash[2, :, 11:].min() > 0.9  # red left third, blue rest
    assert centre[0, :, 1:].max() < 0.01  # the red third is cut away (column 0: resampling blends the edge)
    assert pad[:, 0, :].sub(128 / 255).abs().max() < 0.01 and pad[0, 15, :9].min() > 0.9  # grey bands, red kept
    assert fit_square(image, 30, "squash").size == (30, 30)


def test_maps_go_back_to_the_image_at_its_own_resolution():
    square = np.arange(16, dtype=np.float32).reshape(4, 4)
    squash = square_to_image(square, "squash", 300, 100)
    assert squash.shape == (100, 300) and squash[0, 0] == 0 and squash[-1, -1] == 15
    centre = square_to_image(square, "centre", 300, 100)
    assert np.isnan(centre[:, :100]).all() and np.isnan(centre[:, 200:]).all() and np.isfinite(centre[:, 100:200]).all()
    full = square_map_to_image(square, "squash", 300, 100)
    assert abs(float(full.sum()) - float(square.sum())) < 1e-3 * square.sum()


def test_overlay_is_drawn_at_the_image_aspect_ratio(tmp_path):
    from emoadapt.attribution import DnCShap, save_overlay

    predictor = Predictor(str(save_tiny_model(tmp_path / "tiny.safetensors")), runtime="torch")
    picture = wide_image()
    tensor = predictor.preprocess(picture)
    explanation = DnCShap(predictor.model, depth=3, class_names=predictor.classes).attribute(tensor)
    path = save_overlay(tensor, explanation, tmp_path / "o.png", picture=picture, fit="squash")
    width, height = Image.open(path).size
    assert width > 1.8 * height  # 3:1 image (+ colour bar), not a square
    from emoadapt.explaining import at_image_resolution

    full = at_image_resolution(explanation, "squash", *picture.size).map
    assert full.shape == (100, 300) and abs(float(full.sum()) - float(explanation.map.sum())) < 1e-3 + 0.02 * float(
        np.abs(explanation.map).sum())


# ----------------------------------------------------------------------------- calibration maths
def test_temperature_is_recovered_and_lowers_the_ece():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(6000, 4))
    labels = np.array([rng.choice(4, p=p) for p in softmax(logits / 2.5)])  # the truth is T = 2.5
    temperature = fit_temperature(logits, labels)
    assert abs(temperature - 2.5) < 0.25
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits / temperature), labels)
    assert after < 0.03 < before


def test_auroc_and_energy():
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0 and auroc([1], [1]) == 0.5
    confident, flat = energy_scores(np.array([[10.0, 0, 0, 0], [0.0, 0, 0, 0]]))
    assert confident < flat and abs(flat + np.log(4)) < 1e-9


def test_verdicts_say_why():
    calibration = Calibration(temperature=1.0, ood_kind="energy", ood_threshold=-2.0, fitted={"model": "x"})
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2], [0.9, 0.05, 0.03, 0.02], [0.7, 0.1, 0.1, 0.1]])
    verdicts = calibration.judge(probs, np.array([-3.0, -3.0, -1.0, -3.0]), spread=np.array([0.2, 0.2, 0.2, 0.0]))
    assert [v["uncertain"] for v in verdicts] == [False, True, True, True]
    assert verdicts[0]["uncertain_reason"] is None
    assert "low confidence" in verdicts[1]["uncertain_reason"]
    assert "unlike the images" in verdicts[2]["uncertain_reason"] and verdicts[2]["ood_score"] == -1.0
    assert "blank" in verdicts[3]["uncertain_reason"]


def test_calibration_round_trip_and_stale_file_is_refused(tmp_path):
    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    stale = Calibration(temperature=2.0, ood_kind="energy", ood_threshold=0.0, fitted={"weights_sha256": "0" * 64})
    stale.save(tmp_path / "tiny.calibration.json")
    with pytest.raises(Exception, match="fitted for other weights"):
        Predictor(str(weights), runtime="torch")
    fresh = Calibration(temperature=2.0, ood_kind="energy", ood_threshold=-100.0, fitted={"model": "tiny"})
    fresh.save(tmp_path / "tiny.calibration.json")
    predictor = Predictor(str(weights), runtime="torch")
    assert predictor.calibration.temperature == 2.0
    result = predictor.analyze(wide_image())
    assert result["uncertain"] is True and "unlike the images" in result["uncertain_reason"]  # threshold -100


# ----------------------------------------------------------------------------- analyze() and the CLI row
def test_analyze_keys_and_a_black_image_is_uncertain_with_the_shipped_model():
    import emoadapt

    result = emoadapt.analyze(np.zeros((277, 900, 3), dtype=np.uint8))
    # the shipped default also has affect heads (issue #23)
    assert set(result) == {"emotion", "dominant_emotion", "uncertain", "uncertain_reason", "ood_score", "valence",
                           "arousal", "distribution"}
    assert result["uncertain"] is True and "blank" in result["uncertain_reason"]
    from emoadapt.api import get_predictor

    predictor = get_predictor()
    assert predictor.fit == predictor.meta["fit"] == "crop"  # the model's own input fit, from its recipe
    assert predictor.calibration.ood_kind == "mahalanobis"
    assert predictor.calibration.fitted["weights_sha256"] == predictor.meta["weights_sha256"]


def test_cli_row_has_uncertain(tmp_path):
    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    Calibration(temperature=1.0, ood_kind="energy", ood_threshold=-100.0, fitted={"model": "tiny"}).save(
        tmp_path / "tiny.calibration.json")
    wide_image().save(tmp_path / "wide.png")
    Image.new("RGB", (50, 40), "black").save(tmp_path / "black.png")
    out = tmp_path / "rows.csv"
    assert main(["predict", str(tmp_path / "wide.png"), str(tmp_path / "black.png"), "--model", str(weights),
                 "--out", str(out), "--no-progress", "--runtime", "torch"]) == 0
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    old = tmp_path / "old.csv"  # a results file from before the uncertain columns: --resume says so
    old.write_text("path,emotion,prob_happy,prob_sad,prob_hate,prob_anger,seconds,error\n")
    assert main(["predict", str(tmp_path / "wide.png"), "--model", str(weights), "--out", str(old), "--resume",
                 "--no-progress"]) == 2
    assert list(rows["wide.png"])[-4:] == ["uncertain", "uncertain_reason", "seconds", "error"]
    assert rows["wide.png"]["uncertain"] == "true" and "OOD score" in rows["wide.png"]["uncertain_reason"]
    assert "blank" in rows["black.png"]["uncertain_reason"]


def test_calibrate_command_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "photos"
    for name in ("happy", "sad", "hate", "anger"):
        (data / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(data / name / f"{i}.png")
    manifest = tmp_path / "split.json"
    assert main(["data", "split", str(data), "--layout", "folder", "--out", str(manifest), "--val", "0.25",
                 "--test", "0.25"]) == 0
    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    out = tmp_path / "tiny.calibration.json"  # beside the weights: found automatically
    assert main(["calibrate", "--model", str(weights), "--data", str(data), "--layout", "folder",
                 "--manifest", str(manifest), "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["format"] == "emoadapt-calibration" and saved["ood_kind"] == "energy"
    assert saved["temperature"] > 0 and saved["fitted"]["n_val"] == 8 and saved["fitted"]["fit"] == "squash"
    assert Predictor(str(weights), runtime="torch").calibration.ood_threshold == pytest.approx(saved["ood_threshold"])
    # new weights under the same name: loading refuses the stale calibration, and calibrate refits it
    save_tiny_model(weights, seed=1)
    with pytest.raises(EmoadaptError, match="fitted for other weights"):
        Predictor(str(weights), runtime="torch")
    assert main(["calibrate", "--model", str(weights), "--data", str(data), "--layout", "folder",
                 "--manifest", str(manifest), "--out", str(out)]) == 0
    assert Predictor(str(weights), runtime="torch").calibration.fitted["weights_sha256"] != saved["fitted"]["weights_sha256"]


# ----------------------------------------------------------------------------- --model x.onnx
def test_onnx_file_as_model_predicts(tmp_path):
    pytest.importorskip("onnxruntime")
    weights = save_tiny_model(tmp_path / "tiny.safetensors")
    onnx_path = tmp_path / "exported.onnx"
    assert main(["export", "--onnx", str(onnx_path), "--model", str(weights)]) == 0
    wide_image().save(tmp_path / "wide.png")
    out = tmp_path / "rows.csv"
    assert main(["predict", str(tmp_path / "wide.png"), "--model", str(onnx_path), "--out", str(out),
                 "--no-progress"]) == 0
    row = next(csv.DictReader(out.open()))
    expected = Predictor(str(weights), runtime="torch").predict([tmp_path / "wide.png"])[0]
    got = [float(row[f"prob_{c}"]) for c in ("happy", "sad", "hate", "anger")]
    assert np.allclose(got, expected, atol=1e-4) and row["error"] == ""
    assert main(["explain", str(tmp_path / "wide.png"), "--model", str(onnx_path), "--out", str(tmp_path / "ex"),
                 "--depth", "2", "--no-progress"]) == 0
    assert np.load(tmp_path / "ex" / "wide.npy").shape == (100, 300)


def test_help_and_data_messages(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "f1..f5" in text and "s1..s5" in text and "Layers depend on the model" in text
    assert "``" not in text and "--crop" in text
    from emoadapt.cli._commands import COMMANDS

    for command in COMMANDS:  # every command's help is for users: no reST quotes, no "``emoadapt x``:" prefix
        with pytest.raises(SystemExit):
            main([command.NAME, "--help"])
        assert "``" not in capsys.readouterr().out, command.NAME
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "emotion6.tar.gz").write_bytes(b"\x1f\x8b")
    assert main(["data", "summary", str(tmp_path / "shared" / "emotion6")]) == 2
    err = capsys.readouterr().err
    assert "holds archives (emotion6.tar.gz)" in err and "unpack" in err


# ----------------------------------------------------------------------------- web
fastapi = pytest.importorskip("fastapi", reason="the web extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from emoadapt.serve import create_app  # noqa: E402


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture()
def client(tmp_path):
    predictor = Predictor(str(save_tiny_model(tmp_path / "tiny.safetensors")), runtime="torch")
    with TestClient(create_app(predictor, depth=3)) as c:
        yield c


def test_web_json_has_uncertain_and_the_real_model_name(client):
    result = client.post("/api/predict", files={"file": ("w.png", png_bytes(wide_image()), "image/png")}).json()
    assert isinstance(result["uncertain"], bool) and "uncertain_reason" in result and result["model"] == "tiny"
    assert client.get("/healthz").json()["model"] == "tiny"
    black = client.post("/api/predict", files={"file": ("b.png", png_bytes(Image.new("RGB", (60, 20))), "image/png")})
    assert black.json()["uncertain"] is True and "blank" in black.json()["uncertain_reason"]
    page = client.get("/").text
    assert 'id="confidence"' in page and 'id="overlay-caveat"' in page and 'id="legend"' in page
    assert "share of the predicted" in page


def test_docs_work_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text and "<script src" not in docs.text
    assert "default-src 'self'" in docs.headers["content-security-policy"]
    assert client.get("/redoc").status_code == 404  # FastAPI's CDN page is off
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/explain/layers" in paths and "/api/jobs/{job_id}" in paths


def test_layer_grid_job_polls_to_completion(client):
    started = client.post("/api/explain/layers", files={"file": ("w.png", png_bytes(wide_image()), "image/png")},
                          data={"depth": "2", "target": "sad"})
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status_url"] == f"/api/jobs/{job['id']}"
    deadline, seen = time.monotonic() + 120, set()
    while True:
        state = client.get(job["status_url"]).json()
        seen.add(state["status"])
        if state["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert state["status"] == "done", state
    assert state["done"] == state["total"] == 6  # EmoNet: b1…b5, merged
    assert Image.open(io.BytesIO(__import__("base64").b64decode(state["result"]["layers_png"]))).size[0] > 0
    assert all(s["target"] == "sad" and len(s["grid"]) == 2 for s in state["result"]["layers"].values())
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    bad = client.post("/api/explain/layers", files={"file": ("w.png", png_bytes(wide_image()), "image/png")},
                      data={"target": "joy"})
    assert bad.status_code == 422


def test_evaluate_can_score_the_whole_image(tmp_path):
    from emoadapt.data import open_dataset
    from emoadapt.data.arrays import load_arrays

    (tmp_path / "photos" / "happy").mkdir(parents=True)
    wide_image().save(tmp_path / "photos" / "happy" / "wide.png")
    dataset = open_dataset(tmp_path / "photos", "folder")
    centre = load_arrays(dataset, 30, 3, cache_dir=tmp_path / "cache", progress=False)
    squash = load_arrays(dataset, 30, 3, cache_dir=tmp_path / "cache", progress=False, fit="squash")
    assert centre.images[0, :, 1:, 0].max() < 3 and squash.images[0, :, :9, 0].min() > 250  # cached apart
    assert len(list((tmp_path / "cache" / "arrays").iterdir())) == 2
