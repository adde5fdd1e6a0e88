"""Faces in the picture (issue #35): detection (none, many, tiny, at the border, the cap), the crop,
the reading (face branch: 7 expressions mapped to the 4 classes; other models: the crop whole),
``analyze(faces=True)``, ``predict --faces`` and the web API's ``faces=true``.

The face is the bundled public-domain astronaut photo's (src/emoadapt/samples/astronaut.jpg),
pasted on a grey gradient at known places; every picture is small, so detection takes
milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoadapt.errors import EmoadaptError
from emoadapt.faces.detect import FaceBox, detect_faces
from emoadapt.faces.options import NO_FACES
from emoadapt.faces.read import crop_box, mapped_classes

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "emoadapt" / "samples" / "astronaut.jpg"
#: the astronaut's face (the cascade's box 176, 66, 97, 97) with a 20 px margin
FACE_AREA = (156, 46, 293, 183)
#: five faces: (x, y, side) of each pasted face square on a 360 × 200 gradient
FIVE = [(5, 10, 70), (90, 20, 60), (170, 5, 80), (260, 30, 64), (40, 110, 66)]


@pytest.fixture(scope="module")
def face() -> Image.Image:
    return Image.open(SAMPLE).convert("RGB").crop(FACE_AREA)


def gradient(width: int, height: int) -> Image.Image:
    """A grey horizontal gradient, RGB: no face anywhere."""
    row = np.linspace(40, 200, width)[None, :, None] * np.ones((height, 1, 3))
    return Image.fromarray(row.astype(np.uint8))


def pasted(face: Image.Image, places, size=(360, 200)) -> Image.Image:
    picture = gradient(*size)
    for x, y, side in places:
        picture.paste(face.resize((side, side)), (x, y))
    return picture


def test_a_picture_without_faces_says_so(tiny_predictor):
    found = detect_faces(gradient(200, 150))
    assert found.faces == [] and found.small == 0
    result = tiny_predictor.read_faces(gradient(200, 150))
    assert result["faces"] == [] and result["count"] == 0 and result["note"] == NO_FACES


def test_many_faces_are_each_found_once(face):
    found = detect_faces(pasted(face, FIVE))
    assert len(found.faces) == 5
    for x, y, side in FIVE:  # each pasted square holds exactly one detected box
        inside = [f for f in found.faces if x <= f.x and f.x + f.w <= x + side and y <= f.y and f.y + f.h <= y + side]
        assert len(inside) == 1
    areas = [f.w * f.h for f in found.faces]
    assert areas == sorted(areas, reverse=True)  # largest first


def test_max_faces_keeps_the_largest_and_counts_the_rest(face):
    found = detect_faces(pasted(face, FIVE), max_faces=2)
    assert len(found.faces) == 2 and found.over_limit == 3
    assert min(f.w for f in found.faces) >= max(f.w for f in detect_faces(pasted(face, FIVE)).faces[2:])


def test_tiny_faces_are_skipped_with_a_count(face, tiny_predictor):
    picture = pasted(face, [(20, 20, 100), (200, 40, 34)], size=(300, 160))
    everything = detect_faces(picture, min_face=20)
    assert len(everything.faces) == 2
    found = detect_faces(picture, min_face=40)
    assert len(found.faces) == 1 and found.small == 1 and found.faces[0].w >= 40
    alone = tiny_predictor.read_faces(pasted(face, [(200, 40, 34)], size=(300, 160)), min_face=40)
    assert alone["count"] == 0 and alone["skipped_small"] == 1
    assert alone["note"].startswith(NO_FACES) and "1 smaller skipped" in alone["note"]


def test_limits_are_checked():
    with pytest.raises(EmoadaptError, match="at least 20 px"):
        detect_faces(gradient(50, 50), min_face=10)
    with pytest.raises(EmoadaptError, match="positive"):
        detect_faces(gradient(50, 50), max_faces=0)


def test_crop_box_adds_the_margin_and_is_clamped_at_the_border():
    assert crop_box(FaceBox(50, 60, 40, 40, 1.0), 200, 200) == (46, 56, 94, 104)
    assert crop_box(FaceBox(2, 170, 40, 40, 1.0), 200, 200) == (0, 166, 46, 200)  # left and bottom clamped


def test_a_face_at_the_border_is_read_from_a_clamped_crop(face, tiny_predictor):
    picture = gradient(200, 160)
    picture.paste(face.resize((70, 70)).crop((12, 0, 70, 70)), (0, 40))  # the face's left edge cut off
    result = tiny_predictor.read_faces(picture)
    assert result["count"] == 1
    one = result["faces"][0]
    x, y, w, h = one["box"]
    assert x < round(0.1 * w)  # the margin would leave the picture
    assert one["crop"][0] == 0 and one["crop"][2] == x + w + round(0.1 * w)  # clamped on the left only
    assert one["reader"] == "model" and one["expressions"] is None  # the tiny EmoNet has no face branch
    assert sum(one["emotion"].values()) == pytest.approx(1, abs=1e-4)


def test_mapped_classes_renormalise_the_four_fer_classes():
    seven = np.array([[0.1, 0.2, 0.3, 0.2, 0.1, 0.05, 0.05]])  # angry disgust fear happy neutral sad surprise
    probs = mapped_classes(seven, ("happy", "sad", "hate", "anger"))
    np.testing.assert_allclose(probs, [[0.2, 0.05, 0.2, 0.1]] / np.float64(0.55))


def test_a_fer_face_branch_gives_seven_expressions_and_their_four_classes(face, tmp_path_factory, one_thread):
    import torch

    from emoadapt.api import Predictor
    from emoadapt.models.efficientnet_lite import EfficientNetLiteConfig
    from emoadapt.models.fusion import FusionConfig, FusionNet
    from emoadapt.models.weights import save_weights

    torch.manual_seed(0)
    config = FusionConfig(face=EfficientNetLiteConfig(input_size=32, num_classes=7).to_dict(),
                          scene=EfficientNetLiteConfig(input_size=48).to_dict(), hidden=8, input_size=48)
    path = tmp_path_factory.mktemp("fusion") / "fusion7.safetensors"
    save_weights(path, FusionNet(config).eval(), config.to_dict(), {"classes": ["happy", "sad", "hate", "anger"]})
    result = Predictor(str(path), runtime="torch").analyze(pasted(face, FIVE[:2]), faces=True)
    faces = result["faces"]["faces"]
    assert len(faces) == 2 and result["faces"]["note"] is None
    for one in faces:
        assert one["reader"] == "face-branch" and len(one["expressions"]) == 7
        seven = np.array([list(one["expressions"].values())])
        expected = mapped_classes(seven, ("happy", "sad", "hate", "anger"))[0]
        np.testing.assert_allclose(list(one["emotion"].values()), expected, atol=1e-5)
        assert one["dominant_expression"] == max(one["expressions"], key=one["expressions"].get)
    assert set(result["emotion"]) == {"happy", "sad", "hate", "anger"}  # the whole image is still read


def test_analyze_without_faces_has_no_faces_key(tiny_predictor):
    assert "faces" not in tiny_predictor.analyze(gradient(60, 40))
    with pytest.raises(EmoadaptError, match="picture itself"):
        tiny_predictor.read_faces(tiny_predictor.preprocess(gradient(60, 40)))


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from conftest import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("faces-model") / "tiny.safetensors")


def test_predict_faces_writes_a_faces_column_and_one_row_per_face(face, tiny_weights, tmp_path, one_thread):
    import csv

    from emoadapt.cli import main

    folder = tmp_path / "pictures"
    folder.mkdir()
    pasted(face, FIVE).save(folder / "group.png")
    gradient(120, 90).save(folder / "empty.png")
    out, rows = tmp_path / "out.csv", tmp_path / "faces.jsonl"
    assert main(["predict", str(folder), "--out", str(out), "--model", str(tiny_weights), "--no-progress",
                 "--face-rows", str(rows), "--max-faces", "3", "--min-face", "24", "--workers", "0"]) == 0
    table = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    group, empty = json.loads(table["group.png"]["faces"]), json.loads(table["empty.png"]["faces"])
    assert group["count"] == 3 and group["skipped_over_limit"] == 2 and len(group["faces"]) == 3
    assert empty == {"faces": [], "count": 0, "skipped_small": 0, "skipped_over_limit": 0, "note": NO_FACES}
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [(Path(r["path"]).name, r["face"]) for r in lines] == [("group.png", 0), ("group.png", 1), ("group.png", 2)]
    assert [[r[k] for k in "xywh"] for r in lines] == [f["box"] for f in group["faces"]]
    assert all(r["emotion"] == max(TINY4, key=lambda c: r[f"prob_{c}"]) for r in lines)
    # resuming needs the same options: a file written with --faces is not continued without it
    assert main(["predict", str(folder), "--out", str(out), "--model", str(tiny_weights), "--no-progress",
                 "--resume", "--workers", "0"]) == 2


TINY4 = ("happy", "sad", "hate", "anger")


def test_predict_refuses_bad_face_limits(tiny_weights, tmp_path, capsys):
    from emoadapt.cli import main

    gradient(40, 40).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "o.csv"), "--model", str(tiny_weights),
                 "--faces", "--min-face", "8", "--no-progress"]) == 2
    assert "at least 20 px" in capsys.readouterr().err


def test_web_predict_with_faces_true_returns_every_face(face, tiny_predictor):
    import io

    pytest.importorskip("fastapi", reason="the web extra is not installed")
    from fastapi.testclient import TestClient

    from emoadapt.serve import create_app

    buffer = io.BytesIO()
    pasted(face, FIVE[:3]).save(buffer, "PNG")
    client = TestClient(create_app(tiny_predictor))
    files = {"file": ("group.png", buffer.getvalue(), "image/png")}
    plain = client.post("/api/predict", files=files).json()
    assert "faces" not in plain
    body = client.post("/api/predict", files=files, data={"faces": "true", "max_faces": "2"}).json()
    assert body["faces"]["count"] == 2 and body["faces"]["skipped_over_limit"] == 1
    assert all(len(f["box"]) == 4 and set(f["emotion"]) == set(TINY4) for f in body["faces"]["faces"])
    assert body["emotion"] == plain["emotion"]  # the whole image's answer is unchanged
    explained = client.post("/api/explain", files=files, data={"faces": "true", "depth": "1"}).json()
    assert explained["faces"]["count"] == 3 and explained["overlay_png"]
    bad = client.post("/api/predict", files=files, data={"faces": "true", "min_face": "5"})
    assert bad.status_code == 422 and "min_face" in bad.json()["detail"]
    assert client.post("/api/predict", files=files, data={"faces": "maybe"}).status_code == 422


def test_video_frames_get_a_faces_column_and_face_rows_with_their_time(face, tiny_weights, tmp_path, one_thread):
    import csv

    import cv2

    from emoadapt.cli import main

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), 5, (360, 200))
    assert writer.isOpened()
    for i in range(10):  # 2 s at 5 fps: the five faces, then the bare gradient
        picture = pasted(face, FIVE) if i < 5 else gradient(360, 200)
        writer.write(cv2.cvtColor(np.asarray(picture), cv2.COLOR_RGB2BGR))
    writer.release()
    out, rows = tmp_path / "clip.csv", tmp_path / "clip_faces.csv"
    assert main(["predict", str(clip), "--out", str(out), "--model", str(tiny_weights), "--no-progress",
                 "--every", "1s", "--face-rows", str(rows)]) == 0
    frames = {float(r["time"]): json.loads(r["faces"]) for r in csv.DictReader(out.open())}
    assert [frames[t]["count"] for t in sorted(frames)] == [5, 0] and frames[1.0]["note"] == NO_FACES
    per_face = list(csv.DictReader(rows.open()))
    assert [(float(r["time"]), int(r["face"])) for r in per_face] == [(0.0, i) for i in range(5)]
