"""Target and source arrays for adaptation: a labelled generic-image set split by a manifest
(holdout train/val/test or k folds), and FER2013 Training faces as the source domain."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import open_dataset
from ..data.arrays import ArrayData, load_arrays
from ..data.fer2013 import read_fer2013
from ..data.locate import dataset_path
from ..data.transforms import fit_images
from ..data.splits import apply_manifest, kfold_dataset, read_manifest, split_dataset, write_manifest
from ..training.fer import subsample


def target_splits(path: str | Path, size: int, channels: int, *, layout: str = "auto",
                  manifest: str | Path | None = None, seed: int = 0, val: float = 0.15, test: float = 0.15,
                  folds: int = 0, fold_index: int = 0, write_to: str | Path | None = None,
                  progress: bool = True, label_map: dict[str, str] | None = None,
                  fit: str = "centre") -> dict[str, ArrayData]:
    """``{"train", "val", "test"}`` arrays of an IER dataset (labels = IER class indices).

    Holdout (``folds=0``): the manifest's train/val/test, or a new stratified split from ``seed``.
    k-fold (``folds=K``): fold ``fold_index`` is test, fold ``fold_index + 1`` (mod K) validation,
    the rest train. The manifest used is written to ``write_to`` so the run can be repeated.
    ``fit``: how each image becomes the square input (:data:`emoadapt.data.transforms.FITS`).
    ``label_map`` (dataset label → IER class) maps a dataset whose labels have no IER map of their own.
    """
    dataset = open_dataset(path, layout).with_label_map(label_map).to_ier_dataset()
    if manifest is not None:
        plan = read_manifest(manifest)
    elif folds:
        plan = kfold_dataset(dataset, folds=folds, seed=seed)
    else:
        plan = split_dataset(dataset, val=val, test=test, seed=seed)
    if write_to is not None:
        write_manifest(plan, write_to)
    dataset = apply_manifest(dataset, plan)
    if plan.kind == "kfold":
        k = plan.folds
        names = {f"fold{fold_index % k}": "test", f"fold{(fold_index + 1) % k}": "val"}
        groups = {"test": [n for n, v in names.items() if v == "test"], "val": [n for n, v in names.items() if v == "val"],
                  "train": [f"fold{i}" for i in range(k) if f"fold{i}" not in names]}
    else:
        groups = {"train": ["train"], "val": ["val"], "test": ["test"]}
    return {name: load_arrays(dataset.split(*members), size, channels, progress=progress, fit=fit)
            for name, members in groups.items()}


def no_source_faces(size: int) -> tuple[np.ndarray, np.ndarray]:
    """An empty source domain (``source_limit`` 0: target-only fine-tuning)."""
    return np.zeros((0, size, size, 1), np.uint8), np.zeros(0, np.int64)


def source_faces(size: int, *, root: str | Path | None = None, limit: int = 6000, seed: int = 0,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """FER2013 Training faces (uint8 (N, size, size, 1), FER labels), at most ``limit``, resized
    from 48 px with bilinear interpolation."""
    fer = read_fer2013(root or dataset_path("fer2013")).split("Training")
    arrays = load_arrays(fer, 48, 1, progress=progress)
    images, labels = subsample(arrays.images, arrays.labels, limit, seed)
    return fit_images(images, size, 1), labels

