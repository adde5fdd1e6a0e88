"""Face cropping: OpenCV's bundled Haar cascade and the crop geometry."""

from __future__ import annotations

import pytest
from conftest import skip_without
from PIL import Image

from emoadapt.data import faces
from emoadapt.data.decode import decode_image
from emoadapt.data.faces import crop_face, find_cascade

def test_crop_geometry(monkeypatch):
    image = Image.new("RGB", (100, 80))
    monkeypatch.setattr(faces, "face_detector", lambda cascade=None: (lambda grey, size: [(10, 10, 20, 20)], "fake"))
    crop, info = crop_face(image, margin=0.1)
    assert info == {"face_found": True, "faces": 1, "detector": "fake", "box": [10, 10, 20, 20], "crop": [8, 8, 32, 32]}
    assert crop.size == (24, 24)
    monkeypatch.setattr(faces, "face_detector", lambda cascade=None: (lambda grey, size: [(90, 0, 10, 10)], "fake"))
    assert crop_face(image)[1]["crop"] == [88, 0, 100, 12]  # kept inside the image
    monkeypatch.setattr(faces, "face_detector", lambda cascade=None: None)  # no cascade installed
    crop, info = crop_face(image, fallback=0.5)
    assert info["face_found"] is False and info["detector"] is None and info["crop"] == [30, 20, 70, 60]


def test_find_cascade_honours_the_environment(tmp_path, monkeypatch):
    custom = tmp_path / "my.xml"
    custom.write_text("<opencv_storage/>")
    monkeypatch.setenv("EMOADAPT_HAAR_CASCADE", str(custom))
    assert find_cascade() == custom


def test_opencv_bundles_the_frontal_face_cascade():
    assert find_cascade() is not None and faces.face_detector() is not None


@pytest.mark.parametrize("name", ["KA.AN1.39.tiff", "KA.HA1.29.tiff", "YM.SU1.58.tiff"])
def test_jaffe_faces_are_found_and_centred(name):
    """JAFFE photos are 256×256 with hair and background; the face sits near the centre and is
    about half to two thirds of the image wide."""
    root = skip_without("jaffe")
    crop, info = crop_face(decode_image(root / name, mode="L"))
    assert info["face_found"] and info["detector"] == "opencv"
    x, y, w, h = info["box"]
    assert 100 <= w <= 200 and abs((x + w / 2) - 128) < 40 and abs((y + h / 2) - 128) < 50
    assert crop.size[0] == crop.size[1] == info["crop"][2] - info["crop"][0]
