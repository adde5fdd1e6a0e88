"""The readers on the shared datasets, with the exact counts of ../shared/data/README.md.
Skipped when a dataset is not unpacked; files are listed, and only a handful decoded."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import skip_without
from PIL import Image

from emoadapt.data import (detect_layout, open_dataset, probe_image, read_ckplus48, read_emotion6, read_fer2013,
                           read_jaffe, split_dataset)
from emoadapt.data.faces import find_cascade
from emoadapt.data.splits import sample_key

FER_ORDER = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FER_COUNTS = {
    "Training": (3995, 436, 4097, 7215, 4965, 4830, 3171),
    "PublicTest": (467, 56, 496, 895, 607, 653, 415),
    "PrivateTest": (491, 55, 528, 879, 626, 594, 416),
}


def test_fer2013_counts():
    data = read_fer2013(skip_without("fer2013"))
    assert len(data) == 35_887
    assert data.split_counts() == {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}
    for split, counts in FER_COUNTS.items():
        assert data.split(split).label_counts() == dict(zip(FER_ORDER, counts)), split
    assert data.to_ier_dataset().label_counts() == {"happy": 8989, "sad": 6077, "hate": 547, "anger": 4953}
    image = data.load(data[0], "L")
    assert image.size == (48, 48) and image.mode == "L"


def test_ckplus48_counts():
    data = read_ckplus48(skip_without("ckplus48"))
    assert len(data) == 981
    assert data.label_counts() == {"anger": 135, "contempt": 54, "disgust": 177, "fear": 75, "happy": 207,
                                   "sadness": 84, "surprise": 249}
    assert len({s.subject for s in data}) == 118
    assert len({(s.subject, s.meta["sequence"]) for s in data}) == 327
    assert data.to_ier_dataset().label_counts() == {"happy": 207, "sad": 84, "hate": 177, "anger": 135}
    for sample in data.samples[::400]:
        assert sample.load("L").size == (48, 48)


def test_jaffe_counts_and_palette_images():
    root = skip_without("jaffe")
    data = read_jaffe(root)
    assert len(data) == 213
    assert Counter(s.meta["code"] for s in data) == {"AN": 30, "DI": 29, "FE": 32, "HA": 31, "NE": 30, "SA": 31,
                                                     "SU": 30}
    assert sorted({s.subject for s in data}) == ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
    modes = Counter(probe_image(s.path)["mode"] for s in data)
    assert modes == {"L": 190, "P": 23}
    palette = next(s for s in data if probe_image(s.path)["mode"] == "P")
    expected = np.asarray(Image.open(palette.path).convert("L"))
    assert np.array_equal(np.asarray(palette.load("L")), expected)
    assert expected.std() > 10  # a real picture, not a flat grey


def test_jaffe_face_crops():
    data = read_jaffe(skip_without("jaffe"))
    assert find_cascade() is not None, "opencv-python-headless 4.x bundles the frontal-face cascade"
    for sample in data.samples[:2]:
        image = data.load(sample, "L")
        info = data.loader.info[sample.path]
        assert info["face_found"], info
        assert 140 <= image.width == image.height <= 220  # the face, not the whole 256 px frame


EMOTION6_COUNTS = {"anger": 264, "disgust": 264, "fear": 330, "joy": 264, "sadness": 264, "surprise": 330}
EMOTION6_AGREE = {"anger": 19, "disgust": 161, "fear": 167, "joy": 229, "sadness": 190, "surprise": 55}


def test_emotion6_counts_and_votes():
    data = read_emotion6(skip_without("emotion6"))
    assert len(data) == 1716 and data.label_counts() == EMOTION6_COUNTS
    assert all(s.meta["vote_agrees"] is not None for s in data)  # every image has a ground-truth row
    assert Counter(s.label for s in data if s.meta["vote_agrees"]) == EMOTION6_AGREE
    assert data.to_ier_dataset().label_counts() == {"happy": 264, "sad": 264, "hate": 264, "anger": 264}
    votes = data[0].meta["votes"]
    assert list(votes) == ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
    assert abs(sum(votes.values()) - 1) < 0.01
    image = data.load(data[0])
    assert min(image.size) == 256 and image.mode == "RGB"


@pytest.mark.parametrize("name", ["fer2013", "ckplus48", "jaffe", "emotion6"])
def test_layout_detection_on_shared_data(name):
    root = skip_without(name)
    assert detect_layout(root) == name
    parent_layout = {"ckplus48": root.parent, "jaffe": root.parent, "emotion6": root.parent}.get(name)
    if parent_layout is not None:
        assert detect_layout(parent_layout) == name


def test_subject_split_on_ckplus_is_disjoint_and_repeatable():
    data = open_dataset(skip_without("ckplus48"))
    first, again = split_dataset(data, seed=1), split_dataset(open_dataset(Path(data.root)), seed=1)
    assert first.assignments == again.assignments and first.group == "subject"
    split_of_subject: dict[str, set[str]] = {}
    for sample in data:
        split_of_subject.setdefault(sample.subject, set()).add(first.assignments[sample_key(sample, data.root)])
    assert all(len(splits) == 1 for splits in split_of_subject.values())
    assert Counter(first.assignments.values())["test"] > 100
