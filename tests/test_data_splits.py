"""Splits and k folds: deterministic from a seed, stratified, subject-disjoint, saved and re-applied."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from emoadapt.data import (ImageDataset, Sample, apply_manifest, fold, kfold_dataset, read_manifest, split_dataset,
                           write_manifest)
from emoadapt.data.splits import choose_grouping, sample_key
from emoadapt.errors import DatasetLayoutError

ROOT = "/data/set"


def make_dataset(n_per_class=(60, 30, 10), subjects: int = 0, boxes: int = 1) -> ImageDataset:
    """An in-memory dataset (no files): classes a, b, c; optional subjects; ``boxes`` samples per file."""
    samples = []
    for c, n in zip("abc", n_per_class):
        for i in range(n):
            subject = f"S{(i * 7 + ord(c)) % subjects:03d}" if subjects else None
            for person in range(boxes):
                meta = {"person": person} if boxes > 1 else {}
                samples.append(Sample(f"{ROOT}/{c}/{i}.jpg", c, subject=subject, meta=meta))
    return ImageDataset("toy", ROOT, ("a", "b", "c"), samples)


def splits_by(manifest, dataset, attribute):
    found = defaultdict(set)
    for sample in dataset:
        found[getattr(sample, attribute)].add(manifest.assignments[sample_key(sample, dataset.root)])
    return found


def test_split_is_deterministic_and_stratified():
    data = make_dataset()
    first = split_dataset(data, val=0.2, test=0.1, seed=7)
    assert first.assignments == split_dataset(make_dataset(), val=0.2, test=0.1, seed=7).assignments
    assert first.assignments != split_dataset(data, val=0.2, test=0.1, seed=8).assignments
    assert first.group == "none" and first.fractions == {"train": 0.7, "val": 0.2, "test": 0.1}
    per_class = Counter((s.label, first.assignments[sample_key(s, ROOT)]) for s in data)
    assert [per_class[("a", s)] for s in ("train", "val", "test")] == [42, 12, 6]
    assert [per_class[("b", s)] for s in ("train", "val", "test")] == [21, 6, 3]
    assert [per_class[("c", s)] for s in ("train", "val", "test")] == [7, 2, 1]


def test_split_does_not_depend_on_listing_order():
    data = make_dataset()
    shuffled = ImageDataset("toy", ROOT, data.classes, list(reversed(data.samples)))
    assert split_dataset(data, seed=3).assignments == split_dataset(shuffled, seed=3).assignments


def test_subject_split_keeps_subjects_apart():
    data = make_dataset((80, 40, 40), subjects=20)
    manifest = split_dataset(data, seed=0)
    assert manifest.group == "subject"
    assert all(len(s) == 1 for s in splits_by(manifest, data, "subject").values())
    counts = Counter(manifest.assignments.values())
    assert set(counts) == {"train", "val", "test"} and counts["train"] > counts["val"] > 0


def test_boxes_of_one_image_stay_together():
    data = make_dataset((10, 10, 10), boxes=2)
    assert choose_grouping(data) == "image"
    manifest = split_dataset(data, seed=0)
    assert len(manifest.assignments) == 60 and "/a/0.jpg#1" not in manifest.assignments
    assert all(len(s) == 1 for s in splits_by(manifest, data, "path").values())


def test_kfold_covers_everything_once_and_keeps_subjects_apart():
    data = make_dataset((50, 25, 25), subjects=10)
    manifest = kfold_dataset(data, folds=5, seed=2)
    assert manifest.kind == "kfold" and manifest.folds == 5
    assert set(manifest.assignments.values()) == {f"fold{k}" for k in range(5)}
    assert all(len(s) == 1 for s in splits_by(manifest, data, "subject").values())
    tests = []
    for k in range(5):
        train, test = fold(data, manifest, k)
        assert len(train) + len(test) == len(data)
        assert not {s.subject for s in train} & {s.subject for s in test}
        tests += [s.path for s in test]
    assert sorted(tests) == sorted(s.path for s in data)  # every sample is tested exactly once


def test_kfold_without_groups_is_stratified():
    manifest = kfold_dataset(make_dataset(), folds=5, seed=0)
    per_fold = Counter((key.split("/")[0], fold_name) for key, fold_name in manifest.assignments.items())
    assert {per_fold[("a", f"fold{k}")] for k in range(5)} == {12}
    assert {per_fold[("c", f"fold{k}")] for k in range(5)} == {2}


def test_manifest_round_trip_and_apply(tmp_path):
    data = make_dataset(subjects=8)
    manifest = split_dataset(data, seed=4)
    path = write_manifest(manifest, tmp_path / "runs" / "split.json")
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temporary file left behind
    saved = json.loads(path.read_text())
    assert saved["format"] == "emoadapt-split-manifest" and saved["seed"] == 4 and saved["group"] == "subject"
    assert list(saved["counts"]) == ["train", "val", "test"]
    assert "a/0.jpg" in saved["assignments"]  # paths relative to the dataset root
    again = read_manifest(path)
    assert again.assignments == manifest.assignments and again.fractions == manifest.fractions
    applied = apply_manifest(data, again)
    assert Counter(s.split for s in applied) == Counter(manifest.assignments.values())
    assert len(applied.split("test")) == manifest.counts()["test"]


def test_apply_manifest_refuses_a_different_dataset(tmp_path):
    manifest = split_dataset(make_dataset(), seed=0)
    bigger = make_dataset((61, 30, 10))
    with pytest.raises(DatasetLayoutError, match="1 sample.* not in the manifest.*a/60.jpg"):
        apply_manifest(bigger, manifest)
    assert len(apply_manifest(bigger, manifest, strict=False)) == 100


def test_bad_arguments_and_files(tmp_path):
    data = make_dataset()
    with pytest.raises(ValueError):
        split_dataset(data, val=0.6, test=0.5)
    with pytest.raises(ValueError):
        kfold_dataset(data, folds=1)
    with pytest.raises(DatasetLayoutError, match="no subject ids"):
        split_dataset(data, group="subject")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DatasetLayoutError, match="cannot read split manifest"):
        read_manifest(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"format": "something else"}')
    with pytest.raises(DatasetLayoutError, match="not an emoadapt split manifest"):
        read_manifest(tmp_path / "y.json")
    with pytest.raises(ValueError, match="fold 0 does not exist"):
        fold(data, split_dataset(data), 0)
