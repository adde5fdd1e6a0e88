"""The Emotion6 split every benchmark uses, loaded one way (shared by the benchmark scripts).

The split is ``results/adaptation/split.json`` (seed 0, 70/15/15, stratified), written once by
``python benchmarks/adaptation.py --part mobilenet`` and read by every later experiment; the
5-fold manifest of ``--part kfold`` is ``results/adaptation/folds.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emoadapt.adapt.data import target_splits
from emoadapt.data.arrays import ArrayData
from emoadapt.data.locate import dataset_path

RESULTS = Path(__file__).resolve().parent / "results" / "adaptation"
SPLIT = Path("benchmarks/results/adaptation/split.json")  # as the recorded commands name it (repository root)


def emotion6_splits(size: int, channels: int = 3, *, manifest: str | Path | None = SPLIT,
                    write_to: str | Path | None = None, seed: int = 0, folds: int = 0,
                    fold_index: int = 0) -> dict[str, ArrayData]:
    """``{"train", "val", "test"}`` uint8 arrays of the 4-class Emotion6 images at ``size`` px:
    the split in ``manifest``, or (``manifest=None``) a new one from ``seed`` (``folds`` > 0: fold
    ``fold_index`` of a k-fold split) written to ``write_to``."""
    return target_splits(dataset_path("emotion6"), size, channels, layout="emotion6", manifest=manifest, seed=seed,
                         folds=folds, fold_index=fold_index, write_to=write_to, progress=False)


def vote_agrees(arrays: ArrayData) -> np.ndarray:
    """Per image of ``arrays``: whether Emotion6's crowd votes agree with its folder."""
    from emoadapt.data import open_dataset

    meta = {s.path: s.meta.get("vote_agrees") for s in open_dataset(dataset_path("emotion6"), "emotion6").samples}
    return np.array([bool(meta.get(p)) for p in arrays.paths])


def unlabelled_emotion6(size: int) -> np.ndarray:
    """Emotion6 images of the two keywords without an IER class (fear, surprise): never in the
    4-class train/val/test split, used unlabelled, (N, size, size, 3) uint8."""
    from emoadapt.data import open_dataset
    from emoadapt.data.arrays import load_arrays

    dataset = open_dataset(dataset_path("emotion6"), "emotion6")
    return load_arrays(dataset.subset(lambda s: s.label in ("fear", "surprise"), name="emotion6-fear-surprise"),
                       size, 3, progress=False).images
