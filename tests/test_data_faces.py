"""Face cropping: the NumPy Haar cascade, rectangle grouping and crop geometry."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import skip_without
from PIL import Image

from emoadapt.data import faces
from emoadapt.data.decode import decode_image
from emoadapt.data.faces import HaarCascade, crop_face, find_cascade, group_rectangles

OLD_FORMAT = """<?xml version="1.0"?>
<opencv_storage>
<tiny type_id="opencv-haar-classifier">
  <size>24 24</size>
  <stages>
    <_><trees>
      <_><_><feature><rects><_>2 2 10 20 -1.</_><_>7 2 5 20 2.</_></rects><tilted>0</tilted></feature>
        <threshold>0.01</threshold><left_val>-1.</left_val><right_val>1.</right_val></_></_>
      <_><_><feature><rects><_>0 0 24 12 -1.</_><_>0 6 24 6 2.</_></rects><tilted>0</tilted></feature>
        <threshold>-0.02</threshold><left_val>-0.5</left_val><right_val>0.7</right_val></_></_>
    </trees><stage_threshold>0.5</stage_threshold><parent>-1</parent><next>-1</next></_>
  </stages>
</tiny>
</opencv_storage>
"""

NEW_FORMAT = """<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier">
  <stageType>BOOST</stageType><featureType>HAAR</featureType><height>24</height><width>24</width>
  <stageNum>1</stageNum>
  <stages>
    <_><maxWeakCount>2</maxWeakCount><stageThreshold>0.5</stageThreshold>
      <weakClassifiers>
        <_><internalNodes>0 -1 0 0.01</internalNodes><leafValues>-1. 1.</leafValues></_>
        <_><internalNodes>0 -1 1 -0.02</internalNodes><leafValues>-0.5 0.7</leafValues></_>
      </weakClassifiers></_>
  </stages>
  <features>
    <_><rects><_>2 2 10 20 -1.</_><_>7 2 5 20 2.</_></rects></_>
    <_><rects><_>0 0 24 12 -1.</_><_>0 6 24 6 2.</_></rects></_>
  </features>
</cascade>
</opencv_storage>
"""


def test_old_and_new_cascade_formats_agree(tmp_path):
    (tmp_path / "old.xml").write_text(OLD_FORMAT)
    (tmp_path / "new.xml").write_text(NEW_FORMAT)
    old, new = HaarCascade.load(tmp_path / "old.xml"), HaarCascade.load(tmp_path / "new.xml")
    assert old.window == new.window == (24, 24) and len(old.stages) == len(new.stages) == 1
    for a, b in zip(old.stages, new.stages):
        assert np.array_equal(a.rects, b.rects) and np.array_equal(a.weights, b.weights)
        assert np.allclose(a.thresholds, b.thresholds) and a.threshold == b.threshold
    grey = np.random.default_rng(0).integers(0, 256, (60, 80), dtype=np.uint8)
    raw = old.detect(grey, min_neighbors=0)
    assert raw == new.detect(grey, min_neighbors=0) and len(raw) > 0
    # as in OpenCV, rounding may push a box one pixel past the border (crop_face clips it)
    assert all(x >= 0 and y >= 0 and x + w <= 81 and y + h <= 61 for x, y, w, h in raw)


def test_group_rectangles():
    near = [(10, 10, 20, 20), (11, 10, 20, 20), (10, 11, 21, 21), (9, 10, 20, 20)]
    assert group_rectangles(near + [(60, 60, 20, 20)], min_neighbors=3) == [(10, 10, 20, 20)]
    assert group_rectangles(near, min_neighbors=4) == []  # a cluster needs more than min_neighbors members
    assert group_rectangles(near, min_neighbors=0) == near


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
    custom.write_text(OLD_FORMAT)
    monkeypatch.setenv("EMOADAPT_HAAR_CASCADE", str(custom))
    assert find_cascade() == custom


@pytest.mark.parametrize("name, box", [("KA.AN1.39.tiff", (56, 71, 147, 147)), ("KA.HA1.29.tiff", (52, 67, 161, 161))])
def test_numpy_cascade_matches_opencv_on_jaffe(name, box):
    """The boxes OpenCV 4.x/5.x ``CascadeClassifier.detectMultiScale(grey, 1.1, 3)`` finds with the
    same cascade file (measured with opencv-contrib-python-headless 5.0.0.93)."""
    root = skip_without("jaffe")
    cascade = find_cascade()
    if cascade is None:
        pytest.skip("no Haar cascade file installed (pip install --no-deps fer==25.10.3)")
    grey = np.asarray(decode_image(root / name, mode="L"))
    assert HaarCascade.load(cascade).detect(grey, 1.1, 3, min_size=51) == [box]
